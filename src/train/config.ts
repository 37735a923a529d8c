// The `preftune train` configuration: one schema of TRL/HF snake_case keys (type, per-method default, doc)
// that validates YAML/JSON files and command lines and also renders `--help`, so they cannot drift. Keys that
// change nothing here (config-compat.ts) are accepted with their reason printed once; deprecated names map onto
// their current key with a note; unknown keys get a suggestion by meaning first, then by spelling. Every
// problem of a file and its command line is reported at once.
// Not the training loop (loop.ts) and not the loss math (src/losses): this only produces a checked object.
import { extname } from "node:path";
import { parse as parseYaml } from "yaml";
import { F_DIVERGENCE_TYPES } from "../losses/dpo.ts";
import { checkTargetModules } from "../models/peft.ts";
import { ADAMW_8BIT_OPTIMS } from "../core/adamw8bit.ts";
import { ALIASES, COMPAT_KEYS, MISNAMES, type Alias, type CompatKey, type CompatKind } from "./config-compat.ts";
import { parseMixture } from "../data/mixture.ts";
import { trlDatasetsMixture } from "./data.ts";
import { METRIC_SCHEDULERS, SCHEDULER_TYPES, schedulerKwargsProblems } from "./schedule.ts";
import { nearest } from "../util/spelling.ts";
import { readTextFile } from "../util/durable.ts";

import { LOSS_KEY_DEFAULTS, lossKeyDefault, lossProblems, lossTypeList, METHODS, methodSpec, methodsReading, methodsWhere, normalLossType, type Method } from "./methods.ts";

export { METHODS };
export type TrainMethod = Method;
const PREFERENCE = methodsWhere((s) => s.loss !== "sft");
const WITH_REFERENCE = methodsWhere((s) => s.reference);

type Group = "run" | "data" | "optimizer" | "schedule" | "logging" | "method" | "peft" | "quant" | "compat";
const GROUP_TITLES: Record<Group, string> = {
  run: "Run and model", data: "Data and tokenization", optimizer: "Optimizer (AdamW)", schedule: "Steps and schedule",
  logging: "Logging, evaluation, checkpoints", method: "Method (loss) settings", peft: "LoRA (PEFT adapters)",
  quant: "4-bit frozen base (QLoRA: TRL ModelConfig / bitsandbytes BitsAndBytesConfig names)",
  compat: "Accepted for compatibility (no effect here; a recipe that sets one gets its reason printed once)",
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
  bare?: "bool" | "optional";                    // bare --key means true; "bool": only a true/false word may follow as its value
  list?: boolean;                                // takes several values on the command line (argparse nargs="+")
}

const fail = (why: string): never => { throw new Error(why); };
const TRUE_WORDS = ["true", "yes", "t", "y", "1"], FALSE_WORDS = ["false", "no", "f", "n", "0"];   // HfArgumentParser's string_to_bool
const isBoolWord = (s: string) => TRUE_WORDS.includes(s.toLowerCase()) || FALSE_WORDS.includes(s.toLowerCase());
const cliNull = (s: string) => (s === "null" || s === "none" || s === "None" ? null : undefined);
function cliNumber(s: string): unknown { const n = cliNull(s); return n === null ? null : s.trim() !== "" && Number.isFinite(Number(s)) ? Number(s) : s; }
function cliBool(s: string): unknown { return s === "" || TRUE_WORDS.includes(s.toLowerCase()) ? true : FALSE_WORDS.includes(s.toLowerCase()) ? false : cliNull(s) === null ? null : s; }
function cliString(s: string): unknown { return cliNull(s) === null ? null : s; }
function cliList(s: string): unknown {
  if (cliNull(s) === null) return null;
  if (s.trim().startsWith("[")) { try { return JSON.parse(s); } catch { return s; } }
  return s.includes(",") ? s.split(",").map((x) => x.trim()) : s;
}
function cliDict(s: string): unknown {
  if (cliNull(s) === null) return null;
  if (s.trim().startsWith("{")) { try { return JSON.parse(s); } catch { return s; } }
  return s;
}
function cliAny(s: string): unknown {
  if (isBoolWord(s) && !/^[01]$/.test(s)) return cliBool(s);
  const n = cliNumber(s);
  if (typeof n === "number" || n === null) return n;
  return s.trim().startsWith("{") || s.trim().startsWith("[") ? (() => { try { return JSON.parse(s); } catch { return s; } })() : s;
}

