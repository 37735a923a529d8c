// DPO family against the hand-computed Case A of TRL's formulas (float64, rtol 1e-6), the
// finite-ness guard for alpha/js divergence, and ln 2 at policy == reference.
// Gradients are checked separately in gradcheck.test.ts.

import { test } from "node:test";
import assert from "node:assert/strict";
import { dpoLoss, DPO_LOSS_TYPES, type DpoConfig, type DpoInputs } from "../../src/losses/dpo.ts";
import { DPO_DEFAULTS } from "../../src/losses/index.ts";
import { close, rng, uniform } from "./helpers.ts";

const caseA: DpoInputs = {
  chosen: [-10, -5], rejected: [-12, -4], refChosen: [-11, -5.5], refRejected: [-11, -4.5],
  chosenTokens: [4, 2], rejectedTokens: [5, 3],
};
const cfg = (over: Partial<DpoConfig>): DpoConfig => ({ ...DPO_DEFAULTS, beta: 0.1, ...over });

const rows: [string, Partial<DpoConfig>, number[], number][] = [
  ["sigmoid", { loss_type: "sigmoid" }, [0.59813887, 0.69314718], 0.64564302],
  ["hinge", { loss_type: "hinge" }, [0.8, 1.0], 0.9],
  ["ipo", { loss_type: "ipo" }, [20.7025, 24.17361111], 22.43805556],
  ["robust", { loss_type: "robust", label_smoothing: 0.1 }, [0.57313887, 0.69314718], 0.63314302],
  ["exo_pair", { loss_type: "exo_pair", label_smoothing: 1e-3 }, [2.42201462, 2.76123071], 2.59162266],
  ["nca_pair", { loss_type: "nca_pair" }, [1.33879332, 1.3869193], 1.36285631],
  ["bco_pair", { loss_type: "bco_pair" }, [1.28879332, 1.3869193], 1.33785631],
  ["sppo_hard", { loss_type: "sppo_hard" }, [32.0, 50.5], 41.25],
  ["aot", { loss_type: "aot" }, [0.69314718, 0.59813887], 0.64564302],
  ["aot_unpaired", { loss_type: "aot_unpaired" }, [0.62095705, 0.66845965], 0.64470835],
  ["apo_zero", { loss_type: "apo_zero" }, [0.95004163, 1.0], 0.97502081],
  ["apo_down", { loss_type: "apo_down" }, [0.97514519, 1.0124974], 0.99382129],
  ["discopop", { loss_type: "discopop", discopop_tau: 0.05 }, [0.81476314, 0.84657359], 0.83066837],
  ["sigmoid_norm", { loss_type: "sigmoid_norm" }, [0.67090028, 0.68898919], 0.67994474],
  ["classic cDPO", { loss_type: "sigmoid", label_smoothing: 0.1, classic_cdpo: true }, [0.61813887, 0.69314718], 0.65564302],
  ["forward_kl", { loss_type: "sigmoid", f_divergence_type: "forward_kl" }, [0.58251671, 0.69314718], 0.63783195],
  ["js_divergence", { loss_type: "sigmoid", f_divergence_type: "js_divergence" }, [0.64439666, 0.69314718], 0.66877192],
  ["alpha_divergence", { loss_type: "sigmoid", f_divergence_type: "alpha_divergence", f_alpha_divergence_coef: 0.5 }, [0.59434912, 0.69314718], 0.64374815],
];

for (const [name, over, perEx, batch] of rows) {
  test(`dpo Case A: ${name}`, () => {
    const r = dpoLoss(caseA, cfg(over));
    close(r.losses, perEx, 1e-6, 1e-12, `${name} per-example`);
    close(r.loss, batch, 1e-6, 1e-12, `${name} batch`);
  });
}

test("dpo Case A: current TRL ignores label_smoothing for sigmoid (only classic cDPO uses it)", () => {
  close(dpoLoss(caseA, cfg({ loss_type: "sigmoid", label_smoothing: 0.1 })).loss, 0.64564302);
});

test("dpo Case A: metrics", () => {
  for (const lt of ["sigmoid", "ipo", "hinge"]) {
    const m = dpoLoss(caseA, cfg({ loss_type: lt })).metrics;
    close(m["rewards/chosen"], 0.075, 1e-6, 1e-12, "rewards/chosen");
    close(m["rewards/rejected"], -0.025, 1e-6, 1e-12, "rewards/rejected");
    close(m["rewards/margins"], 0.1, 1e-6, 1e-12, "rewards/margins");
    close(m["rewards/accuracies"], 0.5, 1e-6, 1e-12, "rewards/accuracies");
    close(m["logps/chosen"], -7.5, 1e-6, 1e-12, "logps/chosen");
    close(m["logps/rejected"], -8.0, 1e-6, 1e-12, "logps/rejected");
    assert.deepEqual(Object.keys(m).sort(), ["logps/chosen", "logps/rejected", "rewards/accuracies", "rewards/chosen", "rewards/margins", "rewards/rejected"]);
  }
});

