// Finite-difference gradient checks (central differences in float64, seeded random inputs) of every loss
// and every loss_type with respect to every differentiable input, of aggregate.ts's token-gradient
// mapping and NLL helpers, and of the full token → sequence → loss → token chain the trainer runs.

import { test } from "node:test";
import { dpoLoss, DPO_LOSS_TYPES, F_DIVERGENCE_TYPES, type DpoConfig } from "../../src/losses/dpo.ts";
import { orpoLoss } from "../../src/losses/orpo.ts";
import { ktoLoss, type KtoLossType } from "../../src/losses/kto.ts";
import { cpoLoss, type CpoLossType } from "../../src/losses/cpo.ts";
import { nllMean, nllTokenGrads, sequenceMask, sequenceStats, tokenGrads } from "../../src/losses/aggregate.ts";
import { DPO_DEFAULTS } from "../../src/losses/index.ts";
import { close, fdGrad, rng, uniform } from "./helpers.ts";

/** Compare analytic and FD gradients with a tolerance scaled to the loss (FD round-off grows with |f|). */
function checkGrad(what: string, f: (x: Float64Array) => number, x: Float64Array, analytic: ArrayLike<number>): void {
  const fd = fdGrad(f, x);
  const scale = Math.max(1, Math.abs(f(x)));
  close(analytic, fd, 1e-5, 1e-7 * scale, what);
}

test("gradcheck dpo: every loss_type × every f-divergence, w.r.t. chosen, rejected and chosenNll", () => {
  const r = rng(1234);
  const B = 5;
  const chosen0 = uniform(r, B, -40, -5), rejected0 = uniform(r, B, -40, -5);
  const refChosen = Float64Array.from(chosen0, (v) => v + (r() - 0.5) * 8);
  const refRejected = Float64Array.from(rejected0, (v) => v + (r() - 0.5) * 8);
  const chosenTokens = Float64Array.from({ length: B }, () => 1 + Math.floor(r() * 20));
  const rejectedTokens = Float64Array.from({ length: B }, () => 1 + Math.floor(r() * 20));
  const fdivs: [string, number][] = [...F_DIVERGENCE_TYPES.map((f) => [f, 0.5] as [string, number]), ["alpha_divergence", 1.5]];
  const cases: [string, Partial<DpoConfig>][] = [];
  for (const lt of DPO_LOSS_TYPES) {
    for (const [f, a] of fdivs) {
      cases.push([`${lt}/${f}(${a})`, { loss_type: lt, f_divergence_type: f, f_alpha_divergence_coef: a, label_smoothing: lt === "exo_pair" ? 1e-3 : lt === "robust" || lt.startsWith("aot") ? 0.1 : 0 }]);
    }
  }
  cases.push(["multi sigmoid+bco_pair+sft [0.8,0.2,1]", { loss_type: ["sigmoid", "bco_pair", "sft"], loss_weights: [0.8, 0.2, 1.0] }]);
  cases.push(["classic cDPO", { loss_type: "sigmoid", label_smoothing: 0.2, classic_cdpo: true }]);
  cases.push(["discopop tau 0.3", { loss_type: "discopop", discopop_tau: 0.3 }]);
  const weights = uniform(r, B, 0.2, 1);
  for (const withWeights of [false, true]) {
    for (const [name, over] of cases) {
      const config: DpoConfig = { ...DPO_DEFAULTS, beta: 0.1 + r() * 0.4, ...over };
      const x = Float64Array.from([...chosen0, ...rejected0, 1.7]); // chosen (B), rejected (B), chosenNll
      const run = (v: Float64Array) => dpoLoss({
        chosen: v.subarray(0, B), rejected: v.subarray(B, 2 * B), refChosen, refRejected, chosenTokens, rejectedTokens,
        chosenNll: v[2 * B], weights: withWeights ? weights : undefined,
      }, config);
      const out = run(x);
      checkGrad(`dpo ${name}${withWeights ? " +WPO" : ""}`, (v) => run(v).loss, x, [...out.dChosen, ...out.dRejected, out.dChosenNll]);
    }
  }
});

test("gradcheck orpo: w.r.t. chosenAvg, rejectedAvg and nll", () => {
  const r = rng(99);
  for (let rep = 0; rep < 5; rep++) {
    const B = 6;
    const x = Float64Array.from([...uniform(r, B, -3, -0.01), ...uniform(r, B, -3, -0.01), r() * 3]);
    x[0] = -1e-3; x[B] = -0.69; // near 0 and near the log1mexp branch point
    const beta = 0.05 + r();
    const run = (v: Float64Array) => orpoLoss({ chosenAvg: v.subarray(0, B), rejectedAvg: v.subarray(B, 2 * B), nll: v[2 * B] }, { beta });
    const out = run(x);
    checkGrad(`orpo rep ${rep}`, (v) => run(v).loss, x, [...out.dChosenAvg, ...out.dRejectedAvg, out.dNll]);
  }
});

