// TRL's dataset formats: validates raw rows and turns them into preference examples (explicit or implicit
// prompt, standard strings or conversational messages, paired or unpaired), plus extract_prompt and unpair.
// Not tokenization and not templates: everything here is still text.
import { DataError, preview, typeName } from "./errors.ts";
import { resolveDataset } from "./hub.ts";
import { readRecords, type DataSource, type RawRecord } from "./readers.ts";

export interface Message {
  role: string;
  content: string;
  [key: string]: unknown;        // tool_calls, reasoning_content, ... are passed through to the template
}
export type Text = string | Message[];

export interface RowRef {
  file: string;
  row: number;
  unit: "line" | "row";
}

interface ExtraFields {
  tools?: unknown[];                          // TRL's optional `tools` column
  templateKwargs?: Record<string, unknown>;   // TRL's optional `chat_template_kwargs` column
}
export interface PairExample extends ExtraFields { ref: RowRef; prompt: Text; chosen: Text; rejected: Text }
export interface UnpairedExample extends ExtraFields { ref: RowRef; prompt: Text; completion: Text; label: boolean }
/** SFT language modelling: a `text` string (TRL's dataset_text_field) or a whole `messages` conversation. */
export interface LmExample extends ExtraFields { ref: RowRef; text: Text }

export interface ColumnOptions {
  prompt_column?: string;
  chosen_column?: string;
  rejected_column?: string;
  completion_column?: string;
  label_column?: string;
}

export interface LoadOptions extends ColumnOptions {
  split?: string | null;
  dataset_config?: string | null;   // a config of a Hugging Face dataset (hub.ts)
  skip_bad_rows?: boolean;
  /**
   * SFT: also accept TRL's language-modelling formats. A row's format is the first of: prompt/completion
   * (a completion column), conversational language modelling ("messages"), plain language modelling
   * (dataset_text_field), paired (prompt + chosen).
   */
  sft?: boolean;
  dataset_text_field?: string;      // default "text"
  /** The most bytes one JSONL line may have (default 16 MiB, or PREFTUNE_MAX_ROW_BYTES); longer lines are bad rows. */
  max_row_bytes?: number | null;
}

export interface LoadedExamples {
  files: string[];
  /**
   * "paired": chosen/rejected; "unpaired": prompt/completion/label; "prompt_completion": no label (SFT only);
   * "text" / "messages": language modelling on a whole text or conversation (SFT only).
   */
  kind: "paired" | "unpaired" | "prompt_completion" | "text" | "messages";
  conversational: boolean;
  implicitPrompt: boolean;
  paired: PairExample[];
  unpaired: UnpairedExample[];
  lm: LmExample[];
  rowsRead: number;
  badRows: number;
  badRowMessages: string[];   // the first few, for reports
}

const ROLES = new Set(["system", "user", "assistant", "tool"]);

export function columnNames(o: ColumnOptions) {
  return {
    prompt: o.prompt_column ?? "prompt",
    chosen: o.chosen_column ?? "chosen",
    rejected: o.rejected_column ?? "rejected",
    completion: o.completion_column ?? "completion",
    label: o.label_column ?? "label",
  };
}

/** TRL's is_conversational for one value: a list whose first item is an object with a role. */
export function isConversational(v: unknown): boolean {
  return Array.isArray(v) && v.length > 0 && typeof v[0] === "object" && v[0] !== null && "role" in v[0];
}

/**
 * TRL's extract_prompt: the longest common prefix (characters, or whole messages) of chosen and rejected is
 * the prompt. A space just before the split point goes to the completions. When neither differs within the
 * shorter one, TRL's loop leaves the split at the shorter one's last element; so do we, which keeps both
 * completions non-empty.
 */
export function extractPrompt<T extends Text>(chosen: T, rejected: T): { prompt: T; chosen: T; rejected: T } {
  const n = Math.min(chosen.length, rejected.length);
  let idx = n - 1;
  for (let i = 0; i < n; i++) {
    if (!sameItem(chosen[i], rejected[i])) {
      idx = i;
      if (i > 0 && typeof chosen === "string" && chosen[i - 1] === " ") idx = i - 1;
      break;
    }
  }
  if (idx < 0) idx = 0;
  return { prompt: chosen.slice(0, idx) as T, chosen: chosen.slice(idx) as T, rejected: rejected.slice(idx) as T };
}

