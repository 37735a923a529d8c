// The OpenAI-compatible HTTP server on node:http: routes, body reading, streaming, and a scheduler that runs
// waiting requests together as one batch per Generator.generate() call. Not the wire format (openai.ts) and
// not decoding (generate/engine.ts). One model per server; requests that arrive while a batch runs wait for
// the next one (no joining a running batch), and a full queue answers 429 so clients back off and retry.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { GenerationConfigError, resolveGenerationConfig } from "../generate/config.ts";
import type { Generator, LoadedModel } from "../generate/engine.ts";
import type { GenerateRequest, GenerateResult, GenerationConfig } from "../generate/types.ts";
import {
  asOpenAIError, checkModel, completionBudget, invalid, modelList, modelObject, newResponseMeta, OpenAIError,
  parseChatRequest, parseCompletionRequest, responseFor, streamShaper, type Overrides, type ParsedRequest,
} from "./openai.ts";

export interface ServerOptions {
  generator: Generator;
  loaded: LoadedModel;
  host?: string;            // default 127.0.0.1 (this machine only)
  port?: number;            // default 8000; 0 picks any free port
  modelId?: string;         // the id clients send as "model"; default loaded.name (the adapter's, else the model's folder name)
  maxBatch?: number;        // requests decoded together, default 8
  maxQueue?: number;        // requests waiting beyond the running batch before 429, default 256
  log?: (line: string) => void;
}

export interface RunningServer {
  url: string;              // http://host:port (the OpenAI base URL is url + "/v1")
  modelId: string;
  close(): Promise<void>;
}

/** Request bodies above this answer 413. */
export const BODY_LIMIT_BYTES = 4 * 1024 * 1024;
/** An oversized body is drained up to this much so the client can read the 413; beyond it the socket is cut. */
const DRAIN_LIMIT_BYTES = 64 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------------------
// Scheduler

interface Job {
  request: GenerateRequest;
  emitted: boolean;          // some text went out already (a failed batch cannot be retried for this row)
  resolve(r: GenerateResult): void;
  reject(e: unknown): void;
}

function abortedResult(req: GenerateRequest): GenerateResult {
  return {
    completion: "", completionIds: [], finishReason: "abort", promptTokens: req.promptIds.length, completionTokens: 0,
    timeToFirstTokenMs: 0, seconds: 0, tokensPerSecond: 0,
  };
}

/**
 * Queues requests and runs them in batches of up to maxBatch, one generate() call at a time. When a batch
 * throws, every row that has not streamed anything yet is retried alone, so one bad request fails alone.
 */
export class BatchScheduler {
  private queue: Job[] = [];
  private running = 0;
  private closed = false;
  private idle: (() => void)[] = [];
  /** generate() calls made and the most rows one of them carried (reported by GET /health). */
  batches = 0;
  largestBatch = 0;

  constructor(private readonly generator: Pick<Generator, "generate">, private readonly maxBatch: number, private readonly maxQueue: number) {}

  get waiting(): number { return this.queue.length; }
  get active(): number { return this.running; }

  /** Throws (synchronously) a 429 when the queue is full and a 503 once closed; else resolves with the row's result. */
  submit(request: GenerateRequest): Promise<GenerateResult> {
    if (this.closed) throw new OpenAIError(503, "the server is shutting down. Retry against another server", { code: "server_shutting_down" });
    // when idle, the next batch takes up to maxBatch at once; beyond that, maxQueue may wait
    if (this.queue.length >= this.maxQueue + (this.running === 0 ? this.maxBatch : 0)) {
      throw new OpenAIError(429, `the server is busy: ${this.queue.length} requests are already waiting (limit ${this.maxQueue}). Retry shortly`, {
        type: "rate_limit_error", code: "rate_limit_exceeded",
      });
    }
    return new Promise<GenerateResult>((resolve, reject) => {
      const job: Job = { request: { ...request }, emitted: false, resolve, reject };
      const onText = request.onText;
      job.request.onText = onText && ((t: string) => {
        job.emitted = true;
        try { onText(t); } catch { /* a failing sink (closed socket) must not stop the batch */ }
      });
      this.queue.push(job);
      queueMicrotask(() => this.pump());
    });
  }

