// The tokenizer of a Hugging Face model folder: tokenizer.json through @huggingface/tokenizers, special tokens
// and the chat template from tokenizer_config.json (+ special_tokens_map.json, chat_template.jinja), rendered
// with @huggingface/jinja the way transformers' apply_chat_template does. Encoding, decoding and rendering run
// in the sandbox worker (sandbox.ts) under a time budget, renders also under an output-size budget, so a
// backtracking regex in tokenizer.json or a runaway template ends as an error naming the file, not a hang or a
// crashed process. Not TRL's BOS/EOS rules (tokenize.ts).
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";
import { buildEngine, describeThrown, GEN_CLOSE, GEN_OPEN, hasGenerationBlocks, TemplateParseError, type EngineSpec } from "./engine.ts";
import { DataError } from "./errors.ts";
import type { Message } from "./formats.ts";
import { SandboxFailure, SandboxTimeout, sandboxCall, sandboxPreload, type SandboxOp } from "./sandbox.ts";

export { hasGenerationBlocks };

export interface ChatTemplateOptions {
  addGenerationPrompt?: boolean;
  continueFinalMessage?: boolean;   // transformers' continue_final_message: cut after the last message's text
  tools?: unknown[] | null;
  kwargs?: Record<string, unknown>; // chat_template_kwargs (e.g. enable_thinking)
}

export interface Tokenizer {
  dir: string;
  encode(text: string, addSpecialTokens: boolean): number[];
  decode(ids: number[], skipSpecialTokens?: boolean): string;
  tokenToId(token: string): number | null;
  bosToken: string | null;
  eosToken: string | null;
  padToken: string | null;
  bosTokenId: number | null;
  eosTokenId: number | null;
  padTokenId: number;             // the pad token, else eos (TRL), else 0
  vocabSize: number;              // including added tokens
  chatTemplate: string | null;    // the template used when no tools are given
  chatTemplateSource: string;     // where it came from, for messages
  applyChatTemplate(messages: Message[], opts?: ChatTemplateOptions): string;
  /**
   * The chat rendered as applyChatTemplate does, and the character spans of `text` its {% generation %} …
   * {% endgeneration %} blocks produced (transformers' return_assistant_tokens_mask); null when the template
   * has no such blocks. Optional: tokenizers built elsewhere may lack it.
   */
  renderGenerationSpans?(messages: Message[], opts?: ChatTemplateOptions): { text: string; spans: [number, number][] } | null;
  fingerprint: string;            // sha256 over the tokenizer files and the template choice (cache key)
  /**
   * The longest token of the vocabulary in characters (added tokens included): where budget.ts starts when
   * it sizes a cut (the cut is then checked by tokenizing, so this is a hint, not a guarantee). Optional:
   * tokenizers built elsewhere may lack it.
   */
  maxTokenChars?: number;
}

export interface LoadTokenizerOptions {
  /** A template to use instead of the model's: template text, or the name of one of its named templates. */
  chat_template?: string | null;
  /**
   * Run encoding, decoding and template rendering in the sandbox worker, where a call past its time budget
   * can be stopped (default true; the environment variable PREFTUNE_SANDBOX=0 turns it off). In this thread,
   * templates still check their time and output budgets, but a backtracking tokenizer regex cannot be stopped.
   */
  sandbox?: boolean;
  /** Time budget of one call in ms, plus 10 s per MiB of input (default 10000; PREFTUNE_TOKENIZER_TIMEOUT_MS). */
  timeoutMs?: number;
}

/** Base time budget of one encode, decode or render call, in ms. */
export const DEFAULT_TIMEOUT_MS = 10_000;
/** Extra time per MiB of input text (tokenizing 1 MiB takes a few seconds). */
const TIMEOUT_PER_MIB_MS = 10_000;
/** A render may produce this much, plus RENDER_GROWTH × its input's characters. */
const RENDER_BASE_CHARS = 4 << 20;
const RENDER_GROWTH = 16;

