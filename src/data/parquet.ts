// Parquet rows through a worker thread (parquet-worker.ts): hyparquet decodes untrusted bytes, and a corrupt
// page can ask it for billions of values; in a worker that ends as an out-of-memory error or a watchdog
// timeout, reported as a DataError, instead of a crashed or hung process. Not the decoder itself.
import { Worker } from "node:worker_threads";
import { DataError } from "./errors.ts";
import type { WorkerReply, WorkerRequest } from "./parquet-worker.ts";
import type { RawRecord } from "./readers.ts";
import { FROM_SOURCE as fromSource } from "../util/runtime.ts";

/** A file is abandoned when its worker posts nothing (no row group finished) for this long. */
export const PARQUET_IDLE_TIMEOUT_MS = 120_000;
const WORKER_HEAP_MB = 4096;

type Event = WorkerReply | { id: number; type: "crash"; message: string };
let shared: { worker: Worker; listeners: Map<number, (e: Event) => void> } | null = null;
let nextId = 1;

function getWorker() {
  if (shared) return shared;
  // From the sources the worker is TypeScript too: a two-line bootstrap registers the loader the project runs under
  // (bin/preftune.js does the same) before importing it.
  const boot = `(async () => {
    ${fromSource ? `(await import(${JSON.stringify(import.meta.resolve("tsx/esm/api"))})).register();` : ""}
    await import(${JSON.stringify(new URL(`./parquet-worker.${fromSource ? "ts" : "js"}`, import.meta.url).href)});
  })().catch((e) => { throw e; });`;
  const worker = new Worker(boot, { eval: true, resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB } });
  worker.unref();   // an idle decoder never keeps the process alive; busy() refs it
  const me = { worker, listeners: new Map<number, (e: Event) => void>() };
  const fail = (message: string) => {
    if (shared === me) shared = null;
    for (const [id, l] of me.listeners) l({ id, type: "crash", message });
    me.listeners.clear();
  };
  worker.on("message", (r: WorkerReply) => me.listeners.get(r.id)?.(r));
  worker.on("error", (e) => fail(e.message));
  worker.on("exit", (code) => fail(`the decoder exited (code ${code})`));
  shared = me;
  return me;
}

function busy(w: Worker, listeners: Map<number, unknown>) {
  if (listeners.size > 0) w.ref(); else w.unref();
}

/** Rows of one Parquet file, reading only `columns` that exist (all when null). Throws DataError on bad files. */
export async function* readParquetRecords(file: string, columns: string[] | null): AsyncGenerator<RawRecord> {
  const me = getWorker();
  const id = nextId++;
  const events: Event[] = [];
  let wake: (() => void) | null = null;
  me.listeners.set(id, (e) => { events.push(e); wake?.(); });
  busy(me.worker, me.listeners);
  const corrupt = "The file is corrupt or was not written as Parquet; write it again (snappy, zstd, gzip or brotli)";
  try {
    me.worker.postMessage({ id, file, columns } satisfies WorkerRequest);
    for (;;) {
      if (events.length === 0) {
        let timer: NodeJS.Timeout | undefined;
        const timedOut = await new Promise<boolean>((res) => {
          wake = () => res(false);
          timer = setTimeout(() => res(true), PARQUET_IDLE_TIMEOUT_MS);
        });
        clearTimeout(timer);
        wake = null;
        if (timedOut) {
          await me.worker.terminate();
          throw new DataError(`decoding stalled for ${PARQUET_IDLE_TIMEOUT_MS / 1000} s`, { file, fix: corrupt });
        }
        continue;
      }
      const e = events.shift()!;
      if (e.type === "columns") continue;
      if (e.type === "done") return;
      if (e.type === "crash") throw new DataError(`the Parquet decoder failed (${e.message})`, { file, fix: corrupt });
      if (e.type === "error") {
        if (e.stage === "open") throw new DataError(`cannot open Parquet file (${e.message})`, { file });
        if (e.stage === "footer") throw new DataError(`not a readable Parquet file (${e.message})`, { file, fix: corrupt });
        throw new DataError(`cannot decode Parquet rows ${e.start! + 1}..${e.end} (${e.message})`, { file, fix: corrupt });
      }
      for (let i = 0; i < e.rows.length; i++) yield { file, row: e.start + i + 1, unit: "row", value: e.rows[i] };
    }
  } finally {
    me.listeners.delete(id);
    busy(me.worker, me.listeners);
  }
}
