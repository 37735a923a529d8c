// LoRA dropout and DoRA in the native core and in training: the dropout masks are a pure function of
// (seed, step, micro-batch, forward) — same seed identical, another seed / step / micro-batch different, resume
// exact — and act only in training forwards (eval, reference and decoding see the whole adapter); the member-wise
// path equals the fused LoRA path when nothing is dropped; DoRA trains from the base (c = m / ‖W‖ = 1), writes
// lora_magnitude_vector and use_dora, resumes exactly, and its merged model scores like the adapter.
// PEFT parity of DoRA itself is tests/parity/dora.test.ts; the op gradients are tests/gradcheck.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { NativeModel, setNumThreads } from "../../src/core/native.ts";
import type { LoraConfig, TokenBatch } from "../../src/core/types.ts";
import { loadWeightsInto, readModelDir, readWeightFiles } from "../../src/models/checkpoint.ts";
import { bf16ToF32, f32ToBf16 } from "../../src/models/dtype.ts";
import { ADAPTER_WEIGHTS_FILE, initLora, loadAdapter, readAdapterFolder, resolveTargetModules } from "../../src/models/peft.ts";
import { forEachTensorChunk, readHeader, readTensor } from "../../src/models/safetensors.ts";
import { train } from "../../src/train/loop.ts";
import { maxAbs, relErr } from "../helpers/compare.ts";
import { loraRuns, randomPairs } from "../helpers/tiny-model.ts";

const fixtures = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures");
setNumThreads(2);

function loaded(p: number, dora = false): { model: NativeModel; batch: TokenBatch; dlogps: Float32Array } {
  const dir = join(fixtures, "core", "llama-tiny");
  const model = new NativeModel(readModelDir(dir).config);
  loadWeightsInto(dir, model.table, model.params);
  const folder = join(fixtures, dora ? "dora" : "lora", "llama-tiny-adapter");
  const { adapter } = loadAdapter(folder, model);   // attached with lora_dropout 0: reattach with p
  const values = adapter.params.slice();
  const cfg: LoraConfig = { ...adapter.config, loraDropout: p };
  model.detachLora();
  model.attachLora(cfg).params.set(values);
  const h = readHeader(join(fixtures, "lora", "llama-tiny.safetensors"));
  const [B, T] = h.tensors.get("input_ids")!.shape;
  const batch = { ids: Int32Array.from(readTensor(h, "input_ids")), lengths: Int32Array.from(readTensor(h, "lengths")), B, T };
  const dlogps = Float32Array.from(readTensor(h, "loss_mask"), (m) => -m / 10);
  return { model, batch, dlogps };
}

/** One training forward + backward after setDropoutSeed(seed, step, micro): the logps and the adapter gradient. */
function step(model: NativeModel, batch: TokenBatch, dlogps: Float32Array, seed: number, stepNo: number, micro: number) {
  const a = model.lora!;
  a.setDropoutSeed(seed, stepNo, micro);
  a.zeroGrad();
  const logps = model.forward(batch, { train: true }).logps;
  model.backward(dlogps);
  return { logps, grads: a.grads.slice() };
}

