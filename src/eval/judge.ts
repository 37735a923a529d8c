// The LLM judge: a small client for any OpenAI-compatible POST /v1/chat/completions endpoint (temperature 0,
// max_tokens 2048, a per-request timeout, retries with exponential backoff on transient failures), FastChat's
// "[[rating]]" parse, and one-pass filling of judge prompt templates (Python str.format rules).
// Not an OpenAI SDK (no streaming, tools or n > 1) and not the MT-Bench bookkeeping, which is mtbench.ts.

export type ChatMessage = { role: "system" | "user" | "assistant"; content: string };

export interface JudgeOptions {
  url: string;                 // base URL with or without /v1, or the full .../chat/completions URL
  model: string;               // the judge model name sent in the request
  apiKeyEnv?: string;          // environment variable holding the key (default OPENAI_API_KEY); sent as Bearer when set
  temperature?: number;        // default 0
  maxTokens?: number;          // default 2048 (FastChat's judge setting)
  timeoutMs?: number;          // per request, headers and body (default 120 s)
  attempts?: number;           // tries per request, the first included (default 6)
  backoffMs?: number;          // first wait; doubles per retry (default 1000)
  maxBackoffMs?: number;       // cap on one wait (default 60 s)
  parseAttempts?: number;      // requests per judgment while the rating cannot be parsed (default 3)
  log?: (line: string) => void;
  fetchImpl?: typeof fetch;
}

type Resolved = Required<Omit<JudgeOptions, "log" | "fetchImpl">> & Pick<JudgeOptions, "log" | "fetchImpl">;

export function resolveJudgeOptions(o: JudgeOptions): Resolved {
  const r: Resolved = {
    apiKeyEnv: "OPENAI_API_KEY", temperature: 0, maxTokens: 2048, timeoutMs: 120_000, attempts: 6, backoffMs: 1000,
    maxBackoffMs: 60_000, parseAttempts: 3, ...stripUndefined(o),
  } as Resolved;
  if (!r.url) throw new Error("the judge needs a URL: pass --judge-url (e.g. https://api.openai.com/v1)");
  if (!r.model) throw new Error("the judge needs a model name: pass --judge-model (e.g. gpt-4)");
  for (const k of ["attempts", "parseAttempts"] as const) {
    if (!Number.isInteger(r[k]) || r[k] < 1) throw new Error(`judge ${k} must be a whole number ≥ 1, got ${r[k]}`);
  }
  for (const k of ["timeoutMs", "backoffMs", "maxBackoffMs", "maxTokens"] as const) {
    if (!(r[k] >= 0)) throw new Error(`judge ${k} must be a number ≥ 0, got ${r[k]}`);
  }
  chatCompletionsUrl(r.url);
  return r;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** http://host:8000 and http://host:8000/v1 both mean http://host:8000/v1/chat/completions. */
export function chatCompletionsUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`--judge-url ${JSON.stringify(url)} is not a URL; use e.g. http://127.0.0.1:8000/v1`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error(`--judge-url ${JSON.stringify(url)} must be http:// or https://`);
  const path = u.pathname.replace(/\/+$/, "");
  if (path.endsWith("/chat/completions")) u.pathname = path;
  else if (path.endsWith("/v1")) u.pathname = `${path}/chat/completions`;
  else u.pathname = `${path}/v1/chat/completions`;
  return u.toString();
}

/** A failed judge request. `retryable` says whether trying again may help; `fatal` that no request will work. */
export class JudgeRequestError extends Error {
  constructor(message: string, readonly status: number | null, readonly retryable: boolean, readonly fatal = false, readonly retryAfterMs: number | null = null) {
    super(message);
    this.name = "JudgeRequestError";
  }
}

// 401/403/404 are about the key, the permissions or the model name: every later request would fail the same way.
const FATAL_HINTS: Record<number, string> = {
  401: "the API key was refused: set the variable named by --judge-api-key-env (default OPENAI_API_KEY)",
  403: "the API key may not use this model or endpoint",
  404: "no such model or endpoint: check --judge-model and --judge-url",
};

