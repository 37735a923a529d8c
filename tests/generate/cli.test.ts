// `preftune generate` end to end as a user runs it (a child process over a real tiny model with the real Llama-2
// tokenizer): a streamed prompt, a prompts file with the output rows, and the bad inputs a user meets — a prompt
// longer than max_position_embeddings, an adapter trained on another base, a model folder without a tokenizer,
// an unknown sampling key — each a non-zero exit with a message that names the fix.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { makeTinyModel, scratch } from "../helpers/tiny-model.ts";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const run = (args: string[]) => spawnSync(process.execPath, [join(repo, "bin", "preftune.js"), "generate", ...args], { encoding: "utf8", timeout: 60_000 });

const dir = scratch("generate-cli");
const model = makeTinyModel(join(dir.dir, "model"), { tokenizer: "llama2", hidden: 64, layers: 2, maxPositions: 64 });
test.after(() => dir.cleanup());

test("a single prompt streams its completion; a prompts file gives one row per prompt", () => {
  const one = run(["--model", model, "--prompt", "Hello there", "--max-new-tokens", "6", "--threads", "1"]);
  assert.equal(one.status, 0, one.stderr);
  assert.match(one.stderr, /\[length\] \d+ prompt \+ 6 new tokens; first token \d+ ms/);
  const prompts = join(dir.dir, "p.jsonl"), out = join(dir.dir, "o.jsonl");
  writeFileSync(prompts, '{"prompt": "Hi", "id": "a"}\n{"messages": [{"role": "user", "content": "Yo"}]}\n{"prompt": "Hello there"}\n');
  const many = run(["--model", model, "--prompts", prompts, "--output", out, "--max-new-tokens", "6", "--batch-size", "2", "--threads", "1"]);
  assert.equal(many.status, 0, many.stderr);
  const rows = readFileSync(out, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(rows.map((r) => r.index), [0, 1, 2]);
  assert.equal(rows[0].id, "a");
  for (const r of rows) {
    assert.equal(r.completion_ids.length, r.completion_tokens);
    assert.ok(["eos", "length", "stop"].includes(r.finish_reason));
    assert.equal(typeof r.completion, "string");
  }
  // greedy is deterministic and batching does not change it: the streamed prompt equals row 2 of the file
  assert.equal(one.stdout.trimEnd(), rows[2].completion.trimEnd());
});

test("bad input: each error names the input and the fix", () => {
  const long = run(["--model", model, "--prompt", "word ".repeat(80), "--max-new-tokens", "4"]);
  assert.notEqual(long.status, 0);
  assert.match(long.stderr, /max_position_embeddings|positions/);
  assert.match(long.stderr, /shorten|fewer|lower|at most/i);

  const other = makeTinyModel(join(dir.dir, "other"), { hidden: 32, layers: 1, tokenizer: "llama2" });
  const adapter = join(repo, "tests", "fixtures", "lora", "llama-tiny-adapter");
  const wrong = run(["--model", other, "--adapter", adapter, "--prompt", "Hi"]);
  assert.notEqual(wrong.status, 0);
  assert.match(wrong.stderr, /does not fit the model/);
  assert.match(wrong.stderr, /trained on "tests\/fixtures\/core\/llama-tiny"; pass that model as --model/);

  const bare = join(dir.dir, "bare");
  cpSync(model, bare, { recursive: true });
  rmSync(join(bare, "tokenizer.json"));
  const noTok = run(["--model", bare, "--prompt", "Hi"]);
  assert.notEqual(noTok.status, 0);
  assert.match(noTok.stderr, /tokenizer\.json/);
  assert.match(noTok.stderr, /Copy tokenizer\.json/);

  const key = run(["--model", model, "--prompt", "Hi", "--top-kk", "3"]);
  assert.notEqual(key.status, 0);
  assert.match(key.stderr, /unknown option '--top-kk'[\s\S]*Did you mean --top-k\?/);
  const value = run(["--model", model, "--prompt", "Hi", "--top-p", "1.5"]);
  assert.notEqual(value.status, 0);
  assert.match(value.stderr, /top_p/);
});
