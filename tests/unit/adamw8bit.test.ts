// bitsandbytes' 8-bit AdamW state in the native core: the dynamic maps bit for bit against torch's fp32
// construction (fixture) and the reference values, blockwise quantization on the reference's test vectors (ties to
// the lower code, all-zero blocks), one AdamW step against the hand-computed TV4, five steps against an
// independent fp32 reference written here, min_8bit_size, and the state's size (≈ 2 bytes per parameter).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { AdamW8bit, MIN_8BIT_SIZE, QBLOCK, createOptimizer, dequantizeBlockwise, dynamicMap, quantizeBlockwise } from "../../src/core/adamw8bit.ts";
import { AdamW, NativeModel, type Trainable } from "../../src/core/native.ts";
import type { AdamWConfig, ParamInfo } from "../../src/core/types.ts";
import { readModelDir } from "../../src/models/checkpoint.ts";

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures");
const maps = JSON.parse(readFileSync(join(FIXTURES, "optim8bit", "dynamic-maps.json"), "utf8")) as { signed: number[]; unsigned: number[] };
const f = Math.fround;

test("the dynamic maps equal torch's fp32 construction bit for bit, with the reference's landmarks", () => {
  const s = dynamicMap(true), u = dynamicMap(false);
  assert.deepEqual(Array.from(s), maps.signed.map(f));
  assert.deepEqual(Array.from(u), maps.unsigned.map(f));
  for (const m of [s, u]) for (let i = 1; i < 256; i++) assert.ok(m[i] > m[i - 1], "ascending, no duplicates");
  // signed: 127 negatives, 0 at 127, min -0.99296874 (not -1), smallest positive 5.5e-7, then 0.99296874, 1
  const near = (x: number, want: number) => assert.ok(Math.abs(x - want) <= 1e-7 * Math.abs(want), `${x} vs ${want}`);
  near(s[0], -0.99296874);
  assert.equal(s[127], 0);
  near(s[128], 5.5e-7);
  near(s[254], 0.99296874);
  assert.equal(s[255], 1);
  assert.equal(s.filter((x) => x < 0).length, 127);
  // unsigned: 0, 3.25e-7, ..., 0.9964844, 1
  assert.equal(u[0], 0);
  near(u[1], 3.25e-7);
  near(u[254], 0.9964844);
  assert.equal(u[255], 1);
});

test("blockwise quantization: the reference's test vectors (TV3 signed, TV4 signed and unsigned)", () => {
  // TV3: centred absmaxes of double quantization -> scaled [1, -0.699, 0.0434, -0.344] -> [255, 21, 170, 46]
  const tv3 = quantizeBlockwise(Float32Array.of(0.198625, -0.13887501, 0.008624986, -0.06837501), true);
  assert.deepEqual(Array.from(tv3.codes), [255, 21, 170, 46]);
  assert.equal(tv3.absmax[0], f(0.198625));
  const back = dequantizeBlockwise(tv3.codes, tv3.absmax, true);
  [1.0, -0.69765627, 0.04234375, -0.34609371].forEach((c, i) => assert.ok(Math.abs(back[i] / f(0.198625) - c) < 1e-7, `code ${i}`));
  // TV4's requantized moments
  const m = quantizeBlockwise(Float32Array.of(2e-3, -1e-3, 5e-4, -4e-5), true);
  assert.deepEqual(Array.from(m.codes), [255, 35, 201, 92]);
  const v = quantizeBlockwise(Float32Array.of(4e-7, 1e-7, 2.5e-8, 1.6e-10), false);
  assert.deepEqual(Array.from(v.codes), [255, 148, 100, 20]);
  const mBack = dequantizeBlockwise(m.codes, m.absmax, true), vBack = dequantizeBlockwise(v.codes, v.absmax, false);
  const close = (a: Float32Array, b: number[]) => a.forEach((x, i) => assert.ok(Math.abs(x - b[i]) <= 1e-6 * Math.abs(b[i]), `${x} vs ${b[i]}`));
  close(mBack, [2e-3, -1.0015625e-3, 4.953125e-4, -3.96875e-5]);
  close(vBack, [4e-7, 1.0046875e-7, 2.509375e-8, 1.6375e-10]);
});

