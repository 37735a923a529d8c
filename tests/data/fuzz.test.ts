// Seeded fuzzing of the readers + validation with truncated, bit-flipped, spliced and random files in every
// format: each case must end in rows or a DataError, never another exception, a crash or a hang.
// Not a correctness test of good files (readers.test.ts).
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DataError, loadExamples, seededRandom } from "../../src/data/index.ts";
import { recompress, writeParquetPlain } from "./parquet-fixture.ts";

const tmp = mkdtempSync(join(tmpdir(), "preftune-fuzz-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

const hh = readFileSync(new URL("../../data/hh-rlhf-harmless-sample/test.jsonl", import.meta.url), "utf8").split("\n").slice(0, 6);
const kto = readFileSync(new URL("../../data/hh-rlhf-kto-unpaired/test.jsonl", import.meta.url), "utf8").split("\n").slice(0, 6);
const rowsOf = (lines: string[]) => lines.filter(Boolean).map((l) => JSON.parse(l));
const enc = new TextEncoder();

function parquetSeed(): Uint8Array {
  const rows = rowsOf(hh);
  return writeParquetPlain([
    { name: "prompt", kind: "messages", values: rows.map((r) => r.prompt) },
    { name: "chosen", kind: "messages", values: rows.map((r) => r.chosen) },
    { name: "rejected", kind: "messages", values: rows.map((r) => r.rejected) },
  ]);
}

const seeds: { ext: string; bytes: Uint8Array }[] = [
  { ext: "jsonl", bytes: enc.encode(hh.join("\n")) },
  { ext: "jsonl", bytes: enc.encode(kto.join("\n")) },
  { ext: "json", bytes: enc.encode(JSON.stringify(rowsOf(hh))) },
  { ext: "parquet", bytes: parquetSeed() },
  { ext: "parquet", bytes: recompress(parquetSeed(), "snappy", 3) },
  { ext: "parquet", bytes: recompress(parquetSeed(), "zstd", 3) },
  { ext: "parquet", bytes: recompress(parquetSeed(), "gzip", 3) },
  { ext: "parquet", bytes: recompress(parquetSeed(), "brotli", 3) },
];

type Mutation = (b: Uint8Array, rand: () => number) => Uint8Array;
const int = (rand: () => number, n: number) => Math.floor(rand() * n);
const mutations: Record<string, Mutation> = {
  truncate: (b, r) => b.slice(0, int(r, b.length)),
  flip: (b, r) => { const c = b.slice(); for (let k = 1 + int(r, 8); k > 0; k--) c[int(r, c.length)] ^= 1 << int(r, 8); return c; },
  randomBytes: (b, r) => { const c = b.slice(); for (let k = 1 + int(r, 16); k > 0; k--) c[int(r, c.length)] = int(r, 256); return c; },
  splice: (b, r) => { const i = int(r, b.length), j = int(r, b.length); return Uint8Array.from([...b.slice(0, Math.min(i, j)), ...b.slice(Math.max(i, j))]); },
  garbage: (b, r) => Uint8Array.from({ length: int(r, 400) }, () => int(r, 256)),
  // keep the Parquet magic at both ends so the reader gets as far as the footer
  garbageWithMagic: (b, r) => { const c = Uint8Array.from({ length: 64 + int(r, 400) }, () => int(r, 256)); c.set(enc.encode("PAR1")); c.set(enc.encode("PAR1"), c.length - 4); return c; },
  // a valid file with one absurdly nested line spliced in (stack depth in parsers and error messages)
  deepNest: (b, r) => { const d = 20000 + int(r, 60000); const i = int(r, b.length); return Uint8Array.from([...b.slice(0, i), ...enc.encode(`\n${"[".repeat(d)}${"]".repeat(d)}\n`), ...b.slice(i)]); },
  footerFlip: (b, r) => { const c = b.slice(); const i = Math.max(0, c.length - 8 - int(r, Math.min(300, c.length))); c[i] ^= 1 << int(r, 8); return c; },
};

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, rej) => { timer = setTimeout(() => rej(new Error(`hang: ${what}`)), ms); });
  try { return await Promise.race([p, t]); } finally { clearTimeout(timer); }
}

test("fuzzed files in every format end in rows or a DataError, never a crash or hang (seeded, 384 cases)", { timeout: 60_000 }, async () => {
  const rand = seededRandom(20240601);
  const names = Object.keys(mutations);
  let cases = 0, clean = 0, errors = 0;
  for (let round = 0; round < 6; round++) {
    for (const seed of seeds) {
      for (const name of names) {
        const bytes = mutations[name](seed.bytes, rand);
        const f = join(tmp, `case-${cases}.${seed.ext}`);
        writeFileSync(f, bytes);
        const what = `case ${cases}: ${name} of a ${seed.ext} file (${bytes.length} bytes)`;
        for (const skip of [false, true]) {
          try {
            const d = await withTimeout(loadExamples(f, { skip_bad_rows: skip }), 5000, what);
            assert.ok(d.paired.length + d.unpaired.length + d.badRows >= 1, what);
            clean++;
          } catch (e) {
            if (!(e instanceof DataError)) assert.fail(`${what}: ${(e as Error)?.stack ?? e}`);
            assert.match(e.message, new RegExp(`case-${cases}\\.${seed.ext}`), `${what}: names the file`);
            errors++;
          }
        }
        rmSync(f);
        cases++;
      }
    }
  }
  assert.equal(cases, 6 * seeds.length * names.length);
  assert.ok(clean > 0 && errors > 0, `clean ${clean}, errors ${errors}`);
});
