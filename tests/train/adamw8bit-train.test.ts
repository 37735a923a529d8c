// 8-bit AdamW through the training loop on a tiny model whose matrices hold 8-bit state (≥ 4096 values): a
// 50-step trajectory within 1% of fp32 AdamW's, checkpoints holding the 8-bit state (U8 codes + absmax), a resume
// that is bit-identical to the uninterrupted run, and a clear refusal to resume with the other optimizer.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { cpSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { readHeader, readTensor, readTensorBytes, writeSafetensors, type TensorToWrite } from "../../src/models/safetensors.ts";
import { resolveConfig, type TrainConfig } from "../../src/train/config.ts";
import { train } from "../../src/train/loop.ts";
import type { LogEntry } from "../../src/train/metrics.ts";
import { makeTinyModel, randomPairs, scratch } from "../helpers/tiny-model.ts";

const TIMING = /runtime|per_second/;
let tmp: ReturnType<typeof scratch>;
let model: string;
before(() => {
  tmp = scratch();
  // q, o, gate|up, down, embed, lm_head ≥ 4096 values (8-bit); k, v (2048) and the norms keep fp32 state
  model = makeTinyModel(join(tmp.dir, "model"), { vocab: 128, hidden: 64, intermediate: 128, layers: 2, heads: 2, kvHeads: 1, seed: 8 });
});
after(() => tmp.cleanup());

let runNo = 0;
function cfg(over: Record<string, unknown>): TrainConfig {
  return resolveConfig({
    method: "orpo", model_name_or_path: model, dataset: "(pre-tokenized rows)", output_dir: join(tmp.dir, `run-${++runNo}`),
    threads: 1, logging_steps: 1, learning_rate: 1e-3, per_device_train_batch_size: 4, save_strategy: "no", lr_scheduler_type: "constant", ...over,
  }).config;
}
const strip = (e: LogEntry) => Object.fromEntries(Object.entries(e).filter(([k]) => !TIMING.test(k)));
const readLog = (dir: string) => readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => strip(JSON.parse(l)));
const rows = randomPairs(40, { vocab: 128, seed: 31 });

test("a 50-step ORPO trajectory with adamw_8bit stays within 1% of fp32 AdamW's (loss and log-probs at every step)", async () => {
  const a = await train(cfg({ optim: "adamw_torch", max_steps: 50 }), { quiet: true, rows: [...rows] });
  const b = await train(cfg({ optim: "adamw_8bit", max_steps: 50 }), { quiet: true, rows: [...rows] });
  const la = a.logHistory.filter((e) => "loss" in e), lb = b.logHistory.filter((e) => "loss" in e);
  assert.equal(la.length, 50);
  assert.equal(lb.length, 50);
  let worst = 0, differs = false;
  for (let i = 0; i < 50; i++) {
    for (const k of ["loss", "logps/chosen", "logps/rejected"]) {
      const r = Math.abs(lb[i][k] - la[i][k]) / Math.abs(la[i][k]);
      worst = Math.max(worst, r);
      if (lb[i][k] !== la[i][k]) differs = true;
      assert.ok(r < 0.01, `step ${i + 1} ${k}: 8-bit ${lb[i][k]} vs fp32 ${la[i][k]} (${(100 * r).toFixed(3)}%)`);
    }
  }
  assert.ok(differs, "the 8-bit run is not simply the fp32 run");
  // the run learns: the loss falls by far more than the 8-bit / fp32 gap
  const drop = (la[0].loss - la[49].loss) / la[0].loss;
  assert.ok(drop > 0.1, `fp32 loss fell by only ${(100 * drop).toFixed(1)}%`);
  console.log(`# 50 steps: largest relative difference 8-bit vs fp32 ${(100 * worst).toFixed(3)}% (loss ${la[0].loss.toFixed(4)} -> ${la[49].loss.toFixed(4)} fp32, ${lb[49].loss.toFixed(4)} 8-bit)`);
});

