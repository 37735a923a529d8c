// From a recipe's dataset keys (TRL ScriptArguments: dataset_name, dataset_config, dataset_train_split,
// dataset_test_split; alignment-handbook: dataset_mixture, or dataset_mixer + dataset_splits +
// dataset_configs) to the train and eval DataSources prepareDataset takes. Not reading or tokenizing rows.
import { DataError } from "./errors.ts";
import { datasetSplits, resolveDataset, type ResolvedDataset } from "./hub.ts";
import { loadMixture, parseMixture, type MixtureData } from "./mixture.ts";
import type { DataSource } from "./readers.ts";

export interface DatasetKeys {
  dataset_name?: string | null;
  dataset?: string | null;                 // this project's older name for dataset_name
  dataset_config?: string | null;
  dataset_train_split?: string | null;     // default "train"
  dataset_test_split?: string | null;      // default "test"
  eval_dataset?: string | null;            // a separate eval dataset (its dataset_test_split split, for a folder)
  dataset_mixture?: unknown;
  dataset_mixer?: unknown;
  dataset_splits?: unknown;
  dataset_configs?: unknown;
}

export interface DatasetSources {
  train: DataSource;
  test: DataSource | null;                 // null: the dataset has no test split and no eval_dataset was given
  mixture: MixtureData | null;
  describe: string;                        // one line for the log
}

/**
 * Resolves the train and eval sources. With requireTest, a missing eval split is an error naming the keys
 * that choose it; otherwise it is null.
 */
export async function resolveDatasetKeys(k: DatasetKeys, o: { requireTest?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<DatasetSources> {
  const spec = parseMixture(k as Record<string, unknown>);
  const testSplit = k.dataset_test_split ?? "test";
  if (spec) {
    if (k.dataset != null) throw new DataError("dataset and a dataset mixture are both set", { file: "dataset_mixture", field: "dataset", fix: "Give either dataset (dataset_name) or dataset_mixture" });
    const mix = await loadMixture(spec, { env: o.env });
    let test: DataSource | null = mix.test;
    if (k.eval_dataset != null) test = await resolveDataset(k.eval_dataset, { split: testSplit, env: o.env, keys: { name: "eval_dataset", split: "dataset_test_split" } });
    if (!test && o.requireTest) {
      throw new DataError("the mixture has no test rows", {
        file: spec.kind === "mixture" ? "dataset_mixture" : "dataset_mixer", field: spec.kind === "mixture" ? "dataset_mixture.test_split_size" : "dataset_splits",
        fix: spec.kind === "mixture" ? "Set dataset_mixture.test_split_size, or eval_dataset" : "List a test split in dataset_splits, or set eval_dataset",
      });
    }
    const rows = mix.sources.map((s) => `${s.id}${s.config ? `:${s.config}` : ""}[${s.split}] ${s.rowsKept}/${s.rowsRead}`).join(", ");
    return { train: mix.train, test, mixture: mix, describe: `${spec.kind === "mixture" ? "dataset_mixture" : "dataset_mixer"}: ${rows}` };
  }
  const name = k.dataset_name ?? k.dataset ?? null;
  if (name == null) throw new DataError("no dataset given", { file: "(config)", field: "dataset_name", fix: "Set dataset_name (a folder, a data file or a Hugging Face dataset id) or dataset_mixture" });
  if (k.dataset_name != null && k.dataset != null && k.dataset_name !== k.dataset) {
    throw new DataError(`dataset_name (${k.dataset_name}) and dataset (${k.dataset}) disagree`, { file: "(config)", field: "dataset", fix: "Keep dataset_name" });
  }
  const keys = { name: "dataset_name", split: "dataset_train_split" };
  const train = await resolveDataset(name, { config: k.dataset_config, split: k.dataset_train_split ?? "train", env: o.env, keys });
  let test: ResolvedDataset | null = null;
  if (k.eval_dataset != null) {
    test = await resolveDataset(k.eval_dataset, { split: testSplit, env: o.env, keys: { name: "eval_dataset", split: "dataset_test_split" } });
  } else if (train.files.length && (await datasetSplits(name, { config: k.dataset_config, env: o.env })).includes(testSplit)) {
    test = await resolveDataset(name, { config: k.dataset_config, split: testSplit, env: o.env, keys: { name: "dataset_name", split: "dataset_test_split" } });
  } else if (o.requireTest) {
    const have = await datasetSplits(name, { config: k.dataset_config, env: o.env });
    throw new DataError(`no eval split "${testSplit}" in ${name}`, {
      file: train.root, field: "dataset_test_split",
      fix: have.length ? `Available splits: ${have.join(", ")}. Set dataset_test_split to one of them, or set eval_dataset` : "A single data file has no splits: set eval_dataset",
    });
  }
  const where = train.source === "hub-cache" ? ` (Hugging Face cache, revision ${train.revision!.slice(0, 12)})` : "";
  return { train, test, mixture: null, describe: `${name}${train.config ? `:${train.config}` : ""}[${train.split}${test ? `, eval ${test.split}` : ""}]${where}` };
}