  /** Refuses new work, fails waiting requests with 503, and resolves when the running batch is done. */
  async close(): Promise<void> {
    this.closed = true;
    const waiting = this.queue.splice(0);
    for (const j of waiting) j.reject(new OpenAIError(503, "the server shut down before this request ran. Retry against another server", { code: "server_shutting_down" }));
    if (this.running > 0) await new Promise<void>((r) => this.idle.push(r));
  }

  private pump(): void {
    if (this.running > 0 || this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.maxBatch);
    this.running = batch.length;
    this.runBatch(batch).finally(() => {
      this.running = 0;
      if (this.queue.length === 0 || this.closed) for (const r of this.idle.splice(0)) r();
      this.pump();
    });
  }

  private async runBatch(jobs: Job[]): Promise<void> {
    const live: Job[] = [];
    for (const j of jobs) {
      if (j.request.aborted?.()) j.resolve(abortedResult(j.request));   // the client left while it waited
      else live.push(j);
    }
    if (live.length === 0) return;
    this.batches++;
    this.largestBatch = Math.max(this.largestBatch, live.length);
    try {
      const results = await this.generator.generate(live.map((j) => j.request));
      live.forEach((j, i) => j.resolve(results[i]));
    } catch (e) {
      if (live.length === 1) { live[0].reject(e); return; }
      for (const j of live) {
        if (j.emitted || j.request.aborted?.()) { j.reject(e); continue; }
        try { j.resolve((await this.generator.generate([j.request]))[0]); } catch (e1) { j.reject(e1); }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// HTTP helpers

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

function sendError(res: ServerResponse, e: OpenAIError): void {
  const headers: Record<string, string> = {};
  if (e.status === 429 || e.status === 503) headers["retry-after"] = "1";
  if (e.status === 413) headers.connection = "close";
  sendJson(res, e.status, e.body(), headers);
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolveBody, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let ended = false;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size <= limit) chunks.push(c);
      else if (size > DRAIN_LIMIT_BYTES) req.destroy();
    });
    req.on("end", () => {
      ended = true;
      if (size > limit) {
        reject(new OpenAIError(413, `the request body is ${size} bytes, over the ${limit}-byte limit. Send a shorter prompt`, { param: null, code: "request_too_large" }));
      } else resolveBody(Buffer.concat(chunks));
    });
    req.on("error", reject);
    req.on("close", () => { if (!ended) reject(new Error("the client closed the connection while sending the body")); });
  });
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const buf = await readBody(req, BODY_LIMIT_BYTES);
  try {
    return JSON.parse(buf.toString("utf8"));
  } catch (e) {
    throw invalid("body", `the request body is not valid JSON (${(e as Error).message}). Send a JSON object with Content-Type: application/json`);
  }
}

