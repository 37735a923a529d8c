// Training checkpoints in HF Trainer layout and the final model: output_dir/checkpoint-N/ holds the model
// (config.json + model.safetensors via saveModel), optimizer.safetensors (AdamW moments, fp32 or 8-bit, + step),
// scheduler.json, rng_state.json, trainer_state.json, preftune_state.json, training_args.json and the
// tokenizer files. Every write goes through src/util/durable.ts: a checkpoint is a folder written aside and
// renamed into place, the final model a set of files staged, committed and renamed in one by one (weights last).
// Reading a checkpoint back checks every JSON file and the optimizer metadata against their schemas (state.ts)
// and against each other before any weight is read. Under LoRA (use_peft) the model part is the PEFT adapter
// folder (adapter_config.json + adapter_model.safetensors, as HF Trainer saves a PeftModel) and the optimizer
// state covers the adapter only; the final output_dir holds the adapter. Not the decision of when to save (loop.ts).
import { existsSync, readdirSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import type { LoraAdapter, NativeModel, Optimizer } from "../core/native.ts";
import type { ParamInfo } from "../core/types.ts";
import { INDEX_FILE, isModelWeightFile, loadWeightsInto, SINGLE_FILE, writeModelFiles, type SaveDtype } from "../models/checkpoint.ts";
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, isAdapterFile, loadAdapterWeights, readAdapterFolder, writeAdapterFiles } from "../models/peft.ts";
import { readHeader, readTensor, readTensorBytes, writeSafetensors, type TensorToWrite } from "../models/safetensors.ts";
import {
  checkSchema, DataOrderStateSchema, LoopStateSchema, OptimizerMetaSchema, SchedulerStateSchema, stepsAt, TrainerStateSchema,
  type DataOrderState, type LoopState, type SchedulerState, type TrainerStateJson,
} from "./state.ts";
import { copyNewFile, readTextFile, recoverLeftovers, removeFolder, replaceFilesInFolder, writeFileAtomic, writeFolderAtomic, writeNewFile } from "../util/durable.ts";

export const CHECKPOINT_PREFIX = "checkpoint-";
const CHECKPOINT_RE = /^checkpoint-(\d+)$/;
export const FILES = {
  trainerState: "trainer_state.json", optimizer: "optimizer.safetensors", scheduler: "scheduler.json",
  rng: "rng_state.json", loop: "preftune_state.json", args: "training_args.json",
} as const;
const TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "chat_template.json", "tokenizer.model", "added_tokens.json", "vocab.json", "merges.txt", "generation_config.json"];

const json = (v: unknown) => JSON.stringify(v, null, 2) + "\n";

/** Writes a JSON file of the run folder (training_args.json, ...) atomically: never through a link of that name. */
export function writeJsonFile(file: string, v: unknown): void {
  writeFileAtomic(file, json(v));
}

/** Complete checkpoints of a run folder, oldest first: checkpoint-N folders holding trainer_state.json. */
export function listCheckpoints(outputDir: string): { step: number; dir: string }[] {
  if (!existsSync(outputDir)) return [];
  const out: { step: number; dir: string }[] = [];
  for (const name of readdirSync(outputDir)) {
    const m = CHECKPOINT_RE.exec(name);
    const dir = join(outputDir, name);
    if (!m) continue;
    try {
      if (statSync(dir).isDirectory() && existsSync(join(dir, FILES.trainerState))) out.push({ step: Number(m[1]), dir });
    } catch { /* a dangling link: not a checkpoint */ }
  }
  return out.sort((a, b) => a.step - b.step);
}

/** The newest complete checkpoint, or null (transformers' get_last_checkpoint, ignoring half-written ones). */
export function latestCheckpoint(outputDir: string): string | null {
  const all = listCheckpoints(outputDir);
  return all.length ? all[all.length - 1].dir : null;
}

/**
 * Brings a run folder back to a consistent state after a crash (finishes an interrupted final save, puts back a
 * checkpoint whose replacement was cut short, deletes temporaries); returns one line per thing done. Run it only
 * while holding the folder's lock.
 */
export function recoverOutputDir(outputDir: string): string[] {
  return recoverLeftovers(outputDir);
}

