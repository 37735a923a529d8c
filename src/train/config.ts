// The `preftune train` configuration: one schema of TRL/HF snake_case keys (type, per-method default, doc)
// that validates YAML/JSON files and `--key value` overrides and also renders `--help`, so the two cannot
// drift. Unknown keys get the closest valid key; conflicting values name both keys.
// Not the training loop (loop.ts) and not the loss math (src/losses): this only produces a checked object.
import { readFileSync } from "node:fs";
import { extname } from "node:path";
import { parse as parseYaml } from "yaml";
import { DPO_LOSS_TYPES, F_DIVERGENCE_TYPES } from "../losses/dpo.ts";
import { resolveTargetModules } from "../models/peft.ts";
import { SCHEDULER_TYPES } from "./schedule.ts";

export const METHODS = ["orpo", "dpo", "ipo", "kto", "simpo", "cpo", "sft"] as const;
export type TrainMethod = (typeof METHODS)[number];
const PREFERENCE: readonly TrainMethod[] = ["orpo", "dpo", "ipo", "kto", "simpo", "cpo"];
const WITH_REFERENCE: readonly TrainMethod[] = ["dpo", "ipo", "kto"];

type Group = "run" | "data" | "optimizer" | "schedule" | "logging" | "method" | "peft" | "ignored";
const GROUP_TITLES: Record<Group, string> = {
  run: "Run", data: "Data and tokenization", optimizer: "Optimizer (AdamW)", schedule: "Steps and schedule",
  logging: "Logging, evaluation, checkpoints", method: "Method (loss) settings", peft: "LoRA (PEFT adapters)", ignored: "Accepted and ignored (fp32 CPU)",
};

/** One config key: how to read it, its default (possibly per method) and its one-line doc. */
interface Field<T> {
  type: string;                                  // shown in --help
  group: Group;
  doc: string;
  def: T | ((m: TrainMethod) => T);
  methods?: readonly TrainMethod[];              // the key only applies to these methods
  check(v: unknown): T;                          // throws a short reason
  cli(s: string): unknown;                       // a command-line string -> raw value for check()
}

const fail = (why: string): never => { throw new Error(why); };
const cliNull = (s: string) => (s === "null" || s === "none" || s === "None" ? null : undefined);
function cliNumber(s: string): unknown { const n = cliNull(s); return n === null ? null : s.trim() !== "" && Number.isFinite(Number(s)) ? Number(s) : s; }
function cliBool(s: string): unknown { return s === "true" || s === "1" || s === "" ? true : s === "false" || s === "0" ? false : s; }
function cliString(s: string): unknown { return cliNull(s) === null ? null : s; }
function cliList(s: string): unknown {
  if (s.trim().startsWith("[")) { try { return JSON.parse(s); } catch { return s; } }
  return s.includes(",") ? s.split(",").map((x) => x.trim()) : s;
}

