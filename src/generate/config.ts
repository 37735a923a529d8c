// Resolving a GenerationConfig the way transformers 5.x does: the caller's overrides, then the model folder's
// generation_config.json, then config.json's token ids, then HF's global defaults; a lower layer only fills
// what is still unset (null). Checked as HF checks it, with every problem named by key, value, source and fix.
// Also HF's length rules (maxNewTokens). Not the processors themselves (sampling.ts) and not the CLI parser.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { GenerationConfig } from "./types.ts";
import { nearest } from "../util/spelling.ts";

/** Bad generation settings; `problems` lists each one (the message joins them). */
export class GenerationConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(problems.length === 1 ? problems[0] : `invalid generation settings:\n  - ${problems.join("\n  - ")}`);
    this.name = "GenerationConfigError";
    this.problems = problems;
  }
}

/** HF's global defaults (GenerationConfig._get_default_generation_params); max_length null = "20 new tokens". */
export function defaultGenerationConfig(): GenerationConfig {
  return {
    do_sample: false, temperature: 1, top_k: 50, top_p: 1, min_p: null, typical_p: 1, repetition_penalty: 1,
    no_repeat_ngram_size: 0, max_new_tokens: null, max_length: null, min_new_tokens: null, eos_token_id: [],
    pad_token_id: null, stop_strings: [], seed: null,
  };
}

type Key = keyof GenerationConfig;

/** Every key an override may set, with its type and meaning (for --help and the server). */
export const GENERATION_OPTIONS: Readonly<Record<Key, { type: string; doc: string }>> = {
  do_sample: { type: "bool", doc: "false: greedy (argmax); true: sample with the warpers below" },
  temperature: { type: "float > 0", doc: "divides the logits before the filters (sampling only)" },
  top_k: { type: "int >= 0", doc: "keep the k most likely tokens (ties at the k-th kept); 0 disables; HF default 50" },
  top_p: { type: "float in [0, 1]", doc: "keep the smallest head whose probability reaches top_p; 1 disables" },
  min_p: { type: "float in [0, 1] | null", doc: "drop tokens below min_p x the top probability; null disables" },
  typical_p: { type: "float in (0, 1]", doc: "locally typical sampling mass; 1 disables" },
  repetition_penalty: { type: "float > 0", doc: "divides positive / multiplies negative logits of seen tokens (greedy too); 1 disables" },
  no_repeat_ngram_size: { type: "int >= 0", doc: "never repeat an n-gram of this size (greedy too); 0 disables" },
  max_new_tokens: { type: "int >= 1 | null", doc: "new tokens to generate; wins over max_length" },
  max_length: { type: "int >= 1 | null", doc: "cap on prompt + new tokens; with neither set, 20 new tokens" },
  min_new_tokens: { type: "int >= 0 | null", doc: "EOS is masked until this many new tokens exist" },
  eos_token_id: { type: "int | int[]", doc: "any of these ends the sequence" },
  pad_token_id: { type: "int | null", doc: "fills finished rows of a batch; defaults to the first EOS id" },
  stop_strings: { type: "string | string[]", doc: "end when one of these appears in the output (not returned)" },
  seed: { type: "int in [0, 2^53] | null", doc: "seeds the sampler; null draws a fresh seed per call" },
};

/** The keys of GENERATION_OPTIONS, in their documented order. */
export const GENERATION_OPTION_KEYS: readonly Key[] = Object.keys(GENERATION_OPTIONS) as Key[];

/**
 * HF settings that change decoding in ways preftune does not implement, with the value at which they do nothing.
 * Any other value is refused (from the overrides or from generation_config.json).
 */
