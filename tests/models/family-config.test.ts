// config.json -> DecoderConfig for the families beyond the Llama shape (Gemma 2, Gemma 3 text, Phi-2, Phi-3, GPT-NeoX,
// OPT): each published config in tests/fixtures/configs read into the core's family fields (worked out by hand from
// the config and transformers' modeling code), configToJson -> parseConfig round trips for every family, the configs
// a family cannot express refused naming what, and config.json float keys written as floats.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { DecoderConfig } from "../../src/core/types.ts";
import { configJsonText, configToJson, parseConfig } from "../../src/models/config.ts";
import { TINY_FAMILY_JSON, tinyFamily } from "../helpers/families.ts";

const dir = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "configs");
const read = (name: string) => JSON.parse(readFileSync(join(dir, `${name}.json`), "utf8")) as Record<string, unknown>;
const FAMILY_KEYS = ["arch", "normType", "normUnitOffset", "sandwichNorms", "parallelResidual", "mlpPlain", "mlpAct", "rotaryDim", "headBias",
  "positionRows", "positionOffset", "embedScale", "attnScale", "attnSoftcap", "finalSoftcap", "ropeLocalTheta"] as const;
/** The family fields a config has (absent ones left out), plus the base fields they interact with. */
const family = (c: DecoderConfig) => ({
  ...Object.fromEntries(FAMILY_KEYS.filter((k) => c[k] !== undefined).map((k) => [k, c[k]])),
  bias: [c.qkvBias, c.oBias, c.mlpBias], qkNorm: c.qkNorm, tied: c.tieWordEmbeddings, headDim: c.headDim, theta: c.ropeTheta,
});
const pattern = (n: number, f: (i: number) => number | boolean | "local") => Array.from({ length: n }, (_, i) => f(i));

test("Gemma 2 (gemma-2-2b): 1 + w norms in a sandwich, sqrt(C) embeddings, GELU-tanh gate, soft-caps, every other layer sliding", () => {
  const c = parseConfig(read("gemma-2-2b"), "c");
  // query_pre_attn_scalar 256 = head_dim: the default scale, so no attnScale
  assert.deepEqual(family(c), { normUnitOffset: true, sandwichNorms: true, mlpAct: "gelu_tanh", embedScale: 48, attnSoftcap: 50, finalSoftcap: 30,
    bias: [false, false, false], qkNorm: false, tied: true, headDim: 256, theta: 10000 });
  assert.deepEqual(c.layerWindows, pattern(26, (i) => (i % 2 === 0 ? 4096 : 0)));
  assert.equal(c.layerRope, undefined);
  // Gemma 2 27B's query_pre_attn_scalar 144 (hidden / heads) with head_dim 128: the scale is 144^-0.5
  assert.equal(parseConfig({ ...read("gemma-2-2b"), query_pre_attn_scalar: 144, head_dim: 128 }, "c").attnScale, 144 ** -0.5);
  // Gemma2Config's soft-cap defaults are 50 and 30; null switches them off
  const { attn_logit_softcapping: _a, final_logit_softcapping: _f, ...noCaps } = read("gemma-2-2b");
  assert.deepEqual([parseConfig(noCaps, "c").attnSoftcap, parseConfig(noCaps, "c").finalSoftcap], [50, 30]);
  const off = parseConfig({ ...noCaps, attn_logit_softcapping: null, final_logit_softcapping: null }, "c");
  assert.deepEqual([off.attnSoftcap, off.finalSoftcap], [undefined, undefined]);
});

test("Gemma 3 text (gemma-3-1b-it): q/k norms, a local RoPE base on the sliding layers (5 of every 6), no soft-caps", () => {
  const c = parseConfig(read("gemma-3-1b-it"), "c");
  // embeddings * torch.tensor(1152 ** 0.5): float32 33.941124 (the double is 33.94112549695428)
  assert.deepEqual(family(c), { normUnitOffset: true, sandwichNorms: true, mlpAct: "gelu_tanh", embedScale: Math.fround(Math.sqrt(1152)), ropeLocalTheta: 10000,
    bias: [false, false, false], qkNorm: true, tied: true, headDim: 256, theta: 1000000 });
  assert.equal(c.embedScale, 33.941123962402344);
  assert.deepEqual(c.layerWindows, pattern(26, (i) => ((i + 1) % 6 === 0 ? 0 : 512)));
  assert.deepEqual(c.layerRope, pattern(26, (i) => ((i + 1) % 6 === 0 ? true : "local")));
  assert.equal(c.vocabSize, 262144);
});