test("dpo Case A: multi-loss sigmoid + sft, weights [1, 1] and MPO-style [0.8, 1.0]", () => {
  const nll = 1.2345;
  const r = dpoLoss({ ...caseA, chosenNll: nll }, cfg({ loss_type: ["sigmoid", "sft"] }));
  close(r.loss, 0.64564302 + nll);
  assert.equal(r.dChosenNll, 1);
  const w = dpoLoss({ ...caseA, chosenNll: nll }, cfg({ loss_type: ["sigmoid", "sft"], loss_weights: [0.8, 1.0] }));
  close(w.loss, 0.8 * 0.64564302 + nll);
  close(w.dChosen, Array.from(r.dChosen, (g) => 0.8 * g), 1e-12, 1e-15, "weighted dChosen");
});

test("dpo: loss is ln 2 when policy == reference (sigmoid, every f-divergence)", () => {
  const r = rng(7);
  const c = uniform(r, 8, -60, -5), rj = uniform(r, 8, -60, -5);
  for (const f of ["reverse_kl", "forward_kl", "js_divergence", "alpha_divergence"]) {
    const out = dpoLoss({ chosen: c, rejected: rj, refChosen: c, refRejected: rj, chosenTokens: uniform(r, 8, 1, 30), rejectedTokens: uniform(r, 8, 1, 30) },
      cfg({ loss_type: "sigmoid", f_divergence_type: f }));
    close(out.loss, Math.LN2, 1e-12, 1e-15, f);
    close(out.metrics["rewards/margins"], 0, 0, 1e-15, "margins");
  }
});

test("dpo: alpha and js divergence stay finite on TRL's large-logit test inputs", () => {
  const sets = [
    { chosen: [410.0, 0.1], rejected: [810.5, 0.2], refChosen: [-610.0, -0.1], refRejected: [110.6, 0.5] },
    { chosen: [410.0, 0.1], rejected: [95.5, 0.2], refChosen: [-610.0, -0.1], refRejected: [5.5, 0.5] },
  ];
  for (const s of sets) {
    for (const [f, a] of [["alpha_divergence", 0.5], ["alpha_divergence", 2.0], ["alpha_divergence", -1.0], ["js_divergence", 0.5]] as const) {
      for (const lt of DPO_LOSS_TYPES) {
        const out = dpoLoss({ ...s, chosenTokens: [3, 1], rejectedTokens: [4, 2], chosenNll: 1 },
          cfg({ loss_type: lt, f_divergence_type: f, f_alpha_divergence_coef: a, label_smoothing: lt === "exo_pair" ? 1e-3 : 0 }));
        assert.ok(Number.isFinite(out.loss), `${f}(${a}) ${lt}: loss ${out.loss}`);
        for (const g of [...out.dChosen, ...out.dRejected]) assert.ok(Number.isFinite(g), `${f}(${a}) ${lt}: grad ${g}`);
      }
    }
  }
});

test("dpo: WPO weights scale each pair's loss", () => {
  const base = dpoLoss(caseA, cfg({ loss_type: "sigmoid" }));
  const w = dpoLoss({ ...caseA, weights: [0.5, 0.25] }, cfg({ loss_type: "sigmoid" }));
  close(w.losses, [0.5 * base.losses[0], 0.25 * base.losses[1]], 1e-12);
  close(w.dChosen, [0.5 * base.dChosen[0], 0.25 * base.dChosen[1]], 1e-12);
});

test("dpo: bad config and input are named in the error", () => {
  assert.throws(() => dpoLoss(caseA, cfg({ loss_type: "sigmod" })), /loss_type "sigmod" is unknown/);
  assert.throws(() => dpoLoss(caseA, cfg({ loss_type: ["sigmoid", "sft"], loss_weights: [1] })), /loss_weights has 1 entries/);
  assert.throws(() => dpoLoss(caseA, cfg({ loss_type: "exo_pair", label_smoothing: 0 })), /exo_pair needs label_smoothing > 0/);
  assert.throws(() => dpoLoss(caseA, cfg({ loss_type: "robust", label_smoothing: 0.5 })), /robust needs label_smoothing in \[0, 0.5\)/);
  assert.throws(() => dpoLoss(caseA, cfg({ loss_type: "sft" })), /needs inputs.chosenNll/);
  assert.throws(() => dpoLoss(caseA, cfg({ f_divergence_type: "kl" })), /f_divergence_type "kl" is unknown/);
  assert.throws(() => dpoLoss({ ...caseA, refRejected: [1] }, cfg({})), /"refRejected" has 1 entries but the batch has 2/);
  assert.throws(() => dpoLoss({ ...caseA, chosen: [NaN, 1] }, cfg({})), /"chosen"\[0\] is NaN/);
});
