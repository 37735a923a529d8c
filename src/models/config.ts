// Hugging Face config.json -> DecoderConfig: what the native core runs today, decided from the family
// description (src/models/family.ts). The core runs the Llama shape: Llama (3.1/3.2, SmolLM2), Mistral, Qwen2/2.5,
// Qwen3 and SmolLM3 (its NoPE layers too), with RoPE scaling of rope_type linear, dynamic, yarn or llama3 and
// sliding-window attention on any layers. Every other feature of a description (Gemma's norms, soft-caps and local
// RoPE base, Phi's parallel block, OPT's learned positions, fused weights, partial rotary, longrope, ...) is refused naming the config.json
// field and value behind it. Also configToJson, the way back for the families we run.
// Biases: Qwen2 always has q/k/v bias (never o); Llama attention_bias -> q/k/v/o bias, mlp_bias -> MLP bias;
// Qwen3 attention_bias -> q/k/v/o bias, plus q_norm/k_norm; Mistral has no biases.
import type { DecoderConfig, RopeScaling } from "../core/types.ts";
import { brief, describeModel, type FamilyDescription, type FamilyName, KNOWN_ARCHITECTURES, MAX_DIMENSION, parameterCount } from "./family.ts";

export { brief, MAX_DIMENSION, parseRope } from "./family.ts";

// The families the native core runs, with their config.json model_type.
const NATIVE: Partial<Record<FamilyName, { architecture: string; modelType: string }>> = {
  llama: { architecture: "LlamaForCausalLM", modelType: "llama" },
  mistral: { architecture: "MistralForCausalLM", modelType: "mistral" },
  qwen2: { architecture: "Qwen2ForCausalLM", modelType: "qwen2" },
  qwen3: { architecture: "Qwen3ForCausalLM", modelType: "qwen3" },
  smollm3: { architecture: "SmolLM3ForCausalLM", modelType: "smollm3" },
};
export const SUPPORTED_ARCHITECTURES = Object.values(NATIVE).map((f) => f!.architecture);

// What each non-Llama feature of a description is, for the refusal message.
const FEATURES: Record<string, (d: FamilyDescription) => string> = {
  activation: (d) => `${d.mlp.activation === "gelu_tanh" ? "GELU (tanh approximation)" : d.mlp.activation === "gelu" ? "GELU" : "ReLU"} MLP; the native MLP is SiLU`,
  mlp: () => "a plain fc1 -> activation -> fc2 MLP",
  norm: (d) => (d.norm.type === "layernorm" ? "LayerNorm with bias" : "RMSNorm scaled by (1 + weight), before and after attention and MLP"),
  placement: () => "LayerNorm after each block instead of before",
  residual: (d) => `attention and MLP in parallel${d.parallelNorms === 1 ? " from one norm" : ""}`,
  head_bias: () => "a bias on lm_head",
  attention_scale: (d) => `attention scaled by ${d.attention.scale.toPrecision(6)} instead of 1/sqrt(head_dim)`,
  attention_softcap: () => "attention-logit soft-capping",
  head_softcap: () => "final-logit soft-capping",
  sliding: (d) => `sliding-window attention on ${d.layers.filter((l) => l.attention === "sliding").length} of ${d.numLayers} layers`,
  local_rope: () => "its own RoPE base on the sliding-window layers",
  no_rope: (d) => `${d.layers.filter((l) => l.rope === "none").length} layers without RoPE`,
  partial_rotary: (d) => `RoPE over ${d.rope.rotaryDim} of ${d.headDim} head dims`,
  rope_scaling: (d) => `RoPE scaling "${d.rope.otherScaling}"; the native core has linear, dynamic, yarn and llama3`,
  project: () => "project_in / project_out around the decoder",
  embedding_scale: () => "embeddings scaled by sqrt(hidden_size)",
  positions: () => "learned positional embeddings (offset 2) instead of RoPE",
  fused: (d) => (d.weights.qkv === "fused_interleaved" ? "a fused, head-interleaved query_key_value weight" : "fused qkv_proj and gate_up_proj weights"),
};

// Features of a description the native core runs (per-layer windows and NoPE layers, passed as layerWindows/layerRope).
const RUNS = new Set(["sliding", "no_rope"]);

/**
 * What keeps the native core from running a described model: one entry per config.json field (and value), naming
 * every feature behind it; empty when it runs.
 */
export function nativeGaps(d: FamilyDescription): { field: string; value: unknown; needs: string[] }[] {
  const byField = new Map<string, { field: string; value: unknown; needs: string[] }>();
  for (const [feature, src] of Object.entries(d.sources)) {
    if (RUNS.has(feature)) continue;
    const what = FEATURES[feature];
    if (!what) throw new Error(`internal: no description of feature "${feature}"`);
    const key = `${src.field}=${JSON.stringify(src.value)}`;
    const entry = byField.get(key) ?? { field: src.field, value: src.value, needs: [] };
    entry.needs.push(what(d));
    byField.set(key, entry);
  }
  if (byField.size === 0 && !NATIVE[d.family]) throw new Error(`internal: ${d.architecture} has no native layout but no gap was named`);
  return [...byField.values()];
}

