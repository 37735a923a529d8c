// ORPO against hand-computed Case B of TRL's formulas (float64, rtol 1e-6), the log1mexp stability values, and
// the avg logp = 0 / empty-completion guard. Gradients are checked in gradcheck.test.ts.

import { test } from "node:test";
import assert from "node:assert/strict";
import { orpoLoss, ORPO_MAX_AVG_LOGP } from "../../src/losses/orpo.ts";
import { log1mexp, logSigmoid } from "../../src/losses/numerics.ts";
import { close } from "./helpers.ts";

const caseB = { chosenAvg: [-0.5, -1.2], rejectedAvg: [-0.9, -1.0], nll: 0.8 };

test("orpo Case B: loss, per-pair terms and metrics", () => {
  const r = orpoLoss(caseB, { beta: 0.1 });
  close(r.loss, 0.86111262);
  close(r.losses, [0.1 * 0.36772894, 0.1 * 0.85452341], 1e-6, 1e-12, "losses = −β·logσ(log_odds)");
  const m = r.metrics;
  close(m.log_odds_ratio, -0.61112618, 1e-6, 1e-12, "log_odds_ratio");
  close(m.log_odds_chosen, 0.25531198, 1e-6, 1e-12, "log_odds_chosen");
  close(m["rewards/chosen"], -0.085, 1e-6, 1e-12, "rewards/chosen");
  close(m["rewards/rejected"], -0.095, 1e-6, 1e-12, "rewards/rejected");
  close(m["rewards/margins"], 0.01, 1e-6, 1e-12, "rewards/margins");
  close(m["rewards/accuracies"], 0.5, 1e-6, 1e-12, "rewards/accuracies");
  close(m["logps/chosen"], -0.85, 1e-6, 1e-12, "logps/chosen");
  close(m["logps/rejected"], -0.95, 1e-6, 1e-12, "logps/rejected");
  close(m.nll_loss, 0.8, 1e-6, 1e-12, "nll_loss");
  assert.deepEqual(Object.keys(m).sort(), ["log_odds_chosen", "log_odds_ratio", "logps/chosen", "logps/rejected", "nll_loss",
    "rewards/accuracies", "rewards/chosen", "rewards/margins", "rewards/rejected"]);
  assert.equal(r.dNll, 1);
});

test("orpo Case B: per-pair log odds and logσ", () => {
  // log_odds is not returned per pair; rebuild it from the same formula to pin the intermediate values.
  const lo = caseB.chosenAvg.map((c, i) => c - caseB.rejectedAvg[i] - (log1mexp(c) - log1mexp(caseB.rejectedAvg[i])));
  close(lo, [0.81091669, -0.30029273], 1e-6, 1e-12, "log_odds");
  close(lo.map(logSigmoid), [-0.36772894, -0.85452341], 1e-6, 1e-12, "logσ(log_odds)");
});

test("log1mexp: stable near 0 where the naive float32 formula breaks", () => {
  close(log1mexp(-1e-8), -18.4206807, 1e-6);
  close(log1mexp(-1e-6), -13.8155111, 1e-6);
  close(log1mexp(-5), Math.log(1 - Math.exp(-5)), 1e-12);
  close(log1mexp(-Math.LN2), Math.log(0.5), 1e-12);
  // naive float32: exp(−1e−8) rounds to exactly 1, so log1p(−1) = −inf
  assert.equal(Math.log1p(-Math.fround(Math.exp(Math.fround(-1e-8)))), -Infinity);
});

test("orpo: avg logp = 0 (empty completion) and positive rounding never give NaN", () => {
  for (const [c, r] of [[0, -1], [-1, 0], [0, 0], [1e-7, -0.3], [-2e-7, -3e-7]]) {
    const out = orpoLoss({ chosenAvg: [c], rejectedAvg: [r], nll: 0.5 }, { beta: 0.1 });
    assert.ok(Number.isFinite(out.loss), `loss at (${c}, ${r}) = ${out.loss}`);
    for (const k of Object.keys(out.metrics)) assert.ok(Number.isFinite(out.metrics[k]), `${k} at (${c}, ${r})`);
    assert.ok(Number.isFinite(out.dChosenAvg[0]) && Number.isFinite(out.dRejectedAvg[0]), `grads at (${c}, ${r})`);
  }
  // both sides clamped: log odds 0, loss = nll + β·ln 2, no gradient through the clamp
  const z = orpoLoss({ chosenAvg: [0], rejectedAvg: [0], nll: 0.5 }, { beta: 0.1 });
  close(z.loss, 0.5 + 0.1 * Math.LN2, 1e-12);
  assert.equal(z.dChosenAvg[0], 0);
  assert.equal(z.dRejectedAvg[0], 0);
  // just below the clamp nothing changes
  const below = ORPO_MAX_AVG_LOGP * 2;
  const b = orpoLoss({ chosenAvg: [below], rejectedAvg: [-1], nll: 0 }, { beta: 1 });
  const lo = below + 1 - (log1mexp(below) - log1mexp(-1));
  close(b.loss, -logSigmoid(lo), 1e-12);
});

test("orpo: bad input is named in the error", () => {
  assert.throws(() => orpoLoss({ chosenAvg: [NaN], rejectedAvg: [-1], nll: 0 }, { beta: 0.1 }), /"chosenAvg"\[0\] is NaN.*sequenceStats/);
  assert.throws(() => orpoLoss({ chosenAvg: [-1, -2], rejectedAvg: [-1], nll: 0 }, { beta: 0.1 }), /"rejectedAvg" has 1 entries/);
  assert.throws(() => orpoLoss({ chosenAvg: [-1], rejectedAvg: [-1], nll: NaN }, { beta: 0.1 }), /nll = NaN/);
  assert.throws(() => orpoLoss({ chosenAvg: [], rejectedAvg: [], nll: 0 }, { beta: 0.1 }), /empty batch/);
});