function sameItem(a: unknown, b: unknown): boolean {
  if (typeof a === "string" || typeof b === "string") return a === b;
  try { return JSON.stringify(a) === JSON.stringify(b); } catch { return false; }
}

/**
 * TRL's unpair_preference_dataset: within each block of `blockSize` pairs (its map batch, 1000 rows) the
 * chosen rows (label true) come first, then the rejected rows (label false), prompts duplicated.
 */
export function unpairExamples(pairs: PairExample[], blockSize = 1000): UnpairedExample[] {
  const out: UnpairedExample[] = [];
  for (let s = 0; s < pairs.length; s += blockSize) {
    const block = pairs.slice(s, s + blockSize);
    for (const p of block) out.push({ ref: p.ref, prompt: p.prompt, completion: p.chosen, label: true, tools: p.tools, templateKwargs: p.templateKwargs });
    for (const p of block) out.push({ ref: p.ref, prompt: p.prompt, completion: p.rejected, label: false, tools: p.tools, templateKwargs: p.templateKwargs });
  }
  return out;
}

class RowProblem extends Error {
  constructor(readonly field: string, message: string, readonly fix: string) { super(message); }
}

/** A dataset name or path as a DataSource (hub.ts resolves local paths and Hugging Face cache ids). */
export async function toDataSource(source: string | DataSource, opts: { split?: string | null; dataset_config?: string | null } = {}): Promise<DataSource> {
  if (typeof source !== "string") return source;
  return resolveDataset(source, { split: opts.split, config: opts.dataset_config });
}

/**
 * Reads, validates and normalises every row of a dataset (a path, a Hugging Face cache id, or a resolved
 * DataSource such as a mixture). Bad rows throw a DataError unless skip_bad_rows.
 */
export async function loadExamples(source: string | DataSource, opts: LoadOptions = {}): Promise<LoadedExamples> {
  const src = await toDataSource(source, opts);
  const files = src.files;
  const cols = columnNames(opts);
  const textField = opts.dataset_text_field ?? "text";
  const wanted = [cols.prompt, cols.chosen, cols.rejected, cols.completion, cols.label, "tools", "chat_template_kwargs"];
  if (opts.sft) wanted.push("messages", textField);
  const out: LoadedExamples = {
    files, kind: "paired", conversational: false, implicitPrompt: false, paired: [], unpaired: [], lm: [],
    rowsRead: 0, badRows: 0, badRowMessages: [],
  };
  let schema: { kind: LoadedExamples["kind"]; conversational: boolean; implicit: boolean } | null = null;

  const bad = (rec: RawRecord, field: string | null, message: string, fix: string) => {
    const err = new DataError(message, {
      file: rec.file, row: rec.row, rowUnit: rec.unit, field,
      fix: `${fix}${opts.skip_bad_rows ? "" : " (or set skip_bad_rows to skip such rows)"}`,
    });
    if (!opts.skip_bad_rows) throw err;
    out.badRows++;
    if (out.badRowMessages.length < 20) out.badRowMessages.push(err.message);
  };

  for await (const rec of src.records ? src.records() : readRecords(files, { columns: wanted, maxRowBytes: opts.max_row_bytes })) {
    out.rowsRead++;
    if (rec.error !== undefined) { bad(rec, null, rec.error, rec.fix ?? "Each line must be one JSON object"); continue; }
    const row = rec.value;
    if (typeof row !== "object" || row === null || Array.isArray(row)) {
      bad(rec, null, `expected a JSON object, got ${typeName(row)} ${preview(row)}`, "Each row must be an object with named columns");
      continue;
    }
    const r = row as Record<string, unknown>;
    if (!schema) {
      schema = detectSchema(r, cols, rec, opts.sft ? textField : null);
      out.kind = schema.kind;
      out.conversational = schema.conversational;
      out.implicitPrompt = schema.implicit;
    }
    try {
      const ref: RowRef = { file: rec.file, row: rec.row, unit: rec.unit };
      const extra = extraFields(r);
      if (schema.kind === "paired") {
        out.paired.push({ ref, ...extra, ...pairFromRow(r, cols, schema.conversational, schema.implicit) });
      } else if (schema.kind === "messages") {
        out.lm.push({ ref, ...extra, text: messagesFromRow(r) });
      } else if (schema.kind === "text") {
        out.lm.push({ ref, ...extra, text: textField_(r, textField) });
      } else {
        out.unpaired.push({ ref, ...extra, ...unpairedFromRow(r, cols, schema.conversational, schema.kind === "unpaired") });
      }
    } catch (e) {
      if (!(e instanceof RowProblem)) throw e;
      bad(rec, e.field, e.message, e.fix);
    }
  }
  if (!schema) {
    throw new DataError(out.rowsRead ? "no readable rows" : "the dataset is empty", {
      file: files.join(", ") || src.name, fix: "Each row must be a JSON object with the preference columns",
    });
  }
  return out;
}

