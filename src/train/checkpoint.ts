// Training checkpoints in HF Trainer layout and the final model: output_dir/checkpoint-N/ holds the model
// (config.json + model.safetensors via saveModel), optimizer.safetensors (AdamW moments + step),
// scheduler.json, rng_state.json, trainer_state.json, preftune_state.json, training_args.json and the
// tokenizer files. A checkpoint is written under a hidden temporary name, fsynced, then renamed, so a crash
// never leaves a checkpoint-N that looks whole. Under LoRA (use_peft) the model part is the PEFT adapter
// folder (adapter_config.json + adapter_model.safetensors, as HF Trainer saves a PeftModel) and the optimizer
// state covers the adapter only; the final output_dir holds the adapter. Not the decision of when to save (loop.ts).
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import type { AdamW, LoraAdapter, NativeModel } from "../core/native.ts";
import type { ParamInfo } from "../core/types.ts";
import { INDEX_FILE, loadWeightsInto, saveModel, SINGLE_FILE, type SaveDtype } from "../models/checkpoint.ts";
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, loadAdapterWeights, readAdapterFolder, saveAdapter, writeAdapterFiles } from "../models/peft.ts";
import { readHeader, readTensor, writeSafetensors, type TensorToWrite } from "../models/safetensors.ts";
import type { DataOrderState, LoopState, SchedulerState, TrainerStateJson } from "./state.ts";
import { fsyncPath, writeFileSynced } from "../util/durable.ts";

export const CHECKPOINT_PREFIX = "checkpoint-";
const CHECKPOINT_RE = /^checkpoint-(\d+)$/;
const TEMP_RE = /^\.+(checkpoint-\d+|final-model)\.(tmp|old)-/;
export const FILES = {
  trainerState: "trainer_state.json", optimizer: "optimizer.safetensors", scheduler: "scheduler.json",
  rng: "rng_state.json", loop: "preftune_state.json", args: "training_args.json",
} as const;
const TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "chat_template.json", "tokenizer.model", "added_tokens.json", "vocab.json", "merges.txt", "generation_config.json"];

const writeJson = (file: string, v: unknown) => writeFileSynced(file, JSON.stringify(v, null, 2) + "\n");

function readJson<T>(file: string): T {
  try { return JSON.parse(readFileSync(file, "utf8")) as T; } catch (e) {
    throw new Error(`${file}: cannot read checkpoint file (${(e as Error).message}); the checkpoint is damaged — resume from another checkpoint-N`);
  }
}

/** Complete checkpoints of a run folder, oldest first: checkpoint-N folders holding trainer_state.json. */
export function listCheckpoints(outputDir: string): { step: number; dir: string }[] {
  if (!existsSync(outputDir)) return [];
  const out: { step: number; dir: string }[] = [];
  for (const name of readdirSync(outputDir)) {
    const m = CHECKPOINT_RE.exec(name);
    const dir = join(outputDir, name);
    if (m && statSync(dir).isDirectory() && existsSync(join(dir, FILES.trainerState))) out.push({ step: Number(m[1]), dir });
  }
  return out.sort((a, b) => a.step - b.step);
}

/** The newest complete checkpoint, or null (transformers' get_last_checkpoint, ignoring half-written ones). */
export function latestCheckpoint(outputDir: string): string | null {
  const all = listCheckpoints(outputDir);
  return all.length ? all[all.length - 1].dir : null;
}

/** Deletes temporaries left by a save that crashed (only our own hidden .checkpoint-N.tmp-* / .final-model.tmp-* names). */
export function removeStaleTemporaries(outputDir: string): string[] {
  if (!existsSync(outputDir)) return [];
  const gone: string[] = [];
  for (const name of readdirSync(outputDir)) {
    if (TEMP_RE.test(name)) { rmSync(join(outputDir, name), { recursive: true, force: true }); gone.push(name); }
  }
  return gone;
}

export interface CheckpointParts {
  model: NativeModel;
  configJson: Record<string, unknown>;
  optimizer: AdamW;
  scheduler: SchedulerState;
  order: DataOrderState;
  trainerState: TrainerStateJson;
  loop: LoopState;
  args: Record<string, unknown>;
  tokenizerDir: string | null;
  chatTemplate?: string | null;
  adapter?: LoraAdapter | null;            // LoRA: the checkpoint holds this adapter instead of the model
  baseModelNameOrPath?: string | null;     // written into adapter_config.json
}

