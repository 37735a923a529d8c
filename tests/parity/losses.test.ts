// Parity of the training objectives (src/train/objectives.ts) with the PyTorch/TRL fixtures in
// tests/fixtures/losses: loss, every TRL metric, every parameter gradient by HF name, for ORPO, DPO, IPO,
// KTO and SimPO on llama-tiny and qwen2-tiny (reference = policy and perturbed reference), then the 20-step
// ORPO and DPO AdamW trajectories. Nothing here needs torch; the native core does all the model math.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { AdamW, NativeModel, setNumThreads } from "../../src/core/native.ts";
import { readModelDir } from "../../src/models/checkpoint.ts";
import { readHeader, readTensor, type SafetensorsHeader } from "../../src/models/safetensors.ts";
import { pairedStep, unpairedStep, type MethodConfig, type PairBatch, type Reference, type StepOutput, type UnpairedBatch } from "../../src/train/objectives.ts";
import { loadReference } from "../../src/train/reference.ts";
import { relErr } from "../helpers/compare.ts";

const fixtures = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures");
const lossDir = join(fixtures, "losses");
const coreDir = (model: string) => join(fixtures, "core", model);

/**
 * Fixture metrics we deliberately compute differently, with the reason. They are not skipped silently:
 * each is compared with the fixture's `alt.<key>`, the same statistic over the positions we do compute.
 *  - ORPO/SimPO logits/chosen|rejected: TRL averages the logits of every position, padding included (and
 *    for CPO/SimPO the position after the last token too). The native core never computes logits at
 *    padding or past the end, so we average the vocab-mean logit over positions that predict a real token
 *    (label-aligned t in [1, length)): sequenceLogitsMetrics in src/losses/aggregate.ts.
 */
const ALT_METRICS: Record<string, string[]> = { orpo: ["logits/chosen", "logits/rejected"], simpo: ["logits/chosen", "logits/rejected"] };
/** num_tokens is TRL's running Σ attention_mask: the loop sums StepOutput.tokens, so it is compared with that. */
const FROM_TOKENS = "num_tokens";

function closeMetric(got: number, want: number): boolean {
  return Math.abs(got - want) <= 1e-5 || Math.abs(got - want) <= 1e-4 * Math.abs(want);
}

interface Fixture { h: SafetensorsHeader; get: (k: string) => Float32Array; md: Record<string, string> }
function fixture(file: string): Fixture {
  const h = readHeader(join(lossDir, file));
  return { h, get: (k) => readTensor(h, k), md: h.metadata ?? {} };
}

function tokenBatch(fx: Fixture, prefix = "") {
  const [B, T] = fx.h.tensors.get(`${prefix}input_ids`)!.shape;
  return {
    batch: { ids: Int32Array.from(fx.get(`${prefix}input_ids`)), lengths: Int32Array.from(fx.get(`${prefix}lengths`)), B, T },
    completionMask: Uint8Array.from(fx.get(`${prefix}completion_mask`)),
  };
}
const pairBatch = (fx: Fixture): PairBatch => tokenBatch(fx);
function unpairedBatch(fx: Fixture): UnpairedBatch {
  return { ...tokenBatch(fx), labels: Array.from(fx.get("label"), (x) => x !== 0), kl: tokenBatch(fx, "KL_") };
}

function loadPolicy(model: string): NativeModel {
  return loadReference(coreDir(model)); // the same checkpoint loader; this copy is the one trained
}
/** The perturbed reference: the policy's config with the weights of <model>-ref.safetensors. */
function loadPerturbed(model: string): NativeModel {
  const { config } = readModelDir(coreDir(model));
  const m = new NativeModel(config);
  const h = readHeader(join(lossDir, `${model}-ref.safetensors`));
  assert.equal(h.tensors.size, m.table.length, "reference file holds exactly the model's tensors");
  for (const p of m.table) readTensor(h, p.name, m.params, p.offset);
  return m;
}

function methodConfig(kind: string, md: Record<string, string>): MethodConfig {
  const beta = Number(md.beta);
  switch (kind) {
    case "orpo": return { method: "orpo", beta };
    case "dpo": return { method: "dpo", beta, loss_type: md.loss_type };
    case "ipo": return { method: "ipo", beta };
    case "simpo": return { method: "simpo", beta, simpo_gamma: Number(md.simpo_gamma), cpo_alpha: Number(md.cpo_alpha), label_smoothing: Number(md.label_smoothing) };
    case "kto": return { method: "kto", beta, loss_type: md.loss_type, desirable_weight: Number(md.desirable_weight), undesirable_weight: Number(md.undesirable_weight) };
    default: throw new Error(`unknown fixture kind ${kind}`);
  }
}

// One thread: the tiny models are faster without OpenMP hand-offs, and the machine is shared.
setNumThreads(1);

