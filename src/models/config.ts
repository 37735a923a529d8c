// Hugging Face config.json <-> DecoderConfig for the Llama-shaped families we run natively (Llama incl. SmolLM2,
// Mistral, Qwen2/2.5, Qwen3), with RoPE scaling of rope_type linear, dynamic, yarn and llama3 (Llama 3.1/3.2,
// Qwen2.5 long context). Missing keys take the default of the transformers config class, so a config.json means
// here what it means to transformers. Not a general config system: longrope, partial rotary, sliding-window
// attention and non-SiLU MLPs are refused with a message rather than half supported.
//
// Class defaults used (transformers configuration_{llama,mistral,qwen2,qwen3}.py, v4.5x and v5 agree):
//   tie_word_embeddings false in all four classes (SmolLM2 / small Qwen checkpoints set it true explicitly);
//   num_key_value_heads: Llama = num_attention_heads, Mistral 8, Qwen2 32, Qwen3 32;
//   head_dim: Llama/Mistral/Qwen2 hidden_size / num_attention_heads, Qwen3 128;
//   rope_theta 10000, rms_norm_eps 1e-6, hidden_act "silu"; max_position_embeddings Llama 2048,
//   Mistral 131072, Qwen2/Qwen3 32768; vocab_size Llama/Mistral 32000, Qwen 151936.
// Biases: Qwen2 always has q/k/v bias (never o); Llama attention_bias -> q/k/v/o bias, mlp_bias -> MLP bias;
// Qwen3 attention_bias -> q/k/v/o bias, plus q_norm/k_norm; Mistral has no biases.
import type { DecoderConfig, RopeScaling } from "../core/types.ts";

interface Family {
  modelType: string;
  defaults: { vocab: number; hidden: number; inter: number; layers: number; heads: number; kvHeads: number | null; headDim: number | null; maxPos: number };
}

const FAMILIES: Record<string, Family> = {
  LlamaForCausalLM: { modelType: "llama", defaults: { vocab: 32000, hidden: 4096, inter: 11008, layers: 32, heads: 32, kvHeads: null, headDim: null, maxPos: 2048 } },
  MistralForCausalLM: { modelType: "mistral", defaults: { vocab: 32000, hidden: 4096, inter: 14336, layers: 32, heads: 32, kvHeads: 8, headDim: null, maxPos: 131072 } },
  Qwen2ForCausalLM: { modelType: "qwen2", defaults: { vocab: 151936, hidden: 4096, inter: 22016, layers: 32, heads: 32, kvHeads: 32, headDim: null, maxPos: 32768 } },
  Qwen3ForCausalLM: { modelType: "qwen3", defaults: { vocab: 151936, hidden: 4096, inter: 22016, layers: 32, heads: 32, kvHeads: 32, headDim: 128, maxPos: 32768 } },
};
export const SUPPORTED_ARCHITECTURES = Object.keys(FAMILIES);

type Json = Record<string, unknown>;

/** Sizes are C ints in the native core: whole numbers up to 2^31 − 1. */
export const MAX_DIMENSION = 2 ** 31 - 1;

/** A short, safe rendering of any JSON value for messages (deep nesting and huge values stay short). */
export function brief(v: unknown, max = 60): string {
  const walk = (x: unknown, depth: number): string => {
    if (typeof x === "string") return JSON.stringify(x.length > max ? `${x.slice(0, max)}…` : x);
    if (x === null || typeof x !== "object") return typeof x === "bigint" ? `${x}n` : String(x);
    if (depth > 3) return Array.isArray(x) ? "[…]" : "{…}";
    if (Array.isArray(x)) return `[${x.slice(0, 8).map((y) => walk(y, depth + 1)).join(",")}${x.length > 8 ? ",…" : ""}]`;
    const keys = Object.keys(x);
    return `{${keys.slice(0, 6).map((k) => `${JSON.stringify(k)}:${walk((x as Json)[k], depth + 1)}`).join(",")}${keys.length > 6 ? ",…" : ""}}`;
  };
  const s = walk(v, 0);
  return s.length > max * 2 ? `${s.slice(0, max * 2)}…` : s;
}

