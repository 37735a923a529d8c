// generate_during_eval on a tiny Llama-shaped model with the real Llama-2 tokenizer: completions.jsonl gets one
// line per prompt per evaluation with TRL's game_log meanings (prompt, policy, ref); at step 0 the policy's
// completion is the reference's (same weights), and every completion is the greedy decoding of
// src/generate/greedy.ts run independently on the weights of that moment (the start, or the saved final model),
// cut at EOS. Also: a resumed run keeps the lines up to its checkpoint, and the config errors.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { appendFileSync, cpSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { NativeModel } from "../../src/core/native.ts";
import { prepareDataset } from "../../src/data/prepare.ts";
import { loadTokenizer, type Tokenizer } from "../../src/data/tokenizer.ts";
import { loadGenerationModel } from "../../src/generate/engine.ts";
import { greedyIds } from "../../src/generate/greedy.ts";
import { loadWeightsInto, readModelDir } from "../../src/models/checkpoint.ts";
import { ConfigError, resolveConfig, type TrainConfig } from "../../src/train/config.ts";
import { train } from "../../src/train/loop.ts";
import { COMPLETIONS_FILE, greedyCompletions, type CompletionRecord } from "../../src/train/samples.ts";
import { makeTinyModel, randomPairs, scratch } from "../helpers/tiny-model.ts";

const MAX_NEW = 6;
let tmp: ReturnType<typeof scratch>;
let model: string, dataset: string, tok: Tokenizer;
let evalPrompts: number[][];   // the eval split's first two distinct prompts, tokenized as the loop does

const row = (i: number) => ({
  prompt: `Question ${i}: what is a good name for a ${["cat", "dog", "boat", "garden", "song"][i % 5]}?`,
  chosen: ` A short kind answer number ${i}.`,
  rejected: ` No idea ${i}, go away.`,
});

before(async () => {
  tmp = scratch();
  model = makeTinyModel(join(tmp.dir, "model"), { tokenizer: "llama2", hidden: 16, heads: 2, kvHeads: 1, intermediate: 32, maxPositions: 128, seed: 2, std: 0.1 });
  dataset = join(tmp.dir, "data");
  mkdirSync(dataset);
  writeFileSync(join(dataset, "train.jsonl"), Array.from({ length: 8 }, (_, i) => JSON.stringify(row(i)) + "\n").join(""));
  writeFileSync(join(dataset, "test.jsonl"), [20, 20, 21, 22].map((i) => JSON.stringify(row(i)) + "\n").join(""));   // a repeated prompt first
  tok = await loadTokenizer(model);
  const ev = await prepareDataset(dataset, tok, { method: "dpo", split: "test", cacheDir: null, max_length: 128 });
  evalPrompts = [ev.rows[0].prompt_ids, ev.rows[2].prompt_ids];
  assert.notDeepEqual(evalPrompts[0], evalPrompts[1]);
});
after(() => tmp.cleanup());

let runNo = 0;
function cfg(over: Record<string, unknown>): TrainConfig {
  return resolveConfig({
    method: "dpo", model_name_or_path: model, dataset, output_dir: join(tmp.dir, `run-${++runNo}`), dataset_cache_dir: null,
    threads: 1, max_length: 128, learning_rate: 1e-2, per_device_train_batch_size: 2, per_device_eval_batch_size: 2, max_steps: 4,
    logging_steps: 2, eval_strategy: "steps", eval_steps: 2, eval_on_start: true, save_strategy: "no",
    generate_during_eval: true, generate_during_eval_max_new_tokens: MAX_NEW, ...over,
  }).config;
}
const run = (c: TrainConfig) => train(c, { quiet: true, handleSignals: false });
const readCompletions = (dir: string): CompletionRecord[] => readFileSync(join(dir, COMPLETIONS_FILE), "utf8").trim().split("\n").map((l) => JSON.parse(l));

