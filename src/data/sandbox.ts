// The sandbox: a worker thread that encodes, decodes and renders chat templates for this thread's
// tokenizers (engine.ts), called synchronously (Atomics.wait on a shared counter, then receiveMessageOnPort),
// so the pipeline's synchronous code stays as it is. A call that runs past its time budget stops the worker
// (a catastrophic regex in tokenizer.json cannot be interrupted any other way) and throws SandboxTimeout; the
// next call starts a fresh worker. The worker has its own heap limit, so a template that exhausts memory
// costs the worker, not the process. Not the budgets themselves (tokenizer.ts decides them).
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from "node:worker_threads";
import type { EngineSpec } from "./engine.ts";
import { FROM_SOURCE as fromSource } from "../util/runtime.ts";

export type SandboxOp =
  | { op: "load"; key: string; spec: EngineSpec }
  | { op: "encode"; key: string; text: string; special: boolean }
  | { op: "decode"; key: string; ids: number[]; skip: boolean }
  | { op: "render"; key: string; name: string; marked: boolean; vars: Record<string, unknown>; budgetMs: number; maxChars: number };
export type SandboxRequest = SandboxOp & { seq: number };

export type FailureKind = "time" | "size" | "range" | "parse" | "load" | "error";
export type SandboxReply = { seq: number; ok: true; value: unknown } | { seq: number; ok: false; kind: FailureKind; message: string };

/** The worker did not answer within the budget and was stopped. */
export class SandboxTimeout extends Error {
  constructor(readonly ms: number) { super(`no answer within ${(ms / 1000).toFixed(1)} s`); }
}

/** The call failed inside the worker (a budget check, a template error, ...). */
export class SandboxFailure extends Error {
  constructor(readonly kind: FailureKind, message: string) { super(message); }
}

/** The worker's heap limit: a render that needs more costs the worker, not the process. */
const WORKER_HEAP_MB = 3072;
/** Extra wait for a call that follows a (re)start or a tokenizer load: booting and building a tokenizer. */
const BOOT_ALLOWANCE_MS = 120_000;
/** A worker holding this many tokenizers is replaced by a fresh one before loading another. */
const MAX_LOADED = 8;

class Sandbox {
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly flag: Int32Array;
  private seq = 0;
  private readonly loaded = new Set<string>();
  private lastLoad = 0;          // seq of the last load posted
  dead = false;

  constructor() {
    const { port1, port2 } = new MessageChannel();
    const shared = new SharedArrayBuffer(4);
    this.flag = new Int32Array(shared);
    this.port = port1;
    // From the sources the worker is TypeScript: a small bootstrap registers the loader first, as parquet.ts does.
    const boot = `(async () => {
      ${fromSource ? `(await import(${JSON.stringify(import.meta.resolve("tsx/esm/api"))})).register();` : ""}
      await import(${JSON.stringify(new URL(`./sandbox-worker.${fromSource ? "ts" : "js"}`, import.meta.url).href)});
    })().catch((e) => { throw e; });`;
    this.worker = new Worker(boot, {
      eval: true, workerData: { port: port2, flag: shared }, transferList: [port2],
      resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB }, stdout: false, stderr: false,
    });
    this.worker.unref();
    this.port.unref();
    // an out-of-memory worker emits 'error'; the waiting call reports it as a timeout
    this.worker.on("error", () => { this.dead = true; });
    this.worker.on("exit", () => { this.dead = true; });
  }

  holds(key: string): boolean {
    return this.loaded.has(key);
  }

  get full(): boolean {
    return this.loaded.size >= MAX_LOADED;
  }

  private post(op: SandboxOp): number {
    const seq = this.seq + 1;
    try {
      this.port.postMessage({ ...op, seq } as SandboxRequest);
    } catch (e) {
      // not cloneable (nested too deeply for the structured clone, ...): nothing was sent
      const m = e instanceof RangeError && /call stack/i.test(e.message) ? "the input nests too deeply to hand to the sandbox worker" : `cannot hand the input to the sandbox worker (${(e as Error).message})`;
      throw new SandboxFailure("error", m);
    }
    this.seq = seq;
    return seq;
  }

  load(key: string, spec: EngineSpec): void {
    if (this.loaded.has(key)) return;
    this.lastLoad = this.post({ op: "load", key, spec });
    this.loaded.add(key);
  }

  /** Blocks until the reply to `seq` is in, at most `ms`; false when the time ran out. */
  private waitFor(seq: number, ms: number): boolean {
    const deadline = performance.now() + ms;
    for (;;) {
      const done = Atomics.load(this.flag, 0);
      if (done >= seq) return true;
      const left = deadline - performance.now();
      if (left <= 0) return false;
      Atomics.wait(this.flag, 0, done, left);
    }
  }

  /**
   * Sends `op` and blocks until its reply, at most timeoutMs. A worker still starting or building a tokenizer
   * gets BOOT_ALLOWANCE_MS for that first, so the budget covers the call alone.
   */
  call(op: SandboxOp, timeoutMs: number): unknown {
    if (Atomics.load(this.flag, 0) < this.lastLoad && !this.waitFor(this.lastLoad, BOOT_ALLOWANCE_MS)) {
      this.kill();
      throw new SandboxFailure("load", `the sandbox worker did not start within ${BOOT_ALLOWANCE_MS / 1000} s`);
    }
    const seq = this.post(op);
    if (!this.waitFor(seq, timeoutMs)) {
      this.kill();
      throw new SandboxTimeout(timeoutMs);
    }
    let result: unknown;
    let failure: SandboxFailure | null = null;
    for (let m = receiveMessageOnPort(this.port); m; m = receiveMessageOnPort(this.port)) {
      const r = m.message as SandboxReply;
      if (!r.ok && r.kind === "load") failure ??= new SandboxFailure("load", r.message);
      if (r.seq !== seq) continue;
      if (r.ok) result = r.value;
      else failure ??= new SandboxFailure(r.kind, r.message);
    }
    if (failure) {
      if (failure.kind === "load") this.kill();   // the tokenizer did not build there: start clean next time
      throw failure;
    }
    return result;
  }

  kill(): void {
    this.dead = true;
    void this.worker.terminate();
    this.port.close();
  }
}

let shared: Sandbox | null = null;

/**
 * Runs `op` for the engine `key` in the sandbox worker and returns its value. Throws SandboxTimeout when no
 * answer came within timeoutMs (the worker is stopped), SandboxFailure when the call failed there.
 */
export function sandboxCall(key: string, spec: () => EngineSpec, op: SandboxOp, timeoutMs: number): unknown {
  if (!shared || shared.dead || (!shared.holds(key) && shared.full)) {
    shared?.kill();
    shared = new Sandbox();
  }
  const box = shared;
  box.load(key, spec());
  try {
    return box.call(op, timeoutMs);
  } finally {
    if (box.dead && shared === box) shared = null;
  }
}

/** Starts the worker and loads `key` without waiting (the first call then finds it ready sooner). */
export function sandboxPreload(key: string, spec: EngineSpec): void {
  if (!shared || shared.dead || (!shared.holds(key) && shared.full)) {
    shared?.kill();
    shared = new Sandbox();
  }
  shared.load(key, spec);
}