for (const dora of [false, true]) {
  const kind = dora ? "DoRA" : "LoRA";
  test(`${kind} dropout: the same (seed, step, micro) draws the same masks; another seed, step, micro-batch or forward draws others`, () => {
    const { model, batch, dlogps } = loaded(0.3, dora);
    try {
      const a = step(model, batch, dlogps, 7, 3, 0), b = step(model, batch, dlogps, 7, 3, 0);
      assert.deepEqual(b.logps, a.logps, "same seed: identical log-probs");
      assert.deepEqual(b.grads, a.grads, "same seed: identical gradients");
      for (const [s, st, mi] of [[8, 3, 0], [7, 4, 0], [7, 3, 1]]) {
        const o = step(model, batch, dlogps, s, st, mi);
        assert.ok(maxAbs(o.logps, a.logps) > 1e-4, `(${s}, ${st}, ${mi}) vs (7, 3, 0): other masks`);
      }
      model.lora!.setDropoutSeed(7, 3, 0);
      model.forward(batch, { train: true });
      const second = model.forward(batch, { train: true }).logps;   // the 2nd training forward after the call
      assert.ok(maxAbs(second, a.logps) > 1e-4, "each training forward draws new masks");
    } finally {
      model.free();
    }
  });

  test(`${kind} dropout is off in eval forwards and decoding: they equal the same adapter without dropout`, () => {
    const drop = loaded(0.3, dora), plain = loaded(0, dora);
    try {
      const { batch } = drop;
      drop.model.lora!.setDropoutSeed(1, 1, 0);
      const e1 = drop.model.forward(batch, { train: false }).logps;
      const e0 = plain.model.forward(batch, { train: false }).logps;
      assert.deepEqual(e1, e0, "eval forward: no dropout");
      const t1 = drop.model.forward(batch, { train: true }).logps;
      assert.ok(maxAbs(t1, e0) > 1e-4, "a training forward does drop");
      const decodeLast = (m: NativeModel) => {
        const cache = m.kvCache(batch.B, batch.T);
        try {
          return m.decode(cache, Int32Array.from({ length: batch.B }, (_, i) => i), batch.ids, batch.lengths, batch.T);
        } finally {
          cache.free();
        }
      };
      assert.deepEqual(decodeLast(drop.model), decodeLast(plain.model), "decoding: no dropout");
      const ref = drop.model.withoutAdapters().forward(batch, { train: false }).logps;
      const baseModel = plain.model.withoutAdapters().forward(batch, { train: false }).logps;
      assert.deepEqual(ref, baseModel, "the adapters-off reference is the base");
    } finally {
      drop.model.free();
      plain.model.free();
    }
  });
}

test("LoRA dropout with a rate that drops nothing equals the fused LoRA path (forward and every gradient)", () => {
  // p = 2^-33 floors to a threshold of 0: every element is kept, scaled by 1 / (1 - p) ≈ 1 + 1e-10.
  const drop = loaded(2 ** -33), plain = loaded(0);
  try {
    const a = step(drop.model, drop.batch, drop.dlogps, 1, 1, 0);
    const b = step(plain.model, plain.batch, plain.dlogps, 1, 1, 0);
    assert.ok(maxAbs(a.logps, b.logps) <= 1e-6, `logps ${maxAbs(a.logps, b.logps)}`);
    for (const p of drop.model.lora!.table) {
      const err = relErr(a.grads.subarray(p.offset, p.offset + p.size), b.grads.subarray(p.offset, p.offset + p.size));
      assert.ok(err <= 1e-5, `${p.name}: ${err}`);
    }
  } finally {
    drop.model.free();
    plain.model.free();
  }
});

// ---- training runs ----------------------------------------------------------------------------------

const runs = loraRuns(9, { lora_dropout: 0.2, disable_dropout: false });
after(() => runs.cleanup());
const { model: tinyModel, cfg } = runs;
const losses = (r: { logHistory: Record<string, number>[] }) => r.logHistory.filter((e) => "loss" in e).map((e) => e.loss);

