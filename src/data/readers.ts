// Dataset readers: JSONL (streamed with node:readline), JSON (an array of rows), Parquet (hyparquet with
// snappy/zstd/gzip/brotli), and folders holding split files (train.jsonl, data/train-00000-of-00001.parquet).
// Not a validator: rows come out as parsed values; src/data/formats.ts decides whether they make sense.
// Untrusted sizes are bounded: a line longer than max_row_bytes (default 16 MiB) is a bad row without ever
// becoming a string, invalid UTF-8 is a bad row naming the line (never silently U+FFFD), and a JSON array
// file must fit in one string. Parquet decoding runs in a worker thread (parquet.ts).
import { createReadStream, type Dirent } from "node:fs";
import { open, readdir, stat } from "node:fs/promises";
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
  fix?: string;                 // what to do about `error`, when the generic advice does not fit
}

/** The default limit on one JSONL line (one row), in bytes. */
export const DEFAULT_MAX_ROW_BYTES = 16 * 1024 * 1024;
/** A .json file holding one JSON array is parsed whole: larger files must be JSON Lines. */
export const MAX_JSON_ARRAY_BYTES = 256 * 1024 * 1024;

/**
 * The limit on one row's bytes: `v` when given, else the environment variable PREFTUNE_MAX_ROW_BYTES, else
 * 16 MiB. Throws for a value that is not a positive whole number.
 */
export function maxRowBytes(v?: number | null): number {
  const env = process.env.PREFTUNE_MAX_ROW_BYTES;
  const x = v ?? (env !== undefined && env !== "" ? Number(env) : DEFAULT_MAX_ROW_BYTES);
  if (!Number.isSafeInteger(x) || x < 1) {
    throw new Error(`max_row_bytes must be a positive whole number of bytes, got ${JSON.stringify(v ?? env)}${v == null ? " (from PREFTUNE_MAX_ROW_BYTES)" : ""}`);
  }
  return x;
}