function num<N extends boolean = false>(group: Group, doc: string, def: number | null | ((m: TrainMethod) => number | null),
  o: { min?: number; gt?: number; max?: number; int?: boolean; nullable?: N; methods?: readonly TrainMethod[] } = {}): Field<N extends true ? number | null : number> {
  const type = (o.int ? "int" : "float") + (o.nullable ? " | null" : "");
  return {
    type, group, doc, def: def as never, methods: o.methods, cli: cliNumber,
    check(v) {
      if (v === null && o.nullable) return null as never;
      if (typeof v !== "number" || !Number.isFinite(v)) fail(`must be a ${o.int ? "whole " : ""}number${o.nullable ? " or null" : ""}`);
      const n = v as number;
      if (o.int && !Number.isInteger(n)) fail("must be a whole number");
      if (o.min !== undefined && n < o.min) fail(`must be ≥ ${o.min}`);
      if (o.gt !== undefined && n <= o.gt) fail(`must be > ${o.gt}`);
      if (o.max !== undefined && n > o.max) fail(`must be ≤ ${o.max}`);
      return n as never;
    },
  };
}
function bool(group: Group, doc: string, def: boolean | ((m: TrainMethod) => boolean), methods?: readonly TrainMethod[]): Field<boolean> {
  return { type: "bool", group, doc, def, methods, cli: cliBool, check: (v) => (typeof v === "boolean" ? v : fail("must be true or false")) };
}
function str<N extends boolean = true>(group: Group, doc: string, def: string | null, nullable: N = true as N): Field<N extends true ? string | null : string> {
  return {
    type: nullable ? "string | null" : "string", group, doc, def: def as never, cli: cliString,
    check: (v) => (typeof v === "string" && v !== "" ? v : v === null && nullable ? null : fail("must be a non-empty string")) as never,
  };
}
function oneOf<const V extends string>(group: Group, doc: string, values: readonly V[], def: V | ((m: TrainMethod) => V), methods?: readonly TrainMethod[]): Field<V> {
  return {
    type: values.join(" | "), group, doc, def, methods, cli: cliString,
    check: (v) => (values.includes(v as V) ? (v as V) : fail(`must be one of ${values.join(", ")}`)),
  };
}
/** Accepted for compatibility with TRL recipes and ignored; the note says why. */
function ignored(doc: string): Field<unknown> {
  return { type: "any", group: "ignored", doc, def: null, cli: (s) => cliBool(s) === s ? cliNumber(s) : cliBool(s), check: (v) => v };
}