test("gradcheck kto: kto and apo_zero_unpaired, both weightings, w.r.t. logps (z held as a constant)", () => {
  const r = rng(5);
  const N = 7;
  for (const loss_type of ["kto", "apo_zero_unpaired"] as KtoLossType[]) {
    for (const [wD, wU] of [[1, 1], [1.33, 0.7]]) {
      const x = uniform(r, N, -30, -5);
      const refLogps = Float64Array.from(x, (v) => v + (r() - 0.5) * 6);
      const labels = Array.from({ length: N }, (_, i) => i % 3 !== 0);
      const klLogps = uniform(r, N, -30, -5), refKlLogps = Float64Array.from(klLogps, (v) => v - r() * 2);
      const config = { beta: 0.1 + r(), desirable_weight: wD, undesirable_weight: wU, loss_type };
      const run = (v: Float64Array) => ktoLoss({ logps: v, refLogps, labels, klLogps, refKlLogps }, config);
      checkGrad(`kto ${loss_type} (${wD}, ${wU})`, (v) => run(v).loss, x, run(x).dLogps);
    }
  }
});

test("gradcheck cpo: every loss_type, with and without AlphaPO α and smoothing, w.r.t. chosen, rejected, nll", () => {
  const r = rng(77);
  const B = 5;
  for (const loss_type of ["sigmoid", "hinge", "ipo", "simpo", "alphapo"] as CpoLossType[]) {
    for (const alpha of [0, 0.25, -0.5]) {
      for (const label_smoothing of [0, 0.1]) {
        const avg = loss_type === "ipo" || loss_type === "simpo" || loss_type === "alphapo";
        const lo = avg ? -3 : -40, hi = avg ? -0.1 : -5;
        const x = Float64Array.from([...uniform(r, B, lo, hi), ...uniform(r, B, lo, hi), r() * 2]);
        const config = { beta: avg ? 2 : 0.1, loss_type, cpo_alpha: 0.7, simpo_gamma: 0.5, alpha: avg ? alpha : alpha / 20, label_smoothing };
        const run = (v: Float64Array) => cpoLoss({ chosen: v.subarray(0, B), rejected: v.subarray(B, 2 * B), nll: v[2 * B] }, config);
        const out = run(x);
        checkGrad(`cpo ${loss_type} α=${alpha} ε=${label_smoothing}`, (v) => run(v).loss, x, [...out.dChosen, ...out.dRejected, out.dNll]);
      }
    }
  }
});

test("gradcheck aggregate: tokenGrads is the adjoint of sequenceStats' sum and avg", () => {
  const r = rng(3);
  const N = 4, T = 9;
  const logps = uniform(r, N * T, -5, 0);
  const mask = Uint8Array.from({ length: N * T }, (_, i) => (i % T !== 0 && r() < 0.7 ? 1 : 0));
  mask.fill(0, 2 * T, 3 * T); // one empty row: count 0, avg clamped
  const a = uniform(r, N, -2, 2), b = uniform(r, N, -2, 2);
  const f = (v: Float64Array) => {
    const s = sequenceStats(v, mask, N, T);
    let y = 0;
    for (let n = 0; n < N; n++) y += a[n] * s.sum[n] + b[n] * s.avg[n];
    return y;
  };
  const g = tokenGrads(a, b, mask, sequenceStats(logps, mask, N, T).count, N, T);
  checkGrad("tokenGrads", f, logps, g);
});

test("gradcheck aggregate: nllMean and nllTokenGrads", () => {
  const r = rng(4);
  const N = 3, T = 7;
  const logps = uniform(r, N * T, -6, 0);
  const mask = sequenceMask([7, 5, 3], N, T);
  checkGrad("nllMean", (v) => 2.5 * nllMean(v, mask, N, T).nll, logps, nllTokenGrads(2.5, mask, N, T));
});

test("gradcheck chain: ORPO from token logps (odds term on completion averages + NLL on whole chosen rows)", () => {
  const r = rng(11);
  const B = 3, T = 8, N = 2 * B;
  const lengths = [8, 6, 7, 5, 8, 4];
  const promptLen = [3, 2, 4, 3, 2, 4];
  const completion = new Uint8Array(N * T);
  for (let n = 0; n < N; n++) completion.fill(1, n * T + promptLen[n], n * T + lengths[n]);
  const seq = sequenceMask(lengths.slice(0, B), B, T);
  const logps = Float64Array.from({ length: N * T }, (_, i) => (i % T < lengths[Math.floor(i / T)] && i % T > 0 ? -3 * r() - 0.01 : 0));
  const beta = 0.3;
  const f = (v: Float64Array) => {
    const s = sequenceStats(v, completion, N, T);
    const nll = nllMean(v.subarray(0, B * T), seq, B, T).nll;
    return orpoLoss({ chosenAvg: s.avg.subarray(0, B), rejectedAvg: s.avg.subarray(B), nll }, { beta }).loss;
  };
  const s = sequenceStats(logps, completion, N, T);
  const out = orpoLoss({ chosenAvg: s.avg.subarray(0, B), rejectedAvg: s.avg.subarray(B), nll: nllMean(logps.subarray(0, B * T), seq, B, T).nll }, { beta });
  const dAvg = Float64Array.from([...out.dChosenAvg, ...out.dRejectedAvg]);
  const g = tokenGrads(null, dAvg, completion, s.count, N, T);
  nllTokenGrads(out.dNll, seq, B, T, g.subarray(0, B * T));
  checkGrad("orpo chain", f, logps, g);
});
