// Bounded work on untrusted text: before a row is rendered and tokenized, each text field is cut on the
// side truncation drops, so a 5 MB answer under max_length 64 costs milliseconds instead of a minute and
// gigabytes. The cut keeps TRL's result for every row: the kept side holds enough characters to make at least
// `tokens + MARGIN_TOKENS` tokens on its own (checked by tokenizing it, growing the piece until it does), so
// the tokens truncation keeps all come from text that is still there, MARGIN_TOKENS tokens away from the cut.
// The far end keeps its last (or first) KEEP_OTHER_END characters, so a text still starts and ends as before
// (the BOS a prompt starts with, the EOS a completion ends with, a template's startswith/endswith checks).
// Not truncation itself (truncate.ts, sft.ts truncateMasked): rows are still truncated the usual way after.
import type { Message, Text } from "./formats.ts";
import type { Tokenizer } from "./tokenizer.ts";

/** Tokens of slack between the last kept token and the cut. */
export const MARGIN_TOKENS = 64;
/** Characters kept at the end truncation drops. */
export const KEEP_OTHER_END = 1024;

/** The side of a text truncation keeps: its first tokens ("start") or its last ("end"). */
export type Side = "start" | "end";

/** An index moved off the middle of a surrogate pair (towards `side`'s kept text growing). */
function safeIndex(s: string, i: number): number {
  const c = s.charCodeAt(i);
  return c >= 0xdc00 && c <= 0xdfff ? i + 1 : i;
}

export class TextBudget {
  /** Characters tried first per token needed; doubled until the piece holds enough tokens. */
  private readonly charsPerToken: number;

  constructor(private readonly tok: Tokenizer) {
    this.charsPerToken = Math.max(2, Math.min(tok.maxTokenChars ?? 6, 6));
  }

  /** Whether `piece` (text kept by a cut) makes at least `need` tokens on its own. */
  private enough(piece: string, need: number): boolean {
    return this.tok.encode(piece, false).length >= need;
  }

  /**
   * `s` cut so that truncation to its first (side "start") or last ("end") `tokens` tokens gives the same
   * tokens as for the whole of `s`; `s` itself when it is short enough.
   */
  cutString(s: string, side: Side, tokens: number): string {
    const need = tokens + MARGIN_TOKENS;
    for (let n = need * this.charsPerToken; ; n *= 2) {
      if (s.length <= n + 2 * KEEP_OTHER_END) return s;
      if (side === "start") {
        const a = safeIndex(s, n), b = safeIndex(s, s.length - KEEP_OTHER_END);
        if (this.enough(s.slice(0, a), need)) return s.slice(0, a) + s.slice(b);
      } else {
        const a = safeIndex(s, KEEP_OTHER_END), b = safeIndex(s, s.length - n);
        if (this.enough(s.slice(b), need)) return s.slice(0, a) + s.slice(b);
      }
    }
  }

  /**
   * Messages whose contents are cut the same way: walking from the kept side, contents are kept whole until
   * the budget is spent; the message where it runs out is cut, and every message past it keeps only the first
   * and last KEEP_OTHER_END characters of its content. Roles and every other field are left alone.
   */
  cutMessages(ms: Message[], side: Side, tokens: number): Message[] {
    const need = tokens + MARGIN_TOKENS;
    const total = ms.reduce((a, m) => a + (typeof m.content === "string" ? m.content.length : 0), 0);
    const order = ms.map((_, i) => (side === "start" ? i : ms.length - 1 - i));
    for (let n = need * this.charsPerToken; ; n *= 2) {
      if (total <= n + 2 * KEEP_OTHER_END * ms.length) return ms;
      const out = ms.slice();
      const kept: string[] = [];
      let left = n;
      for (const i of order) {
        const c = ms[i].content;
        if (typeof c !== "string") continue;
        if (left >= c.length) { kept.push(c); left -= c.length; continue; }
        if (c.length <= left + 2 * KEEP_OTHER_END) { if (left > 0) kept.push(c); left = 0; continue; }
        const keep = Math.max(left, KEEP_OTHER_END);
        let piece: string, content: string;
        if (side === "start") {
          const a = safeIndex(c, keep), b = safeIndex(c, c.length - KEEP_OTHER_END);
          piece = c.slice(0, a); content = piece + c.slice(b);
        } else {
          const a = safeIndex(c, KEEP_OTHER_END), b = safeIndex(c, c.length - keep);
          piece = c.slice(b); content = c.slice(0, a) + piece;
        }
        if (left > 0) kept.push(piece);
        left = 0;
        out[i] = { ...ms[i], content };
      }
      const joined = side === "start" ? kept.join("\n") : kept.reverse().join("\n");
      if (this.enough(joined, need)) return out;
    }
  }

  /** A prompt, completion or text field: a string or a list of messages. */
  cut<T extends Text>(t: T, side: Side, tokens: number | null): T {
    if (tokens == null) return t;
    return (typeof t === "string" ? this.cutString(t, side, tokens) : this.cutMessages(t as Message[], side, tokens)) as T;
  }
}