function envNumber(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number of milliseconds, got ${JSON.stringify(v)}`);
  return n;
}

/** Characters of text in a JSON-like value (strings, keys, numbers), to size budgets; depth-limited. */
export function textSize(v: unknown, depth = 0): number {
  if (typeof v === "string") return v.length;
  if (v === null || typeof v !== "object" || depth > 64) return 8;
  let n = 2;
  if (Array.isArray(v)) for (const x of v) n += 1 + textSize(x, depth + 1);
  else for (const [k, x] of Object.entries(v)) n += k.length + 2 + textSize(x, depth + 1);
  return n;
}

/** A file of the model folder, or null when it does not exist; a folder or link loop in its place is an error. */
async function readOptional(path: string): Promise<Buffer | null> {
  try { return await readFile(path); } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return null;
    if (code === "EISDIR") throw new DataError("is a folder, not a file", { file: path, fix: "Put the model's file there (or remove the folder)" });
    if (code === "ELOOP") throw new DataError("is a symbolic link loop", { file: path, fix: "Point the link at the real file" });
    throw new DataError(`cannot read (${(e as Error).message})`, { file: path });
  }
}

/** A failure inside the sandbox as the error the caller expects: a tokenizer that does not build there is a DataError. */
function sandboxError(e: unknown, tjPath: string, doing: string): Error {
  if (e instanceof SandboxFailure) {
    if (e.kind === "load") return new DataError(`cannot build the tokenizer in the sandbox worker (${e.message})`, { file: tjPath, fix: "Check that it is a complete tokenizer.json" });
    return new Error(`${doing} failed: ${e.message}`);
  }
  return e as Error;
}

/** The call ran past its time or size budget; the message names the tokenizer file or the template's source. */
export class TokenizerBudgetError extends Error {
  constructor(message: string, readonly fix: string) { super(message); }
}

function parseJson(buf: Buffer, file: string): any {
  try { return JSON.parse(buf.toString("utf8")); } catch (e) {
    throw new DataError(`not valid JSON (${(e as Error).message})`, { file, fix: "Restore the file from the model repository" });
  }
}

/** A special-token entry: a string, or an AddedToken dict {content: ...}. */
function tokenString(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string") return (v as { content: string }).content;
  return null;
}

/** Loads tokenizer.json + tokenizer_config.json (+ special_tokens_map.json, chat_template.jinja) from a model folder. */
export async function loadTokenizer(modelDir: string, opts: LoadTokenizerOptions = {}): Promise<Tokenizer> {
  const tjPath = join(modelDir, "tokenizer.json");
  const tjBuf = await readOptional(tjPath);
  if (!tjBuf) throw new DataError("tokenizer.json not found", { file: tjPath, fix: "Pass a Hugging Face model folder that holds tokenizer.json (slow-only tokenizers are not supported)" });
  const cfgPath = join(modelDir, "tokenizer_config.json");
  const cfgBuf = await readOptional(cfgPath);
  const mapBuf = await readOptional(join(modelDir, "special_tokens_map.json"));
  const jinjaBuf = await readOptional(join(modelDir, "chat_template.jinja"));
  const ctJsonBuf = await readOptional(join(modelDir, "chat_template.json"));
  const tokenizerJson = parseJson(tjBuf, tjPath);
  const config = cfgBuf ? parseJson(cfgBuf, cfgPath) : {};
  const specialMap = mapBuf ? parseJson(mapBuf, join(modelDir, "special_tokens_map.json")) : {};

  if (!tokenizerJson || typeof tokenizerJson !== "object" || Array.isArray(tokenizerJson)) {
    throw new DataError("expected a JSON object", { file: tjPath, fix: "Restore the file from the model repository" });
  }
  const modelVocab = (tokenizerJson as { model?: { vocab?: unknown } }).model?.vocab;
  if (modelVocab == null || typeof modelVocab !== "object" || Object.keys(modelVocab).length === 0) {
    throw new DataError("the vocabulary (model.vocab) is empty or missing, so every text would map to the same id", {
      file: tjPath, fix: "Restore tokenizer.json from the model repository",
    });
  }
  let hf: HfTokenizer;
  try { hf = new HfTokenizer(tokenizerJson, config); } catch (e) {
    throw new DataError(`cannot build the tokenizer (${(e as Error).message})`, { file: tjPath, fix: "Check that it is a complete tokenizer.json" });
  }
  const vocab = hf.get_vocab(true);
  if (vocab.size === 0) throw new DataError("the vocabulary is empty", { file: tjPath, fix: "Restore tokenizer.json from the model repository" });
  let maxTokenChars = 1;
  for (const t of vocab.keys()) if (t.length > maxTokenChars) maxTokenChars = t.length;

  // transformers: tokenizer_config.json wins, special_tokens_map.json fills gaps
  const special = (key: string) => tokenString(config[key]) ?? tokenString(specialMap[key]);
  const toId = (t: string | null) => (t == null ? null : hf.token_to_id(t) ?? null);
  const bosToken = special("bos_token");
  const eosToken = special("eos_token");
  const padToken = special("pad_token");
  const bosTokenId = toId(bosToken);
  const eosTokenId = toId(eosToken);
  const padTokenId = toId(padToken) ?? eosTokenId ?? 0;

  // Variables transformers hands every template: the special-token strings that are set.
  const templateVars: Record<string, unknown> = {};
  for (const key of ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]) {
    const t = special(key);
    if (t != null) templateVars[key] = t;
  }
  const extra = config.additional_special_tokens ?? specialMap.additional_special_tokens;
  if (Array.isArray(extra)) templateVars.additional_special_tokens = extra.map(tokenString).filter((s) => s != null);

  // Templates: chat_template.jinja / chat_template.json (newer transformers) or tokenizer_config.json,
  // either one string or a list of {name, template}.
  const named = new Map<string, string>();
  let source = `${cfgPath} "chat_template"`;
  let raw: unknown = config.chat_template;
  if (jinjaBuf) { raw = jinjaBuf.toString("utf8"); source = join(modelDir, "chat_template.jinja"); }
  else if (ctJsonBuf) { raw = parseJson(ctJsonBuf, join(modelDir, "chat_template.json")).chat_template; source = join(modelDir, "chat_template.json"); }
  if (typeof raw === "string") named.set("default", raw);
  else if (Array.isArray(raw)) for (const t of raw) if (t && typeof t.name === "string" && typeof t.template === "string") named.set(t.name, t.template);
  let chosenName = "default";
  if (opts.chat_template != null) {
    if (named.has(opts.chat_template)) { chosenName = opts.chat_template; source += ` ("${chosenName}")`; }
    else { named.set("default", opts.chat_template); source = "the chat_template option"; }
  } else if (named.size && !named.has("default")) {
    chosenName = [...named.keys()][0];
  }
  if (named.size > 1 || chosenName !== "default") source = `${source} (template "${chosenName}")`;
  const chatTemplate = named.get(chosenName) ?? null;
  const templateName = (o: ChatTemplateOptions) =>
    // transformers picks the "tool_use" template when tools are given and one exists
    o.tools?.length && named.has("tool_use") && opts.chat_template == null ? "tool_use" : chosenName;
  const noTemplate = () => new DataError("the tokenizer has no chat template, so conversational data cannot be rendered", {
    file: cfgPath, fix: "Pass chat_template (template text), use a model with a chat template, or give the data as plain strings",
  });

  const fingerprint = createHash("sha256");
  for (const b of [tjBuf, cfgBuf, mapBuf, jinjaBuf, ctJsonBuf]) {
    fingerprint.update(b ? createHash("sha256").update(b).digest("hex") : "-");
  }
  fingerprint.update(JSON.stringify({ chosenName, chatTemplate }));

  // transformers' Llama/Gemma fast tokenizers rebuild the post-processor from add_bos_token/add_eos_token in
  // tokenizer_config.json; tokenizer.json alone does not say so, so do it here for those classes.
  const cls = String(config.tokenizer_class ?? "").replace(/Fast$/, "");
  const flagged = ["LlamaTokenizer", "CodeLlamaTokenizer", "GemmaTokenizer"].includes(cls) &&
    (typeof config.add_bos_token === "boolean" || typeof config.add_eos_token === "boolean");
  const spec: EngineSpec = {
    tokenizerJson: tjBuf.toString("utf8"), config, templates: [...named.entries()],
    flagged: flagged ? {
      addBos: (config.add_bos_token ?? true) === true && bosTokenId != null, addEos: config.add_eos_token === true && eosTokenId != null,
      bosId: bosTokenId, eosId: eosTokenId,
    } : null,
  };
  const fingerprintHex = fingerprint.digest("hex");

  // Budgets: time for every call (more for long inputs), output size for renders.
  const baseMs = opts.timeoutMs ?? envNumber("PREFTUNE_TOKENIZER_TIMEOUT_MS") ?? DEFAULT_TIMEOUT_MS;
  const timeFor = (chars: number) => baseMs + TIMEOUT_PER_MIB_MS * (chars / (1 << 20));
  const seconds = (ms: number) => `${+(ms / 1000).toFixed(1)} s`;
  const timeFix = "Fix or remove the row, or raise PREFTUNE_TOKENIZER_TIMEOUT_MS (milliseconds) if the input is legitimately large";
  const tokenizerTimeout = (what: string, chars: number, ms: number) => new TokenizerBudgetError(
    `${what} ${chars} characters took longer than the ${seconds(ms)} time budget: a regular expression of ${tjPath} ` +
    "(normalizer or pre-tokenizer) may backtrack without end on this text", timeFix);

  const sandboxed = (opts.sandbox ?? process.env.PREFTUNE_SANDBOX !== "0") !== false;
  const engineKey = createHash("sha256").update(fingerprintHex).update(JSON.stringify([spec.templates, spec.flagged])).digest("hex");
  if (sandboxed) sandboxPreload(engineKey, spec);
  const local = sandboxed ? null : buildEngine(spec, hf);
  const run = (op: SandboxOp, ms: number): unknown => sandboxCall(engineKey, () => spec, op, ms);

  const encode = (text: string, addSpecialTokens: boolean): number[] => {
    if (local) return local.encode(text, addSpecialTokens);
    const ms = timeFor(text.length);
    try {
      return run({ op: "encode", key: engineKey, text, special: addSpecialTokens }, ms) as number[];
    } catch (e) {
      if (e instanceof SandboxTimeout) throw tokenizerTimeout("tokenizing", text.length, ms);
      throw sandboxError(e, tjPath, "tokenizing");
    }
  };
  const decode = (ids: number[], skipSpecialTokens = false): string => {
    if (local) return local.decode(ids, skipSpecialTokens);
    const ms = timeFor(ids.length * 8);
    try {
      return run({ op: "decode", key: engineKey, ids, skip: skipSpecialTokens }, ms) as string;
    } catch (e) {
      if (e instanceof SandboxTimeout) throw new TokenizerBudgetError(`decoding ${ids.length} tokens took longer than the ${seconds(ms)} time budget (a regular expression of ${tjPath}'s decoder?)`, timeFix);
      throw sandboxError(e, tjPath, "decoding");
    }
  };
  const render = (messages: Message[], o: ChatTemplateOptions, marked: boolean): string => {
    const vars = {
      ...templateVars,
      ...(o.kwargs ?? {}),
      messages,
      tools: o.tools?.length ? o.tools : null,
      documents: null,
      add_generation_prompt: !!o.addGenerationPrompt,
    };
    const inputChars = textSize(messages) + textSize(o.tools ?? null) + textSize(o.kwargs ?? null);
    const ms = timeFor(inputChars);
    const maxChars = RENDER_BASE_CHARS + RENDER_GROWTH * inputChars;
    const name = templateName(o);
    const budgetFix = "Fix the template (or pass chat_template), fix or remove the row, or raise PREFTUNE_TOKENIZER_TIMEOUT_MS (milliseconds) if the input is legitimately large";
    try {
      if (local) return local.render(name, marked, vars, { deadline: performance.now() + ms, maxChars });
      // the worker stops the render itself at ms (checked between template nodes); the grace lets its own
      // message arrive first, and covers single steps that run long (building a range of 10^6 items)
      return run({ op: "render", key: engineKey, name, marked, vars, budgetMs: ms, maxChars }, ms + 2000 + ms / 2) as string;
    } catch (e) {
      const kind = e instanceof SandboxTimeout ? "timeout" : e instanceof SandboxFailure ? e.kind : (e as { what?: string }).what ?? null;
      if (kind === "timeout" || kind === "time") {
        throw new TokenizerBudgetError(`the chat template (${source}) did not finish within its ${seconds(ms)} time budget (a loop too long for ${inputChars} characters of input${kind === "timeout" ? ", or it ran out of memory" : ""})`, budgetFix);
      }
      if (kind === "size") throw new TokenizerBudgetError(`the chat template (${source}) produced more than its budget of ${maxChars} characters for ${inputChars} characters of input`, budgetFix);
      if (kind === "range") throw new TokenizerBudgetError(`the chat template (${source}): ${(e as Error).message}`, budgetFix);
      if (kind === "parse" || e instanceof TemplateParseError) {
        throw new DataError(`cannot parse the chat template (${(e as Error).message})`, { file: source, fix: "Fix the template or pass chat_template" });
      }
      if (e instanceof SandboxFailure && e.kind === "load") throw sandboxError(e, tjPath, "rendering");
      throw e instanceof SandboxFailure ? new Error(e.message) : e;
    }
  };
  // A template that does not parse is reported when the tokenizer loads, as before the sandbox.
  if (chatTemplate != null) {
    try { new Template(chatTemplate); } catch (e) {
      throw new DataError(`cannot parse the chat template (${describeThrown(e)})`, { file: source, fix: "Fix the template or pass chat_template" });
    }
  }

  return {
    dir: modelDir,
    encode,
    decode,
    tokenToId: (t) => hf.token_to_id(t) ?? null,
    bosToken, eosToken, padToken, bosTokenId, eosTokenId, padTokenId,
    vocabSize: vocab.size,
    chatTemplate,
    chatTemplateSource: chatTemplate ? source : "(none)",
    fingerprint: fingerprintHex,
    maxTokenChars,
    applyChatTemplate(messages, o = {}) {
      if (!chatTemplate) throw noTemplate();
      if (o.addGenerationPrompt && o.continueFinalMessage) throw new Error("addGenerationPrompt and continueFinalMessage exclude each other");
      const rendered = render(messages, o, false);
      return o.continueFinalMessage ? cutAfterFinalMessage(rendered, messages) : rendered;
    },
    renderGenerationSpans(messages, o = {}) {
      if (!chatTemplate) throw noTemplate();
      if (o.continueFinalMessage) throw new Error("renderGenerationSpans renders whole conversations (no continueFinalMessage)");
      if (!hasGenerationBlocks(named.get(templateName(o))!)) return null;
      return generationSpans(render(messages, o, true));
    },
  };
}