function num<N extends boolean = false>(group: Group, doc: string, def: number | null | ((m: TrainMethod) => number | null),
  o: { min?: number; gt?: number; max?: number; lt?: number; int?: boolean; intAbove1?: boolean; nullable?: N; methods?: readonly TrainMethod[] } = {}): Field<N extends true ? number | null : number> {
  const type = (o.int ? "int" : "float") + (o.nullable ? " | null" : "");
  return {
    type, group, doc, def: def as never, methods: o.methods, cli: cliNumber,
    check(v) {
      if (v === null && o.nullable) return null as never;
      if (typeof v !== "number" || !Number.isFinite(v)) fail(`must be a ${o.int ? "whole " : ""}number${o.nullable ? " or null" : ""}`);
      const n = v as number;
      if (o.int && !Number.isInteger(n)) fail("must be a whole number");
      // transformers: a step interval above 1 is a count and must be whole; below 1 it is a share of the total
      if (o.intAbove1 && n > 1 && !Number.isInteger(n)) fail("must be a whole number when above 1 (a value below 1 is a fraction of the total steps)");
      if (o.min !== undefined && n < o.min) fail(`must be ≥ ${o.min}`);
      if (o.gt !== undefined && n <= o.gt) fail(`must be > ${o.gt}`);
      if (o.max !== undefined && n > o.max) fail(`must be ≤ ${o.max}`);
      if (o.lt !== undefined && n >= o.lt) fail(`must be < ${o.lt}`);
      return n as never;
    },
  };
}
function bool(group: Group, doc: string, def: boolean | ((m: TrainMethod) => boolean), methods?: readonly TrainMethod[]): Field<boolean> {
  return { type: "bool", group, doc, def, methods, cli: cliBool, bare: "bool", check: (v) => (typeof v === "boolean" ? v : fail("must be true or false")) };
}
function nullableBool(group: Group, doc: string, def: boolean | null): Field<boolean | null> {
  return { type: "bool | null", group, doc, def, cli: cliBool, bare: "bool", check: (v) => (typeof v === "boolean" || v === null ? v : fail("must be true, false or null")) };
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
function dict(group: Group, doc: string): Field<Record<string, unknown> | null> {
  return {
    type: "mapping | null", group, doc, def: null, cli: cliDict,
    check(v) {
      // transformers parses a dict field given as a JSON string (TrainingArguments._VALID_DICT_FIELDS)
      if (typeof v === "string" && v.trim().startsWith("{")) { try { v = JSON.parse(v); } catch { fail("is a string that is not valid JSON"); } }
      return v === null ? null : typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : fail('must be a mapping (YAML, or JSON on the command line: \'{"key": value}\') or null');
    },
  };
}

/** An accepted-for-compatibility key (config-compat.ts) as a schema field: checked by kind, no effect. */
function compatField(k: CompatKey): Field<unknown> {
  const kinds: Record<CompatKind, { type: string; cli: (s: string) => unknown; ok: (v: unknown) => boolean; what: string }> = {
    bool: { type: "bool", cli: cliBool, ok: (v) => typeof v === "boolean", what: "true or false" },
    int: { type: "int", cli: cliNumber, ok: (v) => Number.isInteger(v), what: "a whole number" },
    float: { type: "float", cli: cliNumber, ok: (v) => typeof v === "number" && Number.isFinite(v), what: "a number" },
    string: { type: "string", cli: cliString, ok: (v) => typeof v === "string", what: "a string" },
    list: { type: "list", cli: cliList, ok: (v) => Array.isArray(v) || typeof v === "string", what: "a list" },
    dict: { type: "mapping", cli: cliDict, ok: (v) => (typeof v === "object" && !Array.isArray(v)) || typeof v === "string", what: "a mapping" },
    any: { type: "any", cli: cliAny, ok: () => true, what: "any value" },
  };
  const c = kinds[k.kind];
  return {
    type: c.type, group: "compat", doc: k.why, def: k.def, cli: c.cli, bare: k.kind === "bool" ? "bool" : undefined, list: k.kind === "list",
    check(v) {
      if (v !== null && !c.ok(v)) fail(`must be ${c.what}${k.values ? ` (${k.values.join(", ")})` : ""}`);
      if (k.values && v !== null && !k.values.includes(String(v))) fail(`must be one of ${k.values.join(", ")}`);
      return v;
    },
  };
}

/**
 * transformers' optim names that run AdamW: fp32 AdamW for ADAMW (and bitsandbytes' paged_adamw_32bit, the same
 * update), bitsandbytes' 8-bit AdamW for ADAMW_8BIT_OPTIMS (src/core/adamw8bit.ts), and torchao's low-bit AdamW
 * (not built) as fp32 AdamW with a note.
 */
const ADAMW = ["adamw_torch", "adamw_torch_fused", "adamw_hf", "adamw", "adamw_torch_xla", "adamw_torch_npu_fused", "adamw_apex_fused", "adamw_anyprecision", "paged_adamw_32bit"];
const ADAMW_TORCHAO = ["adamw_torch_8bit", "adamw_torch_4bit"];
const ADAMW_LOWBIT = [...ADAMW_8BIT_OPTIMS, ...ADAMW_TORCHAO];
const OTHER_OPTIMIZERS = [
  "adafactor", "ademamix", "sgd", "adagrad", "ademamix_8bit", "lion_8bit", "lion_32bit", "paged_ademamix_32bit", "paged_ademamix_8bit",
  "paged_lion_32bit", "paged_lion_8bit", "rmsprop", "rmsprop_bnb", "rmsprop_bnb_8bit", "rmsprop_bnb_32bit", "galore_adamw", "galore_adamw_8bit",
  "galore_adafactor", "galore_adamw_layerwise", "galore_adamw_8bit_layerwise", "galore_adafactor_layerwise", "lomo", "adalomo", "grokadamw",
  "schedule_free_radam", "schedule_free_adamw", "schedule_free_sgd", "apollo_adamw", "apollo_adamw_layerwise", "stable_adamw",
];
const DTYPES = ["auto", "bfloat16", "float16", "float32"] as const;

const HONOURED = {
  // run and model
  method: oneOf("run", `training method (TRL trainer): ${METHODS.map((m) => `${m} (${methodSpec(m).about})`).join("; ")}`, METHODS, "orpo"),
  model_name_or_path: str("run", "local Hugging Face model folder (config.json, model.safetensors, tokenizer.json)", null),
  output_dir: str("run", "run folder: metrics.jsonl, checkpoint-N/, the final model (transformers 5's default: trainer_output)", "trainer_output"),
  resume_from_checkpoint: { type: "string | bool | null", group: "run", doc: "a checkpoint folder to continue from, or true for the latest complete checkpoint-N in output_dir", def: null, bare: "optional", cli: (s: string) => (isBoolWord(s) ? cliBool(s) : cliString(s)), check: (v: unknown) => (v === null || typeof v === "boolean" || (typeof v === "string" && v !== "") ? v : fail("must be a path, true/false or null")) } as Field<string | boolean | null>,
  seed: num("run", "seed of the data order, the LoRA initialisation and the LoRA dropout masks", 42, { int: true, min: 0, max: 4294967295 }),
  data_seed: num("run", "seed of the data order only (null: seed), as transformers' data_seed", null, { int: true, min: 0, max: 4294967295, nullable: true }),
  threads: num("run", "native threads (0 = all cores; under mpirun each rank gets the machine's cores ÷ the ranks on it)", 0, { int: true, min: 0 }),
  gradient_checkpointing: { ...bool("run", "keep only each decoder layer's input in the forward and recompute the layer in the backward: activation memory stops growing with the layer count, for about one more forward per step; losses and gradients are unchanged (TRL defaults to true for GPU memory; here the default stays false)", false), type: "bool | null", check: (v: unknown) => (v === null ? false : typeof v === "boolean" ? v : fail("must be true, false or null")) } as Field<boolean>,
  dtype: { type: `${DTYPES.join(" | ")} | null`, group: "run", doc: "dtype of the saved model (final and merged): auto keeps the input checkpoint's (config.json dtype, else its tensors'); bfloat16 also asks for bf16 compute, as bf16: true does. TRL's CLI loads float32 by default since 0.27; preftune keeps the input's dtype unless asked", def: "auto", cli: cliString, check: (v: unknown) => (v === null ? "auto" : DTYPES.includes(v as never) ? v : fail(`must be one of ${DTYPES.join(", ")}`)) } as Field<(typeof DTYPES)[number]>,
  bf16: { ...bool("run", "transformers' bf16: bf16 compute (bf16 matrix products, fp32 accumulation and master weights) where this CPU gains from it (AMX, or AVX512-BF16 on AMD Zen 4+), else fp32 with a note saying why; under LoRA the frozen base is then held in bf16. The saved model keeps the input's dtype (dtype chooses another)", false), type: "bool | null", check: (v: unknown) => (v === null ? false : typeof v === "boolean" ? v : fail("must be true, false or null")) } as Field<boolean>,
  // data
  dataset: str("data", "training data (this project's older name of dataset_name): a .jsonl/.json/.parquet file, a folder, or a cached Hugging Face dataset id", null),
  eval_dataset: str("data", "evaluation data, read like dataset_name (its dataset_test_split split); default: the dataset's dataset_test_split split when it has one, or a mixture's test rows", null),
  dataset_name: str("data", "TRL ScriptArguments: the data set: a .jsonl/.json/.parquet file, a folder with splits, or a Hugging Face dataset id (ORG/NAME) found in the local Hugging Face cache (HF_HUB_CACHE, else HF_HOME/hub; nothing is downloaded)", null),
  dataset_config: str("data", "TRL ScriptArguments: the data set's configuration (subset) name: a config of the dataset card, or a sub-folder", null),
  dataset_train_split: str("data", "TRL ScriptArguments: split to train on", "train", false),
  dataset_test_split: str("data", "TRL ScriptArguments: split to evaluate on (when eval_strategy is not no)", "test", false),
  dataset_mixture: dict("data", "alignment-handbook: {datasets: [{id, config, split, columns, weight}], seed, test_split_size}: each source (a local path or a cached Hugging Face id) cut to columns, shuffled with seed and cut to weight·n rows, all concatenated and shuffled; test_split_size rows (a fraction or a count) become the eval split"),
  datasets: { type: "mapping[] | null", group: "data", doc: "TRL DatasetMixtureConfig (trl dpo --config): [{path, name, split, columns, data_dir, data_files}], concatenated; read as a dataset_mixture with weight 1 and seed = seed (path: a local path or a cached Hugging Face id; data_files: one file with path json or parquet; data_dir: a sub-folder of a local path)", def: null, cli: cliList, check: (v: unknown) => (v === null || (Array.isArray(v) && v.every((x) => x !== null && typeof x === "object" && !Array.isArray(x))) ? v : fail("must be a list of {path, split, ...} mappings or null")) } as Field<Record<string, unknown>[] | null>,
  test_split_size: num("data", "TRL DatasetMixtureConfig: hold out this fraction (< 1) or number of rows of the datasets mixture as the test split", null, { gt: 0, nullable: true }),
  dataset_mixer: dict("data", "alignment-handbook before 2025 (deprecated; dataset_mixture replaced it): {dataset id: fraction}: the first fraction·n rows of each train split of dataset_splits, concatenated and shuffled with seed 42; the test splits whole"),
  dataset_splits: { type: "string[] | null", group: "data", doc: "alignment-handbook before 2025, with dataset_mixer: the split names to read (those containing \"train\" train, those containing \"test\" evaluate); default [train, test]", def: null, list: true, cli: cliList, check: (v: unknown) => (v === null ? null : typeof v === "string" ? [v] : Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === "string" && x !== "") ? v : fail("must be a list of split names or null")) } as Field<string[] | null>,
  dataset_configs: { type: "string[] | null", group: "data", doc: "alignment-handbook before 2025, with dataset_mixer: one config name per dataset_mixer entry", def: null, list: true, cli: cliList, check: (v: unknown) => (v === null ? null : typeof v === "string" ? [v] : Array.isArray(v) && v.every((x) => x === null || (typeof x === "string" && x !== "")) ? v : fail("must be a list of config names or null")) } as Field<(string | null)[] | null>,
  dataset_text_field: str("data", "sft: the column holding plain text rows (TRL SFTConfig); the text is trained whole, with EOS appended", "text", false),
  packing: bool("data", "sft: pack rows into sequences of at most max_length tokens (TRL SFTConfig; padding-free: no attention across packed rows, positions restart per row); per_device_train_batch_size then counts packed sequences", false),
  packing_strategy: oneOf("data", "sft: bfd (best-fit decreasing; a row over max_length keeps its start), bfd_split (such rows are cut into max_length pieces) or wrapped (rows end to end, cut every max_length tokens; attention crosses rows inside a chunk)", ["bfd", "bfd_split", "wrapped"] as const, "bfd"),
  eval_packing: nullableBool("data", "sft: pack the eval split too (null: as packing)", null),
  shuffle_dataset: bool("data", "sft with packing: shuffle the training rows with seed before packing them (TRL SFTConfig); the batch order itself always follows train_sampling_strategy", false),
  assistant_only_loss: bool("data", "sft: on conversational rows, loss only on the assistant turns (the chat template's {% generation %} blocks, else each assistant turn with its end-of-turn text)", false),
  completion_only_loss: nullableBool("data", "sft: on prompt/completion rows, loss only on the completion (null: TRL's default, yes); false trains the whole sequence", null),
  chat_template_path: str("data", "a Jinja chat template file (.jinja) to use instead of the tokenizer's (TRL SFTConfig); saved with the model", null),
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
  pad_to_multiple_of: num("data", "pad each batch's length to a multiple of this", null, { int: true, min: 1, max: 65536, nullable: true }),
  train_sampling_strategy: oneOf("data", "batch order: random (reshuffled each epoch from seed), sequential (TRL KTO's default), or group_by_length (random, rows of similar length together)", ["random", "sequential", "group_by_length", "batch_rebalance"] as const, (m) => methodSpec(m).defaults.train_sampling_strategy),
  group_by_length: bool("data", "batch rows of similar length together (less padding)", false),
  dataloader_drop_last: bool("data", "drop the last incomplete batch of each epoch", false),
  precompute_ref_log_probs: bool("data", "compute the reference log-probs once before training (saved as ref_logps.safetensors in output_dir) instead of keeping a reference model", false, WITH_REFERENCE),
  precompute_ref_batch_size: num("data", "batch size of that pass (null: per_device_eval_batch_size)", null, { int: true, min: 1, nullable: true, methods: WITH_REFERENCE }),
  // optimizer
  learning_rate: num("optimizer", "peak learning rate", (m) => methodSpec(m).defaults.learning_rate, { gt: 0 }),
  adam_beta1: num("optimizer", "AdamW β1", 0.9, { min: 0, max: 1 }),
  adam_beta2: num("optimizer", "AdamW β2", 0.999, { min: 0, max: 1 }),
  adam_epsilon: num("optimizer", "AdamW ε", 1e-8, { gt: 0 }),
  weight_decay: num("optimizer", "decoupled weight decay (not applied to biases and norm weights)", 0, { min: 0 }),
  max_grad_norm: num("optimizer", "clip the global gradient norm to this (0 or null: no clipping); the pre-clip norm is logged as grad_norm", 1.0, { min: 0, nullable: true }),
  optim: { type: "string", group: "optimizer", doc: `optimizer: ${ADAMW.join(", ")} run AdamW with fp32 state; ${ADAMW_8BIT_OPTIMS.join(", ")} run bitsandbytes' 8-bit AdamW (exp_avg and exp_avg_sq as 8-bit codes of its dynamic maps, one absmax per 256 values; tensors under 4096 values keep fp32 state; the update math is fp32); ${ADAMW_TORCHAO.join(", ")} (torchao) run fp32 AdamW with a note; other transformers optimizers are refused`, def: "adamw_torch", cli: cliString, check: (v: unknown) => (typeof v === "string" && [...ADAMW, ...ADAMW_LOWBIT, ...OTHER_OPTIMIZERS].includes(v) ? v : fail(`must be a transformers optim name (${ADAMW[0]}, ${ADAMW_LOWBIT[0]}, ...)`)) } as Field<string>,
  // steps and schedule
  per_device_train_batch_size: num("schedule", "pairs (rows for kto/sft) per micro-batch", 8, { int: true, min: 1 }),
  per_device_eval_batch_size: num("schedule", "pairs (rows) per evaluation batch", 8, { int: true, min: 1 }),
  gradient_accumulation_steps: num("schedule", "micro-batches per optimizer step", 1, { int: true, min: 1 }),
  num_train_epochs: num("schedule", "passes over the training data (ignored when max_steps > 0)", 3, { gt: 0 }),
  max_steps: num("schedule", "total optimizer steps; > 0 overrides num_train_epochs", -1, { int: true }),
  lr_scheduler_type: oneOf("schedule", `learning-rate schedule (transformers' shapes; ${METRIC_SCHEDULERS.join(" and ")} step on eval metrics and are not built)`, SCHEDULER_TYPES, "linear"),
  lr_scheduler_kwargs: dict("schedule", "the schedule's own arguments, as transformers: cosine {num_cycles}, cosine_with_restarts {num_cycles}, polynomial {lr_end, power}, inverse_sqrt {timescale}, cosine_with_min_lr {min_lr | min_lr_rate, num_cycles}, cosine_warmup_with_min_lr {+ warmup_lr_rate}, warmup_stable_decay {num_decay_steps, num_stable_steps, warmup_type, decay_type, min_lr_ratio, num_cycles}"),
  warmup_steps: num("schedule", "linear warmup: a step count, or a fraction of the total steps when below 1 (transformers 5)", 0, { min: 0, intAbove1: true }),
  warmup_ratio: num("schedule", "transformers 4's warmup fraction (removed in 5: warmup_steps below 1 says the same); used when warmup_steps is 0", 0, { min: 0, max: 1 }),
  // logging, eval, checkpoints
  logging_strategy: oneOf("logging", "when to log training metrics: every logging_steps, at the end of each epoch, or never (the final summary is always logged)", ["no", "steps", "epoch"] as const, "steps"),
  logging_steps: num("logging", "log every N optimizer steps (metrics averaged over the interval); < 1 is a fraction of the total", 10, { gt: 0, intAbove1: true }),
  logging_first_step: bool("logging", "also log after the first step", false),
  eval_strategy: oneOf("logging", "when to evaluate on the eval split (setting eval_steps alone means steps)", ["no", "steps", "epoch"] as const, "no"),
  eval_steps: num("logging", "evaluate every N steps with eval_strategy steps; < 1 is a fraction of the total (null: logging_steps)", null, { gt: 0, nullable: true, intAbove1: true }),
  eval_delay: num("logging", "no evaluation before this many steps (eval_strategy steps) or epochs (eval_strategy epoch)", 0, { min: 0 }),
  eval_on_start: bool("logging", "evaluate once before the first step", false),
  save_strategy: oneOf("logging", "when to write checkpoint-N/ (best, which follows metric_for_best_model, is not built)", ["no", "steps", "epoch", "best"] as const, "steps"),
  save_steps: num("logging", "write checkpoint-N/ every N steps with save_strategy steps; < 1 is a fraction of the total", 500, { gt: 0, intAbove1: true }),
  save_total_limit: num("logging", "keep at most this many checkpoints (oldest deleted; null: all)", null, { int: true, min: 1, nullable: true }),
  disable_tqdm: { ...bool("logging", "no progress bar (plain log lines only); null: transformers' default, false", false), type: "bool | null", check: (v: unknown) => (v === null ? false : typeof v === "boolean" ? v : fail("must be true, false or null")) } as Field<boolean>,
  generate_during_eval: bool("logging", "at each evaluation, complete the first eval prompts greedily with the policy (and with the dpo/ipo/kto reference model when one is in memory) and append {step, prompt, policy, ref} lines to output_dir/completions.jsonl (TRL's game_log table; TRL samples); needs evaluations and the model's tokenizer", false, PREFERENCE),
  generate_during_eval_samples: num("logging", "preftune: how many eval prompts generate_during_eval completes, the first distinct ones of the eval split (null: per_device_eval_batch_size, as TRL)", null, { int: true, min: 1, nullable: true, methods: PREFERENCE }),
  generate_during_eval_max_new_tokens: num("logging", "preftune: most new tokens per generate_during_eval completion (it also stops at the tokenizer's EOS and at max_position_embeddings)", 64, { int: true, min: 1, methods: PREFERENCE }),
  // method
  beta: num("method", "β: DPO/KTO temperature, IPO τ, ORPO λ, CPO/SimPO β", (m) => methodSpec(m).defaults.beta ?? 0 /* sft has none */, { gt: 0, methods: methodsReading("beta") }),
  loss_type: { type: "string | string[]", group: "method", doc: methodsReading("loss_type").map((m) => `${m}: ${methodSpec(m).lossTypeList ? "one or a list of " : ""}${methodSpec(m).lossTypes.join(" | ")}`).join("; "), def: (m: TrainMethod) => normalLossType(m, null), methods: methodsReading("loss_type"), list: true, cli: cliList, check: (v: unknown) => (v === null || typeof v === "string" || (Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === "string")) ? v : fail("must be a string or a list of strings")) } as Field<string | string[] | null>,
  loss_weights: { type: "float[] | null", group: "method", doc: "dpo: one weight per loss_type (null: 1 each)", def: LOSS_KEY_DEFAULTS.loss_weights, methods: methodsReading("loss_weights"), list: true, cli: (s: string) => { const l = cliList(s); return Array.isArray(l) ? l.map(Number) : cliNumber(s); }, check: (v: unknown) => (v === null || (Array.isArray(v) && v.every((x) => typeof x === "number" && Number.isFinite(x))) ? v : fail("must be a list of numbers or null")) } as Field<number[] | null>,
  rpo_alpha: num("method", "dpo: classic TRL's RPO weight of the NLL on chosen rows; current TRL spells it loss_type [..., sft] with that loss weight, which is what runs", LOSS_KEY_DEFAULTS.rpo_alpha, { min: 0, nullable: true, methods: methodsReading("rpo_alpha") }),
  label_smoothing: num("method", "dpo robust ε (below 0.5), exo_pair ε (above 0; 1e-3 in the paper), aot ε; cpo/simpo sigmoid smoothing", LOSS_KEY_DEFAULTS.label_smoothing, { min: 0, max: 0.5, methods: methodsReading("label_smoothing") }),
  f_divergence_type: oneOf("method", "dpo: divergence of the reward", F_DIVERGENCE_TYPES, LOSS_KEY_DEFAULTS.f_divergence_type as (typeof F_DIVERGENCE_TYPES)[number], methodsReading("f_divergence_type")),
  f_alpha_divergence_coef: num("method", "dpo: α of alpha_divergence", LOSS_KEY_DEFAULTS.f_alpha_divergence_coef, { methods: methodsReading("f_alpha_divergence_coef") }),
  desirable_weight: num("method", "kto: λ_D, weight of desirable rows", LOSS_KEY_DEFAULTS.desirable_weight, { min: 0, methods: methodsReading("desirable_weight") }),
  undesirable_weight: num("method", "kto: λ_U, weight of undesirable rows", LOSS_KEY_DEFAULTS.undesirable_weight, { min: 0, methods: methodsReading("undesirable_weight") }),
  cpo_alpha: num("method", "cpo/simpo: weight of the NLL (behaviour cloning) term", (m) => lossKeyDefault(m, "cpo_alpha"), { min: 0, methods: methodsReading("cpo_alpha") }),
  simpo_gamma: num("method", "cpo/simpo: SimPO target margin γ", LOSS_KEY_DEFAULTS.simpo_gamma, { methods: methodsReading("simpo_gamma") }),
  alpha: num("method", "cpo/simpo: AlphaPO reward shape α (0: plain log-probs)", LOSS_KEY_DEFAULTS.alpha, { methods: methodsReading("alpha") }),
  disable_dropout: bool("method", "TRL: set every dropout module to p = 0, PEFT's LoRA dropout included (TRL's DPO/ORPO/CPO/KTO call it after wrapping the model); false lets lora_dropout act. The decoders here have no other dropout", true),
  // LoRA (TRL ModelConfig / alignment-handbook names)
  use_peft: bool("peft", "train a LoRA adapter instead of every weight; output_dir then holds a PEFT adapter folder, and the DPO/IPO/KTO reference is the policy with its adapter disabled", false),
  lora_r: num("peft", "LoRA rank r", 16, { int: true, min: 1 }),
  lora_alpha: num("peft", "LoRA α: the update B·A is scaled by lora_alpha / r (by lora_alpha / √r with use_rslora)", 32, { gt: 0 }),
  lora_dropout: num("peft", "LoRA dropout (TRL's CLI default 0.05): in training forwards the adapter sees dropout(x), the base x itself (PEFT); seeded by seed, step and micro-batch, so a resumed run draws the same masks; off in evaluation, reference and generation. Except for sft it acts only with disable_dropout: false, as in TRL", 0.05, { min: 0, lt: 1 }),
  lora_target_modules: { type: "string[] | \"all-linear\" | null", group: "peft", doc: "modules to adapt, by the model's module names: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj (Llama, Mistral, Qwen, Gemma); qkv_proj, o_proj, gate_up_proj, down_proj (Phi-3); q_proj, k_proj, v_proj, dense, fc1, fc2 (Phi-2); query_key_value, dense, dense_h_to_4h, dense_4h_to_h (GPT-NeoX); q_proj, k_proj, v_proj, out_proj, fc1, fc2 (OPT); or \"all-linear\" (every linear layer but the head); null: PEFT's default for the model (q_proj, v_proj; Phi-2 also fc1, fc2; GPT-NeoX query_key_value; Phi-3 has none)", def: null, list: true, cli: cliList, check: (v: unknown) => { const t = Array.isArray(v) && v.length === 1 ? v[0] : v; if (t !== null) checkTargetModules(t, "lora_target_modules"); return t; } } as Field<string | string[] | null>,   // TRL: a one-element list is its element ("all-linear")
  use_rslora: bool("peft", "rank-stabilised LoRA: scale by lora_alpha / √r", false),
  lora_task_type: oneOf("peft", "PEFT task type of the adapter (only causal LM)", ["CAUSAL_LM"] as const, "CAUSAL_LM"),
  use_dora: bool("peft", "PEFT's DoRA: a trainable lora_magnitude_vector per output row, W' = m · (W + s·B·A) / ‖W + s·B·A‖_row (the norm detached in the backward)", false),
  merge_adapter: bool("peft", "preftune: also write the adapter merged into the base weights (W += s·B·A) as a full model in output_dir/merged (from a 4-bit base: its dequantized weights plus s·B·A, unquantized)", false),
  // 4-bit base (QLoRA)
  load_in_4bit: bool("quant", "hold the frozen base's layer projections in bitsandbytes' 4-bit format (QLoRA), quantized at load shard by shard; embeddings, norms and lm_head stay unquantized (in bf16 when dtype is bfloat16, else fp32); needs use_peft", false),
  load_in_8bit: bool("quant", "must be false: the 8-bit LLM.int8 base is not built (use load_in_4bit)", false),
  bnb_4bit_quant_type: oneOf("quant", "4-bit code book: nf4 (NormalFloat, TRL's default) or fp4 (transformers' BitsAndBytesConfig default)", ["nf4", "fp4"] as const, "nf4"),
  use_bnb_nested_quant: bool("quant", "double quantization: the per-64 absmax scales themselves 8-bit quantized in blocks of 256 (TRL's name of bnb_4bit_use_double_quant)", false),
  bnb_4bit_use_double_quant: bool("quant", "transformers' BitsAndBytesConfig name of use_bnb_nested_quant (either one turns it on)", false),
  bnb_4bit_compute_dtype: { type: "string | null", group: "quant", doc: "dtype of the 4-bit GEMMs: float32 (bitsandbytes' default); bfloat16 / float16 run float32 here, with a note (the weights are dequantized into fp32 tiles)", def: null, cli: cliString, check: (v: unknown) => (v === null ? null : typeof v === "string" && ["float32", "bfloat16", "float16", "fp32", "bf16", "fp16", "float", "half"].includes(v.replace(/^torch\./, "")) ? v : fail("must be float32, bfloat16 or float16 (or null)")) } as Field<string | null>,
} as const;