function optimizerTensors(model: { table: ParamInfo[] }, opt: AdamW): TensorToWrite[] {
  const out: TensorToWrite[] = [];
  for (const p of model.table) {
    out.push({ name: `${p.name}.exp_avg`, dtype: "F32", shape: p.shape, data: opt.expAvg.subarray(p.offset, p.offset + p.size) });
    out.push({ name: `${p.name}.exp_avg_sq`, dtype: "F32", shape: p.shape, data: opt.expAvgSq.subarray(p.offset, p.offset + p.size) });
  }
  return out;
}

/** Copies the tokenizer files found in src (an override chat template goes into tokenizer_config.json). */
export function copyTokenizerFiles(src: string | null, dst: string, chatTemplate?: string | null): void {
  if (!src) return;
  for (const f of TOKENIZER_FILES) {
    const from = join(src, f);
    if (!existsSync(from)) continue;
    if (f === "tokenizer_config.json" && chatTemplate && /\{[{%]/.test(chatTemplate)) {
      const cfg = JSON.parse(readFileSync(from, "utf8")) as Record<string, unknown>;
      writeJson(join(dst, f), { ...cfg, chat_template: chatTemplate });
    } else {
      copyFileSync(from, join(dst, f));
      fsyncPath(join(dst, f));
    }
  }
}

/** Puts a finished temporary directory in place of `target` (an existing target is replaced). */
function commitDir(tmp: string, target: string): void {
  fsyncPath(tmp);
  if (existsSync(target)) {
    const old = join(dirname(target), `.${basename(target)}.old-${process.pid}-${randomBytes(4).toString("hex")}`);
    renameSync(target, old);
    renameSync(tmp, target);
    rmSync(old, { recursive: true, force: true });
  } else {
    renameSync(tmp, target);
  }
  fsyncPath(dirname(target));
}

/** Writes output_dir/checkpoint-<step>/ atomically and returns its path. */
export function saveCheckpoint(outputDir: string, step: number, p: CheckpointParts): string {
  const target = join(resolve(outputDir), `${CHECKPOINT_PREFIX}${step}`);
  const tmp = join(resolve(outputDir), `.${CHECKPOINT_PREFIX}${step}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
  mkdirSync(outputDir, { recursive: true });
  try {
    // Either call creates tmp itself, atomically.
    if (p.adapter) saveAdapter(tmp, p.adapter, { baseModelNameOrPath: p.baseModelNameOrPath ?? null });
    else saveModel(tmp, p.configJson, p.model.table, p.model.params);
    writeSafetensors(join(tmp, FILES.optimizer), optimizerTensors(p.adapter ?? p.model, p.optimizer), {
      format: "preftune.adamw", step: String(p.optimizer.step),
      beta1: String(p.optimizer.config.beta1), beta2: String(p.optimizer.config.beta2), eps: String(p.optimizer.config.eps), weight_decay: String(p.optimizer.config.weightDecay),
    }, { fsync: true });
    writeJson(join(tmp, FILES.scheduler), p.scheduler);
    writeJson(join(tmp, FILES.rng), p.order);
    writeJson(join(tmp, FILES.loop), p.loop);
    writeJson(join(tmp, FILES.args), p.args);
    copyTokenizerFiles(p.tokenizerDir, tmp, p.chatTemplate);
    writeJson(join(tmp, FILES.trainerState), p.trainerState);   // last: its presence marks a whole checkpoint
    commitDir(tmp, target);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return target;
}

export interface LoadedCheckpoint {
  dir: string;
  trainerState: TrainerStateJson;
  scheduler: SchedulerState;
  order: DataOrderState;
  loop: LoopState;
}

/** Refuses a checkpoint written with LoRA for a run without it, or the reverse, or with other LoRA settings. */
function checkCheckpointKind(dir: string, adapter: LoraAdapter | null): void {
  const hasAdapter = existsSync(join(dir, ADAPTER_CONFIG_FILE));
  if (!adapter) {
    if (hasAdapter && !existsSync(join(dir, SINGLE_FILE)) && !existsSync(join(dir, INDEX_FILE))) {
      throw new Error(`${dir} holds a LoRA adapter (written with use_peft: true); resume it with use_peft: true and the same lora_* settings`);
    }
    return;
  }
  if (!hasAdapter) throw new Error(`${dir} holds no LoRA adapter (no ${ADAPTER_CONFIG_FILE}: it was written by full fine-tuning); resume it with use_peft: false`);
  const saved = readAdapterFolder(dir).config, now = adapter.config;
  const show = (c: typeof now) => `r ${c.r}, lora_alpha ${c.loraAlpha}, use_rslora ${c.useRslora}, target_modules [${c.targetModules.join(", ")}]`;
  if (saved.r !== now.r || saved.loraAlpha !== now.loraAlpha || saved.useRslora !== now.useRslora || saved.targetModules.join() !== now.targetModules.join()) {
    throw new Error(`${dir}: its adapter has ${show(saved)}, this run has ${show(now)}; resume with the checkpoint's LoRA settings`);
  }
}

/**
 * Restores weights and optimizer moments in place and returns the JSON states of checkpoint `dir`. With an
 * adapter (LoRA) only the adapter and its moments are restored: the frozen base comes from the base model.
 */
export function loadCheckpoint(dir: string, model: NativeModel, opt: AdamW, adapter: LoraAdapter | null = null): LoadedCheckpoint {
  for (const f of Object.values(FILES)) {
    if (!existsSync(join(dir, f))) throw new Error(`${dir}: not a complete checkpoint (no ${f}); pass another checkpoint-N or resume_from_checkpoint: true for the latest complete one`);
  }
  checkCheckpointKind(dir, adapter);
  if (adapter) loadAdapterWeights(dir, adapter);
  else loadWeightsInto(dir, model.table, model.params);
  const h = readHeader(join(dir, FILES.optimizer));
  const step = Number(h.metadata?.step);
  if (h.metadata?.format !== "preftune.adamw" || !Number.isInteger(step) || step < 0) throw new Error(`${h.file}: not a preftune AdamW state (metadata ${JSON.stringify(h.metadata)})`);
  for (const p of (adapter ?? model).table) {
    for (const [suffix, buf] of [["exp_avg", opt.expAvg], ["exp_avg_sq", opt.expAvgSq]] as const) {
      const name = `${p.name}.${suffix}`;
      const t = h.tensors.get(name);
      if (!t || t.shape.join(",") !== p.shape.join(",")) throw new Error(`${h.file}: optimizer tensor ${name} is missing or has the wrong shape; the checkpoint is for another model`);
      readTensor(h, name, buf, p.offset);
    }
  }
  opt.step = step;
  return {
    dir,
    trainerState: readJson<TrainerStateJson>(join(dir, FILES.trainerState)),
    scheduler: readJson<SchedulerState>(join(dir, FILES.scheduler)),
    order: readJson<DataOrderState>(join(dir, FILES.rng)),
    loop: readJson<LoopState>(join(dir, FILES.loop)),
  };
}

/** Deletes the oldest checkpoints beyond `limit` (save_total_limit); returns the deleted folders. */
export function rotateCheckpoints(outputDir: string, limit: number | null): string[] {
  if (limit === null) return [];
  const all = listCheckpoints(outputDir);
  const gone = all.slice(0, Math.max(0, all.length - limit)).map((c) => c.dir);
  for (const d of gone) rmSync(d, { recursive: true, force: true });
  return gone;
}

export interface ModelCard {
  adapter?: boolean;                    // a PEFT LoRA adapter folder rather than full weights
  baseModel: string;
  method: string;
  dataset: string;
  steps: number;
  epoch: number;
  hyperparameters: Record<string, unknown>;
  finalMetrics: Record<string, number>;
  dtype?: string;                       // stored dtype of the weights (F32, BF16, F16)
}

function modelCard(c: ModelCard): string {
  const rows = Object.entries(c.hyperparameters).map(([k, v]) => `| ${k} | ${JSON.stringify(v)} |`);
  const metrics = Object.entries(c.finalMetrics).map(([k, v]) => `| ${k} | ${Number.isInteger(v) ? v : v.toPrecision(6)} |`);
  return [
    "---", `base_model: ${JSON.stringify(c.baseModel)}`, `library_name: ${c.adapter ? "peft" : "transformers"}`, `tags: [preftune, ${c.method}${c.adapter ? ", lora" : ""}]`, "---", "",
    `# ${c.method.toUpperCase()} ${c.adapter ? "LoRA adapter" : "fine-tune"} of ${basename(c.baseModel)}`, "",
    `Trained with preftune (method \`${c.method}\`, TRL-compatible settings) on \`${c.dataset}\` for ${c.steps} optimizer steps (${c.epoch.toFixed(2)} epochs), fp32 on CPU${c.dtype && c.dtype !== "F32" ? `; weights saved as ${c.dtype}` : ""}.`,
    c.adapter
      ? "The adapter loads with PEFT: `PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_model), this_folder)` (or `AutoPeftModelForCausalLM.from_pretrained(this_folder)`); metrics.jsonl holds the training log."
      : "The weights load with transformers' `AutoModelForCausalLM.from_pretrained` from this folder; metrics.jsonl holds the training log.", "",
    "## Hyperparameters", "", "| key | value |", "|---|---|", ...rows, "",
    ...(metrics.length ? ["## Final metrics", "", "| metric | value |", "|---|---|", ...metrics, ""] : []),
  ].join("\n");
}

/**
 * The final model into output_dir itself (next to metrics.jsonl and the checkpoints): config.json and the
 * weight files (saved to a hidden sibling, then each renamed into place), tokenizer files, README.md.
 * `dtype` is the stored dtype (the run's dtype, by default the input checkpoint's); checkpoint-N/ folders
 * always keep fp32 so that a resume continues from exactly the trained weights.
 */
export function saveFinalModel(outputDir: string, model: NativeModel, configJson: Record<string, unknown>, tokenizerDir: string | null, card: ModelCard, chatTemplate?: string | null, dtype: SaveDtype = "F32"): void {
  const out = resolve(outputDir);
  const tmp = join(out, `.final-model.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
  try {
    saveModel(tmp, configJson, model.table, model.params, { dtype });
    for (const stale of readdirSync(out)) {
      // An adapter left by an earlier LoRA run would make transformers load base + adapter instead of these weights.
      if (/^model-\d+-of-\d+\.safetensors$/.test(stale) || stale === INDEX_FILE || stale === SINGLE_FILE || stale === ADAPTER_CONFIG_FILE || stale === ADAPTER_WEIGHTS_FILE) rmSync(join(out, stale), { force: true });
    }
    for (const f of readdirSync(tmp)) renameSync(join(tmp, f), join(out, f));
    copyTokenizerFiles(tokenizerDir, out, chatTemplate);
    writeFileSynced(join(out, "README.md"), modelCard(card));
    fsyncPath(out);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * The final LoRA adapter into output_dir itself, as PEFT's save_pretrained lays it out (adapter_config.json,
 * adapter_model.safetensors, README.md), plus the tokenizer files. Stale full-model weights from an earlier
 * run in the same folder are removed so nobody loads them by mistake.
 */
export function saveFinalAdapter(outputDir: string, adapter: LoraAdapter, baseModelNameOrPath: string, tokenizerDir: string | null, card: ModelCard, chatTemplate?: string | null): void {
  const out = resolve(outputDir);
  const tmp = join(out, `.final-model.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
  mkdirSync(tmp);
  try {
    writeAdapterFiles(tmp, adapter, baseModelNameOrPath);
    for (const stale of readdirSync(out)) {
      if (/^model-\d+-of-\d+\.safetensors$/.test(stale) || stale === INDEX_FILE || stale === SINGLE_FILE) rmSync(join(out, stale), { force: true });
    }
    for (const f of readdirSync(tmp)) renameSync(join(tmp, f), join(out, f));
    copyTokenizerFiles(tokenizerDir, out, chatTemplate);
    writeFileSynced(join(out, "README.md"), modelCard({ ...card, adapter: true }));
    fsyncPath(out);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

export { writeJson as writeJsonSynced };
