// A 20-step ORPO training run in bf16 mixed precision against the same run in fp32 (and the PyTorch fp32
// trajectory of tests/fixtures/losses): the loss stays within 2% at every step. The fp32 master weights and
// AdamW state are what keep bf16 rounding from compounding over steps.
import { test } from "node:test";
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { AdamW, bf16Support, setNumThreads } from "../../src/core/native.ts";
import type { ComputeDtype } from "../../src/core/types.ts";
import { readHeader, readTensor } from "../../src/models/safetensors.ts";
import { pairedStep, type MethodConfig, type PairBatch } from "../../src/train/objectives.ts";
import { loadReference } from "../../src/train/reference.ts";

const fixtures = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures");
const STEP_TOL = 0.02;
const noBf16 = bf16Support().available ? false : `no bf16 compute on this machine (${bf16Support().cpu})`;

function trajectory(compute: ComputeDtype) {
  const fx = readHeader(join(fixtures, "losses", "llama-tiny-orpo-traj.safetensors"));
  const get = (k: string) => readTensor(fx, k);
  const md = fx.metadata!;
  const [B, T] = fx.tensors.get("input_ids")!.shape;
  const pb: PairBatch = {
    batch: { ids: Int32Array.from(get("input_ids")), lengths: Int32Array.from(get("lengths")), B, T },
    completionMask: Uint8Array.from(get("completion_mask")),
  };
  const policy = loadReference(join(fixtures, "core", "llama-tiny"));  // the checkpoint loader; this copy trains
  policy.setCompute(compute);
  const [beta1, beta2] = md.betas.split(",").map(Number);
  const opt = new AdamW(policy, { lr: Number(md.lr), beta1, beta2, eps: Number(md.eps), weightDecay: Number(md.weight_decay) });
  const cfg: MethodConfig = { method: "orpo", beta: Number(md.beta) };
  const losses: number[] = [], norms: number[] = [];
  try {
    for (let step = 0; step < Number(md.steps); step++) {
      policy.zeroGrad();
      const { loss } = pairedStep(policy, { kind: "none" }, pb, cfg, { backward: true, lossScale: 1 });
      norms.push(policy.clipGradNorm(Number(md.max_grad_norm)));
      opt.update();
      losses.push(loss);
    }
  } finally {
    policy.free();
  }
  return { losses, norms, torch: get("traj_loss") };
}

setNumThreads(1);

test("llama-tiny ORPO: 20 AdamW steps in bf16 stay within 2% of fp32 at every step", { skip: noBf16 }, (t) => {
  const fp = trajectory("fp32"), bf = trajectory("bf16");
  assert.equal(bf.losses.length, 20);
  let worstLoss = 0, worstNorm = 0, worstTorch = 0;
  for (let s = 0; s < fp.losses.length; s++) {
    assert.ok(Math.abs(fp.losses[s] - fp.torch[s]) <= 1e-4 * Math.abs(fp.torch[s]), `fp32 step ${s} follows PyTorch`);
    const rel = Math.abs(bf.losses[s] - fp.losses[s]) / Math.abs(fp.losses[s]);
    assert.ok(rel <= STEP_TOL, `step ${s}: bf16 loss ${bf.losses[s]} vs fp32 ${fp.losses[s]} (${(100 * rel).toFixed(2)}%)`);
    worstLoss = Math.max(worstLoss, rel);
    worstNorm = Math.max(worstNorm, Math.abs(bf.norms[s] - fp.norms[s]) / fp.norms[s]);
    worstTorch = Math.max(worstTorch, Math.abs(bf.losses[s] - fp.torch[s]) / Math.abs(fp.torch[s]));
  }
  assert.ok(fp.losses[19] < fp.losses[0] && bf.losses[19] < bf.losses[0], "both runs train (the loss falls)");
  t.diagnostic(`bf16 vs fp32 over 20 steps: worst loss relative difference ${(100 * worstLoss).toFixed(3)}%, ` +
    `worst grad-norm relative difference ${(100 * worstNorm).toFixed(3)}%, worst vs the PyTorch fp32 trajectory ${(100 * worstTorch).toFixed(3)}%; ` +
    `loss ${fp.losses[0].toFixed(4)} -> fp32 ${fp.losses[19].toFixed(4)}, bf16 ${bf.losses[19].toFixed(4)}`);
});
