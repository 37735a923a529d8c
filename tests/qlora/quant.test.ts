// A 4-bit frozen base (QLoRA, bitsandbytes' NF4 / FP4 format): the code books, block layout and double
// quantization on the hand-computed vectors of the QLoRA reference (TV1-TV3); the blocks of every projection weight
// of the tiny checkpoints against tools/reference/qlora_fixtures.py (tests/fixtures/qlora); a 4-bit model's
// log-probs and LoRA gradients against PyTorch running the same dequantized blocks; several dequantization tiles
// against an fp32 copy; decoding; the merged save; and what a 4-bit base refuses.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { AdamW, NativeModel, dequantize4bit, dynamicMap, quantize4bit, quantizeAbsmax, setNumThreads, type Quant4Type } from "../../src/core/native.ts";
import { loadModelFolder, readModelDir, readWeightFiles } from "../../src/models/checkpoint.ts";
import { randomInit } from "../../src/models/params.ts";
import { initLora, loadAdapter, saveMergedModel } from "../../src/models/peft.ts";
import { dequantizedCopy, loadQuantizedModel, quantizedWeightBytes } from "../../src/models/quantize.ts";
import { readHeader, readTensor, type SafetensorsHeader } from "../../src/models/safetensors.ts";
import { maxAbs, relErr } from "../helpers/compare.ts";

const fixtures = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures");
const f32 = (a: number[]) => Float32Array.from(a);
const hex = (a: Uint8Array) => Array.from(a, (b) => b.toString(16).padStart(2, "0")).join(" ");

setNumThreads(2);

test("NF4 and FP4 blocks of the reference vector (TV1, TV2): nibbles, packing, absmax, dequantized values", () => {
  const x = new Float32Array(64);
  x.set([0.12, -0.40, 0.03, -0.05, 0.25, 0.33, -0.18, 0.0]);
  const nf4 = quantize4bit(x, "nf4");
  assert.equal(hex(nf4.packed.subarray(0, 4)), "b0 86 de 37");
  assert.ok(nf4.packed.subarray(4).every((b) => b === 0x77), "the zero tail packs as 0x77");
  assert.deepEqual(Array.from(nf4.absmax), [Math.fround(0.4)]);
  // the reference prints 8 decimals: within 1e-8
  const dn = dequantize4bit(nf4.packed, nf4.absmax, 8, "nf4");
  assert.ok(maxAbs(dn, f32([0.13516609, -0.40000001, 0.03183212, -0.03642001, 0.22504680, 0.28918275, -0.15796700, 0])) <= 1e-8, `NF4 dequantized ${Array.from(dn)}`);
  const fp4 = quantize4bit(x, "fp4");
  assert.equal(hex(fp4.packed.subarray(0, 4)), "4b 1e 22 d0");
  assert.ok(fp4.packed.subarray(4).every((b) => b === 0), "the zero tail packs as 0x00");
  const d = dequantize4bit(fp4.packed, fp4.absmax, 8, "fp4");
  assert.ok(maxAbs(d, f32([0.13333334, -0.40000001, 0.00208333, -0.06666667, 0.26666668, 0.26666668, -0.2, 0])) <= 1e-8, `FP4 dequantized ${Array.from(d)}`);
});

test("blocks of 64 per tensor: several absmax values, a partial last block, an odd length padded with the code of 0", () => {
  const n = 64 * 2 + 17;
  const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.7) * (i < 64 ? 1 : i < 128 ? 0.01 : 3));
  for (const t of ["nf4", "fp4"] as Quant4Type[]) {
    const q = quantize4bit(x, t);
    assert.equal(q.absmax.length, 3);
    assert.equal(q.packed.length, 73);
    assert.equal(q.packed[72] & 15, t === "nf4" ? 7 : 0, "the pad nibble");
    const back = dequantize4bit(q.packed, q.absmax, n, t);
    for (let b = 0; b < 3; b++) {
      let am = 0;
      for (let i = 64 * b; i < Math.min(n, 64 * b + 64); i++) am = Math.max(am, Math.abs(x[i]));
      assert.equal(q.absmax[b], Math.fround(am), `absmax of block ${b}`);
      // every value comes back within half the largest gap of the code book times its block's absmax
      for (let i = 64 * b; i < Math.min(n, 64 * b + 64); i++) assert.ok(Math.abs(back[i] - x[i]) <= 0.17 * am, `${t} element ${i}: ${x[i]} -> ${back[i]}`);
    }
  }
});

