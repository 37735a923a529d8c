// On-disk cache of tokenized datasets: one JSONL file (a header line, then one row per line) named by a hash
// of the data files' bytes, the tokenizer files, the template and every setting, so a second run skips
// tokenization. Not an eviction policy: delete the folder to clear it.
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { createInterface } from "node:readline";
import { join, resolve } from "node:path";

/** Bump when tokenization or truncation output changes, so old cache files stop matching. */
export const PIPELINE_VERSION = 2;

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

/** The cached header and rows, or null when absent or unreadable (a damaged file is just a miss). */
export async function readCache<Row, Header>(file: string): Promise<CacheContents<Row, Header> | null> {
  const stream = createReadStream(file, { encoding: "utf8" });
  const ok = await new Promise<boolean>((res) => { stream.once("open", () => res(true)); stream.once("error", () => res(false)); });
  if (!ok) return null;
  const rl = createInterface({ input: stream, crlfDelay: Infinity });
  let header: (Header & { preftune_cache?: number; rows?: number }) | null = null;
  const rows: Row[] = [];
  try {
    for await (const line of rl) {
      if (!line) continue;
      if (!header) header = JSON.parse(line);
      else rows.push(JSON.parse(line));
    }
  } catch {
    return null;
  } finally {
    rl.close();
    stream.destroy();
  }
  if (!header || header.preftune_cache !== PIPELINE_VERSION || header.rows !== rows.length) return null;
  return { header, rows };
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
