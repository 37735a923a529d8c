// The method registry (src/train/methods.ts): config validation refuses, before anything is loaded, every loss
// setting the losses would refuse at step 1 (naming key, value and fix), and accepts every one they take; the
// objectives refuse the same settings with the same words; data kinds, references and defaults come from it.
// Not the loss math (tests/losses) and not the training loop (loop.test.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { dpoLoss, DPO_PARAM_RULES, type DpoLossType } from "../../src/losses/dpo.ts";
import { DPO_DEFAULTS } from "../../src/losses/index.ts";
import { ConfigError, defaultsFor, resolveConfig } from "../../src/train/config.ts";
import { lossProblems, METHODS, methodSpec, methodsWhere, needsReference } from "../../src/train/methods.ts";
import { pairedStep, type MethodConfig } from "../../src/train/objectives.ts";
import { usesOrpoRules } from "../../src/data/tokenize.ts";
import { configFails } from "../helpers/config.ts";

const base = { model_name_or_path: "m", dataset: "d", output_dir: "o" };
const refused = configFails;

test("loss-type/parameter combinations that would fail at step 1 are refused at config time, naming key, value and fix", () => {
  refused({ ...base, method: "dpo", loss_type: "exo_pair", label_smoothing: 0 }, /loss_type exo_pair with label_smoothing 0: exo_pair needs label_smoothing > 0/, /set label_smoothing: 1e-3/);
  refused({ ...base, method: "dpo", loss_type: "exo_pair" }, /exo_pair with label_smoothing 0/);   // the default ε is 0
  refused({ ...base, method: "dpo", loss_type: ["sigmoid", "robust"], loss_weights: [1, 1], label_smoothing: 0.5 }, /loss_type robust with label_smoothing 0.5: robust needs label_smoothing in \[0, 0.5\)/, /below 0.5/);
  refused({ ...base, method: "kto", loss_type: "kto", per_device_train_batch_size: 1 }, /per_device_train_batch_size 1/, /≥ 2 \(or loss_type apo_zero_unpaired\)/);
  refused({ ...base, method: "ipo", loss_type: ["ipo", "sigmoid"] }, /method ipo with loss_type \["ipo","sigmoid"\]: ipo takes one loss_type/, /use method dpo/);
  refused({ ...base, method: "cpo", loss_type: "kto" }, /method cpo with loss_type "kto": use one of sigmoid, hinge, ipo, simpo, alphapo \(kto is a loss_type of method kto\)/);
  refused({ ...base, method: "dpo", loss_type: [] }, /loss_type/);
  // accepted: the same loss types with a valid ε
  assert.deepEqual(resolveConfig({ ...base, method: "dpo", loss_type: "exo_pair", label_smoothing: 1e-3 }).config.loss_type, ["exo_pair"]);
  assert.ok(resolveConfig({ ...base, method: "dpo", loss_type: "robust", label_smoothing: 0.49 }));
});

test("settings config validation used to pass and the objectives refused now train: simpo alphapo, kto [kto]", () => {
  assert.equal(resolveConfig({ ...base, method: "simpo", loss_type: "alphapo" }).config.loss_type, "alphapo");
  // a one-element list is its element for single-loss-type methods (the loop's KL switch reads the string)
  assert.equal(resolveConfig({ ...base, method: "kto", loss_type: ["kto"] }).config.loss_type, "kto");
  assert.equal(resolveConfig({ ...base, method: "cpo", loss_type: ["hinge"] }).config.loss_type, "hinge");
  assert.deepEqual(resolveConfig({ ...base, method: "dpo", loss_type: "hinge" }).config.loss_type, ["hinge"]);   // DPOConfig's list
});