test("quantization: nearest code, a value exactly between two codes takes the lower one, zero blocks have absmax 0", () => {
  const s = dynamicMap(true);
  // block absmax 1 (first element), then exact midpoints and points just off them
  const mids = [100, 140, 200, 250].map((i) => f((s[i] + s[i + 1]) * 0.5));
  const x = Float32Array.of(1, ...mids, ...mids.map((m) => m + Math.abs(m) * 1e-6));
  const q = quantizeBlockwise(x, true);
  assert.deepEqual(Array.from(q.codes.subarray(1, 5)), [100, 140, 200, 250]);
  assert.deepEqual(Array.from(q.codes.subarray(5, 9)), [101, 141, 201, 251]);
  // 300 values: two blocks (256 + 44), each with its own absmax; a zero block stays exactly zero
  const y = new Float32Array(300);
  for (let i = 256; i < 300; i++) y[i] = (i - 280) / 7;
  const r = quantizeBlockwise(y, true);
  assert.equal(r.absmax.length, 2);
  assert.equal(r.absmax[0], 0);
  assert.equal(r.absmax[1], f(24 / 7));
  assert.ok(r.codes.subarray(0, 256).every((c) => c === 127));
  const back = dequantizeBlockwise(r.codes, r.absmax, true);
  assert.ok(back.subarray(0, 256).every((v) => v === 0));
  // every value of the second block takes the code nearest to it (the map's ends are -0.99297 and 1, so -1 has error)
  for (let i = 256; i < 300; i++) {
    const x = y[i] / r.absmax[1];
    const best = Math.min(...Array.from(s, (c) => Math.abs(c - x)));
    assert.ok(Math.abs(s[r.codes[i]] - x) <= best + 1e-7, `element ${i}: ${x} -> code ${s[r.codes[i]]}`);
    assert.equal(back[i], f(s[r.codes[i]] * r.absmax[1]));
  }
});

/** A parameter set of plain arrays (no model), enough for an optimizer. */
function fakeTrainable(sizes: number[], decay = true): Trainable {
  let off = 0;
  const table: ParamInfo[] = sizes.map((n, i) => { const p = { name: `t${i}`, shape: [n], offset: off, size: n, decay, quant4: false }; off += n; return p; });
  const params = new Float32Array(off), grads = new Float32Array(off);
  return {
    table, params, grads, zeroGrad: () => grads.fill(0), gradNorm: () => 0, scaleGrads: () => {}, clipGradNorm: () => 0,
    adamw: () => { throw new Error("not used"); },
  };
}
const CFG: AdamWConfig = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };

test("one 8-bit AdamW step: the reference's TV4 (weights, requantized state)", () => {
  const t = fakeTrainable([MIN_8BIT_SIZE]);
  t.params.set([0.5, -0.3, 0.1, 0.0]);
  t.grads.set([0.02, -0.01, 0.005, -0.0004]);
  const opt = new AdamW8bit(t, CFG);
  opt.update();
  const want = [0.499, -0.29900002, 0.09900001, 0.0009999749];
  for (let i = 0; i < 4; i++) assert.ok(Math.abs(t.params[i] - want[i]) <= 5e-7 * Math.abs(want[i]), `p[${i}] ${t.params[i]} vs ${want[i]}`);
  assert.ok(t.params.subarray(4).every((x) => x === 0), "g = 0 and m = v = 0 leave the rest of the tensor at 0");
  const [state1, absmax1, state2, absmax2] = opt.stateOf(t.table[0]).map((s) => s.data);
  assert.deepEqual(Array.from(state1.subarray(0, 4)), [255, 35, 201, 92]);
  assert.deepEqual(Array.from(state2.subarray(0, 4)), [255, 148, 100, 20]);
  // m = 0.1 g, v = (1 - 0.999) g² with 1 - β in fp32 (1 - fp32(0.999) = 0.00099998713)
  assert.ok(Math.abs(absmax1[0] - 2e-3) <= 1e-6 * 2e-3, `absmax1 ${absmax1[0]}`);
  assert.ok(Math.abs(absmax2[0] - f(1 - f(0.999)) * 4e-4) <= 1e-6 * 4e-7, `absmax2 ${absmax2[0]}`);
  assert.equal(absmax1.length, MIN_8BIT_SIZE / QBLOCK);
  assert.ok(Array.from(absmax1).slice(1).every((a) => a === 0), "blocks whose gradient is 0 stay at absmax 0");
});

