// What a run writes, checked against its definition: total_flos as transformers computes it (6 · input tokens ·
// non-embedding parameters, per training micro-batch); a bf16 checkpoint in gives a bf16 model out (header dtype,
// byte length, round-to-nearest-even of the fp32 weights), also for the merged LoRA model; training_args.json
// holds every key's value as set; and the schedule knobs that act inside the loop (eval_steps alone, save_steps
// under save_strategy epoch, logging_strategy epoch, eval_delay) on a tiny model with pre-tokenized rows.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { NativeModel } from "../../src/core/native.ts";
import { collatePairs } from "../../src/data/collate.ts";
import { loadWeightsInto, saveModel } from "../../src/models/checkpoint.ts";
import { parseConfig } from "../../src/models/config.ts";
import { f32ToBf16 } from "../../src/models/dtype.ts";
import { readHeader, readTensor } from "../../src/models/safetensors.ts";
import { resolveConfig, type TrainConfig } from "../../src/train/config.ts";
import { train } from "../../src/train/loop.ts";
import { makeTinyModel, randomPairs, randomUnpaired, scratch } from "../helpers/tiny-model.ts";

let tmp: ReturnType<typeof scratch>;
let model: string, bf16Model: string;
before(() => {
  tmp = scratch();
  model = makeTinyModel(join(tmp.dir, "model"), { vocab: 96, hidden: 32, layers: 1, seed: 3, tie: false });
  // the same weights stored as bf16, with config.json saying so (as a bf16 Hub checkpoint does)
  bf16Model = join(tmp.dir, "model-bf16");
  const cfg = JSON.parse(readFileSync(join(model, "config.json"), "utf8"));
  const m = new NativeModel(parseConfig(cfg, "tiny"));
  try {
    loadWeightsInto(model, m.table, m.params);
    saveModel(bf16Model, { ...cfg, torch_dtype: "bfloat16" }, m.table, m.params, { dtype: "BF16" });
  } finally {
    m.free();
  }
});
after(() => tmp.cleanup());

let runNo = 0;
const cfg = (over: Record<string, unknown>): TrainConfig => resolveConfig({
  method: "dpo", model_name_or_path: model, dataset: "(pre-tokenized rows)", output_dir: join(tmp.dir, `run-${++runNo}`),
  threads: 1, logging_steps: 1, learning_rate: 1e-3, per_device_train_batch_size: 2, save_strategy: "no", ...over,
}).config;
const json = (f: string) => JSON.parse(readFileSync(f, "utf8"));

/** transformers' num_parameters(exclude_embeddings=True), from the saved checkpoint's tensors. */
function nonEmbeddingParams(dir: string): number {
  const h = readHeader(join(dir, "model.safetensors"));
  let n = 0;
  for (const [name, t] of h.tensors) if (name !== "model.embed_tokens.weight") n += t.shape.reduce((a, b) => a * b, 1);
  return n;
}

test("total_flos = Σ over training micro-batches of 6 · input_ids.numel() · non-embedding parameters, in trainer_state.json and the final log", async () => {
  const rows = randomPairs(10, { vocab: 96, seed: 41 });
  const c = cfg({ max_steps: 3, gradient_accumulation_steps: 2, train_sampling_strategy: "sequential", eval_strategy: "steps", eval_steps: 1 });
  const r = await train(c, { quiet: true, rows, evalRows: randomPairs(3, { vocab: 96, seed: 42 }) });
  // sequential order, micro-batches of 2 pairs, 2 per step: 5 micro-batches per epoch, so step 3 (the epoch's last) takes the fifth alone
  const batches = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]];
  const P = nonEmbeddingParams(model);
  const want = batches.reduce((s, idx) => {
    const b = collatePairs(idx.map((i) => rows[i]), { padTokenId: 0 }).batch;   // (2B, T): TRL's concatenated input_ids
    return s + 6 * b.B * b.T * P;
  }, 0);
  assert.ok(want > 0);
  const state = json(join(r.outputDir, "trainer_state.json"));
  assert.equal(state.total_flos, want);   // evaluation batches are not counted, as in transformers
  assert.equal(r.logHistory.at(-1)!.total_flos, want);
  // under LoRA the count includes the adapter's parameters (PEFT's model.num_parameters sees them)
  const u = randomUnpaired(6, { vocab: 96, seed: 43 });
  const l = await train(cfg({ method: "kto", use_peft: true, lora_r: 4, lora_target_modules: ["q_proj"], max_steps: 1, per_device_train_batch_size: 6, train_sampling_strategy: "sequential" }), { quiet: true, rows: u });
  const adapter = readHeader(join(l.outputDir, "adapter_model.safetensors"));
  const A = [...adapter.tensors.values()].reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
  const { collateUnpaired } = await import("../../src/data/collate.ts");
  const ub = collateUnpaired(u, { padTokenId: 0 }).batch;   // KTO's KL rows are a separate input, not counted
  assert.equal(json(join(l.outputDir, "trainer_state.json")).total_flos, 6 * ub.B * ub.T * (P + A));
});

