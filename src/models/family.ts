// One description of a decoder-only transformer (norms, MLP, positions, biases, residual layout, per-layer
// attention pattern, embedding and logit scaling, weight names) and the mapping from each family's config.json
// onto it, with transformers' class defaults for missing keys; plus the tensors and parameter count it implies.
// Not the decision of what the native core runs (src/models/config.ts reads the description for that) and no math.
//
// Families: Llama (3.1/3.2, SmolLM2), Mistral, Qwen2/2.5, Qwen3, Gemma 2, Gemma 3 text, Phi-2, Phi-3/Phi-4-mini,
// SmolLM3, OPT, GPT-NeoX (Pythia).
//
// src/models/config.ts maps a description onto DecoderConfig, the TypeScript face of the core's pt_config (ABI 13):
// norm.type / unitOffset / placement "sandwich" -> normType, normUnitOffset, sandwichNorms; mlp.gated / activation
// -> mlpPlain, mlpAct; residual + parallelNorms -> parallelResidual; rope.rotaryDim -> rotaryDim; head.bias /
// softcap -> headBias, finalSoftcap; embedding.positions "learned" -> positionRows / positionOffset; embedding.scale
// -> embedScale; attention.scale / softcap -> attnScale, attnSoftcap; layers[i].rope "local" + rope.localTheta ->
// layerRope "local", ropeLocalTheta; the family -> arch (the tensor names; weights.qkv "fused_interleaved" is GPT-NeoX's
// per-head query_key_value, permuted into the core's q|k|v stack by src/models/neox.ts at load and back at save);
// placement "post", norm.noFinal, embedding.projectDim -> normAfter, noFinalNorm, embedDim (OPT-350m).
// What the core does not run (norms without weights, bidirectional attention, ...) is refused there, by the
// config.json field and value each feature notes in `sources`.
import type { Activation, RopeScaling } from "../core/types.ts";

export type { Activation };

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

export type FamilyName = "llama" | "mistral" | "qwen2" | "qwen3" | "gemma2" | "gemma3_text" | "phi" | "phi3" | "smollm3" | "opt" | "gpt_neox";

/** Where a described feature came from: the config.json key and its value (or the class default). */
export interface Source { field: string; value: unknown }

export interface LayerSpec {
  attention: "full" | "sliding";
  window: number | null;          // sliding: keys with t - window < s <= t
  rope: "global" | "local" | "none";  // local: Gemma 3's sliding layers (rope.localTheta); none: SmolLM3's NoPE layers
}

export interface FamilyDescription {
  family: FamilyName;
  architecture: string;
  vocabSize: number;               // V
  hiddenSize: number;              // C
  intermediateSize: number;        // I (OPT's ffn_dim)
  numLayers: number;               // L
  numHeads: number;                // NH
  numKvHeads: number;              // NKV
  headDim: number;                 // HS
  maxPositionEmbeddings: number;
  embedding: { scale: "none" | "sqrt_hidden"; positions: "rotary" | "learned"; learnedOffset: number; projectDim: number | null };
  // affine: norms have weights (and biases); OPT's layer_norm_elementwise_affine false drops them
  norm: { type: "rmsnorm" | "layernorm"; eps: number; bias: boolean; affine: boolean; unitOffset: boolean; placement: "pre" | "post" | "sandwich"; noFinal: boolean };
  // bidirectional: Gemma's use_bidirectional_attention (no causal mask)
  attention: { qkvBias: boolean; oBias: boolean; qkNorm: boolean; scale: number; softcap: number | null; bidirectional: boolean };
  // otherScaling: a rope_type the core has no formula for (longrope, ...); localScaling: Gemma 3's sliding layers' own
  // rope_type when it is not "default"
  rope: { theta: number; rotaryDim: number; scaling: RopeScaling | null; otherScaling: string | null; localTheta: number | null; localScaling: string | null };
  layers: LayerSpec[];
  mlp: { gated: boolean; activation: Activation; bias: boolean };
  residual: "sequential" | "parallel";
  parallelNorms: 1 | 2;            // parallel residual: one shared norm (Phi-2) or two (GPT-NeoX)
  head: { tied: boolean; bias: boolean; softcap: number | null };
  weights: { qkv: "separate" | "fused" | "fused_interleaved"; gateUp: "separate" | "fused" };
  /** The config.json key (and value) behind each feature that is not the plain Llama shape, by feature name. */
  sources: Record<string, Source>;
}

const ARCHITECTURES: Record<string, FamilyName> = {
  LlamaForCausalLM: "llama", MistralForCausalLM: "mistral", Qwen2ForCausalLM: "qwen2", Qwen3ForCausalLM: "qwen3",
  Gemma2ForCausalLM: "gemma2", Gemma3ForCausalLM: "gemma3_text", PhiForCausalLM: "phi", Phi3ForCausalLM: "phi3",
  SmolLM3ForCausalLM: "smollm3", OPTForCausalLM: "opt", GPTNeoXForCausalLM: "gpt_neox",
};
export const KNOWN_ARCHITECTURES = Object.keys(ARCHITECTURES);