/** Parse a config.json object into what the native core runs; file is only used in error messages. */
export function parseConfig(json: unknown, file: string): DecoderConfig {
  const archs = json !== null && typeof json === "object" && Object.hasOwn(json, "architectures") ? (json as { architectures: unknown }).architectures : undefined;
  if (Array.isArray(archs) && archs.length === 1 && typeof archs[0] === "string" && !KNOWN_ARCHITECTURES.includes(archs[0])) {
    const described = KNOWN_ARCHITECTURES.filter((a) => !SUPPORTED_ARCHITECTURES.includes(a));
    throw new Error(`${file}: architecture ${brief(archs[0])} is not supported; supported: ${SUPPORTED_ARCHITECTURES.join(", ")} (SmolLM/SmolLM2 are LlamaForCausalLM); described but not yet run: ${described.join(", ")}`);
  }
  const d = describeModel(json, file);
  const gaps = nativeGaps(d);
  if (gaps.length) {
    const list = gaps.map((g) => `${g.field} ${brief(g.value)} (${g.needs.join("; ")})`).join(", ");
    throw new Error(`${file}: ${d.architecture} cannot run on the native core yet: ${list}`);
  }
  const params = parameterCount(d);
  if (!Number.isSafeInteger(params)) throw new Error(`${file}: the sizes imply about ${params.toExponential(2)} parameters, more than can be counted exactly (2^53); check num_hidden_layers, hidden_size, intermediate_size and vocab_size`);
  const maxPos = usableLength(d.maxPositionEmbeddings, d.rope.scaling);
  const windows = d.layers.map((l) => (l.attention === "sliding" ? l.window! : 0));
  const rope = d.layers.map((l) => l.rope !== "none");
  return {
    architecture: d.architecture,
    vocabSize: d.vocabSize,
    hiddenSize: d.hiddenSize,
    intermediateSize: d.intermediateSize,
    numLayers: d.numLayers,
    numHeads: d.numHeads,
    numKvHeads: d.numKvHeads,
    headDim: d.headDim,
    rmsNormEps: d.norm.eps,
    ropeTheta: d.rope.theta,
    maxPositionEmbeddings: maxPos,
    tieWordEmbeddings: d.head.tied,
    qkvBias: d.attention.qkvBias,
    oBias: d.attention.oBias,
    mlpBias: d.mlp.bias,
    qkNorm: d.attention.qkNorm,
    ropeScaling: d.rope.scaling,
    ...(windows.some((w) => w > 0) ? { layerWindows: windows } : {}),
    ...(rope.some((r) => !r) ? { layerRope: rope } : {}),
  };
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
 * rope_theta (both the v4 top-level key and the v5 rope_parameters), the per-layer windows and NoPE layers in each
 * family's own keys (and layer_types).
 * extra is merged last (bos_token_id, eos_token_id, torch_dtype, ...).
 */
export function configToJson(cfg: DecoderConfig, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const fam = Object.values(NATIVE).find((f) => f!.architecture === cfg.architecture);
  if (!fam) throw new Error(`configToJson: architecture "${cfg.architecture}" is not supported; supported: ${SUPPORTED_ARCHITECTURES.join(", ")}`);
  const a = cfg.architecture;
  const bad = (why: string) => new Error(`configToJson: ${a} cannot express ${why}`);
  const smol = a === "SmolLM3ForCausalLM";
  if ((a === "LlamaForCausalLM" || a === "Qwen3ForCausalLM" || smol) && cfg.qkvBias !== cfg.oBias) throw bad("q/k/v bias without o bias (attention_bias sets both)");
  if (a === "Qwen2ForCausalLM" && (!cfg.qkvBias || cfg.oBias)) throw bad("anything but q/k/v bias without o bias");
  if (a === "MistralForCausalLM" && (cfg.qkvBias || cfg.oBias)) throw bad("attention biases");
  if (a !== "LlamaForCausalLM" && !smol && cfg.mlpBias) throw bad("MLP biases (only Llama's and SmolLM3's mlp_bias)");
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
  if (a === "LlamaForCausalLM" || smol) Object.assign(out, { attention_bias: cfg.qkvBias, mlp_bias: cfg.mlpBias });
  if (a === "Qwen3ForCausalLM") out.attention_bias = cfg.qkvBias;
  const L = cfg.numLayers;
  const win = cfg.layerWindows ?? new Array<number>(L).fill(0);
  const rope = cfg.layerRope ?? new Array<boolean>(L).fill(true);
  if (win.length !== L || rope.length !== L) throw bad(`layerWindows / layerRope of other than num_hidden_layers (${L}) entries`);
  if (!smol && rope.some((r) => !r)) throw bad("layers without RoPE (only SmolLM3's no_rope_layers)");
  const w = Math.max(0, ...win);
  if (win.some((x) => x !== 0 && x !== w)) throw bad(`more than one sliding window (${brief(win)})`);
  const types = win.map((x) => (x > 0 ? "sliding_attention" : "full_attention"));
  if (a === "MistralForCausalLM") {
    if (w > 0 && win.some((x) => x === 0)) throw bad("full attention on some layers only (sliding_window applies to all)");
    out.sliding_window = w > 0 ? w : null;
  }
  if (a === "Qwen2ForCausalLM" || a === "Qwen3ForCausalLM" || smol) {
    Object.assign(out, { use_sliding_window: w > 0, sliding_window: w > 0 ? w : null });
    if (w > 0) out.layer_types = types;
    if (a !== "SmolLM3ForCausalLM") out.max_window_layers = w > 0 ? Math.max(0, win.findIndex((x) => x > 0)) : L;
  }
  if (smol) out.no_rope_layers = rope.map((r) => (r ? 1 : 0));
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
