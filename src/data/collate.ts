// Batching of tokenized rows into right-padded TokenBatches, as TRL's DataCollatorForPreference and
// DataCollatorForUnpairedPreference do, with label-aligned completion masks (1 where token t is a completion
// token, so the same positions as TRL's completion_mask; an SFT row's completion_mask can clear some). Column
// 0 is never in a mask: nothing predicts a row's first token (TRL's shifted labels; padding-free packing masks
// each sequence's first token the same way). Not truncation: rows must already fit.
import type { TokenBatch } from "../core/types.ts";
import type { TokenizedPair, TokenizedUnpaired } from "./tokenize.ts";

export type { TokenizedPair, TokenizedUnpaired };

export interface CollateOptions {
  padTokenId: number;
  padToMultipleOf?: number;
}

/** The largest pad_to_multiple_of taken: tensor-core friendly values are 8 to 128; beyond this is a typo. */
export const MAX_PAD_TO_MULTIPLE_OF = 65536;

/**
 * Checks pad_to_multiple_of (TRL's collator key) before anything is allocated: null/undefined (no rounding) or
 * a whole number from 1 to MAX_PAD_TO_MULTIPLE_OF. Every batch is padded to a multiple of it, so 1e9 would
 * ask for gigabytes per batch.
 */
export function checkPadToMultipleOf(v: unknown, field = "pad_to_multiple_of"): number | undefined {
  if (v === null || v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > MAX_PAD_TO_MULTIPLE_OF) {
    throw new Error(`${field} must be a whole number from 1 to ${MAX_PAD_TO_MULTIPLE_OF} (usually 8 or 64), or null, got ${JSON.stringify(v) ?? String(v)}: every batch is padded to a multiple of it`);
  }
  return v;
}

export interface PairBatch {
  batch: TokenBatch;            // 2B rows: 0..B-1 prompt+chosen, B..2B-1 prompt+rejected
  completionMask: Uint8Array;   // (2B, T)
}

export interface UnpairedBatch {
  batch: TokenBatch;            // B rows: prompt+completion
  completionMask: Uint8Array;   // (B, T)
  labels: boolean[];            // (B,) true = desirable
  kl?: { batch: TokenBatch; completionMask: Uint8Array };   // (B, T_kl) mismatched prompt/completion pairs
}

/** Right-pads (prompt, completion) sequences into one batch. */
export function padRows(seqs: { prompt: number[]; completion: number[]; mask?: number[] }[], o: CollateOptions): { batch: TokenBatch; completionMask: Uint8Array } {
  const B = seqs.length;
  let T = 0;
  for (const s of seqs) T = Math.max(T, s.prompt.length + s.completion.length);
  const m = checkPadToMultipleOf(o.padToMultipleOf);
  if (m != null) T = Math.ceil(T / m) * m;
  if (!Number.isSafeInteger(B * T) || B * T > 2 ** 31 - 1) {
    throw new Error(`a batch of ${B} rows × ${T} tokens is too large to allocate; lower the batch size or max_length`);
  }
  const ids = new Int32Array(B * T).fill(o.padTokenId);   // (B, T)
  const lengths = new Int32Array(B);                       // (B,)
  const completionMask = new Uint8Array(B * T);            // (B, T)
  seqs.forEach((s, b) => {
    const row = b * T;
    ids.set(s.prompt, row);
    ids.set(s.completion, row + s.prompt.length);
    if (s.mask) {
      if (s.mask.length !== s.completion.length) throw new Error(`completion_mask has ${s.mask.length} entries for ${s.completion.length} completion tokens (row ${b})`);
      for (let k = 0; k < s.mask.length; k++) completionMask[row + s.prompt.length + k] = s.mask[k] ? 1 : 0;
    } else {
      completionMask.fill(1, row + s.prompt.length, row + s.prompt.length + s.completion.length);
    }
    completionMask[row] = 0;   // column 0: no logits predict it
    lengths[b] = s.prompt.length + s.completion.length;
  });
  return { batch: { ids, lengths, B, T }, completionMask };
}

/** Chosen rows first, then rejected rows, one common T (TRL's concatenated 2B forward). */
export function collatePairs(rows: TokenizedPair[], opts: CollateOptions): PairBatch {
  if (rows.length === 0) throw new Error("collatePairs: empty batch");
  return padRows([
    ...rows.map((r) => ({ prompt: r.prompt_ids, completion: r.chosen_ids })),
    ...rows.map((r) => ({ prompt: r.prompt_ids, completion: r.rejected_ids })),
  ], opts);
}

/**
 * TRL's KTO KL pairs, fixed at data-prep time for every row (TRL's _get_kl_dataset, mapped in chunks of the batch
 * size): within a chunk, row i gets row i−1's completion and the first row the last's; a chunk of one row (the
 * last of an odd-sized set) gets its own. Rows that already have kl_completion_ids keep them. The KL term and
 * precomputed reference KL log-probs (reference.ts) are per row, so the collator never picks a pairing itself.
 */
export function withKlCompletions(rows: TokenizedUnpaired[], chunk: number): TokenizedUnpaired[] {
  const out = rows.map((r) => ({ ...r }));
  for (let s = 0; s < out.length; s += chunk) {
    const n = Math.min(chunk, out.length - s);
    for (let i = 0; i < n; i++) out[s + i].kl_completion_ids ??= rows[s + ((i + n - 1) % n)].completion_ids;
  }
  return out;
}

/**
 * Unpaired (KTO) rows. With `kl`, also the KL rows TRL uses to estimate the reference point: each prompt with its
 * row's kl_completion_ids, which withKlCompletions fixes at data prep (the collator never picks a pairing itself).
 */
export function collateUnpaired(rows: TokenizedUnpaired[], opts: CollateOptions & { kl?: boolean }): UnpairedBatch {
  if (rows.length === 0) throw new Error("collateUnpaired: empty batch");
  const main = padRows(rows.map((r) => ({ prompt: r.prompt_ids, completion: r.completion_ids, mask: r.completion_mask })), opts);
  const out: UnpairedBatch = { ...main, labels: rows.map((r) => r.label) };
  if (opts.kl) {
    const missing = rows.findIndex((r) => !r.kl_completion_ids);
    if (missing >= 0) throw new Error(`collateUnpaired: row ${missing} of the batch has no kl_completion_ids; KTO's KL rows are fixed at data prep (withKlCompletions(rows, batchSize)), as TRL's _get_kl_dataset does`);
    out.kl = padRows(rows.map((r) => ({ prompt: r.prompt_ids, completion: r.kl_completion_ids! })), opts);
  }
  return out;
}
