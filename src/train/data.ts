// The trainer's data: a run's dataset keys (TRL ScriptArguments' dataset_name / dataset_config / splits,
// alignment-handbook's dataset_mixture and its older dataset_mixer, TRL's own `datasets` mixture) resolved by
// src/data to train and eval sources, tokenized for the method, and, for SFT with packing, packed into
// sequences of at most max_length tokens. Also TRL's chat_template_path. Not the step loop (loop.ts) and not
// the reading, formats or tokenization rules themselves (src/data).
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { DataError } from "../data/errors.ts";
import { resolveDatasetKeys, type DatasetKeys } from "../data/datasets.ts";
import { packRows, type PackedRow } from "../data/packing.ts";
import { prepareDataset, type DataOptions, type PrepStats } from "../data/prepare.ts";
import type { DataSource } from "../data/readers.ts";
import type { TokenizedPair, TokenizedUnpaired } from "../data/tokenize.ts";
import { loadTokenizer, type Tokenizer } from "../data/tokenizer.ts";
import type { TrainConfig } from "./config.ts";
import { readTextFile } from "../util/durable.ts";

export type Rows = TokenizedPair[] | TokenizedUnpaired[] | PackedRow[];

export interface TrainData {
  kind: "paired" | "unpaired";
  rows: Rows;
  packed: boolean;                 // rows are PackedRow[] (sft with packing)
  evalRows: Rows | null;
  evalPacked: boolean;             // evalRows are PackedRow[] (sft with eval_packing, default packing)
  padTokenId: number;
  tokenizerDir: string | null;
  tokenizer: Tokenizer | null;
  chatTemplate: string | null;     // the template the run uses instead of the tokenizer's (chat_template, or chat_template_path's file)
  describe: string;                // what was read, for the model card
}

/** Rows given as sources (the library's in-memory datasets) instead of through the dataset keys. */
export interface DataSources {
  train: DataSource;
  test: DataSource | null;
  describe: string;                // for messages and the model card
}

export interface DataLoadOptions {
  rows?: TokenizedPair[] | TokenizedUnpaired[];        // pre-tokenized training rows: no tokenizer, no dataset
  sources?: DataSources;
  evalRows?: TokenizedPair[] | TokenizedUnpaired[] | null;
  padTokenId?: number;
  quiet?: boolean;
}

// ---------------------------------------------------------------------------------------------------------
// TRL's DatasetMixtureConfig (`datasets:` + `test_split_size:` in a `trl dpo --config` file)

const TRL_DATASET_KEYS = ["path", "name", "data_dir", "data_files", "split", "columns"];
const FILE_BUILDERS = ["json", "parquet"];   // datasets' packaged builders whose files preftune reads

/**
 * TRL's `datasets` list (DatasetConfig: path, name, data_dir, data_files, split, columns) as the
 * alignment-handbook dataset_mixture src/data reads: every source whole (weight 1), concatenated; TRL does not
 * shuffle before train_test_split and splits with an unseeded shuffle, here the mixture's shuffles use `seed`.
 * `data_files` is read when it is one file with path json or parquet; `data_dir` when path is a local folder.
 * Returns the mixture, or the problems (each naming datasets[i].key).
 */
