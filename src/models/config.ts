// Hugging Face config.json -> DecoderConfig: what the native core runs, decided from the family description
// (src/models/family.ts), and configToJson, the way back. The core runs all eleven described families: Llama
// (3.1/3.2, SmolLM2), Mistral, Qwen2/2.5, Qwen3, SmolLM3 (NoPE layers), Gemma 2 and Gemma 3 text (1 + w norms,
// sandwich norms, scaled embeddings, query_pre_attn_scalar, soft-caps, a local RoPE base), Phi-2 (LayerNorm, parallel
// block, plain MLP, partial rotary, a biased head), Phi-3 / Phi-4-mini (fused qkv_proj and gate_up_proj), GPT-NeoX
// (fused per-head query_key_value, parallel residual, partial rotary) and OPT (learned positions, ReLU MLP); RoPE
// scaling of rope_type linear, dynamic, yarn or llama3 (and Phi-3's longrope), sliding windows on any layers, OPT-350m's
// LayerNorm after each block and project_in / project_out. What it still cannot run is refused naming the
// config.json field and value (nativeGaps): other RoPE types, norms without weights,
// Phi-2's qk_layernorm, Gemma's bidirectional attention or a scaled local RoPE, and partial rotary embeddings where
// the family's transformers class rotates whole heads.
import type { DecoderArch, DecoderConfig, RopeScaling } from "../core/types.ts";
import { activationName, brief, describeModel, type FamilyDescription, type FamilyName, KNOWN_ARCHITECTURES, MAX_DIMENSION, parameterCount } from "./family.ts";

export { brief, MAX_DIMENSION, parseRope } from "./family.ts";

// Every described family, with its config.json model_type and the core's tensor-name arch.
const NATIVE: Record<FamilyName, { architecture: string; modelType: FamilyName; arch: DecoderArch }> = {
  llama: { architecture: "LlamaForCausalLM", modelType: "llama", arch: "llama" },
  mistral: { architecture: "MistralForCausalLM", modelType: "mistral", arch: "llama" },
  qwen2: { architecture: "Qwen2ForCausalLM", modelType: "qwen2", arch: "llama" },
  qwen3: { architecture: "Qwen3ForCausalLM", modelType: "qwen3", arch: "llama" },
  smollm3: { architecture: "SmolLM3ForCausalLM", modelType: "smollm3", arch: "llama" },
  gemma2: { architecture: "Gemma2ForCausalLM", modelType: "gemma2", arch: "llama" },
  gemma3_text: { architecture: "Gemma3ForCausalLM", modelType: "gemma3_text", arch: "llama" },
  phi: { architecture: "PhiForCausalLM", modelType: "phi", arch: "phi" },
  phi3: { architecture: "Phi3ForCausalLM", modelType: "phi3", arch: "phi3" },
  gpt_neox: { architecture: "GPTNeoXForCausalLM", modelType: "gpt_neox", arch: "gpt_neox" },
  opt: { architecture: "OPTForCausalLM", modelType: "opt", arch: "opt" },
};
export const SUPPORTED_ARCHITECTURES = Object.values(NATIVE).map((f) => f.architecture);

// The families whose transformers class rotates only part of each head (partial_rotary_factor, rotary_pct).
const PARTIAL_ROTARY = new Set<FamilyName>(["phi", "phi3", "gpt_neox"]);

// What the core cannot run, by feature of the description: the refusal's words.
const GAPS: Record<string, (d: FamilyDescription) => string> = {
  rope_scaling: (d) => (d.family === "phi3"
    ? `RoPE scaling "${d.rope.otherScaling}"; Phi3Config takes default or longrope`
    : `RoPE scaling "${d.rope.otherScaling}"; the native core has linear, dynamic, yarn, llama3 and (Phi-3's) longrope`),
  local_rope_scaling: (d) => `RoPE scaling "${d.rope.localScaling}" on the sliding-window layers; the native core runs their local base unscaled`,
  partial_rotary: (d) => `RoPE over ${d.rope.rotaryDim} of ${d.headDim} head dims, which ${d.architecture} does not do (transformers rotates part of a head for Phi, Phi-3 and GPT-NeoX only)`,
  norm_affine: () => "LayerNorms without weights and biases",
  qk_layernorm: () => "LayerNorms on q and k (q_layernorm, k_layernorm)",
  bidirectional: () => "attention without the causal mask",
};
const runs = (feature: string, d: FamilyDescription) => (feature === "partial_rotary" ? PARTIAL_ROTARY.has(d.family) : !Object.hasOwn(GAPS, feature));

