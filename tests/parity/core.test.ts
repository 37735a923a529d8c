// Parity of the native decoder with the PyTorch reference (tools/reference) on three tiny checkpoints:
// per-token log-probs and stats, the mean-NLL loss, every gradient by HF name, and 10 AdamW steps.
// The fixtures are files written once by PyTorch; nothing here needs torch.
import { test } from "node:test";
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { AdamW, NativeModel, setNumThreads } from "../../src/core/native.ts";
import { loadWeightsInto, readModelDir } from "../../src/models/checkpoint.ts";
import { buildParamTable } from "../../src/models/params.ts";
import { readHeader, readTensor } from "../../src/models/safetensors.ts";
import { relErr, maxAbs } from "../helpers/compare.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "core");


function setup(name: string) {
  const dir = join(root, name);
  const { config } = readModelDir(dir);
  const model = new NativeModel(config);
  loadWeightsInto(dir, model.table, model.params);
  const fx = readHeader(join(dir, "fixture.safetensors"));
  const get = (k: string) => readTensor(fx, k);
  const [B, T] = fx.tensors.get("input_ids")!.shape;
  const batch = { ids: Int32Array.from(get("input_ids")), lengths: Int32Array.from(get("lengths")), B, T };
  const mask = get("loss_mask");
  return { dir, config, model, fx, get, batch, mask, B, T };
}

// loss = -sum(logps * mask) / sum(mask), and its gradient with respect to logps
function nll(logps: Float32Array, mask: Float32Array): { loss: number; dlogps: Float32Array } {
  let s = 0, n = 0;
  for (let i = 0; i < mask.length; i++) { s -= logps[i] * mask[i]; n += mask[i]; }
  return { loss: s / n, dlogps: mask.map((m) => -m / n) };
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
    let checked = 0, worst = 0;
    for (const p of model.table) {
      const err = relErr(model.grad(p.name), get(`grad.${p.name}`));
      assert.ok(err <= 1e-4, `grad ${p.name}: relative error ${err}`);
      worst = Math.max(worst, err);
      checked++;
    }
    t.diagnostic(`logps max abs diff ${maxAbs(stats.logps, get("logps")).toExponential(2)}; loss rel diff ${(Math.abs(loss - ref) / Math.abs(ref)).toExponential(2)}; worst of ${checked} gradient relative errors ${worst.toExponential(2)}`);
    assert.equal(checked, [...fx.tensors.keys()].filter((k) => k.startsWith("grad.")).length, "every reference gradient checked");
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
      const stats = model.forward(batch, { train: true });
      const { loss, dlogps } = nll(stats.logps, mask);
      model.zeroGrad();
      model.backward(dlogps);
      const norm = model.clipGradNorm(maxNorm);
      opt.update();
      assert.ok(Math.abs(loss - refLoss[step]) / Math.abs(refLoss[step]) <= 1e-4, `step ${step}: loss ${loss} vs ${refLoss[step]}`);
      assert.ok(Math.abs(norm - refNorm[step]) / refNorm[step] <= 1e-4, `step ${step}: grad norm ${norm} vs ${refNorm[step]}`);
      worst = Math.max(worst, Math.abs(loss - refLoss[step]) / Math.abs(refLoss[step]));
    }
    t.diagnostic(`worst loss relative error over ${refLoss.length} steps ${worst.toExponential(2)}`);
    model.free();
  });
}
