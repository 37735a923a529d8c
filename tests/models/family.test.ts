// The family descriptions of the published config.json files in tests/fixtures/configs: each is described with
// the parameter count transformers builds from it (param_counts.json, written by tools/reference/family_configs.py),
// the Llama-shaped ones load into the native layout with that same count, and every other one is refused naming
// the config.json fields and values the native core cannot run yet.
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

// What the native core runs today, and for every other model the fragments its refusal must contain.
const RUNS = ["Llama-3.1-8B", "Llama-3.2-1B-Instruct", "Llama-3.2-3B-Instruct", "Qwen2.5-0.5B", "SmolLM3-3B"];
const REFUSED: Record<string, RegExp[]> = {
  "gemma-2-2b": [/hidden_activation "gelu_pytorch_tanh" \(GELU \(tanh approximation\) MLP/, /model_type "gemma2" \(RMSNorm scaled by \(1 \+ weight\), before and after attention and MLP; embeddings scaled by sqrt\(hidden_size\)\)/,
    /attn_logit_softcapping 50 \(attention-logit soft-capping\)/, /final_logit_softcapping 30 \(final-logit soft-capping\)/],
  "gemma-3-1b-it": [/hidden_activation "gelu_pytorch_tanh"/, /model_type "gemma3_text"/,
    /rope_local_base_freq 10000 \(its own RoPE base on the sliding-window layers\)/],
  "Phi-3-mini-4k-instruct": [/model_type "phi3" \(fused qkv_proj and gate_up_proj weights\)/],
  "Phi-4-mini-instruct": [/partial_rotary_factor 0\.75 \(RoPE over 96 of 128 head dims\)/, /rope_scaling\.type "longrope"/, /model_type "phi3"/],
  "phi-2": [/hidden_act "gelu_new"/, /model_type "phi" \(a plain fc1 -> activation -> fc2 MLP; LayerNorm with bias; attention and MLP in parallel from one norm; a bias on lm_head\)/,
    /partial_rotary_factor 0\.4 \(RoPE over 32 of 80 head dims\)/],
  "opt-125m": [/activation_function "relu" \(ReLU MLP/, /model_type "opt" \(a plain fc1 -> activation -> fc2 MLP; LayerNorm with bias; learned positional embeddings \(offset 2\) instead of RoPE\)/],
  "opt-350m": [/do_layer_norm_before false \(LayerNorm after each block instead of before\)/, /word_embed_proj_dim 512 \(project_in \/ project_out around the decoder\)/, /model_type "opt"/],
  "opt-1.3b": [/activation_function "relu"/, /model_type "opt"/],
  "pythia-160m": [/hidden_act "gelu" \(GELU MLP/, /rotary_pct 0\.25 \(RoPE over 16 of 64 head dims\)/, /use_parallel_residual true \(attention and MLP in parallel\)/,
    /model_type "gpt_neox" \(a plain fc1 -> activation -> fc2 MLP; LayerNorm with bias; a fused, head-interleaved query_key_value weight\)/],
  "pythia-410m": [/rotary_pct 0\.25/, /use_parallel_residual true/, /model_type "gpt_neox"/],
  "pythia-1b": [/rotary_pct 0\.25 \(RoPE over 64 of 256 head dims\)/, /model_type "gpt_neox"/],
};

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
  test(`${name}: runs natively, in a layout of the same parameter count`, () => {
    const cfg = parseConfig(read(name), `${name}/config.json`);
    const native = buildParamTable(cfg).reduce((s, p) => s + p.size, 0);
    assert.equal(native, counts.models[name].parameters);
    assert.deepEqual(nativeGaps(describeModel(read(name), "c")), []);
    if (name.startsWith("Llama")) assert.equal(cfg.ropeScaling?.type, "llama3");
  });
}

for (const [name, fragments] of Object.entries(REFUSED)) {
  test(`${name}: refused naming each field and value the native core cannot run yet`, () => {
    assert.throws(() => parseConfig(read(name), `${name}/config.json`), (e: Error) => {
      assert.match(e.message, new RegExp(`^${name.replace(/[.]/g, "\\.")}/config\\.json: \\w+ForCausalLM cannot run on the native core yet: `));
      for (const f of fragments) assert.match(e.message, f);
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
  assert.deepEqual([phi4.rope.otherScaling, phi4.rope.rotaryDim, phi4.head.tied, phi4.layers[0].window], ["longrope", 96, true, 262144]);
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

test("Gemma's sliding windows are no longer named as a gap; what still blocks Gemma is", () => {
  const gaps = (name: string) => nativeGaps(describeModel(read(name), "c")).flatMap((g) => g.needs);
  for (const name of ["gemma-2-2b", "gemma-3-1b-it"]) assert.ok(!gaps(name).some((n) => /sliding-window attention/.test(n)), name);
  assert.ok(gaps("gemma-3-1b-it").includes("its own RoPE base on the sliding-window layers"));
});