/**
 * What keeps the native core from running a described model: one entry per config.json field (and value), naming
 * every feature behind it; empty when it runs.
 */
export function nativeGaps(d: FamilyDescription): { field: string; value: unknown; needs: string[] }[] {
  const byField = new Map<string, { field: string; value: unknown; needs: string[] }>();
  for (const [feature, src] of Object.entries(d.sources)) {
    if (runs(feature, d)) continue;
    const key = `${src.field}=${JSON.stringify(src.value)}`;
    const entry = byField.get(key) ?? { field: src.field, value: src.value, needs: [] };
    entry.needs.push(GAPS[feature](d));
    byField.set(key, entry);
  }
  return [...byField.values()];
}

// OPT rotates nothing; the core still takes a positive base (transformers' default), which no layer uses.
const UNUSED_ROPE_THETA = 10000;

/** Parse a config.json object into what the native core runs; file is only used in error messages. */
export function parseConfig(json: unknown, file: string): DecoderConfig {
  const archs = json !== null && typeof json === "object" && Object.hasOwn(json, "architectures") ? (json as { architectures: unknown }).architectures : undefined;
  if (Array.isArray(archs) && archs.length === 1 && typeof archs[0] === "string" && !KNOWN_ARCHITECTURES.includes(archs[0])) {
    throw new Error(`${file}: architecture ${brief(archs[0])} is not supported; supported: ${SUPPORTED_ARCHITECTURES.join(", ")} (SmolLM/SmolLM2 are LlamaForCausalLM)`);
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
  const rope = d.layers.map((l) => (l.rope === "none" ? false : l.rope === "local" ? "local" as const : true));
  const learned = d.embedding.positions === "learned";
  const cfg: DecoderConfig = {
    architecture: d.architecture,
    vocabSize: d.vocabSize,
    hiddenSize: d.hiddenSize,
    intermediateSize: d.intermediateSize,
    numLayers: d.numLayers,
    numHeads: d.numHeads,
    numKvHeads: d.numKvHeads,
    headDim: d.headDim,
    rmsNormEps: d.norm.eps,
    ropeTheta: learned ? UNUSED_ROPE_THETA : d.rope.theta,
    maxPositionEmbeddings: maxPos,
    tieWordEmbeddings: d.head.tied,
    qkvBias: d.attention.qkvBias,
    oBias: d.attention.oBias,
    mlpBias: d.mlp.bias,
    qkNorm: d.attention.qkNorm,
    ropeScaling: d.rope.scaling,
    ...(windows.some((w) => w > 0) ? { layerWindows: windows } : {}),
    ...(rope.some((r) => r !== true) ? { layerRope: rope } : {}),
  };
  // The family features, each only where it is not the Llama shape (so a Llama-family config has none of them).
  const arch = NATIVE[d.family].arch;
  if (arch !== "llama") cfg.arch = arch;
  if (d.norm.type === "layernorm") cfg.normType = "layernorm";
  if (d.norm.unitOffset) cfg.normUnitOffset = true;
  if (d.norm.placement === "sandwich") cfg.sandwichNorms = true;
  if (d.residual === "parallel") cfg.parallelResidual = d.parallelNorms;
  if (!d.mlp.gated) cfg.mlpPlain = true;
  if (d.mlp.activation !== "silu") cfg.mlpAct = d.mlp.activation;
  if (!learned && d.rope.rotaryDim !== d.headDim) cfg.rotaryDim = d.rope.rotaryDim;
  if (d.head.bias) cfg.headBias = true;
  if (learned) {
    cfg.positionRows = d.maxPositionEmbeddings + d.embedding.learnedOffset;
    cfg.positionOffset = d.embedding.learnedOffset;
  }
  // transformers: embeddings * torch.tensor(hidden_size ** 0.5), a float32 scalar (in the weights' dtype, fp32 here)
  if (d.embedding.scale === "sqrt_hidden") cfg.embedScale = Math.fround(Math.sqrt(d.hiddenSize));
  if (d.attention.scale !== 1 / Math.sqrt(d.headDim)) cfg.attnScale = d.attention.scale;
  if (d.attention.softcap != null) cfg.attnSoftcap = d.attention.softcap;
  if (d.head.softcap != null) cfg.finalSoftcap = d.head.softcap;
  if (d.rope.localTheta != null) cfg.ropeLocalTheta = d.rope.localTheta;
  if (d.norm.placement === "post") cfg.normAfter = true;
  if (d.norm.noFinal) cfg.noFinalNorm = true;
  if (d.embedding.projectDim != null) cfg.embedDim = d.embedding.projectDim;
  return cfg;
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

/** A DecoderConfig with every optional field filled in with its Llama default: what two configs are compared on. */
function filled(c: DecoderConfig): Required<DecoderConfig> {
  return {
    ...c,
    layerWindows: c.layerWindows ?? new Array<number>(c.numLayers).fill(0),
    layerRope: c.layerRope ?? new Array<boolean>(c.numLayers).fill(true),
    arch: c.arch ?? "llama", normType: c.normType ?? "rmsnorm", normUnitOffset: c.normUnitOffset ?? false, sandwichNorms: c.sandwichNorms ?? false,
    parallelResidual: c.parallelResidual ?? 0, mlpPlain: c.mlpPlain ?? false, mlpAct: c.mlpAct ?? "silu",
    rotaryDim: c.rotaryDim === c.headDim ? 0 : c.rotaryDim ?? 0, headBias: c.headBias ?? false, positionRows: c.positionRows ?? 0,
    positionOffset: c.positionOffset ?? 0, embedScale: c.embedScale ?? 0, attnScale: c.attnScale ?? 0, attnSoftcap: c.attnSoftcap ?? 0,
    finalSoftcap: c.finalSoftcap ?? 0, ropeLocalTheta: c.ropeLocalTheta ?? 0, normAfter: c.normAfter ?? false,
    noFinalNorm: c.noFinalNorm ?? false, embedDim: c.embedDim === c.hiddenSize ? 0 : c.embedDim ?? 0,
  };
}

/**
 * A config.json object transformers loads as the same model (v4 and v5), in the family's own keys: architecture,
 * sizes, biases, activation, RoPE (the v4 top-level rope_theta / rope_scaling and the v5 rope_parameters, Gemma 3's
 * nested by layer type), per-layer windows and NoPE layers (and layer_types), Gemma's query_pre_attn_scalar and
 * soft-caps, Phi's partial_rotary_factor, GPT-NeoX's rotary_pct / rotary_emb_base / use_parallel_residual, OPT's
 * ffn_dim / do_layer_norm_before / word_embed_proj_dim / enable_bias. Refuses a config the family cannot express,
 * naming what: the JSON must read back (parseConfig) as `cfg`. extra is merged last (bos_token_id, eos_token_id,
 * torch_dtype, ...).
 */
export function configToJson(cfg: DecoderConfig, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const fam = Object.values(NATIVE).find((f) => f.architecture === cfg.architecture);
  if (!fam) throw new Error(`configToJson: architecture "${cfg.architecture}" is not supported; supported: ${SUPPORTED_ARCHITECTURES.join(", ")}`);
  const a = cfg.architecture;
  const bad = (why: string) => new Error(`configToJson: ${a} cannot express ${why}`);
  const f = filled(cfg);
  const act = activationName(fam.modelType, f.mlpAct);
  if (f.arch !== fam.arch) throw bad(`arch "${f.arch}" (its tensor names are the "${fam.arch}" ones)`);
  const smol = a === "SmolLM3ForCausalLM";
  const llamaAttnBias = a === "LlamaForCausalLM" || a === "Qwen3ForCausalLM" || smol || fam.modelType.startsWith("gemma") || a === "GPTNeoXForCausalLM";
  if (llamaAttnBias && cfg.qkvBias !== cfg.oBias) throw bad("q/k/v bias without o bias (attention_bias sets both)");
  if (a === "Qwen2ForCausalLM" && (!cfg.qkvBias || cfg.oBias)) throw bad("anything but q/k/v bias without o bias");
  if ((a === "MistralForCausalLM" || a === "Phi3ForCausalLM") && (cfg.qkvBias || cfg.oBias)) throw bad("attention biases");
  if (fam.arch === "llama" && fam.modelType !== "gemma3_text" && (a === "Qwen3ForCausalLM") !== cfg.qkNorm) throw bad(cfg.qkNorm ? "q/k norms (only Qwen3 and Gemma 3)" : "attention without q/k norms");
  const L = cfg.numLayers;
  const win = f.layerWindows, rope = f.layerRope;
  if (win.length !== L || rope.length !== L) throw bad(`layerWindows / layerRope of other than num_hidden_layers (${L}) entries`);
  if (!smol && fam.arch !== "opt" && rope.some((r) => r === false)) throw bad("layers without RoPE (only SmolLM3's no_rope_layers)");
  const w = Math.max(0, ...win);
  if (win.some((x) => x !== 0 && x !== w)) throw bad(`more than one sliding window (${brief(win)})`);
  const types = win.map((x) => (x > 0 ? "sliding_attention" : "full_attention"));

  const ropeScaling = ropeScalingJson(cfg);
  const ropeParameters = (more: Record<string, unknown> = {}) => ({ rope_type: cfg.ropeScaling?.type ?? "default", rope_theta: cfg.ropeTheta, ...ropeScaling, ...more });
  // dynamic: the threshold (usableLength extends the length we run past it)
  const maxPos = cfg.ropeScaling?.type === "dynamic" ? cfg.ropeScaling.originalMaxPositionEmbeddings : cfg.maxPositionEmbeddings;
  const out: Record<string, unknown> = { architectures: [a], model_type: fam.modelType, vocab_size: cfg.vocabSize, hidden_size: cfg.hiddenSize };
  const common = { num_hidden_layers: L, num_attention_heads: cfg.numHeads, max_position_embeddings: maxPos, tie_word_embeddings: cfg.tieWordEmbeddings };
  // Phi, Phi-3, GPT-NeoX and OPT take head_dim = hidden_size / num_attention_heads and (but Phi-3) no grouped kv heads.
  const wholeHeads = () => {
    if (cfg.headDim * cfg.numHeads !== cfg.hiddenSize) throw bad(`head_dim ${cfg.headDim} other than hidden_size / num_attention_heads (${cfg.hiddenSize / cfg.numHeads})`);
  };
  const partialFactor = () => {
    const r = f.rotaryDim || cfg.headDim;
    const x = r / cfg.headDim;
    return Math.floor(cfg.headDim * x) === r ? x : (r + 0.5) / cfg.headDim;  // int(head_dim * factor) must give r back
  };
  if (fam.arch === "opt") {
    wholeHeads();
    Object.assign(out, {
      ...common, ffn_dim: cfg.intermediateSize, activation_function: act, do_layer_norm_before: !f.normAfter,
      word_embed_proj_dim: f.embedDim || cfg.hiddenSize, enable_bias: cfg.qkvBias, layer_norm_elementwise_affine: true,
      // OPTDecoder has a final LayerNorm when do_layer_norm_before and not _remove_final_layer_norm
      _remove_final_layer_norm: f.noFinalNorm && !f.normAfter,
      // OPTLearnedPositionalEmbedding: max_position_embeddings + 2 rows
      max_position_embeddings: f.positionRows - f.positionOffset,
    });
  } else if (fam.arch === "gpt_neox") {
    wholeHeads();
    const pct = partialFactor();
    Object.assign(out, {
      ...common, intermediate_size: cfg.intermediateSize, hidden_act: act, layer_norm_eps: cfg.rmsNormEps, attention_bias: cfg.qkvBias,
      use_parallel_residual: f.parallelResidual === 2, rotary_pct: pct, rotary_emb_base: cfg.ropeTheta, rope_theta: cfg.ropeTheta,
      rope_scaling: ropeScaling, rope_parameters: ropeParameters({ partial_rotary_factor: pct }),
    });
  } else if (fam.arch === "phi") {
    wholeHeads();
    const factor = partialFactor();
    Object.assign(out, {
      ...common, intermediate_size: cfg.intermediateSize, num_key_value_heads: cfg.numKvHeads, hidden_act: act, layer_norm_eps: cfg.rmsNormEps,
      partial_rotary_factor: factor, qk_layernorm: false, rope_theta: cfg.ropeTheta, rope_scaling: ropeScaling,
      rope_parameters: ropeParameters({ partial_rotary_factor: factor }),
    });
  } else {
    const gemma = fam.modelType === "gemma2" || fam.modelType === "gemma3_text";
    if (fam.arch === "phi3") wholeHeads();
    Object.assign(out, {
      ...common, intermediate_size: cfg.intermediateSize, num_key_value_heads: cfg.numKvHeads, rms_norm_eps: cfg.rmsNormEps,
      [gemma ? "hidden_activation" : "hidden_act"]: act, rope_theta: cfg.ropeTheta, rope_scaling: ropeScaling,
    });
    if (fam.arch !== "phi3") out.head_dim = cfg.headDim;
    if (fam.arch === "phi3") {
      const factor = partialFactor();
      Object.assign(out, { partial_rotary_factor: factor, rope_parameters: ropeParameters({ partial_rotary_factor: factor }) });
      // Phi3Config's own original_max_position_embeddings (default 4096) wins over rope_scaling's
      if (cfg.ropeScaling?.type === "longrope") out.original_max_position_embeddings = cfg.ropeScaling.originalMaxPositionEmbeddings;
    } else if (fam.modelType === "gemma3_text") {
      // v5 nests rope_parameters by layer type; v4 reads rope_theta / rope_scaling (full attention) and rope_local_base_freq
      const local = f.ropeLocalTheta || 10000;
      out.rope_local_base_freq = local;
      out.rope_parameters = { full_attention: ropeParameters(), sliding_attention: { rope_type: "default", rope_theta: local } };
      // the layer types pick both the window and the RoPE table
      if (w > 0 && rope.some((r, i) => (r === "local") !== (win[i] > 0))) throw bad("the local RoPE base on other layers than the sliding-window ones");
      out.layer_types = w > 0 ? types : rope.map((r) => (r === "local" ? "sliding_attention" : "full_attention"));
      out.sliding_window = w > 0 ? w : null;
    } else {
      out.rope_parameters = ropeParameters();
    }
    if (gemma) {
      if (fam.modelType === "gemma2") {
        out.layer_types = types;
        out.sliding_window = w > 0 ? w : null;
      }
      // attnScale = query_pre_attn_scalar^-0.5: the scalar back, a whole number when it is one
      let q = cfg.headDim;
      if (f.attnScale) {
        q = 1 / (f.attnScale * f.attnScale);
        if (Math.abs(q - Math.round(q)) < 1e-9 * q) q = Math.round(q);
      }
      Object.assign(out, {
        attention_bias: cfg.qkvBias, query_pre_attn_scalar: q,
        attn_logit_softcapping: f.attnSoftcap || null, final_logit_softcapping: f.finalSoftcap || null,
      });
    }
    if (a === "LlamaForCausalLM" || smol) Object.assign(out, { attention_bias: cfg.qkvBias, mlp_bias: cfg.mlpBias });
    if (a === "Qwen3ForCausalLM") out.attention_bias = cfg.qkvBias;
    if (a === "MistralForCausalLM" || a === "Phi3ForCausalLM") {
      if (w > 0 && win.some((x) => x === 0)) throw bad("full attention on some layers only (sliding_window applies to all)");
      out.sliding_window = w > 0 ? w : null;
    }
    if (a === "Qwen2ForCausalLM" || a === "Qwen3ForCausalLM" || smol) {
      Object.assign(out, { use_sliding_window: w > 0, sliding_window: w > 0 ? w : null });
      if (w > 0) out.layer_types = types;
      if (a !== "SmolLM3ForCausalLM") out.max_window_layers = w > 0 ? Math.max(0, win.findIndex((x) => x > 0)) : L;
    }
    if (smol) out.no_rope_layers = rope.map((r) => (r ? 1 : 0));
  }
  Object.assign(out, { initializer_range: 0.02, attention_dropout: 0.0, use_cache: true, torch_dtype: "float32" });

  // The JSON must mean the model: read back, every field is cfg's.
  let back: DecoderConfig;
  try {
    back = parseConfig(out, "configToJson");
  } catch (e) {
    throw bad(`this config: ${(e as Error).message.replace(/^configToJson: /, "")}`);
  }
  const g = filled(back), diff: string[] = [];
  for (const k of Object.keys(f) as (keyof DecoderConfig)[]) {
    if (JSON.stringify(f[k]) !== JSON.stringify(g[k])) diff.push(`${k} ${brief(f[k])} (it would read back as ${brief(g[k])})`);
  }
  if (diff.length) throw bad(diff.join(", "));
  return { ...out, ...extra };
}

// config.json keys the config classes of transformers 5 declare float only: their strict validation refuses an
// integer there, so a soft-cap of 50 must be written 50.0 (JSON.stringify writes 50).
const FLOAT_KEYS = new Set(["rms_norm_eps", "layer_norm_eps", "initializer_range", "init_std", "attn_logit_softcapping", "final_logit_softcapping"]);

/** A config.json object as the file text (2-space indent, newline-terminated), its float keys written as floats. */
export function configJsonText(cfg: Record<string, unknown>): string {
  let marked = 0;
  const text = JSON.stringify(cfg, function (this: unknown, k: string, v: unknown) {
    if (this !== cfg || !FLOAT_KEYS.has(k) || !Number.isInteger(v)) return v;
    marked++;
    return `\u0000float:${v}`;
  }, 2);
  let replaced = 0;
  const out = text.replace(/"\\u0000float:(-?\d+)"/g, (_, n: string) => (replaced++, `${n}.0`));
  if (replaced !== marked) throw new Error("configJsonText: a string value of the config looks like an internal float mark");
  return out + "\n";
}

/** rope_scaling keys (v4 layout, no rope_theta) that parseRope reads back as cfg.ropeScaling; null for plain RoPE. */
function ropeScalingJson(cfg: DecoderConfig): Record<string, unknown> | null {
  const r = cfg.ropeScaling;
  if (!r) return null;
  if (r.type === "linear" || r.type === "dynamic") return { rope_type: r.type, factor: r.factor };
  if (r.type === "llama3") {
    return { rope_type: r.type, factor: r.factor, low_freq_factor: r.lowFreqFactor, high_freq_factor: r.highFreqFactor, original_max_position_embeddings: r.originalMaxPositionEmbeddings };
  }
  if (r.type === "longrope") {
    return { rope_type: r.type, factor: r.factor, attention_factor: r.attentionFactor, original_max_position_embeddings: r.originalMaxPositionEmbeddings,
      short_factor: r.shortFactor, long_factor: r.longFactor };
  }
  return {
    rope_type: r.type, factor: r.factor, original_max_position_embeddings: r.originalMaxPositionEmbeddings, beta_fast: r.betaFast,
    beta_slow: r.betaSlow, truncate: r.truncate, attention_factor: r.attentionFactor,
  };
}
