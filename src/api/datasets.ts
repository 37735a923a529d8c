// The library's datasets, in Hugging Face datasets' shape: load_dataset(path, { split }) reads a local
// .jsonl/.json/.parquet file, a folder with splits, or a cached Hugging Face dataset id through src/data's
// readers, into a Dataset of rows you can iterate, map, filter and select; without a split, a DatasetDict of
// every split. Each row remembers its file and row, so a bad row found at training time is named by both.
// Not format detection or tokenization (src/data does that when a trainer reads the rows).
import { createHash } from "node:crypto";
import { DataError } from "../data/errors.ts";
import { datasetSplits, resolveDataset } from "../data/hub.ts";
import { readRecords, type DataSource, type RawRecord } from "../data/readers.ts";

export type Row = Record<string, unknown>;

interface Item { file: string; row: number; unit: "line" | "row"; value: Row }

/** An in-memory table of rows (datasets' Dataset): iterate it, map/filter/select into new datasets. */
export class Dataset implements Iterable<Row> {
  /** @internal */
  constructor(readonly name: string, private readonly items: readonly Item[]) {}

  /** Rows given in code (datasets' Dataset.from_list). */
  static from_list(rows: readonly Row[], name = "rows"): Dataset {
    return new Dataset(name, rows.map((value, i) => ({ file: name, row: i + 1, unit: "row", value })));
  }

  get num_rows(): number { return this.items.length; }
  get length(): number { return this.items.length; }
  /** The keys of the first row (datasets' column_names). */
  get column_names(): string[] { return this.items.length ? Object.keys(this.items[0].value) : []; }
  at(i: number): Row | undefined { return this.items.at(i)?.value; }
  *[Symbol.iterator](): Iterator<Row> { for (const it of this.items) yield it.value; }
  to_list(): Row[] { return this.items.map((it) => it.value); }

  /** A new dataset of fn's rows; a returned object is merged into the row, as datasets' map does. */
  map(fn: (row: Row, index: number) => Row): Dataset {
    return new Dataset(this.name, this.items.map((it, i) => {
      const out = fn(it.value, i);
      if (out === null || typeof out !== "object" || Array.isArray(out)) {
        throw new DataError("map's function must return an object (the row's new or changed columns)", { file: it.file, row: it.row, rowUnit: it.unit, fix: `It returned ${JSON.stringify(out)}` });
      }
      return { ...it, value: { ...it.value, ...out } };
    }));
  }
  filter(fn: (row: Row, index: number) => boolean): Dataset {
    return new Dataset(this.name, this.items.filter((it, i) => fn(it.value, i)));
  }
  select(indices: Iterable<number>): Dataset {
    const out: Item[] = [];
    for (const i of indices) {
      if (!Number.isInteger(i) || i < 0 || i >= this.items.length) throw new RangeError(`select: index ${i} is outside 0..${this.items.length - 1}`);
      out.push(this.items[i]);
    }
    return new Dataset(this.name, out);
  }
  /** Drops columns (datasets' remove_columns). */
  remove_columns(names: string | readonly string[]): Dataset {
    const drop = new Set(typeof names === "string" ? [names] : names);
    return this.mapValues((r) => Object.fromEntries(Object.entries(r).filter(([k]) => !drop.has(k))));
  }
  private mapValues(fn: (r: Row) => Row): Dataset {
    return new Dataset(this.name, this.items.map((it) => ({ ...it, value: fn(it.value) })));
  }

  /** @internal The rows as a src/data source (its cache key is the rows' content). */
  toDataSource(): DataSource {
    const items = this.items;
    const key = createHash("sha256").update(JSON.stringify(items.map((it) => it.value))).digest("hex");
    return {
      name: this.name, files: [], key: { dataset: key },
      records: async function* (): AsyncIterable<RawRecord> {
        for (const it of items) yield { file: it.file, row: it.row, unit: it.unit, value: it.value };
      },
    };
  }
}

/** Every split of a dataset (datasets' DatasetDict). */
export type DatasetDict = Record<string, Dataset>;

export interface LoadDatasetOptions {
  /** the split to read (train, test, ...); without it every split, as a DatasetDict */
  split?: string;
  /** the dataset's configuration (subset) name */
  name?: string;
  /** the largest JSONL line read, in bytes (default 16 MiB) */
  max_row_bytes?: number;
}

async function readSplit(path: string, split: string, o: LoadDatasetOptions): Promise<Dataset> {
  const src = await resolveDataset(path, { split, config: o.name ?? null });
  const items: Item[] = [];
  for await (const r of readRecords(src.files, { maxRowBytes: o.max_row_bytes })) {
    if (r.error !== undefined) throw new DataError(r.error, { file: r.file, row: r.row, rowUnit: r.unit, fix: r.fix ?? "Fix or remove the row" });
    if (r.value === null || typeof r.value !== "object" || Array.isArray(r.value)) throw new DataError("a row must be a JSON object of columns", { file: r.file, row: r.row, rowUnit: r.unit, fix: "Write one {\"column\": value, ...} object per row" });
    items.push({ file: r.file, row: r.row, unit: r.unit, value: r.value as Row });
  }
  return new Dataset(`${path}[${split}]`, items);
}

/**
 * datasets' load_dataset for local data: a .jsonl/.json/.parquet file (its one split is "train"), a folder of
 * split files (train.jsonl, test.parquet, data/train-00000-of-00001.parquet, ...), or a Hugging Face dataset id
 * already in the local cache. Nothing is downloaded.
 */
export async function load_dataset(path: string, opts: LoadDatasetOptions & { split: string }): Promise<Dataset>;
export async function load_dataset(path: string, opts?: LoadDatasetOptions): Promise<DatasetDict>;
export async function load_dataset(path: string, opts: LoadDatasetOptions = {}): Promise<Dataset | DatasetDict> {
  if (opts.split !== undefined) return readSplit(path, opts.split, opts);
  const found = await datasetSplits(path, { config: opts.name ?? null });
  const splits = found.length ? found : ["train"];   // a single file is the train split
  const out: DatasetDict = {};
  for (const s of splits) out[s] = await readSplit(path, s, opts);
  return out;
}
