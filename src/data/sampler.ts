// Seeded batch order: sequential or shuffled, optionally grouped by length in mega-batches (the idea of
// transformers' LengthGroupedSampler) so each batch pads less. Not data loading: it returns indices only.
import type { TokenizedPair, TokenizedUnpaired } from "./tokenize.ts";
import { mulberry32, seedState } from "../util/random.ts";

export interface BatchIndexOptions {
  batchSize: number;
  shuffle: boolean;
  seed: number;
  groupByLength?: boolean;
  lengths?: ArrayLike<number>;   // (n,) sequence lengths, required by groupByLength
  dropLast?: boolean;
}

/**
 * The project's PRNG (src/util/random.ts), with the seed mixed so that seeds 0, 1, 2... start far apart.
 * Seeds at or above 2^32 (seed + epoch of the largest seed) keep their high bits (seedState), as weight init does.
 */
export function seededRandom(seed: number): () => number {
  if (typeof seed !== "number" || Number.isNaN(seed)) throw new Error(`seed must be a number, got ${JSON.stringify(seed)}`);
  return mulberry32(seedState(seed) ^ 0x9e3779b9);
}

export function permutation(n: number, rand: () => number): number[] {
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = p[i]; p[i] = p[j]; p[j] = t;
  }
  return p;
}

/**
 * Batches of row indices for one epoch. The same (n, options) always gives the same batches; use
 * seed + epoch for a new order each epoch. With groupByLength, indices are sorted longest-first inside
 * mega-batches of min(50, n / (4·batchSize)) batches, and the batch holding the longest row goes first so
 * an out-of-memory shows up at step one.
 */
export function batchIndices(n: number, o: BatchIndexOptions): number[][] {
  if (!Number.isInteger(o.batchSize) || o.batchSize < 1) throw new Error(`batchSize must be a positive integer, got ${o.batchSize}`);
  if (!Number.isInteger(n) || n < 0) throw new Error(`n must be a non-negative integer, got ${n}`);
  const order = o.shuffle ? permutation(n, seededRandom(o.seed)) : Array.from({ length: n }, (_, i) => i);
  if (o.groupByLength) {
    const L = o.lengths;
    if (!L || L.length !== n) throw new Error(`groupByLength needs lengths for all ${n} rows, got ${L ? L.length : "none"}`);
    const mega = Math.max(1, Math.min(50, Math.floor(n / (o.batchSize * 4)))) * o.batchSize;
    for (let s = 0; s < n; s += mega) {
      const chunk = order.slice(s, s + mega).sort((a, b) => L[b] - L[a] || a - b);
      for (let k = 0; k < chunk.length; k++) order[s + k] = chunk[k];
    }
  }
  const batches: number[][] = [];
  for (let s = 0; s < n; s += o.batchSize) {
    const b = order.slice(s, s + o.batchSize);
    if (b.length < o.batchSize && o.dropLast) break;
    batches.push(b);
  }
  if (o.groupByLength && batches.length > 1) {
    const L = o.lengths!;
    let best = 0, bestLen = -1;
    batches.forEach((b, i) => { for (const j of b) if (L[j] > bestLen) { bestLen = L[j]; best = i; } });
    [batches[0], batches[best]] = [batches[best], batches[0]];
  }
  return batches;
}

/** Per-row lengths for groupByLength: the longer of prompt+chosen and prompt+rejected. */
export function pairLengths(rows: TokenizedPair[]): Int32Array {
  return Int32Array.from(rows, (r) => r.prompt_ids.length + Math.max(r.chosen_ids.length, r.rejected_ids.length));
}

export function unpairedLengths(rows: TokenizedUnpaired[]): Int32Array {
  return Int32Array.from(rows, (r) => r.prompt_ids.length + r.completion_ids.length);
}
