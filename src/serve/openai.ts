// The OpenAI wire format, as pure functions: validate /v1/chat/completions and /v1/completions bodies into
// Hugging Face generation overrides, and shape results into responses, SSE chunks and error bodies.
// No sockets, no model and no decoding here: server.ts does HTTP and scheduling, the engine decodes.
// Refused rather than ignored: n > 1, presence/frequency penalties, logprobs, tools, JSON response formats,
// logit_bias, echo, suffix — each with a 400 that names the field and what to send instead.
import { randomBytes } from "node:crypto";
import type { GenerateResult, GenerationConfig } from "../generate/types.ts";
import { preview, typeName } from "../data/errors.ts";
import type { Message } from "../data/formats.ts";

// ---------------------------------------------------------------------------------------------------------
// Errors

export type OpenAIErrorType = "invalid_request_error" | "server_error" | "rate_limit_error";

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** An error that answers one request: HTTP status plus the four fields of an OpenAI error body. */
export class OpenAIError extends Error {
  readonly status: number;
  readonly type: OpenAIErrorType;
  readonly param: string | null;
  readonly code: string | null;
  constructor(status: number, message: string, o: { type?: OpenAIErrorType; param?: string | null; code?: string | null } = {}) {
    super(message);
    this.name = "OpenAIError";
    this.status = status;
    this.type = o.type ?? (status >= 500 ? "server_error" : "invalid_request_error");
    this.param = o.param ?? null;
    this.code = o.code ?? null;
  }
  body(): OpenAIErrorBody {
    return errorBody(this.message, this.type, this.param, this.code);
  }
}

export function errorBody(message: string, type: string, param: string | null = null, code: string | null = null): OpenAIErrorBody {
  return { error: { message, type, param, code } };
}

/** 400 for one request field: the message names the field, what came and what to send. */
export function invalid(param: string, message: string, code: string | null = null): OpenAIError {
  return new OpenAIError(400, message, { param, code });
}

/** Any thrown value as an OpenAIError: OpenAIErrors pass through, anything else is a 500 server_error. */
export function asOpenAIError(e: unknown): OpenAIError {
  if (e instanceof OpenAIError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new OpenAIError(500, `internal error while generating: ${msg}`, { type: "server_error" });
}

// ---------------------------------------------------------------------------------------------------------
// Requests

/** A message as the chat template sees it (role and text; developer already renamed system). */
export type ChatMessage = Message;

/** Generation overrides under Hugging Face names (see generate/config.ts); absent keys keep the model's defaults. */
export type Overrides = Partial<Pick<GenerationConfig,
  "do_sample" | "temperature" | "top_p" | "top_k" | "min_p" | "repetition_penalty" | "stop_strings" | "seed">>;

interface Common {
  model: string;
  /** The completion token cap the client asked for; null: whatever the context leaves (chat only). */
  maxTokens: number | null;
  overrides: Overrides;
  stream: boolean;
  includeUsage: boolean;
}
export interface ChatRequest extends Common { kind: "chat"; messages: ChatMessage[] }
export interface CompletionRequest extends Common { kind: "completion"; prompt: string }
export type ParsedRequest = ChatRequest | CompletionRequest;

const CHAT_ROLES = new Set(["system", "developer", "user", "assistant", "tool"]);

/** Fields accepted and ignored: they do not change what is generated. */
const IGNORED = new Set(["user", "metadata", "store", "service_tier", "parallel_tool_calls"]);
const SAMPLING_FIELDS = ["temperature", "top_p", "stop", "seed", "n", "stream", "stream_options", "presence_penalty",
  "frequency_penalty", "logit_bias", "top_k", "min_p", "repetition_penalty"];
const CHAT_FIELDS = new Set(["model", "messages", "max_tokens", "max_completion_tokens", "logprobs", "top_logprobs",
  "tools", "tool_choice", "response_format", ...SAMPLING_FIELDS, ...IGNORED]);
const COMPLETION_FIELDS = new Set(["model", "prompt", "max_tokens", "echo", "suffix", "logprobs", "best_of",
  ...SAMPLING_FIELDS, ...IGNORED]);

/** The default completion cap of /v1/completions, as in the OpenAI API. */
export const COMPLETIONS_DEFAULT_MAX_TOKENS = 16;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function bodyObject(body: unknown): Record<string, unknown> {
  if (!isObject(body)) throw invalid("body", `the request body must be a JSON object, got ${typeName(body)}. Send {"model": ..., ...}`);
  return body;
}

function checkKnownFields(body: Record<string, unknown>, known: Set<string>, endpoint: string): void {
  for (const key of Object.keys(body)) {
    if (!known.has(key)) throw invalid(key, `unknown field "${key}" for ${endpoint}. Remove it; accepted fields: ${[...known].sort().join(", ")}`);
  }
}

function given(v: unknown): boolean {
  return v !== undefined && v !== null;
}

function numberIn(body: Record<string, unknown>, key: string, lo: number, hi: number, note = ""): number | undefined {
  const v = body[key];
  if (!given(v)) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v) || v < lo || v > hi) {
    throw invalid(key, `${key} must be a number from ${lo} to ${hi}, got ${preview(v)}${note}`);
  }
  return v;
}

