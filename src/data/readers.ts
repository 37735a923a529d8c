// Dataset readers: JSONL (streamed with node:readline), JSON (an array of rows), Parquet (hyparquet with
// snappy/zstd/gzip/brotli), and folders holding split files (train.jsonl, data/train-00000-of-00001.parquet).
// Not a validator: rows come out as parsed values; src/data/formats.ts decides whether they make sense.
// Parquet decoding runs in a worker thread (parquet.ts).
import { createReadStream, type Dirent } from "node:fs";
import { open, readdir, stat } from "node:fs/promises";
import { createInterface } from "node:readline";
import { basename, extname, join } from "node:path";
import { DataError } from "./errors.ts";
import { readParquetRecords } from "./parquet.ts";

export type FileFormat = "jsonl" | "json" | "parquet";

/**
 * Where a dataset's rows come from, once resolved (hub.ts: a local file or folder, a Hugging Face cache
 * snapshot; mixture.ts: several of those mixed). `files` are hashed for the tokenized-data cache, `key` holds
 * whatever else selects the rows (a mixture's spec), `records` replaces reading `files` in order.
 */
export interface DataSource {
  name: string;                                    // for messages: a path, a repo id, or "dataset_mixture"
  files: string[];
  key?: unknown;
  records?: () => AsyncIterable<RawRecord>;
}

/** One row as read: either a parsed value or the reason it could not be parsed. */
export interface RawRecord {
  file: string;
  row: number;                  // 1-based line (JSONL) or element/row index (JSON array, Parquet)
  unit: "line" | "row";
  value?: unknown;
  error?: string;               // set when the row is unreadable (not JSON, ...)
}

const EXTENSIONS: Record<string, FileFormat> = { ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet" };

export function fileFormat(path: string): FileFormat | null {
  return EXTENSIONS[extname(path).toLowerCase()] ?? null;
}

/**
 * The data files for `path`: the file itself, or for a folder the files of `split` (default "train") in
 * the layouts Hugging Face datasets uses. Shards come back sorted.
 */
export async function resolveDataFiles(path: string, split?: string | null): Promise<string[]> {
  let st;
  try { st = await stat(path); } catch {
    throw new DataError("no such file or folder", { file: path, fix: "Pass a .jsonl, .json or .parquet file, or a folder holding train/test files" });
  }
  if (!st.isDirectory()) {
    if (!fileFormat(path)) {
      throw new DataError(`unknown data file type "${extname(path) || "(none)"}"`, { file: path, fix: "Use .jsonl (one JSON object per line), .json (an array of objects) or .parquet" });
    }
    return [path];
  }
  const want = split ?? "train";
  const found = await splitFiles(path);
  const files = found.get(want);
  if (!files || files.length === 0) {
    const have = [...found.keys()].sort();
    throw new DataError(`no files for split "${want}"`, {
      file: path,
      fix: have.length
        ? `Available splits: ${have.join(", ")}. Pass one of them as split`
        : "Put train.jsonl / test.jsonl (or .json/.parquet, or data/train-00000-of-00001.parquet) in the folder",
    });
  }
  const formats = new Set(files.map(fileFormat));
  if (formats.size > 1) {
    throw new DataError(`split "${want}" has files in several formats (${files.join(", ")})`, { file: path, fix: "Keep one copy of the split, in one format" });
  }
  return files;
}

/**
 * split name -> files, scanning <dir>, <dir>/data, and <dir>/<split>/ or <dir>/data/<split>/ sub-folders.
 * Symbolic links count as what they point to (a Hugging Face cache snapshot is links into its blobs folder).
 */
export async function splitFiles(dir: string): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  const add = (split: string, file: string) => {
    const list = out.get(split) ?? [];
    list.push(file);
    out.set(split, list);
  };
  for (const base of [dir, join(dir, "data")]) {
    let entries;
    try { entries = await readdir(base, { withFileTypes: true }); } catch { continue; }
    for (const e of entries) {
      const full = join(base, e.name);
      const kind = await entryKind(e, full);
      if (kind === "file" && fileFormat(e.name)) {
        // "train.jsonl", "train-00000-of-00003.parquet", "test_0.parquet" all name their split first
        const stem = basename(e.name, extname(e.name));
        const m = /^([A-Za-z][\w-]*?)(?:[-_.]\d+(?:-of-\d+)?)?$/.exec(stem);
        if (m) add(m[1], full);
      } else if (kind === "dir" && !(base === dir && e.name === "data")) {
        let inner;
        try { inner = await readdir(full); } catch { continue; }
        for (const f of inner.sort()) if (fileFormat(f)) add(e.name, join(full, f));
      }
    }
  }
  for (const list of out.values()) list.sort();
  return out;
}

