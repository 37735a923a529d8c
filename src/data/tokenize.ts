// Text -> token ids with TRL's BOS/EOS rules, which differ by trainer (src/train/methods.ts names each method's):
//   orpo/cpo/simpo: ORPO/CPO's build_tokenized_answer + add_bos_token_if_needed + add_eos_token_if_needed;
//   dpo/ipo/kto/sft: current DPO/KTO: joint tokenization of prompt+completion, then slicing.
// Not truncation (truncate.ts) and not templates (template.ts): inputs are already strings.
import type { Tokenizer } from "./tokenizer.ts";

import { METHODS, methodSpec, type Method } from "../train/methods.ts";

export { METHODS, type Method };

/** Methods tokenized with the ORPO/CPO rules (the method registry says which); the others use the current DPO/KTO rules. */
export function usesOrpoRules(method: Method): boolean {
  return methodSpec(method).tokenization === "orpo";
}

export interface TokenizedPair {
  prompt_ids: number[];
  chosen_ids: number[];
  rejected_ids: number[];
}

export interface TokenizedUnpaired {
  prompt_ids: number[];
  completion_ids: number[];
  label: boolean;
  /**
   * SFT only: 1 where a completion token is trained on, 0 where not (same length as completion_ids), for
   * masks that are not one contiguous completion (assistant_only_loss over several turns, packed chunks).
   * Absent: every completion token counts. Prompt tokens never count.
   */
  completion_mask?: number[];
  /** Optional precomputed KL completion (TRL's KL_completion_ids); the collator rotates the batch otherwise. */
  kl_completion_ids?: number[];
}

export class TokenizeError extends Error {}

export interface TokenizeInfo {
  /** The prompt's last token merged with the completion's first, so the split moved back (counted in stats). */
  merged: boolean;
}

function commonPrefix(a: number[], b: number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/**
 * ORPO/CPO's build_tokenized_answer: tokenize prompt+answer jointly (no special tokens) and split where the
 * prompt's own tokens end, one token earlier when the last prompt token merged with the answer.
 */
export function buildTokenizedAnswer(tok: Tokenizer, prompt: string, answer: string, promptIds?: number[]) {
  const full = tok.encode(prompt + answer, false);
  const p = promptIds ?? tok.encode(prompt, false);
  if (full.length < p.length) {
    throw new TokenizeError(`prompt+answer tokenizes to fewer tokens (${full.length}) than the prompt alone (${p.length})`);
  }
  let start = p.length;
  if (commonPrefix(p, full) < start) start -= 1;
  return { prompt_ids: full.slice(0, start), answer_ids: full.slice(start), merged: start < p.length };
}

/**
 * ORPO/CPO tokenization of one pair. TRL keeps separate chosen and rejected prompt ids (they may differ in
 * the merged last token); a TokenizedPair has one prompt, so it is their common prefix and the differing
 * token(s) open that side's completion. The full sequences are TRL's, token for token.
 */
export function tokenizePairOrpo(tok: Tokenizer, prompt: string, chosen: string, rejected: string): TokenizedPair & TokenizeInfo {
  const p = tok.encode(prompt, false);
  const c = buildTokenizedAnswer(tok, prompt, chosen, p);
  const r = buildTokenizedAnswer(tok, prompt, rejected, p);
  const diff = Math.abs(c.prompt_ids.length - r.prompt_ids.length);
  let diffTokens = 0;
  for (let i = 0; i < Math.min(c.prompt_ids.length, r.prompt_ids.length); i++) if (c.prompt_ids[i] !== r.prompt_ids[i]) diffTokens++;
  if (diffTokens > 1 || diff > 1) {
    throw new TokenizeError("the chosen and rejected prompts tokenize differently beyond the last token (ORPO/CPO allow one merged token)");
  }
  const bos = tok.bosTokenId, eos = tok.eosTokenId;
  const withBos = (ids: number[]) => (bos != null && (ids.length === 0 || ids[0] !== bos) ? [bos, ...ids] : ids);
  const withEos = (ids: number[]) => (eos != null && (ids.length === 0 || ids[ids.length - 1] !== eos) ? [...ids, eos] : ids);
  const cp = withBos(c.prompt_ids), rp = withBos(r.prompt_ids);
  const ca = withEos(c.answer_ids), ra = withEos(r.answer_ids);
  const n = commonPrefix(cp, rp);
  return {
    prompt_ids: cp.slice(0, n),
    chosen_ids: [...cp.slice(n), ...ca],
    rejected_ids: [...rp.slice(n), ...ra],
    merged: c.merged || r.merged || diff > 0,
  };
}

/** Standard (plain string) format under the DPO/KTO rules: the EOS string is appended unless already there. */
export function withEosText(tok: Tokenizer, completion: string): string {
  const eos = tok.eosToken;
  return eos && !completion.endsWith(eos) ? completion + eos : completion;
}

/**
 * One text as the DPO/KTO/SFT rules tokenize it: standard text with the tokenizer's special tokens (a BOS
 * the text already starts with is not doubled: TRL issue #1073 family), template-rendered text without.
 */
export function encodeText(tok: Tokenizer, text: string, standard: boolean): number[] {
  const ids = tok.encode(text, standard);
  const bos = tok.bosTokenId;
  return standard && bos != null && ids.length > 1 && ids[0] === bos && ids[1] === bos ? ids.slice(1) : ids;
}

/**
 * Current DPO/KTO tokenization: the prompt and each prompt+completion are tokenized whole (with the
 * tokenizer's special tokens for standard text, without for template-rendered text, whose BOS the template
 * wrote) and the completions are what follows the prompt. Where the prompt's tokens are not a prefix of the
 * whole (a merge across the boundary) TRL warns and slices anyway; here the prompt becomes the common token
 * prefix, so each sequence is exactly the whole text's tokenization.
 * `completions` must already carry the EOS text for standard format (withEosText).
 */
export function tokenizeJoint(tok: Tokenizer, prompt: string, completions: string[], standard: boolean): { prompt_ids: number[]; completions: number[][]; merged: boolean } {
  const p = encodeText(tok, prompt, standard);
  const full = completions.map((c) => encodeText(tok, prompt + c, standard));
  let n = p.length;
  for (const f of full) n = Math.min(n, commonPrefix(p, f));
  return { prompt_ids: p.slice(0, n), completions: full.map((f) => f.slice(n)), merged: n < p.length };
}