test("double quantization of absmax values (TV3) and bitsandbytes' signed dynamic map", () => {
  const map = dynamicMap();
  assert.equal(map.length, 256);
  for (let i = 1; i < 256; i++) assert.ok(map[i] > map[i - 1], "ascending");
  assert.deepEqual([map[0], map[127], map[254], map[255]], Array.from(f32([-0.99296874, 0, 0.99296874, 1.0])));
  assert.ok(Math.abs(map[128] - 5.5e-7) <= 1e-13, `smallest positive ${map[128]}`);   // fp32(1e-6) * 0.55 in float32
  const r = quantizeAbsmax(f32([0.40, 0.0625, 0.21, 0.133]));
  assert.deepEqual(Array.from(r.q), [255, 21, 170, 46]);
  assert.deepEqual(Array.from(r.absmax2), [Math.fround(0.198625)]);
  assert.equal(r.offset, Math.fround(0.20137501));
  assert.deepEqual(Array.from(r.dequantized), Array.from(f32([0.40000001, 0.06280303, 0.20978554, 0.13263214])));
  // 600 values: three 256-blocks (the last partial), each with its own scale
  const many = Float32Array.from({ length: 600 }, (_, i) => 0.05 + ((i * 37) % 101) / 1000 + (i >= 512 ? 1 : 0));
  const m = quantizeAbsmax(many);
  assert.equal(m.absmax2.length, 3);
  assert.ok(maxAbs(m.dequantized, many) <= 0.01 * Math.max(...m.absmax2), `read-back error ${maxAbs(m.dequantized, many)}`);
});

// ---- the tiny checkpoints against tools/reference/qlora_fixtures.py ----------------------------------------------

const CASES: Record<string, { model: string; type: Quant4Type; nested: boolean }> = {
  "llama-tiny-nf4-dq": { model: "llama-tiny", type: "nf4", nested: true },
  "llama-tiny-fp4": { model: "llama-tiny", type: "fp4", nested: false },
  "qwen2-tiny-nf4": { model: "qwen2-tiny", type: "nf4", nested: false },
  "qwen3-tiny-fp4-dq": { model: "qwen3-tiny", type: "fp4", nested: true },
};

function fixture(name: string): { get: (k: string) => Float32Array; has: (k: string) => boolean; h: SafetensorsHeader; batch: { ids: Int32Array; lengths: Int32Array; B: number; T: number }; dlogps: Float32Array } {
  const h = readHeader(join(fixtures, "qlora", `${name}.safetensors`));
  const get = (k: string) => readTensor(h, k);
  const [B, T] = h.tensors.get("input_ids")!.shape;
  const mask = get("loss_mask");
  let n = 0;
  for (const v of mask) n += v;
  return { get, has: (k) => h.tensors.has(k), h, batch: { ids: Int32Array.from(get("input_ids")), lengths: Int32Array.from(get("lengths")), B, T }, dlogps: mask.map((v) => -v / n) };
}

/** The reference's dequantized tensor from its stored blocks (float32 arithmetic, as bitsandbytes). */
function referenceDequant(fx: ReturnType<typeof fixture>, name: string, n: number, c: { type: Quant4Type; nested: boolean }): Float32Array {
  const packed = Uint8Array.from(fx.get(`q.${name}.packed`));
  let absmax = fx.get(`q.${name}.absmax`);
  if (c.nested) {
    const map = fx.get("dynamic_map"), a2 = fx.get(`q.${name}.absmax2`), off = fx.get(`q.${name}.offset`)[0];
    absmax = absmax.map((q, b) => Math.fround(Math.fround(map[q] * a2[b >> 8]) + off));
  }
  return dequantize4bit(packed, absmax, n, c.type);
}