/** Parse a config.json object; file is only used in error messages. */
export function parseConfig(json: unknown, file: string): DecoderConfig {
  if (json === null || typeof json !== "object" || Array.isArray(json)) throw new Error(`${file}: config must be a JSON object`);
  const j = json as Json;
  const archs = j.architectures;
  if (!Array.isArray(archs) || archs.length !== 1 || typeof archs[0] !== "string") {
    throw new Error(`${file}: "architectures" must be a one-element list such as ["LlamaForCausalLM"]; supported: ${SUPPORTED_ARCHITECTURES.join(", ")}`);
  }
  const architecture = archs[0];
  const fam = Object.hasOwn(FAMILIES, architecture) ? FAMILIES[architecture] : undefined;
  if (!fam) throw new Error(`${file}: architecture "${architecture}" is not supported; supported: ${SUPPORTED_ARCHITECTURES.join(", ")} (SmolLM/SmolLM2 are LlamaForCausalLM)`);
  const d = fam.defaults;

  // own keys only: a config.json key named "constructor" or "__proto__" is data, not Object's
  const get = (key: string): unknown => (Object.hasOwn(j, key) ? j[key] : undefined);
  const int = (key: string, def: number | null): number => {
    const v = get(key) ?? def;
    if (v === null) throw new Error(`${file}: "${key}" is required`);
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) throw new Error(`${file}: "${key}" must be a positive integer, got ${brief(v)}`);
    if (v > MAX_DIMENSION) throw new Error(`${file}: "${key}" must be at most ${MAX_DIMENSION} (2^31 − 1, the largest size the native core takes), got ${v}`);
    return v;
  };
  const num = (key: string, v: unknown): number => {
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) throw new Error(`${file}: "${key}" must be a positive number, got ${brief(v)}`);
    return v;
  };
  const bool = (key: string, def: boolean): boolean => {
    const v = get(key) ?? def;
    if (typeof v !== "boolean") throw new Error(`${file}: "${key}" must be true or false, got ${brief(v)}`);
    return v;
  };

  const hidden = int("hidden_size", d.hidden);
  const heads = int("num_attention_heads", d.heads);
  const kvHeads = int("num_key_value_heads", d.kvHeads ?? heads);
  if (heads % kvHeads !== 0) throw new Error(`${file}: num_attention_heads (${heads}) must be a multiple of num_key_value_heads (${kvHeads})`);
  let headDim: number;
  if (get("head_dim") != null || d.headDim != null) headDim = int("head_dim", d.headDim);
  else {
    if (hidden % heads !== 0) throw new Error(`${file}: hidden_size (${hidden}) is not a multiple of num_attention_heads (${heads}); set "head_dim"`);
    headDim = hidden / heads;
  }
  if (headDim % 2 !== 0) throw new Error(`${file}: head_dim ${headDim} must be even for rotary embeddings`);

  const act = get("hidden_act") ?? "silu";
  if (act !== "silu" && act !== "swish") throw new Error(`${file}: hidden_act ${brief(act)} is not supported; only "silu" (SwiGLU MLP)`);

  let maxPos = int("max_position_embeddings", d.maxPos);
  const rope = parseRope(j, file, maxPos);
  maxPos = usableLength(maxPos, rope.scaling);
  checkSlidingWindow(j, file, architecture);
  if (architecture === "MistralForCausalLM" && get("sliding_window") !== null) {
    // Mistral's window (default 4096) only changes attention for sequences longer than it, so we keep the
    // model exact by capping the usable length at the window instead of refusing Mistral-7B-v0.1.
    const w = int("sliding_window", 4096);
    maxPos = Math.min(maxPos, w);
  }

  const attnBias = bool("attention_bias", false);
  const qwen2 = architecture === "Qwen2ForCausalLM";
  const llama = architecture === "LlamaForCausalLM";
  const qwen3 = architecture === "Qwen3ForCausalLM";
  const vocabSize = int("vocab_size", d.vocab);
  const intermediateSize = int("intermediate_size", d.inter);
  const numLayers = int("num_hidden_layers", d.layers);
  // The parameter count the sizes imply must be exact (it sizes the native parameter buffer).
  const qDim = heads * headDim, kvDim = kvHeads * headDim;
  const perLayer = hidden * (2 * qDim + 2 * kvDim) + 3 * hidden * intermediateSize + 2 * hidden + 4 * (qDim + kvDim);
  const params = vocabSize * hidden * (bool("tie_word_embeddings", false) ? 1 : 2) + numLayers * perLayer + hidden;
  if (!Number.isSafeInteger(params)) throw new Error(`${file}: the sizes imply about ${params.toExponential(2)} parameters, more than can be counted exactly (2^53); check num_hidden_layers, hidden_size, intermediate_size and vocab_size`);
  return {
    architecture,
    vocabSize,
    hiddenSize: hidden,
    intermediateSize,
    numLayers,
    numHeads: heads,
    numKvHeads: kvHeads,
    headDim,
    rmsNormEps: num("rms_norm_eps", get("rms_norm_eps") ?? 1e-6),
    ropeTheta: rope.theta,
    maxPositionEmbeddings: maxPos,
    tieWordEmbeddings: bool("tie_word_embeddings", false),
    qkvBias: qwen2 || ((llama || qwen3) && attnBias),
    oBias: (llama || qwen3) && attnBias,
    mlpBias: llama && bool("mlp_bias", false),
    qkNorm: qwen3,
    ropeScaling: rope.scaling,
  };
}