function retryableStatus(status: number, headers: Headers): boolean {
  const forced = headers.get("x-should-retry");
  if (forced === "true") return true;
  if (forced === "false") return false;
  return status === 408 || status === 409 || status === 429 || status >= 500;
}

/** retry-after-ms, else retry-after (seconds or an HTTP date); honoured only between 0 and 60 s. */
function retryAfterMs(headers: Headers): number | null {
  const ms = Number(headers.get("retry-after-ms") ?? NaN);
  let v = Number.isFinite(ms) ? ms : null;
  const ra = headers.get("retry-after");
  if (v === null && ra) {
    const s = Number(ra);
    v = Number.isFinite(s) ? s * 1000 : Date.parse(ra) - Date.now();
  }
  return v !== null && Number.isFinite(v) && v >= 0 && v <= 60_000 ? v : null;
}

function errorText(body: string): string {
  try {
    const j = JSON.parse(body);
    const m = j?.error?.message ?? j?.message;
    if (typeof m === "string") return m;
  } catch { /* not JSON */ }
  return body.replace(/\s+/g, " ").slice(0, 200);
}

function messageContent(body: string): string {
  let j: any;
  try {
    j = JSON.parse(body);
  } catch {
    throw new JudgeRequestError(`the judge answered HTTP 200 with a body that is not JSON: ${errorText(body)}`, 200, true);
  }
  if (j?.error) throw new JudgeRequestError(`the judge answered HTTP 200 with an error: ${JSON.stringify(j.error).slice(0, 200)}`, 200, true);
  const c = j?.choices?.[0]?.message?.content;
  if (typeof c === "string") return c;
  if (Array.isArray(c)) return c.map((p: { text?: unknown }) => (typeof p?.text === "string" ? p.text : "")).join("");
  throw new JudgeRequestError(`the judge's response has no choices[0].message.content: ${body.slice(0, 200)}`, 200, true);
}

