// Dataset mixtures as alignment-handbook / TRL ScriptArguments write them:
//   dataset_mixture: {datasets: [{id, config, split, columns, weight}], seed, test_split_size}
// each source loaded (hub.ts: a local path or a cached Hugging Face dataset), cut to `columns`, shuffled with
// `seed` and cut to its first weight·n rows; the parts concatenated and shuffled with `seed`; then
// test_split_size rows (a fraction, or a count) split off as the test set. The older handbook form
//   dataset_mixer: {id: fraction}, dataset_splits: [train_..., test_...], dataset_configs: [...]
// keeps the first fraction·n rows of each train split (no shuffle before the cut), shuffles the concatenation
// with seed 42, and keeps every test split whole. Shuffles use the project's seeded generator, so the same
// seed gives the same rows every run, but not the rows numpy's generator would pick in `datasets`.
// Not validation (formats.ts): rows leave as read, with their file and row for error messages.
import { DataError, preview, typeName } from "./errors.ts";
import { resolveDataset, type ResolvedDataset } from "./hub.ts";
import { readRecords, type DataSource, type RawRecord } from "./readers.ts";
import { permutation, seededRandom } from "./sampler.ts";
import { MAX_SEED } from "../util/random.ts";

export interface MixtureDataset {
  id: string;                      // a local path or a Hugging Face dataset id
  config: string | null;           // default null
  split: string;                   // default "train"
  columns: string[] | null;        // default null: every column
  weight: number;                  // fraction of the rows kept after the shuffle, in (0, 1]; default 1
}

export interface DatasetMixture {
  kind: "mixture";
  datasets: MixtureDataset[];
  seed: number;                    // default 0
  test_split_size: number | null;  // a fraction in (0, 1) or a row count; default null: no test set
}

export interface DatasetMixer {
  kind: "mixer";
  datasets: { id: string; config: string | null; fraction: number }[];
  splits: string[];                // default ["train", "test"]; a name containing "train" / "test" says which
  seed: number;                    // 42, as the handbook hard-codes
}

export type MixtureSpec = DatasetMixture | DatasetMixer;

const WHERE = "dataset_mixture";

function fail(field: string, problem: string, fix: string): never {
  throw new DataError(problem, { file: WHERE, field, fix });
}

function optString(v: unknown, field: string): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== "string" || v === "") fail(field, `expected a non-empty string, got ${typeName(v)} ${preview(v)}`, "Give a name");
  return v;
}

/**
 * Checks the recipe keys and fills in defaults. Takes the config object holding dataset_mixture (new form) or
 * dataset_mixer (+ dataset_splits, dataset_configs; old form); null when it has neither. dataset_name next
 * to a mixture is an error, as in the handbook.
 */
export function parseMixture(cfg: Record<string, unknown>): MixtureSpec | null {
  const mix = cfg.dataset_mixture, mixer = cfg.dataset_mixer;
  if (mix == null && mixer == null) return null;
  if (mix != null && mixer != null) fail("dataset_mixer", "both dataset_mixture and dataset_mixer are set", "Keep one: dataset_mixture is the current form");
  if (cfg.dataset_name != null) fail("dataset_name", "dataset_name and a dataset mixture are both set", "Give either dataset_name or dataset_mixture, not both");
  if (mix != null) return parseNew(mix);
  return parseOld(mixer, cfg.dataset_splits, cfg.dataset_configs);
}