const UNSUPPORTED: Readonly<Record<string, { none: unknown; what: string }>> = {
  num_beams: { none: 1, what: "beam search" },
  num_beam_groups: { none: 1, what: "group beam search" },
  num_return_sequences: { none: 1, what: "several sequences per prompt (send the prompt several times instead)" },
  penalty_alpha: { none: null, what: "contrastive search" },
  diversity_penalty: { none: 0, what: "diverse beam search" },
  dola_layers: { none: null, what: "DoLa decoding" },
  min_length: { none: 0, what: "min_length (a total that counts the prompt; use min_new_tokens)" },
  epsilon_cutoff: { none: 0, what: "epsilon sampling" },
  eta_cutoff: { none: 0, what: "eta sampling" },
  top_h: { none: null, what: "top-H sampling" },
  encoder_repetition_penalty: { none: 1, what: "the encoder repetition penalty" },
  encoder_no_repeat_ngram_size: { none: 0, what: "encoder n-gram bans" },
  bad_words_ids: { none: null, what: "banned word lists" },
  sequence_bias: { none: null, what: "sequence biases" },
  force_words_ids: { none: null, what: "forced words (constrained beam search)" },
  constraints: { none: null, what: "constrained beam search" },
  forced_bos_token_id: { none: null, what: "a forced first token" },
  forced_eos_token_id: { none: null, what: "a forced last token" },
  forced_decoder_ids: { none: null, what: "forced decoder ids" },
  suppress_tokens: { none: null, what: "suppressed tokens" },
  begin_suppress_tokens: { none: null, what: "tokens suppressed at the first step" },
  exponential_decay_length_penalty: { none: null, what: "the exponential decay length penalty" },
  guidance_scale: { none: null, what: "classifier-free guidance" },
  watermarking_config: { none: null, what: "watermarking" },
  max_time: { none: null, what: "a time limit" },
  token_healing: { none: false, what: "token healing" },
};

/**
 * generation_config.json keys that do not change the tokens we produce (caching, output format, beam-only or
 * speculative-decoding knobs, bookkeeping): ignored when read from the file.
 */
const IGNORED_IN_FILE = new Set([
  "transformers_version", "_from_model_config", "_commit_hash", "bos_token_id", "decoder_start_token_id", "use_cache",
  "cache_implementation", "cache_config", "return_legacy_cache", "output_attentions", "output_hidden_states",
  "output_scores", "output_logits", "return_dict_in_generate", "renormalize_logits", "remove_invalid_values",
  "length_penalty", "early_stopping", "low_memory", "num_assistant_tokens", "num_assistant_tokens_schedule",
  "assistant_confidence_threshold", "assistant_lookbehind", "target_lookbehind", "assistant_early_exit",
  "is_assistant", "prompt_lookup_num_tokens", "max_matching_ngram_size", "compile_config", "disable_compile",
  "generation_kwargs", "trust_remote_code", "prefill_chunk_size",
]);

/** The valid option key nearest to `key` (dashes read as underscores, case ignored). */
export function closestGenerationKey(key: string): Key {
  return nearest(key, GENERATION_OPTION_KEYS).key;
}

// ---- reading one value ----

/** One layer of raw values and the name used for it in messages. */
interface Layer { source: string; values: Record<string, unknown>; strings: boolean }

/** A value as it would be written in JSON, for messages. */
const show = (v: unknown) => (typeof v === "string" || Array.isArray(v) || (v && typeof v === "object") ? JSON.stringify(v) : String(v));

/** Overrides may come from a command line: accept "0.9", "true", "null", "[1,2]" there (not in the file). */
function fromString(v: unknown, strings: boolean): unknown {
  if (!strings || typeof v !== "string") return v;
  const t = v.trim();
  if (t === "null" || t === "none" || t === "None") return null;
  if (t === "true" || t === "false") return t === "true";
  if (t !== "" && Number.isFinite(Number(t))) return Number(t);
  if (t.startsWith("[")) { try { return JSON.parse(t); } catch { return v; } }
  return v;
}