test("what config validation accepts for every method and loss type, the objectives accept (and the reverse)", () => {
  // a policy that records that it was reached: resolveMethod ran without refusing
  class Reached extends Error {}
  const policy = { forward() { throw new Reached(); } } as never;
  const pb = { batch: { B: 2, T: 1, ids: new Int32Array(2), lengths: new Int32Array([1, 1]) }, completionMask: new Uint8Array(2) } as never;
  for (const m of METHODS) {
    const s = methodSpec(m);
    const types = s.lossTypes.length ? s.lossTypes : [null];
    for (const t of types) for (const eps of [0, 1e-3, 0.5]) {
      const raw: Record<string, unknown> = { ...base, method: m, ...(t !== null && { loss_type: t }), ...(s.keys.includes("label_smoothing") && { label_smoothing: eps }) };
      let config: ReturnType<typeof resolveConfig>["config"] | null = null;
      try { config = resolveConfig(raw).config; } catch (e) { assert.ok(e instanceof ConfigError); }
      if (s.data !== "paired") continue;
      const cfg: MethodConfig = { method: m, beta: 0.1, loss_type: t, label_smoothing: s.keys.includes("label_smoothing") ? eps : undefined };
      const ref = s.reference ? { kind: "precomputed" as const } : { kind: "none" as const };
      let accepted = true;
      try { pairedStep(policy, ref, pb, cfg, { backward: false, lossScale: 1, refLogps: { chosen: new Float64Array(1), rejected: new Float64Array(1) } }); } catch (e) { if (!(e instanceof Reached)) accepted = false; }
      assert.equal(accepted, config !== null, `${m} ${t} label_smoothing ${eps}: config ${config ? "accepts" : "refuses"}, objectives ${accepted ? "accept" : "refuse"}`);
    }
  }
});

test("the registry's label_smoothing rules are exactly what dpoLoss checks", () => {
  const inputs = { chosen: [-1], rejected: [-2], refChosen: [-1.5], refRejected: [-1.5], chosenTokens: [3], rejectedTokens: [3] };
  for (const t of Object.keys(DPO_PARAM_RULES) as DpoLossType[]) {
    for (const eps of [0, 1e-6, 0.1, 0.4999, 0.5, 0.9]) {
      const registryOk = lossProblems("dpo", { loss_type: [t], label_smoothing: eps }).length === 0;
      let lossOk = true;
      try { dpoLoss(inputs, { ...DPO_DEFAULTS, loss_type: [t], label_smoothing: eps }); } catch { lossOk = false; }
      assert.equal(registryOk, lossOk, `${t} ε ${eps}`);
    }
  }
});

test("data kinds, references, tokenization rules and per-method defaults come from the registry", () => {
  assert.deepEqual(methodsWhere((s) => s.reference), ["dpo", "ipo", "kto"]);
  assert.ok(needsReference("kto") && !needsReference("orpo"));
  assert.deepEqual(methodsWhere((s) => s.data === "paired"), ["orpo", "dpo", "ipo", "simpo", "cpo"]);
  assert.deepEqual(METHODS.filter((m) => usesOrpoRules(m)), ["orpo", "simpo", "cpo"]);
  for (const m of METHODS) {
    const d = defaultsFor(m), s = methodSpec(m);
    assert.equal(d.learning_rate, s.defaults.learning_rate);
    assert.equal(d.train_sampling_strategy, s.defaults.train_sampling_strategy);
    if (s.keys.includes("beta")) assert.equal(d.beta, s.defaults.beta);
  }
  assert.deepEqual([defaultsFor("simpo").cpo_alpha, defaultsFor("cpo").cpo_alpha, defaultsFor("kto").train_sampling_strategy, defaultsFor("sft").learning_rate], [0, 1, "sequential", 2e-5]);
  // a key a method does not read is refused for it, by the registry's key lists
  assert.throws(() => resolveConfig({ ...base, method: "orpo", label_smoothing: 0.1 }), /label_smoothing does not apply to method orpo \(it is for dpo, ipo, simpo, cpo\)/);
  assert.throws(() => methodSpec("rlhf"), /method "rlhf" is unknown; use one of orpo, dpo, ipo, kto, simpo, cpo, sft/);
});