export function trlDatasetsMixture(list: readonly Record<string, unknown>[], testSplitSize: number | null, seed: number): { mixture: Record<string, unknown> | null; problems: string[] } {
  const problems: string[] = [];
  if (list.length === 0) problems.push("datasets: the list is empty; give at least one {path: ...}");
  const datasets = list.map((d, i) => {
    const at = `datasets[${i}]`;
    for (const k of Object.keys(d)) if (!TRL_DATASET_KEYS.includes(k)) problems.push(`${at}.${k}: unknown key (TRL's DatasetConfig has ${TRL_DATASET_KEYS.join(", ")})`);
    const str = (k: string): string | null => {
      const v = d[k];
      if (v === undefined || v === null) return null;
      if (typeof v === "string" && v !== "") return v;
      problems.push(`${at}.${k}: must be a non-empty string, got ${JSON.stringify(v)}`);
      return null;
    };
    let path = str("path");
    if (path === null && !Object.hasOwn(d, "path")) problems.push(`${at}.path is required: a local file or folder, or a Hugging Face dataset id (ORG/NAME) in the local cache`);
    const dataDir = str("data_dir");
    const files = d.data_files;
    if (files !== undefined && files !== null) {
      const one = typeof files === "string" ? files : Array.isArray(files) && files.length === 1 && typeof files[0] === "string" ? files[0] as string : null;
      if (one === null) problems.push(`${at}.data_files: only one file is read here, got ${JSON.stringify(files)}; put the files in a folder (named by split, e.g. train.jsonl) and give the folder as path`);
      else if (path !== null && !FILE_BUILDERS.includes(path)) problems.push(`${at}.data_files with path "${path}": data_files is read with path json or parquet (datasets' file builders), e.g. {path: json, data_files: train.jsonl}`);
      else path = dataDir !== null ? join(dataDir, one) : one;
    } else if (path !== null && FILE_BUILDERS.includes(path)) {
      problems.push(`${at}: path "${path}" names datasets' ${path} builder, which needs data_files (the file to read)`);
    } else if (path !== null && dataDir !== null) {
      if (existsSync(path) && statSync(path).isDirectory()) path = join(path, dataDir);
      else problems.push(`${at}.data_dir: a folder inside a Hugging Face dataset is not selected here; give the local folder as path (or use name for a config)`);
    }
    let columns: string[] | null = null;
    if (d.columns !== undefined && d.columns !== null) {
      if (Array.isArray(d.columns) && d.columns.length > 0 && d.columns.every((c) => typeof c === "string" && c !== "")) columns = d.columns as string[];
      else problems.push(`${at}.columns: must be a non-empty list of column names, got ${JSON.stringify(d.columns)}`);
    }
    return { id: path, config: str("name"), split: str("split") ?? "train", columns, weight: 1 };
  });
  if (testSplitSize !== null && !(testSplitSize > 0 && (testSplitSize < 1 || Number.isInteger(testSplitSize)))) {
    problems.push(`test_split_size: must be a fraction in (0, 1) or a whole number of rows, got ${testSplitSize}`);
  }
  if (problems.length) return { mixture: null, problems };
  return { mixture: { datasets, seed, test_split_size: testSplitSize }, problems };
}

/** The run's dataset keys as src/data takes them (TRL's `datasets` mapped onto dataset_mixture). */
export function datasetKeys(c: TrainConfig): DatasetKeys {
  const trl = c.datasets !== null ? trlDatasetsMixture(c.datasets, c.test_split_size, c.seed) : null;
  if (trl && !trl.mixture) throw new Error(`datasets: ${trl.problems.join("; ")}`);
  const mixture = c.dataset_mixture ?? trl?.mixture ?? null;
  const viaMixture = mixture !== null || c.dataset_mixer !== null;
  return {
    // TRL's scripts read `datasets` and ignore dataset_name when both are set (config.ts notes it)
    dataset_name: viaMixture ? null : c.dataset_name, dataset: viaMixture ? null : c.dataset,
    dataset_config: c.dataset_config, dataset_train_split: c.dataset_train_split, dataset_test_split: c.dataset_test_split,
    eval_dataset: c.eval_dataset, dataset_mixture: mixture,
    dataset_mixer: c.dataset_mixer, dataset_splits: c.dataset_splits, dataset_configs: c.dataset_configs,
  };
}

// ---------------------------------------------------------------------------------------------------------
// chat_template_path

/**
 * TRL SFTConfig's chat_template_path when it is a template file. A tokenizer folder makes TRL clone that
 * tokenizer's template together with its special tokens (resizing the embeddings): not built, so refused.
 */
