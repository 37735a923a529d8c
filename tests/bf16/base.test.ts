// A frozen base held in bf16 only (NativeModel baseDtype "bf16", PT_MODEL_BF16_BASE) against an fp32 model holding
// the same bf16-rounded weights: forward, LoRA training, decoding and merging agree (fp32 math over widened
// weights gives the same products up to summation order); bf16 compute on it stays within bf16 tolerance; and
// what a frozen base refuses. The weights are streamed tensor by tensor into the bf16 buffer, never as a whole
// fp32 copy (the loader's job in src/models; a local one here).
import { test } from "node:test";
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { AdamW, NativeModel, bf16Support, setNumThreads } from "../../src/core/native.ts";
import type { NativeModelOptions } from "../../src/core/native.ts";
import { readModelDir, readWeightFiles } from "../../src/models/checkpoint.ts";
import { bf16ToF32, f32ToBf16 } from "../../src/models/dtype.ts";
import { randomInit } from "../../src/models/params.ts";
import { initLora, loadAdapter } from "../../src/models/peft.ts";
import { forEachTensorChunk, readHeader, readTensor } from "../../src/models/safetensors.ts";
import { maxAbs, relErr } from "../helpers/compare.ts";

const fixtures = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures");
const noBf16 = bf16Support().available ? false : `no bf16 compute on this machine (${bf16Support().cpu})`;

/** Every table tensor rounded to bf16, chunk by chunk, into `write(name, start, bits)`. */
function streamBf16(dir: string, model: NativeModel, write: (offset: number, bits: Uint16Array) => void): void {
  const files = readWeightFiles(dir);
  for (const p of model.table) {
    forEachTensorChunk(files.tensors.get(p.name)!, p.name, (values, start) => write(p.offset + start, f32ToBf16(values)));
  }
}

/** The tiny checkpoint with bf16-rounded weights: held in bf16 (base "bf16") or widened into an fp32 model. */
function load(name: string, base: "bf16" | "fp32", opts: NativeModelOptions = {}): NativeModel {
  const dir = join(fixtures, "core", name);
  const model = new NativeModel(readModelDir(dir).config, { ...opts, baseDtype: base });
  if (base === "bf16") streamBf16(dir, model, (o, bits) => model.paramsBf16.set(bits, o));
  else streamBf16(dir, model, (o, bits) => model.params.set(bf16ToF32(bits), o));
  return model;
}

function batchOf(name: string) {
  const fx = readHeader(join(fixtures, "core", name, "fixture.safetensors"));
  const get = (k: string) => readTensor(fx, k);
  const [B, T] = fx.tensors.get("input_ids")!.shape;
  const mask = get("loss_mask");
  let n = 0;
  for (const m of mask) n += m;
  return { batch: { ids: Int32Array.from(get("input_ids")), lengths: Int32Array.from(get("lengths")), B, T }, dlogps: mask.map((m) => -m / n) };
}

setNumThreads(2);

for (const name of ["llama-tiny", "qwen2-tiny", "qwen3-tiny"]) {
  test(`${name}: a bf16-held base gives the fp32 results of its rounded weights, LoRA gradients included`, (t) => {
    const { batch, dlogps } = batchOf(name);
    const adapterDir = join(fixtures, "lora", `${name}-adapter`);
    const held = load(name, "bf16"), wide = load(name, "fp32");
    try {
      assert.equal(held.baseDtype, "bf16");
      const a = held.forward(batch, { train: false }), b = wide.forward(batch, { train: false });
      assert.ok(maxAbs(a.logps, b.logps) <= 1e-5, `logps max abs diff ${maxAbs(a.logps, b.logps)}`);
      const la = loadAdapter(adapterDir, held).adapter, lb = loadAdapter(adapterDir, wide).adapter;
      const sa = held.forward(batch, { train: true }), sb = wide.forward(batch, { train: true });
      la.zeroGrad(); lb.zeroGrad();
      held.backward(dlogps); wide.backward(dlogps);
      let worst = 0;
      for (const p of la.table) {
        const err = relErr(la.grad(p.name), lb.grad(p.name));
        assert.ok(err <= 1e-4, `adapter grad ${p.name}: relative error ${err}`);
        worst = Math.max(worst, err);
      }
      t.diagnostic(`${name}: logps max abs diff ${maxAbs(sa.logps, sb.logps).toExponential(2)} (adapters on); worst adapter gradient relative error ${worst.toExponential(2)}`);
    } finally {
      held.free();
      wide.free();
    }
  });
}

