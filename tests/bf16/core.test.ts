// bf16 mixed precision of the native core against its exact fp32 path on the tiny checkpoints
// (tests/fixtures/core, tests/fixtures/lora): per-token log-probs, the mean-NLL gradients of every tensor and
// of a LoRA adapter, within bf16 tolerances; switching back to fp32 is exact; and the forced fallback
// (PREFTUNE_NO_BF16=1) chooses fp32 with one note and trains bit for bit like fp32.
// Tolerances: bf16 keeps 8 significant bits (relative rounding 2^-9 ≈ 2e-3 per operand), so log-probs of these
// models move by ~1e-3 and gradients by ~1% (measured: max 2e-3, mean 5e-4, worst tensor 0.9%); the bounds below
// are a few times that, far below what a wrong operand, transpose or missing accumulation would give (O(1)).
import { test } from "node:test";
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { NativeModel, bf16Support, chooseCompute, setNumThreads } from "../../src/core/native.ts";
import type { ComputeDtype } from "../../src/core/types.ts";
import { loadWeightsInto, readModelDir } from "../../src/models/checkpoint.ts";
import { loadAdapter } from "../../src/models/peft.ts";
import { readHeader, readTensor } from "../../src/models/safetensors.ts";
import { maxAbs, relErr } from "../helpers/compare.ts";

const fixtures = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures");
const MODELS = ["llama-tiny", "qwen2-tiny", "qwen3-tiny"];
const LOGPS_MAX = 2e-2, LOGPS_MEAN = 4e-3, GRAD_REL = 5e-2;

const noBf16 = bf16Support().available ? false : `no bf16 compute on this machine (${bf16Support().cpu})`;

function fixture(name: string) {
  const dir = join(fixtures, "core", name);
  const fx = readHeader(join(dir, "fixture.safetensors"));
  const get = (k: string) => readTensor(fx, k);
  const [B, T] = fx.tensors.get("input_ids")!.shape;
  const batch = { ids: Int32Array.from(get("input_ids")), lengths: Int32Array.from(get("lengths")), B, T };
  const mask = get("loss_mask");
  let n = 0;
  for (const m of mask) n += m;
  return { dir, config: readModelDir(dir).config, batch, dlogps: mask.map((m) => -m / n), ref: get("logps") };
}

/** One training forward + backward of the mean NLL in the given precision: log-probs and a copy of the gradients. */
function run(name: string, compute: ComputeDtype | undefined, lora = false) {
  const f = fixture(name);
  const model = new NativeModel(f.config, compute ? { compute } : {});
  try {
    loadWeightsInto(f.dir, model.table, model.params);
    const adapter = lora ? loadAdapter(join(fixtures, "lora", `${name}-adapter`), model).adapter : null;
    const stats = model.forward(f.batch, { train: true });
    (adapter ?? model).zeroGrad();
    model.backward(f.dlogps);
    const trained = adapter ?? model;
    return { f, logps: stats.logps, entropy: stats.entropy, grads: Float32Array.from(trained.grads), table: trained.table, compute: model.compute };
  } finally {
    model.free();
  }
}

/** Max and mean |a - b| over the positions that carry a log-prob (label-aligned, non-zero in the fp32 run). */
function diffs(bf: Float32Array, fp: Float32Array) {
  let max = 0, sum = 0, n = 0;
  for (let i = 0; i < fp.length; i++) {
    if (fp[i] === 0) continue;
    const d = Math.abs(bf[i] - fp[i]);
    max = Math.max(max, d);
    sum += d;
    n++;
  }
  return { max, mean: sum / n, n };
}

setNumThreads(2);