/** Checks one raw value of `key`; returns the typed value or a reason (without the key or source). */
function parseValue(key: Key, v: unknown): { ok: unknown } | { why: string } {
  const num = (x: unknown) => typeof x === "number" && Number.isFinite(x);
  const int = (x: unknown) => num(x) && Number.isInteger(x);
  const bad = (why: string) => ({ why });
  switch (key) {
    case "do_sample":
      return typeof v === "boolean" ? { ok: v } : bad("must be true or false");
    case "temperature":
      return num(v) && (v as number) >= 0 ? { ok: v } : bad("must be a number > 0 (0 only with do_sample false); e.g. 0.7");
    case "top_p":
    case "min_p":
      return num(v) && (v as number) >= 0 && (v as number) <= 1 ? { ok: v } : bad(`must be a number in [0, 1]${key === "top_p" ? "; 1 disables top-p" : "; null disables min-p"}`);
    case "typical_p":
      return num(v) && (v as number) > 0 && (v as number) <= 1 ? { ok: v } : bad("must be a number in (0, 1]; 1 disables typical sampling");
    case "repetition_penalty":
      return num(v) && (v as number) > 0 ? { ok: v } : bad("must be a number > 0; 1 disables the penalty");
    case "top_k":
      return int(v) && (v as number) >= 0 ? { ok: v } : bad("must be an integer >= 0; 0 disables top-k");
    case "no_repeat_ngram_size":
    case "min_new_tokens":
      return int(v) && (v as number) >= 0 ? { ok: v } : bad("must be an integer >= 0");
    case "max_new_tokens":
    case "max_length":
      return int(v) && (v as number) >= 1 ? { ok: v } : bad("must be an integer >= 1");
    case "pad_token_id":
      return int(v) && (v as number) >= 0 ? { ok: v } : bad("must be a token id (an integer >= 0)");
    case "seed":
      return int(v) && (v as number) >= 0 && (v as number) <= 2 ** 53 ? { ok: v } : bad("must be an integer in [0, 2^53]");
    case "eos_token_id": {
      const list = Array.isArray(v) ? v : [v];
      return list.every((x) => int(x) && (x as number) >= 0) ? { ok: list.map(Number) } : bad("must be a token id or a list of token ids (integers >= 0)");
    }
    case "stop_strings": {
      const list = Array.isArray(v) ? v : [v];
      return list.every((x) => typeof x === "string" && x.length > 0) ? { ok: [...list] } : bad("must be a non-empty string or a list of non-empty strings");
    }
  }
}

// ---- the layers ----

/** Reads <modelDir>/generation_config.json, or null when the folder has none. */
export function readGenerationConfigFile(modelDir: string): { file: string; values: Record<string, unknown> } | null {
  const file = join(modelDir, "generation_config.json");
  if (!existsSync(file)) return null;
  let values: unknown;
  try { values = JSON.parse(readFileSync(file, "utf8")); } catch (e) {
    throw new GenerationConfigError([`${file}: not valid JSON (${(e as Error).message}); restore it from the model repository or delete it to use HF's defaults`]);
  }
  if (!values || typeof values !== "object" || Array.isArray(values)) {
    throw new GenerationConfigError([`${file}: must hold a JSON object of generation settings, found ${show(values)}`]);
  }
  return { file, values: values as Record<string, unknown> };
}

/** The token ids config.json supplies (a multimodal config keeps them under text_config). */
function tokenIdsOf(configJson: Record<string, unknown>): Record<string, unknown> {
  const text = configJson.text_config && typeof configJson.text_config === "object" ? configJson.text_config as Record<string, unknown> : {};
  return { eos_token_id: configJson.eos_token_id ?? text.eos_token_id, pad_token_id: configJson.pad_token_id ?? text.pad_token_id };
}

export interface ResolveOptions {
  modelDir?: string | null;                  // its generation_config.json is read when present
  configJson?: Record<string, unknown>;      // the model's config.json (for eos_token_id / pad_token_id)
  overrides?: Record<string, unknown>;       // the caller's settings (snake_case; dashes accepted)
  where?: string;                            // names the overrides in messages (default "overrides")
}

/**
 * The effective GenerationConfig: overrides > generation_config.json > config.json token ids > HF defaults.
 * null / undefined means "not set" in every layer (as None in HF 5.x), so it never hides a lower layer: to turn
 * off a file's min_p pass 0, a file's top_k pass 0. pad_token_id falls back to the first EOS id (as HF's
 * generate does). Throws GenerationConfigError listing every problem.
 */