// transformers' config-class defaults (v5.18) for the keys read here; null = derived (see describeModel).
interface Defaults { vocab: number; hidden: number; inter: number; layers: number; heads: number; kvHeads: number | null; headDim: number | null; maxPos: number; theta: number; tie: boolean; act: string; eps: number }
const DEFAULTS: Record<FamilyName, Defaults> = {
  llama: { vocab: 32000, hidden: 4096, inter: 11008, layers: 32, heads: 32, kvHeads: null, headDim: null, maxPos: 2048, theta: 10000, tie: false, act: "silu", eps: 1e-6 },
  mistral: { vocab: 32000, hidden: 4096, inter: 14336, layers: 32, heads: 32, kvHeads: 8, headDim: null, maxPos: 131072, theta: 10000, tie: false, act: "silu", eps: 1e-6 },
  qwen2: { vocab: 151936, hidden: 4096, inter: 22016, layers: 32, heads: 32, kvHeads: 32, headDim: null, maxPos: 32768, theta: 10000, tie: false, act: "silu", eps: 1e-6 },
  qwen3: { vocab: 151936, hidden: 4096, inter: 22016, layers: 32, heads: 32, kvHeads: 32, headDim: 128, maxPos: 32768, theta: 10000, tie: false, act: "silu", eps: 1e-6 },
  gemma2: { vocab: 256000, hidden: 2304, inter: 9216, layers: 26, heads: 8, kvHeads: 4, headDim: 256, maxPos: 8192, theta: 10000, tie: true, act: "gelu_pytorch_tanh", eps: 1e-6 },
  gemma3_text: { vocab: 262208, hidden: 2304, inter: 9216, layers: 26, heads: 8, kvHeads: 4, headDim: 256, maxPos: 131072, theta: 1000000, tie: true, act: "gelu_pytorch_tanh", eps: 1e-6 },
  phi: { vocab: 51200, hidden: 2048, inter: 8192, layers: 24, heads: 32, kvHeads: null, headDim: null, maxPos: 2048, theta: 10000, tie: false, act: "gelu_new", eps: 1e-5 },
  phi3: { vocab: 32064, hidden: 3072, inter: 8192, layers: 32, heads: 32, kvHeads: null, headDim: null, maxPos: 4096, theta: 10000, tie: false, act: "silu", eps: 1e-5 },
  smollm3: { vocab: 128256, hidden: 2048, inter: 11008, layers: 36, heads: 16, kvHeads: 4, headDim: null, maxPos: 32768, theta: 2000000, tie: true, act: "silu", eps: 1e-6 },
  opt: { vocab: 50272, hidden: 768, inter: 3072, layers: 12, heads: 12, kvHeads: null, headDim: null, maxPos: 2048, theta: 10000, tie: true, act: "relu", eps: 1e-5 },
  gpt_neox: { vocab: 50432, hidden: 6144, inter: 24576, layers: 44, heads: 64, kvHeads: null, headDim: null, maxPos: 2048, theta: 10000, tie: false, act: "gelu", eps: 1e-5 },
};

// transformers' ACT2FN names -> the function they compute.
const ACTIVATIONS: Record<string, Activation> = {
  silu: "silu", swish: "silu", gelu_pytorch_tanh: "gelu_tanh", gelu_new: "gelu_tanh", gelu_fast: "gelu_tanh", gelu: "gelu", relu: "relu",
};

/**
 * The ACT2FN name a family's config.json writes for an activation: the family's own default when it computes it
 * (Phi-2's gelu_new, Gemma's gelu_pytorch_tanh: the same function, rounded differently by torch), else the plain name.
 */
export function activationName(family: FamilyName, a: Activation): string {
  const own = DEFAULTS[family].act;
  if (ACTIVATIONS[own] === a) return own;
  return ({ silu: "silu", gelu_tanh: "gelu_pytorch_tanh", gelu: "gelu", relu: "relu" } as const)[a];
}

