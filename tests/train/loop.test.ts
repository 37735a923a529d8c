// The shared training loop on a tiny random model with pre-tokenized rows: DPO's first loss is ln 2,
// accumulation invariance, exact resume (also past a half-written checkpoint), precomputed = live reference,
// guards (NaN, SIGINT), and every method running end to end with TRL's metric keys.
// The SIGKILL-mid-run resume through the real CLI lives in tests/e2e/resume.test.ts.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readHeader, readTensor } from "../../src/models/safetensors.ts";
import { resolveConfig, type TrainConfig } from "../../src/train/config.ts";
import { latestCheckpoint } from "../../src/train/checkpoint.ts";
import { TrainingDivergedError } from "../../src/train/guards.ts";
import { train, type TrainOptions } from "../../src/train/loop.ts";
import type { LogEntry } from "../../src/train/metrics.ts";
import { makeTinyModel, randomPairs, randomUnpaired, scratch } from "../helpers/tiny-model.ts";

const TIMING = /runtime|per_second/;
let tmp: ReturnType<typeof scratch>;
let model: string;
before(() => {
  tmp = scratch();
  model = makeTinyModel(join(tmp.dir, "model"), { vocab: 96, hidden: 32, layers: 1, seed: 3 });
});
after(() => tmp.cleanup());

let runNo = 0;
function cfg(over: Record<string, unknown>): TrainConfig {
  return resolveConfig({
    method: "dpo", model_name_or_path: model, dataset: "(pre-tokenized rows)", output_dir: join(tmp.dir, `run-${++runNo}`),
    threads: 1, logging_steps: 1, learning_rate: 1e-3, per_device_train_batch_size: 2, save_strategy: "no", ...over,
  }).config;
}
const run = (c: TrainConfig, o: TrainOptions) => train(c, { quiet: true, ...o });
const stripTiming = (e: LogEntry) => Object.fromEntries(Object.entries(e).filter(([k]) => !TIMING.test(k)));
const readLog = (dir: string) => readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => stripTiming(JSON.parse(l)));
function weights(dir: string): Float32Array {
  const h = readHeader(join(dir, "model.safetensors"));
  const parts = [...h.tensors.keys()].sort().map((n) => readTensor(h, n));
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}
function relDiff(a: Float32Array, b: Float32Array): number {
  let d = 0, n = 0;
  for (let i = 0; i < a.length; i++) { d += (a[i] - b[i]) ** 2; n += a[i] ** 2; }
  return Math.sqrt(d / n);
}
const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);

test("DPO's first logged loss is ln 2 (policy = reference) and the first lr is the base lr", async () => {
  const r = await run(cfg({ max_steps: 2 }), { rows: randomPairs(8, { vocab: 96 }) });
  const first = r.logHistory[0];
  assert.equal(first.step, 1);
  assert.ok(Math.abs(first.loss - Math.LN2) < 1e-12, `loss ${first.loss}`);
  assert.equal(first.learning_rate, 1e-3);
  assert.equal(first["rewards/margins"], 0);
  for (const k of ["grad_norm", "rewards/chosen", "rewards/accuracies", "logps/chosen", "logits/rejected", "entropy", "num_tokens", "tokens_per_second", "epoch"]) assert.ok(k in first, `missing ${k}`);
  assert.ok(existsSync(join(r.outputDir, "model.safetensors")) && existsSync(join(r.outputDir, "README.md")));
});

test("batch 1 × accumulation 8 equals batch 8 × accumulation 1 (DPO; ORPO only with equal chosen lengths)", async () => {
  // DPO sums log-probs per sequence, so a batch's loss is the mean of per-pair losses: exact identity.
  // ORPO's NLL is a token mean over the whole batch, so it matches only when all chosen rows have equal length.
  for (const [method, rows] of [
    ["dpo", randomPairs(16, { vocab: 96, seed: 11 })],
    ["orpo", randomPairs(16, { vocab: 96, seed: 12, prompt: [5, 5], completion: [4, 4] })],
  ] as const) {
    const a = await run(cfg({ method, per_device_train_batch_size: 1, gradient_accumulation_steps: 8, max_steps: 2 }), { rows: [...rows] });
    const b = await run(cfg({ method, per_device_train_batch_size: 8, gradient_accumulation_steps: 1, max_steps: 2 }), { rows: [...rows] });
    const la = a.logHistory.filter((e) => "loss" in e), lb = b.logHistory.filter((e) => "loss" in e);
    assert.equal(la.length, 2);
    for (let i = 0; i < 2; i++) {
      for (const k of ["loss", "grad_norm", "logps/rejected"]) assert.ok(rel(la[i][k], lb[i][k]) < 1e-5, `${method} step ${i + 1} ${k}: ${la[i][k]} vs ${lb[i][k]}`);
      // rewards are β·(differences of fp32 log-probs near −20): compare on the log-probs' scale
      for (const k of ["rewards/chosen", "rewards/margins"]) assert.ok(Math.abs(la[i][k] - lb[i][k]) < 1e-6, `${method} step ${i + 1} ${k}: ${la[i][k]} vs ${lb[i][k]}`);
      assert.equal(la[i]["rewards/accuracies"], lb[i]["rewards/accuracies"]);
      assert.equal(la[i].num_tokens, lb[i].num_tokens);
    }
    const d = relDiff(weights(a.outputDir), weights(b.outputDir));
    assert.ok(d < 1e-5, `${method} final weights differ by ${d}`);
  }
});