function integerAtLeast(body: Record<string, unknown>, key: string, lo: number, note = ""): number | undefined {
  const v = body[key];
  if (!given(v)) return undefined;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < lo) {
    throw invalid(key, `${key} must be a whole number of at least ${lo}, got ${preview(v)}${note}`);
  }
  return v;
}

function booleanField(body: Record<string, unknown>, key: string): boolean | undefined {
  const v = body[key];
  if (!given(v)) return undefined;
  if (typeof v !== "boolean") throw invalid(key, `${key} must be true or false, got ${preview(v)}`);
  return v;
}

function requiredModel(body: Record<string, unknown>): string {
  const m = body.model;
  if (typeof m !== "string" || m === "") throw invalid("model", `model is required: the id GET /v1/models lists, got ${preview(m)}`);
  return m;
}

function parseStop(v: unknown): string[] | undefined {
  if (!given(v)) return undefined;
  const list = typeof v === "string" ? [v] : v;
  if (!Array.isArray(list) || list.length > 4 || list.some((s) => typeof s !== "string" || s === "")) {
    throw invalid("stop", `stop must be a non-empty string or a list of 1 to 4 non-empty strings, got ${preview(v)}`);
  }
  return list.length ? (list as string[]) : undefined;
}

function refuseNonZeroPenalty(body: Record<string, unknown>, key: "presence_penalty" | "frequency_penalty"): void {
  const v = numberIn(body, key, -2, 2);
  if (v !== undefined && v !== 0) {
    throw invalid(key, `${key} ${v} is not supported: preftune decodes like Hugging Face generate, which has no ` +
      `${key.replace("_", " ")}. Send 0 or leave it out; repetition_penalty (HF semantics, e.g. 1.1) is available instead`);
  }
}

/** temperature, top_p, stop, seed, n, penalties and the preftune extras top_k, min_p, repetition_penalty. */
function parseSampling(body: Record<string, unknown>): Overrides {
  const o: Overrides = {};
  const t = numberIn(body, "temperature", 0, 2);
  if (t === 0) o.do_sample = false;
  else if (t !== undefined) { o.do_sample = true; o.temperature = t; }
  const topP = numberIn(body, "top_p", 0, 1);
  if (topP !== undefined) o.top_p = topP;
  const stop = parseStop(body.stop);
  if (stop) o.stop_strings = stop;
  const seed = integerAtLeast(body, "seed", 0);
  if (seed !== undefined) o.seed = seed;
  const n = integerAtLeast(body, "n", 1);
  if (n !== undefined && n !== 1) throw invalid("n", `n ${n} is not supported: one choice per request. Send n: 1 (or leave it out) and make ${n} requests; the server batches them`);
  refuseNonZeroPenalty(body, "presence_penalty");
  refuseNonZeroPenalty(body, "frequency_penalty");
  const bias = body.logit_bias;
  if (given(bias) && !(isObject(bias) && Object.keys(bias).length === 0)) {
    throw invalid("logit_bias", `logit_bias is not supported, got ${preview(bias)}. Leave it out or send {}`);
  }
  const topK = integerAtLeast(body, "top_k", 0, " (a preftune extra; 0 disables top-k)");
  if (topK !== undefined) o.top_k = topK;
  const minP = numberIn(body, "min_p", 0, 1, " (a preftune extra; 0 disables min-p)");
  if (minP !== undefined) o.min_p = minP;
  const rep = body.repetition_penalty;
  if (given(rep)) {
    if (typeof rep !== "number" || !Number.isFinite(rep) || rep <= 0) {
      throw invalid("repetition_penalty", `repetition_penalty must be a positive number (1.0 disables it; HF semantics), got ${preview(rep)}`);
    }
    o.repetition_penalty = rep;
  }
  return o;
}