/** One HTTP request under the timeout; throws JudgeRequestError, never a bare network error. */
async function requestOnce(o: Resolved, messages: ChatMessage[]): Promise<string> {
  const key = process.env[o.apiKeyEnv];
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (key) headers.authorization = `Bearer ${key}`;
  const body = JSON.stringify({ model: o.model, messages, temperature: o.temperature, max_tokens: o.maxTokens, n: 1 });
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), o.timeoutMs);
  try {
    const res = await (o.fetchImpl ?? fetch)(chatCompletionsUrl(o.url), { method: "POST", headers, body, signal: ctl.signal });
    const text = await res.text();
    if (res.ok) return messageContent(text);
    const fatal = FATAL_HINTS[res.status];
    const msg = `HTTP ${res.status} ${errorText(text)}${fatal ? ` (${fatal})` : ""}`;
    throw new JudgeRequestError(msg, res.status, retryableStatus(res.status, res.headers), !!fatal, retryAfterMs(res.headers));
  } catch (e) {
    if (e instanceof JudgeRequestError) throw e;
    if (ctl.signal.aborted) throw new JudgeRequestError(`no complete answer within ${o.timeoutMs} ms (raise --judge-timeout)`, null, true);
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new JudgeRequestError(`cannot reach ${chatCompletionsUrl(o.url)}: ${cause?.code ?? cause?.message ?? (e as Error).message}`, null, true);
  } finally {
    clearTimeout(timer);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The wait before retry k (k = 1 for the first retry): base·2^(k−1), capped, times a jitter in [0.75, 1]. */
export function backoffMs(k: number, base: number, cap: number, rand = Math.random): number {
  return Math.min(base * 2 ** (k - 1), cap) * (0.75 + 0.25 * rand());
}

/** The judge's reply text, retrying transient failures; throws the last JudgeRequestError when out of tries. */
export async function chatCompletion(opts: JudgeOptions, messages: ChatMessage[]): Promise<string> {
  const o = resolveJudgeOptions(opts);
  for (let attempt = 1; ; attempt++) {
    try {
      return await requestOnce(o, messages);
    } catch (e) {
      const err = e as JudgeRequestError;
      if (!err.retryable || attempt >= o.attempts) {
        throw new JudgeRequestError(`${err.message} (attempt ${attempt} of ${o.attempts})`, err.status, err.retryable, err.fatal);
      }
      const wait = err.retryAfterMs ?? backoffMs(attempt, o.backoffMs, o.maxBackoffMs);
      o.log?.(`judge: ${err.message}; retry ${attempt} of ${o.attempts - 1} in ${(wait / 1000).toFixed(1)} s`);
      await sleep(wait);
    }
  }
}

/**
 * FastChat's single-answer score: the first [[x]], else the first [x], where x is digits with at most one
 * decimal point ("7", "8.5", "10."); −1 when neither is found. "[[8/10]]" and "[[ 7 ]]" give −1.
 */
export function parseRating(judgment: string): number {
  const m = /\[\[(\d+\.?\d*)\]\]/.exec(judgment) ?? /\[(\d+\.?\d*)\]/.exec(judgment);
  return m ? Number(m[1]) : -1;
}

export interface Judgment {
  judgment: string;            // the judge's last reply ("$ERROR$" when no reply came, as FastChat writes)
  score: number;               // −1 when no rating could be had
  error?: string;              // why the score is −1
  requests: number;
}

/**
 * Asks the judge for a rating: transient HTTP failures are retried inside chatCompletion, and a reply with no
 * parseable rating is asked again up to parseAttempts times. Failures become score −1 with `error` set, so the
 * caller can record them; only a fatal error (bad key, unknown model) is thrown, as no later request can work.
 */
export async function judgeRating(opts: JudgeOptions, messages: ChatMessage[]): Promise<Judgment> {
  const parseAttempts = resolveJudgeOptions(opts).parseAttempts;
  let last = "";
  for (let i = 1; i <= parseAttempts; i++) {
    try {
      last = await chatCompletion(opts, messages);
    } catch (e) {
      const err = e as JudgeRequestError;
      if (err.fatal || !(err instanceof JudgeRequestError)) throw err;
      return { judgment: "$ERROR$", score: -1, error: err.message, requests: i };
    }
    const score = parseRating(last);
    if (score !== -1) return { judgment: last, score, requests: i };
    if (i < parseAttempts) opts.log?.(`judge: no [[rating]] in the reply (${JSON.stringify(last.slice(0, 80))}); asking again (${i + 1} of ${parseAttempts})`);
  }
  return { judgment: last, score: -1, error: `no [[rating]] found in ${parseAttempts} replies`, requests: parseAttempts };
}

/**
 * Python's str.format with named fields only, in one pass: "{name}" becomes values[name], "{{" and "}}" become
 * single braces, and braces inside the substituted values are left as they are (never expanded again).
 */
export function fillTemplate(template: string, values: Record<string, string>, where: string): string {
  let out = "";
  let i = 0;
  while (i < template.length) {
    const c = template[i];
    if (c === "{" && template[i + 1] === "{") { out += "{"; i += 2; continue; }
    if (c === "}" && template[i + 1] === "}") { out += "}"; i += 2; continue; }
    if (c === "}") throw new Error(`${where}: single "}" at offset ${i} of the template; write "}}" for a literal brace`);
    if (c === "{") {
      const close = template.indexOf("}", i);
      const name = close < 0 ? "" : template.slice(i + 1, close);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`${where}: unsupported placeholder ${JSON.stringify(template.slice(i, close < 0 ? i + 20 : close + 1))}; only {name}, {{ and }} are understood`);
      if (!(name in values)) throw new Error(`${where}: the template needs {${name}}, which is not given (have ${Object.keys(values).join(", ")})`);
      out += values[name];
      i = close + 1;
      continue;
    }
    out += c;
    i++;
  }
  return out;
}