type CompatName = keyof typeof COMPAT_KEYS;
const COMPAT_FIELDS = Object.fromEntries(Object.entries(COMPAT_KEYS).map(([k, v]) => [k, compatField(v as CompatKey)])) as { [K in CompatName]: Field<unknown> };

export const SCHEMA = { ...HONOURED, ...COMPAT_FIELDS };

type FieldValue<F> = F extends Field<infer T> ? T : never;
export type TrainConfig = { -readonly [K in keyof typeof HONOURED]: FieldValue<(typeof HONOURED)[K]> } & { [K in CompatName]: unknown };
export type ConfigKey = keyof typeof SCHEMA;
export const CONFIG_KEYS = Object.keys(SCHEMA) as ConfigKey[];
// Lookups by own property only: a key named constructor, __proto__ or toString is an unknown key, not Object's.
const isKey = (k: string): k is ConfigKey => Object.hasOwn(SCHEMA, k);
const field = (k: string) => (SCHEMA as Record<string, Field<unknown>>)[k];
const aliasOf = (k: string): Alias | undefined => (Object.hasOwn(ALIASES, k) ? ALIASES[k] : undefined);
/** Keys accepted only for compatibility with TRL / transformers recipes; they change nothing here. */
export const IGNORED_KEYS: readonly ConfigKey[] = CONFIG_KEYS.filter((k) => field(k).group === "compat");

