// PEFT adapter files and LoRA plumbing: adapter_config.json and adapter_model.safetensors exactly as PEFT's
// save_pretrained writes them (checked against the file Python's json.dumps wrote in tests/fixtures/lora),
// PEFT's initialisation, the load round trip and its refusals, merging (merged model = adapter model), the
// native core's refusals (dropout, training with adapters off, use after detach), and training with use_peft:
// config keys, the adapter as output and checkpoint, exact resume, the adapters-off reference.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { NativeModel, setNumThreads } from "../../src/core/native.ts";
import type { LoraConfig, TokenBatch } from "../../src/core/types.ts";
import { loadWeightsInto, readModelDir } from "../../src/models/checkpoint.ts";
import {
  ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, initLora, loadAdapter, pythonJson, readAdapterFolder, resolveTargetModules, saveAdapter, saveMergedModel,
} from "../../src/models/peft.ts";
import { readHeader, readTensor, writeSafetensors } from "../../src/models/safetensors.ts";
import { effectiveLoraDropout, resolveConfig } from "../../src/train/config.ts";
import { train } from "../../src/train/loop.ts";
import { loraRuns, randomPairs, scratch } from "../helpers/tiny-model.ts";
import { maxAbs } from "../helpers/compare.ts";

const fixtures = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures");
const coreDir = (m: string) => join(fixtures, "core", m);
const adapterDir = (m: string) => join(fixtures, "lora", `${m}-adapter`);
const ALL: LoraConfig = { r: 4, loraAlpha: 8, useRslora: false, targetModules: resolveTargetModules("all-linear"), loraDropout: 0 };

setNumThreads(2);

function load(name: string): NativeModel {
  const model = new NativeModel(readModelDir(coreDir(name)).config);
  loadWeightsInto(coreDir(name), model.table, model.params);
  return model;
}
function fixtureBatch(name: string): TokenBatch {
  const h = readHeader(join(fixtures, "lora", `${name}.safetensors`));
  const [B, T] = h.tensors.get("input_ids")!.shape;
  return { ids: Int32Array.from(readTensor(h, "input_ids")), lengths: Int32Array.from(readTensor(h, "lengths")), B, T };
}

test("target modules: PEFT's Llama default, all-linear, lists; unknown names refused with the fix", () => {
  assert.deepEqual(resolveTargetModules(null), ["q_proj", "v_proj"]);
  assert.deepEqual(resolveTargetModules("all-linear"), ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]);
  assert.deepEqual(resolveTargetModules(["down_proj", "q_proj"]), ["q_proj", "down_proj"]);
  assert.deepEqual(resolveTargetModules("o_proj"), ["o_proj"]);
  assert.throws(() => resolveTargetModules(["q_proj", "lm_head"]), /"lm_head" is not a LoRA target of LlamaForCausalLM \(adapters on the embeddings or the head are not supported\); use names from q_proj/);
  assert.throws(() => resolveTargetModules([]), /non-empty list/);
});

test("saved adapter_config.json is byte-identical to Python's json.dumps(indent=2, sort_keys=True) of PEFT's keys", () => {
  const tmp = scratch();
  const model = load("llama-tiny");
  try {
    const adapter = model.attachLora(ALL);
    initLora(adapter, 1);
    saveAdapter(join(tmp.dir, "a"), adapter, { baseModelNameOrPath: "tests/fixtures/core/llama-tiny" });
    const ours = readFileSync(join(tmp.dir, "a", ADAPTER_CONFIG_FILE), "utf8");
    assert.equal(ours, readFileSync(join(adapterDir("llama-tiny"), ADAPTER_CONFIG_FILE), "utf8"));
    const j = JSON.parse(ours);
    assert.deepEqual(Object.keys(j), Object.keys(j).sort(), "sorted keys");
    assert.deepEqual(Object.keys(j), [
      "alpha_pattern", "auto_mapping", "base_model_name_or_path", "bias", "exclude_modules", "fan_in_fan_out", "inference_mode",
      "init_lora_weights", "layer_replication", "layers_pattern", "layers_to_transform", "loftq_config", "lora_alpha", "lora_bias",
      "lora_dropout", "megatron_config", "megatron_core", "modules_to_save", "peft_type", "r", "rank_pattern", "revision",
      "target_modules", "target_parameters", "task_type", "trainable_token_indices", "use_dora", "use_rslora",
    ]);
    assert.equal(j.peft_type, "LORA");
    assert.equal(j.task_type, "CAUSAL_LM");
    assert.equal(j.inference_mode, true);
    assert.equal(j.r, 4);
    assert.equal(j.lora_alpha, 8);
    assert.match(ours, /"lora_dropout": 0\.0,/, "a float key keeps its decimal point, as Python writes it");
    assert.equal(pythonJson({ b: "é", a: [] }), '{\n  "a": [],\n  "b": "\\u00e9"\n}', "ensure_ascii and empty containers as Python");
  } finally {
    model.free();
    tmp.cleanup();
  }
});