const SSE_HEADERS = { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", connection: "keep-alive", "x-accel-buffering": "no" };

/** HF override keys back to the request fields they came from, for naming param in config errors. */
const FIELD_OF: Record<string, string> = {
  do_sample: "temperature", temperature: "temperature", top_p: "top_p", top_k: "top_k", min_p: "min_p",
  repetition_penalty: "repetition_penalty", stop_strings: "stop", seed: "seed", max_new_tokens: "max_tokens",
};

/**
 * The request's full generation config: the request's overrides and the token cap layered over the model's
 * resolved defaults (loaded.generationDefaults, which already hold generation_config.json and the chat EOS).
 */
export function requestConfig(loaded: LoadedModel, overrides: Overrides, maxNewTokens: number): GenerationConfig {
  const layered: Record<string, unknown> = { ...loaded.generationDefaults, ...overrides, max_new_tokens: maxNewTokens };
  try {
    return resolveGenerationConfig({ overrides: layered, where: "the request" });
  } catch (e) {
    const first = e instanceof GenerationConfigError ? e.problems[0] : String((e as Error).message);
    const key = /^the request: (\w+) = /.exec(first)?.[1];
    throw invalid(key ? FIELD_OF[key] ?? key : "body", (e as Error).message);
  }
}

function promptIds(generator: Generator, req: ParsedRequest): number[] {
  let ids: number[];
  if (req.kind === "completion") ids = generator.textPromptIds(req.prompt);
  else {
    try { ids = generator.chatPromptIds(req.messages); } catch (e) {
      throw invalid("messages", `the model's chat template cannot render these messages: ${(e as Error).message}`);
    }
  }
  if (ids.length === 0) throw invalid(req.kind === "chat" ? "messages" : "prompt", "the prompt is empty after tokenization. Send some text");
  return ids;
}

// ---------------------------------------------------------------------------------------------------------
// The server

interface RequestLog { status: number | null; promptTokens: number | null; completionTokens: number | null; note: string }

interface Ctx {
  generator: Generator;
  loaded: LoadedModel;
  modelId: string;
  created: number;
  scheduler: BatchScheduler;
  closing: () => boolean;
  log: (line: string) => void;
}

async function generationRoute(kind: "chat" | "completion", req: IncomingMessage, res: ServerResponse, ctx: Ctx, info: RequestLog): Promise<void> {
  const body = await readJson(req);
  const parsed = kind === "chat" ? parseChatRequest(body) : parseCompletionRequest(body);
  checkModel(parsed.model, ctx.modelId);
  const ids = promptIds(ctx.generator, parsed);
  const budget = completionBudget(parsed, ids.length, ctx.loaded.maxPositions);
  const config = requestConfig(ctx.loaded, parsed.overrides, budget);
  const meta = newResponseMeta(kind, parsed.model);
  let gone = req.socket.destroyed;
  res.on("close", () => { if (!res.writableFinished) gone = true; });
  const request: GenerateRequest = { promptIds: ids, config, aborted: () => gone || ctx.closing() };
  info.promptTokens = ids.length;
  const shaper = parsed.stream ? streamShaper(parsed, meta) : null;
  if (shaper) request.onText = (t) => { if (!gone) res.write(shaper.delta(t)); };

  const pending = ctx.scheduler.submit(request);          // a full queue throws here, before any header
  if (shaper) {
    res.writeHead(200, SSE_HEADERS);
    res.write(shaper.start());
  }
  let result: GenerateResult;
  try {
    result = await pending;
  } catch (e) {
    if (!shaper) throw e;
    const err = asOpenAIError(e);
    if (err.status >= 500) ctx.log(`error: ${(e as Error)?.stack ?? e}`);
    info.note = `stream error ${err.status}`;
    if (!gone) res.end(shaper.error(err));
    return;
  }
  info.completionTokens = result.completionTokens;
  if (result.finishReason === "abort") {
    info.note = gone ? "client disconnected" : "shut down";
    const err = new OpenAIError(503, "the server shut down while generating. Retry against another server", { code: "server_shutting_down" });
    if (gone) { info.status = 499; return; }
    if (shaper) res.end(shaper.error(err));
    else sendError(res, err);
    return;
  }
  if (shaper) res.end(shaper.finish(result));
  else sendJson(res, 200, responseFor(parsed, meta, result));
}

type Route = (req: IncomingMessage, res: ServerResponse, ctx: Ctx, info: RequestLog) => Promise<void> | void;

const ROUTES: Record<string, { method: "GET" | "POST"; run: Route }> = {
  "/v1/chat/completions": { method: "POST", run: (q, s, c, i) => generationRoute("chat", q, s, c, i) },
  "/v1/completions": { method: "POST", run: (q, s, c, i) => generationRoute("completion", q, s, c, i) },
  "/v1/models": { method: "GET", run: (_q, s, c) => sendJson(s, 200, modelList(c.modelId, c.created)) },
  "/health": {
    method: "GET",
    run: (_q, s, c) => sendJson(s, 200, {
      status: "ok", model: c.modelId, running: c.scheduler.active, waiting: c.scheduler.waiting,
      batches: c.scheduler.batches, largest_batch: c.scheduler.largestBatch,
    }),
  },
};

function findRoute(path: string, ctx: Ctx): { method: "GET" | "POST"; run: Route } | null {
  const exact = ROUTES[path];
  if (exact) return exact;
  if (path.startsWith("/v1/models/")) {
    const id = decodeURIComponent(path.slice("/v1/models/".length));
    return {
      method: "GET",
      run: (_q, s) => {
        if (id !== ctx.modelId) throw new OpenAIError(404, `the model "${id}" does not exist on this server; it serves "${ctx.modelId}"`, { param: "model", code: "model_not_found" });
        sendJson(s, 200, modelObject(ctx.modelId, ctx.created));
      },
    };
  }
  return null;
}

async function dispatch(req: IncomingMessage, res: ServerResponse, ctx: Ctx, info: RequestLog): Promise<void> {
  const path = new URL(req.url ?? "/", "http://localhost").pathname.replace(/\/+$/, "") || "/";
  const route = findRoute(path, ctx);
  if (!route) {
    throw new OpenAIError(404, `no such endpoint: ${req.method} ${path}. This server has POST /v1/chat/completions, POST /v1/completions, GET /v1/models and GET /health`, { code: "unknown_url" });
  }
  if (req.method !== route.method) {
    res.setHeader("allow", route.method);
    throw new OpenAIError(405, `${path} takes ${route.method}, not ${req.method}`, { code: "method_not_allowed" });
  }
  if (ctx.closing() && route.method === "POST") throw new OpenAIError(503, "the server is shutting down. Retry against another server", { code: "server_shutting_down" });
  await route.run(req, res, ctx, info);
}

function logLine(req: IncomingMessage, info: RequestLog, started: number): string {
  const tokens = info.promptTokens == null ? "" : ` ${info.promptTokens}+${info.completionTokens ?? 0} tokens`;
  return `${req.method} ${req.url} ${info.status}${tokens} ${Date.now() - started} ms${info.note ? ` (${info.note})` : ""}`;
}

async function handle(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  const started = Date.now();
  const info: RequestLog = { status: null, promptTokens: null, completionTokens: null, note: "" };
  try {
    await dispatch(req, res, ctx, info);
  } catch (e) {
    const err = asOpenAIError(e);
    if (err.status >= 500 && !(e instanceof OpenAIError)) ctx.log(`error: ${(e as Error)?.stack ?? e}`);
    if (!res.headersSent) sendError(res, err);
    else if (!res.writableEnded) res.end();
  } finally {
    info.status ??= res.headersSent ? res.statusCode : 499;
    ctx.log(logLine(req, info, started));
  }
}

/** Starts listening; resolves once the port is bound. close() stops new work, ends running rows and frees the port. */
export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const maxBatch = Math.max(1, Math.floor(opts.maxBatch ?? 8));
  const maxQueue = Math.max(0, Math.floor(opts.maxQueue ?? 256));
  const scheduler = new BatchScheduler(opts.generator, maxBatch, maxQueue);
  let closing = false;
  const ctx: Ctx = {
    generator: opts.generator, loaded: opts.loaded, modelId: opts.modelId ?? opts.loaded.name,
    created: Math.floor(Date.now() / 1000), scheduler, closing: () => closing, log: opts.log ?? (() => {}),
  };
  const server: Server = createServer((req, res) => { void handle(req, res, ctx); });
  const host = opts.host ?? "127.0.0.1";
  await new Promise<void>((ok, fail) => {
    server.once("error", fail);
    server.listen(opts.port ?? 8000, host, () => { server.off("error", fail); ok(); });
  });
  const addr = server.address() as AddressInfo;
  const shownHost = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  let closed: Promise<void> | null = null;
  return {
    url: `http://${shownHost}:${addr.port}`,
    modelId: ctx.modelId,
    close() {
      closed ??= (async () => {
        closing = true;
        const stopped = new Promise<void>((ok) => server.close(() => ok()));
        server.closeIdleConnections();
        await scheduler.close();
        server.closeAllConnections();
        await stopped;
      })();
      return closed;
    },
  };
}
