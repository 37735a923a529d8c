// The tokenizer of a Hugging Face model folder: tokenizer.json through @huggingface/tokenizers, special tokens
// and the chat template from tokenizer_config.json (+ special_tokens_map.json, chat_template.jinja), rendered
// with @huggingface/jinja the way transformers' apply_chat_template does. Not TRL's BOS/EOS rules (tokenize.ts).
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";
import { DataError } from "./errors.ts";
import type { Message } from "./formats.ts";

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
}

export interface LoadTokenizerOptions {
  /** A template to use instead of the model's: template text, or the name of one of its named templates. */
  chat_template?: string | null;
}

async function readOptional(path: string): Promise<Buffer | null> {
  try { return await readFile(path); } catch { return null; }
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

  let hf: HfTokenizer;
  try { hf = new HfTokenizer(tokenizerJson, config); } catch (e) {
    throw new DataError(`cannot build the tokenizer (${(e as Error).message})`, { file: tjPath, fix: "Check that it is a complete tokenizer.json" });
  }

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
  const compiled = new Map<string, Template>();
  const compile = (name: string, marked = false): Template => {
    const key = marked ? `${name}\u0000marked` : name;
    let t = compiled.get(key);
    if (!t) {
      try { t = new Template(marked ? markGenerationBlocks(named.get(name)!) : named.get(name)!); } catch (e) {
        throw new DataError(`cannot parse the chat template (${(e as Error).message})`, { file: source, fix: "Fix the template or pass chat_template" });
      }
      compiled.set(key, t);
    }
    return t;
  };
  const templateName = (o: ChatTemplateOptions) =>
    // transformers picks the "tool_use" template when tools are given and one exists
    o.tools?.length && named.has("tool_use") && opts.chat_template == null ? "tool_use" : chosenName;
  const render = (messages: Message[], o: ChatTemplateOptions, marked: boolean) => compile(templateName(o), marked).render({
    ...templateVars,
    ...(o.kwargs ?? {}),
    messages,
    tools: o.tools?.length ? o.tools : null,
    documents: null,
    add_generation_prompt: !!o.addGenerationPrompt,
  });
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
  const addBos = flagged ? (config.add_bos_token ?? true) === true && bosTokenId != null : false;
  const addEos = flagged ? config.add_eos_token === true && eosTokenId != null : false;
  const encode = (text: string, addSpecialTokens: boolean): number[] => {
    if (!flagged || !addSpecialTokens) return hf.encode(text, { add_special_tokens: addSpecialTokens }).ids;
    const ids = hf.encode(text, { add_special_tokens: false }).ids;
    return [...(addBos ? [bosTokenId!] : []), ...ids, ...(addEos ? [eosTokenId!] : [])];
  };

  return {
    dir: modelDir,
    encode,
    decode: (ids, skipSpecialTokens = false) => hf.decode(ids, { skip_special_tokens: skipSpecialTokens }),
    tokenToId: (t) => hf.token_to_id(t) ?? null,
    bosToken, eosToken, padToken, bosTokenId, eosTokenId, padTokenId,
    vocabSize: hf.get_vocab(true).size,
    chatTemplate,
    chatTemplateSource: chatTemplate ? source : "(none)",
    fingerprint: fingerprint.digest("hex"),
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

const GEN_TAG = /{%(-?)\s*(end)?generation\s*(-?)%}/g;
const GEN_OPEN = "\uE000", GEN_CLOSE = "\uE001";   // private-use characters: never produced by a template

/** Whether a chat template marks assistant text with {% generation %} blocks (transformers' assistant masks). */
export function hasGenerationBlocks(template: string): boolean {
  return new RegExp(GEN_TAG.source).test(template);
}

/**
 * The template with each {% generation %} / {% endgeneration %} tag replaced by a block that prints a marker
 * character and strips whitespace as the tag's "-" asked (the jinja library drops these tags otherwise).
 */
function markGenerationBlocks(template: string): string {
  return template.replace(GEN_TAG, (_, l: string, end: string | undefined, r: string) => `{%${l} if true %}${end ? GEN_CLOSE : GEN_OPEN}{% endif ${r}%}`);
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