/** A config.json object described; file is only used in error messages. Throws on malformed or unknown input. */
export function describeModel(json: unknown, file: string): FamilyDescription {
  if (json === null || typeof json !== "object" || Array.isArray(json)) throw new Error(`${file}: config must be a JSON object`);
  const j = json as Json;
  const archs = j.architectures;
  if (!Array.isArray(archs) || archs.length !== 1 || typeof archs[0] !== "string") {
    throw new Error(`${file}: "architectures" must be a one-element list such as ["LlamaForCausalLM"]; known: ${KNOWN_ARCHITECTURES.join(", ")}`);
  }
  const architecture = archs[0];
  const family = Object.hasOwn(ARCHITECTURES, architecture) ? ARCHITECTURES[architecture] : undefined;
  if (!family) throw new Error(`${file}: architecture "${architecture}" is not supported; known: ${KNOWN_ARCHITECTURES.join(", ")} (SmolLM/SmolLM2 are LlamaForCausalLM)`);
  const d = DEFAULTS[family];
  const sources: Record<string, Source> = {};
  const note = (feature: string, field: string, value: unknown) => { sources[feature] = { field, value }; };

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
  const optNum = (key: string): number | null => (get(key) == null ? null : num(key, get(key)));

  const isOpt = family === "opt", isNeox = family === "gpt_neox", isPhi = family === "phi", isPhi3 = family === "phi3";
  const isGemma = family === "gemma2" || family === "gemma3_text";
  const hidden = int("hidden_size", d.hidden);
  const heads = int("num_attention_heads", d.heads);
  const kvHeads = isOpt || isNeox ? heads : int("num_key_value_heads", d.kvHeads ?? heads);
  if (heads % kvHeads !== 0) throw new Error(`${file}: num_attention_heads (${heads}) must be a multiple of num_key_value_heads (${kvHeads})`);
  let headDim: number;
  if (get("head_dim") != null || d.headDim != null) headDim = int("head_dim", d.headDim);
  else {
    if (hidden % heads !== 0) throw new Error(`${file}: hidden_size (${hidden}) is not a multiple of num_attention_heads (${heads}); set "head_dim"`);
    headDim = hidden / heads;
  }
  const vocabSize = int("vocab_size", d.vocab);
  const intermediateSize = int(isOpt ? "ffn_dim" : "intermediate_size", d.inter);
  const numLayers = int("num_hidden_layers", d.layers);
  const maxPos = int("max_position_embeddings", d.maxPos);

  // MLP activation: the key each config class reads (Gemma's MLP reads hidden_activation only, never hidden_act).
  const actKey = isOpt ? "activation_function" : isGemma ? "hidden_activation" : "hidden_act";
  const actName = get(actKey) ?? d.act;
  const activation = typeof actName === "string" && Object.hasOwn(ACTIVATIONS, actName) ? ACTIVATIONS[actName] : undefined;
  if (!activation) throw new Error(`${file}: ${actKey} ${brief(actName)} is not an activation we know; known: ${Object.keys(ACTIVATIONS).join(", ")}`);
  if (activation !== "silu") note("activation", actKey, actName);
  const gated = !(isOpt || isNeox || isPhi);
  if (!gated) note("mlp", "model_type", family);

  // Positions: RoPE (possibly partial, scaled, per-layer) or OPT's learned table.
  const rope = describeRope(j, file, family, headDim, maxPos, note);

  // Norms and residual layout.
  const epsKey = isOpt ? null : isPhi || isNeox ? "layer_norm_eps" : "rms_norm_eps";
  const eps = epsKey ? num(epsKey, get(epsKey) ?? d.eps) : 1e-5;  // OPT's LayerNorm uses torch's default eps
  const layernorm = isOpt || isNeox || isPhi;
  if (layernorm) note("norm", "model_type", family);
  let placement: FamilyDescription["norm"]["placement"] = isGemma ? "sandwich" : "pre";
  if (isOpt && !bool("do_layer_norm_before", true)) { placement = "post"; note("placement", "do_layer_norm_before", false); }
  const affine = !isOpt || bool("layer_norm_elementwise_affine", true);
  if (!affine) note("norm_affine", "layer_norm_elementwise_affine", false);
  // OPT drops the final LayerNorm when it normalises after each block, or with _remove_final_layer_norm.
  const noFinal = isOpt && (placement === "post" || bool("_remove_final_layer_norm", false));
  if (noFinal && placement !== "post") note("final_norm", "_remove_final_layer_norm", true);
  if (isGemma) note("norm", "model_type", family);
  const parallel = isPhi || (isNeox && bool("use_parallel_residual", true));
  if (parallel) note("residual", isNeox ? "use_parallel_residual" : "model_type", isNeox ? true : family);

  // Biases.
  const attnBias = bool("attention_bias", isNeox);
  const qwen2 = family === "qwen2";
  const allBias = isOpt ? bool("enable_bias", true) : isPhi;
  // attention_bias: q/k/v/o in Llama, Qwen3, SmolLM3, Gemma and GPT-NeoX; Mistral and Phi-3 have none; Qwen2 q/k/v always.
  const readsAttnBias = family === "llama" || family === "qwen3" || family === "smollm3" || isGemma || isNeox;
  const qkvBias = qwen2 || allBias || (readsAttnBias && attnBias);
  const oBias = allBias || (readsAttnBias && attnBias);
  const mlpBias = allBias || isNeox || ((family === "llama" || family === "smollm3") && bool("mlp_bias", false));
  const headBias = isPhi;  // Phi-3's lm_head_bias key is not read by transformers (its head has no bias)
  if (headBias) note("head_bias", "model_type", family);

  // Attention scaling, soft-capping, q/k norms.
  let scale = 1 / Math.sqrt(headDim);
  if (isGemma) {
    const q = num("query_pre_attn_scalar", get("query_pre_attn_scalar") ?? 256);
    scale = q ** -0.5;
    if (q !== headDim) note("attention_scale", "query_pre_attn_scalar", q);
  }
  const softcap = family === "gemma2" ? optNum2(get, num, "attn_logit_softcapping", 50) : family === "gemma3_text" ? optNum("attn_logit_softcapping") : null;
  if (softcap != null) note("attention_softcap", "attn_logit_softcapping", softcap);
  const headSoftcap = family === "gemma2" ? optNum2(get, num, "final_logit_softcapping", 30) : family === "gemma3_text" ? optNum("final_logit_softcapping") : null;
  if (headSoftcap != null) note("head_softcap", "final_logit_softcapping", headSoftcap);
  const qkNorm = family === "qwen3" || family === "gemma3_text" || (isPhi && bool("qk_layernorm", false));
  if (isPhi && qkNorm) note("qk_layernorm", "qk_layernorm", true);
  const bidirectional = isGemma && bool("use_bidirectional_attention", false);
  if (bidirectional) note("bidirectional", "use_bidirectional_attention", true);

  // Per-layer attention pattern.
  const layers = describeLayers(j, file, family, numLayers, rope.localTheta != null, note, int);

  // Embeddings and head.
  const tied = bool("tie_word_embeddings", d.tie);
  let projectDim: number | null = null;
  if (isOpt) {
    const w = int("word_embed_proj_dim", hidden);
    if (w !== hidden) { projectDim = w; note("project", "word_embed_proj_dim", w); }
  }
  if (isGemma) note("embedding_scale", "model_type", family);
  if (isOpt) note("positions", "model_type", family);
  if (isPhi3 || isNeox) note("fused", "model_type", family);

  return {
    family, architecture, vocabSize, hiddenSize: hidden, intermediateSize, numLayers, numHeads: heads, numKvHeads: kvHeads, headDim,
    maxPositionEmbeddings: maxPos,
    embedding: { scale: isGemma ? "sqrt_hidden" : "none", positions: isOpt ? "learned" : "rotary", learnedOffset: isOpt ? 2 : 0, projectDim },
    norm: { type: layernorm ? "layernorm" : "rmsnorm", eps, bias: layernorm && affine, affine, unitOffset: isGemma, placement, noFinal },
    attention: { qkvBias, oBias, qkNorm, scale, softcap, bidirectional },
    rope,
    layers,
    mlp: { gated, activation, bias: mlpBias },
    residual: parallel ? "parallel" : "sequential",
    parallelNorms: isPhi ? 1 : 2,
    head: { tied, bias: headBias, softcap: headSoftcap },
    weights: { qkv: isNeox ? "fused_interleaved" : isPhi3 ? "fused" : "separate", gateUp: isPhi3 ? "fused" : "separate" },
    sources,
  };
}