function parseStreamFlags(body: Record<string, unknown>): { stream: boolean; includeUsage: boolean } {
  const stream = booleanField(body, "stream") ?? false;
  const so = body.stream_options;
  let includeUsage = false;
  if (given(so)) {
    if (!isObject(so)) throw invalid("stream_options", `stream_options must be an object like {"include_usage": true}, got ${preview(so)}`);
    const iu = so.include_usage;
    if (given(iu) && typeof iu !== "boolean") throw invalid("stream_options.include_usage", `stream_options.include_usage must be true or false, got ${preview(iu)}`);
    includeUsage = iu === true;
  }
  return { stream, includeUsage: stream && includeUsage };
}

function contentText(content: unknown, at: string, role: string): string {
  if (typeof content === "string") return content;
  if (content === null && role === "assistant") return "";
  if (!Array.isArray(content)) throw invalid(`${at}.content`, `${at}.content must be a string or a list of {"type": "text", "text": ...} parts, got ${typeName(content)}`);
  return content.map((part, j) => {
    const p = `${at}.content[${j}]`;
    if (!isObject(part) || part.type !== "text") {
      throw invalid(`${p}.type`, `${p}: only text parts are supported, got type ${preview(isObject(part) ? part.type : part)}. Send {"type": "text", "text": "..."}`);
    }
    if (typeof part.text !== "string") throw invalid(`${p}.text`, `${p}.text must be a string, got ${typeName(part.text)}`);
    return part.text;
  }).join("");
}

function parseMessages(v: unknown): ChatMessage[] {
  if (!Array.isArray(v) || v.length === 0) throw invalid("messages", `messages must be a non-empty list of {"role", "content"} objects, got ${preview(v)}`);
  return v.map((m, i) => {
    const at = `messages[${i}]`;
    if (!isObject(m)) throw invalid(at, `${at} must be an object with role and content, got ${typeName(m)}`);
    if (typeof m.role !== "string" || !CHAT_ROLES.has(m.role)) {
      throw invalid(`${at}.role`, `${at}.role must be one of ${[...CHAT_ROLES].join(", ")}, got ${preview(m.role)}`);
    }
    if (given(m.tool_calls) && !(Array.isArray(m.tool_calls) && m.tool_calls.length === 0)) {
      throw invalid(`${at}.tool_calls`, `${at}.tool_calls: tool calls are not supported. Send the assistant turn as plain content`);
    }
    // "developer" is the newer name for "system"; chat templates only know "system".
    const role = m.role === "developer" ? "system" : m.role;
    return { role, content: contentText(m.content, at, m.role) };
  });
}

function refuseChatOnlyFeatures(body: Record<string, unknown>): void {
  if (given(body.logprobs) && body.logprobs !== false) throw invalid("logprobs", `logprobs is not supported, got ${preview(body.logprobs)}. Send false or leave it out`);
  if (given(body.top_logprobs) && body.top_logprobs !== 0) throw invalid("top_logprobs", `top_logprobs is not supported, got ${preview(body.top_logprobs)}. Leave it out`);
  if (given(body.tools) && !(Array.isArray(body.tools) && body.tools.length === 0)) throw invalid("tools", "tools are not supported: the server returns plain text only. Leave tools out");
  if (given(body.tool_choice) && body.tool_choice !== "none" && body.tool_choice !== "auto") {
    throw invalid("tool_choice", `tool_choice ${preview(body.tool_choice)} is not supported (no tools). Send "none" or leave it out`);
  }
  const rf = body.response_format;
  if (given(rf) && !(isObject(rf) && rf.type === "text")) {
    throw invalid("response_format", `response_format ${preview(rf)} is not supported: only {"type": "text"}. Leave it out`);
  }
}