test("Phi-2: LayerNorm, one norm feeding attention and MLP in parallel, plain GELU-tanh MLP, RoPE on 32 of 80 dims, biases everywhere", () => {
  const c = parseConfig(read("phi-2"), "c");
  assert.deepEqual(family(c), { arch: "phi", normType: "layernorm", parallelResidual: 1, mlpPlain: true, mlpAct: "gelu_tanh", rotaryDim: 32, headBias: true,
    bias: [true, true, true], qkNorm: false, tied: false, headDim: 80, theta: 10000 });
  assert.equal(c.rmsNormEps, 1e-5);   // layer_norm_eps
  // PhiConfig's partial_rotary_factor default is 0.5
  const { partial_rotary_factor: _p, ...noFactor } = read("phi-2");
  assert.equal(parseConfig(noFactor, "c").rotaryDim, 40);
});

test("Phi-3 (Phi-3-mini-4k-instruct): the fused names and a 2047-token window on every layer; Phi-4-mini's partial rotary", () => {
  const c = parseConfig(read("Phi-3-mini-4k-instruct"), "c");
  assert.deepEqual(family(c), { arch: "phi3", bias: [false, false, false], qkNorm: false, tied: false, headDim: 96, theta: 10000 });
  assert.deepEqual(c.layerWindows, new Array(32).fill(2047));
  // Phi-4-mini without its longrope scaling: RoPE over 96 of 128 dims, grouped kv heads, tied
  const { rope_scaling: _r, ...phi4 } = read("Phi-4-mini-instruct");
  const p4 = parseConfig(phi4, "c");
  assert.deepEqual([p4.arch, p4.rotaryDim, p4.numKvHeads, p4.tieWordEmbeddings], ["phi3", 96, 8, true]);
});

test("GPT-NeoX (Pythia): LayerNorm, parallel residual with two norms, plain GELU MLP, RoPE on rotary_pct of each head, untied embed_out", () => {
  const c = parseConfig(read("pythia-160m"), "c");
  assert.deepEqual(family(c), { arch: "gpt_neox", normType: "layernorm", parallelResidual: 2, mlpPlain: true, mlpAct: "gelu", rotaryDim: 16,
    bias: [true, true, true], qkNorm: false, tied: false, headDim: 64, theta: 10000 });
  assert.equal(parseConfig(read("pythia-1b"), "c").rotaryDim, 64);
  // use_parallel_residual false: sequential, still its two norms; attention_bias false drops the attention biases only
  const seq = parseConfig({ ...read("pythia-160m"), use_parallel_residual: false, attention_bias: false }, "c");
  assert.deepEqual([seq.parallelResidual, seq.qkvBias, seq.oBias, seq.mlpBias], [undefined, false, false, true]);
  // rotary_emb_base is the old name of rope_theta
  assert.equal(parseConfig({ ...read("pythia-160m"), rotary_emb_base: 500 }, "c").ropeTheta, 500);
});

test("OPT (opt-125m, opt-1.3b): LayerNorm, plain ReLU MLP, learned positions of max_position_embeddings + 2 rows read at t + 2, no RoPE, tied", () => {
  for (const name of ["opt-125m", "opt-1.3b"]) {
    const c = parseConfig(read(name), "c");
    assert.deepEqual(family(c), { arch: "opt", normType: "layernorm", mlpPlain: true, mlpAct: "relu", positionRows: 2050, positionOffset: 2,
      bias: [true, true, true], qkNorm: false, tied: true, headDim: 64, theta: 10000 }, name);
    assert.deepEqual(c.layerRope, new Array(c.numLayers).fill(false));
    assert.equal(c.rmsNormEps, 1e-5);  // nn.LayerNorm's default eps
  }
  const noBias = parseConfig({ ...read("opt-125m"), enable_bias: false }, "c");
  assert.deepEqual([noBias.qkvBias, noBias.oBias, noBias.mlpBias, noBias.normType], [false, false, false, "layernorm"]);
});