export const SCHEMA = {
  // run
  method: oneOf("run", "training method (TRL trainer): orpo, dpo, ipo (DPO with loss_type ipo), kto, simpo (CPO with loss_type simpo, cpo_alpha 0), cpo, sft", METHODS, "orpo"),
  model_name_or_path: str("run", "local Hugging Face model folder (config.json, model.safetensors, tokenizer.json)", null),
  output_dir: str("run", "run folder: metrics.jsonl, checkpoint-N/, the final model", null),
  resume_from_checkpoint: { type: "string | bool | null", group: "run", doc: "a checkpoint folder to continue from, or true for the latest complete checkpoint-N in output_dir", def: null, cli: (s: string) => (cliBool(s) === s ? cliString(s) : cliBool(s)), check: (v: unknown) => (v === null || typeof v === "boolean" || (typeof v === "string" && v !== "") ? v : fail("must be a path, true/false or null")) } as Field<string | boolean | null>,
  seed: num("run", "seed of the data order (and of nothing else: there is no dropout)", 42, { int: true, min: 0 }),
  threads: num("run", "native threads (0 = all cores)", 0, { int: true, min: 0 }),
  // data
  dataset: str("data", "training data: a .jsonl/.json/.parquet file or a folder (its train split)", null),
  eval_dataset: str("data", "evaluation data; default: the dataset folder's test split when there is one", null),
  max_length: num("data", "max tokens of prompt+completion (null: no limit)", 1024, { int: true, min: 1, nullable: true }),
  max_prompt_length: num("data", "max prompt tokens (classic TRL truncation; null: none)", null, { int: true, min: 1, nullable: true }),
  max_completion_length: num("data", "max completion tokens (null: none)", null, { int: true, min: 1, nullable: true }),
  truncation_mode: oneOf("data", "which end of a too-long sequence to keep", ["keep_start", "keep_end"] as const, "keep_start"),
  chat_template: str("data", "chat template to use instead of the tokenizer's (template text or a named template)", null),
  prompt_column: str("data", "column holding the prompt (default prompt)", null),
  chosen_column: str("data", "column holding the chosen completion (default chosen)", null),
  rejected_column: str("data", "column holding the rejected completion (default rejected)", null),
  completion_column: str("data", "column holding the completion of unpaired rows (default completion)", null),
  label_column: str("data", "column holding the desirable flag of unpaired rows (default label)", null),
  dataset_cache_dir: str("data", "folder of the tokenized-dataset cache (null: no cache)", ".cache/preftune"),
  skip_bad_rows: bool("data", "skip (and count) malformed rows instead of stopping", false),
  pad_to_multiple_of: num("data", "pad each batch's length to a multiple of this", null, { int: true, min: 1, nullable: true }),
  train_sampling_strategy: oneOf("data", "batch order: random (reshuffled each epoch from seed) or sequential; TRL KTO uses sequential", ["random", "sequential"] as const, (m) => (m === "kto" ? "sequential" : "random")),
  group_by_length: bool("data", "batch rows of similar length together (less padding)", false),
  dataloader_drop_last: bool("data", "drop the last incomplete batch of each epoch", false),
  precompute_ref_log_probs: bool("data", "compute the reference log-probs once before training (saved as ref_logps.safetensors in output_dir) instead of keeping a reference model", false, WITH_REFERENCE),
  precompute_ref_batch_size: num("data", "batch size of that pass (null: per_device_eval_batch_size)", null, { int: true, min: 1, nullable: true, methods: WITH_REFERENCE }),
  // optimizer
  learning_rate: num("optimizer", "peak learning rate", (m) => (m === "sft" ? 2e-5 : 1e-6), { gt: 0 }),
  adam_beta1: num("optimizer", "AdamW β1", 0.9, { min: 0, max: 1 }),
  adam_beta2: num("optimizer", "AdamW β2", 0.999, { min: 0, max: 1 }),
  adam_epsilon: num("optimizer", "AdamW ε", 1e-8, { gt: 0 }),
  weight_decay: num("optimizer", "decoupled weight decay (not applied to biases and norm weights)", 0, { min: 0 }),
  max_grad_norm: num("optimizer", "clip the global gradient norm to this (0 or null: no clipping); the pre-clip norm is logged as grad_norm", 1.0, { min: 0, nullable: true }),
  optim: oneOf("optimizer", "optimizer; only AdamW exists here (the torch names are accepted)", ["adamw_torch", "adamw_torch_fused", "adamw_hf", "adamw"] as const, "adamw_torch"),
  // steps and schedule
  per_device_train_batch_size: num("schedule", "pairs (rows for kto/sft) per micro-batch", 8, { int: true, min: 1 }),
  per_device_eval_batch_size: num("schedule", "pairs (rows) per evaluation batch", 8, { int: true, min: 1 }),
  gradient_accumulation_steps: num("schedule", "micro-batches per optimizer step", 1, { int: true, min: 1 }),
  num_train_epochs: num("schedule", "passes over the training data (ignored when max_steps > 0)", 3, { gt: 0 }),
  max_steps: num("schedule", "total optimizer steps; > 0 overrides num_train_epochs", -1, { int: true }),
  lr_scheduler_type: oneOf("schedule", "learning-rate schedule (transformers' shapes)", SCHEDULER_TYPES, "linear"),
  warmup_ratio: num("schedule", "fraction of the total steps spent in linear warmup", 0, { min: 0, max: 1 }),
  warmup_steps: num("schedule", "warmup steps (set this or warmup_ratio, not both)", 0, { int: true, min: 0 }),
  // logging, eval, checkpoints
  logging_steps: num("logging", "log every N optimizer steps (metrics averaged over the interval); < 1 is a fraction of the total", 10, { gt: 0 }),
  logging_first_step: bool("logging", "also log after the first step", false),
  eval_strategy: oneOf("logging", "when to evaluate on the eval split", ["no", "steps", "epoch"] as const, "no"),
  eval_steps: num("logging", "evaluate every N steps with eval_strategy steps (null: logging_steps)", null, { gt: 0, nullable: true }),
  eval_on_start: bool("logging", "evaluate once before the first step", false),
  save_strategy: oneOf("logging", "when to write checkpoint-N/", ["no", "steps", "epoch"] as const, "steps"),
  save_steps: num("logging", "write checkpoint-N/ every N steps; < 1 is a fraction of the total", 500, { gt: 0 }),
  save_total_limit: num("logging", "keep at most this many checkpoints (oldest deleted; null: all)", null, { int: true, min: 1, nullable: true }),
  disable_tqdm: bool("logging", "no progress bar (plain log lines only)", false),
  generate_during_eval: bool("logging", "at each evaluation, complete the first eval prompts greedily with the policy (and with the dpo/ipo/kto reference model when one is in memory) and append {step, prompt, policy, ref} lines to output_dir/completions.jsonl (TRL's game_log table; TRL samples); needs evaluations and the model's tokenizer", false, PREFERENCE),
  generate_during_eval_samples: num("logging", "preftune: how many eval prompts generate_during_eval completes, the first distinct ones of the eval split (null: per_device_eval_batch_size, as TRL)", null, { int: true, min: 1, nullable: true, methods: PREFERENCE }),
  generate_during_eval_max_new_tokens: num("logging", "preftune: most new tokens per generate_during_eval completion (it also stops at the tokenizer's EOS and at max_position_embeddings)", 64, { int: true, min: 1, methods: PREFERENCE }),
  // method
  beta: num("method", "β: DPO/KTO temperature, IPO τ, ORPO λ, CPO/SimPO β", (m) => (m === "simpo" ? 2.0 : 0.1), { gt: 0, methods: PREFERENCE }),
  loss_type: { type: "string | string[]", group: "method", doc: "dpo: one or a list of " + DPO_LOSS_TYPES.join(", ") + "; kto: kto | apo_zero_unpaired; cpo: sigmoid | hinge | ipo | simpo | alphapo", def: (m: TrainMethod) => (m === "dpo" ? ["sigmoid"] : m === "ipo" ? "ipo" : m === "kto" ? "kto" : m === "simpo" ? "simpo" : m === "cpo" ? "sigmoid" : null), methods: ["dpo", "ipo", "kto", "cpo", "simpo"], cli: cliList, check: (v: unknown) => (typeof v === "string" || (Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === "string")) ? v : fail("must be a string or a list of strings")) } as Field<string | string[] | null>,
  loss_weights: { type: "float[] | null", group: "method", doc: "dpo: one weight per loss_type (null: 1 each)", def: null, methods: ["dpo"], cli: (s: string) => { const l = cliList(s); return Array.isArray(l) ? l.map(Number) : cliNumber(s); }, check: (v: unknown) => (v === null || (Array.isArray(v) && v.every((x) => typeof x === "number" && Number.isFinite(x))) ? v : fail("must be a list of numbers or null")) } as Field<number[] | null>,
  label_smoothing: num("method", "dpo robust/exo_pair/aot ε; cpo/simpo sigmoid smoothing", 0, { min: 0, max: 0.5, methods: ["dpo", "ipo", "cpo", "simpo"] }),
  f_divergence_type: oneOf("method", "dpo: divergence of the reward", F_DIVERGENCE_TYPES, "reverse_kl", ["dpo"]),
  f_alpha_divergence_coef: num("method", "dpo: α of alpha_divergence", 0.5, { methods: ["dpo"] }),
  desirable_weight: num("method", "kto: λ_D, weight of desirable rows", 1.0, { min: 0, methods: ["kto"] }),
  undesirable_weight: num("method", "kto: λ_U, weight of undesirable rows", 1.0, { min: 0, methods: ["kto"] }),
  cpo_alpha: num("method", "cpo/simpo: weight of the NLL (behaviour cloning) term", (m) => (m === "simpo" ? 0 : 1.0), { min: 0, methods: ["cpo", "simpo"] }),
  simpo_gamma: num("method", "cpo/simpo: SimPO target margin γ", 0.5, { methods: ["cpo", "simpo"] }),
  alpha: num("method", "cpo/simpo: AlphaPO reward shape α (0: plain log-probs)", 0, { methods: ["cpo", "simpo"] }),
  disable_dropout: bool("method", "always on: the native core has no dropout", true),
  // LoRA (TRL ModelConfig / alignment-handbook names)
  use_peft: bool("peft", "train a LoRA adapter instead of every weight; output_dir then holds a PEFT adapter folder, and the DPO/IPO/KTO reference is the policy with its adapter disabled", false),
  lora_r: num("peft", "LoRA rank r", 16, { int: true, min: 1 }),
  lora_alpha: num("peft", "LoRA α: the update B·A is scaled by lora_alpha / r (by lora_alpha / √r with use_rslora)", 32, { gt: 0 }),
  lora_dropout: num("peft", "must be 0: the native core has no dropout (TRL's CLI default is 0.05)", 0, { min: 0, max: 1 }),
  lora_target_modules: { type: "string[] | \"all-linear\" | null", group: "peft", doc: "projections to adapt: a list from q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, or \"all-linear\" (all seven); null: PEFT's Llama default q_proj, v_proj", def: null, cli: cliList, check: (v: unknown) => { if (v !== null) resolveTargetModules(v, "lora_target_modules"); return v; } } as Field<string | string[] | null>,
  use_rslora: bool("peft", "rank-stabilised LoRA: scale by lora_alpha / √r", false),
  lora_task_type: oneOf("peft", "PEFT task type of the adapter (only causal LM)", ["CAUSAL_LM"] as const, "CAUSAL_LM"),
  use_dora: bool("peft", "must be false: DoRA is not implemented", false),
  merge_adapter: bool("peft", "preftune: also write the adapter merged into the base weights (W += s·B·A) as a full model in output_dir/merged", false),
  // accepted and ignored
  bf16: ignored("ignored: training runs in fp32 on the CPU"),
  fp16: ignored("ignored: training runs in fp32 on the CPU"),
  tf32: ignored("ignored: no GPU"),
  torch_dtype: ignored("ignored: weights are loaded as fp32"),
  gradient_checkpointing: ignored("ignored: the native core recomputes attention itself"),
  gradient_checkpointing_kwargs: ignored("ignored, as gradient_checkpointing"),
  attn_implementation: ignored("ignored: the native core has one attention kernel"),
  use_liger_kernel: ignored("ignored: the lm_head + log-softmax is already fused and chunked"),
  report_to: ignored("ignored: metrics go to output_dir/metrics.jsonl"),
  run_name: ignored("ignored"),
  logging_dir: ignored("ignored: logs go to output_dir"),
  push_to_hub: ignored("ignored: no network"),
  hub_model_id: ignored("ignored: no network"),
  dataset_num_proc: ignored("ignored: tokenization runs in one process (and is cached)"),
  dataloader_num_workers: ignored("ignored"),
  remove_unused_columns: ignored("ignored"),
  model_init_kwargs: ignored("ignored"),
  trust_remote_code: ignored("ignored: no remote code is ever run"),
  do_train: ignored("ignored"),
  load_in_4bit: ignored("ignored: the frozen base stays fp32 (no 4-bit quantization; QLoRA recipes train plain LoRA here)"),
  load_in_8bit: ignored("ignored: the frozen base stays fp32 (no 8-bit quantization)"),
  do_eval: ignored("ignored: use eval_strategy"),
  overwrite_output_dir: ignored("ignored: an existing output_dir is reused; checkpoints in it are kept"),
} as const;

