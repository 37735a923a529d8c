// Append-only JSONL record logs for resumable evaluation runs: one JSON object per line, each line appended and
// fsynced as soon as its record is done, and a reader that repairs the torn last line a killed run can leave.
// Not a dataset reader (src/data/readers.ts) and not safe for two writers at once: one run per output file.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, truncateSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { DataError } from "../data/errors.ts";

/** Appends one record as one line and fsyncs it before returning, so a record on disk is a whole record. */
export function appendJsonl(file: string, record: unknown): void {
  mkdirSync(dirname(file), { recursive: true });
  const b = Buffer.from(JSON.stringify(record) + "\n", "utf8");
  const fd = openSync(file, "a");
  try {
    let done = 0;
    while (done < b.length) done += writeSync(fd, b, done, b.length - done);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export interface JsonlLog<T> {
  records: { line: number; value: T }[];
  /** Bytes of an unfinished last line that were cut off (0 when the file ended cleanly). */
  repairedBytes: number;
}

/**
 * Reads a record log written by appendJsonl. A last line without its newline is what a kill in the middle of a
 * write leaves: it is cut off the file (when `repair`) or ignored, and that record counts as not done.
 * Any other line that is not a JSON object is an error naming the file and line.
 */
export function readJsonlLog<T = Record<string, unknown>>(file: string, opts: { repair: boolean }): JsonlLog<T> {
  if (!existsSync(file)) return { records: [], repairedBytes: 0 };
  const buf = readFileSync(file);
  const end = buf.lastIndexOf(0x0a) + 1;   // everything after the last newline is a torn record
  const repairedBytes = buf.length - end;
  if (repairedBytes > 0 && opts.repair) {
    truncateSync(file, end);
    const fd = openSync(file, "r+");
    try { fsyncSync(fd); } finally { closeSync(fd); }
  }
  const records: { line: number; value: T }[] = [];
  const lines = buf.subarray(0, end).toString("utf8").split("\n");
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i];
    if (text.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw new DataError(`not valid JSON (${(e as Error).message})`, {
        file, row: i + 1, rowUnit: "line", fix: "This line was not written by preftune; delete it (the record it stood for is then redone)",
      });
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new DataError("is not a JSON object", { file, row: i + 1, rowUnit: "line", fix: "Delete the line" });
    }
    records.push({ line: i + 1, value: value as T });
  }
  return { records, repairedBytes };
}

/** Every non-blank line of a JSONL input file (questions, references), parsed; a bad line names file and line. */
export function readJsonLines(file: string): { line: number; value: Record<string, unknown> }[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new DataError(`cannot read the file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { file, fix: "Check the path" });
  }
  const out: { line: number; value: Record<string, unknown> }[] = [];
  text.replace(/^\ufeff/, "").split(/\r?\n/).forEach((l, i) => {
    if (l.trim() === "") return;
    let v: unknown;
    try {
      v = JSON.parse(l);
    } catch (e) {
      throw new DataError(`not valid JSON (${(e as Error).message})`, { file, row: i + 1, rowUnit: "line", fix: "Each line must be one JSON object" });
    }
    if (v === null || typeof v !== "object" || Array.isArray(v)) throw new DataError("is not a JSON object", { file, row: i + 1, rowUnit: "line", fix: "Each line must be one JSON object" });
    out.push({ line: i + 1, value: v as Record<string, unknown> });
  });
  return out;
}