// transformers v4 writes rope_theta + rope_scaling; v5 writes rope_parameters {rope_type, rope_theta, ...}.
// As in v5 (RotaryEmbeddingConfigMixin), a non-empty rope_scaling wins over rope_parameters, rope_type over the
// old "type", and a top-level rope_theta fills the gap; the scaled types then take transformers' defaults:
// original_max_position_embeddings = max_position_embeddings (llama3, yarn), yarn's factor = max_position_embeddings /
// original_max_position_embeddings when null, beta_fast 32 and beta_slow 1 when absent or 0, truncate true, and
// attention_factor from get_mscale (0.1 ln(factor) + 1, or the mscale / mscale_all_dim ratio when both are set).
const ROPE_SUPPORTED = ["default", "linear", "dynamic", "yarn", "llama3"];
export function parseRope(j: Json, file: string, maxPositionEmbeddings: number): { theta: number; scaling: RopeScaling | null } {
  const own = (o: Json, k: string): unknown => (Object.hasOwn(o, k) ? o[k] : undefined);
  const present = (v: unknown) => v != null && !(typeof v === "object" && !Array.isArray(v) && Object.keys(v).length === 0);
  const key = present(own(j, "rope_scaling")) ? "rope_scaling" : "rope_parameters";
  const raw = own(j, key) ?? {};
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw new Error(`${file}: "${key}" must be an object or null, got ${brief(raw)}`);
  const s = raw as Json;
  const field = (k: string) => `${key}.${k}`;
  const number = (k: string, v: unknown, positive = true): number => {
    if (typeof v !== "number" || !Number.isFinite(v) || (positive && v <= 0)) throw new Error(`${file}: "${field(k)}" must be a positive number, got ${brief(v)}`);
    return v;
  };
  const required = (k: string, type: string): unknown => {
    if (!Object.hasOwn(s, k)) throw new Error(`${file}: "${key}" of rope_type "${type}" needs "${k}" (transformers requires it)`);
    return s[k];
  };
  const typeKey = Object.hasOwn(s, "rope_type") ? "rope_type" : "type";
  const type = own(s, typeKey) ?? "default";
  if (typeof type !== "string" || !ROPE_SUPPORTED.includes(type)) {
    const why = type === "longrope" ? "not supported yet (Phi-3 style short/long factors)" : "not supported";
    throw new Error(`${file}: ${field(typeKey)} ${brief(type)} is ${why}; supported: ${ROPE_SUPPORTED.join(", ")}`);
  }
  const partial = own(s, "partial_rotary_factor") ?? own(j, "partial_rotary_factor") ?? 1;
  if (partial !== 1) throw new Error(`${file}: partial_rotary_factor ${brief(partial)} is not supported yet; only 1 (RoPE over the whole head)`);
  const theta = number("rope_theta", own(s, "rope_theta") ?? own(j, "rope_theta") ?? 10000);
  if (type === "default") return { theta, scaling: null };

  const factorOf = () => number("factor", required("factor", type));
  const originalMax = (): number => {
    const v = own(s, "original_max_position_embeddings") ?? maxPositionEmbeddings;
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0 || v > MAX_DIMENSION) throw new Error(`${file}: "${field("original_max_position_embeddings")}" must be a positive integer, got ${brief(v)}`);
    return v;
  };
  const base = { lowFreqFactor: 0, highFreqFactor: 0, betaFast: 32, betaSlow: 1, truncate: true, attentionFactor: 1 };
  if (type === "linear") return { theta, scaling: { type, factor: factorOf(), originalMaxPositionEmbeddings: maxPositionEmbeddings, ...base } };
  if (type === "dynamic") return { theta, scaling: { type, factor: factorOf(), originalMaxPositionEmbeddings: maxPositionEmbeddings, ...base } };
  if (type === "llama3") {
    const factor = factorOf();
    const lowFreqFactor = number("low_freq_factor", required("low_freq_factor", type));
    const highFreqFactor = number("high_freq_factor", required("high_freq_factor", type));
    if (highFreqFactor === lowFreqFactor) throw new Error(`${file}: "${field("high_freq_factor")}" must differ from low_freq_factor (both ${lowFreqFactor})`);
    return { theta, scaling: { type, factor, originalMaxPositionEmbeddings: originalMax(), ...base, lowFreqFactor, highFreqFactor } };
  }
  // yarn
  const original = originalMax();
  const f = required("factor", type);
  const factor = f == null ? maxPositionEmbeddings / original : number("factor", f);
  const optional = (k: string): number | null => {
    const v = own(s, k);
    return v == null ? null : number(k, v, false);
  };
  const mscale = optional("mscale"), mscaleAllDim = optional("mscale_all_dim");
  const getMscale = (scale: number, m = 1) => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
  const att = optional("attention_factor");
  const attentionFactor = att ?? (mscale && mscaleAllDim ? getMscale(factor, mscale) / getMscale(factor, mscaleAllDim) : getMscale(factor));
  if (!(attentionFactor > 0)) throw new Error(`${file}: "${field("attention_factor")}" must be a positive number, got ${attentionFactor}`);
  const betaFast = optional("beta_fast") || 32, betaSlow = optional("beta_slow") || 1;
  if (betaFast <= 0 || betaSlow <= 0) throw new Error(`${file}: "${field("beta_fast")}" and "${field("beta_slow")}" must be positive, got ${betaFast} and ${betaSlow}`);
  const t = own(s, "truncate");
  if (t != null && typeof t !== "boolean") throw new Error(`${file}: "${field("truncate")}" must be true or false, got ${brief(t)}`);
  const truncate = Object.hasOwn(s, "truncate") ? t === true : true;  // transformers: get("truncate", True), so null is false
  return { theta, scaling: { type: "yarn", factor, originalMaxPositionEmbeddings: original, ...base, betaFast, betaSlow, truncate, attentionFactor } };
}