for (const [name, c] of Object.entries(CASES)) {
  test(`${name}: every projection weight quantizes to the reference's blocks; embeddings, norms and head stay fp32`, () => {
    const fx = fixture(name);
    const dir = join(fixtures, "core", c.model);
    const model = loadQuantizedModel(dir, readModelDir(dir).config, { quantType: c.type, doubleQuant: c.nested }, "fp32");
    try {
      const files = readWeightFiles(dir);
      assert.ok(maxAbs(dynamicMap(), fx.get("dynamic_map")) === 0, "the dynamic map equals torch's");
      let quantized = 0, worstOffset = 0;
      for (const p of model.table) {
        const w = readTensor(files.tensors.get(p.name)!, p.name);
        if (!p.quant4) {
          assert.ok(!fx.has(`q.${p.name}.packed`), `${p.name} is not quantized by the reference either`);
          assert.deepEqual(model.dequantize(p.name), w, `${p.name} is held as loaded`);
          continue;
        }
        quantized++;
        const q = quantize4bit(w, c.type);
        assert.deepEqual(q.packed, Uint8Array.from(fx.get(`q.${p.name}.packed`)), `${p.name}: packed nibbles`);
        if (!c.nested) assert.deepEqual(q.absmax, fx.get(`q.${p.name}.absmax`), `${p.name}: absmax`);
        else {
          const dq = quantizeAbsmax(q.absmax);
          assert.deepEqual(Array.from(dq.q), Array.from(fx.get(`q.${p.name}.absmax`)), `${p.name}: 8-bit absmax codes`);
          // the mean is summed in float64 here and by torch's float32 reduction there: an ulp apart at most
          assert.ok(relErr(dq.absmax2, fx.get(`q.${p.name}.absmax2`)) <= 2 ** -22, `${p.name}: nested absmax ${dq.absmax2} vs ${fx.get(`q.${p.name}.absmax2`)}`);
          worstOffset = Math.max(worstOffset, Math.abs(dq.offset - fx.get(`q.${p.name}.offset`)[0]) / dq.offset);
        }
        // the model's own store, read back, equals the reference's dequantization (the mean may differ by an ulp)
        const d = maxAbs(model.dequantize(p.name), referenceDequant(fx, p.name, p.size, c));
        assert.ok(d <= 1e-7, `${p.name}: model dequantization differs by ${d}`);
      }
      assert.equal(quantized, 7 * model.config.numLayers);
      assert.ok(worstOffset <= 2 ** -22, `double-quant offset (the mean) relative difference ${worstOffset}`);
    } finally {
      model.free();
    }
  });

  test(`${name}: log-probs and LoRA gradients through the 4-bit base equal PyTorch on the dequantized blocks`, (t) => {
    const fx = fixture(name);
    const dir = join(fixtures, "core", c.model);
    const model = loadQuantizedModel(dir, readModelDir(dir).config, { quantType: c.type, doubleQuant: c.nested }, "fp32");
    try {
      const base = model.forward(fx.batch, { train: false });
      const dBase = maxAbs(base.logps, fx.get("logps_base"));
      assert.ok(dBase <= 1e-5, `logps (no adapter) max abs diff ${dBase}`);
      const { adapter } = loadAdapter(join(fixtures, "lora", `${c.model}-adapter`), model);
      const on = model.forward(fx.batch, { train: true });
      const dOn = maxAbs(on.logps, fx.get("logps"));
      assert.ok(dOn <= 1e-5, `logps (adapter on) max abs diff ${dOn}`);
      adapter.zeroGrad();
      model.backward(fx.dlogps);
      let worst = 0;
      for (const p of adapter.table) {
        const err = relErr(adapter.grad(p.name), fx.get(`grad.${p.name}`));
        assert.ok(err <= 1e-4, `${p.name}: gradient relative error ${err}`);
        worst = Math.max(worst, err);
      }
      t.diagnostic(`${name}: logps max abs diff ${dBase.toExponential(2)} (base) ${dOn.toExponential(2)} (adapter); worst adapter gradient relative error ${worst.toExponential(2)}`);
    } finally {
      model.free();
    }
  });
}