const normKey = (k: string) => k.toLowerCase().replace(/-/g, "_");

/** The closest known key by spelling, or null when none is close enough to be a typo (≤ 2 edits, or a third of the name). */
export function closestKey(key: string): string | null {
  const { key: best, distance } = nearest(key, [...CONFIG_KEYS, ...Object.keys(ALIASES)]);
  return distance <= Math.max(2, Math.floor(normKey(key).length / 3)) ? best : null;
}

/** Why `key` is unknown and what to use: the alias table first (meaning), then spelling. `dash` formats keys as options. */
export function unknownKeyMessage(key: string, dash = false): string {
  const q = (k: string) => (dash ? `--${k}` : `"${k}"`);
  const what = dash ? `unknown option --${key}` : `unknown key "${key}"`;
  const known = Object.hasOwn(MISNAMES, normKey(key)) ? MISNAMES[normKey(key)] : undefined;
  if (known) {
    const [to, why] = known;
    return to ? `${what}; did you mean ${q(to)}? (${why})` : `${what}: ${why}`;
  }
  const close = closestKey(key);
  return close ? `${what}; did you mean ${q(close)}? (preftune train --help lists every key)` : `${what} (not a key of TRL, transformers, PEFT or bitsandbytes configs; preftune train --help lists every key)`;
}