function checkSlidingWindow(j: Json, file: string, architecture: string): void {
  if (Object.hasOwn(j, "use_sliding_window") && j.use_sliding_window === true) {
    throw new Error(`${file}: "use_sliding_window": true is not supported (attention here is full causal); set it to false`);
  }
  const types = Object.hasOwn(j, "layer_types") ? j.layer_types : undefined;
  if (Array.isArray(types) && types.some((t) => t !== "full_attention") && architecture !== "MistralForCausalLM") {
    throw new Error(`${file}: layer_types other than "full_attention" (${[...new Set(types)].join(", ")}) are not supported`);
  }
}

/**
 * The longest sequence we run (DecoderConfig.maxPositionEmbeddings). transformers never refuses a length; we refuse
 * past max_position_embeddings, except where the scaling exists to run past it: dynamic (NTK recomputed for the run's
 * length) and yarn (factor is the post-/pre-yarn length ratio, e.g. Qwen2.5's factor 4 over 32768) reach
 * factor x their pretraining length.
 */
function usableLength(maxPos: number, r: RopeScaling | null): number {
  if (!r || (r.type !== "dynamic" && r.type !== "yarn")) return maxPos;
  return Math.min(MAX_DIMENSION, Math.max(maxPos, Math.floor(r.factor * r.originalMaxPositionEmbeddings)));
}