/** Validates a POST /v1/chat/completions body. Throws OpenAIError (400) naming the first bad field. */
export function parseChatRequest(raw: unknown): ChatRequest {
  const body = bodyObject(raw);
  checkKnownFields(body, CHAT_FIELDS, "/v1/chat/completions");
  const model = requiredModel(body);
  const messages = parseMessages(body.messages);
  refuseChatOnlyFeatures(body);
  // max_completion_tokens is the current name; max_tokens the deprecated alias. The current one wins.
  const mct = integerAtLeast(body, "max_completion_tokens", 1);
  const mt = integerAtLeast(body, "max_tokens", 1);
  return { kind: "chat", model, messages, maxTokens: mct ?? mt ?? null, overrides: parseSampling(body), ...parseStreamFlags(body) };
}

function parsePrompt(v: unknown): string {
  if (typeof v === "string") return v;
  if (Array.isArray(v) && v.length === 1 && typeof v[0] === "string") return v[0];
  if (Array.isArray(v) && v.length > 1) throw invalid("prompt", `prompt: one prompt per request, got a list of ${v.length}. Send them as separate requests; the server batches them`);
  throw invalid("prompt", `prompt must be a string or a list of one string, got ${preview(v)}`);
}

function refuseCompletionOnlyFeatures(body: Record<string, unknown>): void {
  if (given(body.echo) && body.echo !== false) throw invalid("echo", `echo ${preview(body.echo)} is not supported. Send false or leave it out`);
  if (given(body.suffix) && body.suffix !== "") throw invalid("suffix", "suffix (insertion) is not supported. Leave it out");
  if (given(body.logprobs) && body.logprobs !== 0) throw invalid("logprobs", `logprobs is not supported, got ${preview(body.logprobs)}. Leave it out`);
  if (given(body.best_of) && body.best_of !== 1) throw invalid("best_of", `best_of ${preview(body.best_of)} is not supported. Send 1 or leave it out`);
}

/** Validates a POST /v1/completions body. Throws OpenAIError (400) naming the first bad field. */
export function parseCompletionRequest(raw: unknown): CompletionRequest {
  const body = bodyObject(raw);
  checkKnownFields(body, COMPLETION_FIELDS, "/v1/completions");
  const model = requiredModel(body);
  const prompt = parsePrompt(body.prompt);
  refuseCompletionOnlyFeatures(body);
  const maxTokens = integerAtLeast(body, "max_tokens", 1) ?? COMPLETIONS_DEFAULT_MAX_TOKENS;
  return { kind: "completion", model, prompt, maxTokens, overrides: parseSampling(body), ...parseStreamFlags(body) };
}

/** 404 model_not_found unless the request names the served model. */
export function checkModel(requested: string, served: string): void {
  if (requested !== served) {
    throw new OpenAIError(404, `the model "${requested}" does not exist on this server; it serves "${served}". Send "model": "${served}"`, {
      param: "model", code: "model_not_found",
    });
  }
}

/**
 * The completion token cap for a prompt of promptTokens: the request's max tokens, or all the positions the
 * prompt leaves. 400 context_length_exceeded when the prompt plus the cap do not fit the model's positions.
 */
export function completionBudget(req: ParsedRequest, promptTokens: number, maxPositions: number): number {
  const param = req.kind === "chat" ? "messages" : "prompt";
  const room = maxPositions - promptTokens;
  const asked = req.maxTokens ?? room;
  if (room < 1 || asked > room) {
    const tokensField = req.kind === "chat" ? "max_completion_tokens" : "max_tokens";
    const what = req.maxTokens == null ? "no room is left for even one new token" : `${promptTokens} + ${asked} = ${promptTokens + asked} tokens were asked for`;
    throw invalid(param, `the model has ${maxPositions} positions; the ${param === "messages" ? "messages take" : "prompt takes"} ${promptTokens} tokens, so ${what}. ` +
      `Shorten the ${param} or lower ${tokensField}`, "context_length_exceeded");
  }
  return asked;
}

