// AlpacaEval outputs from a real tiny model through the real engine: model_outputs.json in input order with
// AlpacaEval's keys, resuming from the partial JSONL (torn last line included), and the input checks.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ALPACA_SAMPLE, alpacaConfig, readInstructions, runAlpacaEval } from "../../src/eval/alpaca.ts";
import { defaultGenerationConfig } from "../../src/generate/config.ts";
import { makeTinyModel, scratch } from "../helpers/tiny-model.ts";

const work = scratch("preftune-alpaca-");
after(work.cleanup);
const model = makeTinyModel(join(work.dir, "tiny-alpaca"), { tokenizer: "llama2", hidden: 64, layers: 2, maxPositions: 512 });
const base = { model, maxNewTokens: 8, threads: 1, batchSize: 2, log: () => {} };

test("model_outputs.json: one entry per instruction, input order, AlpacaEval's keys; a re-run redoes only what is missing", async () => {
  const output = join(work.dir, "out");
  const r = await runAlpacaEval({ ...base, output, limit: 5 });
  assert.deepEqual([r.rows, r.generated, r.reused], [5, 5, 0]);
  const list = JSON.parse(readFileSync(r.outputFile, "utf8"));
  const want = (await readInstructions(ALPACA_SAMPLE)).slice(0, 5);
  assert.deepEqual(list.map((x: { instruction: string }) => x.instruction), want.map((w) => w.instruction));
  for (const x of list) {
    assert.deepEqual(Object.keys(x), ["instruction", "output", "generator", "dataset"]);
    assert.equal(x.generator, "tiny-alpaca");
    assert.equal(x.dataset, "helpful_base");
    assert.equal(typeof x.output, "string");
  }
  // keep rows 0, 1 and 3 of the partial file, plus a torn line; the re-run makes rows 2 and 4 only
  const partial = readFileSync(r.partialFile, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  writeFileSync(r.partialFile, partial.filter((p) => [0, 1, 3].includes(p.index)).map((p) => JSON.stringify(p) + "\n").join(""));
  appendFileSync(r.partialFile, '{"index": 2, "instruction": "What is so');
  const r2 = await runAlpacaEval({ ...base, output, limit: 5, generator: "renamed" });
  assert.deepEqual([r2.generated, r2.reused], [2, 3]);
  const list2 = JSON.parse(readFileSync(r2.outputFile, "utf8"));
  assert.deepEqual(list2.map((x: { instruction: string }) => x.instruction), want.map((w) => w.instruction));
  for (const i of [0, 1, 3]) assert.equal(list2[i].output, list[i].output);
  assert.ok(list2.every((x: { generator: string }) => x.generator === "renamed"));
  assert.equal(readFileSync(r2.partialFile, "utf8").trim().split("\n").length, 5);
});

test("a JSON list input keeps extra keys; --prompt-template replaces the chat template; greedy below 1e-4", async () => {
  const file = join(work.dir, "in.json");
  writeFileSync(file, JSON.stringify([{ instruction: "Name a color.", dataset: "vicuna", datasplit: "eval" }, { instruction: "Count to three." }]));
  const r = await runAlpacaEval({ ...base, output: join(work.dir, "out2"), instructions: file, temperature: 0, promptTemplate: "<|user|>\n{instruction}</s>\n<|assistant|>\n" });
  const list = JSON.parse(readFileSync(r.outputFile, "utf8"));
  assert.deepEqual(Object.keys(list[0]), ["instruction", "output", "generator", "dataset", "datasplit"]);
  assert.deepEqual(Object.keys(list[1]), ["instruction", "output", "generator"]);
  const d = defaultGenerationConfig();
  assert.equal(alpacaConfig(d, 3, { temperature: 0 }).do_sample, false);
  assert.deepEqual(((c) => [c.do_sample, c.temperature, c.max_new_tokens, c.seed])(alpacaConfig(d, 3, {})), [true, 0.7, 2048, 3]);
  await assert.rejects(runAlpacaEval({ ...base, output: join(work.dir, "out3"), instructions: file, promptTemplate: "no placeholder" }), /has no \{instruction\} placeholder/);
});

test("bad inputs name the file, row and field; a partial file from other instructions is refused", async () => {
  const bad = join(work.dir, "bad.jsonl");
  writeFileSync(bad, '{"instruction": "ok"}\n{"prompt": "no instruction"}\n');
  await assert.rejects(readInstructions(bad), /bad\.jsonl, line 2, field "instruction": the row has no instruction\. Give every row an instruction/);
  const other = join(work.dir, "other.jsonl");
  writeFileSync(other, '{"instruction": "something else"}\n');
  await assert.rejects(runAlpacaEval({ ...base, output: join(work.dir, "out"), instructions: other }), /model_outputs\.partial\.jsonl, line 1: row 0 does not match instruction 0 of the input\. The partial outputs were made from a different instruction file/);
});