export interface CheckpointParts {
  model: NativeModel;
  configJson: Record<string, unknown>;
  optimizer: Optimizer;
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

// Per parameter `${name}.exp_avg` / `.exp_avg_sq` (F32), or for 8-bit state `.state1` / `.state2` (U8, the
// parameter's shape) with `.absmax1` / `.absmax2` (F32, one per block of 256), then the optimizer's shared tensors.
function optimizerTensors(model: { table: ParamInfo[] }, opt: Optimizer): TensorToWrite[] {
  const out: TensorToWrite[] = [];
  for (const p of model.table) {
    for (const t of opt.stateOf(p)) out.push({ name: `${p.name}.${t.suffix}`, dtype: t.dtype, shape: t.shape, data: t.data });
  }
  for (const t of opt.sharedState()) out.push(t);
  return out;
}

/**
 * Copies the tokenizer files found in src as new files into dst, a staging folder (an override chat template goes
 * into tokenizer_config.json).
 */
export function copyTokenizerFiles(src: string | null, dst: string, chatTemplate?: string | null): void {
  if (!src) return;
  for (const f of TOKENIZER_FILES) {
    const from = join(src, f);
    if (!existsSync(from)) continue;
    if (f === "tokenizer_config.json" && chatTemplate && /\{[{%]/.test(chatTemplate)) {
      let cfg: Record<string, unknown>;
      try { cfg = JSON.parse(readTextFile(from, "tokenizer config")) as Record<string, unknown>; } catch (e) {
        throw e instanceof SyntaxError ? new Error(`${from}: cannot read JSON: ${e.message}`) : e;
      }
      writeNewFile(join(dst, f), json({ ...cfg, chat_template: chatTemplate }));
    } else {
      copyNewFile(from, join(dst, f));
    }
  }
}

/** Writes output_dir/checkpoint-<step>/ atomically (writeFolderAtomic) and returns its path. */
export function saveCheckpoint(outputDir: string, step: number, p: CheckpointParts): string {
  const target = join(resolve(outputDir), `${CHECKPOINT_PREFIX}${step}`);
  writeFolderAtomic(target, (tmp) => {
    if (p.adapter) writeAdapterFiles(tmp, p.adapter, p.baseModelNameOrPath ?? null);
    else writeModelFiles(tmp, p.configJson, p.model.table, p.model.params);
    writeSafetensors(join(tmp, FILES.optimizer), optimizerTensors(p.adapter ?? p.model, p.optimizer), {
      format: p.optimizer.format, step: String(p.optimizer.step),
      beta1: String(p.optimizer.config.beta1), beta2: String(p.optimizer.config.beta2), eps: String(p.optimizer.config.eps), weight_decay: String(p.optimizer.config.weightDecay),
    }, { fsync: false });
    writeNewFile(join(tmp, FILES.scheduler), json(p.scheduler));
    writeNewFile(join(tmp, FILES.rng), json(p.order));
    writeNewFile(join(tmp, FILES.loop), json(p.loop));
    writeNewFile(join(tmp, FILES.args), json(p.args));
    copyTokenizerFiles(p.tokenizerDir, tmp, p.chatTemplate);
    writeNewFile(join(tmp, FILES.trainerState), json(p.trainerState));
  });
  return target;
}

export interface CheckpointState {
  dir: string;
  trainerState: TrainerStateJson;
  scheduler: SchedulerState;
  order: DataOrderState;
  loop: LoopState;
  optimizerStep: number;
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
  const show = (c: typeof now) => `r ${c.r}, lora_alpha ${c.loraAlpha}, use_rslora ${c.useRslora}, use_dora ${c.useDora === true}, target_modules [${c.targetModules.join(", ")}]`;
  if (saved.r !== now.r || saved.loraAlpha !== now.loraAlpha || saved.useRslora !== now.useRslora || (saved.useDora === true) !== (now.useDora === true) || saved.targetModules.join() !== now.targetModules.join()) {
    throw new Error(`${dir}: its adapter has ${show(saved)}, this run has ${show(now)}; resume with the checkpoint's LoRA settings`);
  }
}

/** What to do about a damaged checkpoint: another complete checkpoint of its folder (the newest earlier one first), or starting over. */
function damagedFix(dir: string): string {
  const here = resolve(dir);
  const named = /^checkpoint-(\d+)$/.exec(basename(here));
  const others = listCheckpoints(dirname(here)).filter((c) => resolve(c.dir) !== here);
  const earlier = named ? others.filter((c) => c.step < Number(named[1])) : [];
  const hasEarlier = earlier.length > 0;
  const pick = (hasEarlier ? earlier : others).pop();
  const instead = pick ? `resume from ${hasEarlier ? "an earlier" : "another"} checkpoint (resume_from_checkpoint: ${pick.dir})` : "resume from an earlier checkpoint if you have one";
  return `The checkpoint is damaged: ${instead} or start over (delete ${dir}).`;
}

function readJsonFile(file: string, fix: string): unknown {
  let text: string;
  try { text = readTextFile(file, "checkpoint file"); } catch (e) { throw new Error(`${(e as Error).message}\n${fix}`); }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: is not valid JSON (${(e as Error).message})\n${fix}`);
  }
}

/**
 * Reads and checks the state files of checkpoint `dir` (no weights): every file against its schema, then against
 * each other: global_step against the folder's name, the scheduler's and the optimizer's step counts and the data
 * position (rng_state.json). Errors name the file and field and say what to do.
 */
export function readCheckpoint(dir: string): CheckpointState {
  for (const f of Object.values(FILES)) {
    if (!existsSync(join(dir, f))) throw new Error(`${dir}: not a complete checkpoint (no ${f}); pass another checkpoint-N or resume_from_checkpoint: true for the latest complete one`);
  }
  const fix = damagedFix(dir);
  const at = (f: string) => join(dir, f);
  const trainerState = checkSchema(TrainerStateSchema, readJsonFile(at(FILES.trainerState), fix), at(FILES.trainerState), fix) as TrainerStateJson;
  const scheduler = checkSchema(SchedulerStateSchema, readJsonFile(at(FILES.scheduler), fix), at(FILES.scheduler), fix) as SchedulerState;
  const order = checkSchema(DataOrderStateSchema, readJsonFile(at(FILES.rng), fix), at(FILES.rng), fix) as DataOrderState;
  const loop = checkSchema(LoopStateSchema, readJsonFile(at(FILES.loop), fix), at(FILES.loop), fix) as LoopState;
  const h = readHeader(at(FILES.optimizer));
  const meta = checkSchema(OptimizerMetaSchema, h.metadata, `${h.file} (metadata)`, fix);
  const step = trainerState.global_step;
  const problems: string[] = [];
  const named = /^checkpoint-(\d+)$/.exec(basename(resolve(dir)));
  if (named && Number(named[1]) !== step) problems.push(`${at(FILES.trainerState)}: global_step is ${step} but the folder is ${basename(resolve(dir))}`);
  if (scheduler.last_epoch !== step) problems.push(`${at(FILES.scheduler)}: last_epoch is ${scheduler.last_epoch} but global_step in ${FILES.trainerState} is ${step}`);
  if (Number(meta.step) !== step) problems.push(`${h.file}: the optimizer has taken ${meta.step} steps but global_step in ${FILES.trainerState} is ${step}`);
  if (order.position > order.batches) problems.push(`${at(FILES.rng)}: position ${order.position} is beyond the epoch's ${order.batches} batches`);
  else if (order.epoch_end_done && order.position === order.batches) problems.push(`${at(FILES.rng)}: epoch_end_done is true at the end of epoch ${order.epoch} (position ${order.position}), which a run never saves (the next epoch starts at position 0)`);
  else if (stepsAt(order, loop.gradient_accumulation_steps) !== step) {
    problems.push(`${at(FILES.rng)}: epoch ${order.epoch}, position ${order.position} (of ${order.batches} batches, gradient_accumulation_steps ${loop.gradient_accumulation_steps}) is step ${stepsAt(order, loop.gradient_accumulation_steps)}, but global_step in ${FILES.trainerState} is ${step}`);
  } else if (Math.abs(trainerState.epoch - (order.epoch + order.position / order.batches)) > 1e-6 * Math.max(1, trainerState.epoch)) {
    problems.push(`${at(FILES.trainerState)}: epoch is ${trainerState.epoch} but ${FILES.rng} says ${order.epoch + order.position / order.batches}`);
  }
  if (problems.length) throw new Error(`${problems.join("\n")}\n${fix}`);
  return { dir, trainerState, scheduler, order, loop, optimizerStep: Number(meta.step) };
}

/**
 * Restores weights and optimizer moments of checkpoint `dir` (checked by readCheckpoint) in place. With an
 * adapter (LoRA) only the adapter and its moments are restored: the frozen base comes from the base model.
 */
export function loadCheckpointWeights(ck: CheckpointState, model: NativeModel, opt: Optimizer, adapter: LoraAdapter | null = null): void {
  const dir = ck.dir;
  checkCheckpointKind(dir, adapter);
  const h = readHeader(join(dir, FILES.optimizer));
  const format = h.metadata?.format;
  if (format !== opt.format) {
    const name = (f: string | undefined) => (f === "preftune.adamw_8bit" ? "8-bit AdamW state (optim adamw_8bit, adamw_bnb_8bit or paged_adamw_8bit)" : "fp32 AdamW state (optim adamw_torch, paged_adamw_32bit, ...)");
    throw new Error(`${h.file}: holds ${name(format)} but this run's optimizer keeps ${name(opt.format)}; resume with the optim the checkpoint was written with`);
  }
  for (const t of opt.sharedState()) {
    const saved = h.tensors.has(t.name) ? readTensor(h, t.name) : null;
    if (!saved || saved.length !== t.data.length || saved.some((v, i) => v !== t.data[i])) throw new Error(`${h.file}: ${t.name} is missing or is not the quantization map this version uses; the 8-bit state cannot be read back`);
  }
  for (const p of (adapter ?? model).table) {
    for (const t of opt.stateOf(p)) {
      const name = `${p.name}.${t.suffix}`;
      const saved = h.tensors.get(name);
      if (!saved || saved.dtype !== t.dtype || saved.shape.join(",") !== t.shape.join(",")) throw new Error(`${h.file}: optimizer tensor ${name} is missing or has the wrong dtype or shape; the checkpoint is for another model`);
      if (t.data instanceof Uint8Array) t.data.set(readTensorBytes(h, name));
      else readTensor(h, name, t.data);
    }
  }
  if (adapter) loadAdapterWeights(dir, adapter);
  else loadWeightsInto(dir, model.table, model.params);
  opt.step = ck.optimizerStep;
}

/** Deletes the oldest checkpoints beyond `limit` (save_total_limit); returns the deleted folders. */
export function rotateCheckpoints(outputDir: string, limit: number | null): string[] {
  if (limit === null) return [];
  const all = listCheckpoints(outputDir);
  const gone = all.slice(0, Math.max(0, all.length - limit)).map((c) => c.dir);
  for (const d of gone) removeFolder(d);
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

/** Install order of the final model's files: metadata first, then the config, then the weights (see durable.ts). */
function finalRank(name: string): number {
  if (name === "config.json" || name === ADAPTER_CONFIG_FILE) return 1;
  if (/^model-\d+-of-\d+\.safetensors$/.test(name)) return 2;
  if (name === INDEX_FILE) return 3;
  if (name === SINGLE_FILE || name === ADAPTER_WEIGHTS_FILE) return 4;
  return 0;
}

export interface FinalFiles {
  tokenizerDir: string | null;
  chatTemplate?: string | null;
  card: ModelCard;
  trainerState: TrainerStateJson;
}

/**
 * The final model into output_dir itself (next to metrics.jsonl and the checkpoints): config.json and the weight
 * files, tokenizer files, README.md and trainer_state.json, by replaceFilesInFolder (staged, committed, renamed in
 * one by one with the weights last), so a complete model is on disk at every instant; the files of an earlier
 * model or adapter that this one does not have are deleted last (an adapter left by a LoRA run would make
 * transformers load base + adapter instead of these weights). `dtype` is the stored dtype (the run's dtype, by
 * default the input checkpoint's); checkpoint-N/ folders always keep fp32 so that a resume continues from exactly
 * the trained weights.
 */
export function saveFinalModel(outputDir: string, model: NativeModel, configJson: Record<string, unknown>, f: FinalFiles, dtype: SaveDtype = "F32"): void {
  replaceFilesInFolder(outputDir, (stage) => {
    writeModelFiles(stage, configJson, model.table, model.params, { dtype });
    copyTokenizerFiles(f.tokenizerDir, stage, f.chatTemplate);
    writeNewFile(join(stage, "README.md"), modelCard(f.card));
    writeNewFile(join(stage, FILES.trainerState), json(f.trainerState));
  }, { label: "final-model", rank: finalRank, stale: (n) => isModelWeightFile(n) || isAdapterFile(n) });
}

/**
 * The final LoRA adapter into output_dir itself, as PEFT's save_pretrained lays it out (adapter_config.json,
 * adapter_model.safetensors, README.md), plus the tokenizer files and trainer_state.json, the same way as
 * saveFinalModel. A full model's config.json and weights from an earlier run in the same folder are deleted
 * last, so nobody loads them by mistake.
 */
export function saveFinalAdapter(outputDir: string, adapter: LoraAdapter, baseModelNameOrPath: string, f: FinalFiles): void {
  replaceFilesInFolder(outputDir, (stage) => {
    writeAdapterFiles(stage, adapter, baseModelNameOrPath);
    copyTokenizerFiles(f.tokenizerDir, stage, f.chatTemplate);
    writeNewFile(join(stage, "README.md"), modelCard({ ...f.card, adapter: true }));
    writeNewFile(join(stage, FILES.trainerState), json(f.trainerState));
  }, { label: "final-model", rank: finalRank, stale: (n) => isModelWeightFile(n) || n === "config.json" });
}