test("configToJson -> parseConfig gives the same config back for every family's published config and the tiny ones", () => {
  const published = ["Llama-3.1-8B", "Llama-3.2-1B-Instruct", "Qwen2.5-0.5B", "SmolLM3-3B", "gemma-2-2b", "gemma-3-1b-it", "phi-2", "Phi-3-mini-4k-instruct",
    "Phi-4-mini-instruct", "pythia-160m", "pythia-1b", "opt-125m", "opt-350m", "opt-1.3b"].map((n) => [n, read(n)] as const);
  const variants: [string, Record<string, unknown>][] = [
    ["gemma-3 + linear", { ...read("gemma-3-1b-it"), rope_scaling: { rope_type: "linear", factor: 8 } }],
    ["gemma-3 no window", { ...read("gemma-3-1b-it"), sliding_window: null }],
    ["gemma-2 27b", { ...read("gemma-2-2b"), query_pre_attn_scalar: 144, head_dim: 128, final_logit_softcapping: null }],
    ["pythia sequential", { ...read("pythia-160m"), use_parallel_residual: false, attention_bias: false }],
    ["pythia linear", { ...read("pythia-160m"), rope_scaling: { type: "linear", factor: 2 } }],
    ["opt no bias", { ...read("opt-125m"), enable_bias: false, activation_function: "gelu" }],
    ["phi-2 tied", { ...read("phi-2"), tie_word_embeddings: true, partial_rotary_factor: 0.3 }],
    ["phi-4 default rope", (() => { const { rope_scaling: _r, ...p } = read("Phi-4-mini-instruct"); return p; })()],
    ...Object.entries(TINY_FAMILY_JSON),
  ];
  for (const [name, json] of [...published, ...variants]) {
    const cfg = parseConfig(json, name);
    const out = configToJson(cfg, { eos_token_id: 2 });
    assert.deepEqual(parseConfig(out, "written"), cfg, name);
    assert.equal(out.eos_token_id, 2);
    assert.deepEqual(out.architectures, json.architectures, name);
  }
});

test("configToJson writes each family's own keys", () => {
  const g2 = configToJson(parseConfig(read("gemma-2-2b"), "c"));
  assert.deepEqual([g2.model_type, g2.hidden_activation, g2.query_pre_attn_scalar, g2.attn_logit_softcapping, g2.final_logit_softcapping, g2.sliding_window, g2.hidden_act],
    ["gemma2", "gelu_pytorch_tanh", 256, 50, 30, 4096, undefined]);
  assert.deepEqual((g2.layer_types as string[]).slice(0, 3), ["sliding_attention", "full_attention", "sliding_attention"]);
  const g3 = configToJson(parseConfig({ ...read("gemma-3-1b-it"), rope_scaling: { rope_type: "linear", factor: 8 } }, "c"));
  assert.deepEqual([g3.model_type, g3.rope_local_base_freq, g3.rope_theta, g3.attn_logit_softcapping], ["gemma3_text", 10000, 1000000, null]);
  assert.deepEqual(g3.rope_parameters, { full_attention: { rope_type: "linear", rope_theta: 1000000, factor: 8 }, sliding_attention: { rope_type: "default", rope_theta: 10000 } });
  const neox = configToJson(parseConfig(read("pythia-160m"), "c"));
  assert.deepEqual([neox.rotary_pct, neox.rotary_emb_base, neox.use_parallel_residual, neox.attention_bias, neox.hidden_act, neox.layer_norm_eps],
    [0.25, 10000, true, true, "gelu", 1e-5]);
  const opt = configToJson(parseConfig(read("opt-125m"), "c"));
  assert.deepEqual([opt.ffn_dim, opt.do_layer_norm_before, opt.word_embed_proj_dim, opt.enable_bias, opt.activation_function, opt.max_position_embeddings, opt.rope_theta],
    [3072, true, 768, true, "relu", 2048, undefined]);
  const phi = configToJson(parseConfig(read("phi-2"), "c"));
  assert.deepEqual([phi.partial_rotary_factor, phi.hidden_act, phi.qk_layernorm, phi.head_dim], [0.4, "gelu_new", false, undefined]);
  const phi3 = configToJson(parseConfig(read("Phi-3-mini-4k-instruct"), "c"));
  assert.deepEqual([phi3.sliding_window, phi3.partial_rotary_factor, phi3.hidden_act], [2047, 1, "silu"]);
});