// ---- against an fp32 copy of the same dequantized weights ------------------------------------------------------

/** A 1-layer model whose gate|up matrix (2 x 8200 rows of 64) spans two dequantization tiles of 16384 rows. */
function wideModel(q: { quantType: Quant4Type; doubleQuant: boolean }): { held: NativeModel; full: NativeModel } {
  const config = { ...readModelDir(join(fixtures, "core", "llama-tiny")).config, intermediateSize: 8200, numLayers: 1 };
  const src = new NativeModel(config);
  const held = new NativeModel(config, { quantization: q });
  try {
    randomInit(src.table, src.params, 11);
    for (const p of src.table) {
      const v = src.params.subarray(p.offset, p.offset + p.size);
      if (!p.quant4) { held.params.set(v, p.offset); continue; }
      for (let s = 0; s < p.size; s += 4096) held.quantize4bit(p.name, v.subarray(s, Math.min(p.size, s + 4096)), s);
    }
  } finally {
    src.free();
  }
  return { held, full: dequantizedCopy(held) };
}

test("several dequantization tiles (one crossing the gate|up boundary): forward, LoRA gradients, decoding equal the fp32 copy", () => {
  const { held, full } = wideModel({ quantType: "nf4", doubleQuant: true });
  try {
    const B = 2, T = 24, V = held.config.vocabSize;
    const batch = { ids: Int32Array.from({ length: B * T }, (_, i) => (i * 31 + 5) % V), lengths: Int32Array.of(24, 15), B, T };
    const cfg = { r: 4, loraAlpha: 8, useRslora: false, targetModules: ["gate_proj", "up_proj", "down_proj", "q_proj"] as const, loraDropout: 0 };
    const la = held.attachLora({ ...cfg, targetModules: [...cfg.targetModules] }), lb = full.attachLora({ ...cfg, targetModules: [...cfg.targetModules] });
    initLora(la, 5);
    for (const p of la.table) if (p.name.endsWith("lora_B.weight")) la.params.fill(0.02, p.offset, p.offset + p.size);
    lb.params.set(la.params);
    const a = held.forward(batch, { train: true }), b = full.forward(batch, { train: true });
    assert.ok(maxAbs(a.logps, b.logps) <= 1e-5, `logps max abs diff ${maxAbs(a.logps, b.logps)}`);
    const dlogps = new Float32Array(B * T).fill(-0.05);
    la.zeroGrad(); lb.zeroGrad();
    held.backward(dlogps); full.backward(dlogps);
    assert.ok(relErr(la.grads, lb.grads) <= 1e-5, `adapter gradients relative error ${relErr(la.grads, lb.grads)}`);
    // decoding: a prefill of 2 rows, then one-token steps
    const ca = held.kvCache(2, 32), cb = full.kvCache(2, 32);
    try {
      const rows = Int32Array.of(0, 1), lengths = Int32Array.of(9, 4), ids = batch.ids.subarray(0, 2 * 12);
      const pa = held.decode(ca, rows, ids, lengths, 12), pb = full.decode(cb, rows, ids, lengths, 12);
      assert.ok(maxAbs(pa, pb) <= 1e-4, `prefill logits max abs diff ${maxAbs(pa, pb)}`);
      for (let s = 0; s < 3; s++) {
        const step = Int32Array.of(s + 1, s + 7), one = Int32Array.of(1, 1);
        const sa = held.decode(ca, rows, step, one, 1), sb = full.decode(cb, rows, step, one, 1);
        assert.ok(maxAbs(sa, sb) <= 1e-4, `step ${s} logits max abs diff ${maxAbs(sa, sb)}`);
      }
    } finally {
      ca.free();
      cb.free();
    }
  } finally {
    held.free();
    full.free();
  }
});

