// max_length against the model's positions: train refuses an impossible max_length before tokenizing; score
// defaults to what the model can take, refuses more, and never leaves a half-written output file.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { score } from "../../src/cli/train.ts";
import { resolveConfig } from "../../src/train/config.ts";
import { train } from "../../src/train/loop.ts";
import { makeTinyModel, scratch } from "../helpers/tiny-model.ts";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const dataset = join(repo, "data", "hh-rlhf-harmless-sample");
const work = scratch();
after(work.cleanup);
const model = makeTinyModel(join(work.dir, "model"), { tokenizer: "llama2", maxPositions: 128, hidden: 16, heads: 2, kvHeads: 1 });

test("train refuses max_length beyond max_position_embeddings, naming both numbers", async () => {
  const { config } = resolveConfig({ method: "orpo", model_name_or_path: model, dataset, output_dir: join(work.dir, "run"), max_length: 1024, max_steps: 1 });
  await assert.rejects(train(config, { quiet: true, handleSignals: false }), /max_length 1024 is more than .*max_position_embeddings \(128\): set max_length to at most 128/);
});

test("score: defaults max_length to the model's positions; refuses more and writes nothing", async () => {
  const bad = join(work.dir, "bad.jsonl");
  await assert.rejects(score({ model, dataset, output: bad, maxLength: 4096, quiet: true, threads: 1 }), /--max-length 4096 is more than .*\(128\); use at most 128/);
  assert.equal(existsSync(bad), false);
  const out = join(work.dir, "scores.jsonl");
  const r = await score({ model, dataset, output: out, quiet: true, threads: 1 });
  const lines = readFileSync(out, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(lines.length, r.pairs);
  assert.ok(r.pairs > 0 && r.accuracy >= 0 && r.accuracy <= 1);
  assert.ok(lines.every((l) => l.chosen_tokens > 0 && l.rejected_tokens > 0 && l.chosen_logps < 0));
});