test("bf16 in → bf16 out: header dtype BF16, 2 bytes per element, values the round-to-nearest-even of the trained fp32 weights", async () => {
  const rows = randomPairs(8, { vocab: 96, seed: 51 });
  const over = { model_name_or_path: bf16Model, max_steps: 2, save_strategy: "steps", save_steps: 1 };
  const a = await train(cfg(over), { quiet: true, rows });                         // dtype auto: the input's
  const b = await train(cfg({ ...over, dtype: "float32" }), { quiet: true, rows });  // asked for fp32: the same training, kept fp32
  const ha = readHeader(join(a.outputDir, "model.safetensors")), hb = readHeader(join(b.outputDir, "model.safetensors"));
  const bytes = readFileSync(join(a.outputDir, "model.safetensors"));
  assert.equal(ha.tensors.size, hb.tensors.size);
  for (const [name, t] of ha.tensors) {
    const n = t.shape.reduce((x, y) => x * y, 1);
    assert.equal(t.dtype, "BF16", name);
    assert.equal(t.dataOffsets[1] - t.dataOffsets[0], 2 * n, `${name}: 2 bytes per element`);
    assert.equal(hb.tensors.get(name)!.dtype, "F32");
    const want = f32ToBf16(readTensor(hb, name));
    const got = new Uint16Array(bytes.buffer.slice(bytes.byteOffset + ha.dataStart + t.dataOffsets[0], bytes.byteOffset + ha.dataStart + t.dataOffsets[1]));
    assert.deepEqual(got, want, name);
  }
  assert.equal(json(join(a.outputDir, "config.json")).torch_dtype, "bfloat16");
  assert.equal(json(join(b.outputDir, "config.json")).torch_dtype, "float32");
  // checkpoints stay fp32 so that a resume continues from exactly the trained weights
  assert.equal([...readHeader(join(a.outputDir, "checkpoint-2", "model.safetensors")).tensors.values()][0].dtype, "F32");
  // an fp32 checkpoint with dtype bfloat16 asked for; and the merged LoRA model follows the input's dtype (the adapter stays fp32, as PEFT keeps it)
  const c = await train(cfg({ max_steps: 1, dtype: "bfloat16" }), { quiet: true, rows });
  assert.ok([...readHeader(join(c.outputDir, "model.safetensors")).tensors.values()].every((t) => t.dtype === "BF16"));
  const d = await train(cfg({ model_name_or_path: bf16Model, max_steps: 1, use_peft: true, lora_r: 2, merge_adapter: true }), { quiet: true, rows });
  assert.ok([...readHeader(join(d.outputDir, "merged", "model.safetensors")).tensors.values()].every((t) => t.dtype === "BF16"));
  assert.ok([...readHeader(join(d.outputDir, "adapter_model.safetensors")).tensors.values()].every((t) => t.dtype === "F32"));
});

test("training_args.json records every key as set (bf16: true stays true), TRL's lora_dropout, and the notes", async () => {
  const { config, notes } = resolveConfig({
    method: "dpo", model_name_or_path: model, dataset: "(pre-tokenized rows)", output_dir: join(tmp.dir, "args-run"), threads: 1,
    bf16: true, gradient_checkpointing: true, log_level: "info", hub_model_id: "me/x", report_to: ["wandb"], use_peft: true, lora_r: 2,
    per_device_train_batch_size: 2, max_steps: 1, save_strategy: "no", torch_dtype: "float32",
  });
  const r = await train(config, { quiet: true, notes, rows: randomPairs(4, { vocab: 96, seed: 61 }) });
  const args = json(join(r.outputDir, "training_args.json"));
  assert.equal(args.bf16, true);
  assert.equal(args.gradient_checkpointing, true);
  assert.equal(args.log_level, "info");
  assert.equal(args.hub_model_id, "me/x");
  assert.deepEqual(args.report_to, ["wandb"]);
  assert.equal(args.dtype, "float32");
  assert.equal(args.lora_dropout, 0.05);    // TRL's default; the note says disable_dropout (TRL's default for dpo) zeroes it
  assert.equal(args.fp16, false);           // unset keys hold what runs here
  assert.deepEqual(args.preftune_notes, notes);
  assert.ok(notes.some((n) => /^lora_dropout: 0.05 \(TRL's default with use_peft\) has no effect: disable_dropout is true/.test(n)));
  assert.equal(json(join(r.outputDir, "adapter_config.json")).lora_dropout, 0);   // what was trained
});

test("eval_steps alone evaluates every eval_steps; save_steps under save_strategy epoch saves only at epoch ends; logging_strategy epoch; eval_delay", async () => {
  const rows = randomPairs(8, { vocab: 96, seed: 71 }), evalRows = randomPairs(2, { vocab: 96, seed: 72 });
  // 8 rows / batch 2 = 4 steps per epoch; 8 steps = 2 epochs
  const a = await train(cfg({ max_steps: 8, eval_steps: 3, save_strategy: "epoch", save_steps: 3, logging_strategy: "epoch" }), { quiet: true, rows, evalRows });
  assert.deepEqual(a.logHistory.filter((e) => "eval_loss" in e).map((e) => e.step), [3, 6]);
  assert.deepEqual(a.logHistory.filter((e) => "loss" in e).map((e) => e.step), [4, 8]);
  assert.deepEqual(readdirSync(a.outputDir).filter((f) => f.startsWith("checkpoint-")).sort(), ["checkpoint-4", "checkpoint-8"]);
  const b = await train(cfg({ max_steps: 8, eval_strategy: "steps", eval_steps: 2, eval_delay: 5, logging_strategy: "no" }), { quiet: true, rows, evalRows });
  assert.deepEqual(b.logHistory.filter((e) => "eval_loss" in e).map((e) => e.step), [6, 8]);
  assert.equal(b.logHistory.filter((e) => "loss" in e).length, 0);
  assert.ok("train_loss" in b.logHistory.at(-1)!);   // the final summary is always logged
  assert.ok(!existsSync(join(b.outputDir, "checkpoint-2")));
});