function mib(bytes: number): string {
  return bytes >= 1 << 20 ? `${+(bytes / (1 << 20)).toFixed(1)} MiB` : `${bytes} bytes`;
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
  try { st = await stat(path); } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ELOOP") throw new DataError("is a symbolic link loop", { file: path, fix: "Point the link at the real file or folder" });
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
 * `maxRowBytes` bounds one JSONL line (see maxRowBytes()).
 */
export async function* readRecords(files: string[], opts: { columns?: string[]; maxRowBytes?: number | null } = {}): AsyncGenerator<RawRecord> {
  const limit = maxRowBytes(opts.maxRowBytes);
  for (const file of files) {
    const fmt = fileFormat(file);
    if (fmt === "parquet") yield* readParquetRecords(file, opts.columns ?? null);
    else if (fmt === "json") yield* readJson(file, limit);
    else if (fmt === "jsonl") yield* readJsonl(file, limit);
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

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Byte offset of the first invalid UTF-8 sequence in `b` (a WHATWG decoder's view), or -1. */
export function invalidUtf8At(b: Uint8Array): number {
  let i = 0;
  const n = b.length;
  while (i < n) {
    const c = b[i];
    if (c < 0x80) { i++; continue; }
    let need: number, min: number;
    if (c >= 0xc2 && c <= 0xdf) { need = 1; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { need = 2; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { need = 3; min = 0x10000; }
    else return i;
    if (i + need >= n) return i;
    let cp = c & (0x3f >> need);
    for (let k = 1; k <= need; k++) {
      const d = b[i + k];
      if (d === undefined || (d & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (d & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += need + 1;
  }
  return -1;
}

/** One line's bytes as text, or the reason it is not UTF-8. */
function decodeLine(bytes: Uint8Array): { text: string } | { bad: number } {
  try {
    return { text: utf8.decode(bytes) };
  } catch {
    return { bad: Math.max(0, invalidUtf8At(bytes)) };
  }
}

const UTF8_FIX = "Re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8), or fix or remove the row";

/**
 * Lines of a file as byte arrays, split on \n (a \r before it is dropped), without ever holding more than
 * `limit` bytes of one line: a longer line is skipped to its end and reported by its length instead.
 */
async function* byteLines(file: string, limit: number): AsyncGenerator<{ lineNo: number; bytes: Uint8Array } | { lineNo: number; tooLong: number }> {
  const stream = createReadStream(file, { highWaterMark: 1 << 20 });
  let parts: Buffer[] = [];
  let held = 0;          // bytes in parts
  let skipped = -1;      // >= 0: the line is over the limit; bytes seen so far
  let lineNo = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      let pos = 0;
      while (pos < chunk.length) {
        const nl = chunk.indexOf(10, pos);
        const end = nl < 0 ? chunk.length : nl;
        const piece = chunk.subarray(pos, end);
        if (skipped >= 0) skipped += piece.length;
        else if (held + piece.length > limit) { skipped = held + piece.length; parts = []; held = 0; }
        else if (piece.length) { parts.push(piece); held += piece.length; }
        if (nl < 0) break;
        pos = nl + 1;
        lineNo++;
        if (skipped >= 0) { yield { lineNo, tooLong: skipped }; skipped = -1; continue; }
        let bytes: Uint8Array = parts.length === 1 ? parts[0] : Buffer.concat(parts, held);
        if (bytes.length && bytes[bytes.length - 1] === 13) bytes = bytes.subarray(0, bytes.length - 1);
        parts = []; held = 0;
        yield { lineNo, bytes };
      }
    }
  } catch (e) {
    throw new DataError(`cannot read file (${(e as Error).message})`, { file });
  } finally {
    stream.destroy();
  }
  if (skipped >= 0) yield { lineNo: lineNo + 1, tooLong: skipped };
  else if (held > 0) {
    let bytes: Uint8Array = Buffer.concat(parts, held);
    if (bytes[bytes.length - 1] === 13) bytes = bytes.subarray(0, bytes.length - 1);
    yield { lineNo: lineNo + 1, bytes };
  }
}

function isBlank(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) { const c = b[i]; if (c !== 32 && c !== 9 && c !== 13 && c !== 10) return false; }
  return true;
}

function tooLongRecord(file: string, lineNo: number, bytes: number, limit: number): RawRecord {
  return {
    file, row: lineNo, unit: "line",
    error: `the line is ${mib(bytes)}, more than the ${mib(limit)} limit for one row`,
    fix: "Shorten or remove the row, or raise max_row_bytes (or PREFTUNE_MAX_ROW_BYTES)",
  };
}

async function* jsonLines(file: string, limit: number, lines: AsyncIterable<{ lineNo: number; bytes: Uint8Array } | { lineNo: number; tooLong: number }>): AsyncGenerator<RawRecord> {
  for await (const l of lines) {
    if ("tooLong" in l) { yield tooLongRecord(file, l.lineNo, l.tooLong, limit); continue; }
    let b = l.bytes;
    if (l.lineNo === 1 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) b = b.subarray(3);   // BOM
    if (isBlank(b)) continue;   // blank lines (often a trailing one) are not rows
    const d = decodeLine(b);
    if ("bad" in d) {
      yield { file, row: l.lineNo, unit: "line", error: `not valid UTF-8 (byte ${d.bad + 1} of the line)`, fix: UTF8_FIX };
      continue;
    }
    yield parseLine(file, l.lineNo, d.text);
  }
}

async function* readJsonl(file: string, limit: number): AsyncGenerator<RawRecord> {
  yield* jsonLines(file, limit, byteLines(file, limit));
}

/** The 1-based line of byte offset `at`. */
function lineOf(b: Uint8Array, at: number): number {
  let n = 1;
  for (let i = 0; i < at && i < b.length; i++) if (b[i] === 10) n++;
  return n;
}

async function* readJson(file: string, limit: number): AsyncGenerator<RawRecord> {
  const fh = await open(file, "r");
  let buf: Buffer;
  try {
    const size = (await fh.stat()).size;
    // Peek at the first non-blank byte: an array is parsed whole, anything else is JSON Lines.
    const head = Buffer.alloc(Math.min(size, 4096));
    await fh.read(head, 0, head.length, 0);
    let k = head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf ? 3 : 0;
    while (k < head.length && (head[k] === 32 || head[k] === 9 || head[k] === 10 || head[k] === 13)) k++;
    const isArray = head[k] === 0x5b;
    if (size > MAX_JSON_ARRAY_BYTES) {
      if (isArray) {
        throw new DataError(`the file is ${mib(size)}: a JSON array file is parsed whole, and more than ${mib(MAX_JSON_ARRAY_BYTES)} cannot be`, {
          file, fix: "Convert it to JSON Lines, one row per line (e.g. jq -c '.[]' FILE.json > FILE.jsonl), which is read row by row",
        });
      }
      await fh.close();
      yield* jsonLines(file, limit, byteLines(file, limit));
      return;
    }
    buf = await fh.readFile();
  } finally {
    await fh.close().catch(() => {});
  }
  let bytes: Uint8Array = buf;
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) bytes = bytes.subarray(3);
  let text: string;
  try { text = utf8.decode(bytes); } catch {
    const at = Math.max(0, invalidUtf8At(bytes));
    throw new DataError(`not valid UTF-8 at line ${lineOf(bytes, at)} (byte ${at + 1} of the file)`, { file, fix: UTF8_FIX.replace(", or fix or remove the row", "") });
  }
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
      if (line.length > limit / 3 && Buffer.byteLength(line) > limit) { yield tooLongRecord(file, lineNo, Buffer.byteLength(line), limit); continue; }
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
