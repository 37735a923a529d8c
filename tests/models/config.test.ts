// config.json parsing for the supported families (keys as found in published checkpoints), the
// transformers class defaults, the refusals (architecture, RoPE scaling, sliding window, activation), and
// configToJson -> parseConfig round trips.
import { test } from "node:test";
import assert from "node:assert/strict";
import { configToJson, parseConfig, SUPPORTED_ARCHITECTURES } from "../../src/models/config.ts";
import type { DecoderConfig } from "../../src/core/types.ts";

const smollm2 = {
  architectures: ["LlamaForCausalLM"], model_type: "llama", attention_bias: false, attention_dropout: 0.0, bos_token_id: 0, eos_token_id: 0,
  hidden_act: "silu", hidden_size: 576, initializer_range: 0.041666666666666664, intermediate_size: 1536, max_position_embeddings: 8192,
  mlp_bias: false, num_attention_heads: 9, num_hidden_layers: 30, num_key_value_heads: 3, pretraining_tp: 1, rms_norm_eps: 1e-5,
  rope_scaling: null, rope_theta: 100000, tie_word_embeddings: true, torch_dtype: "bfloat16", use_cache: true, vocab_size: 49152,
};
const qwen25 = {
  architectures: ["Qwen2ForCausalLM"], model_type: "qwen2", attention_dropout: 0.0, bos_token_id: 151643, eos_token_id: 151643, hidden_act: "silu",
  hidden_size: 896, initializer_range: 0.02, intermediate_size: 4864, max_position_embeddings: 32768, max_window_layers: 24,
  num_attention_heads: 14, num_hidden_layers: 24, num_key_value_heads: 2, rms_norm_eps: 1e-6, rope_theta: 1000000.0, sliding_window: 32768,
  tie_word_embeddings: true, torch_dtype: "bfloat16", use_cache: true, use_sliding_window: false, vocab_size: 151936,
};
const qwen3 = {
  architectures: ["Qwen3ForCausalLM"], model_type: "qwen3", attention_bias: false, attention_dropout: 0.0, bos_token_id: 151643, eos_token_id: 151645,
  head_dim: 128, hidden_act: "silu", hidden_size: 1024, initializer_range: 0.02, intermediate_size: 3072, max_position_embeddings: 40960,
  max_window_layers: 28, num_attention_heads: 16, num_hidden_layers: 28, num_key_value_heads: 8, rms_norm_eps: 1e-6, rope_scaling: null,
  rope_theta: 1000000, sliding_window: null, tie_word_embeddings: true, torch_dtype: "bfloat16", use_cache: true, use_sliding_window: false, vocab_size: 151936,
};

test("SmolLM2 (Llama) config.json", () => {
  assert.deepEqual(parseConfig(smollm2, "config.json"), {
    architecture: "LlamaForCausalLM", vocabSize: 49152, hiddenSize: 576, intermediateSize: 1536, numLayers: 30, numHeads: 9, numKvHeads: 3,
    headDim: 64, rmsNormEps: 1e-5, ropeTheta: 100000, maxPositionEmbeddings: 8192, tieWordEmbeddings: true,
    qkvBias: false, oBias: false, mlpBias: false, qkNorm: false, ropeScaling: null,
  } satisfies DecoderConfig);
});

test("Qwen2.5 config.json: q/k/v bias always, no o bias", () => {
  assert.deepEqual(parseConfig(qwen25, "config.json"), {
    architecture: "Qwen2ForCausalLM", vocabSize: 151936, hiddenSize: 896, intermediateSize: 4864, numLayers: 24, numHeads: 14, numKvHeads: 2,
    headDim: 64, rmsNormEps: 1e-6, ropeTheta: 1000000, maxPositionEmbeddings: 32768, tieWordEmbeddings: true,
    qkvBias: true, oBias: false, mlpBias: false, qkNorm: false, ropeScaling: null,
  } satisfies DecoderConfig);
});