/** What the text of a greedy completion must be: greedy.ts's ids, cut before the first EOS, decoded without special tokens. */
function expected(m: NativeModel, opts: { adapters?: boolean } = {}): string[] {
  return greedyIds(m, evalPrompts, MAX_NEW, opts).map((ids) => {
    const cut = ids.indexOf(tok.eosTokenId!);
    return tok.decode(cut < 0 ? ids : ids.slice(0, cut), true);
  });
}
function withModel<T>(dir: string, f: (m: NativeModel) => T): T {
  const m = new NativeModel(readModelDir(dir).config);
  try {
    loadWeightsInto(dir, m.table, m.params);
    return f(m);
  } finally {
    m.free();
  }
}

function checkShape(recs: CompletionRecord[], steps: number[], withRef: boolean): void {
  assert.deepEqual(recs.map((r) => r.step), steps.flatMap((s) => [s, s]), "one line per prompt per evaluation");
  for (const r of recs) {
    assert.deepEqual(Object.keys(r).sort(), withRef ? ["policy", "prompt", "ref", "step"] : ["policy", "prompt", "step"]);
    assert.ok(typeof r.policy === "string" && (!withRef || typeof r.ref === "string"));
  }
  const prompts = evalPrompts.map((p) => tok.decode(p, true));
  recs.forEach((r, i) => assert.equal(r.prompt, prompts[i % 2]));
  assert.match(recs[0].prompt, /Question 20: what is a good name for a cat\?/);
}

test("DPO: policy and reference completions at every eval; equal at step 0; each the independent greedy decoding", async () => {
  const r = await run(cfg({}));
  const recs = readCompletions(r.outputDir);
  checkShape(recs, [0, 2, 4], true);
  const base = withModel(model, (m) => expected(m));
  const final = withModel(r.outputDir, (m) => expected(m));
  assert.deepEqual(recs.slice(0, 2).map((x) => x.policy), recs.slice(0, 2).map((x) => x.ref), "same weights at step 0");
  assert.deepEqual(recs.slice(0, 2).map((x) => x.policy), base);
  for (const x of recs) assert.equal(x.ref, base[recs.indexOf(x) % 2], `the reference is frozen (step ${x.step})`);
  assert.deepEqual(recs.slice(4).map((x) => x.policy), final, "the last eval decodes with the trained weights");
  assert.notDeepEqual(final, base, "at this learning rate the greedy text changes, so the checks above tell the two weights apart");
});

test("DPO under LoRA: the reference is the base (adapters disabled), the policy the base plus the adapter", async () => {
  const r = await run(cfg({ use_peft: true, lora_r: 4, lora_alpha: 8, lora_target_modules: "all-linear", learning_rate: 5e-2 }));
  const recs = readCompletions(r.outputDir);
  checkShape(recs, [0, 2, 4], true);
  const base = withModel(model, (m) => expected(m));
  recs.forEach((x, i) => assert.equal(x.ref, base[i % 2]));
  assert.deepEqual(recs.slice(0, 2).map((x) => x.policy), base);
  const loaded = await loadGenerationModel(r.outputDir);
  try {
    assert.deepEqual(recs.slice(4).map((x) => x.policy), expected(loaded.model));
    assert.deepEqual(base, expected(loaded.model, { adapters: false }));
  } finally {
    loaded.dispose();
  }
});

test("ORPO (no reference): policy only; a resumed run keeps the lines up to its checkpoint and ends with the same file", async () => {
  const over = { method: "orpo", beta: 0.1, save_strategy: "steps", save_steps: 2 };
  const a = await run(cfg(over));
  const recs = readCompletions(a.outputDir);
  checkShape(recs, [0, 2, 4], false);
  assert.deepEqual(recs.slice(0, 2).map((x) => x.policy), withModel(model, (m) => expected(m)));
  assert.deepEqual(recs.slice(4).map((x) => x.policy), withModel(a.outputDir, (m) => expected(m)));

  // A run killed after step 4's evaluation, before its checkpoint: the file holds step 4 (and a cut-short line).
  const b = cfg({ ...over, resume_from_checkpoint: true });
  mkdirSync(b.output_dir!, { recursive: true });
  cpSync(join(a.outputDir, "checkpoint-2"), join(b.output_dir!, "checkpoint-2"), { recursive: true });
  cpSync(join(a.outputDir, COMPLETIONS_FILE), join(b.output_dir!, COMPLETIONS_FILE));
  appendFileSync(join(b.output_dir!, COMPLETIONS_FILE), '{"step": 5, "prompt": "cut sh');
  await run(b);
  assert.equal(readFileSync(join(b.output_dir!, COMPLETIONS_FILE), "utf8"), readFileSync(join(a.outputDir, COMPLETIONS_FILE), "utf8"));

  // A fresh run in a used folder starts the file over.
  const c = cfg({ ...over, output_dir: a.outputDir, max_steps: 2, eval_on_start: false });
  await run(c);
  assert.deepEqual(readCompletions(a.outputDir).map((x) => x.step), [2, 2]);
});

