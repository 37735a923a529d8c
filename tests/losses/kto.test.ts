// KTO against hand-computed Case C of TRL's formulas (float64, rtol 1e-6): loss, weights, apo_zero_unpaired,
// metrics, the z clamp, empty halves, and the KTO paper's (Eq. 8) weight-guidance warning.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ktoLoss, ktoWeightWarning, type KtoConfig } from "../../src/losses/kto.ts";
import { KTO_DEFAULTS } from "../../src/losses/index.ts";
import { close } from "./helpers.ts";

const caseC = {
  logps: [-5, -6, -7, -8], refLogps: [-5.5, -6, -6.5, -8.5], labels: [true, false, true, false],
  klLogps: [-5.7, -5.1, -7.3, -8.0], refKlLogps: [-6.0, -5.0, -7.5, -8.1],
};
const cfg = (over: Partial<KtoConfig> = {}): KtoConfig => ({ ...KTO_DEFAULTS, ...over });

test("kto Case C: per-row losses, batch loss and metrics", () => {
  const r = ktoLoss(caseC, cfg());
  close([r.losses[0], r.losses[2]], [0.4906261, 0.51561992], 1e-6, 1e-12, "desirable");
  close([r.losses[1], r.losses[3]], [0.49687504, 0.5093739], 1e-6, 1e-12, "undesirable");
  close(r.loss, 0.50312374);
  const m = r.metrics;
  close(m.kl, 0.125, 1e-6, 1e-12, "kl");
  close(m["rewards/chosen"], 0.0, 1e-6, 1e-12, "rewards/chosen");
  close(m["rewards/rejected"], 0.025, 1e-6, 1e-12, "rewards/rejected");
  close(m["rewards/margins"], -0.025, 1e-6, 1e-12, "rewards/margins");
  close(m["logps/chosen"], -6, 1e-6, 1e-12, "logps/chosen");
  close(m["logps/rejected"], -7, 1e-6, 1e-12, "logps/rejected");
  assert.ok(!("rewards/accuracies" in m), "KTO logs no rewards/accuracies");
});

test("kto Case C: desirable_weight 1.33 and apo_zero_unpaired", () => {
  close(ktoLoss(caseC, cfg({ desirable_weight: 1.33 })).loss, 0.58613904);
  const apo = ktoLoss({ ...caseC, klLogps: null, refKlLogps: null }, cfg({ loss_type: "apo_zero_unpaired" }));
  close(apo.loss, 0.50312435);
  assert.equal(apo.metrics.kl, 0);
});

test("kto: a negative mean KL difference is clamped to z = 0", () => {
  const neg = { ...caseC, klLogps: [-7, -7, -7, -7], refKlLogps: [-6, -6, -6, -6] };
  const r = ktoLoss(neg, cfg());
  assert.equal(r.metrics.kl, 0);
  close(r.loss, ktoLoss({ ...caseC, kl: 0 }, cfg()).loss, 1e-15);
  close(ktoLoss({ ...caseC, kl: -3 }, cfg()).loss, r.loss, 1e-15);
});

test("kto: z carries no gradient, and an all-desirable batch has no rejected metrics", () => {
  const a = ktoLoss(caseC, cfg()), b = ktoLoss({ ...caseC, kl: 0.125 }, cfg());
  close(a.dLogps, b.dLogps, 1e-15);
  const onlyD = ktoLoss({ ...caseC, labels: [1, 1, 1, 1] }, cfg());
  assert.ok(Number.isFinite(onlyD.loss));
  assert.deepEqual(Object.keys(onlyD.metrics).sort(), ["kl", "logps/chosen", "rewards/chosen"]);
  const onlyU = ktoLoss({ ...caseC, labels: [0, 0, 0, 0] }, cfg());
  assert.deepEqual(Object.keys(onlyU.metrics).sort(), ["kl", "logps/rejected", "rewards/rejected"]);
});

test("kto: missing KL rows for loss_type kto is a clear error", () => {
  assert.throws(() => ktoLoss({ ...caseC, klLogps: null }, cfg()), /needs klLogps and refKlLogps/);
  assert.throws(() => ktoLoss({ ...caseC, klLogps: [], refKlLogps: [] }, cfg()), /per_device_train_batch_size > 1/);
  assert.throws(() => ktoLoss({ ...caseC, labels: [true] }, cfg()), /labels has 1 entries/);
});

test("kto weight guidance (paper Eq. 8, TRL's ranges)", () => {
  assert.equal(ktoWeightWarning(100, 100, 1, 1), null);
  // 100 desirable vs 300 undesirable: desirable_weight ∈ [3, 3.99] or undesirable_weight ∈ [0.25, 0.33]
  const w = ktoWeightWarning(100, 300, 1, 1);
  assert.ok(w && w.includes("[3, 3.99]") && w.includes("[0.25, 0.33]"), String(w));
  assert.equal(ktoWeightWarning(100, 300, 3.5, 1), null);
  assert.equal(ktoWeightWarning(100, 300, 1, 0.3), null);
  // 400 desirable vs 100 undesirable with defaults: undesirable_weight ∈ [3.01, 4]
  assert.equal(ktoWeightWarning(400, 100, 1, 1)?.includes("[3.01, 4]"), true);
  // no desirable rows: TRL clamps n_D to 1 and takes n_U = total − 1
  assert.ok(ktoWeightWarning(0, 10, 1, 1)?.includes("1 desirable and 9 undesirable"));
});