// Gemma 2's soft-caps default to 50 / 30 when the key is absent; an explicit null turns them off.
function optNum2(get: (k: string) => unknown, num: (k: string, v: unknown) => number, key: string, def: number): number | null {
  const v = get(key);
  if (v === undefined) return def;
  return v === null ? null : num(key, v);
}

function describeRope(j: Json, file: string, family: FamilyName, headDim: number, maxPos: number, note: (f: string, k: string, v: unknown) => void) {
  const own = (k: string): unknown => (Object.hasOwn(j, k) ? j[k] : undefined);
  if (family === "opt") return { theta: 0, rotaryDim: 0, scaling: null, otherScaling: null, localTheta: null, localScaling: null };
  // GPT-NeoX's old keys: rotary_pct and rotary_emb_base.
  const neox = family === "gpt_neox";
  const partialKey = neox && own("rotary_pct") != null ? "rotary_pct" : "partial_rotary_factor";
  const partialDefault = family === "phi" ? 0.5 : neox ? 0.25 : 1;
  let global: Json = neox && own("rotary_emb_base") != null && own("rope_theta") == null ? { ...j, rope_theta: own("rotary_emb_base") } : j;
  let localTheta: number | null = null, localScaling: string | null = null;
  if (family === "gemma3_text") {
    // Gemma3TextConfig: rope_parameters nested by layer type (transformers v5), or rope_theta + rope_scaling for the
    // full-attention layers and rope_local_base_freq for the sliding ones (v4); rope_scaling updates the nested one.
    const rp = own("rope_parameters");
    const isObj = (v: unknown): v is Json => v !== null && typeof v === "object" && !Array.isArray(v);
    const nested = isObj(rp) && (Object.hasOwn(rp, "full_attention") || Object.hasOwn(rp, "sliding_attention"));
    const part = (k: string): Json => {
      const v = nested ? (rp as Json)[k] : undefined;
      if (v != null && !isObj(v)) throw new Error(`${file}: "rope_parameters.${k}" must be an object, got ${brief(v)}`);
      return v ?? {};
    };
    const rs = own("rope_scaling");
    const full = nested ? { rope_type: "default", ...part("full_attention"), ...(isObj(rs) ? rs : {}) } : undefined;
    if (full) global = { rope_parameters: full, ...(own("rope_theta") != null ? { rope_theta: own("rope_theta") } : {}) };
    const sliding = part("sliding_attention");
    const v = sliding.rope_theta ?? own("rope_local_base_freq") ?? 10000;
    const field = sliding.rope_theta != null ? "rope_parameters.sliding_attention.rope_theta" : "rope_local_base_freq";
    if (typeof v !== "number" || !Number.isFinite(v) || !(v > 0)) throw new Error(`${file}: "${field}" must be a positive number, got ${brief(v)}`);
    localTheta = v;
    note("local_rope", field, v);
    const t = sliding.rope_type ?? sliding.type ?? "default";
    if (t !== "default") { localScaling = String(t); note("local_rope_scaling", `rope_parameters.sliding_attention.${sliding.rope_type != null ? "rope_type" : "type"}`, t); }
  }
  // Phi3Config takes only plain RoPE or longrope (it renames "su" and "yarn" to longrope, and its own
  // original_max_position_embeddings defaults to 4096); longrope is Phi-3's alone among these families.
  const phi3 = family === "phi3";
  const renamed = phi3 ? renameRopeType(global, ["su", "yarn"], "longrope") : global;
  const supported = phi3 ? ["default", "longrope"] : ROPE_SUPPORTED.filter((t) => t !== "longrope");
  const parsed = parseRope(renamed, file, maxPos, { partialKey, partialDefault, allowOther: true, thetaDefault: DEFAULTS[family].theta, supported, topOriginalMax: phi3 ? 4096 : undefined });
  const rotaryDim = Math.floor(headDim * parsed.partial);
  if (rotaryDim !== headDim) note("partial_rotary", partialKey, parsed.partial);
  if (rotaryDim % 2 !== 0 || rotaryDim <= 0) throw new Error(`${file}: the rotary dimension head_dim × ${partialKey} = ${rotaryDim} must be a positive even number`);
  for (const [k, v] of [["short_factor", parsed.scaling?.shortFactor], ["long_factor", parsed.scaling?.longFactor]] as const) {
    if (v && v.length !== rotaryDim / 2) throw new Error(`${file}: "rope_scaling.${k}" must have rotary_dim / 2 = ${rotaryDim / 2} entries, got ${v.length}`);
  }
  if (parsed.scaling?.type === "longrope") note("longrope", "rope_scaling.rope_type", "longrope");
  let otherScaling = parsed.other?.type ?? null;
  if (parsed.other) note("rope_scaling", parsed.other.field, parsed.other.type);
  return { theta: parsed.theta, rotaryDim, scaling: parsed.scaling, otherScaling, localTheta, localScaling };
}

