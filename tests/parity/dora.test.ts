// Parity of DoRA in the native core with PEFT's own DoRA (tests/fixtures/dora, written by
// tools/reference/dora_fixtures.py through peft.get_peft_model(use_dora=True) on transformers' models): the
// adapter folder PEFT saved loads here; log-probs with the adapter on and off, the loss and the gradient of every
// lora_A, lora_B and lora_magnitude_vector; PEFT's merged model; and DoRA decoding. Nothing here needs torch.
import { test } from "node:test";
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { NativeModel, setNumThreads } from "../../src/core/native.ts";
import { loadWeightsInto, readModelDir } from "../../src/models/checkpoint.ts";
import { loadAdapter } from "../../src/models/peft.ts";
import { readHeader, readTensor } from "../../src/models/safetensors.ts";
import { maxAbs, relErr } from "../helpers/compare.ts";

const fixtures = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures");
setNumThreads(2);

function setup(name: string) {
  const dir = join(fixtures, "core", name);
  const model = new NativeModel(readModelDir(dir).config);
  loadWeightsInto(dir, model.table, model.params);
  const { adapter, folder } = loadAdapter(join(fixtures, "dora", `${name}-adapter`), model);
  const fx = readHeader(join(fixtures, "dora", `${name}.safetensors`));
  const get = (k: string) => readTensor(fx, k);
  const [B, T] = fx.tensors.get("input_ids")!.shape;
  const batch = { ids: Int32Array.from(get("input_ids")), lengths: Int32Array.from(get("lengths")), B, T };
  return { model, adapter, folder, fx, get, batch };
}

for (const name of ["llama-tiny", "qwen2-tiny"]) {
  test(`${name}: PEFT's DoRA adapter loads; log-probs, loss and every lora_A / lora_B / lora_magnitude_vector gradient match PEFT`, () => {
    const { model, adapter, folder, fx, get, batch } = setup(name);
    try {
      assert.equal(folder.config.useDora, true);
      assert.ok(adapter.table.some((p) => p.name.endsWith(".lora_magnitude_vector")), "magnitude tensors in the table");
      const off = model.forward(batch, { train: false, adapters: false });
      const dOff = maxAbs(off.logps, get("logps_base"));
      assert.ok(dOff <= 1e-5, `adapter off: logps max abs diff ${dOff}`);
      const on = model.forward(batch, { train: true });
      const dOn = maxAbs(on.logps, get("logps"));
      assert.ok(dOn <= 1e-5, `adapter on: logps max abs diff ${dOn}`);
      assert.ok(maxAbs(on.logps, off.logps) > 1e-2, "the adapter changes the model");
      const mask = get("loss_mask");
      let s = 0, n = 0;
      for (let i = 0; i < mask.length; i++) { s -= on.logps[i] * mask[i]; n += mask[i]; }
      assert.ok(Math.abs(s / n - get("loss")[0]) <= 1e-5 * Math.abs(get("loss")[0]), `loss ${s / n} vs ${get("loss")[0]}`);
      adapter.zeroGrad();
      model.backward(mask.map((m) => -m / n));
      let worst = 0;
      for (const p of adapter.table) {
        const err = relErr(adapter.grad(p.name), get(`grad.${p.name}`));
        worst = Math.max(worst, err);
        assert.ok(err <= 1e-4, `grad ${p.name}: relative error ${err}`);
      }
      const refGrads = [...fx.tensors.keys()].filter((k) => k.startsWith("grad."));
      assert.equal(adapter.table.length, refGrads.length, "every PEFT gradient checked, no extra adapter tensor");
      assert.ok(refGrads.some((k) => k.endsWith("lora_magnitude_vector")));

      // DoRA decoding (KV cache) agrees with the DoRA forward: prefill each row, the last position's logits.
      const V = model.config.vocabSize;
      const cache = model.kvCache(batch.B, batch.T);
      const rows = Int32Array.from({ length: batch.B }, (_, i) => i);
      const pre = batch.lengths.map((l) => l - 1);
      const logits = model.decode(cache, rows, batch.ids, pre, batch.T);
      cache.free();
      for (let b = 0; b < batch.B; b++) {
        const row = logits.subarray(b * V, (b + 1) * V);
        const mx = row.reduce((a, x) => Math.max(a, x), -Infinity);
        const lse = mx + Math.log(row.reduce((a, x) => a + Math.exp(x - mx), 0));
        const t = batch.lengths[b] - 1;
        const lp = row[batch.ids[b * batch.T + t]] - lse;
        assert.ok(Math.abs(lp - on.logps[b * batch.T + t]) <= 1e-5, `row ${b}: decoded logp ${lp} vs forward ${on.logps[b * batch.T + t]}`);
      }
      // PEFT's merge: W' = m / ‖W + s·B·A‖ · (W + s·B·A), then the plain model scores as PEFT's merged one.
      model.mergeLora();
      const merged = model.forward(batch, { train: false });
      const dM = maxAbs(merged.logps, get("logps_merged"));
      assert.ok(dM <= 1e-5, `merged: logps max abs diff ${dM} vs PEFT's merge_and_unload`);
      console.log(`# ${name} DoRA vs PEFT: logps ${dOn.toExponential(2)} (base ${dOff.toExponential(2)}, merged ${dM.toExponential(2)}), worst grad rel err ${worst.toExponential(2)}`);
    } finally {
      model.free();
    }
  });
}