test("resume from a checkpoint equals the uninterrupted run, bit for bit; half-written checkpoints are ignored", async () => {
  // 10 rows, batch 2, accumulation 2: 5 micro-batches, 3 updates per epoch (the last takes 1 micro-batch),
  // a reshuffle each epoch, checkpoints mid-logging-interval (logs at even steps, saves every 3).
  const rows = randomPairs(10, { vocab: 96, seed: 21 });
  const evalRows = randomPairs(5, { vocab: 96, seed: 22 });
  const over = { gradient_accumulation_steps: 2, num_train_epochs: 3, logging_steps: 2, save_strategy: "steps", save_steps: 3, eval_strategy: "steps", eval_steps: 4, lr_scheduler_type: "cosine", warmup_steps: 2 };
  const a = await run(cfg(over), { rows, evalRows });
  assert.equal(a.globalStep, 9);
  const full = readLog(a.outputDir);

  const b = cfg({ ...over, resume_from_checkpoint: true });
  const bdir = b.output_dir!;
  mkdirSync(bdir, { recursive: true });
  cpSync(join(a.outputDir, "checkpoint-3"), join(bdir, "checkpoint-3"), { recursive: true });
  // a save killed half-way: the temporary name, and a folder without trainer_state.json
  cpSync(join(a.outputDir, "checkpoint-6"), join(bdir, ".checkpoint-6.tmp-4242-deadbeef"), { recursive: true });
  mkdirSync(join(bdir, "checkpoint-7"));
  writeFileSync(join(bdir, "checkpoint-7", "config.json"), "{}");
  assert.equal(latestCheckpoint(bdir), join(bdir, "checkpoint-3"));
  const rb = await run(b, { rows, evalRows });
  assert.equal(rb.globalStep, 9);
  assert.ok(!existsSync(join(bdir, ".checkpoint-6.tmp-4242-deadbeef")), "the stale temporary was not removed");
  assert.deepEqual(readLog(bdir), full);
  assert.deepEqual(readFileSync(join(bdir, "model.safetensors")), readFileSync(join(a.outputDir, "model.safetensors")));

  // resuming from the epoch-boundary checkpoint (step 6 ends epoch 2) also matches
  const c = cfg({ ...over, resume_from_checkpoint: join(a.outputDir, "checkpoint-6") });
  await run(c, { rows, evalRows });
  assert.deepEqual(readLog(c.output_dir!), full);
});

test("resume with eval/save strategy epoch and max_steps ending mid-epoch neither skips nor repeats epoch-end work", async () => {
  const rows = randomPairs(10, { vocab: 96, seed: 23 });
  const evalRows = randomPairs(3, { vocab: 96, seed: 24 });
  // 3 updates per epoch; max_steps 8 stops in epoch 3, whose end hooks still run (as in HF)
  const over = { gradient_accumulation_steps: 2, max_steps: 8, logging_steps: 2, save_strategy: "epoch", eval_strategy: "epoch" };
  const a = await run(cfg(over), { rows, evalRows });
  const full = readLog(a.outputDir);
  assert.deepEqual(full.filter((e) => "eval_loss" in e).map((e) => e.step), [3, 6, 8]);
  for (const n of [3, 6, 8]) {
    const c = cfg({ ...over, resume_from_checkpoint: join(a.outputDir, `checkpoint-${n}`) });
    await run(c, { rows, evalRows });
    assert.deepEqual(readLog(c.output_dir!), full, `resumed from checkpoint-${n}`);
  }
});