/** The config with its rope_scaling / rope_parameters type renamed from any of `from` to `to` (Phi3Config's rule). */
function renameRopeType(j: Json, from: string[], to: string): Json {
  for (const key of ["rope_scaling", "rope_parameters"]) {
    const v = Object.hasOwn(j, key) ? j[key] : undefined;
    if (v === null || typeof v !== "object" || Array.isArray(v)) continue;
    const r = v as Json;
    for (const tk of ["rope_type", "type"]) {
      if (Object.hasOwn(r, tk) && typeof r[tk] === "string" && from.includes(r[tk] as string)) return { ...j, [key]: { ...r, [tk]: to } };
    }
  }
  return j;
}

function describeLayers(j: Json, file: string, family: FamilyName, L: number, localRope: boolean,
  note: (f: string, k: string, v: unknown) => void, int: (k: string, d: number | null) => number): LayerSpec[] {
  const own = (k: string): unknown => (Object.hasOwn(j, k) ? j[k] : undefined);
  const layers: LayerSpec[] = Array.from({ length: L }, () => ({ attention: "full", window: null, rope: family === "opt" ? "none" : "global" }));
  // SmolLM3's no_rope_layers (1: RoPE, 0: none), default a NoPE layer every no_rope_layer_interval layers.
  const noRopeList = (): number[] => {
    const interval = typeof own("no_rope_layer_interval") === "number" ? (own("no_rope_layer_interval") as number) : 4;
    const list = own("no_rope_layers") ?? Array.from({ length: L }, (_, i) => ((i + 1) % interval !== 0 ? 1 : 0));
    if (!Array.isArray(list) || list.length !== L || list.some((v) => v !== 0 && v !== 1)) {
      throw new Error(`${file}: "no_rope_layers" must hold 1 (RoPE) or 0 (no RoPE) for each of the ${L} layers, got ${brief(list)}`);
    }
    return list as number[];
  };
  // The window (null: none) and which layers use it, as each config class derives its layer_types.
  let window: number | null = null;
  let sliding: (i: number) => boolean = () => false;
  if (family === "mistral" || family === "phi3") {
    // MistralConfig's default window is 4096; Phi3Config's is none.
    const w = own("sliding_window");
    window = w === null || (w === undefined && family === "phi3") ? null : int("sliding_window", 4096);
    sliding = () => true;
  } else if (family === "qwen2" || family === "qwen3" || family === "smollm3") {
    // Qwen2Config / Qwen3Config default sliding_window to 4096, SmolLM3Config to none.
    const on = own("use_sliding_window") === true, w = own("sliding_window");
    window = on && w !== null && (w !== undefined || family !== "smollm3") ? int("sliding_window", 4096) : null;
    const from = typeof own("max_window_layers") === "number" ? (own("max_window_layers") as number) : 28;
    // SmolLM3Config slides only its NoPE layers (no_rope_layers[i] = 0); Qwen2/Qwen3 the layers from max_window_layers.
    sliding = family === "smollm3" ? (i) => noRopeList()[i] === 0 : (i) => i >= from;
  } else if (family === "gemma2") {
    window = own("sliding_window") === null ? null : int("sliding_window", 4096);
    sliding = (i) => (i + 1) % 2 !== 0;
  } else if (family === "gemma3_text") {
    window = own("sliding_window") === null ? null : int("sliding_window", 4096);
    const pattern = typeof own("sliding_window_pattern") === "number" ? (own("sliding_window_pattern") as number) : 6;
    sliding = (i) => (i + 1) % pattern !== 0;
  }
  // An explicit layer_types list (transformers v5 writes one) wins over the derived pattern.
  const types = own("layer_types");
  if (types != null) {
    if (!Array.isArray(types) || types.length !== L || types.some((t) => t !== "full_attention" && t !== "sliding_attention")) {
      throw new Error(`${file}: "layer_types" must list "full_attention" or "sliding_attention" for each of the ${L} layers, got ${brief(types)}`);
    }
    sliding = (i) => types[i] === "sliding_attention";
  }
  if (window != null) {
    for (let i = 0; i < L; i++) if (sliding(i)) layers[i] = { ...layers[i], attention: "sliding", window };
    const n = layers.filter((l) => l.attention === "sliding").length;
    if (n > 0 && n < L) note("sliding", types != null ? "layer_types" : "sliding_window", types != null ? types : window);
  }
  // Gemma 3 picks the RoPE table by layer type, with or without a window
  if (localRope) for (let i = 0; i < L; i++) if (sliding(i)) layers[i].rope = "local";
  if (family === "smollm3") {
    const list = noRopeList();
    list.forEach((v, i) => { if (v === 0) layers[i].rope = "none"; });
    if (list.includes(0)) note("no_rope", "no_rope_layers", list);
  }
  return layers;
}