test("adamw_8bit checkpoints hold the 8-bit state, and resuming is bit-identical to the uninterrupted run", async () => {
  const over = { optim: "paged_adamw_8bit", max_steps: 12, save_strategy: "steps", save_steps: 5, weight_decay: 0.01, lr_scheduler_type: "cosine", warmup_steps: 2 };
  const a = await train(cfg(over), { quiet: true, rows: [...rows] });
  const full = readLog(a.outputDir);
  const h = readHeader(join(a.outputDir, "checkpoint-5", "optimizer.safetensors"));
  assert.equal(h.metadata?.format, "preftune.adamw_8bit");
  assert.equal(h.metadata?.step, "5");
  const q = h.tensors.get("model.layers.0.self_attn.q_proj.weight.state1")!;
  assert.deepEqual([q.dtype, q.shape.join("x")], ["U8", "64x64"]);
  assert.deepEqual(h.tensors.get("model.layers.0.self_attn.q_proj.weight.absmax2")!.shape, [16]);
  assert.equal(h.tensors.get("model.layers.0.self_attn.k_proj.weight.exp_avg")!.dtype, "F32");   // 2048 values: fp32 state
  assert.deepEqual(h.tensors.get("qmap1")!.shape, [256]);
  // 8-bit tensors 2 bytes per value; k_proj / v_proj (2048 values) and the norms 8: about 2.7 here (fp32 AdamW: 8)
  const bytes = [...h.tensors.values()].reduce((s, t) => s + t.dataOffsets[1] - t.dataOffsets[0], 0);
  const params = [...readHeader(join(a.outputDir, "model.safetensors")).tensors.values()].reduce((s, t) => s + t.shape.reduce((x, y) => x * y, 1), 0);
  assert.ok(bytes / params < 3, `optimizer.safetensors holds ${(bytes / params).toFixed(3)} bytes per parameter`);

  for (const from of [5, 10]) {
    const b = cfg({ ...over, resume_from_checkpoint: join(a.outputDir, `checkpoint-${from}`) });
    await train(b, { quiet: true, rows: [...rows] });
    assert.deepEqual(readLog(b.output_dir!), full, `resumed from checkpoint-${from}`);
    assert.deepEqual(readFileSync(join(b.output_dir!, "model.safetensors")), readFileSync(join(a.outputDir, "model.safetensors")), `weights after resuming from checkpoint-${from}`);
  }

  // a damaged 8-bit state is refused before anything is written: a missing state2, a foreign code book
  const rewrite = (name: string, change: (t: TensorToWrite[]) => TensorToWrite[]) => {
    const dir = join(tmp.dir, name);
    cpSync(join(a.outputDir, "checkpoint-5"), dir, { recursive: true });
    const file = join(dir, "optimizer.safetensors");
    const hh = readHeader(file);
    const tensors: TensorToWrite[] = [...hh.tensors.entries()].map(([n, t]) => ({
      name: n, dtype: t.dtype as "F32" | "U8", shape: t.shape, data: t.dtype === "U8" ? readTensorBytes(hh, n) : readTensor(hh, n),
    }));
    writeSafetensors(file, change(tensors), hh.metadata);
    return dir;
  };
  const noState2 = rewrite("no-state2", (t) => t.filter((x) => x.name !== "model.layers.1.mlp.down_proj.weight.state2"));
  await assert.rejects(train(cfg({ ...over, resume_from_checkpoint: noState2 }), { quiet: true, rows: [...rows] }), /optimizer tensor model\.layers\.1\.mlp\.down_proj\.weight\.state2 is missing or has the wrong dtype or shape/);
  const otherMap = rewrite("other-map", (t) => t.map((x) => (x.name === "qmap2" ? { ...x, data: (x.data as Float32Array).map((v) => v * 0.5) } : x)));
  await assert.rejects(train(cfg({ ...over, resume_from_checkpoint: otherMap }), { quiet: true, rows: [...rows] }), /qmap2 is missing or is not the quantization map this version uses/);

  // the other optimizer cannot read this state: refused, naming both
  const c = cfg({ ...over, optim: "adamw_torch", resume_from_checkpoint: join(a.outputDir, "checkpoint-5") });
  await assert.rejects(train(c, { quiet: true, rows: [...rows] }), /holds 8-bit AdamW state .* but this run's optimizer keeps fp32 AdamW state .*resume with the optim the checkpoint was written with/);
});