for (const dora of [false, true]) {
  const kind = dora ? "DoRA" : "LoRA";
  test(`${kind} with lora_dropout in DPO training: the same seed gives identical runs, no dropout a different one, and resume is bit-identical`, async () => {
    const rows = randomPairs(10, { vocab: 96, seed: 81 });
    const over = { max_steps: 4, gradient_accumulation_steps: 2, use_dora: dora };
    const a = await train(cfg({ ...over, save_strategy: "steps", save_steps: 2 }), { quiet: true, rows });
    const b = await train(cfg(over), { quiet: true, rows });
    assert.deepEqual(losses(b), losses(a), "same seed: the same losses");
    assert.deepEqual(readFileSync(join(b.outputDir, ADAPTER_WEIGHTS_FILE)), readFileSync(join(a.outputDir, ADAPTER_WEIGHTS_FILE)), "same seed: the same adapter");
    assert.ok(Math.abs(losses(a)[0] - Math.LN2) < 1e-12, `first loss ${losses(a)[0]}: a fresh ${kind} adapter is the base`);
    const still = await train(cfg({ ...over, disable_dropout: true }), { quiet: true, rows });
    assert.ok(losses(still).some((l, i) => Math.abs(l - losses(a)[i]) > 1e-9), "dropout changes the trajectory");
    assert.equal(losses(still)[0], losses(a)[0], "... but not the first loss (B = 0: the adapter term is 0 either way)");

    const r = cfg({ ...over, resume_from_checkpoint: true });
    mkdirSync(r.output_dir!, { recursive: true });
    cpSync(join(a.outputDir, "checkpoint-2"), join(r.output_dir!, "checkpoint-2"), { recursive: true });
    const resumed = await train(r, { quiet: true, rows });
    assert.deepEqual(losses(resumed).slice(-2), losses(a).slice(-2), "resumed steps 3-4: the same losses");
    assert.deepEqual(readFileSync(join(r.output_dir!, ADAPTER_WEIGHTS_FILE)), readFileSync(join(a.outputDir, ADAPTER_WEIGHTS_FILE)), "resumed adapter is bit-identical");
  });
}

test("DoRA training writes PEFT's DoRA adapter (use_dora, lora_magnitude_vector) and a merged model that scores like it", async () => {
  const rows = randomPairs(8, { vocab: 96, seed: 83 });
  const r = await train(cfg({ max_steps: 3, use_dora: true, lora_dropout: 0, merge_adapter: true }), { quiet: true, rows });
  const folder = readAdapterFolder(r.outputDir);
  assert.equal(folder.configJson.use_dora, true);
  const names = [...readHeader(join(r.outputDir, ADAPTER_WEIGHTS_FILE)).tensors.keys()];
  assert.equal(names.filter((n) => n.endsWith(".lora_magnitude_vector")).length, 2 * 7, "one magnitude per adapted projection");
  const base = new NativeModel(readModelDir(tinyModel).config);
  const merged = new NativeModel(readModelDir(join(r.outputDir, "merged")).config);
  try {
    loadWeightsInto(tinyModel, base.table, base.params);
    loadWeightsInto(join(r.outputDir, "merged"), merged.table, merged.params);
    const { adapter } = loadAdapter(r.outputDir, base);
    const mags = adapter.table.filter((p) => p.name.endsWith(".lora_magnitude_vector"));
    const fresh = new NativeModel(readModelDir(tinyModel).config);
    loadWeightsInto(tinyModel, fresh.table, fresh.params);
    const init = fresh.attachLora({ ...adapter.config });
    initLora(init, 1);
    assert.ok(mags.some((p) => maxAbs(adapter.param(p.name), init.param(p.name)) > 1e-6), "the magnitudes trained away from ‖W‖");
    fresh.free();
    const ids = new Int32Array(2 * 12), lengths = Int32Array.from([12, 9]);
    rows.slice(0, 2).forEach((row, b) => [...row.prompt_ids, ...row.chosen_ids].slice(0, 12).forEach((t, i) => { ids[b * 12 + i] = t; }));
    const batch = { ids, lengths, B: 2, T: 12 };
    const d = maxAbs(merged.forward(batch, { train: false }).logps, base.forward(batch, { train: false }).logps);
    assert.ok(d <= 1e-5, `merged DoRA vs adapter: ${d}`);
    console.log(`# merged DoRA model vs the adapter: logps max abs diff ${d.toExponential(2)}`);
  } finally {
    base.free();
    merged.free();
  }
});