test("precomputed reference log-probs give the live reference's losses", async () => {
  const rows = randomPairs(12, { vocab: 96, seed: 31 });
  const evalRows = randomPairs(4, { vocab: 96, seed: 32 });
  const over = { max_steps: 4, eval_strategy: "steps", eval_steps: 4, per_device_train_batch_size: 3 };
  const live = await run(cfg(over), { rows, evalRows });
  const pre = await run(cfg({ ...over, precompute_ref_log_probs: true, precompute_ref_batch_size: 5 }), { rows, evalRows });
  assert.ok(existsSync(join(pre.outputDir, "ref_logps.safetensors")));
  assert.equal(live.logHistory.length, pre.logHistory.length);
  for (let i = 0; i < live.logHistory.length; i++) {
    // the table holds fp32-rounded sums (it is saved as F32), the live reference float64 sums of fp32 logps
    for (const k of ["loss", "eval_loss"]) {
      if (k in live.logHistory[i]) assert.ok(rel(pre.logHistory[i][k], live.logHistory[i][k]) < 1e-6, `entry ${i} ${k}: ${pre.logHistory[i][k]} vs ${live.logHistory[i][k]}`);
    }
    for (const k of ["rewards/margins", "eval_rewards/margins", "rewards/chosen"]) {
      if (k in live.logHistory[i]) assert.ok(Math.abs(pre.logHistory[i][k] - live.logHistory[i][k]) < 1e-6, `entry ${i} ${k}: ${pre.logHistory[i][k]} vs ${live.logHistory[i][k]}`);
    }
  }
});

test("a NaN stops the run naming the step and the last checkpoint", async () => {
  const rows = randomPairs(8, { vocab: 96, seed: 41 });
  const c = cfg({ learning_rate: 1e30, max_steps: 6, save_strategy: "steps", save_steps: 1 });
  await assert.rejects(run(c, { rows }), (e: Error) => {
    assert.ok(e instanceof TrainingDivergedError, e.message);
    assert.match(e.message, /at step 2;/);
    assert.match(e.message, /checkpoint-1/);
    return true;
  });
  // a poisoned weight: NaN from the first step, before any checkpoint
  const bad = makeTinyModel(join(tmp.dir, "bad-model"), { vocab: 96, hidden: 32, seed: 3 });
  const st = readFileSync(join(bad, "model.safetensors"));
  st.writeFloatLE(Number.NaN, st.length - 4);
  writeFileSync(join(bad, "model.safetensors"), st);
  await assert.rejects(run(cfg({ model_name_or_path: bad, max_steps: 2, method: "orpo" }), { rows }), /a model weight is NaN at step 1; no checkpoint was saved/);
});

test("SIGINT saves a checkpoint at the step boundary and stops with exit code 130", async () => {
  const rows = randomPairs(8, { vocab: 96, seed: 51 });
  const r = await run(cfg({ max_steps: 20, save_strategy: "steps", save_steps: 100 }), {
    rows, onStep: (s) => { if (s === 3) process.kill(process.pid, "SIGINT"); },
  });
  assert.equal(r.stoppedBy, "SIGINT");
  assert.equal(r.exitCode, 130);
  assert.equal(r.globalStep, 3);
  assert.equal(r.lastCheckpoint, join(r.outputDir, "checkpoint-3"));
  assert.ok(existsSync(join(r.outputDir, "checkpoint-3", "trainer_state.json")));
  assert.ok(!existsSync(join(r.outputDir, "README.md")), "no final model after an interrupt");
});

test("every method trains end to end with TRL's metric keys", async () => {
  const pairs = randomPairs(8, { vocab: 96, seed: 61 });
  const want: Record<string, string[]> = {
    orpo: ["nll_loss", "log_odds_ratio", "log_odds_chosen", "rewards/accuracies"],
    ipo: ["rewards/margins", "logps/chosen"],
    cpo: ["nll_loss", "rewards/accuracies"],
    simpo: ["rewards/margins"],
    kto: ["kl", "rewards/chosen", "rewards/rejected"],
    sft: ["mean_token_accuracy", "entropy"],
  };
  for (const [method, keys] of Object.entries(want)) {
    const rows = method === "kto" || method === "sft" ? randomUnpaired(8, { vocab: 96, seed: 62 }) : pairs;
    const extra = method === "kto" ? { precompute_ref_log_probs: true, eval_strategy: "steps", eval_steps: 2 } : {};
    const r = await run(cfg({ method, max_steps: 2, ...extra }), { rows, evalRows: method === "kto" ? randomUnpaired(5, { vocab: 96, seed: 63 }) : undefined });
    const first = r.logHistory[0];
    for (const k of ["loss", "grad_norm", "learning_rate", "num_tokens", ...keys]) assert.ok(Number.isFinite(first[k]), `${method}: ${k} = ${first[k]}`);
    if (method === "kto") assert.ok(r.logHistory.some((e) => "eval_kl" in e), "kto eval");
  }
});
