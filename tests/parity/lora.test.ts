// Parity of LoRA training in the native core with the hand-written PyTorch LoRA of tools/reference
// (tests/fixtures/lora): log-probs with the adapters on and off, every adapter gradient by PEFT name, a
// 10-step AdamW trajectory over the adapters alone with the base weights untouched, and a DPO step whose
// reference is the policy with its adapters disabled. Nothing here needs torch.
import { test } from "node:test";
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { AdamW, setNumThreads } from "../../src/core/native.ts";
import { loadAdapter } from "../../src/models/peft.ts";
import { pairedStep } from "../../src/train/objectives.ts";
import { relErr, maxAbs } from "../helpers/compare.ts";
import { gradKeys, loadCheckpoint, nll, nllTrainStep, readFixture } from "../helpers/parity.ts";

const fixtures = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures");

const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

function setup(name: string, file = `${name}.safetensors`) {
  const { model } = loadCheckpoint(join(fixtures, "core", name));
  const { adapter } = loadAdapter(join(fixtures, "lora", `${name}-adapter`), model);
  const { fx, get, batchOf } = readFixture(join(fixtures, "lora", file));
  return { model, adapter, fx, get, batch: batchOf() };
}

setNumThreads(2);

for (const name of ["llama-tiny", "qwen2-tiny", "qwen3-tiny"]) {
  test(`${name}: LoRA log-probs (adapters on and off), loss and every adapter gradient match PyTorch`, () => {
    const { model, adapter, fx, get, batch } = setup(name);
    assert.equal(adapter.scaling, Number(fx.metadata!.scaling), "scaling lora_alpha / r (or / √r with rsLoRA)");
    const off = model.forward(batch, { train: false, adapters: false });
    assert.ok(maxAbs(off.logps, get("logps_base")) <= 1e-5, `adapters off: logps max abs diff ${maxAbs(off.logps, get("logps_base"))}`);
    const on = model.forward(batch, { train: true });
    assert.ok(maxAbs(on.logps, get("logps")) <= 1e-5, `adapters on: logps max abs diff ${maxAbs(on.logps, get("logps"))}`);
    assert.ok(maxAbs(on.logps, off.logps) > 1e-3, "the adapter changes the model (non-zero B in the fixture)");
    const { loss, dlogps } = nll(on.logps, get("loss_mask"));
    assert.ok(rel(loss, get("loss")[0]) <= 1e-6, `loss ${loss} vs ${get("loss")[0]}`);
    model.zeroGrad();
    adapter.zeroGrad();
    model.backward(dlogps);
    for (const p of adapter.table) {
      const err = relErr(adapter.grad(p.name), get(`grad.${p.name}`));
      assert.ok(err <= 1e-4, `grad ${p.name}: relative error ${err}`);
    }
    assert.equal(adapter.table.length, gradKeys(fx).length, "every reference gradient checked, no extra adapter tensor");
    assert.ok(model.grads.every((g) => g === 0), "the frozen base gets no gradient at all");
    model.free();
  });
}

test("llama-tiny: 10 AdamW steps over the adapters follow PyTorch; the base weights do not move", () => {
  const { model, adapter, fx, get, batch } = setup("llama-tiny");
  const md = fx.metadata!;
  const base = model.params.slice();
  const opt = new AdamW(adapter, { lr: Number(md.lr), beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: Number(md.weight_decay) });
  assert.equal(opt.expAvg.length, adapter.params.length, "optimizer state covers the adapter only");
  const mask = get("loss_mask"), refLoss = get("traj_loss"), refNorm = get("traj_grad_norm");
  for (let step = 0; step < refLoss.length; step++) {
    const { loss, norm } = nllTrainStep(model, batch, mask, adapter, opt, Number(md.max_grad_norm));
    assert.ok(rel(loss, refLoss[step]) <= 1e-4, `step ${step}: loss ${loss} vs ${refLoss[step]}`);
    assert.ok(rel(norm, refNorm[step]) <= 1e-4, `step ${step}: grad norm ${norm} vs ${refNorm[step]}`);
  }
  for (const p of adapter.table) {
    const err = relErr(adapter.param(p.name), get(`traj_final.${p.name}`));
    assert.ok(err <= 1e-4, `${p.name} after 10 steps: relative error ${err}`);
  }
  assert.deepEqual(model.params, base, "base weights are bit-identical after training the adapter");
  model.free();
});

test("llama-tiny: DPO with reference = the policy with adapters disabled matches PyTorch", () => {
  const { model, adapter, fx, get, batch } = setup("llama-tiny", "llama-tiny-dpo.safetensors");
  const pb = { batch, completionMask: Uint8Array.from(get("completion_mask")) };
  const ref = model.withoutAdapters();
  assert.ok(maxAbs(ref.forward(batch, { train: false }).logps, get("ref_logps")) <= 1e-5, "reference logps");
  adapter.zeroGrad();
  const out = pairedStep(model, { kind: "model", model: ref }, pb, { method: "dpo", beta: Number(fx.metadata!.beta), loss_type: "sigmoid" }, { backward: true, lossScale: 1 });
  assert.ok(rel(out.loss, get("loss")[0]) <= 1e-5, `loss ${out.loss} vs ${get("loss")[0]}`);
  assert.ok(Math.abs(out.metrics["rewards/margins"] - get("metric.rewards/margins")[0]) <= 1e-6, "rewards/margins");
  for (const p of adapter.table) {
    const err = relErr(adapter.grad(p.name), get(`grad.${p.name}`));
    assert.ok(err <= 1e-4, `grad ${p.name}: relative error ${err}`);
  }
  model.free();
});