test("adapter_model.safetensors: PEFT names (base_model.model., no adapter name), [r, in] / [out, r] shapes, format pt", () => {
  const tmp = scratch();
  const model = load("llama-tiny");
  try {
    const cfg = model.config;
    const adapter = model.attachLora(ALL);
    initLora(adapter, 1);
    saveAdapter(join(tmp.dir, "a"), adapter, { baseModelNameOrPath: coreDir("llama-tiny") });
    const h = readHeader(join(tmp.dir, "a", ADAPTER_WEIGHTS_FILE));
    assert.deepEqual(h.metadata, { format: "pt" });
    const q = cfg.numHeads * cfg.headDim, kv = cfg.numKvHeads * cfg.headDim, C = cfg.hiddenSize, I = cfg.intermediateSize;
    const io: Record<string, [string, number, number]> = {
      q_proj: ["self_attn", C, q], k_proj: ["self_attn", C, kv], v_proj: ["self_attn", C, kv], o_proj: ["self_attn", q, C],
      gate_proj: ["mlp", C, I], up_proj: ["mlp", C, I], down_proj: ["mlp", I, C],
    };
    const want = new Map<string, number[]>();
    for (let l = 0; l < cfg.numLayers; l++) {
      for (const [t, [parent, inF, outF]] of Object.entries(io)) {
        want.set(`base_model.model.model.layers.${l}.${parent}.${t}.lora_A.weight`, [4, inF]);
        want.set(`base_model.model.model.layers.${l}.${parent}.${t}.lora_B.weight`, [outF, 4]);
      }
    }
    assert.deepEqual(new Map([...h.tensors].map(([n, t]) => [n, t.shape])), want);
    assert.deepEqual([...h.tensors.keys()], [...h.tensors.keys()].sort(), "stored in name order, as safetensors' save_file");
    assert.ok([...h.tensors.values()].every((t) => t.dtype === "F32"));
    const py = readHeader(join(adapterDir("llama-tiny"), ADAPTER_WEIGHTS_FILE));
    assert.deepEqual(new Map([...py.tensors].map(([n, t]) => [n, t.shape])), want, "same names and shapes as the PyTorch-written adapter");
  } finally {
    model.free();
    tmp.cleanup();
  }
});

test("PEFT init: B = 0 (adapted model == base, bit for bit), A ~ U(±1/√in), seeded", () => {
  const model = load("llama-tiny");
  try {
    const batch = fixtureBatch("llama-tiny");
    const base = model.forward(batch, { train: false }).logps;
    const adapter = model.attachLora(ALL);
    initLora(adapter, 7);
    const first = adapter.params.slice();
    initLora(adapter, 7);
    assert.deepEqual(adapter.params, first, "same seed, same values");
    for (const p of adapter.table) {
      const v = adapter.param(p.name);
      if (p.name.endsWith("lora_B.weight")) assert.ok(v.every((x) => x === 0), `${p.name} is zero`);
      else {
        const bound = 1 / Math.sqrt(p.shape[1]);
        assert.ok(v.every((x) => Math.abs(x) <= bound), `${p.name} within ±${bound}`);
        assert.ok(Math.max(...v.map(Math.abs)) > 0.9 * bound, `${p.name} spans its range`);
      }
    }
    assert.deepEqual(model.forward(batch, { train: false }).logps, base);
  } finally {
    model.free();
  }
});

test("load round trip: saved → loaded gives the same tensors and the same forward", () => {
  const tmp = scratch();
  const a = load("qwen2-tiny"), b = load("qwen2-tiny");
  try {
    const batch = fixtureBatch("qwen2-tiny");
    const { adapter: src, folder } = loadAdapter(adapterDir("qwen2-tiny"), a);
    assert.deepEqual(folder.config, { r: 4, loraAlpha: 8, useRslora: true, targetModules: ["q_proj", "v_proj", "up_proj", "down_proj"], loraDropout: 0, useDora: false });
    saveAdapter(join(tmp.dir, "rt"), src, { baseModelNameOrPath: null });
    const { adapter: dst } = loadAdapter(join(tmp.dir, "rt"), b);
    for (const p of src.table) assert.deepEqual(dst.param(p.name), src.param(p.name), p.name);
    assert.equal(dst.scaling, 8 / 2, "rsLoRA: lora_alpha / √r");
    assert.deepEqual(b.forward(batch, { train: false }).logps, a.forward(batch, { train: false }).logps);
  } finally {
    a.free();
    b.free();
    tmp.cleanup();
  }
});

