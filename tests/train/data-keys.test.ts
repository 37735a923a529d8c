// The dataset keys in the config: one data source (dataset_name, dataset_mixture, the handbook's older
// dataset_mixer, or TRL's datasets), mixture specs and the eval split checked with every other problem, TRL's
// `datasets` entries mapped onto a dataset_mixture, the SFT-only keys, and config keys that are names of
// Object's own members (constructor, __proto__) refused as unknown keys.
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError, loadConfig, resolveConfig, unknownKeyMessage } from "../../src/train/config.ts";
import { datasetKeys, trlDatasetsMixture } from "../../src/train/data.ts";
import { scratch } from "../helpers/tiny-model.ts";

const base = { model_name_or_path: "m", output_dir: "o" };
const ok = (raw: Record<string, unknown>) => resolveConfig({ method: "dpo", ...base, ...raw });
const fails = (raw: Record<string, unknown>, ...res: RegExp[]) =>
  assert.throws(() => ok(raw), (e: Error) => {
    assert.ok(e instanceof ConfigError, e.message);
    for (const r of res) assert.match(e.message, r);
    return true;
  });
const noteOf = (notes: string[], key: string) => notes.find((n) => n.split(": ")[0].split(", ").includes(key));
const MIX = { datasets: [{ id: "org/a", split: "train_prefs", columns: ["chosen", "rejected"] }, { id: "org/b", weight: 0.5, columns: ["chosen", "rejected"] }], seed: 0, test_split_size: 0.1 };

