// CPO / SimPO / AlphaPO against hand-computed Case D of TRL's formulas (float64, rtol 1e-6), plus the
// alphapo sugar and the summed/averaged logp choice per loss_type.

import { test } from "node:test";
import assert from "node:assert/strict";
import { cpoLoss, cpoLogpKind, type CpoConfig } from "../../src/losses/cpo.ts";
import { CPO_DEFAULTS } from "../../src/losses/index.ts";
import { close } from "./helpers.ts";

const cfg = (over: Partial<CpoConfig>): CpoConfig => ({ ...CPO_DEFAULTS, ...over });
const sums = { chosen: [-20, -15], rejected: [-25, -14] };
const avgs = { chosen: [-0.8, -1.1], rejected: [-1.3, -1.0] };

test("cpo Case D: sigmoid with NLL, and hinge", () => {
  const s = cpoLoss({ ...sums, nll: 1.5 }, cfg({ beta: 0.1, loss_type: "sigmoid", cpo_alpha: 1 }));
  close(s.losses, [0.47407698, 0.74439666], 1e-6, 1e-12, "sigmoid losses");
  close(s.loss, 2.10923682);
  close(s.metrics.nll_loss, 1.5);
  assert.equal(s.dNll, 1);
  const h = cpoLoss({ ...sums, nll: 1.5 }, cfg({ beta: 0.1, loss_type: "hinge" }));
  close(h.losses, [0.5, 1.1], 1e-6, 1e-12, "hinge losses");
  close(h.metrics["rewards/chosen"], 0.1 * -17.5);
  close(h.metrics["rewards/accuracies"], 0.5);
  close(h.metrics["logps/rejected"], -19.5);
});

test("cpo Case D: SimPO", () => {
  const r = cpoLoss(avgs, cfg({ beta: 2, loss_type: "simpo", simpo_gamma: 0.5, cpo_alpha: 0 }));
  close(r.losses, [0.47407698, 1.10318605], 1e-6, 1e-12, "simpo losses");
  close(r.loss, 0.78863152);
  close(r.metrics["rewards/chosen"], -1.9);
  close(r.metrics["rewards/rejected"], -2.3);
  close(r.metrics["rewards/margins"], 0.4);
  assert.equal(r.metrics.nll_loss, 0);
  assert.deepEqual(Object.keys(r.metrics).sort(), ["logps/chosen", "logps/rejected", "nll_loss", "rewards/accuracies", "rewards/chosen", "rewards/margins", "rewards/rejected"]);
});

test("cpo Case D: AlphaPO (α = 0.25 on the simpo path, cpo_alpha = 0)", () => {
  const a = cpoLoss(avgs, cfg({ beta: 2, loss_type: "simpo", simpo_gamma: 0.5, cpo_alpha: 0, alpha: 0.25 }));
  close(a.losses, [0.37078359, 1.14370234], 1e-6, 1e-12, "alphapo losses");
  close(a.loss, 0.75724296);
  close(a.metrics["rewards/chosen"], -2.15173373);
  // "alphapo" is sugar for simpo with cpo_alpha forced to 0: the NLL is ignored even if given
  const sugar = cpoLoss({ ...avgs, nll: 9 }, cfg({ beta: 2, loss_type: "alphapo", simpo_gamma: 0.5, cpo_alpha: 1, alpha: 0.25 }));
  close(sugar.loss, 0.75724296);
  assert.equal(sugar.dNll, 0);
});

test("cpo: which logps each loss_type takes", () => {
  assert.equal(cpoLogpKind("sigmoid"), "sum");
  assert.equal(cpoLogpKind("hinge"), "sum");
  assert.equal(cpoLogpKind("ipo"), "avg");
  assert.equal(cpoLogpKind("simpo"), "avg");
  assert.equal(cpoLogpKind("alphapo"), "avg");
});

test("cpo: errors", () => {
  assert.throws(() => cpoLoss(sums, cfg({ cpo_alpha: 1 })), /nll = undefined is invalid/);
  assert.throws(() => cpoLoss(sums, cfg({ loss_type: "dpo" as never, cpo_alpha: 0 })), /loss_type "dpo" is unknown/);
});
