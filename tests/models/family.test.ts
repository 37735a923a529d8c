// The family descriptions of the published config.json files in tests/fixtures/configs: each is described with
// the parameter count transformers builds from it (param_counts.json, written by tools/reference/family_configs.py);
// every one the native core runs is laid out by the core with the tensors the description lists, name by name and
// shape by shape, and so the same count; the others are refused naming the config.json fields and values the native
// core cannot run yet.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { nativeGaps, parseConfig } from "../../src/models/config.ts";
import { describeModel, parameterCount, tensorShapes } from "../../src/models/family.ts";
import { buildParamTable } from "../../src/models/params.ts";

const dir = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "configs");
const counts = JSON.parse(readFileSync(join(dir, "param_counts.json"), "utf8")) as { transformers: string; models: Record<string, { class: string; parameters: number }> };
const read = (name: string) => JSON.parse(readFileSync(join(dir, `${name}.json`), "utf8")) as Record<string, unknown>;

// What the native core runs, and for every other model the fragments its refusal must contain (and only those).
const RUNS = ["Llama-3.1-8B", "Llama-3.2-1B-Instruct", "Llama-3.2-3B-Instruct", "Qwen2.5-0.5B", "SmolLM3-3B", "gemma-2-2b", "gemma-3-1b-it",
  "Phi-3-mini-4k-instruct", "Phi-4-mini-instruct", "phi-2", "opt-125m", "opt-350m", "opt-1.3b", "pythia-160m", "pythia-410m", "pythia-1b"];
// Every published config here runs; what the core still refuses is shown on edited configs below.
const REFUSED: Record<string, RegExp[]> = {};

test("every published config in the fixtures is covered, and every covered one is there", () => {
  const files = readdirSync(dir).filter((f) => f.endsWith(".json") && f !== "param_counts.json").map((f) => f.slice(0, -5)).sort();
  assert.deepEqual(files, [...RUNS, ...Object.keys(REFUSED)].sort());
  assert.deepEqual(Object.keys(counts.models).sort(), files);
});

for (const [name, ref] of Object.entries(counts.models)) {
  test(`${name}: the description's parameter count is transformers' (${ref.parameters.toLocaleString("en")}, ${ref.class})`, () => {
    const d = describeModel(read(name), `${name}/config.json`);
    assert.equal(d.architecture, ref.class);
    assert.equal(parameterCount(d), ref.parameters);
    const names = tensorShapes(d).map((t) => t.name);
    assert.equal(new Set(names).size, names.length, "tensor names are unique");
  });
}

for (const name of RUNS) {
  const cfg = parseConfig(read(name), `${name}/config.json`);
  test(`${name}: runs natively; the core's layout has the description's tensors, name by name and shape by shape`, () => {
    assert.deepEqual(nativeGaps(describeModel(read(name), "c")), []);
    const table = buildParamTable(cfg);
    const ours = new Map(table.map((p) => [p.name, p.shape.join("x")]));
    const theirs = new Map(tensorShapes(describeModel(read(name), "c")).map((t) => [t.name, t.shape.join("x")]));
    assert.equal(ours.size, table.length, "the core's names are unique");
    assert.deepEqual([...ours.keys()].filter((n) => !theirs.has(n)), [], "tensors the core has and the checkpoint does not");
    assert.deepEqual([...theirs.keys()].filter((n) => !ours.has(n)), [], "tensors the checkpoint has and the core does not");
    for (const [n, shape] of theirs) assert.equal(ours.get(n), shape, n);
    assert.equal(table.reduce((s, p) => s + p.size, 0), counts.models[name].parameters);
    if (name.startsWith("Llama")) assert.equal(cfg.ropeScaling?.type, "llama3");
  });
}

for (const [name, fragments] of Object.entries(REFUSED)) {
  test(`${name}: refused naming each field and value the native core cannot run yet`, () => {
    assert.throws(() => parseConfig(read(name), `${name}/config.json`), (e: Error) => {
      assert.match(e.message, new RegExp(`^${name.replace(/[.]/g, "\\.")}/config\\.json: \\w+ForCausalLM cannot run on the native core yet: `));
      for (const f of fragments) assert.match(e.message, f);
      assert.equal(e.message.split("), ").length, fragments.length, "only these fields are named");
      return true;
    });
  });
}