test("Qwen3 config.json: explicit head_dim, q/k norm", () => {
  assert.deepEqual(parseConfig(qwen3, "config.json"), {
    architecture: "Qwen3ForCausalLM", vocabSize: 151936, hiddenSize: 1024, intermediateSize: 3072, numLayers: 28, numHeads: 16, numKvHeads: 8,
    headDim: 128, rmsNormEps: 1e-6, ropeTheta: 1000000, maxPositionEmbeddings: 40960, tieWordEmbeddings: true,
    qkvBias: false, oBias: false, mlpBias: false, qkNorm: true, ropeScaling: null,
  } satisfies DecoderConfig);
  const withBias = parseConfig({ ...qwen3, attention_bias: true }, "c");
  assert.deepEqual([withBias.qkvBias, withBias.oBias], [true, true]);
});

test("transformers class defaults fill missing keys", () => {
  const minimal = (arch: string) => ({ architectures: [arch], hidden_size: 64, num_attention_heads: 4, num_hidden_layers: 2, intermediate_size: 128, vocab_size: 100 });
  const llama = parseConfig(minimal("LlamaForCausalLM"), "c");
  assert.deepEqual(
    [llama.numKvHeads, llama.headDim, llama.tieWordEmbeddings, llama.ropeTheta, llama.rmsNormEps, llama.maxPositionEmbeddings],
    [4, 16, false, 10000, 1e-6, 2048],
  );
  // Qwen3Config's head_dim default is 128, not hidden/heads.
  const q3 = parseConfig({ ...minimal("Qwen3ForCausalLM"), num_key_value_heads: 2 }, "c");
  assert.deepEqual([q3.headDim, q3.tieWordEmbeddings, q3.maxPositionEmbeddings], [128, false, 32768]);
  // Qwen2Config defaults num_key_value_heads to 32, which 4 heads cannot use.
  assert.throws(() => parseConfig(minimal("Qwen2ForCausalLM"), "c"), /num_attention_heads \(4\) must be a multiple of num_key_value_heads \(32\)/);
  const llamaBias = parseConfig({ ...minimal("LlamaForCausalLM"), attention_bias: true, mlp_bias: true }, "c");
  assert.deepEqual([llamaBias.qkvBias, llamaBias.oBias, llamaBias.mlpBias], [true, true, true]);
  const mistral = parseConfig({ ...minimal("MistralForCausalLM"), num_key_value_heads: 2, attention_bias: true }, "c");
  // MistralConfig's default sliding_window (4096) on every layer, computed: the length is max_position_embeddings'.
  assert.deepEqual([mistral.qkvBias, mistral.oBias, mistral.maxPositionEmbeddings, mistral.layerWindows], [false, false, 131072, [4096, 4096]]);
  const noWindow = parseConfig({ ...minimal("MistralForCausalLM"), num_key_value_heads: 2, sliding_window: null }, "c");
  assert.deepEqual([noWindow.maxPositionEmbeddings, noWindow.layerWindows], [131072, undefined]);
});

test("transformers v5 rope_parameters are read", () => {
  const { rope_theta: _t, rope_scaling: _s, ...rest } = qwen3;
  const cfg = parseConfig({ ...rest, rope_parameters: { rope_type: "default", rope_theta: 5e5 } }, "c");
  assert.equal(cfg.ropeTheta, 5e5);
});

test("unsupported architecture lists the supported ones", () => {
  assert.throws(() => parseConfig({ ...smollm2, architectures: ["GPT2LMHeadModel"] }, "m/config.json"), (e: Error) => {
    assert.match(e.message, /^m\/config\.json: architecture "GPT2LMHeadModel" is not supported/);
    for (const a of SUPPORTED_ARCHITECTURES) assert.ok(e.message.includes(a), a);
    return true;
  });
  assert.deepEqual(SUPPORTED_ARCHITECTURES, ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "SmolLM3ForCausalLM",
    "Gemma2ForCausalLM", "Gemma3ForCausalLM", "PhiForCausalLM", "Phi3ForCausalLM", "GPTNeoXForCausalLM", "OPTForCausalLM"]);
  assert.throws(() => parseConfig({ ...smollm2, architectures: undefined }, "c"), /"architectures" must be a one-element list/);
});

