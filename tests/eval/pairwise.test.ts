// Preference accuracy on held-out pairs with tiny models: length-normalised ranking without a reference, TRL's
// reward metrics against a --ref-model, the base-with-adapters-disabled reference of a LoRA adapter, IPO's
// per-token means, `score` agreeing with it, and the eval command's option checks.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import { registerEvalCommand } from "../../src/cli/eval.ts";
import { NativeModel } from "../../src/core/native.ts";
import { pairwiseEval, score } from "../../src/eval/pairwise.ts";
import { loadWeightsInto, readModelDir } from "../../src/models/checkpoint.ts";
import { initLora, saveAdapter } from "../../src/models/peft.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { makeTinyModel, scratch } from "../helpers/tiny-model.ts";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const work = scratch("preftune-pairwise-");
after(work.cleanup);
const opts = { tokenizer: "llama2" as const, hidden: 32, layers: 1, maxPositions: 256 };
const policyDir = makeTinyModel(join(work.dir, "policy"), { ...opts, seed: 1 });
const refDir = makeTinyModel(join(work.dir, "ref"), { ...opts, seed: 2 });
const dataset = join(work.dir, "pairs.jsonl");
writeFileSync(dataset, readFileSync(join(repo, "data", "hh-rlhf-harmless-sample", "test.jsonl"), "utf8").split("\n").slice(0, 10).join("\n") + "\n");
const common = { dataset, maxLength: 128, threads: 1, quiet: true, batchSize: 4 };
const perPair = (file: string) => readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l));
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const close = (a: number, b: number, tol = 1e-9) => assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${a} vs ${b}`);

test("no reference: ranked by mean per-token log-prob, reported under TRL's names with a note", async () => {
  const r = await pairwiseEval({ ...common, model: policyDir, output: join(work.dir, "noref"), beta: 0.1 });
  assert.equal(r.ranking, "length-normalised");
  assert.match(r.note, /no reference model: pairs ranked by mean per-token completion log-prob/);
  const rows = perPair(r.output);
  assert.equal(rows.length, r.pairs);
  const c = rows.map((x) => x.chosen_logps / x.chosen_tokens), j = rows.map((x) => x.rejected_logps / x.rejected_tokens);
  close(r.metrics["eval_rewards/accuracies"], mean(c.map((v, i) => (v > j[i] ? 1 : 0))));
  close(r.metrics["eval_rewards/chosen"], 0.1 * mean(c));
  close(r.metrics["eval_logps/rejected"], mean(j));
  const saved = JSON.parse(readFileSync(r.metricsFile, "utf8"));
  assert.equal(saved.ranking, "length-normalised");
  assert.equal(saved["eval_rewards/margins"], r.metrics["eval_rewards/margins"]);
  // score (preftune score) sees the same summed log-probs
  const s = await score({ ...common, model: policyDir, output: join(work.dir, "score.jsonl") });
  assert.deepEqual(perPair(s.output).map((x) => x.chosen_logps), rows.map((x) => x.chosen_logps));
});

test("--ref-model: rewards β·(policy − ref) of summed log-probs; TRL's six eval metrics", async () => {
  const refOnly = perPair((await pairwiseEval({ ...common, model: refDir, output: join(work.dir, "refonly") })).output);
  const r = await pairwiseEval({ ...common, model: policyDir, refModel: refDir, output: join(work.dir, "withref"), beta: 0.5 });
  assert.equal(r.ranking, "reference");
  assert.deepEqual(Object.keys(r.metrics), ["eval_rewards/chosen", "eval_rewards/rejected", "eval_rewards/accuracies", "eval_rewards/margins", "eval_logps/chosen", "eval_logps/rejected"]);
  const rows = perPair(r.output);
  rows.forEach((x, i) => {
    assert.equal(x.ref_chosen_logps, refOnly[i].chosen_logps);
    close(x.chosen_reward, 0.5 * (x.chosen_logps - x.ref_chosen_logps));
  });
  close(r.metrics["eval_rewards/accuracies"], mean(rows.map((x) => (x.chosen_reward > x.rejected_reward ? 1 : 0))));
  close(r.metrics["eval_rewards/margins"], mean(rows.map((x) => x.chosen_reward - x.rejected_reward)));
  close(r.metrics["eval_logps/chosen"], mean(rows.map((x) => x.chosen_logps)));
  // the policy as its own reference: every reward is 0 and no pair counts as won (TRL's strict >)
  const same = await pairwiseEval({ ...common, model: policyDir, refModel: policyDir, output: join(work.dir, "self") });
  assert.deepEqual([same.metrics["eval_rewards/chosen"], same.metrics["eval_rewards/accuracies"], same.metrics["eval_rewards/margins"]], [0, 0, 0]);
  // ipo compares per-token means
  const ipo = await pairwiseEval({ ...common, model: policyDir, refModel: refDir, output: join(work.dir, "ipo"), method: "ipo", beta: 0.5 });
  const ri = perPair(ipo.output)[0];
  close(ri.chosen_reward, 0.5 * (ri.chosen_logps / ri.chosen_tokens - ri.ref_chosen_logps / ri.chosen_tokens));
});

test("--adapter: the reference is the base with the adapter disabled", async () => {
  const base = perPair(join(work.dir, "noref", "pairwise.jsonl"));
  const m = new NativeModel(readModelDir(policyDir).config);
  const adapterDir = join(work.dir, "adapter");
  try {
    loadWeightsInto(policyDir, m.table, m.params);
    const a = m.attachLora({ r: 4, loraAlpha: 8, useRslora: false, targetModules: ["q_proj", "v_proj"], loraDropout: 0 });
    initLora(a, 3);
    const rand = mulberry32(5);
    for (const p of a.table) if (p.name.endsWith("lora_B.weight")) a.param(p.name).forEach((_, i, v) => { v[i] = 0.5 * (rand() - 0.5); });
    saveAdapter(adapterDir, a, { baseModelNameOrPath: policyDir });
  } finally {
    m.free();
  }
  const r = await pairwiseEval({ ...common, model: policyDir, adapter: adapterDir, output: join(work.dir, "lora") });
  assert.equal(r.ranking, "reference");
  assert.match(r.note, /reference: .*\(adapters disabled\)/);
  const rows = perPair(r.output);
  rows.forEach((x, i) => close(x.ref_chosen_logps, base[i].chosen_logps, 1e-5));
  assert.ok(rows.some((x, i) => Math.abs(x.chosen_logps - base[i].chosen_logps) > 1e-3), "the adapter changes the policy");
  const noref = await pairwiseEval({ ...common, model: policyDir, adapter: adapterDir, noReference: true, output: join(work.dir, "lora-noref") });
  assert.equal(noref.ranking, "length-normalised");
});

test("eval command: task-specific options are checked against --task", async () => {
  const run = async (args: string[]) => {
    const program = new Command().exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
    registerEvalCommand(program);
    await program.parseAsync(["node", "preftune", "eval", ...args]);
  };
  await assert.rejects(run(["--task", "pairwise", "--model", policyDir]), /--task pairwise needs --dataset/);
  await assert.rejects(run(["--task", "mt-bench", "--model", policyDir, "--dataset", dataset]), /--dataset applies to --task pairwise, not mt-bench/);
  await assert.rejects(run(["--task", "alpaca-eval", "--model", policyDir, "--judge-url", "http://x"]), /--judge-url applies to --task mt-bench, not alpaca-eval/);
  await assert.rejects(run(["--task", "mt-bench", "--model", policyDir, "--judge-url", "http://x"]), /needs both --judge-url and --judge-model/);
  await assert.rejects(run(["--task", "mt-bench", "--model", policyDir, "--question-ids", "90-81"]), /--question-ids: "90-81" is not an id or a range/);
  await assert.rejects(run(["--task", "bleu", "--model", policyDir]), /--task "bleu": use one of pairwise, mt-bench, alpaca-eval/);
  await assert.rejects(run(["--task", "pairwise", "--model", policyDir, "--dataset", dataset, "--batch-size", "0"]), /--batch-size must be a whole number ≥ 1, got "0"/);
});
