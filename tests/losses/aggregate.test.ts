// aggregate.ts: hand-computed Case B2 (TRL formulas, float64), masks, the NLL helpers, the token metrics in both TRL
// conventions, and the shape checks. The token-gradient mapping is finite-differenced in gradcheck.test.ts.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  maskedTokenMean, nllMean, nllTokenGrads, pairedTokenMetrics, sequenceLogitsMetrics, sequenceMask,
  sequenceStats, tokenGrads, unpairedTokenMetrics,
} from "../../src/losses/aggregate.ts";
import { sftLoss } from "../../src/losses/sft.ts";
import { close } from "./helpers.ts";

test("Case B2: sums and averages of label-aligned logps under the completion mask", () => {
  // TRL's post-shift rows [−0.2, −0.4, −0.6] and [−0.3 (prompt), −1.0, −2.0]; our column 0 holds 0.
  const logps = Float32Array.from([0, -0.2, -0.4, -0.6, 0, -0.3, -1.0, -2.0]);
  const mask = Uint8Array.from([0, 1, 1, 1, 0, 0, 1, 1]);
  const s = sequenceStats(logps, mask, 2, 4);
  close(s.sum, [-1.2, -3.0], 1e-6, 1e-12, "sum");
  close(s.avg, [-0.4, -1.5], 1e-6, 1e-12, "avg");
  assert.deepEqual(Array.from(s.count), [3, 2]);
});

test("sequenceStats: an empty completion has count 0 and avg 0 (count clamped at 1), never NaN", () => {
  const s = sequenceStats(Float64Array.from([0, -1, -2]), new Uint8Array(3), 1, 3);
  assert.deepEqual([s.sum[0], s.count[0], s.avg[0]], [0, 0, 0]);
  const g = tokenGrads(null, Float64Array.from([5]), new Uint8Array(3), s.count, 1, 3);
  assert.deepEqual(Array.from(g), [0, 0, 0]);
  const one = sequenceStats(Float64Array.from([0, -0.7, -2]), Uint8Array.from([0, 0, 1]), 1, 3);
  assert.deepEqual([one.sum[0], one.count[0], one.avg[0]], [-2, 1, -2]);
});

test("tokenGrads adds into out and only touches masked entries", () => {
  const mask = Uint8Array.from([0, 1, 1, 0, 0, 1]);
  const count = Float64Array.from([2, 1]);
  const out = Float32Array.from([1, 1, 1, 1, 1, 1]);
  tokenGrads(Float64Array.from([0.5, -1]), Float64Array.from([1, 3]), mask, count, 2, 3, out);
  close(out, [1, 2, 2, 1, 1, 3], 1e-7, 0, "accumulated");
});

test("sequenceMask covers positions 1..len−1 (ORPO's NLL set: prompt + completion, no padding)", () => {
  assert.deepEqual(Array.from(sequenceMask([4, 2, 0], 3, 4)), [0, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
  assert.throws(() => sequenceMask([5], 1, 4), /lengths\[0\] = 5 is outside/);
});

test("nllMean is a token-level mean over all masked tokens of all rows, not a mean of row means", () => {
  const logps = Float64Array.from([0, -1, -3, 0, -2, 0]);
  const mask = Uint8Array.from([0, 1, 1, 0, 1, 0]);
  const r = nllMean(logps, mask, 2, 3);
  close(r.nll, 2, 1e-12);
  assert.equal(r.tokens, 3);
  assert.deepEqual(nllMean(logps, new Uint8Array(6), 2, 3), { nll: 0, tokens: 0 });
  close(nllTokenGrads(1.5, mask, 2, 3), [0, -0.5, -0.5, 0, -0.5, 0], 1e-7);
});

test("pairedTokenMetrics (DPO current): completion-token-weighted logits, entropy, accuracy", () => {
  const B = 1, T = 4; // row 0 chosen, row 1 rejected
  const completionMask = Uint8Array.from([0, 0, 1, 1, 0, 1, 1, 1]);
  const m = pairedTokenMetrics({
    logps: new Float32Array(8),
    logitsMean: Float32Array.from([0, 9, 1, 3, 0, 2, 4, 6]),
    entropy: Float32Array.from([0, 9, 1, 2, 0, 3, 4, 5]),
    correct: Uint8Array.from([0, 1, 1, 0, 0, 1, 1, 1]),
  }, completionMask, B, T);
  close(m["logits/chosen"], 2, 1e-12);
  close(m["logits/rejected"], 4, 1e-12);
  close(m.entropy, 15 / 5, 1e-12);
  close(m.mean_token_accuracy, 0.5, 1e-12);
});

test("unpairedTokenMetrics (KTO): per-label logits, keys omitted when a side has no token", () => {
  const stats = { logitsMean: Float32Array.from([0, 1, 3, 0, 5, 0]), entropy: Float32Array.from([0, 1, 1, 0, 4, 0]) };
  const mask = Uint8Array.from([0, 1, 1, 0, 1, 0]);
  const both = unpairedTokenMetrics(stats, mask, [true, false], 2, 3);
  close(both["logits/chosen"], 2, 1e-12);
  close(both["logits/rejected"], 5, 1e-12);
  close(both.entropy, 2, 1e-12);
  const onlyChosen = unpairedTokenMetrics(stats, mask, [1, 1], 2, 3);
  assert.ok(!("logits/rejected" in onlyChosen));
});

test("sequenceLogitsMetrics (ORPO/CPO): mean over every real position, prompt included", () => {
  const lengths = [4, 3];
  const seq = sequenceMask(lengths, 2, 4);
  const lm = Float32Array.from([0, 1, 2, 3, 0, 10, 20, 0]);
  const m = sequenceLogitsMetrics(lm, seq, 1, 4);
  close(m["logits/chosen"], 2, 1e-12);
  close(m["logits/rejected"], 15, 1e-12);
});

test("sftLoss: token-mean NLL over completion tokens with its gradient and metrics", () => {
  const logps = Float32Array.from([0, -1, -2, 0, -4, -8]);
  const mask = Uint8Array.from([0, 1, 1, 0, 0, 1]);
  const r = sftLoss(logps, mask, 2, 3, { correct: Uint8Array.from([0, 1, 0, 0, 1, 1]), entropy: Float32Array.from([0, 1, 2, 0, 9, 3]) });
  close(r.loss, 11 / 3, 1e-7);
  assert.equal(r.tokens, 3);
  close(r.dLogps, [0, -1 / 3, -1 / 3, 0, 0, -1 / 3], 1e-6);
  close(r.metrics.mean_token_accuracy, 2 / 3, 1e-12);
  close(r.metrics.entropy, 2, 1e-12);
  assert.deepEqual(Object.keys(sftLoss(logps, mask, 2, 3).metrics), []);
});

test("shape mismatches name the array and the expected size", () => {
  assert.throws(() => sequenceStats(new Float32Array(5), new Uint8Array(6), 2, 3), /"logps" has 5 entries, expected N\*T = 2\*3 = 6/);
  assert.throws(() => maskedTokenMean(new Float32Array(6), new Uint8Array(4), 2, 3), /"mask" has 4 entries/);
  assert.throws(() => tokenGrads(new Float64Array(3), null, new Uint8Array(6), new Float64Array(2), 2, 3), /dSum has 3 entries, expected N = 2/);
});