test("features we do not run are refused with the reason", () => {
  const longrope = { rope_type: "longrope", short_factor: [1], long_factor: [2], original_max_position_embeddings: 4096 };
  assert.throws(() => parseConfig({ ...smollm2, rope_scaling: longrope }, "c"), /^Error: c: LlamaForCausalLM cannot run on the native core yet: rope_scaling\.rope_type "longrope" \(RoPE scaling "longrope"; the native core has linear, dynamic, yarn, llama3 and \(Phi-3's\) longrope\)$/);
  assert.throws(() => parseConfig({ ...smollm2, rope_scaling: { type: "mrope", factor: 2 } }, "c"), /rope_scaling\.type "mrope" \(RoPE scaling "mrope"/);
  assert.throws(() => parseConfig({ ...smollm2, rope_scaling: { rope_type: "linear" } }, "c"), /"rope_scaling" of rope_type "linear" needs "factor"/);
  assert.throws(() => parseConfig({ ...smollm2, rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 1 } }, "c"), /needs "high_freq_factor"/);
  assert.throws(() => parseConfig({ ...smollm2, rope_scaling: { rope_type: "dynamic", factor: -1 } }, "c"), /"rope_scaling\.factor" must be a positive number, got -1/);
  // LlamaForCausalLM rotates whole heads: a partial_rotary_factor is not something it does
  assert.throws(() => parseConfig({ ...smollm2, partial_rotary_factor: 0.5 }, "c"), /partial_rotary_factor 0\.5 \(RoPE over 32 of 64 head dims, which LlamaForCausalLM does not do/);
  // Qwen2.5's window on the layers from max_window_layers on (transformers' Qwen2Config): 0 of 24 layers, all 24, the last 4.
  assert.equal(parseConfig({ ...qwen25, use_sliding_window: true }, "c").layerWindows, undefined);
  const all = parseConfig({ ...qwen25, use_sliding_window: true, max_window_layers: 0, sliding_window: 4096 }, "c");
  assert.deepEqual([all.maxPositionEmbeddings, all.layerWindows], [32768, new Array(24).fill(4096)]);
  const some = parseConfig({ ...qwen25, use_sliding_window: true, max_window_layers: 20, sliding_window: 64 }, "c").layerWindows;
  assert.deepEqual(some, [...new Array(20).fill(0), 64, 64, 64, 64]);
  assert.equal(parseConfig({ ...qwen25, use_sliding_window: false, max_window_layers: 0, sliding_window: 64 }, "c").layerWindows, undefined);
  // sliding_window absent: Qwen2Config's default 4096; SmolLM3Config's none
  const { sliding_window: _w, ...noKey } = qwen25;
  assert.deepEqual(parseConfig({ ...noKey, use_sliding_window: true, max_window_layers: 23 }, "c").layerWindows, [...new Array(23).fill(0), 4096]);
  const smolNoKey = { architectures: ["SmolLM3ForCausalLM"], hidden_size: 64, num_attention_heads: 4, num_hidden_layers: 4, intermediate_size: 128, vocab_size: 100, use_sliding_window: true };
  assert.equal(parseConfig(smolNoKey, "c").layerWindows, undefined);
  // LlamaMLP applies ACT2FN[hidden_act] to the gate: any activation the core has runs
  assert.equal(parseConfig({ ...smollm2, hidden_act: "gelu" }, "c").mlpAct, "gelu");
  assert.equal(parseConfig({ ...smollm2, hidden_act: "gelu_new" }, "c").mlpAct, "gelu_tanh");
  assert.throws(() => parseConfig({ ...smollm2, hidden_act: "tanh" }, "c"), /hidden_act "tanh" is not an activation we know/);
  assert.throws(() => parseConfig({ ...smollm2, hidden_size: 577 }, "c"), /hidden_size \(577\) is not a multiple of num_attention_heads \(9\)/);
  assert.throws(() => parseConfig({ ...smollm2, vocab_size: "49152" }, "c"), /"vocab_size" must be a positive integer, got "49152"/);
  assert.throws(() => parseConfig({ ...smollm2, tie_word_embeddings: "yes" }, "c"), /"tie_word_embeddings" must be true or false/);
});

test("configToJson round-trips through parseConfig for every family", () => {
  for (const json of [smollm2, qwen25, qwen3]) {
    const cfg = parseConfig(json, "c");
    const out = configToJson(cfg, { eos_token_id: 2 });
    assert.deepEqual(parseConfig(out, "c"), cfg);
    assert.equal(out.eos_token_id, 2);
    assert.equal(out.rope_scaling, null);
  }
  const mistral = parseConfig({ architectures: ["MistralForCausalLM"], hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 2, sliding_window: null, max_position_embeddings: 1024 }, "c");
  const mj = configToJson(mistral);
  assert.equal(mj.sliding_window, null); // otherwise transformers would apply its 4096 default window
  assert.deepEqual(parseConfig(mj, "c"), mistral);
  const llamaBias = parseConfig({ ...smollm2, attention_bias: true, mlp_bias: true }, "c");
  assert.deepEqual(parseConfig(configToJson(llamaBias), "c"), llamaBias);
  const minimal = (arch: string) => ({ architectures: [arch], hidden_size: 64, num_attention_heads: 4, num_hidden_layers: 2, intermediate_size: 128, vocab_size: 100 });
  // Per-layer patterns are written back in each family's own keys: Mistral's window, Qwen2's from max_window_layers,
  // SmolLM3's no_rope_layers (with its window on the NoPE layers).
  const mw = parseConfig({ ...minimal("MistralForCausalLM"), num_key_value_heads: 2, sliding_window: 16 }, "c");
  assert.equal(configToJson(mw).sliding_window, 16);
  assert.deepEqual(parseConfig(configToJson(mw), "c"), mw);
  const qw = parseConfig({ ...qwen25, use_sliding_window: true, max_window_layers: 20, sliding_window: 64 }, "c");
  assert.deepEqual([configToJson(qw).max_window_layers, configToJson(qw).use_sliding_window], [20, true]);
  assert.deepEqual(parseConfig(configToJson(qw), "c"), qw);
  const smol = { ...minimal("SmolLM3ForCausalLM"), num_hidden_layers: 4, no_rope_layers: [1, 0, 1, 0] };
  for (const extra of [{}, { use_sliding_window: true, sliding_window: 8 }]) {
    const sc = parseConfig({ ...smol, ...extra }, "c");
    assert.deepEqual(sc.layerRope, [true, false, true, false]);
    assert.deepEqual(configToJson(sc).no_rope_layers, [1, 0, 1, 0]);
    assert.deepEqual(parseConfig(configToJson(sc), "c"), sc);
  }
  assert.throws(() => configToJson({ ...mw, layerRope: [true, false] }), /MistralForCausalLM cannot express layers without RoPE/);
  assert.throws(() => configToJson({ ...mw, layerWindows: [16, 8] }), /more than one sliding window/);
  assert.throws(() => configToJson({ ...mw, layerWindows: [16, 0] }), /full attention on some layers only/);
  assert.throws(() => configToJson({ ...parseConfig(qwen25, "c"), qkvBias: false }), /Qwen2ForCausalLM cannot express/);
  assert.throws(() => configToJson({ ...parseConfig(smollm2, "c"), qkNorm: true }), /q\/k norms/);
});

test("RoPE scaling: llama3, linear, dynamic and yarn with transformers' defaults", () => {
  // Llama-3.2-1B's rope_scaling as published (v4 layout, rope_theta at the top level).
  const llama32 = parseConfig({ ...smollm2, rope_theta: 500000.0, max_position_embeddings: 131072,
    rope_scaling: { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: "llama3" } }, "c");
  assert.equal(llama32.ropeTheta, 500000);
  assert.deepEqual(llama32.ropeScaling, { type: "llama3", factor: 32, originalMaxPositionEmbeddings: 8192, lowFreqFactor: 1, highFreqFactor: 4, betaFast: 32, betaSlow: 1, truncate: true, attentionFactor: 1 });
  // Qwen2.5's long-context recipe: yarn with the old "type" key; attention factor 0.1 ln 4 + 1.
  const yarn = parseConfig({ ...qwen25, rope_scaling: { factor: 4.0, original_max_position_embeddings: 32768, type: "yarn" } }, "c");
  assert.equal(yarn.ropeScaling?.type, "yarn");
  assert.equal(yarn.ropeScaling?.attentionFactor, 0.1 * Math.log(4) + 1);
  assert.deepEqual([yarn.ropeScaling?.betaFast, yarn.ropeScaling?.betaSlow, yarn.ropeScaling?.truncate], [32, 1, true]);
  // yarn: factor null -> max / original; mscale and mscale_all_dim both set -> their ratio; beta 0 -> default; truncate null -> false.
  const ds = parseConfig({ ...smollm2, max_position_embeddings: 4096, rope_parameters: { rope_type: "yarn", factor: null, original_max_position_embeddings: 1024,
    mscale: 0.707, mscale_all_dim: 1.0, beta_fast: 0, truncate: null } }, "c").ropeScaling!;
  const g = (m: number) => 0.1 * m * Math.log(4) + 1;
  assert.deepEqual([ds.factor, ds.attentionFactor, ds.betaFast, ds.truncate], [4, g(0.707) / g(1.0), 32, false]);
  // yarn without original_max_position_embeddings takes max_position_embeddings (standardize_rope_params).
  assert.equal(parseConfig({ ...smollm2, rope_scaling: { rope_type: "yarn", factor: 2 } }, "c").ropeScaling?.originalMaxPositionEmbeddings, 8192);
  // dynamic's threshold is max_position_embeddings; a non-empty rope_scaling wins over rope_parameters, an empty one does not.
  const dyn = parseConfig({ ...smollm2, rope_scaling: { rope_type: "dynamic", factor: 2 }, rope_parameters: { rope_type: "linear", factor: 3 } }, "c");
  assert.deepEqual([dyn.ropeScaling?.type, dyn.ropeScaling?.factor, dyn.ropeScaling?.originalMaxPositionEmbeddings], ["dynamic", 2, 8192]);
  const lin = parseConfig({ ...smollm2, rope_scaling: {}, rope_parameters: { rope_type: "linear", factor: 3, rope_theta: 7 } }, "c");
  assert.deepEqual([lin.ropeScaling?.type, lin.ropeScaling?.factor, lin.ropeTheta], ["linear", 3, 7]);
  const dsCfg: DecoderConfig = { ...parseConfig(smollm2, "c"), ropeScaling: ds };
  for (const cfg of [llama32, yarn, dsCfg, dyn, lin]) {
    assert.deepEqual(parseConfig(configToJson(cfg), "c"), cfg, `${cfg.ropeScaling?.type} round trip`);
  }
});

test("hostile RoPE scaling values are refused naming the field", () => {
  const withScaling = (rope_scaling: unknown) => ({ ...smollm2, rope_scaling });
  assert.throws(() => parseConfig(withScaling([1, 2]), "c"), /"rope_scaling" must be an object or null, got \[1,2\]/);
  assert.throws(() => parseConfig(withScaling({ rope_type: "linear", factor: "8" }), "c"), /"rope_scaling\.factor" must be a positive number, got "8"/);
  assert.throws(() => parseConfig(withScaling({ rope_type: "dynamic", factor: Infinity }), "c"), /"rope_scaling\.factor" must be a positive number, got Infinity/);
  assert.throws(() => parseConfig(withScaling({ rope_type: "yarn", factor: 4, original_max_position_embeddings: 1e12 }), "c"), /"rope_scaling\.original_max_position_embeddings" must be a positive integer, got 1000000000000/);
  assert.throws(() => parseConfig(withScaling({ rope_type: "yarn", factor: 4, attention_factor: -1 }), "c"), /"rope_scaling\.attention_factor" must be a positive number, got -1/);
  assert.throws(() => parseConfig(withScaling({ rope_type: "yarn", factor: 4, truncate: "no" }), "c"), /"rope_scaling\.truncate" must be true or false, got "no"/);
  assert.throws(() => parseConfig(withScaling({ rope_type: "llama3", factor: 8, low_freq_factor: 2, high_freq_factor: 2 }), "c"), /"rope_scaling\.high_freq_factor" must differ from low_freq_factor/);
  assert.throws(() => parseConfig(withScaling({ rope_type: null, factor: 2 }), "c"), /"rope_scaling\.rope_type" must be a string such as "llama3", got null/);
  // yarn runs to factor x its pretraining length, but never past the core's 32-bit sizes.
  assert.equal(parseConfig({ ...smollm2, rope_scaling: { rope_type: "yarn", factor: 4 }, max_position_embeddings: 2 ** 31 - 1 }, "c").maxPositionEmbeddings, 2 ** 31 - 1);
  assert.equal(parseConfig({ ...smollm2, rope_scaling: { rope_type: "yarn", factor: 4, original_max_position_embeddings: 4096 } }, "c").maxPositionEmbeddings, 16384);
});