function parseNew(mix: unknown): DatasetMixture {
  if (typeof mix !== "object" || Array.isArray(mix)) fail(WHERE, `expected a mapping {datasets, seed, test_split_size}, got ${typeName(mix)}`, "See the alignment-handbook recipes");
  const m = mix as Record<string, unknown>;
  for (const k of Object.keys(m)) if (!["datasets", "seed", "test_split_size"].includes(k)) fail(`${WHERE}.${k}`, "unknown key", "Use datasets, seed and test_split_size");
  if (!Array.isArray(m.datasets) || m.datasets.length === 0) fail(`${WHERE}.datasets`, "expected a non-empty list of {id, config, split, columns, weight}", "List at least one dataset");
  const datasets = m.datasets.map((d, i): MixtureDataset => {
    const at = `${WHERE}.datasets[${i}]`;
    if (!d || typeof d !== "object" || Array.isArray(d)) fail(at, `expected a mapping {id, config, split, columns, weight}, got ${typeName(d)}`, "Write each dataset as a mapping");
    const x = d as Record<string, unknown>;
    for (const k of Object.keys(x)) if (!["id", "config", "split", "columns", "weight"].includes(k)) fail(`${at}.${k}`, "unknown key", "Use id, config, split, columns and weight");
    const id = optString(x.id, `${at}.id`);
    if (id == null) fail(`${at}.id`, "missing", "Give the dataset id (ORG/NAME) or a local path");
    let columns: string[] | null = null;
    if (x.columns != null) {
      if (!Array.isArray(x.columns) || x.columns.length === 0 || x.columns.some((c) => typeof c !== "string" || c === "")) {
        fail(`${at}.columns`, `expected a non-empty list of column names, got ${preview(x.columns)}`, "List the columns to keep");
      }
      columns = x.columns as string[];
    }
    let weight = 1;
    if (x.weight != null) {
      if (typeof x.weight !== "number" || !Number.isFinite(x.weight) || x.weight <= 0 || x.weight > 1) {
        fail(`${at}.weight`, `expected a fraction in (0, 1], got ${preview(x.weight)}`, "weight is the fraction of the dataset's rows kept (1 keeps all)");
      }
      weight = x.weight;
    }
    return { id, config: optString(x.config, `${at}.config`), split: optString(x.split, `${at}.split`) ?? "train", columns, weight };
  });
  // the handbook requires the same columns everywhere (concatenate_datasets needs one schema)
  const sets = datasets.filter((d) => d.columns).map((d) => JSON.stringify([...d.columns!].sort()));
  if (new Set(sets).size > 1) {
    const i = datasets.findIndex((d) => d.columns && JSON.stringify([...d.columns].sort()) !== sets[0]);
    fail(`${WHERE}.datasets[${i}].columns`, `column names must be the same in every dataset of a mixture, got ${datasets.map((d) => preview(d.columns)).join(" vs ")}`, "Select the same columns from each dataset");
  }
  let seed = 0;
  if (m.seed != null) {
    if (typeof m.seed !== "number" || !Number.isInteger(m.seed) || m.seed < 0 || m.seed > MAX_SEED) {
      fail(`${WHERE}.seed`, `expected a whole number from 0 to ${MAX_SEED}, got ${preview(m.seed)}`, "Give a seed in the range datasets' shuffle (numpy) accepts: 0 to 2^32 − 1");
    }
    seed = m.seed;
  }
  let test: number | null = null;
  if (m.test_split_size != null) {
    const t = m.test_split_size;
    if (typeof t !== "number" || !Number.isFinite(t) || t <= 0 || (t >= 1 && !Number.isInteger(t))) {
      fail(`${WHERE}.test_split_size`, `expected a fraction in (0, 1) or a row count, got ${preview(t)}`, "e.g. 0.1 or 2000");
    }
    test = t;
  }
  return { kind: "mixture", datasets, seed, test_split_size: test };
}

function parseOld(mixer: unknown, splits: unknown, configs: unknown): DatasetMixer {
  const W = "dataset_mixer";
  if (!mixer || typeof mixer !== "object" || Array.isArray(mixer)) fail(W, `expected a mapping {dataset id: fraction}, got ${typeName(mixer)}`, "e.g. {HuggingFaceH4/ultrafeedback_binarized: 1.0}");
  const entries = Object.entries(mixer as Record<string, unknown>);
  if (entries.length === 0) fail(W, "empty", "List at least one dataset");
  let cfgs: (string | null)[] = entries.map(() => null);
  if (configs != null) {
    if (!Array.isArray(configs) || configs.length !== entries.length) fail("dataset_configs", `expected a list of ${entries.length} config names (one per dataset_mixer entry), got ${preview(configs)}`, "Give one config per dataset, in the same order");
    cfgs = configs.map((c, i) => optString(c, `dataset_configs[${i}]`));
  }
  let sp = ["train", "test"];
  if (splits != null) {
    if (!Array.isArray(splits) || splits.length === 0 || splits.some((s) => typeof s !== "string")) fail("dataset_splits", `expected a list of split names, got ${preview(splits)}`, "e.g. [train_prefs, test_prefs]");
    sp = splits as string[];
    for (const s of sp) if (!s.includes("train") && !s.includes("test")) fail("dataset_splits", `split "${s}" is neither a train nor a test split`, 'Split names must contain "train" or "test"');
  }
  const datasets = entries.map(([id, f], i) => {
    if (typeof f !== "number" || !Number.isFinite(f) || f < 0) fail(`${W}.${id}`, `expected a fraction ≥ 0, got ${preview(f)}`, "The fraction of the train split kept");
    return { id, config: cfgs[i], fraction: f };
  });
  return { kind: "mixer", datasets, splits: sp, seed: 42 };
}

export interface MixtureSourceStats {
  id: string;
  config: string | null;
  split: string;
  files: string[];
  rowsRead: number;
  rowsKept: number;
}

export interface MixtureData {
  train: DataSource;
  test: DataSource | null;
  sources: MixtureSourceStats[];
}

/** Records of one source, in file order, cut to `columns` (a column missing from its first row is an error). */
async function readSource(ds: ResolvedDataset, columns: string[] | null, at: string): Promise<RawRecord[]> {
  const out: RawRecord[] = [];
  let checked = false;
  for await (const rec of readRecords(ds.files, columns ? { columns } : {})) {
    if (columns && rec.error === undefined && rec.value && typeof rec.value === "object" && !Array.isArray(rec.value)) {
      const v = rec.value as Record<string, unknown>;
      if (!checked) {
        const missing = columns.filter((c) => !Object.hasOwn(v, c));
        if (missing.length) {
          throw new DataError(`${at} (${ds.name}): column ${missing.map((c) => `"${c}"`).join(", ")} not found; the rows have ${preview(Object.keys(v), 120)}`, {
            file: rec.file, row: rec.row, rowUnit: rec.unit, field: `${at}.columns`, fix: "List columns the dataset has",
          });
        }
        checked = true;
      }
      // fromEntries defines own properties: a column named "__proto__" stays a column
      const kept: Record<string, unknown> = Object.fromEntries(columns.filter((c) => Object.hasOwn(v, c)).map((c) => [c, v[c]]));
      out.push({ ...rec, value: kept });
    } else out.push(rec);
  }
  return out;
}