// ---------------------------------------------------------------------------------------------------------
// Responses

export type OpenAIFinishReason = "stop" | "length";

/** eos and a matched stop string are both "stop"; the token cap is "length". An aborted row is never sent. */
export function finishReason(r: GenerateResult["finishReason"]): OpenAIFinishReason {
  return r === "length" ? "length" : "stop";
}

export interface Usage { prompt_tokens: number; completion_tokens: number; total_tokens: number }

export function usage(r: Pick<GenerateResult, "promptTokens" | "completionTokens">): Usage {
  return { prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens, total_tokens: r.promptTokens + r.completionTokens };
}

/** The identity every chunk and response of one request shares. */
export interface ResponseMeta { id: string; created: number; model: string }

export function newResponseMeta(kind: ParsedRequest["kind"], model: string, now = Date.now()): ResponseMeta {
  const prefix = kind === "chat" ? "chatcmpl-" : "cmpl-";
  return { id: prefix + randomBytes(12).toString("hex"), created: Math.floor(now / 1000), model };
}

export function chatCompletionResponse(meta: ResponseMeta, r: GenerateResult) {
  return {
    id: meta.id, object: "chat.completion", created: meta.created, model: meta.model,
    choices: [{ index: 0, message: { role: "assistant", content: r.completion, refusal: null }, logprobs: null, finish_reason: finishReason(r.finishReason) }],
    usage: usage(r),
  };
}

export function completionResponse(meta: ResponseMeta, r: GenerateResult) {
  return {
    id: meta.id, object: "text_completion", created: meta.created, model: meta.model,
    choices: [{ text: r.completion, index: 0, logprobs: null, finish_reason: finishReason(r.finishReason) }],
    usage: usage(r),
  };
}

export function responseFor(req: ParsedRequest, meta: ResponseMeta, r: GenerateResult) {
  return req.kind === "chat" ? chatCompletionResponse(meta, r) : completionResponse(meta, r);
}

export function modelObject(id: string, created: number) {
  return { id, object: "model", created, owned_by: "preftune" };
}

export function modelList(id: string, created: number) {
  return { object: "list", data: [modelObject(id, created)] };
}

// ---------------------------------------------------------------------------------------------------------
// Streaming (server-sent events)

export const SSE_DONE = "data: [DONE]\n\n";

export function sseEvent(payload: unknown): string {
  return `data: ${JSON.stringify(payload)}\n\n`;
}

/**
 * The SSE events of one streamed request, in order: start() once, delta() per piece of text, finish() once
 * (last chunk with the finish reason, the usage chunk when asked for, then [DONE]); error() instead of
 * finish() when generation fails after the headers went out.
 */
export interface StreamShaper {
  start(): string;
  delta(text: string): string;
  finish(r: GenerateResult): string;
  error(e: OpenAIError): string;
}

export function streamShaper(req: ParsedRequest, meta: ResponseMeta): StreamShaper {
  const object = req.kind === "chat" ? "chat.completion.chunk" : "text_completion";
  const withUsage = req.includeUsage ? { usage: null } : {};
  const chunk = (choice: Record<string, unknown>, reason: OpenAIFinishReason | null = null) => sseEvent({
    id: meta.id, object, created: meta.created, model: meta.model,
    choices: [{ index: 0, ...choice, logprobs: null, finish_reason: reason }], ...withUsage,
  });
  const piece = (text: string) => (req.kind === "chat" ? { delta: { content: text } } : { text });
  return {
    start: () => (req.kind === "chat" ? chunk({ delta: { role: "assistant", content: "" } }) : ""),
    delta: (text) => (text === "" ? "" : chunk(piece(text))),
    finish(r) {
      const last = chunk(req.kind === "chat" ? { delta: {} } : { text: "" }, finishReason(r.finishReason));
      const usageChunk = req.includeUsage ? sseEvent({ id: meta.id, object, created: meta.created, model: meta.model, choices: [], usage: usage(r) }) : "";
      return last + usageChunk + SSE_DONE;
    },
    error: (e) => sseEvent(e.body()) + SSE_DONE,
  };
}
