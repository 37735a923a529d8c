// SFT sequences as TRL's SFTTrainer builds them: language modelling on a whole `text` (EOS text appended,
// the tokenizer's special tokens) or a whole `messages` conversation (the chat template), the loss on every
// token or, with assistant_only_loss, on the assistant's tokens only. A sequence is ids plus a per-token loss
// mask; rowFromMask turns it into the TokenizedUnpaired row the collator and the SFT objective take.
// Not the prompt/completion tokenization (tokenize.ts) and not packing (packing.ts).
import type { Message } from "./formats.ts";
import { splitConversation, TemplateSplitError } from "./template.ts";
import type { Tokenizer } from "./tokenizer.ts";
import { encodeText, withEosText, type TokenizedUnpaired } from "./tokenize.ts";
import type { TruncationMode } from "./truncate.ts";

/** ids (n) and mask (n): 1 = a loss target. Position 0 never is one in practice: nothing predicts it. */
export interface MaskedIds {
  ids: number[];
  mask: number[];
}

/** How assistant tokens were found: the template's {% generation %} blocks, or rendering prefixes. */
export type AssistantMaskMethod = "generation" | "prefix";

interface TemplateExtra { tools?: unknown[]; kwargs?: Record<string, unknown> }

/** TRL's `text` format: the EOS text appended unless there, tokenized with the tokenizer's special tokens. */
export function sftTextIds(tok: Tokenizer, text: string): number[] {
  return encodeText(tok, withEosText(tok, text), true);
}