// transformers v4 writes rope_theta + rope_scaling; v5 writes rope_parameters {rope_type, rope_theta, ...}.
// As in v5 (RotaryEmbeddingConfigMixin), a non-empty rope_scaling wins over rope_parameters, rope_type over the
// old "type", and a top-level rope_theta fills the gap; the scaled types then take transformers' defaults:
// original_max_position_embeddings = max_position_embeddings (llama3, yarn), yarn's factor = max_position_embeddings /
// original_max_position_embeddings when null, beta_fast 32 and beta_slow 1 when absent or 0, truncate true, and
// attention_factor from get_mscale (0.1 ln(factor) + 1, or the mscale / mscale_all_dim ratio when both are set).
export const ROPE_SUPPORTED = ["default", "linear", "dynamic", "yarn", "llama3", "longrope"];
// topOriginalMax: the config class's own original_max_position_embeddings default (Phi3Config's 4096); a top-level
// original_max_position_embeddings key wins over rope_scaling's for llama3, yarn and longrope, as transformers' standardize_rope_params does.
export interface RopeOptions { partialKey?: string; partialDefault?: number; allowOther?: boolean; thetaDefault?: number; supported?: readonly string[]; topOriginalMax?: number }
export function parseRope(j: Json, file: string, maxPositionEmbeddings: number, o: RopeOptions = {}):
  { theta: number; partial: number; scaling: RopeScaling | null; other: { field: string; type: string } | null } {
  const own = (obj: Json, k: string): unknown => (Object.hasOwn(obj, k) ? obj[k] : undefined);
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
  const partialKey = o.partialKey ?? "partial_rotary_factor";
  const partial = own(s, "partial_rotary_factor") ?? own(j, partialKey) ?? o.partialDefault ?? 1;
  if (typeof partial !== "number" || !(partial > 0 && partial <= 1)) throw new Error(`${file}: "${partialKey}" must be a number in (0, 1], got ${brief(partial)}`);
  const theta = number("rope_theta", own(s, "rope_theta") ?? own(j, "rope_theta") ?? o.thetaDefault ?? 10000);
  const typeKey = Object.hasOwn(s, "rope_type") ? "rope_type" : "type";
  const type = Object.hasOwn(s, typeKey) ? s[typeKey] : "default";
  if (typeof type !== "string") throw new Error(`${file}: "${field(typeKey)}" must be a string such as "llama3", got ${brief(type)}`);
  if (!(o.supported ?? ROPE_SUPPORTED).includes(type)) {
    if (o.allowOther) return { theta, partial, scaling: null, other: { field: field(typeKey), type } };
    throw new Error(`${file}: ${field(typeKey)} ${brief(type)} is not supported; supported: ${(o.supported ?? ROPE_SUPPORTED).join(", ")}`);
  }
  if (type === "default") return { theta, partial, scaling: null, other: null };

  const factorOf = () => number("factor", required("factor", type));
  const originalMax = (): number => {
    const top = own(j, "original_max_position_embeddings") ?? o.topOriginalMax;
    const v = top ?? own(s, "original_max_position_embeddings") ?? maxPositionEmbeddings;
    const name = top != null ? "original_max_position_embeddings" : field("original_max_position_embeddings");
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0 || v > MAX_DIMENSION) throw new Error(`${file}: "${name}" must be a positive integer, got ${brief(v)}`);
    return v;
  };
  const base = { lowFreqFactor: 0, highFreqFactor: 0, betaFast: 32, betaSlow: 1, truncate: true, attentionFactor: 1 };
  const done = (scaling: RopeScaling) => ({ theta, partial, scaling, other: null });
  if (type === "linear") return done({ type, factor: factorOf(), originalMaxPositionEmbeddings: maxPositionEmbeddings, ...base });
  if (type === "longrope") {
    // transformers' _compute_longrope_parameters: factor defaults to max / original, the cos/sin attention factor to
    // sqrt(1 + ln(factor) / ln(original)) (1 when factor <= 1); short_factor / long_factor divide the frequencies
    // (their length, rotary_dim / 2, is checked by the caller, which knows the head size).
    const original = originalMax();
    const list = (k: string): number[] => {
      const v = required(k, type);
      if (!Array.isArray(v) || v.length === 0 || v.some((x) => typeof x !== "number" || !Number.isFinite(x) || x <= 0)) {
        throw new Error(`${file}: "${field(k)}" must be a list of positive numbers, got ${brief(v)}`);
      }
      return v as number[];
    };
    const shortFactor = list("short_factor"), longFactor = list("long_factor");
    const f = own(s, "factor");
    const factor = f == null ? maxPositionEmbeddings / original : number("factor", f);
    const att = own(s, "attention_factor");
    const attentionFactor = att == null ? (factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(original))) : number("attention_factor", att);
    return done({ type, factor, originalMaxPositionEmbeddings: original, ...base, attentionFactor, shortFactor, longFactor });
  }
  if (type === "dynamic") return done({ type, factor: factorOf(), originalMaxPositionEmbeddings: maxPositionEmbeddings, ...base });
  if (type === "llama3") {
    const factor = factorOf();
    const lowFreqFactor = number("low_freq_factor", required("low_freq_factor", type));
    const highFreqFactor = number("high_freq_factor", required("high_freq_factor", type));
    if (highFreqFactor === lowFreqFactor) throw new Error(`${file}: "${field("high_freq_factor")}" must differ from low_freq_factor (both ${lowFreqFactor})`);
    return done({ type, factor, originalMaxPositionEmbeddings: originalMax(), ...base, lowFreqFactor, highFreqFactor });
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
  const getMscale = (sc: number, m = 1) => (sc <= 1 ? 1 : 0.1 * m * Math.log(sc) + 1);
  const att = optional("attention_factor");
  const attentionFactor = att ?? (mscale && mscaleAllDim ? getMscale(factor, mscale) / getMscale(factor, mscaleAllDim) : getMscale(factor));
  if (!(attentionFactor > 0)) throw new Error(`${file}: "${field("attention_factor")}" must be a positive number, got ${attentionFactor}`);
  const betaFast = optional("beta_fast") || 32, betaSlow = optional("beta_slow") || 1;
  if (betaFast <= 0 || betaSlow <= 0) throw new Error(`${file}: "${field("beta_fast")}" and "${field("beta_slow")}" must be positive, got ${betaFast} and ${betaSlow}`);
  const t = own(s, "truncate");
  if (t != null && typeof t !== "boolean") throw new Error(`${file}: "${field("truncate")}" must be true or false, got ${brief(t)}`);
  const truncate = Object.hasOwn(s, "truncate") ? t === true : true;  // transformers: get("truncate", True), so null is false
  return done({ type: "yarn", factor, originalMaxPositionEmbeddings: original, ...base, betaFast, betaSlow, truncate, attentionFactor });
}