test("greedyCompletions stops at EOS and at max_position_embeddings, and matches greedy.ts otherwise", () => {
  withModel(model, (m) => {
    const g = greedyIds(m, evalPrompts, MAX_NEW);
    const big = { maxNewTokens: MAX_NEW, maxPositions: 128, eos: new Set<number>() };
    assert.deepEqual(greedyCompletions({ model: m }, evalPrompts, big), g);
    assert.notEqual(g[0][0], g[1][0], "the two prompts must start differently for the EOS check");
    // One row ends at once (its first token is the EOS), the other keeps decoding alone in its cache row.
    for (const stopAt of [g[0][0], g[1][0]]) {
      const cut = (ids: number[]) => (ids.includes(stopAt) ? ids.slice(0, ids.indexOf(stopAt)) : ids);
      assert.deepEqual(greedyCompletions({ model: m }, evalPrompts, { ...big, eos: new Set([stopAt]) }), g.map(cut));
    }
    assert.deepEqual(greedyCompletions({ model: m }, evalPrompts, { ...big, batchSize: 1 }), g);
    const room = evalPrompts[0].length + 2;
    const capped = greedyCompletions({ model: m }, evalPrompts, { ...big, maxPositions: room });
    assert.deepEqual(capped[0], g[0].slice(0, 2));
    assert.deepEqual(capped[1], g[1].slice(0, Math.max(0, room - evalPrompts[1].length)));
  });
});

test("config errors: no evaluation, knobs without the switch, a method TRL has no game log for, no tokenizer", async () => {
  const base = { method: "dpo", model_name_or_path: model, dataset, output_dir: join(tmp.dir, "x"), generate_during_eval: true };
  assert.throws(() => resolveConfig(base), (e: Error) => e instanceof ConfigError && /generate_during_eval: true .*eval_strategy is "no".*set eval_strategy: steps.*eval_on_start: true/.test(e.message));
  assert.doesNotThrow(() => resolveConfig({ ...base, eval_on_start: true }));
  assert.doesNotThrow(() => resolveConfig({ ...base, eval_strategy: "epoch" }));
  assert.throws(() => resolveConfig({ ...base, generate_during_eval: false, generate_during_eval_samples: 3 }), /generate_during_eval_samples is set but generate_during_eval is false/);
  assert.throws(() => resolveConfig({ ...base, method: "sft", eval_on_start: true }), /generate_during_eval does not apply to method sft/);
  const d = resolveConfig({ ...base, eval_on_start: true }).config;
  assert.equal(d.generate_during_eval_samples, null);
  assert.equal(d.generate_during_eval_max_new_tokens, 64);
  assert.equal(resolveConfig({ method: "dpo", model_name_or_path: model, dataset, output_dir: "x" }).config.generate_during_eval, false);

  const bare = makeTinyModel(join(tmp.dir, "bare-model"), { vocab: 64, hidden: 16 });
  const c = resolveConfig({ ...base, model_name_or_path: bare, eval_on_start: true, max_steps: 1, threads: 1 }).config;
  await assert.rejects(train(c, { quiet: true, handleSignals: false, rows: randomPairs(4, { vocab: 64 }), evalRows: randomPairs(2, { vocab: 64 }) }),
    /generate_during_eval needs the model's tokenizer .* has no tokenizer\.json/);
});