/**
 * A config.json object transformers loads as the same model (v4 and v5): architecture, sizes, biases,
 * rope_theta (both the v4 top-level key and the v5 rope_parameters), sliding windows switched off.
 * extra is merged last (bos_token_id, eos_token_id, torch_dtype, ...).
 */
export function configToJson(cfg: DecoderConfig, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const fam = Object.hasOwn(FAMILIES, cfg.architecture) ? FAMILIES[cfg.architecture] : undefined;
  if (!fam) throw new Error(`configToJson: architecture "${cfg.architecture}" is not supported; supported: ${SUPPORTED_ARCHITECTURES.join(", ")}`);
  const a = cfg.architecture;
  const bad = (why: string) => new Error(`configToJson: ${a} cannot express ${why}`);
  if (a === "LlamaForCausalLM" && cfg.qkvBias !== cfg.oBias) throw bad("q/k/v bias without o bias (attention_bias sets both)");
  if (a === "Qwen3ForCausalLM" && cfg.qkvBias !== cfg.oBias) throw bad("q/k/v bias without o bias (attention_bias sets both)");
  if (a === "Qwen2ForCausalLM" && (!cfg.qkvBias || cfg.oBias)) throw bad("anything but q/k/v bias without o bias");
  if (a === "MistralForCausalLM" && (cfg.qkvBias || cfg.oBias)) throw bad("attention biases");
  if (a !== "LlamaForCausalLM" && cfg.mlpBias) throw bad("MLP biases (only Llama's mlp_bias)");
  if ((a === "Qwen3ForCausalLM") !== cfg.qkNorm) throw bad(cfg.qkNorm ? "q/k norms (only Qwen3)" : "attention without q/k norms");
  const out: Record<string, unknown> = {
    architectures: [a],
    model_type: fam.modelType,
    vocab_size: cfg.vocabSize,
    hidden_size: cfg.hiddenSize,
    intermediate_size: cfg.intermediateSize,
    num_hidden_layers: cfg.numLayers,
    num_attention_heads: cfg.numHeads,
    num_key_value_heads: cfg.numKvHeads,
    head_dim: cfg.headDim,
    hidden_act: "silu",
    // dynamic: the threshold (usableLength extends the length we run past it)
    max_position_embeddings: cfg.ropeScaling?.type === "dynamic" ? cfg.ropeScaling.originalMaxPositionEmbeddings : cfg.maxPositionEmbeddings,
    rms_norm_eps: cfg.rmsNormEps,
    rope_theta: cfg.ropeTheta,
    rope_scaling: ropeScalingJson(cfg),
    rope_parameters: { rope_type: cfg.ropeScaling?.type ?? "default", rope_theta: cfg.ropeTheta, ...ropeScalingJson(cfg) },
    tie_word_embeddings: cfg.tieWordEmbeddings,
    initializer_range: 0.02,
    attention_dropout: 0.0,
    use_cache: true,
    torch_dtype: "float32",
  };
  if (a === "LlamaForCausalLM") Object.assign(out, { attention_bias: cfg.qkvBias, mlp_bias: cfg.mlpBias });
  if (a === "Qwen3ForCausalLM") out.attention_bias = cfg.qkvBias;
  if (a === "MistralForCausalLM") out.sliding_window = null;
  if (a === "Qwen2ForCausalLM" || a === "Qwen3ForCausalLM") Object.assign(out, { use_sliding_window: false, sliding_window: null });
  return { ...out, ...extra };
}

/** rope_scaling keys (v4 layout, no rope_theta) that parseRope reads back as cfg.ropeScaling; null for plain RoPE. */
function ropeScalingJson(cfg: DecoderConfig): Record<string, unknown> | null {
  const r = cfg.ropeScaling;
  if (!r) return null;
  if (r.type === "linear" || r.type === "dynamic") return { rope_type: r.type, factor: r.factor };
  if (r.type === "llama3") {
    return { rope_type: r.type, factor: r.factor, low_freq_factor: r.lowFreqFactor, high_freq_factor: r.highFreqFactor, original_max_position_embeddings: r.originalMaxPositionEmbeddings };
  }
  return {
    rope_type: r.type, factor: r.factor, original_max_position_embeddings: r.originalMaxPositionEmbeddings, beta_fast: r.betaFast,
    beta_slow: r.betaSlow, truncate: r.truncate, attention_factor: r.attentionFactor,
  };
}