// An independent 8-bit AdamW written from the reference text: fp32 arithmetic (Math.fround after every operation),
// the fixture's maps, nearest code by comparison with the fp32 midpoints (ties lower).
function referenceStep(p: Float32Array, g: Float32Array, s1: Uint8Array, s2: Uint8Array, a1: Float32Array, a2: Float32Array, t: number, c: AdamWConfig, wd: number): void {
  const q1 = maps.signed.map(f), q2 = maps.unsigned.map(f);
  const nearest = (q: number[], x: number) => { let i = 0; while (i < 255 && f((q[i] + q[i + 1]) * 0.5) < x) i++; return i; };
  const b1 = f(c.beta1), b2 = f(c.beta2), lr = f(c.lr), eps = f(c.eps);
  const stepSize = f(lr / f(1 - f(b1 ** t))), bc2 = f(Math.sqrt(f(1 - f(b2 ** t)))), keep = f(1 - f(lr * f(wd)));
  for (let b = 0; b * QBLOCK < p.length; b++) {
    const lo = b * QBLOCK, hi = Math.min(p.length, lo + QBLOCK);
    const m: number[] = [], v: number[] = [];
    for (let i = lo; i < hi; i++) {
      let mm = f(q1[s1[i]] * a1[b]), vv = f(q2[s2[i]] * a2[b]);
      p[i] = f(p[i] * keep);
      mm = f(f(b1 * mm) + f(f(1 - b1) * g[i]));
      vv = f(f(b2 * vv) + f(f(f(1 - b2) * g[i]) * g[i]));
      p[i] = f(p[i] - f(f(stepSize * mm) / f(f(f(Math.sqrt(vv)) / bc2) + eps)));
      m.push(mm); v.push(vv);
    }
    a1[b] = Math.max(...m.map(Math.abs)); a2[b] = Math.max(...v);
    for (let i = lo; i < hi; i++) {
      s1[i] = nearest(q1, a1[b] > 0 ? f(m[i - lo] / a1[b]) : 0);
      s2[i] = nearest(q2, a2[b] > 0 ? f(v[i - lo] / a2[b]) : 0);
    }
  }
}

test("five 8-bit AdamW steps equal an independent fp32 reference (weights to 1e-6, codes to one neighbour)", () => {
  const n = 4096 + 300;   // 18 blocks, the last partial
  const t = fakeTrainable([n]);
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) - 0.5;
  for (let i = 0; i < n; i++) t.params[i] = rnd();
  const opt = new AdamW8bit(t, { ...CFG, weightDecay: 0.1 });
  const p = Float32Array.from(t.params), s1 = new Uint8Array(n), s2 = new Uint8Array(n);
  const a1 = new Float32Array(Math.ceil(n / QBLOCK)), a2 = new Float32Array(a1.length);
  let differing = 0;
  for (let step = 1; step <= 5; step++) {
    for (let i = 0; i < n; i++) t.grads[i] = f(rnd() * (i % 97 === 0 ? 1 : 0.01));
    opt.update();
    referenceStep(p, t.grads, s1, s2, a1, a2, step, { ...CFG, weightDecay: 0.1 }, 0.1);
    const [c1, m1, c2, m2] = opt.stateOf(t.table[0]).map((s) => s.data);
    for (let i = 0; i < n; i++) {
      assert.ok(Math.abs(t.params[i] - p[i]) <= 1e-6 * Math.abs(p[i]) + 1e-9, `step ${step} p[${i}] ${t.params[i]} vs ${p[i]}`);
      for (const [a, b] of [[c1[i], s1[i]], [c2[i], s2[i]]]) {
        assert.ok(Math.abs(a - b) <= 1, `step ${step} code ${i}: ${a} vs ${b}`);
        if (a !== b) differing++;
      }
    }
    for (let b = 0; b < a1.length; b++) assert.ok(Math.abs(m1[b] - a1[b]) <= 1e-6 * a1[b] && Math.abs(m2[b] - a2[b]) <= 1e-6 * a2[b], `step ${step} absmax of block ${b}`);
    // resynchronise on the native state, so that a code that fell the other side of a midpoint is not carried
    s1.set(c1 as Uint8Array); s2.set(c2 as Uint8Array); a1.set(m1 as Float32Array); a2.set(m2 as Float32Array); p.set(t.params);
  }
  assert.ok(differing <= 2 * 5 * n * 1e-3, `${differing} codes differ`);
});

