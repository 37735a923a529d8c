// LR schedules against values worked out by hand from transformers' formulas (optimization.py), the warmup
// and step arithmetic of the HF Trainer, and fractional intervals.
import { test } from "node:test";
import assert from "node:assert/strict";
import { learningRate, lrLambda, planSteps, resolveInterval, warmupSteps, type SchedulerType } from "../../src/train/schedule.ts";

const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);

function check(type: SchedulerType, warmup: number, total: number, expected: [number, number][]) {
  for (const [step, want] of expected) close(lrLambda({ type, baseLr: 1, warmupSteps: warmup, totalSteps: total }, step), want, `${type} w=${warmup} T=${total} step ${step}`);
}

test("linear: warmup from 0, then down to 0 at the last step", () => {
  // (step < w) ? step / w : (T - step) / (T - w)
  check("linear", 2, 10, [[0, 0], [1, 0.5], [2, 1], [3, 7 / 8], [6, 0.5], [9, 1 / 8], [10, 0], [12, 0]]);
  check("linear", 0, 4, [[0, 1], [1, 0.75], [3, 0.25]]);
});

test("cosine: half a cosine after warmup", () => {
  // 0.5 (1 + cos(pi · progress)), progress = (step - w) / (T - w)
  check("cosine", 2, 10, [[0, 0], [1, 0.5], [2, 1], [4, 0.8535533905932737], [6, 0.5], [8, 0.14644660940672627], [10, 0]]);
  check("cosine", 0, 3, [[1, 0.75], [2, 0.25]]);
});

test("constant ignores warmup; constant_with_warmup ramps then holds", () => {
  check("constant", 5, 10, [[0, 1], [3, 1], [10, 1]]);
  check("constant_with_warmup", 4, 10, [[0, 0], [1, 0.25], [3, 0.75], [4, 1], [9, 1]]);
});

test("inverse_sqrt: timescale = warmup steps, or 10000 without warmup", () => {
  // after warmup: 1 / sqrt((step + timescale - w) / timescale)
  check("inverse_sqrt", 4, 100, [[2, 0.5], [4, 1], [16, 0.5], [36, 1 / 3], [100, 0.2]]);
  check("inverse_sqrt", 0, 100, [[0, 1], [30000, 0.5], [90000, 1 / Math.sqrt(10)]]);
});

test("learningRate scales the multiplier by the base lr", () => {
  close(learningRate({ type: "linear", baseLr: 5e-6, warmupSteps: 0, totalSteps: 10 }, 5), 2.5e-6, "linear lr");
});

test("warmup: warmup_steps wins, else ceil(total · warmup_ratio)", () => {
  assert.equal(warmupSteps(100, 0, 0.1), 10);
  assert.equal(warmupSteps(95, 0, 0.1), 10);   // ceil(9.5)
  assert.equal(warmupSteps(95, 7, 0), 7);
  assert.equal(warmupSteps(95, 0, 0), 0);
});

test("step plan: ceil(batches / accumulation) updates per epoch; max_steps wins over epochs", () => {
  assert.deepEqual(planSteps(10, 3, 2, -1, 3), { microBatchesPerEpoch: 4, updatesPerEpoch: 2, totalSteps: 6, epochs: 3 });
  assert.deepEqual(planSteps(10, 3, 2, 5, 3), { microBatchesPerEpoch: 4, updatesPerEpoch: 2, totalSteps: 5, epochs: 3 });
  assert.deepEqual(planSteps(10, 2, 2, -1, 1.5), { microBatchesPerEpoch: 5, updatesPerEpoch: 3, totalSteps: 5, epochs: 2 });
  assert.equal(planSteps(10, 3, 1, -1, 1, true).microBatchesPerEpoch, 3);
  assert.throws(() => planSteps(0, 3, 1, -1, 1), /empty/);
});

test("intervals below 1 are fractions of the total steps", () => {
  assert.equal(resolveInterval(0.1, 95), 10);
  assert.equal(resolveInterval(25, 95), 25);
});