export function chatTemplateFromPath(path: string): string {
  let isDir: boolean;
  try { isDir = statSync(path).isDirectory(); } catch { throw new Error(`chat_template_path: ${path} does not exist; give a Jinja template file (.jinja)`); }
  if (isDir) {
    const inside = join(path, "chat_template.jinja");
    throw new Error(`chat_template_path: ${path} is a folder; TRL then clones that tokenizer's chat template and adds its special tokens to the model (resizing the embeddings), which preftune does not do. Give a template file instead${existsSync(inside) ? ` (${inside})` : ""}, whose special tokens this model's tokenizer already has`);
  }
  const text = readTextFile(path, "chat template (chat_template_path)");
  if (!/\{[{%]/.test(text)) throw new Error(`chat_template_path: ${path} is not a Jinja template (it has no {{ … }} or {% … %})`);
  return text;
}

// ---------------------------------------------------------------------------------------------------------
// loading

function dropLine(s: PrepStats): string {
  const parts = ([
    [s.droppedPromptTooLong, "prompt ≥ max_length"], [s.droppedCompletionTooLong, "completion ≥ max_length"],
    [s.droppedEmptyCompletion, "empty completion"], [s.droppedNoTargets, "no token to train on"],
  ] as const).filter(([n]) => n > 0).map(([n, why]) => `${n} ${why}`);
  const total = s.droppedPromptTooLong + s.droppedCompletionTooLong + s.droppedEmptyCompletion + s.droppedNoTargets;
  const extra = s.droppedUndesirable ? `; ${s.droppedUndesirable} label=false rows not trained on (sft)` : "";
  return `dropped ${total}${parts.length ? ` (${parts.join(", ")})` : ""}, truncated ${s.truncatedRows}, bad rows skipped ${s.badRowsSkipped}${extra}`;
}

function isUnpaired(rows: TokenizedPair[] | TokenizedUnpaired[]): rows is TokenizedUnpaired[] {
  return rows.length === 0 || "completion_ids" in rows[0];
}

/**
 * Packs SFT rows (TRL's pack_dataset) when `on`; the training set may be shuffled first (shuffle_dataset).
 * Prints what packing did.
 */
function maybePack(c: TrainConfig, rows: TokenizedUnpaired[], on: boolean, what: string, print: (l: string) => void, shuffle: boolean): { rows: Rows; packed: boolean } {
  if (!on) return { rows, packed: false };
  if (c.max_length === null) throw new Error("packing needs max_length (the packed sequence length); set max_length");
  const p = packRows(rows, { max_length: c.max_length, packing_strategy: c.packing_strategy, shuffle_dataset: shuffle && c.shuffle_dataset, seed: c.seed });
  const s = p.stats;
  print(`${what}: packed ${s.rowsIn} rows (${s.strategy}) into ${s.packedRows} sequences of at most ${c.max_length} tokens, ${(100 * s.fill).toFixed(1)}% full${s.tokensCut ? `; ${s.tokensCut} tokens cut from rows longer than max_length` : ""}`);
  return { rows: p.rows, packed: true };
}

/**
 * The run's training (and, with `needEval`, eval) rows: pre-tokenized rows as given, or the dataset keys
 * resolved, read and tokenized for the method; SFT rows packed when packing (eval: eval_packing, default
 * packing) is on.
 */
export async function loadTrainData(c: TrainConfig, o: DataLoadOptions, needEval: boolean, print: (l: string) => void): Promise<TrainData> {
  const modelDir = c.model_name_or_path!;
  const kind = c.method === "kto" || c.method === "sft" ? "unpaired" : "paired";
  const sft = c.method === "sft";
  const evalPack = sft && (c.eval_packing ?? c.packing);
  const chatTemplate = c.chat_template ?? (c.chat_template_path !== null ? chatTemplateFromPath(c.chat_template_path) : null);
  if (o.rows) {
    const need = kind === "paired" ? ["prompt_ids", "chosen_ids", "rejected_ids"] : ["prompt_ids", "completion_ids"];
    for (const [name, rows] of [["rows", o.rows], ["evalRows", o.evalRows ?? []]] as const) {
      rows.forEach((r, i) => {
        const miss = need.filter((k) => !Array.isArray((r as unknown as Record<string, unknown>)[k]));
        if (miss.length) throw new Error(`${name}[${i}]: method ${c.method} needs ${kind} rows with ${need.join(", ")}; missing ${miss.join(", ")}`);
      });
    }
    const tokenizerDir = existsSync(join(modelDir, "tokenizer.json")) ? modelDir : null;
    const tokenizer = c.generate_during_eval && tokenizerDir ? await loadTokenizer(modelDir, { chat_template: chatTemplate }) : null;
    const train = maybePack(c, o.rows as TokenizedUnpaired[], sft && c.packing, "train rows", print, true);
    const ev = o.evalRows ? maybePack(c, o.evalRows as TokenizedUnpaired[], evalPack, "eval rows", print, false) : null;
    return {
      kind, rows: train.rows, packed: train.packed, evalRows: ev?.rows ?? null, evalPacked: !!ev?.packed,
      padTokenId: o.padTokenId ?? 0, tokenizerDir, tokenizer, chatTemplate, describe: c.dataset_name ?? c.dataset ?? "pre-tokenized rows",
    };
  }

  let sources: DataSources & { mixture?: { sources: { id: string }[] } | null };
  try {
    sources = o.sources ?? await resolveDatasetKeys(datasetKeys(c), { requireTest: needEval });
  } catch (e) {
    if (e instanceof DataError && c.datasets !== null) throw new DataError(`datasets (TRL's mixture, read as a dataset_mixture): ${e.problem}`, { file: e.file, row: e.row, field: e.field, fix: e.fix });
    throw e;
  }
  print(`data: ${sources.describe}`);
  const tok = await loadTokenizer(modelDir, { chat_template: chatTemplate });
  const dopts: DataOptions = {
    method: c.method, max_length: c.max_length, max_prompt_length: c.max_prompt_length, max_completion_length: c.max_completion_length,
    truncation_mode: c.truncation_mode, skip_bad_rows: c.skip_bad_rows, cacheDir: c.dataset_cache_dir, progress: !o.quiet,
    prompt_column: c.prompt_column ?? undefined, chosen_column: c.chosen_column ?? undefined, rejected_column: c.rejected_column ?? undefined,
    completion_column: c.completion_column ?? undefined, label_column: c.label_column ?? undefined,
    dataset_text_field: c.dataset_text_field, assistant_only_loss: c.assistant_only_loss, completion_only_loss: c.completion_only_loss,
  };
  const prep = async (src: DataSource, what: string) => {
    const r = await prepareDataset(src, tok, dopts);
    const s = r.stats;
    const mask = s.assistantMask ? `; assistant tokens found by ${s.assistantMask === "generation" ? "the template's generation blocks" : "rendering each turn"}` : "";
    print(`${what} data: ${s.rows} rows from ${s.files.join(", ") || s.source}${s.fromCache ? " (cached)" : ""}; ${dropLine(s)}${mask}`);
    return r.rows;
  };
  const trainRows = await prep(sources.train, "train");
  const train = sft && isUnpaired(trainRows) ? maybePack(c, trainRows, c.packing, "train rows", print, true) : { rows: trainRows as Rows, packed: false };
  let evalRows: Rows | null = null, evalPacked = false;
  if (needEval) {
    if (!sources.test) throw new Error(`eval_strategy is "${c.eval_strategy}"${c.eval_on_start ? " / eval_on_start" : ""} but there is no eval data: set eval_dataset, or give the dataset a ${c.dataset_test_split} split, or set eval_strategy: no${c.eval_steps != null ? " (eval_steps alone means eval_strategy steps)" : ""}`);
    const ev = await prep(sources.test, "eval");
    const p = sft && isUnpaired(ev) ? maybePack(c, ev, evalPack, "eval rows", print, false) : { rows: ev as Rows, packed: false };
    evalRows = p.rows;
    evalPacked = p.packed;
  }
  const describe = o.sources ? o.sources.describe : sources.mixture
    ? `${c.dataset_mixer !== null ? "dataset_mixer" : c.datasets !== null ? "datasets" : "dataset_mixture"}: ${[...new Set(sources.mixture.sources.map((s) => s.id))].join(", ")}`
    : (c.dataset_name ?? c.dataset)!;
  return { kind, rows: train.rows, packed: train.packed, evalRows, evalPacked, padTokenId: tok.padTokenId, tokenizerDir: modelDir, tokenizer: tok, chatTemplate, describe };
}