async function resolveSource(id: string, config: string | null, split: string, at: string, env?: NodeJS.ProcessEnv, splitKey = `${at}.split`): Promise<ResolvedDataset> {
  try {
    return await resolveDataset(id, { config, split, env, keys: { name: `${at}.id`, split: splitKey } });
  } catch (e) {
    if (e instanceof DataError) throw new DataError(`${at} (${id}): ${e.problem}`, { file: e.file, row: e.row, field: e.field, fix: e.fix });
    throw e;
  }
}

function shuffled<T>(xs: T[], seed: number): T[] {
  return permutation(xs.length, seededRandom(seed)).map((i) => xs[i]);
}

function source(name: string, files: string[], key: unknown, rows: RawRecord[]): DataSource {
  return {
    name, files, key,
    records: async function* () { yield* rows; },
  };
}

/**
 * Loads and mixes the datasets of a mixture. The returned DataSources go to prepareDataset / loadExamples
 * like a path; their cache key covers the source files and the whole spec.
 */
export async function loadMixture(spec: MixtureSpec, o: { env?: NodeJS.ProcessEnv } = {}): Promise<MixtureData> {
  const sources: MixtureSourceStats[] = [];
  if (spec.kind === "mixture") {
    const parts: RawRecord[][] = [];
    const files: string[] = [];
    for (let i = 0; i < spec.datasets.length; i++) {
      const d = spec.datasets[i];
      const at = `${WHERE}.datasets[${i}]`;
      const ds = await resolveSource(d.id, d.config, d.split, at, o.env);
      const all = await readSource(ds, d.columns, at);
      const kept = shuffled(all, spec.seed).slice(0, Math.floor(all.length * d.weight));
      parts.push(kept);
      files.push(...ds.files);
      sources.push({ id: d.id, config: ds.config, split: d.split, files: ds.files, rowsRead: all.length, rowsKept: kept.length });
    }
    const combined = shuffled(parts.flat(), spec.seed);
    if (combined.length === 0) fail(`${WHERE}.datasets`, "the mixture has no rows", "Check the weights and the datasets");
    let train = combined, test: RawRecord[] | null = null;
    if (spec.test_split_size != null) {
      const n = combined.length, t = spec.test_split_size;
      const nTest = t < 1 ? Math.ceil(t * n) : t;
      if (nTest >= n) fail(`${WHERE}.test_split_size`, `a test split of ${nTest} rows leaves no training rows (the mixture has ${n})`, "Lower test_split_size");
      const order = permutation(n, seededRandom(spec.seed));
      test = order.slice(0, nTest).map((k) => combined[k]);
      train = order.slice(nTest).map((k) => combined[k]);
    }
    const key = { spec, files: sources.map((s) => s.files) };
    return {
      train: source(`${WHERE} (train)`, files, { ...key, part: "train" }, train),
      test: test ? source(`${WHERE} (test)`, files, { ...key, part: "test" }, test) : null,
      sources,
    };
  }
  // the old dataset_mixer
  const trainParts: RawRecord[][] = [], testParts: RawRecord[][] = [];
  const trainFiles: string[] = [], testFiles: string[] = [];
  for (const d of spec.datasets) {
    for (const split of spec.splits) {
      const at = `dataset_mixer.${d.id}`;
      const ds = await resolveSource(d.id, d.config, split, at, o.env, "dataset_splits");
      const all = await readSource(ds, null, at);
      const isTrain = split.includes("train");
      const kept = isTrain ? all.slice(0, Math.floor(d.fraction * all.length)) : all;
      (isTrain ? trainParts : testParts).push(kept);
      (isTrain ? trainFiles : testFiles).push(...ds.files);
      sources.push({ id: d.id, config: ds.config, split, files: ds.files, rowsRead: all.length, rowsKept: kept.length });
    }
  }
  const key = { spec, files: sources.map((s) => s.files) };
  const train = trainParts.length ? shuffled(trainParts.flat(), spec.seed) : null;
  const test = testParts.length ? shuffled(testParts.flat(), spec.seed) : null;
  if (!train || train.length === 0) fail("dataset_splits", "the mixer has no training rows", "List a train split in dataset_splits and fractions above 0");
  return {
    train: source("dataset_mixer (train)", trainFiles, { ...key, part: "train" }, train),
    test: test ? source("dataset_mixer (test)", testFiles, { ...key, part: "test" }, test) : null,
    sources,
  };
}