/** "file", "dir" or null, following a symbolic link (a dangling one is null). */
export async function entryKind(e: Dirent, full: string): Promise<"file" | "dir" | null> {
  if (e.isFile()) return "file";
  if (e.isDirectory()) return "dir";
  if (!e.isSymbolicLink()) return null;
  try {
    const st = await stat(full);
    return st.isFile() ? "file" : st.isDirectory() ? "dir" : null;
  } catch {
    return null;
  }
}

/**
 * Every row of every file, in order. Unreadable rows come back with `error` set instead of throwing, so
 * that skip_bad_rows can step over them; unreadable files throw a DataError. `columns` limits what is
 * decoded from Parquet files (names that do not exist are ignored); JSON rows keep all their fields.
 */
export async function* readRecords(files: string[], opts: { columns?: string[] } = {}): AsyncGenerator<RawRecord> {
  for (const file of files) {
    const fmt = fileFormat(file);
    if (fmt === "parquet") yield* readParquetRecords(file, opts.columns ?? null);
    else if (fmt === "json") yield* readJson(file);
    else if (fmt === "jsonl") yield* readJsonl(file);
    else throw new DataError("unknown data file type", { file, fix: "Use .jsonl, .json or .parquet" });
  }
}

function parseLine(file: string, lineNo: number, line: string): RawRecord {
  try {
    return { file, row: lineNo, unit: "line", value: JSON.parse(line) };
  } catch (e) {
    return { file, row: lineNo, unit: "line", error: `not valid JSON (${(e as Error).message}): ${line.slice(0, 60)}` };
  }
}

async function* readJsonl(file: string): AsyncGenerator<RawRecord> {
  const stream = createReadStream(file, { encoding: "utf8" });
  const failed: { err: Error | null } = { err: null };
  stream.on("error", (e) => { failed.err = e; });
  const rl = createInterface({ input: stream, crlfDelay: Infinity });
  let lineNo = 0;
  try {
    for await (const line of rl) {
      lineNo++;
      if (lineNo === 1 && line.charCodeAt(0) === 0xfeff) {
        const rest = line.slice(1);
        if (rest.trim() !== "") yield parseLine(file, lineNo, rest);
        continue;
      }
      if (line.trim() === "") continue;   // blank lines (often a trailing one) are not rows
      yield parseLine(file, lineNo, line);
    }
  } catch (e) {
    throw new DataError(`cannot read file (${(e as Error).message})`, { file });
  } finally {
    rl.close();
    stream.destroy();
  }
  if (failed.err) throw new DataError(`cannot read file (${failed.err.message})`, { file });
}

async function* readJson(file: string): AsyncGenerator<RawRecord> {
  const fh = await open(file, "r");
  let text: string;
  try { text = await fh.readFile({ encoding: "utf8" }); } finally { await fh.close(); }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const first = text.trimStart()[0];
  if (first !== "[") {
    // Hugging Face `datasets` reads JSON Lines from a .json file too; do the same.
    const lines = text.split(/\r?\n/);
    if (first === "{" && lines.filter((l) => l.trim() !== "").length > 1) {
      let whole: unknown = null;
      try { whole = JSON.parse(text); } catch { /* JSON Lines, as expected */ }
      if (whole && typeof whole === "object" && !Array.isArray(whole)) {
        throw new DataError(`the file holds one JSON object (keys ${Object.keys(whole).slice(0, 5).join(", ")}), not rows`, {
          file, fix: "Give an array of row objects, or one object per line",
        });
      }
    }
    let lineNo = 0;
    for (const line of lines) {
      lineNo++;
      if (line.trim() === "") continue;
      yield parseLine(file, lineNo, line);
    }
    return;
  }
  let rows: unknown;
  try { rows = JSON.parse(text); } catch (e) {
    throw new DataError(`not valid JSON (${(e as Error).message})`, {
      file, fix: "A .json file must hold one array of row objects; use .jsonl for one object per line",
    });
  }
  if (!Array.isArray(rows)) throw new DataError("expected a JSON array of row objects", { file });
  for (let i = 0; i < rows.length; i++) yield { file, row: i + 1, unit: "row", value: rows[i] };
}
