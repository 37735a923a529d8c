// Readers: JSONL / JSON / Parquet (every codec, written by parquet-wasm) and folder layouts with splits.
// Not format validation (formats.test.ts) and not fuzzing (fuzz.test.ts).
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { asyncBufferFromFile, parquetMetadataAsync } from "hyparquet";
import { DataError, loadExamples, readRecords, resolveDataFiles } from "../../src/data/index.ts";
import { recompress, writeParquetPlain, type Column } from "./parquet-fixture.ts";

const tmp = mkdtempSync(join(tmpdir(), "preftune-readers-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

const rows = [
  { prompt: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi ✓ 你好" }], chosen: [{ role: "assistant", content: "Hello!" }], rejected: [{ role: "assistant", content: "Go away 🙃" }] },
  { prompt: [{ role: "user", content: "2+2?" }], chosen: [{ role: "assistant", content: "4" }], rejected: [{ role: "assistant", content: "5" }] },
  { prompt: [{ role: "user", content: "Name a colour" }, { role: "assistant", content: "Red" }, { role: "user", content: "Another" }], chosen: [{ role: "assistant", content: "Blue" }], rejected: [{ role: "assistant", content: "Red" }] },
];
const columns: Column[] = [
  { name: "prompt", kind: "messages", values: rows.map((r) => r.prompt) },
  { name: "chosen", kind: "messages", values: rows.map((r) => r.chosen) },
  { name: "rejected", kind: "messages", values: rows.map((r) => r.rejected) },
];

async function collect(files: string[]) {
  const out = [];
  for await (const r of readRecords(files)) out.push(r);
  return out;
}

test("JSONL: line numbers are file lines, blank lines skipped, BOM and CRLF tolerated", async () => {
  const f = join(tmp, "a.jsonl");
  writeFileSync(f, "\ufeff" + JSON.stringify(rows[0]) + "\r\n\r\n" + JSON.stringify(rows[1]) + "\n{oops\n");
  const got = await collect([f]);
  assert.deepEqual(got.map((r) => r.row), [1, 3, 4]);
  assert.deepEqual(got[0].value, rows[0]);
  assert.deepEqual(got[1].value, rows[1]);
  assert.match(got[2].error!, /not valid JSON/);
});

test("JSON: an array of rows, and JSON Lines inside a .json file as Hugging Face datasets reads it", async () => {
  const a = join(tmp, "arr.json");
  writeFileSync(a, JSON.stringify(rows, null, 2));
  assert.deepEqual((await collect([a])).map((r) => r.value), rows);
  const l = join(tmp, "lines.json");
  writeFileSync(l, rows.map((r) => JSON.stringify(r)).join("\n"));
  assert.deepEqual((await collect([l])).map((r) => r.value), rows);
  const bad = join(tmp, "bad.json");
  writeFileSync(bad, "[{\"prompt\": 1},");
  await assert.rejects(collect([bad]), (e: unknown) => e instanceof DataError && /bad\.json: not valid JSON/.test(e.message));
});

test("Parquet: uncompressed, snappy, zstd, gzip and brotli with nested list<struct> columns give the same rows", async () => {
  const plain = writeParquetPlain(columns);
  const want = rows;
  for (const codec of ["none", "snappy", "zstd", "gzip", "brotli"] as const) {
    const f = join(tmp, `${codec}.parquet`);
    writeFileSync(f, codec === "none" ? plain : recompress(plain, codec, 2));   // 2 rows per group: two row groups
    const meta = await parquetMetadataAsync(await asyncBufferFromFile(f));
    const codecs = new Set(meta.row_groups.flatMap((g) => g.columns.map((c) => c.meta_data?.codec)));
    assert.deepEqual([...codecs], [codec === "none" ? "UNCOMPRESSED" : codec.toUpperCase()], `codec of ${codec}`);
    const got = await collect([f]);
    assert.deepEqual(got.map((r) => r.value), want, codec);
    assert.deepEqual(got.map((r) => r.row), [1, 2, 3]);
    const loaded = await loadExamples(f);
    assert.equal(loaded.kind, "paired");
    assert.equal(loaded.conversational, true);
    assert.equal(loaded.paired.length, 3);
  }
});

test("folders: train/test files, Hugging Face data/<split>-NNNNN-of-NNNNN shards, split folders, and the split choice", async () => {
  const d1 = join(tmp, "flat");
  mkdirSync(d1);
  writeFileSync(join(d1, "train.jsonl"), rows.map((r) => JSON.stringify(r)).join("\n"));
  writeFileSync(join(d1, "test.parquet"), recompress(writeParquetPlain(columns), "zstd"));
  assert.deepEqual(await resolveDataFiles(d1), [join(d1, "train.jsonl")]);
  assert.deepEqual(await resolveDataFiles(d1, "test"), [join(d1, "test.parquet")]);
  assert.equal((await loadExamples(d1, { split: "test" })).paired.length, 3);

  const d2 = join(tmp, "hub");
  mkdirSync(join(d2, "data"), { recursive: true });
  const plain = writeParquetPlain(columns);
  writeFileSync(join(d2, "data", "train-00001-of-00002.parquet"), recompress(plain, "snappy"));
  writeFileSync(join(d2, "data", "train-00000-of-00002.parquet"), recompress(plain, "gzip"));
  writeFileSync(join(d2, "data", "test-00000-of-00001.parquet"), recompress(plain, "brotli"));
  assert.deepEqual(await resolveDataFiles(d2, "train"), [
    join(d2, "data", "train-00000-of-00002.parquet"), join(d2, "data", "train-00001-of-00002.parquet"),
  ]);
  const both = await loadExamples(d2);
  assert.equal(both.paired.length, 6);
  assert.deepEqual(both.paired.map((p) => p.ref.row), [1, 2, 3, 1, 2, 3]);

  const d3 = join(tmp, "nested");
  mkdirSync(join(d3, "validation"), { recursive: true });
  writeFileSync(join(d3, "validation", "0000.json"), JSON.stringify(rows));
  assert.equal((await loadExamples(d3, { split: "validation" })).paired.length, 3);

  await assert.rejects(resolveDataFiles(d2, "dev"), (e: unknown) => e instanceof DataError && /no files for split "dev".*Available splits: test, train/.test(e.message));
  await assert.rejects(resolveDataFiles(join(tmp, "missing")), /no such file or folder/);
  writeFileSync(join(tmp, "x.csv"), "a,b");
  await assert.rejects(resolveDataFiles(join(tmp, "x.csv")), /unknown data file type ".csv"/);
});

test("the shipped hh-rlhf folder offers train, test and raw-test splits", async () => {
  const dir = new URL("../../data/hh-rlhf-harmless-sample", import.meta.url).pathname;
  assert.match((await resolveDataFiles(dir))[0], /train\.jsonl$/);
  assert.match((await resolveDataFiles(dir, "raw-test"))[0], /raw-test\.jsonl$/);
});

test("ambiguous inputs are errors: one JSON object instead of rows, a split in two formats", async () => {
  const f = join(tmp, "obj.json");
  writeFileSync(f, JSON.stringify({ train: rows }, null, 2));
  await assert.rejects(collect([f]), /obj\.json: the file holds one JSON object \(keys train\), not rows\. Give an array/);
  const d = join(tmp, "mixed");
  mkdirSync(d);
  writeFileSync(join(d, "train.jsonl"), JSON.stringify(rows[0]));
  writeFileSync(join(d, "train.json"), JSON.stringify(rows));
  await assert.rejects(resolveDataFiles(d), /split "train" has files in several formats/);
});