export class ConfigError extends Error { override name = "ConfigError"; }

function defaultOf(k: string, m: TrainMethod): unknown {
  const d = field(k).def;
  const v = typeof d === "function" ? (d as (m: TrainMethod) => unknown)(m) : d;
  return Array.isArray(v) ? [...v] : v;
}

/** Every key's default for a method (keys that do not apply to it keep their generic default). */
export function defaultsFor(method: TrainMethod): TrainConfig {
  return Object.fromEntries(CONFIG_KEYS.map((k) => [k, defaultOf(k, method)])) as TrainConfig;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
const show = (v: unknown): string =>
  typeof v === "number" && v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential() : Array.isArray(v) ? `[${v.map(show).join(", ")}]` : JSON.stringify(v);

/** Notes that share a reason print as one line naming every key. */
class Notes {
  private byReason = new Map<string, string[]>();
  add(key: string, reason: string): void {
    const keys = this.byReason.get(reason) ?? [];
    if (!keys.includes(key)) keys.push(key);
    this.byReason.set(reason, keys);
  }
  lines(): string[] { return [...this.byReason].map(([reason, keys]) => `${keys.join(", ")}: ${reason}`); }
}

/**
 * Checks raw key/values (from a file, overrides, or code) and fills defaults for the method.
 * `source` names where the values came from, for messages; `earlier` are problems already found (the command
 * line's). `given`: the library's trainers take the model and the data as objects, so model_name_or_path and
 * the dataset keys are not required. Throws ConfigError listing every problem; returns the config and the notes.
 */
export function resolveConfig(rawIn: Record<string, unknown>, source = "config", earlier: readonly string[] = [], given: { modelAndData?: boolean } = {}): { config: TrainConfig; notes: string[] } {
  const problems: string[] = [...earlier];
  const notes = new Notes();
  const raw: Record<string, unknown> = { ...rawIn };
  for (const [old, a] of Object.entries(ALIASES)) {
    if (!Object.hasOwn(raw, old)) continue;
    const given = raw[old];
    delete raw[old];
    if (given === null || given === undefined) continue;   // the old key at its default (unset): nothing to map
    const v = a.convert ? a.convert(given) : given;
    if (Object.hasOwn(raw, a.to) && !same(raw[a.to], v) && raw[a.to] != null && v != null) {
      problems.push(`${old} (${show(v)}) and ${a.to} (${show(raw[a.to])}) are both set: ${old} is the old name of ${a.to}; keep ${a.to}`);
      continue;
    }
    if (!Object.hasOwn(raw, a.to) || raw[a.to] == null) raw[a.to] = v;
    notes.add(old, `deprecated name of ${a.to} (${a.from}); read as ${a.to}: ${show(v)}`);
  }
  for (const k of Object.keys(raw)) if (!isKey(k)) problems.push(unknownKeyMessage(k));

  const methodRaw = raw.method ?? null;
  if (methodRaw === null) problems.push(`"method" is required: one of ${METHODS.join(", ")}`);
  let method: TrainMethod = "orpo";
  try { if (methodRaw !== null) method = HONOURED.method.check(methodRaw); } catch (e) { problems.push(`method: ${(e as Error).message}, got ${JSON.stringify(methodRaw)}`); }
  const config = defaultsFor(method) as Record<string, unknown>;
  for (const [k, v] of Object.entries(raw)) {
    if (!isKey(k) || k === "method") continue;
    const f = field(k);
    if (f.methods && !f.methods.includes(method)) {
      problems.push(`${k} does not apply to method ${method} (it is for ${f.methods.join(", ")}); remove ${k} or change method`);
      continue;
    }
    let value: unknown;
    try { value = f.check(v); } catch (e) { problems.push(`${k}: ${(e as Error).message}, got ${JSON.stringify(v)}`); continue; }
    config[k] = value;
    if (f.group === "compat") {
      const c = COMPAT_KEYS[k as CompatName] as CompatKey;
      if ((c.quiet ?? [c.def]).some((q) => same(q, value))) continue;
      if (c.refuse) problems.push(`${k} ${show(value)}: ${c.why}`);
      else notes.add(k, c.why);
    }
  }
  config.method = method;
  const c = config as TrainConfig;
  derived(c, raw, notes, problems);
  const quantKeys = Object.keys(raw).filter((k) => isKey(k) && field(k).group === "quant" && !k.startsWith("load_in_") && isSet(config as TrainConfig, k as ConfigKey));
  if (!(config as TrainConfig).load_in_4bit && quantKeys.length > 0) notes.add(quantKeys.join(", "), "no effect because load_in_4bit is false (set load_in_4bit: true for a 4-bit base)");
  const loraKeys = Object.keys(raw).filter((k) => isKey(k) && field(k).group === "peft" && k !== "use_peft");
  if (!c.use_peft && loraKeys.length > 0) notes.add(loraKeys.join(", "), "no effect because use_peft is false (set use_peft: true to train a LoRA adapter)");
  if (c.model_name_or_path === null && !given.modelAndData) problems.push(`"model_name_or_path" is required (${field("model_name_or_path").doc})`);
  problems.push(...dataProblems(c, raw, notes, !!given.modelAndData));
  if (problems.length === 0) problems.push(...conflicts(c, raw));
  if (problems.length > 0) throw new ConfigError(`${source}: ${problems.length} problem${problems.length > 1 ? "s" : ""}:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  return { config: c, notes: notes.lines() };
}

/**
 * The LoRA dropout that trains: lora_dropout, except where TRL's trainer zeroes it (disable_dropout, on by default,
 * in every method but sft, whose SFTConfig has no such key).
 */
export function effectiveLoraDropout(c: Pick<TrainConfig, "method" | "lora_dropout" | "disable_dropout">): number {
  return c.method !== "sft" && c.disable_dropout ? 0 : c.lora_dropout;
}

/** Set to something other than its default (a key the config did not give is at its default). */
const isSet = (c: TrainConfig, k: ConfigKey) => !same((c as Record<string, unknown>)[k], defaultOf(k, c.method));

/**
 * Where the data comes from: exactly one of dataset_name (or dataset), dataset_mixture, dataset_mixer or TRL's
 * datasets; mixture specs checked as src/data will read them; eval needs a test split; SFT-only keys. Problems
 * are returned, notes added.
 */
function dataProblems(c: TrainConfig, raw: Record<string, unknown>, notes: Notes, dataGiven: boolean): string[] {
  const out: string[] = [];
  const nameKey = c.dataset_name !== null ? "dataset_name" : c.dataset !== null ? "dataset" : null;
  if (c.dataset_name !== null && c.dataset !== null && c.dataset_name !== c.dataset) out.push(`dataset (${c.dataset}) and dataset_name (${c.dataset_name}) name different data: dataset is this project's older name of dataset_name; keep dataset_name`);
  const mixtures = (["dataset_mixture", "dataset_mixer", "datasets"] as const).filter((k) => c[k] !== null);
  if (nameKey === null && mixtures.length === 0 && !dataGiven) out.push(`no training data: set dataset_name (a .jsonl/.json/.parquet file, a folder with splits, or a Hugging Face dataset id in the local cache), dataset_mixture (alignment-handbook) or datasets (TRL's mixture)`);
  if (mixtures.length > 1) out.push(`${mixtures.join(" and ")} ${mixtures.length === 2 ? "both" : "all"} give a dataset mixture; keep one (dataset_mixture is the alignment-handbook's current form, datasets TRL's)`);
  if (nameKey !== null && (c.dataset_mixture !== null || c.dataset_mixer !== null)) {
    out.push(`${nameKey} and ${c.dataset_mixture !== null ? "dataset_mixture" : "dataset_mixer"} are both set (the alignment-handbook refuses this too); keep one`);
  }
  if (nameKey !== null && c.datasets !== null) notes.add(nameKey, "not read: datasets is also set and is read instead, as TRL's scripts do");
  if (c.dataset_mixer !== null) {
    notes.add(["dataset_mixer", ...(["dataset_splits", "dataset_configs"] as const).filter((k) => c[k] !== null)].join(", "),
      "alignment-handbook's mixture keys before 2025 (its scripts now read dataset_mixture); read as the handbook read them: the first fraction·n rows of each train split, shuffled together with seed 42, and the test splits whole");
  } else {
    for (const k of ["dataset_splits", "dataset_configs"] as const) if (c[k] !== null) notes.add(k, "no effect without dataset_mixer (alignment-handbook's older mixture keys)");
  }
  if (c.test_split_size !== null && c.datasets === null) notes.add("test_split_size", `no effect without datasets (TRL's mixture)${c.dataset_mixture !== null ? "; dataset_mixture has its own test_split_size" : ""}`);
  if (mixtures.length > 0 && isSet(c, "dataset_config")) notes.add("dataset_config", `no effect with ${mixtures[0]} (each source names its own config)`);
  // the mixture specs, checked now so that their problems come with the others
  let mixture: Record<string, unknown> | null = c.dataset_mixture;
  if (c.datasets !== null) {
    const t = trlDatasetsMixture(c.datasets, c.test_split_size, c.seed);
    out.push(...t.problems);
    mixture = t.mixture;
  }
  if (mixtures.length === 1 && (mixture !== null || c.dataset_mixer !== null)) {
    try { parseMixture({ dataset_mixture: mixture, dataset_mixer: c.dataset_mixer, dataset_splits: c.dataset_splits, dataset_configs: c.dataset_configs }); } catch (e) { out.push((e as Error).message); }
  }
  // evaluation reads a test split: a mixture must make one
  const needEval = c.eval_strategy !== "no" || c.eval_on_start;
  if (needEval && c.eval_dataset === null && out.length === 0) {
    const why = `eval_strategy is "${c.eval_strategy}"${c.eval_on_start ? " / eval_on_start" : ""}`;
    const fixTail = "set eval_dataset, or eval_strategy: no";
    if (c.dataset_mixture !== null && (c.dataset_mixture as { test_split_size?: unknown }).test_split_size == null) out.push(`${why} but dataset_mixture has no test_split_size, so there are no eval rows: set dataset_mixture.test_split_size, or ${fixTail}`);
    if (c.datasets !== null && c.test_split_size === null) out.push(`${why} but datasets (TRL's mixture) has no test_split_size, so there is no test split: set test_split_size, or ${fixTail}`);
    if (c.dataset_mixer !== null && !(c.dataset_splits ?? ["train", "test"]).some((s) => s.includes("test"))) out.push(`${why} but dataset_splits lists no test split: add one (e.g. test_prefs), or ${fixTail}`);
  }
  // SFT settings (TRL SFTConfig)
  if (methodSpec(c.method).data !== "sft") {
    if (c.packing) out.push(`packing: true applies to method sft (TRL SFTConfig); method ${c.method} trains on whole rows, set packing: false`);
    if (c.assistant_only_loss) out.push(`assistant_only_loss: true applies to method sft (TRL SFTConfig); method ${c.method} trains on the completions, set assistant_only_loss: false`);
    const sftOnly = (["dataset_text_field", "completion_only_loss", "packing_strategy", "eval_packing", "shuffle_dataset"] as const).filter((k) => raw[k] !== undefined && isSet(c, k));
    if (sftOnly.length) notes.add(sftOnly.join(", "), `no effect: an SFT setting (TRL SFTConfig), and method is ${c.method}`);
  } else {
    if ((c.packing || c.eval_packing) && c.max_length === null) out.push(`${c.packing ? "packing" : "eval_packing"}: true needs max_length (the length of a packed sequence); set max_length`);
    if (!c.packing && c.shuffle_dataset) notes.add("shuffle_dataset", "no effect without packing: the batch order follows train_sampling_strategy and seed");
    if (!c.packing && !c.eval_packing && raw.packing_strategy !== undefined && isSet(c, "packing_strategy")) notes.add("packing_strategy", "no effect without packing");
  }
  if (c.chat_template !== null && c.chat_template_path !== null) out.push("chat_template and chat_template_path are both set; keep one");
  return out;
}

/** Values that follow from others, as TRL / transformers resolve them, each with its note. */
function derived(c: TrainConfig, raw: Record<string, unknown>, notes: Notes, problems: string[]): void {
  // eval_steps alone means evaluating every eval_steps; with another strategy, transformers ignores it
  if (raw.eval_steps != null && raw.eval_strategy === undefined) {
    c.eval_strategy = "steps";
    notes.add("eval_steps", "set without eval_strategy: evaluating every eval_steps (eval_strategy: steps)");
  } else if (raw.eval_steps != null && c.eval_strategy !== "steps") {
    notes.add("eval_steps", `no effect with eval_strategy "${c.eval_strategy}" (transformers reads eval_steps only with eval_strategy steps)`);
  }
  if (raw.save_steps != null && c.save_strategy !== "steps") notes.add("save_steps", `no effect with save_strategy "${c.save_strategy}" (transformers reads save_steps only with save_strategy steps)`);
  if (raw.logging_steps != null && c.logging_strategy !== "steps") notes.add("logging_steps", `no effect with logging_strategy "${c.logging_strategy}"`);
  if (raw.warmup_ratio != null) {
    notes.add("warmup_ratio", c.warmup_steps > 0
      ? `transformers 4's warmup fraction; warmup_steps (${c.warmup_steps}) is also set and wins, as in transformers 4`
      : `transformers 4's key (removed in transformers 5, where warmup_steps: ${show(c.warmup_ratio)} says the same); honoured`);
  }
  // bnb_4bit_compute_dtype (TRL also sets it from dtype): the 4-bit GEMMs run fp32
  const computeDtype = c.bnb_4bit_compute_dtype?.replace(/^torch\./, "");
  if (c.load_in_4bit && computeDtype && !["float32", "fp32", "float"].includes(computeDtype)) {
    notes.add("bnb_4bit_compute_dtype", `${c.bnb_4bit_compute_dtype}: the 4-bit weights are dequantized into fp32 tiles and multiplied in fp32 (bitsandbytes' default compute dtype); there is no ${computeDtype} path for them here`);
  }
  if (c.load_in_4bit && c.merge_adapter) notes.add("merge_adapter", "with load_in_4bit the merged model is the dequantized 4-bit weights plus s·B·A, saved unquantized in dtype (PEFT would round the merged weights to 4 bits again); merging holds the whole model in fp32 for a moment");
  // dtype: the saved model takes this dtype (auto: the input's); bfloat16 asks for bf16 compute (loop.ts, with its own note)
  const computeNote = c.dtype === "bfloat16" ? "bf16 compute where this CPU gains from it (else fp32, with a note)" : "compute is fp32";
  if (c.dtype !== "auto") notes.add("dtype", c.use_peft
    ? `${computeNote}; the adapter is saved in fp32 (as PEFT keeps it) and the merged model (merge_adapter) as ${c.dtype}`
    : `${computeNote}; the final model is saved as ${c.dtype}`);
  // optimizers: AdamW, with fp32 or bitsandbytes' 8-bit state; paging is a CUDA matter
  if (c.optim.startsWith("paged_")) {
    notes.add("optim", `${c.optim}: paging keeps optimizer state in CUDA unified memory, which has no meaning on the CPU; ${c.optim === "paged_adamw_32bit" ? "fp32 AdamW runs (the same update)" : "adamw_8bit runs (the same 8-bit state and update, as bitsandbytes does on a CPU)"}`);
  } else if (ADAMW_TORCHAO.includes(c.optim)) {
    notes.add("optim", `${c.optim}: torchao's ${c.optim.endsWith("4bit") ? "4" : "8"}-bit AdamW state is not built: fp32 AdamW runs instead (the same update, without quantized state; adamw_8bit is bitsandbytes' 8-bit state)`);
  } else if (OTHER_OPTIMIZERS.includes(c.optim)) {
    problems.push(`optim ${c.optim}: preftune trains with AdamW only; ${c.optim} is not implemented (set optim: adamw_torch, or adamw_8bit for 8-bit state)`);
  }
  // LoRA dropout: TRL's DPO/ORPO/CPO/KTO trainers zero every dropout module (LoRA's too) unless disable_dropout: false
  if (c.use_peft && c.lora_dropout > 0 && effectiveLoraDropout(c) === 0) {
    notes.add("lora_dropout", `${c.lora_dropout}${raw.lora_dropout === undefined ? " (TRL's default with use_peft)" : ""} has no effect: disable_dropout is true (TRL's default for ${c.method}), and TRL then sets every dropout module to p = 0, PEFT's LoRA dropout included; set disable_dropout: false to train with it`);
  }
  if (c.disable_dropout === false && !(c.use_peft && c.lora_dropout > 0)) notes.add("disable_dropout", "false changes nothing here: the decoders have no dropout of their own, and no LoRA dropout is set");
  // sampling: transformers 5 names length grouping as a sampling strategy
  if (c.train_sampling_strategy === "group_by_length") c.group_by_length = true;
  // classic TRL's RPO weight = current TRL's sft loss term with that weight
  if (c.rpo_alpha !== null && c.method === "dpo") {
    const types = lossTypeList(c.method, c.loss_type);
    if (types.includes("sft")) problems.push(`rpo_alpha (${c.rpo_alpha}) and loss_type ${show(types)} both add the NLL term; keep one (current TRL: loss_type [..., sft] with loss_weights)`);
    else {
      const weights = c.loss_weights ?? types.map(() => 1);
      c.loss_type = [...types, "sft"];
      c.loss_weights = [...weights, c.rpo_alpha];
      notes.add("rpo_alpha", `classic TRL's RPO weight; current TRL spells it loss_type ${show(c.loss_type)} with loss_weights ${show(c.loss_weights)}, which is what runs`);
    }
  }
}

/** Values that are each valid but not together; every message names both keys. */
function conflicts(c: TrainConfig, raw: Record<string, unknown>): string[] {
  const out: string[] = [];
  // loss_type and the parameters its loss types constrain: the registry's rules, the same ones the objectives apply at step 1
  const loss = lossProblems(c.method, { loss_type: c.loss_type, loss_weights: c.loss_weights, label_smoothing: c.label_smoothing, per_device_train_batch_size: c.per_device_train_batch_size });
  out.push(...loss);
  if (loss.length === 0) c.loss_type = normalLossType(c.method, c.loss_type);
  if (c.max_length !== null && c.max_prompt_length !== null && c.max_prompt_length >= c.max_length) out.push(`max_prompt_length (${c.max_prompt_length}) must be below max_length (${c.max_length})`);
  if (c.max_steps <= 0 && raw.max_steps !== undefined && c.max_steps !== -1) out.push(`max_steps ${c.max_steps}: use a positive step count, or -1 to train num_train_epochs (${c.num_train_epochs})`);
  if (METRIC_SCHEDULERS.includes(c.lr_scheduler_type)) out.push(`lr_scheduler_type ${c.lr_scheduler_type}: transformers steps this schedule on evaluation metrics; it is not built here (use cosine, linear, cosine_with_min_lr, warmup_stable_decay, ...)`);
  else out.push(...schedulerKwargsProblems(c.lr_scheduler_type, c.lr_scheduler_kwargs, c.learning_rate));
  if (c.save_strategy === "best") out.push("save_strategy best (a checkpoint whenever metric_for_best_model improves) is not built; use steps or epoch");
  if (c.train_sampling_strategy === "batch_rebalance") out.push("train_sampling_strategy batch_rebalance is not built; use random, sequential or group_by_length");
  if (raw.precompute_ref_batch_size != null && !c.precompute_ref_log_probs) out.push("precompute_ref_batch_size is set but precompute_ref_log_probs is false; set precompute_ref_log_probs: true");
  if (c.load_in_4bit && c.load_in_8bit) out.push("load_in_4bit and load_in_8bit are both true; choose one (as TRL requires)");
  else if (c.load_in_8bit) out.push("load_in_8bit: true (bitsandbytes' LLM.int8 base) is not built; use load_in_4bit: true (QLoRA's 4-bit base) or remove it");
  if (c.load_in_4bit && !c.use_peft) out.push("load_in_4bit: true needs use_peft: true: a 4-bit base is frozen and trains only through a LoRA adapter (QLoRA), as with PEFT; set use_peft: true");
  if (c.bf16 === true && c.fp16 === true) out.push("bf16 and fp16 are both true; choose one (as transformers requires)");
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
  try { text = readTextFile(file, "config file"); } catch (e) { throw new ConfigError((e as Error).message); }
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

/** What a command line says: the values by key, the --config file if one was named, and every problem found. */
export interface ParsedArgs { values: Record<string, unknown>; configFile: string | null; problems: string[] }

/** The field that types `key` on the command line (an alias reads as its current key unless it has its own kind). */
function argField(key: string): Field<unknown> | null {
  if (isKey(key)) return field(key);
  const a = aliasOf(key);
  if (!a) return null;
  if (a.kind) return compatField({ kind: a.kind, def: null, why: "" });
  return field(a.to);
}

/**
 * HfArgumentParser-style options: `--key value`, `--key=value`, a bare `--flag` (true) for every key that takes
 * true/false (accepted-and-ignored ones included; a following true/false word is its value), `--no_flag`
 * (false), several values after a list key (`--lora_target_modules q_proj v_proj`), lists as a,b or JSON,
 * mappings as JSON, null as null/none. Dashes or underscores. Collects every problem instead of stopping.
 */
export function parseArgs(args: readonly string[]): ParsedArgs {
  const values: Record<string, unknown> = {};
  const problems: string[] = [];
  let configFile: string | null = null;
  const isOption = (s: string | undefined) => s !== undefined && s.startsWith("--") && s.length > 2;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!isOption(a)) { problems.push(`unexpected argument "${a}": options are --key value, --key=value or --flag`); continue; }
    const eq = a.indexOf("=");
    let key = normKey(eq >= 0 ? a.slice(2, eq) : a.slice(2));
    const inline = eq >= 0 ? a.slice(eq + 1) : undefined;
    const hasNext = i + 1 < args.length && !isOption(args[i + 1]);
    if (key === "config") {
      if (inline !== undefined) configFile = inline;
      else if (hasNext) configFile = args[++i];
      else problems.push("--config needs a file (YAML or JSON)");
      continue;
    }
    let f = argField(key);
    if (!f && key.startsWith("no_") && argField(key.slice(3))?.bare) {
      key = key.slice(3);
      if (inline !== undefined) problems.push(`--no_${key} takes no value (it means --${key} false)`);
      else values[key] = false;
      continue;
    }
    if (!f) {
      problems.push(unknownKeyMessage(key, true));
      if (inline === undefined) while (i + 1 < args.length && !isOption(args[i + 1])) i++;   // its values, if any
      continue;
    }
    if (inline !== undefined) { values[key] = f.cli(inline); continue; }
    if (f.bare === "bool") {
      values[key] = hasNext && isBoolWord(args[i + 1]) ? f.cli(args[++i]) : true;
      continue;
    }
    if (f.bare === "optional" && !hasNext) { values[key] = true; continue; }
    if (!hasNext) { problems.push(`--${key} needs a value (${f.type})`); continue; }
    if (f.list) {
      const items: string[] = [];
      while (i + 1 < args.length && !isOption(args[i + 1])) items.push(args[++i]);
      values[key] = f.cli(items.length === 1 ? items[0] : items.join(","));
      continue;
    }
    values[key] = f.cli(args[++i]);
  }
  return { values, configFile, problems };
}

/** The values of a command line; throws a ConfigError listing every problem of it. */
export function parseOverrides(args: readonly string[]): Record<string, unknown> {
  const p = parseArgs(args);
  if (p.problems.length > 0) throw new ConfigError(`command line: ${p.problems.length} problem${p.problems.length > 1 ? "s" : ""}:\n${p.problems.map((x) => `  - ${x}`).join("\n")}`);
  return p.values;
}

/** File values (the positional file, or --config FILE), then command-line values on top, then defaults and checks; all problems at once. */
export function loadConfig(file: string | null, overrides: readonly string[] = []): { config: TrainConfig; notes: string[] } {
  const p = parseArgs(overrides);
  const problems = [...p.problems];
  if (file && p.configFile) problems.push(`--config ${p.configFile} and the config file ${file} are both given; pass one`);
  const path = file ?? p.configFile;
  const raw = path ? readConfigFile(path) : {};
  const source = path ? (overrides.length ? `${path} + command-line options` : path) : "command-line options";
  return resolveConfig({ ...raw, ...p.values }, source, problems);
}

const REQUIRED: readonly ConfigKey[] = ["method", "model_name_or_path"];

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

/** The `preftune train --help` key reference, generated from SCHEMA and the compatibility tables. */
export function configHelp(): string {
  const lines: string[] = [];
  const W = Math.max(30, ...CONFIG_KEYS.filter((k) => field(k).group !== "compat").map((k) => k.length));
  for (const g of Object.keys(GROUP_TITLES) as Group[]) {
    lines.push("", `${GROUP_TITLES[g]}:`);
    if (g === "compat") {
      const byReason = new Map<string, string[]>();
      for (const k of IGNORED_KEYS) {
        const c = COMPAT_KEYS[k as CompatName] as CompatKey;
        const reason = c.refuse ? `accepted at ${show((c.quiet ?? [c.def])[0])} only: ${c.why}` : c.why;
        byReason.set(reason, [...(byReason.get(reason) ?? []), k]);
      }
      for (const [reason, keys] of byReason) lines.push(`  ${keys.join(", ")}`, `      ${reason}`);
      lines.push("", "Deprecated names (read as their current key, with a note):");
      for (const [old, a] of Object.entries(ALIASES)) lines.push(`  ${old.padEnd(W)} → ${a.to} (${a.from})`);
      continue;
    }
    for (const k of CONFIG_KEYS) {
      const f = field(k);
      if (f.group !== g) continue;
      const only = f.methods ? ` [${f.methods.join(", ")}]` : "";
      const d = showDefault(k);
      lines.push(`  ${k.padEnd(W)} ${f.doc}${only}`, `  ${"".padEnd(W)} ${f.type}${d === "required" ? ", required" : `, default ${d}`}`);
    }
  }
  return lines.join("\n");
}