/** Strips the markers from a rendering and returns the character spans between them. */
function generationSpans(marked: string): { text: string; spans: [number, number][] } {
  let text = "";
  const spans: [number, number][] = [];
  let open: number | null = null;
  let last = 0;
  for (let i = 0; i < marked.length; i++) {
    const c = marked[i];
    if (c !== GEN_OPEN && c !== GEN_CLOSE) continue;
    text += marked.slice(last, i);
    last = i + 1;
    if (c === GEN_OPEN) {
      if (open !== null) throw new Error("the chat template opens a {% generation %} block inside another one, or the data contains U+E000");
      open = text.length;
    } else {
      if (open === null) throw new Error("the chat template closes a {% generation %} block it did not open, or the data contains U+E001");
      if (text.length > open) spans.push([open, text.length]);
      open = null;
    }
  }
  text += marked.slice(last);
  if (open !== null) throw new Error("the chat template leaves a {% generation %} block open");
  return { text, spans };
}

/**
 * transformers' continue_final_message: keep the rendering up to the end of the last message's text, so
 * the model continues it. The text is searched from the end; trailing whitespace the template trimmed is
 * not required.
 */
export function cutAfterFinalMessage(rendered: string, messages: Message[]): string {
  const last = messages[messages.length - 1]?.content ?? "";
  const core = last.trim();
  const at = rendered.lastIndexOf(core);
  if (core === "" || at < 0) {
    throw new Error("continue_final_message: the last message does not appear in the rendered chat; the template changes its text");
  }
  const withTrailing = last.trimStart();
  if (rendered.slice(at, at + withTrailing.length) === withTrailing) return rendered.slice(0, at + withTrailing.length);
  return rendered.slice(0, at + core.length);
}