test("a vocabulary of several widened head blocks (V = 5000 > 2048 rows a block) gives the fp32 results", () => {
  const config = { ...readModelDir(join(fixtures, "core", "llama-tiny")).config, vocabSize: 5000 };
  const wide = new NativeModel(config), held = new NativeModel(config, { baseDtype: "bf16" });
  try {
    randomInit(wide.table, wide.params, 7);
    const bits = f32ToBf16(wide.params);
    wide.params.set(bf16ToF32(bits));
    held.paramsBf16.set(bits);
    const B = 3, T = 40;
    const batch = { ids: Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % 5000), lengths: Int32Array.of(40, 33, 12), B, T };
    const dlogps = new Float32Array(B * T).fill(-0.01);
    const cfg = { r: 4, loraAlpha: 8, useRslora: false, targetModules: ["q_proj", "down_proj"] as const, loraDropout: 0 };
    const la = held.attachLora({ ...cfg, targetModules: [...cfg.targetModules] }), lb = wide.attachLora({ ...cfg, targetModules: [...cfg.targetModules] });
    initLora(la, 3);
    initLora(lb, 3);
    la.params.fill(0.01, la.info(la.table[1].name).offset);  // non-zero B: the adapters change the model
    lb.params.fill(0.01, lb.info(lb.table[1].name).offset);
    const a = held.forward(batch, { train: true }), b = wide.forward(batch, { train: true });
    assert.ok(maxAbs(a.logps, b.logps) <= 1e-5, `logps max abs diff ${maxAbs(a.logps, b.logps)}`);
    la.zeroGrad(); lb.zeroGrad();
    held.backward(dlogps); wide.backward(dlogps);
    assert.ok(relErr(la.grads, lb.grads) <= 1e-5, `adapter gradients relative error ${relErr(la.grads, lb.grads)}`);
  } finally {
    held.free();
    wide.free();
  }
});

test("decoding a bf16-held base (few rows read bf16 directly, a long prefill widened) equals the fp32 model", () => {
  for (const name of ["llama-tiny", "qwen2-tiny"]) {
    const held = load(name, "bf16"), wide = load(name, "fp32");
    try {
      const V = held.config.vocabSize;
      const T = 20, rows = 10;  // a 10-row prefill takes the widened path; one-token steps the direct one
      const ids = Int32Array.from({ length: rows * T }, (_, i) => (i * 37 + 11) % V);
      const lengths = Int32Array.from({ length: rows }, (_, i) => 5 + i);
      const rowIds = Int32Array.from({ length: rows }, (_, i) => i);
      const ca = held.kvCache(rows, 32), cb = wide.kvCache(rows, 32);
      try {
        const pa = held.decode(ca, rowIds, ids, lengths, T), pb = wide.decode(cb, rowIds, ids, lengths, T);
        assert.ok(maxAbs(pa, pb) <= 1e-4, `${name} prefill logits max abs diff ${maxAbs(pa, pb)}`);
        const step = Int32Array.from([3, 4]), one = Int32Array.from([1, 1]), two = Int32Array.from([0, 7]);
        const sa = held.decode(ca, two, step, one, 1), sb = wide.decode(cb, two, step, one, 1);
        assert.ok(maxAbs(sa, sb) <= 1e-4, `${name} step logits max abs diff ${maxAbs(sa, sb)}`);
      } finally {
        ca.free();
        cb.free();
      }
    } finally {
      held.free();
      wide.free();
    }
  }
});

test("merging a LoRA adapter into a bf16-held base rounds the fp32 merge to bf16", () => {
  const name = "qwen3-tiny";
  const adapterDir = join(fixtures, "lora", `${name}-adapter`);
  const held = load(name, "bf16"), wide = load(name, "fp32");
  try {
    loadAdapter(adapterDir, held);
    loadAdapter(adapterDir, wide);
    held.mergeLora();
    wide.mergeLora();
    assert.equal(held.lora, null);
    const rounded = f32ToBf16(wide.params);
    let differ = 0;
    for (const p of held.table) {
      const a = held.paramBf16(p.name), b = rounded.subarray(p.offset, p.offset + p.size);
      for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && Math.abs(bf16ToF32(a.subarray(i, i + 1))[0] - bf16ToF32(b.subarray(i, i + 1))[0]) > 0) differ++;
    }
    // The same fp32 merge up to summation order: a handful of values may round to the neighbouring bf16.
    assert.ok(differ <= 1e-3 * held.paramsBf16.length, `${differ} merged values differ from the rounded fp32 merge`);
  } finally {
    held.free();
    wide.free();
  }
});

test("bf16 compute on a bf16-held base stays within bf16 tolerance of fp32", { skip: noBf16 }, () => {
  const name = "llama-tiny";
  const { batch } = batchOf(name);
  const held = load(name, "bf16", { compute: "bf16" }), wide = load(name, "fp32");
  try {
    const a = held.forward(batch, { train: false }), b = wide.forward(batch, { train: false });
    const d = maxAbs(a.logps, b.logps);
    assert.ok(d > 0 && d <= 2e-2, `logps max abs diff ${d}`);
  } finally {
    held.free();
    wide.free();
  }
});

test("a bf16-held base is frozen: no fp32 params, no gradients, no backward without an adapter, no AdamW", () => {
  const { batch, dlogps } = batchOf("llama-tiny");
  const held = load("llama-tiny", "bf16");
  try {
    assert.throws(() => held.params, /held in bf16 only: use paramsBf16/);
    assert.throws(() => held.grads, /held in bf16 only and is frozen/);
    assert.throws(() => new AdamW(held, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 }), /held in bf16 only/);
    held.forward(batch, { train: true });
    assert.throws(() => held.backward(dlogps), /held in bf16 only \(frozen\): attach a LoRA adapter/);
    assert.equal(held.gradNorm(), 0);
    const fp = new NativeModel(held.config);
    try {
      assert.throws(() => fp.paramsBf16, /parameters are fp32: use params\(\)/);
    } finally {
      fp.free();
    }
  } finally {
    held.free();
  }
});