type FieldValue<F> = F extends Field<infer T> ? T : never;
export type TrainConfig = { -readonly [K in keyof typeof SCHEMA]: FieldValue<(typeof SCHEMA)[K]> };
export type ConfigKey = keyof typeof SCHEMA;
export const CONFIG_KEYS = Object.keys(SCHEMA) as ConfigKey[];
const field = (k: ConfigKey) => SCHEMA[k] as Field<unknown>;
/** Keys accepted only for compatibility with TRL recipes; they change nothing. */
export const IGNORED_KEYS: readonly ConfigKey[] = CONFIG_KEYS.filter((k) => field(k).group === "ignored");

/** Levenshtein distance, for "did you mean" suggestions. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}

export function closestKey(key: string): ConfigKey {
  const norm = key.toLowerCase().replace(/-/g, "_");
  let best = CONFIG_KEYS[0], bestD = Infinity;
  for (const k of CONFIG_KEYS) {
    const d = editDistance(norm, k);
    if (d < bestD) { best = k; bestD = d; }
  }
  return best;
}

export class ConfigError extends Error {}

function defaultOf(k: ConfigKey, m: TrainMethod): unknown {
  const d = field(k).def;
  const v = typeof d === "function" ? (d as (m: TrainMethod) => unknown)(m) : d;
  return Array.isArray(v) ? [...v] : v;
}

/** Every key's default for a method (keys that do not apply to it keep their generic default). */
export function defaultsFor(method: TrainMethod): TrainConfig {
  return Object.fromEntries(CONFIG_KEYS.map((k) => [k, defaultOf(k, method)])) as TrainConfig;
}