/** Every tensor of the family's Hugging Face checkpoint, by HF name, with its shape (a tied head is not listed). */
export function tensorShapes(m: FamilyDescription): { name: string; shape: number[] }[] {
  const { vocabSize: V, hiddenSize: C, intermediateSize: I, numLayers: L, numHeads: NH, numKvHeads: NKV, headDim: HS } = m;
  const out: { name: string; shape: number[] }[] = [];
  const add = (name: string, ...shape: number[]) => out.push({ name, shape });
  const linear = (name: string, outF: number, inF: number, bias: boolean) => {
    add(`${name}.weight`, outF, inF);
    if (bias) add(`${name}.bias`, outF);
  };
  const norm = (name: string, width: number) => {
    if (!m.norm.affine) return;
    add(`${name}.weight`, width);
    if (m.norm.bias) add(`${name}.bias`, width);
  };
  const a = m.attention, Q = NH * HS, KV = NKV * HS;
  if (m.family === "opt") {
    const W = m.embedding.projectDim ?? C, p = "model.decoder";
    add(`${p}.embed_tokens.weight`, V, W);
    add(`${p}.embed_positions.weight`, m.maxPositionEmbeddings + m.embedding.learnedOffset, C);
    if (m.embedding.projectDim != null) { linear(`${p}.project_out`, W, C, false); linear(`${p}.project_in`, C, W, false); }
    for (let i = 0; i < L; i++) {
      const l = `${p}.layers.${i}`;
      for (const n of ["k_proj", "v_proj", "q_proj", "out_proj"]) linear(`${l}.self_attn.${n}`, C, C, a.qkvBias);
      norm(`${l}.self_attn_layer_norm`, C);
      linear(`${l}.fc1`, I, C, m.mlp.bias);
      linear(`${l}.fc2`, C, I, m.mlp.bias);
      norm(`${l}.final_layer_norm`, C);
    }
    if (!m.norm.noFinal) norm(`${p}.final_layer_norm`, C);
    if (!m.head.tied) add("lm_head.weight", V, W);
    return out;
  }
  if (m.family === "gpt_neox") {
    add("gpt_neox.embed_in.weight", V, C);
    for (let i = 0; i < L; i++) {
      const l = `gpt_neox.layers.${i}`;
      norm(`${l}.input_layernorm`, C);
      norm(`${l}.post_attention_layernorm`, C);
      linear(`${l}.attention.query_key_value`, 3 * Q, C, a.qkvBias);
      linear(`${l}.attention.dense`, C, Q, a.oBias);
      linear(`${l}.mlp.dense_h_to_4h`, I, C, m.mlp.bias);
      linear(`${l}.mlp.dense_4h_to_h`, C, I, m.mlp.bias);
    }
    norm("gpt_neox.final_layer_norm", C);
    if (!m.head.tied) add("embed_out.weight", V, C);
    return out;
  }
  add("model.embed_tokens.weight", V, C);
  for (let i = 0; i < L; i++) {
    const l = `model.layers.${i}`;
    norm(`${l}.input_layernorm`, C);
    if (m.weights.qkv === "fused") linear(`${l}.self_attn.qkv_proj`, Q + 2 * KV, C, a.qkvBias);
    else {
      linear(`${l}.self_attn.q_proj`, Q, C, a.qkvBias);
      linear(`${l}.self_attn.k_proj`, KV, C, a.qkvBias);
      linear(`${l}.self_attn.v_proj`, KV, C, a.qkvBias);
    }
    if (a.qkNorm) {
      const [qn, kn] = m.family === "phi" ? ["q_layernorm", "k_layernorm"] : ["q_norm", "k_norm"];
      norm(`${l}.self_attn.${qn}`, HS);
      norm(`${l}.self_attn.${kn}`, HS);
    }
    linear(`${l}.self_attn.${m.family === "phi" ? "dense" : "o_proj"}`, C, Q, a.oBias);
    if (m.family === "phi") {  // one shared norm, MLP in parallel
      linear(`${l}.mlp.fc1`, I, C, m.mlp.bias);
      linear(`${l}.mlp.fc2`, C, I, m.mlp.bias);
      continue;
    }
    norm(`${l}.post_attention_layernorm`, C);
    if (m.norm.placement === "sandwich") { norm(`${l}.pre_feedforward_layernorm`, C); norm(`${l}.post_feedforward_layernorm`, C); }
    if (m.weights.gateUp === "fused") linear(`${l}.mlp.gate_up_proj`, 2 * I, C, m.mlp.bias);
    else { linear(`${l}.mlp.gate_proj`, I, C, m.mlp.bias); linear(`${l}.mlp.up_proj`, I, C, m.mlp.bias); }
    linear(`${l}.mlp.down_proj`, C, I, m.mlp.bias);
  }
  norm(m.family === "phi" ? "model.final_layernorm" : "model.norm", C);
  if (!m.head.tied) linear("lm_head", V, C, m.head.bias);
  else if (m.head.bias) add("lm_head.bias", V);
  return out;
}

/** The number of parameters the description implies (a tied head counted once), as transformers counts them. */
export function parameterCount(m: FamilyDescription): number {
  return tensorShapes(m).reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
}