test("min_8bit_size: a tensor of 4095 values keeps fp32 moments, 4096 gets 8-bit state (bitsandbytes' rule)", () => {
  const t = fakeTrainable([MIN_8BIT_SIZE - 1, MIN_8BIT_SIZE]);
  const opt = new AdamW8bit(t, CFG);
  assert.deepEqual(opt.stateOf(t.table[0]).map((s) => `${s.suffix}:${s.dtype}`), ["exp_avg:F32", "exp_avg_sq:F32"]);
  assert.deepEqual(opt.stateOf(t.table[1]).map((s) => `${s.suffix}:${s.dtype}:${s.shape}`), ["state1:U8:4096", "absmax1:F32:16", "state2:U8:4096", "absmax2:F32:16"]);
  assert.equal(opt.stateBytes, 8 * 4095 + 2 * 4096 + 2 * 4 * 16);
});

test("optimizer state under full fine-tuning: ≈ 2 bytes per trainable parameter for 8-bit AdamW, 8 for fp32 AdamW", () => {
  const { config } = readModelDir(join(FIXTURES, "core", "llama-tiny"));
  // every matrix at least 4096 values: C 128, 4 heads / 2 KV of 32, I 256, V 256, 2 layers
  const model = new NativeModel({ ...config, hiddenSize: 128, intermediateSize: 256, numHeads: 4, numKvHeads: 2, headDim: 32 });
  try {
    const n = model.numParameters;
    const o8 = createOptimizer("adamw_8bit", model, CFG) as AdamW8bit;
    const o32 = createOptimizer("adamw_torch", model, CFG);
    assert.ok(o8 instanceof AdamW8bit && o32 instanceof AdamW);
    assert.ok(createOptimizer("adamw_bnb_8bit", model, CFG) instanceof AdamW8bit);
    assert.ok(createOptimizer("paged_adamw_8bit", model, CFG) instanceof AdamW8bit);
    assert.ok(createOptimizer("paged_adamw_32bit", model, CFG) instanceof AdamW);
    // bytes by the rule: 8-bit tensors 2 per value + 2 fp32 absmax per block; the 5 norm weights (128) 8 per value
    const want = model.table.reduce((s, p) => s + (p.size >= MIN_8BIT_SIZE ? 2 * p.size + 8 * Math.ceil(p.size / QBLOCK) : 8 * p.size), 0);
    assert.equal(o8.stateBytes, want);
    assert.deepEqual([o8.split.tensors32, o8.split.elements32], [5, 5 * 128]);
    const per8 = o8.stateBytes / n, per32 = o32.stateBytes / n;
    assert.ok(per8 > 2 && per8 < 2.1, `${per8.toFixed(4)} bytes per parameter`);
    assert.ok(per32 >= 8, `${per32} bytes per parameter`);
  } finally {
    model.free();
  }
});

test("the 8-bit optimizer's fp32 tensors step exactly as the model-wide fp32 AdamW (decay only where the table says)", () => {
  const { config } = readModelDir(join(FIXTURES, "core", "llama-tiny"));
  const a = new NativeModel(config), b = new NativeModel(config);
  try {
    for (let i = 0; i < a.params.length; i++) { a.params[i] = b.params[i] = Math.sin(i * 0.37); a.grads[i] = b.grads[i] = Math.cos(i * 0.11) * 1e-3; }
    const cfg = { ...CFG, weightDecay: 0.05 };
    const whole = new AdamW(a, cfg), per = new AdamW8bit(b, cfg);
    whole.update(); whole.update();
    per.update(); per.update();
    const small = b.table.filter((p) => p.size < MIN_8BIT_SIZE);
    assert.ok(small.some((p) => p.decay) && small.some((p) => !p.decay));
    for (const p of small) assert.deepEqual(b.params.subarray(p.offset, p.offset + p.size), a.params.subarray(p.offset, p.offset + p.size), p.name);
    // and the 8-bit tensors moved by about as much (same update, quantized moments)
    const big = b.table.filter((p) => p.size >= MIN_8BIT_SIZE);
    for (const p of big) {
      let d = 0, ref = 0;
      for (let i = p.offset; i < p.offset + p.size; i++) { d += (b.params[i] - a.params[i]) ** 2; ref += (a.params[i] - Math.sin(i * 0.37)) ** 2; }
      assert.ok(Math.sqrt(d / ref) < 0.02, `${p.name}: 8-bit update differs from fp32 by ${Math.sqrt(d / ref)} of its size`);
    }
  } finally {
    a.free(); b.free();
  }
});