test("unquantized tensors held in bf16 (torch_dtype bfloat16): the fp32 results of their widened values", () => {
  const dir = join(fixtures, "core", "qwen3-tiny");
  const config = readModelDir(dir).config;
  const fx = fixture("qwen3-tiny-fp4-dq");
  const held = loadQuantizedModel(dir, config, { quantType: "fp4", doubleQuant: true }, "bf16");
  const full = dequantizedCopy(held);
  try {
    assert.equal(held.baseDtype, "bf16");
    const a = held.forward(fx.batch, { train: false }), b = full.forward(fx.batch, { train: false });
    assert.ok(maxAbs(a.logps, b.logps) <= 1e-5, `logps max abs diff ${maxAbs(a.logps, b.logps)}`);
    const q = { quantType: "fp4" as const, doubleQuant: true };
    assert.ok(held.weightBytes === quantizedWeightBytes(held.table, q, "bf16"), `weightBytes ${held.weightBytes} vs ${quantizedWeightBytes(held.table, q, "bf16")}`);
  } finally {
    held.free();
    full.free();
  }
});

test("a merged save from a 4-bit base is the dequantized base plus s·B·A, and scores like the adapter", () => {
  const dir = join(fixtures, "core", "llama-tiny");
  const fx = fixture("llama-tiny-nf4-dq");
  const model = loadQuantizedModel(dir, readModelDir(dir).config, { quantType: "nf4", doubleQuant: true }, "fp32");
  const out = mkdtempSync(join(tmpdir(), "qlora-merged-"));
  try {
    loadAdapter(join(fixtures, "lora", "llama-tiny-adapter"), model);
    const withAdapter = model.forward(fx.batch, { train: false });
    saveMergedModel(join(out, "merged"), model, readModelDir(dir).configJson);
    assert.equal(model.lora, null, "the adapter is detached after the merge");
    const merged = loadModelFolder(join(out, "merged")).model;
    try {
      const m = merged.forward(fx.batch, { train: false });
      assert.ok(maxAbs(m.logps, withAdapter.logps) <= 1e-5, `merged logps max abs diff ${maxAbs(m.logps, withAdapter.logps)}`);
    } finally {
      merged.free();
    }
  } finally {
    model.free();
    rmSync(out, { recursive: true, force: true });
  }
});

test("a 4-bit base is frozen and refuses what it cannot do, naming why", () => {
  const dir = join(fixtures, "core", "llama-tiny");
  const fx = fixture("llama-tiny-fp4");
  const model = loadQuantizedModel(dir, readModelDir(dir).config, { quantType: "fp4", doubleQuant: false }, "fp32");
  try {
    assert.throws(() => model.grads, /held in 4 bits and is frozen/);
    assert.throws(() => new AdamW(model, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 }).update(), /held in 4 bits and is frozen/);
    model.forward(fx.batch, { train: true });
    assert.throws(() => model.backward(fx.dlogps), /held in 4 bits \(frozen\): attach a LoRA adapter/);
    // the layout's quant4 flag agrees with what the core lets be quantized
    for (const p of model.table) {
      if (p.quant4) continue;
      assert.throws(() => model.quantize4bit(p.name, new Float32Array(64), 0), /not a quantized tensor/);
    }
    const qn = "model.layers.0.self_attn.q_proj.weight";
    assert.throws(() => model.quantize4bit(qn, new Float32Array(64), 64), /chunks must come in order; expected the one starting at element 4096/);
    assert.throws(() => model.writeTensor(qn, new Float32Array(64), 0), /is held in 4 bits: write it with pt_model_quantize_4bit/);
    assert.throws(() => model.writeTensor("model.norm.weight", new Float32Array(65), 0), /model.norm.weight: elements \[0, 65\) lie outside its 64/);
    loadAdapter(join(fixtures, "lora", "llama-tiny-adapter"), model);
    assert.throws(() => model.mergeLora(), /4-bit base cannot hold a merged weight/);
    assert.throws(() => new NativeModel(model.config, { quantization: { quantType: "int4" as Quant4Type, doubleQuant: false } }), /bnb_4bit_quant_type must be "nf4" or "fp4"/);
  } finally {
    model.free();
  }
});
