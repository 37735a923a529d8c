// Truncation of tokenized rows to max_prompt_length / max_completion_length / max_length, never leaving an
// empty completion (TRL issue #6548: ORPO/CPO's negative slice bound). Rows that cannot fit are dropped with
// a reason the caller counts. Not tokenization, and not the collator: rows leave here already fitting.
import type { TokenizedPair, TokenizedUnpaired } from "./tokenize.ts";

export type TruncationMode = "keep_start" | "keep_end";

export interface TruncationOptions {
  max_length: number | null;              // prompt + completion, per sequence
  max_prompt_length: number | null;       // classic DPO: the prompt keeps its last tokens
  max_completion_length: number | null;   // classic DPO: each completion keeps its first tokens
  truncation_mode: TruncationMode;
}

export type DropReason = "prompt_too_long" | "completion_too_long" | "empty_completion";

export type Truncated<T> = { row: T; truncated: boolean; drop?: undefined } | { drop: DropReason; row?: undefined };

function positiveOrNull(name: string, v: unknown): number | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer or null, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * Checks and fills in the truncation options (max_length defaults to 1024, truncation_mode to keep_start).
 * max_seq_length, SFTConfig's deprecated name for max_length, wins when set, as it did in TRL.
 */
export function truncationOptions(o: Partial<TruncationOptions> & { max_seq_length?: number | null }): TruncationOptions {
  const mode = o.truncation_mode ?? "keep_start";
  if (mode !== "keep_start" && mode !== "keep_end") throw new Error(`truncation_mode must be "keep_start" or "keep_end", got ${JSON.stringify(mode)}`);
  const maxLength = o.max_seq_length != null ? positiveOrNull("max_seq_length", o.max_seq_length)
    : o.max_length === undefined ? 1024 : positiveOrNull("max_length", o.max_length);
  return {
    max_length: maxLength,
    max_prompt_length: positiveOrNull("max_prompt_length", o.max_prompt_length),
    max_completion_length: positiveOrNull("max_completion_length", o.max_completion_length),
    truncation_mode: mode,
  };
}

/**
 * The shared rule for one prompt and its completions (chosen+rejected, or one completion):
 * 1. max_prompt_length: the prompt keeps its last tokens (they hold the turn header the completion follows).
 * 2. max_completion_length: each completion keeps its first tokens.
 * 3. max_length, keep_start (TRL's default): a prompt of max_length tokens or more drops the row (current
 *    DPO/KTO); otherwise each completion is cut to max_length − len(prompt), independently (the fix for
 *    ORPO/CPO's shared negative bound).
 *    keep_end: the prompt loses its first tokens until prompt + longest completion fits; when the longest
 *    completion alone fills max_length the row is dropped, since no prompt token would be left.
 * 4. Any empty completion drops the row.
 */
function fit(prompt: number[], completions: number[][], o: TruncationOptions): { prompt: number[]; completions: number[][]; truncated: boolean } | DropReason {
  let p = prompt;
  let cs = completions;
  if (o.max_prompt_length != null && p.length > o.max_prompt_length) p = p.slice(p.length - o.max_prompt_length);
  if (o.max_completion_length != null) {
    const m = o.max_completion_length;
    if (cs.some((c) => c.length > m)) cs = cs.map((c) => (c.length > m ? c.slice(0, m) : c));
  }
  if (o.max_length != null) {
    const L = o.max_length;
    if (o.truncation_mode === "keep_start") {
      if (p.length >= L) return "prompt_too_long";
      const room = L - p.length;
      if (cs.some((c) => c.length > room)) cs = cs.map((c) => (c.length > room ? c.slice(0, room) : c));
    } else {
      const longest = Math.max(...cs.map((c) => c.length));
      if (longest >= L) return "completion_too_long";
      if (p.length + longest > L) p = p.slice(p.length + longest - L);
    }
  }
  if (cs.some((c) => c.length === 0)) return "empty_completion";
  return { prompt: p, completions: cs, truncated: p !== prompt || cs !== completions };
}

export function truncatePair(row: TokenizedPair, o: TruncationOptions): Truncated<TokenizedPair> {
  const r = fit(row.prompt_ids, [row.chosen_ids, row.rejected_ids], o);
  if (typeof r === "string") return { drop: r };
  return { row: { prompt_ids: r.prompt, chosen_ids: r.completions[0], rejected_ids: r.completions[1] }, truncated: r.truncated };
}

export function truncateUnpaired(row: TokenizedUnpaired, o: TruncationOptions): Truncated<TokenizedUnpaired> {
  const r = fit(row.prompt_ids, [row.completion_ids], o);
  if (typeof r === "string") return { drop: r };
  return { row: { ...row, prompt_ids: r.prompt, completion_ids: r.completions[0] }, truncated: r.truncated };
}