test("loading refuses mismatched or unsupported adapters with a message naming the file and the fix", () => {
  const tmp = scratch();
  const model = load("llama-tiny");
  const copy = (name: string) => {
    const d = join(tmp.dir, name);
    cpSync(adapterDir("llama-tiny"), d, { recursive: true });
    return d;
  };
  const edit = (d: string, over: Record<string, unknown>) => {
    const f = join(d, ADAPTER_CONFIG_FILE);
    writeFileSync(f, JSON.stringify({ ...JSON.parse(readFileSync(f, "utf8")), ...over }));
  };
  try {
    assert.throws(() => loadAdapter(tmp.dir, model), /no adapter_config\.json; is this a PEFT adapter folder/);
    const dora = copy("dora");
    edit(dora, { use_dora: true });
    assert.throws(() => loadAdapter(dora, model), /missing tensor base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_magnitude_vector, expected shape \[64\]/);
    edit(dora, { use_dora: "yes" });
    assert.throws(() => loadAdapter(dora, model), /use_dora must be true or false/);
    const lie = copy("lie");
    edit(lie, { target_modules: ["q_proj", "v_proj"] });
    assert.throws(() => loadAdapter(lie, model), /lists target_modules \[q_proj, v_proj\] but adapter_model\.safetensors holds adapters for \[down_proj, gate_proj/);
    const rank = copy("rank");
    edit(rank, { r: 8 });
    assert.throws(() => loadAdapter(rank, model), /expected shape \[8, 64\], found \[4, 64\]/);
    assert.equal(model.lora, null, "a failed load leaves no adapter attached");
    const extra = copy("extra");
    const h = readHeader(join(extra, ADAPTER_WEIGHTS_FILE));
    const tensors = [...h.tensors.keys()].map((n) => ({ name: n, dtype: "F32" as const, shape: h.tensors.get(n)!.shape, data: readTensor(h, n) }));
    tensors.push({ name: "base_model.model.lm_head.lora_A.weight", dtype: "F32", shape: [4, 64], data: new Float32Array(256) });
    writeSafetensors(join(extra, ADAPTER_WEIGHTS_FILE), tensors, { format: "pt" });
    assert.throws(() => readAdapterFolder(extra), /unexpected tensor base_model\.model\.lm_head\.lora_A\.weight \(adapters on embeddings or the head are not supported\)/);
    // An adapter for another model: llama-tiny's adapter on qwen3-tiny (head_dim 32: q_proj is 128 wide).
    const other = load("qwen3-tiny");
    try {
      assert.throws(() => loadAdapter(adapterDir("llama-tiny"), other), /q_proj\.lora_B\.weight: expected shape \[128, 4\], found \[64, 4\]/);
    } finally {
      other.free();
    }
  } finally {
    model.free();
    tmp.cleanup();
  }
});

for (const name of ["llama-tiny", "qwen3-tiny"]) {
  test(`${name}: the merged model (W += s·B·A) equals the model with its adapter`, () => {
    const tmp = scratch();
    const model = load(name);
    try {
      const batch = fixtureBatch(name);
      loadAdapter(adapterDir(name), model);
      const withAdapter = model.forward(batch, { train: false }).logps;
      saveMergedModel(join(tmp.dir, "merged"), model, readModelDir(coreDir(name)).configJson);
      assert.equal(model.lora, null, "merging detaches the adapter");
      const merged = new NativeModel(readModelDir(join(tmp.dir, "merged")).config);
      try {
        loadWeightsInto(join(tmp.dir, "merged"), merged.table, merged.params);
        const d = maxAbs(merged.forward(batch, { train: false }).logps, withAdapter);
        assert.ok(d <= 1e-5, `merged vs adapter logps: max abs diff ${d}`);
        assert.ok(maxAbs(withAdapter, readTensor(readHeader(join(fixtures, "lora", `${name}.safetensors`)), "logps_base")) > 1e-3, "the adapter mattered");
      } finally {
        merged.free();
      }
    } finally {
      model.free();
      tmp.cleanup();
    }
  });
}

test("native refusals: lora_dropout outside [0, 1), a second adapter, training with adapters off, a detached adapter", () => {
  const model = load("llama-tiny");
  try {
    assert.throws(() => model.attachLora({ ...ALL, loraDropout: 1 }), /lora_dropout must be in \[0, 1\), got 1/);
    assert.throws(() => model.attachLora({ ...ALL, loraDropout: -0.1 }), /lora_dropout must be in \[0, 1\)/);
    const adapter = model.attachLora(ALL);
    assert.throws(() => model.attachLora(ALL), /already attached/);
    const batch = fixtureBatch("llama-tiny");
    assert.throws(() => model.forward(batch, { train: true, adapters: false }), /trains nothing: the base weights are frozen/);
    model.detachLora();
    assert.throws(() => adapter.gradNorm(), /LoRA adapter used after it was detached/);
    model.forward(batch, { train: true });
    model.backward(new Float32Array(batch.B * batch.T).fill(-0.01));
    assert.ok(model.gradNorm() > 0, "after detaching, the base trains again");
  } finally {
    model.free();
  }
});

// ---- training with use_peft --------------------------------------------------------------------------

const runs = loraRuns(5);
after(() => runs.cleanup());
const { model: tinyModel, cfg } = runs;

test("config: TRL's LoRA keys and defaults; lora_dropout acts where TRL lets it (sft, or disable_dropout: false) and is noted where TRL zeroes it", () => {
  const base = { method: "dpo", model_name_or_path: "m", dataset: "d", output_dir: "o" };
  const d = resolveConfig({ ...base, use_peft: true }).config;
  assert.deepEqual([d.lora_r, d.lora_alpha, d.lora_dropout, d.lora_target_modules, d.use_rslora, d.merge_adapter], [16, 32, 0.05, null, false, false]);
  const withDropout = resolveConfig({ ...base, use_peft: true, lora_dropout: 0.05 });
  assert.ok(withDropout.notes.some((n) => /^lora_dropout: 0\.05 has no effect: disable_dropout is true \(TRL's default for dpo\).*set disable_dropout: false/.test(n)), withDropout.notes.join("\n"));
  assert.equal(effectiveLoraDropout(withDropout.config), 0);
  const acting = resolveConfig({ ...base, use_peft: true, lora_dropout: 0.05, disable_dropout: false });
  assert.equal(effectiveLoraDropout(acting.config), 0.05);
  assert.ok(!acting.notes.some((n) => /^(lora_dropout|disable_dropout)/.test(n)), acting.notes.join("\n"));
  const sft = resolveConfig({ ...base, method: "sft", use_peft: true, lora_dropout: 0.1 });
  assert.equal(effectiveLoraDropout(sft.config), 0.1, "SFTConfig has no disable_dropout: PEFT's dropout acts");
  assert.ok(!sft.notes.some((n) => n.startsWith("lora_dropout")));
  assert.ok(!resolveConfig({ ...base, use_peft: true, lora_dropout: 0 }).notes.some((n) => n.startsWith("lora_dropout")));
  assert.ok(resolveConfig({ ...base, disable_dropout: false }).notes.some((n) => /^disable_dropout: false changes nothing here/.test(n)));
  assert.throws(() => resolveConfig({ ...base, use_peft: true, lora_dropout: 1 }), /lora_dropout: must be < 1/);
  assert.throws(() => resolveConfig({ ...base, use_peft: true, lora_target_modules: ["q_proj", "lm_head"] }), /lora_target_modules: .*"lm_head" is not a LoRA target of any supported model/);
  // a module of another family passes the config check; the model decides (resolveTargetModules with its config)
  assert.deepEqual(resolveConfig({ ...base, use_peft: true, lora_target_modules: ["query_key_value"] }).config.lora_target_modules, "query_key_value");
  assert.throws(() => resolveConfig({ ...base, merge_adapter: true }), /merge_adapter: true needs use_peft: true/);
  assert.equal(resolveConfig({ ...base, use_peft: true, use_dora: true }).config.use_dora, true);
  const { notes } = resolveConfig({ ...base, lora_r: 8, lora_dropout: 0.05 });
  assert.ok(notes.some((n) => /^lora_r, lora_dropout: no effect because use_peft is false/.test(n)), notes.join("\n"));
});

test("DPO with use_peft: starts at ln 2 (reference = adapters off), trains only the adapter, writes a PEFT folder and the merged model", async () => {
  const rows = randomPairs(8, { vocab: 96, seed: 71 });
  const baseBytes = readFileSync(join(tinyModel, "model.safetensors"));
  const r = await train(cfg({ max_steps: 3, merge_adapter: true }), { quiet: true, rows });
  assert.ok(Math.abs(r.logHistory[0].loss - Math.LN2) < 1e-12, `first loss ${r.logHistory[0].loss}: the fresh adapter (B = 0) equals the reference`);
  assert.ok(r.logHistory[2].loss < r.logHistory[0].loss, "the adapter learns");
  for (const f of [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, "README.md"]) assert.ok(existsSync(join(r.outputDir, f)), f);
  assert.ok(!existsSync(join(r.outputDir, "model.safetensors")), "no full model in output_dir under LoRA");
  assert.match(readFileSync(join(r.outputDir, "README.md"), "utf8"), /library_name: peft/);
  assert.deepEqual(readFileSync(join(tinyModel, "model.safetensors")), baseBytes, "the base model is untouched");
  const folder = readAdapterFolder(r.outputDir);
  assert.equal(folder.baseModelNameOrPath, tinyModel);
  assert.deepEqual(folder.config.targetModules, resolveTargetModules("all-linear"));

  // The saved adapter on the base == output_dir/merged, on the training rows.
  const base = new NativeModel(readModelDir(tinyModel).config);
  const merged = new NativeModel(readModelDir(join(r.outputDir, "merged")).config);
  try {
    loadWeightsInto(tinyModel, base.table, base.params);
    loadWeightsInto(join(r.outputDir, "merged"), merged.table, merged.params);
    const { adapter } = loadAdapter(r.outputDir, base);
    assert.ok(adapter.table.some((p) => p.name.endsWith("lora_B.weight") && adapter.param(p.name).some((x) => x !== 0)), "B moved off zero");
    const ids = new Int32Array(2 * 12), lengths = Int32Array.from([12, 9]);
    rows.slice(0, 2).forEach((row, b) => [...row.prompt_ids, ...row.chosen_ids].slice(0, 12).forEach((t, i) => { ids[b * 12 + i] = t; }));
    const batch = { ids, lengths, B: 2, T: 12 };
    const d = maxAbs(merged.forward(batch, { train: false }).logps, base.forward(batch, { train: false }).logps);
    assert.ok(d <= 1e-5, `merged vs adapter: ${d}`);
    assert.ok(existsSync(join(r.outputDir, "merged", "config.json")));
  } finally {
    base.free();
    merged.free();
  }
});

test("use_peft: checkpoints hold the adapter and its AdamW state; resume is exact; precomputed reference = live", async () => {
  const rows = randomPairs(10, { vocab: 96, seed: 72 });
  const over = { max_steps: 5, save_strategy: "steps", save_steps: 2, gradient_accumulation_steps: 2 };
  const a = await train(cfg(over), { quiet: true, rows });
  const ck = join(a.outputDir, "checkpoint-2");
  for (const f of [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, "optimizer.safetensors", "trainer_state.json"]) assert.ok(existsSync(join(ck, f)), f);
  assert.ok(!existsSync(join(ck, "model.safetensors")));
  const opt = readHeader(join(ck, "optimizer.safetensors"));
  assert.ok([...opt.tensors.keys()].every((n) => /^base_model\.model\..*\.lora_[AB]\.weight\.exp_avg(_sq)?$/.test(n)), "optimizer state is the adapter's only");

  const b = cfg({ ...over, resume_from_checkpoint: true });
  mkdirSync(b.output_dir!, { recursive: true });
  cpSync(ck, join(b.output_dir!, "checkpoint-2"), { recursive: true });
  await train(b, { quiet: true, rows });
  assert.deepEqual(readFileSync(join(b.output_dir!, ADAPTER_WEIGHTS_FILE)), readFileSync(join(a.outputDir, ADAPTER_WEIGHTS_FILE)), "resumed adapter is bit-identical");

  await assert.rejects(train(cfg({ ...over, use_peft: false, resume_from_checkpoint: ck }), { quiet: true, rows }), /holds a LoRA adapter \(written with use_peft: true\); resume it with use_peft: true/);
  await assert.rejects(train(cfg({ ...over, lora_r: 2, resume_from_checkpoint: ck }), { quiet: true, rows }), /its adapter has r 4, .* this run has r 2, .*resume with the checkpoint's LoRA settings/);

  const pre = await train(cfg({ ...over, precompute_ref_log_probs: true }), { quiet: true, rows });
  assert.ok(existsSync(join(pre.outputDir, "ref_logps.safetensors")));
  const losses = (r: typeof a) => r.logHistory.filter((e) => "loss" in e).map((e) => e.loss);
  losses(pre).forEach((l, i) => assert.ok(Math.abs(l - losses(a)[i]) <= 1e-6 * Math.abs(losses(a)[i]), `step ${i + 1}: precomputed ${l} vs live ${losses(a)[i]}`));
});
