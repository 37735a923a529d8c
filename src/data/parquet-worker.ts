// Worker thread that decodes Parquet files with hyparquet and posts rows back one row group at a time.
// It exists so that a corrupt file that sends the decoder into a huge allocation or a long loop costs a
// worker, not the process (see parquet.ts). Not an API: only parquet.ts talks to it.
import { parentPort } from "node:worker_threads";
import { readFile } from "node:fs/promises";
import { parquetMetadata, parquetReadObjects, parquetSchema, type FileMetaData } from "hyparquet";
import { compressors } from "hyparquet-compressors";

export type WorkerRequest = { id: number; file: string; columns: string[] | null };
export type WorkerReply =
  | { id: number; type: "columns"; present: string[] }
  | { id: number; type: "rows"; start: number; rows: Record<string, unknown>[] }
  | { id: number; type: "done" }
  | { id: number; type: "error"; message: string; stage: "open" | "footer" | "rows"; start?: number; end?: number };

/** Schema elements must form a tree: non-negative child counts that stay inside the list. */
function checkSchema(meta: FileMetaData) {
  const s = meta.schema;
  if (!Array.isArray(s) || s.length === 0) throw new Error("empty schema");
  let need = 1, i = 0;
  while (need > 0) {
    if (i >= s.length) throw new Error("schema children run past the end of the schema");
    const n = s[i].num_children ?? 0;
    if (!Number.isInteger(n) || n < 0) throw new Error(`schema element ${i} has ${n} children`);
    need += n - 1;
    i++;
  }
  if (i !== s.length) throw new Error("schema has elements outside the tree");
}

/**
 * Every column chunk must name a leaf of the schema: hyparquet starts decoding chunks before it looks up
 * later chunks' paths, so a bad path would leave decodes in flight after the read has failed.
 */
function checkColumnChunks(meta: FileMetaData, byteLength: number) {
  const tree = parquetSchema(meta);
  const total = Number(meta.num_rows);
  if (!Number.isSafeInteger(total) || total < 0 || total > byteLength * 8 + 1024) throw new Error(`footer claims ${String(meta.num_rows)} rows`);
  let sum = 0;
  for (const group of meta.row_groups) {
    const n = Number(group.num_rows);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`a row group claims ${String(group.num_rows)} rows`);
    sum += n;
    for (const chunk of group.columns) {
      const path = chunk.meta_data?.path_in_schema;
      if (!Array.isArray(path) || path.length === 0) throw new Error("a column chunk has no path");
      let node = tree;
      for (const part of path) {
        const next = node.children.find((c) => c.element.name === part);
        if (!next) throw new Error(`column chunk path ${path.join(".")} is not in the schema`);
        node = next;
      }
      if (node.children.length) throw new Error(`column chunk path ${path.join(".")} is not a leaf`);
    }
  }
  if (sum !== total) throw new Error(`row groups hold ${sum} rows but the footer says ${total}`);
}

async function handle(req: WorkerRequest, post: (r: WorkerReply) => void) {
  const { id, file } = req;
  let buf: ArrayBuffer;
  try {
    const b = await readFile(file);
    buf = b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
  } catch (e) {
    return post({ id, type: "error", stage: "open", message: (e as Error).message });
  }
  let meta: FileMetaData;
  try {
    meta = parquetMetadata(buf, { geoparquet: false });   // the geo pass loops forever on negative child counts
    checkSchema(meta);
    checkColumnChunks(meta, buf.byteLength);
  } catch (e) {
    return post({ id, type: "error", stage: "footer", message: (e as Error).message });
  }
  const top = parquetSchema(meta).children.map((c) => c.element.name);
  const columns = req.columns ? req.columns.filter((c) => top.includes(c)) : top;
  post({ id, type: "columns", present: top });
  let start = 0;
  for (const group of meta.row_groups) {
    const n = Number(group.num_rows);
    try {
      const rows = columns.length ? await parquetReadObjects({ file: buf, metadata: meta, columns, compressors, rowStart: start, rowEnd: start + n }) : [];
      post({ id, type: "rows", start, rows });
    } catch (e) {
      return post({ id, type: "error", stage: "rows", message: (e as Error).message, start, end: start + n });
    }
    start += n;
  }
  post({ id, type: "done" });
}

if (parentPort) {
  const port = parentPort;
  port.on("message", (req: WorkerRequest) => {
    handle(req, (r) => port.postMessage(r)).catch((e) => port.postMessage({ id: req.id, type: "error", stage: "rows", message: String(e?.message ?? e) }));
  });
}