test("the descriptions carry each family's shape", () => {
  const d = (name: string) => describeModel(read(name), name);
  const g2 = d("gemma-2-2b");
  assert.deepEqual(g2.layers.slice(0, 3).map((l) => [l.attention, l.window]), [["sliding", 4096], ["full", null], ["sliding", 4096]]);
  assert.deepEqual([g2.norm.placement, g2.norm.unitOffset, g2.embedding.scale, g2.attention.scale, g2.attention.softcap, g2.head.softcap, g2.head.tied, g2.mlp.activation],
    ["sandwich", true, "sqrt_hidden", 1 / 16, 50, 30, true, "gelu_tanh"]);
  const g3 = d("gemma-3-1b-it");
  assert.deepEqual(g3.layers.map((l, i) => (l.attention === "full" ? i : -1)).filter((i) => i >= 0), [5, 11, 17, 23]);
  assert.deepEqual([g3.layers[0].rope, g3.layers[5].rope, g3.rope.theta, g3.rope.localTheta, g3.attention.qkNorm, g3.head.softcap], ["local", "global", 1000000, 10000, true, null]);
  const phi2 = d("phi-2");
  assert.deepEqual([phi2.residual, phi2.parallelNorms, phi2.rope.rotaryDim, phi2.head.bias, phi2.attention.qkvBias, phi2.attention.oBias, phi2.mlp.bias, phi2.norm.type],
    ["parallel", 1, 32, true, true, true, true, "layernorm"]);
  const phi3 = d("Phi-3-mini-4k-instruct");
  assert.deepEqual([phi3.weights.qkv, phi3.weights.gateUp, phi3.layers[0].window, phi3.attention.qkvBias], ["fused", "fused", 2047, false]);
  const phi4 = d("Phi-4-mini-instruct");
  assert.deepEqual([phi4.rope.scaling?.type, phi4.rope.rotaryDim, phi4.head.tied, phi4.layers[0].window], ["longrope", 96, true, 262144]);
  // longrope's attention factor from max_position_embeddings over Phi3Config's original_max_position_embeddings
  const r = phi4.rope.scaling!;
  assert.deepEqual([r.originalMaxPositionEmbeddings, r.shortFactor!.length, r.longFactor!.length], [4096, 48, 48]);
  assert.equal(r.attentionFactor, Math.sqrt(1 + Math.log(131072 / 4096) / Math.log(4096)));
  const smol = d("SmolLM3-3B");
  assert.deepEqual(smol.layers.map((l, i) => (l.rope === "none" ? i : -1)).filter((i) => i >= 0), [3, 7, 11, 15, 19, 23, 27, 31, 35]);
  const opt = d("opt-350m");
  assert.deepEqual([opt.embedding.positions, opt.embedding.learnedOffset, opt.embedding.projectDim, opt.norm.placement, opt.norm.noFinal, opt.head.tied, opt.mlp.activation],
    ["learned", 2, 512, "post", true, true, "relu"]);
  const neox = d("pythia-160m");
  assert.deepEqual([neox.weights.qkv, neox.residual, neox.parallelNorms, neox.rope.rotaryDim, neox.head.tied, neox.attention.qkvBias],
    ["fused_interleaved", "parallel", 2, 16, false, true]);
});

test("SmolLM3-3B runs with its 9 NoPE layers (no_rope_layers) and no window (use_sliding_window false)", () => {
  const cfg = parseConfig(read("SmolLM3-3B"), "c");
  assert.deepEqual(cfg.layerRope!.map((r, i) => (r ? -1 : i)).filter((i) => i >= 0), [3, 7, 11, 15, 19, 23, 27, 31, 35]);
  assert.equal(cfg.layerWindows, undefined);
  // the window transformers' SmolLM3Config puts on the NoPE layers when use_sliding_window is set
  const slid = parseConfig({ ...read("SmolLM3-3B"), use_sliding_window: true, sliding_window: 4096 }, "c");
  assert.deepEqual(slid.layerWindows, cfg.layerRope!.map((r) => (r ? 0 : 4096)));
});


