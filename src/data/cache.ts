// On-disk cache of tokenized datasets: one JSONL file (a header line, then one row per line) named by a hash
// of the data files' bytes, the tokenizer files, the template and every setting, so a second run skips
// tokenization. Read back, every line is checked (zod schemas): a file changed after it was written is a
// DataError naming the file and the row, never rows the trainer would trust. Not an eviction policy: delete
// the folder to clear it.
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { createInterface } from "node:readline";
import { join, resolve } from "node:path";
import { z } from "zod";
import { DataError } from "./errors.ts";

/** Bump when tokenization or truncation output changes, so old cache files stop matching. */
export const PIPELINE_VERSION = 3;

export const DEFAULT_CACHE_DIR = ".cache/preftune";

async function hashFile(file: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest("hex");
}

/** sha256 over the data files' contents (not their names), the tokenizer fingerprint and the settings. */
export async function cacheKey(files: string[], tokenizerFingerprint: string, settings: Record<string, unknown>): Promise<string> {
  const fileHashes: string[] = [];
  for (const f of files) fileHashes.push(await hashFile(f));
  return createHash("sha256")
    .update(JSON.stringify({ v: PIPELINE_VERSION, fileHashes, tokenizerFingerprint, settings }))
    .digest("hex");
}

export function cachePath(cacheDir: string | undefined, key: string): string {
  return join(resolve(cacheDir ?? DEFAULT_CACHE_DIR), `tokenized-${key.slice(0, 32)}.jsonl`);
}

export interface CacheContents<Row, Header> {
  header: Header;
  rows: Row[];
}

const ids = z.array(z.number().int().nonnegative());
const nonEmptyIds = ids.min(1, "an empty list (a row always keeps at least one completion token)");

/** A TokenizedPair as written by prepareDataset. */
export const pairRowSchema = z.strictObject({ prompt_ids: ids, chosen_ids: nonEmptyIds, rejected_ids: nonEmptyIds });

/** A TokenizedUnpaired as written by prepareDataset (completion_mask: 0/1 per completion token). */
export const unpairedRowSchema = z.strictObject({
  prompt_ids: ids,
  completion_ids: nonEmptyIds,
  label: z.boolean(),
  completion_mask: z.array(z.union([z.literal(0), z.literal(1)])).optional(),
  kl_completion_ids: nonEmptyIds.optional(),
}).refine((r) => r.completion_mask === undefined || r.completion_mask.length === r.completion_ids.length, {
  message: "completion_mask must have one entry per completion token", path: ["completion_mask"],
});

const headerSchema = z.looseObject({
  preftune_cache: z.literal(PIPELINE_VERSION),
  rows: z.number().int().nonnegative(),
  kind: z.enum(["paired", "unpaired"]),
  stats: z.looseObject({}),
});

/** The first problem zod found, as "field[3]: message". */
function firstIssue(e: z.ZodError): string {
  const i = e.issues[0];
  const path = i.path.map((p, k) => (typeof p === "number" ? `[${p}]` : `${k ? "." : ""}${String(p)}`)).join("");
  return `${path ? `${path}: ` : ""}${i.message}`;
}

/** A damaged cache file: the message names the file and line and says how to recover. */
export function cacheError(file: string, line: number | null, problem: string): DataError {
  return new DataError(`the tokenized-dataset cache is damaged: ${problem}`, {
    file, row: line, rowUnit: "line",
    fix: "The file was changed after preftune wrote it. Delete it; it is rebuilt from the dataset on the next run (or turn the cache off with --no-cache / cacheDir null)",
  });
}

/**
 * The cached header and rows, or null when there is no cache file. Every line is checked: the header, then
 * each row against the schema of the header's kind; anything else throws a DataError (cacheError).
 */
export async function readCache<Row, Header>(file: string): Promise<CacheContents<Row, Header> | null> {
  const stream = createReadStream(file, { encoding: "utf8" });
  const opened = await new Promise<NodeJS.ErrnoException | null>((res) => { stream.once("open", () => res(null)); stream.once("error", (e) => res(e)); });
  if (opened) {
    if (opened.code === "ENOENT") return null;
    throw new DataError(`cannot read the tokenized-dataset cache (${opened.code === "EISDIR" ? "a folder is in its place" : opened.message})`, {
      file, fix: "Remove it; the cache is rebuilt on the next run",
    });
  }
  const rl = createInterface({ input: stream, crlfDelay: Infinity });
  let header: z.infer<typeof headerSchema> | null = null;
  let rowSchema: z.ZodType = pairRowSchema;
  const rows: Row[] = [];
  let lineNo = 0;
  try {
    for await (const line of rl) {
      lineNo++;
      if (!line) continue;
      let v: unknown;
      try { v = JSON.parse(line); } catch { throw cacheError(file, lineNo, "the line is not JSON"); }
      if (!header) {
        const h = headerSchema.safeParse(v);
        if (!h.success) throw cacheError(file, lineNo, `the header line is not a preftune cache header (${firstIssue(h.error)})`);
        header = h.data;
        rowSchema = header.kind === "paired" ? pairRowSchema : unpairedRowSchema;
        continue;
      }
      const r = rowSchema.safeParse(v);
      if (!r.success) throw cacheError(file, lineNo, `row ${rows.length + 1} is not a tokenized ${header.kind} row (${firstIssue(r.error)})`);
      rows.push(r.data as Row);
    }
  } catch (e) {
    if (e instanceof DataError) throw e;
    throw new DataError(`cannot read the tokenized-dataset cache (${(e as Error).message})`, { file, fix: "Delete it; it is rebuilt on the next run" });
  } finally {
    rl.close();
    stream.destroy();
  }
  if (!header) throw cacheError(file, null, "the file is empty");
  if (header.rows !== rows.length) throw cacheError(file, null, `the header says ${header.rows} rows but the file has ${rows.length}`);
  return { header: header as unknown as Header, rows };
}

/** Writes atomically: a temporary name in the same folder, then a rename. */
export async function writeCache<Row>(file: string, header: Record<string, unknown>, rows: Row[]): Promise<void> {
  await mkdir(resolve(file, ".."), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  const lines = [JSON.stringify({ preftune_cache: PIPELINE_VERSION, rows: rows.length, ...header })];
  for (const r of rows) lines.push(JSON.stringify(r));
  try {
    await writeFile(tmp, lines.join("\n") + "\n");
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}