test("configToJson refuses what the family cannot express, naming it", () => {
  const neox = parseConfig(read("pythia-160m"), "c"), opt = parseConfig(read("opt-125m"), "c"), g2 = parseConfig(read("gemma-2-2b"), "c");
  const refused = (c: DecoderConfig, re: RegExp) => assert.throws(() => configToJson(c), re);
  refused({ ...neox, normType: "rmsnorm" }, /^Error: configToJson: GPTNeoXForCausalLM cannot express normType "rmsnorm" \(it would read back as "layernorm"\)$/);
  refused({ ...neox, arch: "llama" }, /GPTNeoXForCausalLM cannot express arch "llama" \(its tensor names are the "gpt_neox" ones\)/);
  refused({ ...neox, mlpBias: false }, /mlpBias false \(it would read back as true\)/);
  refused({ ...neox, headDim: 32 }, /head_dim 32 other than hidden_size \/ num_attention_heads \(64\)/);
  refused({ ...opt, positionOffset: 1, positionRows: 2049 }, /positionOffset 1 \(it would read back as 2\)/);
  refused({ ...opt, ropeTheta: 500 }, /ropeTheta 500 \(it would read back as 10000\)/);
  refused({ ...g2, qkNorm: true }, /Gemma2ForCausalLM cannot express q\/k norms \(only Qwen3 and Gemma 3\)/);
  refused({ ...g2, embedScale: 2 }, /embedScale 2 \(it would read back as 48\)/);
  refused({ ...g2, rotaryDim: 64 }, /Gemma2ForCausalLM cannot express rotaryDim 64 \(it would read back as 0\)$/);
  // what the written JSON cannot even be read as: Phi3Config takes no linear scaling
  const phi3 = parseConfig(read("Phi-3-mini-4k-instruct"), "c");
  refused({ ...phi3, ropeScaling: parseConfig({ ...read("Llama-3.2-1B-Instruct"), rope_scaling: { rope_type: "linear", factor: 2 } }, "c").ropeScaling },
    /Phi3ForCausalLM cannot express this config: Phi3ForCausalLM cannot run on the native core yet: rope_scaling\.rope_type "linear"/);
  refused({ ...parseConfig(read("Llama-3.2-1B-Instruct"), "c"), parallelResidual: 2 }, /LlamaForCausalLM cannot express parallelResidual 2 \(it would read back as 0\)/);
  const g3 = parseConfig(read("gemma-3-1b-it"), "c");
  refused({ ...g3, layerRope: g3.layerRope!.map(() => true) }, /the local RoPE base on other layers than the sliding-window ones/);
});

test("config.json float keys are written as floats (transformers 5's strict config classes refuse 50 for a float)", () => {
  const text = configJsonText(configToJson(parseConfig(read("gemma-2-2b"), "c")));
  assert.match(text, /"attn_logit_softcapping": 50\.0,/);
  assert.match(text, /"final_logit_softcapping": 30\.0,/);
  assert.match(text, /"query_pre_attn_scalar": 256,/);   // an int field stays an int
  assert.match(text, /"rms_norm_eps": 0\.000001,/);
  assert.ok(text.endsWith("}\n"));
  assert.deepEqual(JSON.parse(text), configToJson(parseConfig(read("gemma-2-2b"), "c")));
  assert.throws(() => configJsonText({ note: "\u0000float:3", rms_norm_eps: 1 }), /looks like an internal float mark/);
});

test("the tiny family configs of the test helpers read as their families", () => {
  assert.deepEqual([tinyFamily("gemma2").attnScale, tinyFamily("gemma2").layerWindows], [6 ** -0.5, [4, 0]]);
  assert.deepEqual(tinyFamily("gemma3").layerRope, ["local", "local", true]);
  assert.deepEqual([tinyFamily("phi").rotaryDim, tinyFamily("phi3").rotaryDim, tinyFamily("gpt_neox").rotaryDim], [4, 4, 4]);
  assert.deepEqual([tinyFamily("opt").positionRows, tinyFamily("opt").arch], [66, "opt"]);
});