test("DoRA init: every lora_magnitude_vector is ‖W‖ per output row, so the fresh adapter is the base exactly", () => {
  const dir = join(fixtures, "core", "qwen2-tiny");
  const model = new NativeModel(readModelDir(dir).config);
  try {
    loadWeightsInto(dir, model.table, model.params);
    const a = model.attachLora({ r: 4, loraAlpha: 8, useRslora: false, targetModules: resolveTargetModules(["q_proj", "down_proj"]), loraDropout: 0, useDora: true });
    initLora(a, 3);
    const W = model.param("model.layers.1.mlp.down_proj.weight"), m = a.param("base_model.model.model.layers.1.mlp.down_proj.lora_magnitude_vector");
    const cols = model.info("model.layers.1.mlp.down_proj.weight").shape[1];
    m.forEach((v, o) => {
      const row = W.subarray(o * cols, (o + 1) * cols);
      assert.ok(Math.abs(v - Math.hypot(...row)) <= 1e-6 * v, `row ${o}: ${v} vs ${Math.hypot(...row)}`);
    });
    const h = readHeader(join(fixtures, "lora", "qwen2-tiny.safetensors"));
    const [B, T] = h.tensors.get("input_ids")!.shape;
    const batch = { ids: Int32Array.from(readTensor(h, "input_ids")), lengths: Int32Array.from(readTensor(h, "lengths")), B, T };
    assert.deepEqual(model.forward(batch, { train: false }).logps, model.forward(batch, { train: false, adapters: false }).logps);
  } finally {
    model.free();
  }
});

test("DoRA with dropout on a bf16-held base equals the fp32 model of its rounded weights: forward, every gradient, merge", () => {
  for (const name of ["llama-tiny", "qwen2-tiny"]) {
    const dir = join(fixtures, "core", name);
    const config = readModelDir(dir).config;
    const held = new NativeModel(config, { baseDtype: "bf16" }), wide = new NativeModel(config);
    try {
      const files = readWeightFiles(dir);
      for (const p of held.table) {
        forEachTensorChunk(files.tensors.get(p.name)!, p.name, (values, start) => {
          const bits = f32ToBf16(values);
          held.paramsBf16.set(bits, p.offset + start);
          wide.params.set(bf16ToF32(bits), p.offset + start);
        });
      }
      const folder = join(fixtures, "dora", `${name}-adapter`);
      const la = loadAdapter(folder, held).adapter;
      loadAdapter(folder, wide);
      const values = la.params.slice(), cfgD = { ...la.config, loraDropout: 0.25 };
      held.detachLora(); wide.detachLora();
      const da = held.attachLora(cfgD), db = wide.attachLora(cfgD);
      da.params.set(values); db.params.set(values);
      const h = readHeader(join(dir, "fixture.safetensors"));
      const [B, T] = h.tensors.get("input_ids")!.shape;
      const batch = { ids: Int32Array.from(readTensor(h, "input_ids")), lengths: Int32Array.from(readTensor(h, "lengths")), B, T };
      const dlogps = Float32Array.from(readTensor(h, "loss_mask"), (m) => -m / 10);
      da.setDropoutSeed(5, 1, 0); db.setDropoutSeed(5, 1, 0);
      const a = held.forward(batch, { train: true }).logps, b = wide.forward(batch, { train: true }).logps;
      assert.ok(maxAbs(a, b) <= 1e-5, `${name}: logps max abs diff ${maxAbs(a, b)}`);
      da.zeroGrad(); db.zeroGrad();
      held.backward(dlogps); wide.backward(dlogps);
      for (const p of da.table) {
        const err = relErr(da.grad(p.name), db.grad(p.name));
        assert.ok(err <= 1e-4, `${name} ${p.name}: relative error ${err}`);
      }
      held.mergeLora(); wide.mergeLora();
      const ma = held.forward(batch, { train: false }).logps, mb = wide.forward(batch, { train: false }).logps;
      assert.ok(maxAbs(ma, mb) <= 1e-2, `${name}: merged (bf16 re-rounded) logps max abs diff ${maxAbs(ma, mb)}`);
    } finally {
      held.free();
      wide.free();
    }
  }
});
