// DataError: the one error type the data pipeline throws for bad input, carrying file, row, field and a fix.
// Not a logger and not a recovery policy: callers (skip_bad_rows) decide whether a bad row is fatal.

export interface DataErrorInfo {
  file: string;
  row?: number | null;        // 1-based: the line of a JSONL file, the element of a JSON array, the row of a Parquet file
  rowUnit?: "line" | "row";
  field?: string | null;
  fix?: string | null;
}

/** Bad input: the message names the file, row, field and what to do about it. */
export class DataError extends Error {
  readonly file: string;
  readonly row: number | null;
  readonly field: string | null;
  readonly fix: string | null;
  readonly problem: string;   // the message without file, row, field and fix
  constructor(problem: string, info: DataErrorInfo) {
    super(formatDataError(problem, info));
    this.name = "DataError";
    this.problem = problem;
    this.file = info.file;
    this.row = info.row ?? null;
    this.field = info.field ?? null;
    this.fix = info.fix ?? null;
  }
}

function formatDataError(problem: string, info: DataErrorInfo): string {
  let where = info.file;
  if (info.row != null) where += `, ${info.rowUnit ?? "row"} ${info.row}`;
  if (info.field) where += `, field "${info.field}"`;
  return `${where}: ${problem}${info.fix ? `. ${info.fix}` : ""}`;
}

/** A short, single-line preview of any JSON-ish value for error messages. */
export function preview(value: unknown, max = 60): string {
  if (value === undefined) return "undefined";
  let s: string;
  try {
    s = typeof value === "bigint" ? `${value}n` : JSON.stringify(value) ?? String(value);
  } catch {
    s = "(unprintable)";   // cyclic or too deeply nested
  }
  s = s.replace(/\s+/g, " ");
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

export function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "an object";
  return `a ${typeof value}`;
}
