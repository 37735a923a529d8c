// Hostile data files: a line longer than V8's string limit, rows of 50 MB and 5 MB, invalid UTF-8, a JSON
// array too big to parse, a tampered tokenized-dataset cache, an empty vocabulary, columns named after
// Object's prototype, pad_to_multiple_of 1e9 and seeds past 2^32. Each case checks the clean outcome: a
// DataError (or exit code 1) naming the input and the fix, or the right result. The cut before tokenizing
// (budget.ts) is checked against tokenizing everything and truncating after.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { appendFileSync, readFileSync, truncateSync, writeFileSync, openSync, writeSync, closeSync, readdirSync } from "node:fs";
import { join } from "node:path";
import {
  DataError, loadExamples, loadTokenizer, prepareDataset, truncatePair, truncationOptions, checkPadToMultipleOf, padRows,
  seededRandom, permutation, parseMixture, type TokenizedPair, type Tokenizer,
} from "../../src/data/index.ts";
import { checkSeed, mulberry32 } from "../../src/util/random.ts";
import { assertRefused, CHAT_TEMPLATE, cli, jsonl, scratch, tokenizerFolder } from "./helpers.ts";

const tmp = scratch("preftune-hostile-data-");
let tokDir: string;
let tok: Tokenizer;

const pair = (i: number) => ({ prompt: `Question ${i}: what is ${i} plus ${i}?`, chosen: ` It is ${2 * i}.`, rejected: ` It is ${2 * i + 1}.` });
const words = (n: number) => {
  const w = ["alpha", "beta", "gamma", "delta", "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "42", "naïve", "日本", "—"];
  let s = "", k = 7;
  while (s.length < n) { k = (k * 1103515245 + 12345) >>> 0; s += w[k % w.length] + (k % 11 === 0 ? ".\n" : " "); }
  return s.slice(0, n);
};

before(async () => {
  tokDir = tokenizerFolder(join(tmp.dir, "tok"), { chatTemplate: CHAT_TEMPLATE });
  tok = await loadTokenizer(tokDir);
});
after(() => tmp.cleanup());

test("a line longer than V8's string limit is a bad row naming its line, never a RangeError (CLI, sparse 513 MiB line)", () => {
  const f = join(tmp.dir, "huge-line.jsonl");
  writeFileSync(f, JSON.stringify(pair(1)) + "\n");
  truncateSync(f, 513 * 1024 * 1024);                      // line 2: zero bytes past V8's 512 MiB string limit, sparse on disk
  appendFileSync(f, "\n" + JSON.stringify(pair(3)) + "\n");
  const r = cli(["data", "tokenize", "--model", tokDir, "--dataset", f, "--output", join(tmp.dir, "out.jsonl"), "--no-cache", "--no-progress"]);
  assertRefused(r, /huge-line\.jsonl, line 2: the line is 513 MiB, more than the 16 MiB limit for one row\. Shorten or remove the row, or raise max_row_bytes \(or PREFTUNE_MAX_ROW_BYTES\) \(or set skip_bad_rows to skip such rows\)/);
});

test("a 50 MB row is refused by the row limit with its file and line; the limit is configurable", async () => {
  const f = join(tmp.dir, "fifty.jsonl");
  const fd = openSync(f, "w");
  writeSync(fd, JSON.stringify(pair(1)) + "\n");
  writeSync(fd, `{"prompt": "p", "chosen": "${"a".repeat(50 * 1024 * 1024)}", "rejected": "r"}\n`);
  closeSync(fd);
  await assert.rejects(loadExamples(f), (e: unknown) => e instanceof DataError && e.row === 2 && /fifty\.jsonl, line 2: the line is 50 MiB, more than the 16 MiB limit/.test(e.message));
  const small = join(tmp.dir, "small-limit.jsonl");
  writeFileSync(small, jsonl([pair(1), { ...pair(2), chosen: "x".repeat(5000) }, pair(3)]));
  const r = await loadExamples(small, { max_row_bytes: 4096, skip_bad_rows: true });
  assert.equal(r.paired.length, 2);
  assert.equal(r.badRows, 1);
  assert.match(r.badRowMessages[0], /line 2: the line is \d+ bytes, more than the 4096 bytes limit/);
});

test("a 5 MB row under max_length 64 takes seconds, not a minute, and keeps TRL's tokens", async () => {
  const f = join(tmp.dir, "five.jsonl");
  writeFileSync(f, jsonl([{ prompt: "Tell me a long story.", chosen: " " + words(5 * 1024 * 1024), rejected: " No." }]));
  const t0 = performance.now();
  const d = await prepareDataset(f, tok, { method: "dpo", max_length: 64, cacheDir: null });
  assert.ok(performance.now() - t0 < 20_000, `took ${(performance.now() - t0).toFixed(0)} ms`);
  assert.equal(d.stats.textCutRows, 1);
  const row = d.rows[0] as TokenizedPair;
  assert.equal(row.prompt_ids.length + row.chosen_ids.length, 64);
  // the same row with the completion at 40k characters (far beyond 64 tokens) gives the same tokens
  const g = join(tmp.dir, "five-short.jsonl");
  writeFileSync(g, jsonl([{ prompt: "Tell me a long story.", chosen: " " + words(40_000), rejected: " No." }]));
  const ref = await prepareDataset(g, tok, { method: "dpo", max_length: null, cacheDir: null });
  const want = truncatePair(ref.rows[0] as TokenizedPair, truncationOptions({ max_length: 64 }));
  assert.deepEqual(row, want.row);
});

test("cutting text before tokenizing gives exactly the rows of tokenizing everything and truncating after", async () => {
  const big = (n: number) => words(n);
  const std = [
    { prompt: big(30_000), chosen: " " + big(80), rejected: " short" },
    { prompt: "Short prompt?", chosen: " " + big(30_000), rejected: " " + "ab".repeat(15_000) },
  ];
  const conv = std.map((r) => ({
    prompt: [{ role: "user", content: r.prompt }], chosen: [{ role: "assistant", content: r.chosen.trim() }], rejected: [{ role: "assistant", content: r.rejected.trim() }],
  }));
  const cases: [string, unknown[], Record<string, unknown>][] = [
    ["std.jsonl", std, { method: "dpo", max_length: 48, truncation_mode: "keep_end" }],
    ["std.jsonl", std, { method: "orpo", max_length: 48, max_prompt_length: 16 }],
    ["conv.jsonl", conv, { method: "kto", max_length: 48, max_completion_length: 20 }],
  ];
  for (const [name, rows, o] of cases) {
    const f = join(tmp.dir, name);
    writeFileSync(f, jsonl(rows));
    const cut = await prepareDataset(f, tok, { ...(o as object), cacheDir: null } as never);
    assert.ok(cut.stats.textCutRows > 0);
    const full = await prepareDataset(f, tok, { ...(o as object), max_length: null, max_prompt_length: null, max_completion_length: null, cacheDir: null } as never);
    const tr = truncationOptions(o as never);
    const { truncateUnpaired } = await import("../../src/data/truncate.ts");
    const want = full.rows.map((r) => (full.kind === "paired" ? truncatePair(r as TokenizedPair, tr) : truncateUnpaired(r as never, tr))).filter((t) => !t.drop).map((t) => t.row);
    assert.deepEqual(cut.rows, want, `${name} ${JSON.stringify(o)}`);
  }
});

test("invalid UTF-8 is a bad row naming the line (skip_bad_rows skips it), never a silent U+FFFD", async () => {
  const f = join(tmp.dir, "latin1.jsonl");
  const bad = Buffer.concat([Buffer.from('{"prompt": "caf'), Buffer.from([0xe9]), Buffer.from('?", "chosen": " a", "rejected": " b"}\n')]);
  writeFileSync(f, Buffer.concat([Buffer.from(JSON.stringify(pair(1)) + "\n"), bad, Buffer.from(JSON.stringify(pair(3)) + "\n")]));
  await assert.rejects(loadExamples(f), (e: unknown) => e instanceof DataError && e.row === 2 && /line 2: not valid UTF-8 \(byte 16 of the line\)\. Re-encode the file as UTF-8/.test(e.message));
  const r = await loadExamples(f, { skip_bad_rows: true });
  assert.equal(r.paired.length, 2);
  assert.equal(r.badRows, 1);
  const j = join(tmp.dir, "latin1.json");
  writeFileSync(j, Buffer.concat([Buffer.from("[\n" + JSON.stringify(pair(1)) + ",\n"), bad.subarray(0, bad.length - 1), Buffer.from("\n]")]));
  await assert.rejects(loadExamples(j), (e: unknown) => e instanceof DataError && /latin1\.json: not valid UTF-8 at line 3/.test(e.message));
});

test("a JSON array file too big to parse whole is refused with the conversion to JSON Lines (sparse 300 MB file)", async () => {
  const f = join(tmp.dir, "big-array.json");
  writeFileSync(f, "[");
  truncateSync(f, 300 * 1024 * 1024);
  await assert.rejects(loadExamples(f), (e: unknown) => e instanceof DataError && /big-array\.json: the file is 300 MiB: a JSON array file is parsed whole/.test(e.message) && /jq -c/.test(e.message));
});

test("tampered cache rows (strings, floats, empty lists, null rows, foreign ids) are refused naming the cache file and the fix", async () => {
  const f = join(tmp.dir, "cached.jsonl");
  writeFileSync(f, jsonl([pair(1), pair(2), pair(3)]));
  const cacheDir = join(tmp.dir, "cache");
  const first = await prepareDataset(f, tok, { method: "dpo", max_length: 64, cacheDir });
  const file = first.stats.cacheFile!;
  assert.ok(readdirSync(cacheDir).length === 1);
  const good = readFileSync(file, "utf8").split("\n");
  const tamper: [string, (r: Record<string, any>) => unknown, RegExp][] = [
    ["a string id", (r) => ({ ...r, prompt_ids: [r.prompt_ids[0], "7"] }), /row 2 is not a tokenized paired row \(prompt_ids\[1\]: Invalid input: expected number, received string\)/],
    ["a float id", (r) => ({ ...r, chosen_ids: [1.5] }), /chosen_ids\[0\]: Invalid input: expected int/],
    ["an empty id list", (r) => ({ ...r, rejected_ids: [] }), /rejected_ids: an empty list/],
    ["a null row", () => null, /row 2 is not a tokenized paired row \(Invalid input: expected object, received null\)/],
    ["an id outside the vocabulary", (r) => ({ ...r, chosen_ids: [99_999_999] }), /row 2 has chosen_ids id 99999999, outside the tokenizer's 32000 ids/],
  ];
  for (const [what, edit, msg] of tamper) {
    const lines = [...good];
    lines[2] = JSON.stringify(edit(JSON.parse(lines[2])));
    writeFileSync(file, lines.join("\n"));
    await assert.rejects(prepareDataset(f, tok, { method: "dpo", max_length: 64, cacheDir }), (e: unknown) => {
      assert.ok(e instanceof DataError, `${what}: ${e}`);
      assert.match(e.message, /the tokenized-dataset cache is damaged/);
      assert.ok(e.message.includes(file), `${what}: names the file`);
      assert.match(e.message, msg, what);
      assert.match(e.message, /Delete it; it is rebuilt from the dataset on the next run/);
      return true;
    });
  }
  writeFileSync(file, good.slice(0, 2).join("\n") + "\n");   // rows cut off: the count in the header is checked
  await assert.rejects(prepareDataset(f, tok, { method: "dpo", max_length: 64, cacheDir }), /the header says 3 rows but the file has 1/);
  writeFileSync(file, good.join("\n"));
  const again = await prepareDataset(f, tok, { method: "dpo", max_length: 64, cacheDir });
  assert.equal(again.stats.fromCache, true);
  assert.deepEqual(again.rows, first.rows);
});

test("an empty vocabulary is refused naming tokenizer.json", async () => {
  const dir = tokenizerFolder(join(tmp.dir, "empty-vocab"), { edit: (tj) => { tj.model.vocab = {}; tj.model.merges = []; tj.added_tokens = []; } });
  await assert.rejects(loadTokenizer(dir), (e: unknown) => e instanceof DataError && e.message.startsWith(join(dir, "tokenizer.json")) && /vocabulary \(model\.vocab\) is empty/.test(e.message));
});

test("columns named constructor or __proto__ are data, not Object's prototype", async () => {
  const f = join(tmp.dir, "proto.jsonl");
  writeFileSync(f, '{"__proto__": "What is 1+1?", "chosen": " 2", "rejected": " 3"}\n{"__proto__": "What is 2+2?", "chosen": " 4", "rejected": " 5"}\n');
  const r = await loadExamples(f, { prompt_column: "__proto__" });
  assert.equal(r.paired[0].prompt, "What is 1+1?");
  const g = join(tmp.dir, "noctor.jsonl");
  writeFileSync(g, jsonl([{ prompt: "p", chosen: "same a", rejected: "same b" }]));
  const e = await loadExamples(g, { completion_column: "constructor", chosen_column: "constructor", rejected_column: "toString", sft: true }).then(() => null, (x) => x);
  assert.ok(e instanceof DataError, String(e));
  assert.doesNotMatch(e.message, /function/);
  const spec = parseMixture({ dataset_mixture: { datasets: [{ id: f, columns: ["constructor", "chosen", "rejected"] }] } });
  const { loadMixture } = await import("../../src/data/mixture.ts");
  await assert.rejects(loadMixture(spec!), (x: unknown) => x instanceof DataError && /column "constructor" not found/.test(x.message));
});

test("pad_to_multiple_of 1e9 is refused before anything is allocated", () => {
  assert.throws(() => checkPadToMultipleOf(1e9), /pad_to_multiple_of must be a whole number from 1 to 65536 \(usually 8 or 64\), or null, got 1000000000/);
  assert.throws(() => padRows([{ prompt: [1, 2], completion: [3] }], { padTokenId: 0, padToMultipleOf: 1e9 }), /pad_to_multiple_of/);
  assert.equal(padRows([{ prompt: [1, 2], completion: [3] }], { padTokenId: 0, padToMultipleOf: 8 }).batch.T, 8);
});

test("seeds: 2^32 no longer replays seed 0; user seeds outside numpy's range are refused; seeds below 2^32 are unchanged", () => {
  const draw = (r: () => number) => Array.from({ length: 4 }, r);
  assert.notDeepEqual(draw(mulberry32(2 ** 32)), draw(mulberry32(0)));
  assert.notDeepEqual(permutation(50, seededRandom(2 ** 32)), permutation(50, seededRandom(0)));
  assert.notDeepEqual(permutation(50, seededRandom(2 ** 33 + 5)), permutation(50, seededRandom(5)));
  // the generator as it always was, for a seed below 2^32
  let a = 12345 >>> 0;
  const old = () => { a = (a + 0x6d2b79f5) >>> 0; let t = a; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
  assert.deepEqual(draw(mulberry32(12345)), draw(old));
  assert.throws(() => checkSeed(2 ** 32, "seed"), /seed must be a whole number from 0 to 4294967295 \(2\^32 − 1, the range Hugging Face's set_seed accepts\), got 4294967296/);
  assert.throws(() => checkSeed(-1, "data_seed"), /data_seed must be a whole number/);
  assert.throws(() => parseMixture({ dataset_mixture: { datasets: [{ id: "x" }], seed: 2 ** 32 } }),
    (e: unknown) => e instanceof DataError && /dataset_mixture, field "dataset_mixture\.seed": expected a whole number from 0 to 4294967295/.test(e.message));
});
