// Every model family through the reduced-precision paths, on the transformers-written fixtures of
// tests/fixtures/family: a base held in bf16 only (loaded by the bf16 loader, GPT-NeoX's rows permuted) against an
// fp32 model holding the same bf16-rounded weights, with PEFT's all-linear adapter on both; a 4-bit NF4 base (double
// quantization, the 4-bit loader) against an fp32 model holding exactly what it dequantizes to; and bf16 compute of
// the full fp32 model against transformers' float64 log-probs. Each pair runs the same fp32 math over the same
// weights, so they agree up to summation order; bf16 compute is held to bf16's rounding (gradients within 20%
// relative: OPT's query bias, a sum over tokens that largely cancels without RoPE, is the worst at about 11%).
// Not the fp32 parity itself (family.test.ts) and not speed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { bf16Support, NativeModel } from "../../src/core/native.ts";
import { bf16ToF32, f32ToBf16 } from "../../src/models/dtype.ts";
import { loadWeightsInto, loadWeightsIntoBf16, readModelDir } from "../../src/models/checkpoint.ts";
import { loadAdapter } from "../../src/models/peft.ts";
import { dequantizedCopy, loadQuantizedModel } from "../../src/models/quantize.ts";
import { maxAbs, relErr } from "../helpers/compare.ts";
import { checkGrads, familyGradCheck, nll, readFixture } from "../helpers/parity.ts";

const FAMILY = fileURLToPath(new URL("../fixtures/family", import.meta.url));
const CASES = ["gemma2", "gemma3", "phi2", "phi3", "phi4mini-longrope", "neox", "opt", "opt-350m"];
const noBf16 = bf16Support().available ? false : `no bf16 compute on this machine (${bf16Support().cpu})`;

/** Forward (training) and backward of the masked NLL on the fixture's batch; the adapter's gradients by name. */
function adapterRun(model: NativeModel, dir: string) {
  const { adapter } = loadAdapter(join(dir, "lora-adapter"), model);
  const { get, batchOf } = readFixture(join(dir, "lora.safetensors"));
  const logps = model.forward(batchOf(), { train: true }).logps;
  adapter.zeroGrad();
  model.backward(nll(logps, get("loss_mask")).dlogps);
  const grads = new Map(adapter.table.map((p) => [p.name, adapter.grad(p.name).slice()]));
  return { logps, grads };
}

/** The worst relative error over two gradient maps of the same names. */
function worstGrad(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  return Math.max(...[...a].map(([n, g]) => relErr(g, b.get(n)!)));
}

for (const name of CASES) {
  const dir = join(FAMILY, name);

  test(`${name}: a bf16-held base with PEFT's adapter matches an fp32 model of the same bf16 weights`, (t) => {
    const { config } = readModelDir(dir);
    const held = new NativeModel(config, { baseDtype: "bf16" });
    const wide = new NativeModel(config);
    try {
      loadWeightsIntoBf16(dir, held.table, held.paramsBf16);
      loadWeightsInto(dir, wide.table, wide.params);
      wide.params.set(bf16ToF32(f32ToBf16(wide.params)));
      const a = adapterRun(held, dir), b = adapterRun(wide, dir);
      const d = maxAbs(a.logps, b.logps), g = worstGrad(a.grads, b.grads);
      assert.ok(d <= 2e-5, `logps max abs diff ${d}`);
      assert.ok(g <= 1e-4, `adapter gradient relative error ${g}`);
      t.diagnostic(`logps ${d.toExponential(2)}, adapter gradients ${g.toExponential(2)}`);
    } finally {
      held.free();
      wide.free();
    }
  });

  test(`${name}: a 4-bit NF4 base with PEFT's adapter matches an fp32 model of what it dequantizes to`, (t) => {
    const { config } = readModelDir(dir);
    const q4 = loadQuantizedModel(dir, config, { quantType: "nf4", doubleQuant: true }, "fp32");
    const deq = dequantizedCopy(q4);
    try {
      assert.ok(q4.table.some((p) => p.quant4), "some projections are held in 4 bits");
      const a = adapterRun(q4, dir), b = adapterRun(deq, dir);
      const d = maxAbs(a.logps, b.logps), g = worstGrad(a.grads, b.grads);
      assert.ok(d <= 2e-5, `logps max abs diff ${d}`);
      assert.ok(g <= 1e-4, `adapter gradient relative error ${g}`);
      // and the 4-bit model is the fixture's model, up to NF4's rounding
      const ref = readFixture(join(dir, "lora.safetensors")).get("logps");
      t.diagnostic(`logps ${d.toExponential(2)}, adapter gradients ${g.toExponential(2)}; NF4 moves the log-probs by ${maxAbs(a.logps, ref).toFixed(3)}`);
    } finally {
      q4.free();
      deq.free();
    }
  });

  test(`${name}: bf16 compute stays within bf16 rounding of transformers' log-probs and gradients`, { skip: noBf16 }, (t) => {
    const { config } = readModelDir(dir);
    const model = new NativeModel(config, { compute: "bf16" });
    try {
      loadWeightsInto(dir, model.table, model.params);
      const { fx, get, batchOf } = readFixture(join(dir, "fixture.safetensors"));
      const logps = model.forward(batchOf(), { train: true }).logps;
      const d = maxAbs(logps, get("logps"));
      assert.ok(d <= 0.05, `logps max abs diff ${d}`);
      model.zeroGrad();
      model.backward(nll(logps, get("loss_mask")).dlogps);
      const { worst } = checkGrads(model, fx, get, { ...familyGradCheck(model, get, fx.metadata?.zero_grads), tol: 0.2, zeroAbs: 1e-3 });
      t.diagnostic(`logps ${d.toExponential(2)}; worst gradient relative error ${worst.toExponential(2)}`);
    } finally {
      model.free();
    }
  });
}