const files = readdirSync(lossDir).filter((f) => /^(llama|qwen2)-tiny-(orpo|dpo|ipo|kto|simpo)(-perturbed-ref)?\.safetensors$/.test(f)).sort();
test("every per-method loss fixture is covered", () => {
  assert.equal(files.length, 2 * (5 + 3), `found ${files.join(", ")}`);
});

for (const file of files) {
  const [, model, kind, perturbed] = /^(\w+-tiny)-(\w+?)(-perturbed-ref)?\.safetensors$/.exec(file)!;
  test(`${file}: loss, every metric and every gradient match PyTorch`, () => {
    const fx = fixture(file);
    const cfg = methodConfig(kind, fx.md);
    const policy = loadPolicy(model);
    const refModel = kind === "orpo" || kind === "simpo" ? null : perturbed ? loadPerturbed(model) : loadReference(coreDir(model));
    const ref: Reference = refModel ? { kind: "model", model: refModel } : { kind: "none" };
    try {
      policy.zeroGrad();
      const opts = { backward: true, lossScale: 1 };
      const out: StepOutput = kind === "kto" ? unpairedStep(policy, ref, unpairedBatch(fx), cfg, opts) : pairedStep(policy, ref, pairBatch(fx), cfg, opts);

      const want = fx.get("loss")[0];
      assert.ok(Math.abs(out.loss - want) <= 1e-5 * Math.abs(want), `loss ${out.loss} vs ${want}`);

      const metricKeys = [...fx.h.tensors.keys()].filter((k) => k.startsWith("metric.")).map((k) => k.slice(7));
      const alt = ALT_METRICS[kind] ?? [];
      for (const key of metricKeys) {
        const expected = fx.get(`metric.${key}`)[0];
        if (key === FROM_TOKENS) {
          assert.equal(out.tokens, expected, `num_tokens: tokens ${out.tokens} vs ${expected}`);
        } else if (alt.includes(key)) {
          const a = fx.get(`alt.${key}`)[0];
          assert.ok(closeMetric(out.metrics[key], a), `${key} ${out.metrics[key]} vs alt ${a} (TRL's padded value: ${expected})`);
        } else {
          assert.ok(key in out.metrics, `metric ${key} missing from ${Object.keys(out.metrics).join(", ")}`);
          assert.ok(closeMetric(out.metrics[key], expected), `${key}: ${out.metrics[key]} vs ${expected}`);
        }
      }
      // No metric TRL does not log for this trainer (num_tokens is the loop's, from `tokens`).
      assert.deepEqual(Object.keys(out.metrics).sort(), metricKeys.filter((k) => k !== FROM_TOKENS).sort());

      let checked = 0;
      for (const p of policy.table) {
        const err = relErr(policy.grad(p.name), fx.get(`grad.${p.name}`));
        assert.ok(err <= 1e-4, `grad ${p.name}: relative error ${err}`);
        checked++;
      }
      assert.equal(checked, [...fx.h.tensors.keys()].filter((k) => k.startsWith("grad.")).length, "every reference gradient checked");
      if (refModel) {
        for (const x of refModel.grads) assert.equal(x, 0, "the reference model never receives gradient");
      }
    } finally {
      policy.free();
      refModel?.free();
    }
  });
}

for (const kind of ["orpo", "dpo"]) {
  test(`llama-tiny ${kind}: 20 AdamW steps follow the PyTorch trajectory`, () => {
    const fx = fixture(`llama-tiny-${kind}-traj.safetensors`);
    const md = fx.md;
    const policy = loadPolicy("llama-tiny");
    const refModel = kind === "dpo" ? loadReference(coreDir("llama-tiny")) : null;
    const ref: Reference = refModel ? { kind: "model", model: refModel } : { kind: "none" };
    const [beta1, beta2] = md.betas.split(",").map(Number);
    const opt = new AdamW(policy, { lr: Number(md.lr), beta1, beta2, eps: Number(md.eps), weightDecay: Number(md.weight_decay) });
    const cfg: MethodConfig = kind === "dpo" ? { method: "dpo", beta: Number(md.beta), loss_type: md.loss_type } : { method: "orpo", beta: Number(md.beta) };
    const pb = pairBatch(fx);
    const refLoss = fx.get("traj_loss"), refNorm = fx.get("traj_grad_norm");
    assert.equal(refLoss.length, Number(md.steps));
    try {
      for (let step = 0; step < refLoss.length; step++) {
        policy.zeroGrad();
        const { loss } = pairedStep(policy, ref, pb, cfg, { backward: true, lossScale: 1 });
        const norm = policy.clipGradNorm(Number(md.max_grad_norm));
        opt.update();
        assert.ok(Math.abs(loss - refLoss[step]) <= 1e-4 * Math.abs(refLoss[step]), `step ${step}: loss ${loss} vs ${refLoss[step]}`);
        assert.ok(Math.abs(norm - refNorm[step]) <= 1e-4 * refNorm[step], `step ${step}: grad norm ${norm} vs ${refNorm[step]}`);
      }
    } finally {
      policy.free();
      refModel?.free();
    }
  });
}
