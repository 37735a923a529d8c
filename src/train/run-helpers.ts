// The pure helpers of a training run (src/train/trainer.ts): KTO's fixed KL pairs, the objectives' method
// settings, the precomputed reference's fingerprint, the model card's hyperparameters, and the output_dir check.
// No state and no I/O beyond reading what a fingerprint or a path check needs.
import { createHash } from "node:crypto";
import { realpathSync, statSync } from "node:fs";
import { basename, dirname, isAbsolute, join, relative, resolve } from "node:path";
import type { PackedRow } from "../data/packing.ts";
import type { TokenizedUnpaired } from "../data/tokenize.ts";
import type { ModelFiles } from "../models/checkpoint.ts";
import { defaultsFor, IGNORED_KEYS, type TrainConfig } from "./config.ts";
import type { Rows } from "./data.ts";
import type { MethodConfig } from "./objectives.ts";
import { readTextFile } from "../util/durable.ts";

/**
 * TRL's KTO KL pairs, fixed at data-prep time for every row (TRL's _get_kl_dataset, mapped in chunks of the batch
 * size): within a chunk, row i gets row i−1's completion and the first row the last's; a chunk of one row (the
 * last of an odd-sized set) gets its own. Rows that already have kl_completion_ids keep them. The KL term and
 * precomputed reference KL log-probs (reference.ts) are per row, so the collator never picks a pairing itself.
 */
export function withKlCompletions(rows: TokenizedUnpaired[], chunk: number): TokenizedUnpaired[] {
  const out = rows.map((r) => ({ ...r }));
  for (let s = 0; s < out.length; s += chunk) {
    const n = Math.min(chunk, out.length - s);
    for (let i = 0; i < n; i++) out[s + i].kl_completion_ids ??= rows[s + ((i + n - 1) % n)].completion_ids;
  }
  return out;
}

export const isPacked = (rows: Rows): rows is PackedRow[] => rows.length > 0 && "segments" in rows[0];

export function methodConfig(c: TrainConfig): MethodConfig {
  return {
    method: c.method, beta: c.method === "sft" ? 0 : c.beta, loss_type: c.loss_type ?? undefined, loss_weights: c.loss_weights,
    label_smoothing: c.label_smoothing, cpo_alpha: c.cpo_alpha, simpo_gamma: c.simpo_gamma, alpha: c.alpha,
    desirable_weight: c.desirable_weight, undesirable_weight: c.undesirable_weight,
    f_divergence_type: c.f_divergence_type, f_alpha_divergence_coef: c.f_alpha_divergence_coef,
  };
}

/** What precomputed reference values depend on; file stats stand in for hashing multi-GB weights. */
export function refFingerprint(modelDir: string, modelFiles: ModelFiles, rows: Rows, extra: unknown): string {
  const h = createHash("sha256");
  h.update(resolve(modelDir)).update(readTextFile(join(modelDir, "config.json"), "model config"));
  for (const f of modelFiles.shards.map((s) => s.file)) { const st = statSync(f); h.update(`${f}:${st.size}:${st.mtimeMs}`); }
  h.update(JSON.stringify(rows)).update(JSON.stringify(extra));
  return h.digest("hex").slice(0, 32);
}

export function allFinite(a: Float32Array): boolean {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return false;
  return true;
}

/** The model card's settings: the ones people compare runs by, plus every key that differs from its default. */
export function cardHyperparameters(c: TrainConfig): Record<string, unknown> {
  const d = defaultsFor(c.method) as Record<string, unknown>;
  const core = ["learning_rate", "beta", "loss_type", "lr_scheduler_type", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs", "max_steps", "max_length", "seed"];
  // the data source is named by the card itself; paths and run switches are not hyperparameters
  const skip = new Set<string>([...IGNORED_KEYS, "model_name_or_path", "dataset", "dataset_name", "dataset_mixture", "datasets", "dataset_mixer", "eval_dataset", "chat_template_path", "output_dir", "resume_from_checkpoint", "method", "threads", "disable_tqdm", "dataset_cache_dir"]);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(c)) {
    if (skip.has(k) || v === null) continue;
    if (core.includes(k) || JSON.stringify(v) !== JSON.stringify(d[k])) out[k] = v;
  }
  return out;
}

export const tick = () => new Promise<void>((r) => setImmediate(r));

/** The real path of p, for a p that may not exist yet: its longest existing prefix resolved, the rest appended. */
function realPath(p: string): string {
  const abs = resolve(p);
  const rest: string[] = [];
  for (let q = abs; ; q = dirname(q)) {
    try { return join(realpathSync(q), ...rest.reverse()); } catch { /* not there yet */ }
    if (dirname(q) === q) return abs;
    rest.push(basename(q));
  }
}

/**
 * Refuses, before anything is written, an output_dir that is the folder the run reads its model (and, for
 * dpo/ipo/kto, its reference) from, or lies inside it: the final save would overwrite the weights it starts from.
 */
export function checkOutputDir(outputDir: string, modelDir: string): void {
  const out = realPath(outputDir), model = realPath(modelDir);
  const rel = relative(model, out);
  if (rel === "") throw new Error(`output_dir ${outputDir} is the model folder (model_name_or_path: ${modelDir}); the final save would overwrite the weights this run starts from. Use another output_dir`);
  if (!rel.startsWith("..") && !isAbsolute(rel)) throw new Error(`output_dir ${outputDir} lies inside the model folder (model_name_or_path: ${modelDir}); runs write beside models, not into them. Use an output_dir outside ${modelDir}`);
}