for (const name of MODELS) {
  test(`${name}: bf16 log-probs and every gradient stay within bf16 tolerance of fp32`, { skip: noBf16 }, (t) => {
    const fp = run(name, "fp32"), bf = run(name, "bf16");
    assert.equal(bf.compute, "bf16");
    assert.ok(maxAbs(fp.logps, fp.f.ref) <= 1e-5, "the fp32 path is the PyTorch-exact one");
    const d = diffs(bf.logps, fp.logps);
    const vsTorch = diffs(bf.logps, fp.f.ref);
    assert.ok(d.max > 0, "bf16 mode really rounds (results differ from fp32)");
    assert.ok(d.max <= LOGPS_MAX && d.mean <= LOGPS_MEAN, `logps: max abs diff ${d.max}, mean ${d.mean}`);
    assert.ok(maxAbs(bf.entropy, fp.entropy) <= 5 * LOGPS_MAX, `entropy max abs diff ${maxAbs(bf.entropy, fp.entropy)}`);
    let worst = 0, worstName = "";
    for (const p of fp.table) {
      const err = relErr(bf.grads.subarray(p.offset, p.offset + p.size), fp.grads.subarray(p.offset, p.offset + p.size));
      assert.ok(err <= GRAD_REL, `grad ${p.name}: relative error ${err} against fp32`);
      if (err > worst) { worst = err; worstName = p.name; }
    }
    t.diagnostic(`${name} bf16 vs fp32 over ${d.n} log-probs: max abs diff ${d.max.toExponential(2)}, mean ${d.mean.toExponential(2)} ` +
      `(vs the PyTorch fp32 fixture: max ${vsTorch.max.toExponential(2)}, mean ${vsTorch.mean.toExponential(2)}); ` +
      `worst gradient relative error ${worst.toExponential(2)} (${worstName})`);
  });

  test(`${name}: LoRA in bf16: adapter gradients within bf16 tolerance of fp32`, { skip: noBf16 }, (t) => {
    const fp = run(name, "fp32", true), bf = run(name, "bf16", true);
    const d = diffs(bf.logps, fp.logps);
    assert.ok(d.max <= LOGPS_MAX && d.mean <= LOGPS_MEAN, `logps: max abs diff ${d.max}, mean ${d.mean}`);
    let worst = 0;
    for (const p of fp.table) {
      const err = relErr(bf.grads.subarray(p.offset, p.offset + p.size), fp.grads.subarray(p.offset, p.offset + p.size));
      assert.ok(err <= GRAD_REL, `adapter grad ${p.name}: relative error ${err} against fp32`);
      worst = Math.max(worst, err);
    }
    t.diagnostic(`${name} LoRA bf16 vs fp32: logps max abs diff ${d.max.toExponential(2)}, mean ${d.mean.toExponential(2)}; worst adapter gradient relative error ${worst.toExponential(2)}`);
  });
}

test("switching a model from bf16 back to fp32 gives the fp32 results bit for bit", { skip: noBf16 }, () => {
  const f = fixture("qwen3-tiny");
  const fp = run("qwen3-tiny", "fp32");
  const model = new NativeModel(f.config, { compute: "bf16" });
  try {
    loadWeightsInto(f.dir, model.table, model.params);
    model.forward(f.batch, { train: true });
    model.setCompute("fp32");
    assert.throws(() => model.backward(f.dlogps), /backward needs a forward/, "a mode switch drops the saved activations");
    const stats = model.forward(f.batch, { train: true });
    model.zeroGrad();
    model.backward(f.dlogps);
    assert.deepEqual(stats.logps, fp.logps);
    assert.deepEqual(Float32Array.from(model.grads), fp.grads);
  } finally {
    model.free();
  }
});

test("PREFTUNE_NO_BF16=1 forces the fallback: fp32 chosen with one note, and training is exactly fp32", () => {
  const keep = process.env.PREFTUNE_NO_BF16;
  process.env.PREFTUNE_NO_BF16 = "1";
  try {
    const s = bf16Support();
    assert.equal(s.available, false);
    assert.match(s.cpu, /disabled by PREFTUNE_NO_BF16/);
    const choice = chooseCompute({ bf16: true }, { allowSlow: true });
    assert.equal(choice.compute, "fp32");
    assert.equal(choice.notes.length, 1);
    assert.match(choice.notes[0], /bf16: true: no bf16 compute here .*training in fp32/);
    const f = fixture("llama-tiny");
    assert.throws(() => new NativeModel(f.config, { compute: "bf16" }), /bf16 compute is not available/);
    const fallback = run("llama-tiny", choice.compute);
    const plain = run("llama-tiny", undefined);
    assert.equal(fallback.compute, "fp32");
    assert.deepEqual(fallback.logps, plain.logps);
    assert.deepEqual(fallback.grads, plain.grads);
    assert.ok(maxAbs(fallback.logps, fallback.f.ref) <= 1e-5, "and that is the PyTorch-exact path");
  } finally {
    if (keep === undefined) delete process.env.PREFTUNE_NO_BF16;
    else process.env.PREFTUNE_NO_BF16 = keep;
  }
});

test("chooseCompute: fp16 gets a note and fp32; bf16 follows the CPU check", () => {
  const fp16 = chooseCompute({ fp16: true });
  assert.equal(fp16.compute, "fp32");
  assert.match(fp16.notes[0], /fp16: true: .*training in fp32/);
  assert.deepEqual(chooseCompute({}), { compute: "fp32", notes: [] });
  const s = bf16Support();
  const auto = chooseCompute({ bf16: true }, { allowSlow: false });
  assert.equal(auto.compute, s.available && s.fast ? "bf16" : "fp32");
  assert.equal(auto.notes.length, auto.compute === "bf16" ? 0 : 1);
  const forced = chooseCompute({ bf16: true }, { allowSlow: true });
  assert.equal(forced.compute, s.available ? "bf16" : "fp32");
});
