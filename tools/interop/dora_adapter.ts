// Writes what tools/interop/peft_dora_check.py compares with PEFT: for a tiny checkpoint of tests/fixtures/core,
// a DoRA adapter trained here for a few AdamW steps (with LoRA dropout on, so the masked path trains too) and
// saved as preftune saves one, the same adapter merged into a full model folder, and this core's per-token
// log-probs and last-position logits of a batch with the adapter on.
// Usage (repo root): npx tsx tools/interop/dora_adapter.ts <core model folder> <out dir>
// Not a test (tests never need Python): an interop check run by hand, whose numbers go into reports.
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { AdamW, NativeModel } from "../../src/core/native.ts";
import { loadWeightsInto, readModelDir } from "../../src/models/checkpoint.ts";
import { initLora, resolveTargetModules, saveAdapter, saveMergedModel } from "../../src/models/peft.ts";
import { writeSafetensors } from "../../src/models/safetensors.ts";
import { mulberry32 } from "../../src/util/random.ts";

const [modelDir, outDir] = process.argv.slice(2).map((p) => resolve(p));
if (!modelDir || !outDir) throw new Error("usage: dora_adapter.ts <core model folder> <out dir>");
mkdirSync(outDir, { recursive: true });
const { config, configJson } = readModelDir(modelDir);
const model = new NativeModel(config);
loadWeightsInto(modelDir, model.table, model.params);
const adapter = model.attachLora({ r: 4, loraAlpha: 8, useRslora: false, targetModules: resolveTargetModules("all-linear"), loraDropout: 0.1, useDora: true });
initLora(adapter, 11);

// (B, T) batch of seeded ids, right-padded with 0.
const B = 3, T = 16, lengths = Int32Array.from([16, 11, 7]), ids = new Int32Array(B * T);
const u = mulberry32(5);
for (let b = 0; b < B; b++) for (let t = 0; t < lengths[b]; t++) ids[b * T + t] = 1 + Math.floor(u() * (config.vocabSize - 1));
const batch = { ids, lengths, B, T };

// A few steps of raising the batch's log-probs, so that B, A and the magnitudes all move.
const opt = new AdamW(adapter, { lr: 2e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 });
const dlogps = new Float32Array(B * T).fill(-1 / (B * T));
for (let s = 0; s < 5; s++) {
  adapter.setDropoutSeed(11, s + 1, 0);
  adapter.zeroGrad();
  model.forward(batch, { train: true });
  model.backward(dlogps);
  opt.update();
}

const logps = model.forward(batch, { train: false }).logps;
const cache = model.kvCache(B, T);
const logits = model.decode(cache, Int32Array.from([0, 1, 2]), ids, lengths, T);   // (B, V) at each row's last token
cache.free();
saveAdapter(join(outDir, "adapter"), adapter, { baseModelNameOrPath: modelDir });
writeSafetensors(join(outDir, "ours.safetensors"), [
  { name: "input_ids", dtype: "I32", shape: [B, T], data: ids },
  { name: "lengths", dtype: "I32", shape: [B], data: lengths },
  { name: "logps", dtype: "F32", shape: [B, T], data: logps },
  { name: "last_logits", dtype: "F32", shape: [B, config.vocabSize], data: logits },
], { format: "pt" }, { fsync: true });
saveMergedModel(join(outDir, "merged"), model, configJson);
model.free();
console.log(`wrote ${outDir}: adapter/, merged/, ours.safetensors`);