function commonPrefix(a: number[], b: number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/**
 * Character spans of `text` -> a token mask over `ids` (= the tokenization of `text` without special
 * tokens). As transformers' char_to_token: a token that holds any character of a span is in the mask. A
 * token boundary at character c is found by tokenizing text[0:c] and comparing with `ids`.
 */
export function charSpansToTokenMask(tok: Tokenizer, text: string, ids: number[], spans: [number, number][]): number[] {
  const mask = new Array<number>(ids.length).fill(0);
  // the first token that is not entirely before character c, and whether it starts before c (straddles it)
  const boundary = (c: number): { n: number; straddles: boolean } => {
    if (c <= 0) return { n: 0, straddles: false };
    if (c >= text.length) return { n: ids.length, straddles: false };
    const pre = tok.encode(text.slice(0, c), false);
    const n = commonPrefix(pre, ids);
    return { n, straddles: n < pre.length };
  };
  for (const [a, b] of spans) {
    if (b <= a) continue;
    const from = boundary(a).n;                    // the token holding character a
    const end = boundary(b);
    const to = Math.min(ids.length, end.n + (end.straddles ? 1 : 0));   // through the token holding b-1
    for (let k = from; k < to; k++) mask[k] = 1;
  }
  return mask;
}

/**
 * The assistant turns of a conversation as character spans of its whole rendering.
 * - The template has {% generation %} blocks: their spans (transformers' return_assistant_tokens_mask, what
 *   TRL's assistant_only_loss uses).
 * - Otherwise, per assistant turn i, the conversation up to turn i is split as the prompt/completion formats
 *   split it (messages[0:i] with the generation prompt, messages[0:i+1] whole; template.ts): the turn's span is
 *   what the whole adds after the generation prompt, so the turn header is not trained on and the turn's
 *   end-of-turn text (e.g. "<|im_end|>\n") is. The rendering up to turn i must be a prefix of the whole
 *   conversation's; templates that rewrite earlier turns once later ones follow (Qwen3's reasoning) fail here,
 *   naming the turn: give such models a template with {% generation %} blocks (chat_template).
 */
export function assistantCharSpans(tok: Tokenizer, messages: Message[], extra: TemplateExtra = {}): { text: string; spans: [number, number][]; method: AssistantMaskMethod } {
  const marked = tok.renderGenerationSpans?.(messages, extra) ?? null;
  if (marked) return { ...marked, method: "generation" };
  const text = tok.applyChatTemplate(messages, extra);
  const spans: [number, number][] = [];
  for (let i = 0; i < messages.length; i++) {
    if (messages[i].role !== "assistant") continue;
    if (i === 0) throw new TemplateSplitError("the conversation starts with an assistant turn, so it has no prompt to split it from");
    const s = splitConversation(tok, messages.slice(0, i), [[messages[i]]], extra);
    const upTo = s.prompt + s.completions[0];
    if (!text.startsWith(upTo)) {
      let at = 0;
      while (at < upTo.length && upTo.charCodeAt(at) === text.charCodeAt(at)) at++;
      throw new TemplateSplitError(
        `assistant_only_loss: the chat template (${tok.chatTemplateSource}) renders the conversation up to assistant turn ${i} ` +
        `differently from the start of the whole conversation (they differ at character ${at}), so that turn's tokens cannot be found. ` +
        "Use a chat template with {% generation %} … {% endgeneration %} around assistant text (chat_template), or set assistant_only_loss to false",
      );
    }
    spans.push([s.prompt.length, upTo.length]);
  }
  return { text, spans, method: "prefix" };
}

/**
 * TRL's `messages` format: the whole conversation rendered by the chat template and tokenized without
 * special tokens (the template writes them). assistantOnly: the mask covers assistant tokens only.
 */
export function sftMessages(tok: Tokenizer, messages: Message[], o: TemplateExtra & { assistantOnly?: boolean } = {}): MaskedIds & { method: AssistantMaskMethod | null } {
  const extra = { tools: o.tools, kwargs: o.kwargs };
  if (!o.assistantOnly) {
    const ids = tok.encode(tok.applyChatTemplate(messages, extra), false);
    return { ids, mask: new Array<number>(ids.length).fill(1), method: null };
  }
  const { text, spans, method } = assistantCharSpans(tok, messages, extra);
  const ids = tok.encode(text, false);
  return { ids, mask: charSpansToTokenMask(tok, text, ids, spans), method };
}

/** Whether a sequence has a loss target: a 1 past position 0 (position 0 is never predicted). */
export function hasTargets(mask: ArrayLike<number>): boolean {
  for (let k = 1; k < mask.length; k++) if (mask[k]) return true;
  return false;
}

/**
 * max_length for whole sequences (TRL's SFT truncation): keep_start keeps the first max_length tokens,
 * keep_end the last. A sequence left with no loss target is dropped (TRL drops fully masked examples).
 */
export function truncateMasked(m: MaskedIds, maxLength: number | null, mode: TruncationMode = "keep_start"): { row: MaskedIds; truncated: boolean } | { drop: "no_targets" } {
  let row = m, truncated = false;
  if (maxLength != null && m.ids.length > maxLength) {
    const a = mode === "keep_end" ? m.ids.length - maxLength : 0;
    row = { ids: m.ids.slice(a, a + maxLength), mask: m.mask.slice(a, a + maxLength) };
    truncated = true;
  }
  if (!hasTargets(row.mask)) return { drop: "no_targets" };
  return { row, truncated };
}

/**
 * A masked sequence as the row type the collator and the SFT objective take: prompt_ids = the tokens before
 * the first target, completion_ids = the rest, completion_mask only when the targets are not contiguous to
 * the end. A sequence whose every token is a target has prompt_ids = [] (the collator never counts column 0).
 */
export function rowFromMask(m: MaskedIds): TokenizedUnpaired {
  let f = 0;
  while (f < m.mask.length && !m.mask[f]) f++;
  const rest = m.mask.slice(f);
  const row: TokenizedUnpaired = { prompt_ids: m.ids.slice(0, f), completion_ids: m.ids.slice(f), label: true };
  if (rest.some((x) => !x)) row.completion_mask = rest.map((x) => (x ? 1 : 0));
  return row;
}

/** The inverse of rowFromMask: the whole sequence and its mask. */
export function maskedFromRow(r: TokenizedUnpaired): MaskedIds {
  const ids = [...r.prompt_ids, ...r.completion_ids];
  const mask = new Array<number>(ids.length).fill(0);
  const p = r.prompt_ids.length;
  for (let k = 0; k < r.completion_ids.length; k++) mask[p + k] = r.completion_mask ? (r.completion_mask[k] ? 1 : 0) : 1;
  return { ids, mask };
}
