// Gradient checkpointing in the native core: a training forward that keeps only each layer's input, and a
// backward that recomputes each layer first, give the same log-probs and the same gradients bit for bit as the
// run without it: full fine-tuning (with q/k norm and biases), a LoRA adapter on all seven projections (with
// dropout, and DoRA), and bf16 compute where the CPU has it; several steps in a row, switching it on and off between them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { bf16Support, LORA_TARGETS, NativeModel, type Trainable } from "../../src/core/native.ts";
import type { DecoderConfig, TokenBatch } from "../../src/core/types.ts";
import { readModelDir } from "../../src/models/checkpoint.ts";

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "core");

function rng(seed: number): () => number {
  return () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) - 0.5;
}

function batch(V: number, seed: number): TokenBatch {
  const r = rng(seed);
  const B = 3, T = 19, lengths = Int32Array.of(19, 11, 7);
  const ids = new Int32Array(B * T);
  for (let b = 0; b < B; b++) for (let t = 0; t < lengths[b]; t++) ids[b * T + t] = 1 + Math.floor((r() + 0.5) * (V - 1));
  return { ids, lengths, B, T };
}

/** One training forward + backward; the log-probs, and the gradients of the trainable set. */
function step(m: NativeModel, t: Trainable, b: TokenBatch, seed: number): { logps: Float32Array; grads: Float32Array } {
  const out = m.forward(b, { train: true });
  const r = rng(seed);
  const d = new Float32Array(b.B * b.T).map(() => r());
  t.zeroGrad();
  m.backward(d);
  return { logps: out.logps, grads: Float32Array.from(t.grads) };
}

function model(config: DecoderConfig, seed: number): NativeModel {
  const m = new NativeModel({ ...config, numLayers: 4 });
  const r = rng(seed);
  for (const p of m.table) {
    const w = m.param(p.name);
    const norm = p.name.endsWith("norm.weight");
    for (let i = 0; i < w.length; i++) w[i] = norm ? 1 + 0.1 * r() : 0.2 * r();
  }
  return m;
}

function compare(a: NativeModel, b: NativeModel, ta: Trainable, tb: Trainable, what: string): void {
  assert.equal(a.gradientCheckpointing, false);
  b.gradientCheckpointing = true;
  assert.equal(b.gradientCheckpointing, true);
  for (let k = 0; k < 3; k++) {
    const data = batch(a.config.vocabSize, 10 + k);
    const x = step(a, ta, data, 20 + k), y = step(b, tb, data, 20 + k);
    assert.deepEqual(y.logps, x.logps, `${what}, step ${k}: log-probs`);
    assert.ok(x.grads.some((g) => g !== 0), `${what}: gradients are not all zero`);
    assert.deepEqual(y.grads, x.grads, `${what}, step ${k}: gradients`);
    // eval forwards are unaffected, and switching off and on between steps is fine
    assert.deepEqual(b.forward(data, { train: false }).logps, a.forward(data, { train: false }).logps);
    if (k === 1) { b.gradientCheckpointing = false; b.gradientCheckpointing = true; }
  }
}

for (const name of ["llama-tiny", "qwen2-tiny", "qwen3-tiny"]) {
  test(`${name} × 4 layers, full fine-tuning: the same log-probs and gradients, bit for bit`, () => {
    const { config } = readModelDir(join(FIXTURES, name));
    const a = model(config, 1), b = model(config, 1);
    try { compare(a, b, a, b, name); } finally { a.free(); b.free(); }
  });
}

test("LoRA on all seven projections: the same adapter gradients, bit for bit (u = x A^T is recomputed too)", () => {
  const { config } = readModelDir(join(FIXTURES, "qwen3-tiny"));
  const a = model(config, 2), b = model(config, 2);
  try {
    const cfg = { r: 4, loraAlpha: 8, useRslora: false, targetModules: [...LORA_TARGETS], loraDropout: 0 };
    const la = a.attachLora(cfg), lb = b.attachLora(cfg);
    const r = rng(3);
    for (let i = 0; i < la.params.length; i++) la.params[i] = lb.params[i] = 0.1 * r();
    compare(a, b, la, lb, "LoRA");
  } finally { a.free(); b.free(); }
});

test("LoRA dropout and DoRA: the recompute draws the same dropout masks and DoRA norms, bit for bit", () => {
  const { config } = readModelDir(join(FIXTURES, "llama-tiny"));
  for (const useDora of [false, true]) {
    const a = model(config, 6), b = model(config, 6);
    try {
      const cfg = { r: 4, loraAlpha: 8, useRslora: false, targetModules: [...LORA_TARGETS], loraDropout: 0.3, useDora };
      const la = a.attachLora(cfg), lb = b.attachLora(cfg);
      const r = rng(7);
      for (let i = 0; i < la.params.length; i++) la.params[i] = lb.params[i] = 0.1 * r();
      if (useDora) { la.initDoraMagnitude(); lb.initDoraMagnitude(); }
      la.setDropoutSeed(42, 0, 0); lb.setDropoutSeed(42, 0, 0);
      compare(a, b, la, lb, useDora ? "DoRA with dropout" : "LoRA dropout");
    } finally { a.free(); b.free(); }
  }
});

test("a 4-bit (nf4, double-quantized) base under LoRA with dropout: the same adapter gradients, bit for bit", () => {
  const { config } = readModelDir(join(FIXTURES, "llama-tiny"));
  const src = model(config, 8);
  const held = [0, 1].map(() => new NativeModel({ ...config, numLayers: 4 }, { quantization: { quantType: "nf4", doubleQuant: true } }));
  try {
    for (const m of held) {
      for (const p of src.table) {
        const v = src.params.subarray(p.offset, p.offset + p.size);
        if (p.quant4) m.quantize4bit(p.name, v, 0);
        else m.params.set(v, p.offset);
      }
    }
    const cfg = { r: 4, loraAlpha: 8, useRslora: false, targetModules: [...LORA_TARGETS], loraDropout: 0.2 };
    const [la, lb] = held.map((m) => m.attachLora(cfg));
    const r = rng(9);
    for (let i = 0; i < la.params.length; i++) la.params[i] = lb.params[i] = 0.1 * r();
    la.setDropoutSeed(1, 0, 0); lb.setDropoutSeed(1, 0, 0);
    compare(held[0], held[1], la, lb, "4-bit base");
  } finally { src.free(); for (const m of held) m.free(); }
});

test("bf16 compute: the same log-probs and gradients, bit for bit", { skip: !bf16Support().available && "no bf16 compute on this CPU" }, () => {
  const { config } = readModelDir(join(FIXTURES, "llama-tiny"));
  const a = model(config, 4), b = model(config, 4);
  try {
    a.setCompute("bf16"); b.setCompute("bf16");
    compare(a, b, a, b, "bf16");
  } finally { a.free(); b.free(); }
});

test("switching gradient checkpointing between a forward and its backward drops the saved activations", () => {
  const { config } = readModelDir(join(FIXTURES, "llama-tiny"));
  const m = model(config, 5);
  try {
    const data = batch(config.vocabSize, 1);
    m.forward(data, { train: true });
    m.gradientCheckpointing = true;
    assert.throws(() => m.backward(new Float32Array(data.B * data.T)), /backward needs a forward with train = true just before it/);
  } finally { m.free(); }
});
