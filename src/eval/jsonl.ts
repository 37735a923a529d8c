// JSONL input files of the evaluations (questions, references): every non-blank line one JSON object, a bad line
// named by file and line. The record logs the evaluations append to (answers, judgments) are src/util/records.ts.
import { DataError } from "../data/errors.ts";
import { readTextFile } from "../util/durable.ts";

/** Every non-blank line of a JSONL input file (questions, references), parsed; a bad line names file and line. */
export function readJsonLines(file: string): { line: number; value: Record<string, unknown> }[] {
  const text = readTextFile(file, "JSONL file");
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
