// Parity of the native decoder with the PyTorch reference (tools/reference) on three tiny checkpoints:
// per-token log-probs and stats, the mean-NLL loss, every gradient by HF name, and 10 AdamW steps.
// The fixtures are files written once by PyTorch; nothing here needs torch.
import { test } from "node:test";
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { AdamW, setNumThreads } from "../../src/core/native.ts";
import { buildParamTable } from "../../src/models/params.ts";
import { maxAbs } from "../helpers/compare.ts";
import { checkGrads, loadCheckpoint, nll, nllTrainStep, readFixture } from "../helpers/parity.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "core");


function setup(name: string) {
  const dir = join(root, name);
  const { fx, get, batchOf } = readFixture(join(dir, "fixture.safetensors"));
  return { ...loadCheckpoint(dir), fx, get, batch: batchOf(), mask: get("loss_mask") };
}

setNumThreads(2);

for (const name of ["llama-tiny", "qwen2-tiny", "qwen3-tiny"]) {
  test(`${name}: parameter layout matches buildParamTable`, () => {
    const { model, config } = setup(name);
    assert.deepEqual(model.table, buildParamTable(config));
    model.free();
  });

  test(`${name}: log-probs, token stats, loss and every gradient match PyTorch`, (t) => {
    const { model, get, batch, mask, fx } = setup(name);
    const stats = model.forward(batch, { train: true });
    assert.ok(maxAbs(stats.logps, get("logps")) <= 1e-5, `logps max abs diff ${maxAbs(stats.logps, get("logps"))}`);
    assert.ok(maxAbs(stats.logitsMean, get("logits_mean")) <= 1e-5, "logits_mean");
    assert.ok(maxAbs(stats.entropy, get("entropy")) <= 1e-5, "entropy");
    const { loss, dlogps } = nll(stats.logps, mask);
    const ref = get("loss")[0];
    assert.ok(Math.abs(loss - ref) / Math.abs(ref) <= 1e-6, `loss ${loss} vs ${ref}`);
    model.zeroGrad();
    model.backward(dlogps);
    const { worst, checked } = checkGrads(model, fx, get);
    t.diagnostic(`logps max abs diff ${maxAbs(stats.logps, get("logps")).toExponential(2)}; loss rel diff ${(Math.abs(loss - ref) / Math.abs(ref)).toExponential(2)}; worst of ${checked} gradient relative errors ${worst.toExponential(2)}`);
    model.free();
  });

  test(`${name}: 10 AdamW steps with clipping follow the PyTorch trajectory`, (t) => {
    const { model, get, batch, mask, fx } = setup(name);
    const md = fx.metadata ?? {};
    const opt = new AdamW(model, {
      lr: Number(md.lr ?? 1e-3), beta1: Number(md.beta1 ?? 0.9), beta2: Number(md.beta2 ?? 0.999),
      eps: Number(md.eps ?? 1e-8), weightDecay: Number(md.weight_decay ?? 0.01),
    });
    const maxNorm = Number(md.max_grad_norm ?? 1.0);
    const refLoss = get("traj_loss"), refNorm = get("traj_grad_norm");
    let worst = 0;
    for (let step = 0; step < refLoss.length; step++) {
      const { loss, norm } = nllTrainStep(model, batch, mask, model, opt, maxNorm);
      assert.ok(Math.abs(loss - refLoss[step]) / Math.abs(refLoss[step]) <= 1e-4, `step ${step}: loss ${loss} vs ${refLoss[step]}`);
      assert.ok(Math.abs(norm - refNorm[step]) / refNorm[step] <= 1e-4, `step ${step}: grad norm ${norm} vs ${refNorm[step]}`);
      worst = Math.max(worst, Math.abs(loss - refLoss[step]) / Math.abs(refLoss[step]));
    }
    t.diagnostic(`worst loss relative error over ${refLoss.length} steps ${worst.toExponential(2)}`);
    model.free();
  });
}