/**
 * Checks raw key/values (from a file, overrides, or code) and fills defaults for the method.
 * `source` names where the values came from, for messages. Throws ConfigError listing every problem.
 */
export function resolveConfig(raw: Record<string, unknown>, source = "config"): { config: TrainConfig; notes: string[] } {
  const problems: string[] = [];
  const notes: string[] = [];
  for (const k of Object.keys(raw)) {
    if (!(k in SCHEMA)) problems.push(`unknown key "${k}"; did you mean "${closestKey(k)}"? (preftune train --help lists every key)`);
  }
  const methodRaw = raw.method ?? null;
  if (methodRaw === null) problems.push(`"method" is required: one of ${METHODS.join(", ")}`);
  let method: TrainMethod = "orpo";
  try { if (methodRaw !== null) method = SCHEMA.method.check(methodRaw); } catch (e) { problems.push(`method: ${(e as Error).message}, got ${JSON.stringify(methodRaw)}`); }
  const config = defaultsFor(method) as Record<string, unknown>;
  for (const [k, v] of Object.entries(raw)) {
    if (!(k in SCHEMA) || k === "method") continue;
    const f = field(k as ConfigKey);
    if (f.methods && !f.methods.includes(method)) {
      problems.push(`${k} does not apply to method ${method} (it is for ${f.methods.join(", ")}); remove ${k} or change method`);
      continue;
    }
    if (f.group === "ignored") { notes.push(`${k}: ${f.doc}`); continue; }
    try { config[k] = f.check(v); } catch (e) { problems.push(`${k}: ${(e as Error).message}, got ${JSON.stringify(v)}`); }
  }
  config.method = method;
  const c = config as TrainConfig;
  const loraKeys = Object.keys(raw).filter((k) => SCHEMA[k as ConfigKey]?.group === "peft" && k !== "use_peft");
  if (!c.use_peft && loraKeys.length > 0) notes.push(`${loraKeys.join(", ")}: ignored because use_peft is false (set use_peft: true to train a LoRA adapter)`);
  for (const k of ["model_name_or_path", "dataset", "output_dir"] as const) {
    if (c[k] === null) problems.push(`"${k}" is required (${field(k).doc})`);
  }
  if (problems.length === 0) problems.push(...conflicts(c, raw));
  if (problems.length > 0) throw new ConfigError(`${source}: ${problems.length} problem${problems.length > 1 ? "s" : ""}:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  return { config: c, notes };
}

const KTO_LOSSES = ["kto", "apo_zero_unpaired"];
const CPO_LOSSES = ["sigmoid", "hinge", "ipo", "simpo", "alphapo"];

/** Values that are each valid but not together; every message names both keys. */
function conflicts(c: TrainConfig, raw: Record<string, unknown>): string[] {
  const out: string[] = [];
  if (c.warmup_ratio > 0 && c.warmup_steps > 0) out.push(`warmup_ratio (${c.warmup_ratio}) and warmup_steps (${c.warmup_steps}) are both set; keep one`);
  const lt = c.loss_type;
  const list = lt === null ? [] : Array.isArray(lt) ? lt : [lt];
  const m = c.method;
  if (m === "kto" && !(list.length === 1 && KTO_LOSSES.includes(list[0]))) out.push(`method kto with loss_type ${JSON.stringify(lt)}: kto takes loss_type ${KTO_LOSSES.join(" or ")}`);
  if ((m === "cpo" || m === "simpo") && !(list.length === 1 && CPO_LOSSES.includes(list[0]))) out.push(`method ${m} with loss_type ${JSON.stringify(lt)}: ${m} takes one of ${CPO_LOSSES.join(", ")}`);
  if (m === "simpo" && typeof lt === "string" && lt !== "simpo" && lt !== "alphapo") out.push(`method simpo with loss_type ${lt}: use method cpo for loss_type ${lt}`);
  if (m === "ipo" && !(list.length === 1 && list[0] === "ipo")) out.push(`method ipo with loss_type ${JSON.stringify(lt)}: ipo is DPO with loss_type ipo; use method dpo for other loss types`);
  if (m === "dpo") {
    for (const t of list) if (!(DPO_LOSS_TYPES as readonly string[]).includes(t)) out.push(`method dpo with loss_type "${t}": use one of ${DPO_LOSS_TYPES.join(", ")}${KTO_LOSSES.includes(t) ? " (for kto use method kto)" : ""}`);
    if (c.loss_weights && c.loss_weights.length !== list.length) out.push(`loss_weights has ${c.loss_weights.length} entries but loss_type has ${list.length}; give one weight per loss type`);
  }
  if (m === "kto" && c.loss_type === "kto" && c.per_device_train_batch_size < 2) out.push(`method kto with per_device_train_batch_size ${c.per_device_train_batch_size}: the KL estimate needs at least 2 rows per batch (or loss_type apo_zero_unpaired)`);
  if (c.max_length !== null && c.max_prompt_length !== null && c.max_prompt_length >= c.max_length) out.push(`max_prompt_length (${c.max_prompt_length}) must be below max_length (${c.max_length})`);
  if (c.max_steps <= 0 && raw.max_steps !== undefined && c.max_steps !== -1) out.push(`max_steps ${c.max_steps}: use a positive step count, or -1 to train num_train_epochs (${c.num_train_epochs})`);
  if (raw.eval_steps !== undefined && raw.eval_steps !== null && c.eval_strategy !== "steps") out.push(`eval_steps (${c.eval_steps}) is set but eval_strategy is "${c.eval_strategy}"; set eval_strategy: steps`);
  if (raw.save_steps !== undefined && c.save_strategy !== "steps") out.push(`save_steps (${c.save_steps}) is set but save_strategy is "${c.save_strategy}"; set save_strategy: steps`);
  if (c.disable_dropout === false) out.push("disable_dropout: false is not possible: the native core has no dropout");
  if (raw.precompute_ref_batch_size != null && !c.precompute_ref_log_probs) out.push("precompute_ref_batch_size is set but precompute_ref_log_probs is false; set precompute_ref_log_probs: true");
  if (c.use_peft && c.lora_dropout !== 0) out.push(`lora_dropout ${c.lora_dropout}: preftune's native core has no dropout, so LoRA needs lora_dropout: 0 (TRL's CLI default and the handbook recipes use 0.05); set lora_dropout: 0`);
  if (c.use_peft && c.use_dora) out.push("use_dora: true is not supported (DoRA is not implemented); set use_dora: false for plain LoRA");
  if (c.generate_during_eval && c.eval_strategy === "no" && !c.eval_on_start) out.push('generate_during_eval: true logs completions at each evaluation, but eval_strategy is "no" and eval_on_start is false; set eval_strategy: steps (or epoch), or eval_on_start: true');
  for (const k of ["generate_during_eval_samples", "generate_during_eval_max_new_tokens"] as const) {
    if (raw[k] != null && !c.generate_during_eval) out.push(`${k} is set but generate_during_eval is false; set generate_during_eval: true`);
  }
  if (c.merge_adapter && !c.use_peft) out.push("merge_adapter: true needs use_peft: true (there is no adapter to merge in full fine-tuning)");
  return out;
}

/** Reads a YAML (.yaml/.yml) or JSON file of config keys. */
export function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try { text = readFileSync(file, "utf8"); } catch (e) { throw new ConfigError(`${file}: cannot read the config file (${(e as Error).message})`); }
  const ext = extname(file).toLowerCase();
  let value: unknown;
  try {
    if (ext === ".json") value = JSON.parse(text);
    else if (ext === ".yaml" || ext === ".yml") value = parseYaml(text);
    else throw new Error(`unknown extension "${ext}"; use .yaml, .yml or .json`);
  } catch (e) {
    throw new ConfigError(`${file}: not valid ${ext === ".json" ? "JSON" : "YAML"}: ${(e as Error).message}`);
  }
  if (value === null || value === undefined) return {};
  if (typeof value !== "object" || Array.isArray(value)) throw new ConfigError(`${file}: the config must be a mapping of key: value`);
  return value as Record<string, unknown>;
}

/**
 * `--key value`, `--key=value` and bare `--flag` (true) overrides, typed by the schema: numbers, booleans,
 * lists ("a,b" or JSON), null ("null"/"none"). Keys may use dashes. Unknown keys get a suggestion.
 */
export function parseOverrides(args: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!a.startsWith("--") || a === "--") throw new ConfigError(`unexpected argument "${a}": overrides are --key value`);
    const eq = a.indexOf("=");
    const key = (eq >= 0 ? a.slice(2, eq) : a.slice(2)).replace(/-/g, "_");
    if (!(key in SCHEMA)) throw new ConfigError(`unknown option --${key}; did you mean --${closestKey(key)}? (preftune train --help lists every key)`);
    const f = field(key as ConfigKey);
    let s: string;
    if (eq >= 0) s = a.slice(eq + 1);
    else if (f.type === "bool" && (i + 1 >= args.length || args[i + 1].startsWith("--") || !["true", "false", "0", "1"].includes(args[i + 1]))) s = "true";
    else if (i + 1 < args.length) s = args[++i];
    else throw new ConfigError(`--${key} needs a value (${f.type})`);
    out[key] = f.cli(s);
  }
  return out;
}

/** File values, then overrides on top, then defaults and checks. */
export function loadConfig(file: string | null, overrides: readonly string[] = []): { config: TrainConfig; notes: string[] } {
  const raw = file ? readConfigFile(file) : {};
  const o = parseOverrides(overrides);
  return resolveConfig({ ...raw, ...o }, file ? (overrides.length ? `${file} + command-line overrides` : file) : "command-line options");
}

const REQUIRED: readonly ConfigKey[] = ["method", "model_name_or_path", "dataset", "output_dir"];
const show = (v: unknown): string =>
  typeof v === "number" && v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential() : Array.isArray(v) ? `[${v.map(show).join(", ")}]` : JSON.stringify(v);

function showDefault(k: ConfigKey): string {
  if (REQUIRED.includes(k)) return "required";
  const per = METHODS.map((m) => show(defaultOf(k, m)));
  const f = field(k);
  const applies = f.methods ?? METHODS;
  const vals = new Map<string, TrainMethod[]>();
  METHODS.forEach((m, i) => { if (applies.includes(m)) vals.set(per[i], [...(vals.get(per[i]) ?? []), m]); });
  if (vals.size <= 1) return [...vals.keys()][0] ?? "null";
  return [...vals.entries()].map(([v, ms]) => `${v} (${ms.join(", ")})`).join("; ");
}

/** The `preftune train --help` key reference, generated from SCHEMA. */
export function configHelp(): string {
  const lines: string[] = [];
  const W = Math.max(30, ...CONFIG_KEYS.map((k) => k.length));
  for (const g of Object.keys(GROUP_TITLES) as Group[]) {
    lines.push("", `${GROUP_TITLES[g]}:`);
    for (const k of CONFIG_KEYS) {
      const f = field(k);
      if (f.group !== g) continue;
      if (g === "ignored") { lines.push(`  ${k.padEnd(W)} ${f.doc}`); continue; }
      const only = f.methods ? ` [${f.methods.join(", ")}]` : "";
      const d = showDefault(k);
      lines.push(`  ${k.padEnd(W)} ${f.doc}${only}`, `  ${"".padEnd(W)} ${f.type}${d === "required" ? ", required" : `, default ${d}`}`);
    }
  }
  return lines.join("\n");
}