/** `textField` set: SFT, where the language-modelling formats exist too (see LoadOptions.sft for the order). */
/** A row's column, own properties only: a column named "constructor" or "__proto__" is data, not Object's. */
function col(r: Record<string, unknown>, name: string): unknown {
  return Object.hasOwn(r, name) ? r[name] : undefined;
}

function detectSchema(r: Record<string, unknown>, cols: ReturnType<typeof columnNames>, rec: RawRecord, textField: string | null) {
  const has = (c: string) => col(r, c) !== undefined;
  let kind: LoadedExamples["kind"];
  if (textField != null && has(cols.completion)) kind = has(cols.label) ? "unpaired" : "prompt_completion";
  else if (textField != null && has("messages")) kind = "messages";
  else if (textField != null && has(textField)) kind = "text";
  else if (has(cols.chosen) || has(cols.rejected)) kind = "paired";
  else if (has(cols.completion)) kind = has(cols.label) ? "unpaired" : "prompt_completion";
  else {
    const lm = textField != null ? `, "messages" (conversation) or "${textField}" (text; dataset_text_field)` : "";
    throw new DataError(
      `found columns ${preview(Object.keys(r))} but none of "${cols.chosen}"/"${cols.rejected}" (paired) or "${cols.completion}"/"${cols.label}" (unpaired)${lm}`,
      { file: rec.file, row: rec.row, rowUnit: rec.unit, fix: "Rename the columns to TRL's names or pass chosen_column/rejected_column/completion_column/label_column" + (textField != null ? "/dataset_text_field" : "") },
    );
  }
  if (kind === "messages") return { kind, conversational: true, implicit: false };
  if (kind === "text") return { kind, conversational: false, implicit: false };
  const main = kind === "paired" ? (has(cols.chosen) ? col(r, cols.chosen) : col(r, cols.rejected)) : col(r, cols.completion);
  const conversational = isConversational(main) || (main === undefined && isConversational(col(r, cols.prompt)));
  // TRL's maybe_extract_prompt: the prompt is extracted from chosen/rejected when there is none, or when the given
  // one's format differs from chosen's (UltraFeedback-binarized: a string prompt beside full conversations).
  return { kind, conversational, implicit: kind === "paired" && (!has(cols.prompt) || promptFormatDiffers(col(r, cols.prompt), conversational)) };
}

/** A given prompt whose format (conversation or text) is not chosen's: TRL then ignores it and extracts its own. */
function promptFormatDiffers(prompt: unknown, conversational: boolean): boolean {
  return prompt !== undefined && isConversational(prompt) !== conversational;
}