test("config keys named like Object's members (constructor, __proto__, toString) are unknown keys, in a file and on the command line", () => {
  const s = scratch();
  try {
    for (const [name, text] of [
      ["run.yaml", "method: dpo\nmodel_name_or_path: m\ndataset_name: d\n__proto__: {polluted: 1}\nconstructor: 2\ntoString: 3\n"],
      ["run.json", '{"method": "dpo", "model_name_or_path": "m", "dataset_name": "d", "__proto__": {"polluted": 1}, "constructor": 2, "hasOwnProperty": "x"}'],
    ]) {
      const file = join(s.dir, name);
      writeFileSync(file, text);
      assert.throws(() => loadConfig(file, ["--constructor", "1", "--valueOf=2", "--__proto__", "3"]), (e: Error) => {
        assert.ok(e instanceof ConfigError, `${name}: ${e.stack}`);
        for (const k of ["__proto__", "constructor"]) assert.match(e.message, new RegExp(`unknown key "${k}" \\(not a key of TRL`));
        for (const k of ["constructor", "valueof", "__proto__"]) assert.match(e.message, new RegExp(`unknown option --${k} \\(not a key`));
        assert.doesNotMatch(e.message, /is not a function|Cannot read/);
        return true;
      });
    }
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.match(unknownKeyMessage("constructor"), /^unknown key "constructor" \(not a key/);
    assert.match(unknownKeyMessage("toString", true), /^unknown option --toString \(not a key/);
  } finally {
    s.cleanup();
  }
});

test("exactly one data source: dataset_name (or dataset), dataset_mixture, dataset_mixer or datasets", () => {
  fails({}, /no training data: set dataset_name .*, dataset_mixture .* or datasets/);
  // a Hugging Face id is resolved when training starts (the local cache), not refused here
  assert.equal(ok({ dataset_name: "HuggingFaceH4/ultrafeedback_binarized" }).config.dataset_name, "HuggingFaceH4/ultrafeedback_binarized");
  fails({ dataset: "a", dataset_name: "b" }, /dataset \(a\) and dataset_name \(b\) name different data/);
  fails({ dataset_name: "x", dataset_mixture: MIX }, /dataset_name and dataset_mixture are both set/);
  fails({ dataset_mixture: MIX, datasets: [{ path: "p" }] }, /dataset_mixture and datasets both give a dataset mixture; keep one/);
  // TRL's scripts read datasets and ignore dataset_name
  const both = ok({ dataset_name: "x", datasets: [{ path: "p" }] });
  assert.match(noteOf(both.notes, "dataset_name")!, /not read: datasets is also set/);
  assert.equal(datasetKeys(both.config).dataset_name, null);
  assert.deepEqual(datasetKeys(both.config).dataset_mixture, { datasets: [{ id: "p", config: null, split: "train", columns: null, weight: 1 }], seed: 42, test_split_size: null });
});

test("mixture specs are checked with the other problems; evaluation needs a test split from the mixture or eval_dataset", () => {
  fails({ dataset_mixture: { datasets: [{ id: "a", weight: 2 }] }, learning_rate: "x" }, /dataset_mixture\.datasets\[0\]\.weight.*expected a fraction in \(0, 1\]/, /learning_rate: must be a number/);
  fails({ dataset_mixture: { datasets: [{ id: "a", colums: ["x"] }] } }, /dataset_mixture\.datasets\[0\]\.colums.*unknown key/);
  fails({ dataset_mixture: { datasets: [{ id: "a" }] }, eval_strategy: "steps" }, /eval_strategy is "steps" but dataset_mixture has no test_split_size.*set dataset_mixture\.test_split_size, or set eval_dataset, or eval_strategy: no/);
  assert.ok(ok({ dataset_mixture: { datasets: [{ id: "a" }] }, eval_strategy: "steps", eval_dataset: "e" }));
  assert.ok(ok({ dataset_mixture: MIX, eval_steps: 5 }));   // eval_steps alone: eval_strategy steps, and the mixture has a test split
  fails({ datasets: [{ path: "a" }], eval_on_start: true }, /datasets \(TRL's mixture\) has no test_split_size.*set test_split_size/);
  assert.ok(ok({ datasets: [{ path: "a" }], eval_on_start: true, test_split_size: 0.2 }));
  // test_split_size belongs to datasets; dataset_mixture has its own
  assert.match(noteOf(ok({ dataset_mixture: MIX, test_split_size: 0.2 }).notes, "test_split_size")!, /no effect without datasets .*dataset_mixture has its own test_split_size/);
});

test("the handbook's older dataset_mixer / dataset_splits / dataset_configs are read, with a deprecation note", () => {
  const { config, notes } = ok({ dataset_mixer: { "HuggingFaceH4/ultrafeedback_binarized": 1.0 }, dataset_splits: ["train_prefs", "test_prefs"], eval_strategy: "steps" });
  assert.deepEqual(config.dataset_splits, ["train_prefs", "test_prefs"]);
  assert.match(noteOf(notes, "dataset_mixer")!, /^dataset_mixer, dataset_splits: alignment-handbook's mixture keys before 2025 .*dataset_mixture.*seed 42/);
  fails({ dataset_mixer: { a: 1 }, dataset_splits: ["train_prefs"], eval_strategy: "steps" }, /dataset_splits lists no test split/);
  fails({ dataset_mixer: { a: 1 }, dataset_splits: ["validation"] }, /split "validation" is neither a train nor a test split/);
  fails({ dataset_mixer: { a: 1, b: 0.5 }, dataset_configs: ["x"] }, /dataset_configs.*expected a list of 2 config names/);
  assert.match(noteOf(ok({ dataset_name: "d", dataset_splits: ["train"] }).notes, "dataset_splits")!, /no effect without dataset_mixer/);
  fails({ dataset_mixer: { a: 1 }, dataset_mixture: MIX }, /dataset_mixture and dataset_mixer both give a dataset mixture/);
  fails({ dataset_mixer: { a: 1 }, dataset_name: "d" }, /dataset_name and dataset_mixer are both set/);
});

test("TRL's datasets entries: path, name, split, columns; data_files (one file, json/parquet builder) and data_dir (inside a local folder)", () => {
  const s = scratch();
  try {
    const m = trlDatasetsMixture([
      { path: "org/prefs", name: "default", split: "train_prefs", columns: ["chosen", "rejected"] },
      { path: "json", data_files: "extra/train.jsonl" },
      { path: "parquet", data_files: ["more.parquet"], data_dir: "d" },
      { path: s.dir, data_dir: "sub" },
    ], 0.05, 7);
    assert.deepEqual(m.problems, []);
    assert.deepEqual(m.mixture, {
      datasets: [
        { id: "org/prefs", config: "default", split: "train_prefs", columns: ["chosen", "rejected"], weight: 1 },
        { id: "extra/train.jsonl", config: null, split: "train", columns: null, weight: 1 },
        { id: join("d", "more.parquet"), config: null, split: "train", columns: null, weight: 1 },
        { id: join(s.dir, "sub"), config: null, split: "train", columns: null, weight: 1 },
      ],
      seed: 7, test_split_size: 0.05,
    });
    const bad = trlDatasetsMixture([{ name: "x" }, { path: "json" }, { path: "org/a", data_files: ["a", "b"] }, { path: "org/b", data_dir: "sub" }, { path: "c", fraction: 0.5 }], 1.5, 0);
    for (const re of [/datasets\[0\]\.path is required/, /datasets\[1\]: path "json" names datasets' json builder, which needs data_files/, /datasets\[2\]\.data_files: only one file is read here/,
      /datasets\[3\]\.data_dir: a folder inside a Hugging Face dataset is not selected here/, /datasets\[4\]\.fraction: unknown key/, /test_split_size: must be a fraction in \(0, 1\) or a whole number of rows, got 1\.5/]) {
      assert.ok(bad.problems.some((p) => re.test(p)), `${re} in ${bad.problems.join(" | ")}`);
    }
    assert.equal(bad.mixture, null);
    fails({ datasets: [{ path: "json" }] }, /datasets\[0\]: path "json" names datasets' json builder/);
  } finally {
    s.cleanup();
  }
});

test("SFT keys: packing and assistant_only_loss are for method sft; packing needs max_length; the rest note that they change nothing elsewhere", () => {
  fails({ dataset_name: "d", packing: true }, /packing: true applies to method sft/);
  fails({ dataset_name: "d", assistant_only_loss: true }, /assistant_only_loss: true applies to method sft/);
  assert.match(noteOf(ok({ dataset_name: "d", dataset_text_field: "body", completion_only_loss: false }).notes, "dataset_text_field")!, /^dataset_text_field, completion_only_loss: no effect: an SFT setting \(TRL SFTConfig\), and method is dpo/);
  assert.deepEqual(ok({ dataset_name: "d", dataset_text_field: "text", packing: false }).notes, []);   // at TRL's defaults: silent
  const sft = (raw: Record<string, unknown>) => resolveConfig({ method: "sft", ...base, dataset_name: "d", ...raw });
  assert.throws(() => sft({ packing: true, max_length: null }), /packing: true needs max_length/);
  assert.throws(() => sft({ eval_packing: true, max_length: null }), /eval_packing: true needs max_length/);
  assert.equal(sft({ packing: true, packing_strategy: "wrapped", max_seq_length: 512 }).config.max_length, 512);
  assert.match(noteOf(sft({ shuffle_dataset: true }).notes, "shuffle_dataset")!, /no effect without packing/);
  assert.deepEqual(sft({ shuffle_dataset: true, packing: true }).notes, []);
  assert.throws(() => sft({ chat_template: "{{ x }}", chat_template_path: "t.jinja" }), /chat_template and chat_template_path are both set/);
});