test("what the core still cannot run is refused naming the config.json field and value", () => {
  const refused = (json: Record<string, unknown>, ...fragments: RegExp[]) => assert.throws(() => parseConfig(json, "c"), (e: Error) => {
    for (const f of fragments) assert.match(e.message, f);
    return true;
  });
  const opt = read("opt-125m"), gemma3 = read("gemma-3-1b-it"), gemma2 = read("gemma-2-2b"), phi2 = read("phi-2"), phi3 = read("Phi-3-mini-4k-instruct");
  // OPT-350m's LayerNorm after each block, project_in / project_out and a removed final LayerNorm run
  const opt350 = parseConfig(read("opt-350m"), "c");
  assert.deepEqual([opt350.normAfter, opt350.noFinalNorm, opt350.embedDim], [true, true, 512]);
  assert.equal(parseConfig({ ...opt, _remove_final_layer_norm: true }, "c").noFinalNorm, true);
  refused({ ...opt, layer_norm_elementwise_affine: false }, /layer_norm_elementwise_affine false \(LayerNorms without weights and biases\)$/);
  refused({ ...phi2, qk_layernorm: true }, /: PhiForCausalLM cannot run on the native core yet: qk_layernorm true \(LayerNorms on q and k \(q_layernorm, k_layernorm\)\)$/);
  refused({ ...gemma2, use_bidirectional_attention: true }, /use_bidirectional_attention true \(attention without the causal mask\)$/);
  refused({ ...gemma3, use_bidirectional_attention: true }, /use_bidirectional_attention true/);
  // Phi3Config reads "yarn" and "su" as longrope, and takes no other scaling
  const yarn = parseConfig({ ...phi3, rope_scaling: { type: "yarn", short_factor: new Array(48).fill(1), long_factor: new Array(48).fill(2) } }, "c");
  assert.equal(yarn.ropeScaling?.type, "longrope");
  assert.throws(() => parseConfig({ ...phi3, rope_scaling: { type: "su", short_factor: [1], long_factor: [1] } }, "c"), /"rope_scaling\.short_factor" must have rotary_dim \/ 2 = 48 entries, got 1/);
  refused({ ...phi3, rope_scaling: { rope_type: "linear", factor: 2 } }, /rope_scaling\.rope_type "linear" \(RoPE scaling "linear"; Phi3Config takes default or longrope/);
  // Gemma 3 (transformers v5): RoPE parameters per layer type; the sliding layers' own scaling is refused
  const { rope_theta: _t, rope_local_base_freq: _l, ...g3 } = gemma3;
  refused({ ...g3, rope_parameters: { full_attention: { rope_type: "linear", factor: 8, rope_theta: 1e6 }, sliding_attention: { rope_type: "linear", factor: 2, rope_theta: 1e4 } } },
    /rope_parameters\.sliding_attention\.rope_type "linear" \(RoPE scaling "linear" on the sliding-window layers; the native core runs their local base unscaled\)$/);
  // what runs is no longer named: Gemma's windows, norms, soft-caps and local base, Phi's and NeoX's partial rotary, OPT's positions
  for (const name of ["gemma-2-2b", "gemma-3-1b-it", "phi-2", "pythia-160m", "opt-125m", "Phi-3-mini-4k-instruct"]) assert.deepEqual(nativeGaps(describeModel(read(name), "c")), [], name);
});

test("Gemma 3: rope_parameters nested by layer type (transformers v5) read as the v4 keys are", () => {
  const gemma3 = read("gemma-3-1b-it");
  const v4 = parseConfig({ ...gemma3, rope_scaling: { rope_type: "linear", factor: 8 } }, "c");
  const { rope_theta: _t, rope_local_base_freq: _l, rope_scaling: _s, ...rest } = gemma3;
  const v5 = parseConfig({ ...rest, rope_parameters: { full_attention: { rope_type: "linear", factor: 8, rope_theta: 1000000 }, sliding_attention: { rope_type: "default", rope_theta: 10000 } } }, "c");
  assert.deepEqual(v5, v4);
  assert.deepEqual([v4.ropeScaling?.type, v4.ropeScaling?.factor, v4.ropeTheta, v4.ropeLocalTheta], ["linear", 8, 1000000, 10000]);
  // v5 applies a rope_scaling beside the nested parameters to the full-attention layers
  const both = parseConfig({ ...rest, rope_scaling: { rope_type: "linear", factor: 8 }, rope_parameters: { full_attention: { rope_type: "default", rope_theta: 1000000 }, sliding_attention: { rope_type: "default", rope_theta: 10000 } } }, "c");
  assert.deepEqual(both, v4);
  // the defaults when neither says: 1e6 globally, 1e4 locally (Gemma3TextConfig.default_theta)
  const bare = parseConfig(rest, "c");
  assert.deepEqual([bare.ropeTheta, bare.ropeLocalTheta, bare.ropeScaling], [1000000, 10000, null]);
  // the local base follows the layer types even without a window
  const noWindow = parseConfig({ ...gemma3, sliding_window: null }, "c");
  assert.equal(noWindow.layerWindows, undefined);
  assert.deepEqual(noWindow.layerRope!.slice(0, 7), ["local", "local", "local", "local", "local", true, "local"]);
  // Gemma's MLP reads hidden_activation only (transformers ignores a hidden_act beside it)
  assert.equal(parseConfig({ ...rest, hidden_activation: undefined, hidden_act: "relu" }, "c").mlpAct, "gelu_tanh");
});