function extraFields(r: Record<string, unknown>): ExtraFields {
  const out: ExtraFields = {};
  let tools = col(r, "tools");
  if (typeof tools === "string" && tools.trim() !== "") {
    try { tools = JSON.parse(tools); } catch { throw new RowProblem("tools", "not valid JSON", "Give tools as a list of function schemas or its JSON string"); }
  }
  if (tools != null && tools !== "") {
    if (!Array.isArray(tools)) throw new RowProblem("tools", `expected a list, got ${typeName(tools)}`, "Give tools as a list of function schemas");
    if (tools.length) out.tools = tools;
  }
  const kw = col(r, "chat_template_kwargs");
  if (kw != null) {
    if (typeof kw !== "object" || Array.isArray(kw)) throw new RowProblem("chat_template_kwargs", `expected an object, got ${typeName(kw)}`, "Give an object of template variables");
    out.templateKwargs = kw as Record<string, unknown>;
  }
  return out;
}

function pairFromRow(r: Record<string, unknown>, cols: ReturnType<typeof columnNames>, conv: boolean, implicit: boolean) {
  const part = implicit ? "conversation" : "completion";
  let prompt: Text = implicit ? "" : textField(r, cols.prompt, conv, "prompt");
  let chosen = textField(r, cols.chosen, conv, part);
  let rejected = textField(r, cols.rejected, conv, part);
  if (implicit) {
    const given = col(r, cols.prompt);
    if (given !== undefined && !promptFormatDiffers(given, conv)) throw new RowProblem(cols.prompt, `this row's prompt is in chosen's format, but the first row's was missing or in another format (so the prompt is extracted from chosen and rejected, as TRL does)`, "Give every row a prompt in chosen's format, or none");
    ({ prompt, chosen, rejected } = extractPrompt(chosen, rejected));
    if (prompt.length === 0) {
      throw new RowProblem(cols.chosen, "chosen and rejected share no prefix, so the implicit prompt is empty", `Add a "${cols.prompt}" column`);
    }
    if (conv) {
      checkMessages(chosen as Message[], cols.chosen, "completion");
      checkMessages(rejected as Message[], cols.rejected, "completion");
    }
  }
  if (conv) {
    checkOrder(prompt as Message[], chosen as Message[], cols.chosen);
    checkOrder(prompt as Message[], rejected as Message[], cols.rejected);
  }
  return { prompt, chosen, rejected };
}

function unpairedFromRow(r: Record<string, unknown>, cols: ReturnType<typeof columnNames>, conv: boolean, withLabel: boolean) {
  const prompt = textField(r, cols.prompt, conv, "prompt");
  const completion = textField(r, cols.completion, conv, "completion");
  if (conv) checkOrder(prompt as Message[], completion as Message[], cols.completion);
  let label = true;
  if (withLabel) {
    const v = col(r, cols.label);
    if (v === undefined) throw new RowProblem(cols.label, "missing column", "Give every row a boolean label (true = desirable)");
    if (typeof v !== "boolean") throw new RowProblem(cols.label, `expected true or false, got ${typeName(v)} ${preview(v)}`, "Write the label as a JSON boolean");
    label = v;
  }
  return { prompt, completion, label };
}

/** TRL's conversational language modelling: a "messages" list, rendered whole by the chat template. */
function messagesFromRow(r: Record<string, unknown>): Message[] {
  const v = col(r, "messages");
  if (v === undefined) throw new RowProblem("messages", "missing column", 'Give every row a "messages" list');
  if (!Array.isArray(v)) throw new RowProblem("messages", `expected a list of {role, content} messages, got ${typeName(v)} ${preview(v)}`, "Use the same format in every row");
  checkMessages(v, "messages", "conversation");
  checkOrder([], v as Message[], "messages");
  return v as Message[];
}

/** TRL's language modelling: dataset_text_field holds the whole text. */
function textField_(r: Record<string, unknown>, name: string): string {
  const v = col(r, name);
  if (v === undefined) throw new RowProblem(name, "missing column", `Give every row a "${name}" value (dataset_text_field)`);
  if (typeof v !== "string") throw new RowProblem(name, `expected a string, got ${typeName(v)} ${preview(v)}`, "Give the text as a string, or name the right column with dataset_text_field");
  if (v.trim() === "") throw new RowProblem(name, "empty text", "Fill in the text or drop the row");
  return v;
}