export function resolveGenerationConfig(opts: ResolveOptions): GenerationConfig {
  const where = opts.where ?? "overrides";
  const problems: string[] = [];
  const overrides: Record<string, unknown> = {};
  for (const [raw, v] of Object.entries(opts.overrides ?? {})) {
    const k = raw.replace(/-/g, "_");
    if (k in GENERATION_OPTIONS || k in UNSUPPORTED) overrides[k] = v;
    else if (IGNORED_IN_FILE.has(k)) problems.push(`${where}: "${raw}" only matters to transformers (it is ignored in generation_config.json) and is not an option here; remove it`);
    else problems.push(`${where}: unknown key "${raw}"; did you mean "${closestGenerationKey(raw)}"? (valid keys: ${GENERATION_OPTION_KEYS.join(", ")})`);
  }
  const file = opts.modelDir ? readGenerationConfigFile(opts.modelDir) : null;
  const layers: Layer[] = [{ source: where, values: overrides, strings: true }];
  if (file) layers.push({ source: file.file, values: file.values, strings: false });
  if (opts.configJson) layers.push({ source: opts.modelDir ? join(opts.modelDir, "config.json") : "config.json", values: tokenIdsOf(opts.configJson), strings: false });

  // unsupported HF features: refuse unless the effective value is one that does nothing. An override of
  // these decides even when null, so `suppress_tokens: null` can cancel a file's setting.
  for (const [k, { none, what }] of Object.entries(UNSUPPORTED)) {
    const layer = k in overrides ? layers[0] : file && file.values[k] != null ? layers[1] : null;
    if (!layer) continue;
    const v = fromString(layer.values[k], layer.strings);
    const noop = v == null || v === none || (k === "guidance_scale" && v === 1);
    if (!noop) problems.push(`${layer.source}: ${k} = ${show(v)} asks for ${what}, which preftune does not implement; ${layer === layers[0] ? "remove it or set" : "override it with"} ${k}: ${show(none)}`);
  }

  const cfg = defaultGenerationConfig() as unknown as Record<Key, unknown>;
  const sourceOf: Partial<Record<Key, string>> = {};
  for (const key of GENERATION_OPTION_KEYS) {
    for (const layer of layers) {
      const v = fromString(layer.values[key], layer.strings);
      if (v === undefined || v === null) continue;
      const r = parseValue(key, v);
      if ("why" in r) problems.push(`${layer.source}: ${key} = ${show(v)} ${r.why}`);
      else { cfg[key] = r.ok; sourceOf[key] = layer.source; }
      break;
    }
  }
  const out = cfg as unknown as GenerationConfig;

  // HF's TemperatureLogitsWarper refuses temperature 0 when sampling; greedy ignores temperature
  if (out.do_sample && out.temperature === 0) {
    problems.push(`${sourceOf.temperature}: temperature = 0 with do_sample true${sourceOf.do_sample && sourceOf.do_sample !== sourceOf.temperature ? ` (from ${sourceOf.do_sample})` : ""}; for greedy decoding pass do_sample: false instead`);
  }
  if (out.pad_token_id === null && out.eos_token_id.length > 0) out.pad_token_id = out.eos_token_id[0];
  if (problems.length) throw new GenerationConfigError(problems);
  return out;
}

/**
 * How many new tokens to generate at most (HF _prepare_generated_length): max_new_tokens when set (it wins over
 * max_length); else max_length as a total cap counting the prompt; else 20 new tokens. The result is also
 * clamped so prompt + new fits maxPositionEmbeddings (HF clamps only in the default case; our core cannot run
 * past the model's positions). A prompt that leaves no room is an error, as in HF.
 */
export function maxNewTokens(cfg: GenerationConfig, promptLength: number, maxPositionEmbeddings: number | null): number {
  let total: number;
  if (cfg.max_new_tokens != null) total = promptLength + cfg.max_new_tokens;
  else if (cfg.max_length != null) total = cfg.max_length;
  else total = promptLength + 20;
  if (cfg.max_new_tokens == null && cfg.max_length != null && promptLength >= total) {
    throw new GenerationConfigError([
      `the prompt has ${promptLength} tokens but max_length = ${total} caps prompt + output together, so nothing can be generated; set max_new_tokens instead (or raise max_length)`,
    ]);
  }
  if (maxPositionEmbeddings != null && maxPositionEmbeddings > 0 && total > maxPositionEmbeddings) {
    if (promptLength >= maxPositionEmbeddings) {
      throw new GenerationConfigError([
        `the prompt has ${promptLength} tokens, which fills the model's max_position_embeddings = ${maxPositionEmbeddings}; shorten the prompt`,
      ]);
    }
    total = maxPositionEmbeddings;
  }
  return total - promptLength;
}
