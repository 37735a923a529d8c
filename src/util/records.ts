// Append-only JSONL record logs (metrics.jsonl, completions.jsonl, eval answers and judgments): one JSON object per
// line, appended and fsynced before the call returns, never through a symbolic link; and the reader that repairs
// the torn last line a killed writer can leave. Whole-file rewrites go through durable.ts. Not a dataset reader
// (src/data/readers.ts) and not safe for two writers at once (a run holds its output folder's lock).
import { closeSync, constants, existsSync, fsyncSync, lstatSync, openSync, readFileSync, truncateSync, writeSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { DataError } from "../data/errors.ts";
import { ensureDir, fsError, fsyncPath } from "./durable.ts";

/**
 * Appends each record as one line, in one write, and fsyncs the file (and its folder when the file is new), so a
 * record on disk is a whole record. A symbolic link of that name is refused: it is never written through.
 */
export function appendRecords(file: string, records: readonly unknown[]): void {
  if (records.length === 0) return;
  const path = resolve(file);
  ensureDir(dirname(path));
  let fresh = false;
  try { lstatSync(path); } catch { fresh = true; }
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o666);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ELOOP") throw new Error(`${path}: is a symbolic link; preftune does not write through links: delete the link (the run writes a file of its own there)`);
    throw fsError(e, path, "append to it");
  }
  try {
    const b = Buffer.from(records.map((r) => JSON.stringify(r) + "\n").join(""), "utf8");
    let done = 0;
    while (done < b.length) done += writeSync(fd, b, done, b.length - done);
    fsyncSync(fd);
  } catch (e) {
    throw fsError(e, path, "append to it");
  } finally {
    closeSync(fd);
  }
  if (fresh) fsyncPath(dirname(path));
}

export interface RecordLog<T> {
  records: { line: number; value: T }[];
  /** Bytes of an unfinished last line that were cut off (0 when the file ended cleanly). */
  repairedBytes: number;
}

/**
 * Reads a record log written by appendRecords. A last line without its newline is what a kill in the middle of a
 * write leaves: it is cut off the file (when `repair`) or ignored, and that record counts as not done.
 * Any other line that is not a JSON object is an error naming the file and line.
 */
export function readRecordLog<T = Record<string, unknown>>(file: string, opts: { repair: boolean }): RecordLog<T> {
  if (!existsSync(file)) return { records: [], repairedBytes: 0 };
  let buf: Buffer;
  try { buf = readFileSync(file); } catch (e) { throw fsError(e, file, "read it"); }
  const end = buf.lastIndexOf(0x0a) + 1;   // everything after the last newline is a torn record
  const repairedBytes = buf.length - end;
  if (repairedBytes > 0 && opts.repair) {
    try {
      truncateSync(file, end);
      const fd = openSync(file, "r+");
      try { fsyncSync(fd); } finally { closeSync(fd); }
    } catch (e) {
      throw fsError(e, file, "cut off its unfinished last line");
    }
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