/** One prompt/completion column: a non-empty string (standard) or a list of messages (conversational). */
type Part = "prompt" | "completion" | "conversation";

function textField(r: Record<string, unknown>, col: string, conv: boolean, part: Part): Text {
  const v = Object.hasOwn(r, col) ? r[col] : undefined;
  if (v === undefined) throw new RowProblem(col, "missing column", `Give every row a "${col}" value`);
  if (conv) {
    if (!Array.isArray(v)) {
      throw new RowProblem(col, `expected a list of {role, content} messages like the first row, got ${typeName(v)} ${preview(v)}`, "Use the same format (conversational or plain text) in every row");
    }
    checkMessages(v, col, part);
    return v as Message[];
  }
  if (typeof v !== "string") {
    throw new RowProblem(col, `expected a string like the first row, got ${typeName(v)} ${preview(v)}`, "Use the same format (conversational or plain text) in every row");
  }
  if (v.trim() === "") throw new RowProblem(col, "empty text", "Fill in the text or drop the row");
  return v;
}

function checkMessages(v: unknown[], col: string, part: Part) {
  if (v.length === 0) throw new RowProblem(col, "empty list of messages", "Give at least one message");
  v.forEach((m, i) => {
    const at = `${col}[${i}]`;
    if (typeof m !== "object" || m === null || Array.isArray(m)) throw new RowProblem(at, `expected a {role, content} message, got ${typeName(m)}`, "Write each message as {\"role\": ..., \"content\": ...}");
    const { role, content } = m as Record<string, unknown>;
    if (typeof role !== "string") throw new RowProblem(`${at}.role`, `expected a string, got ${typeName(role)}`, "Give each message a role");
    if (!ROLES.has(role)) {
      const hint = role === "human" || role === "gpt" ? " (ShareGPT names: map human→user, gpt→assistant)" : "";
      throw new RowProblem(`${at}.role`, `unknown role "${role}"${hint}`, "Use system, user, assistant or tool");
    }
    if (typeof content !== "string") throw new RowProblem(`${at}.content`, `expected a string, got ${typeName(content)} ${preview(content)}`, "Give the content as text (multimodal parts are not supported)");
    if (content.trim() === "" && role !== "system") throw new RowProblem(`${at}.content`, "empty text", "Fill in the message or drop the row");
  });
  if (part === "completion" && (v[0] as Message).role !== "assistant") {
    throw new RowProblem(`${col}[0].role`, `a completion must start with an assistant message, got "${(v[0] as Message).role}"`, "Put the assistant's answer in the completion and the rest in the prompt");
  }
}

/**
 * Roles in order over prompt + completion: an optional leading system message, then user first; user and
 * assistant alternate, tool messages follow an assistant turn. A prompt that ends with an assistant message
 * is continued by the completion (TRL's continue_final_message), so assistant→assistant is fine there.
 */
function checkOrder(prompt: Message[], completion: Message[], col: string) {
  const all = [...prompt, ...completion];
  for (let i = 0; i < all.length; i++) {
    const role = all[i].role;
    const prev = i > 0 ? all[i - 1].role : null;
    const field = i < prompt.length ? `prompt[${i}].role` : `${col}[${i - prompt.length}].role`;
    const fail = (why: string) => { throw new RowProblem(field, `roles out of order: ${why} (roles: ${all.map((m) => m.role).join(", ")})`, "Start with an optional system message, then user; alternate user and assistant"); };
    if (role === "system" && i > 0) fail("a system message is only allowed first");
    if (prev === null || prev === "system") {
      if (role !== "user" && role !== "system") fail(`the first turn must be user, got ${role}`);
      continue;
    }
    if (role === "user" && prev === "user") fail("two user messages in a row");
    if (role === "assistant" && prev === "assistant" && i !== prompt.length) fail("two assistant messages in a row");
    if (role === "tool" && prev !== "assistant" && prev !== "tool") fail("a tool message must follow an assistant turn");
  }
}
