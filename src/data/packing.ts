// SFT packing (TRL SFTConfig `packing`, `packing_strategy`): tokenized rows grouped into packed rows of at
// most max_length tokens. A packed row is a list of segments; the collator puts every segment of a batch's
// packed rows in the batch as a row of its own. The native core runs a batch's rows end to end without
// padding, each row attending only to itself with positions from 0: exactly TRL's padding-free packing
// (position_ids restarting per sequence, no attention across sequences, each sequence's first token not a
// target). The batch size counts packed rows, as in TRL.
//   bfd        best-fit decreasing; a row longer than max_length keeps its first max_length tokens
//   bfd_split  best-fit decreasing; a longer row is cut into pieces of max_length (the last one shorter)
//   wrapped    all rows end to end, cut every max_length tokens: one segment per chunk, so attention crosses
//              example boundaries inside a chunk, as TRL's wrapped packing does
// As TRL (datasets' batched map), rows are packed in blocks of 1000 in dataset order. Not truncation of
// prompts (truncate.ts) and not the batch order (sampler.ts).
import { padRows, type CollateOptions, type UnpairedBatch } from "./collate.ts";
import { permutation, seededRandom } from "./sampler.ts";
import { maskedFromRow, rowFromMask } from "./sft.ts";
import type { TokenizedUnpaired } from "./tokenize.ts";

export type PackingStrategy = "bfd" | "bfd_split" | "wrapped";
export const PACKING_STRATEGIES: readonly PackingStrategy[] = ["bfd", "bfd_split", "wrapped"];

/** One packed row: segments that share a packed sequence of at most max_length tokens. */
export interface PackedRow {
  segments: TokenizedUnpaired[];
}

export interface PackOptions {
  max_length: number;                                 // SFTConfig max_length: the packed sequence length
  packing_strategy?: PackingStrategy | "bfd-requeue"; // default "bfd" (TRL's); "bfd-requeue" is bfd_split's old name
  blockSize?: number;                                 // rows packed together (datasets' map batch), default 1000
  shuffle_dataset?: boolean;                          // SFTConfig: shuffle the rows with `seed` before packing
  seed?: number;                                      // default 42 (TrainingArguments' seed)
}

export interface PackStats {
  strategy: PackingStrategy;
  rowsIn: number;
  packedRows: number;
  segments: number;
  tokens: number;            // tokens kept
  tokensCut: number;         // tokens bfd cut from rows longer than max_length
  fill: number;              // tokens / (packedRows · max_length)
}

export function checkPackingStrategy(s: unknown): PackingStrategy {
  if (s === undefined || s === null) return "bfd";
  if (s === "bfd-requeue") return "bfd_split";
  if (!PACKING_STRATEGIES.includes(s as PackingStrategy)) throw new Error(`packing_strategy must be one of ${PACKING_STRATEGIES.join(", ")}, got ${JSON.stringify(s)}`);
  return s as PackingStrategy;
}

const rowLength = (r: TokenizedUnpaired) => r.prompt_ids.length + r.completion_ids.length;

/** The first `n` tokens of a row (prompt first), its mask cut along. */
function headOf(r: TokenizedUnpaired, n: number): TokenizedUnpaired {
  const p = r.prompt_ids.length;
  if (n >= p + r.completion_ids.length) return r;
  if (n <= p) return { prompt_ids: r.prompt_ids.slice(0, n), completion_ids: [], label: r.label };
  const out: TokenizedUnpaired = { prompt_ids: r.prompt_ids, completion_ids: r.completion_ids.slice(0, n - p), label: r.label };
  if (r.completion_mask) out.completion_mask = r.completion_mask.slice(0, n - p);
  return out;
}

/** Pieces of a row of at most L tokens, in order, each a row of its own. */
function piecesOf(r: TokenizedUnpaired, L: number): TokenizedUnpaired[] {
  if (rowLength(r) <= L) return [r];
  const m = maskedFromRow(r);
  const out: TokenizedUnpaired[] = [];
  for (let a = 0; a < m.ids.length; a += L) out.push(rowFromMask({ ids: m.ids.slice(a, a + L), mask: m.mask.slice(a, a + L) }));
  return out;
}

/**
 * Best-fit decreasing over one block: rows sorted by length (longest first, ties in order), each put in the
 * open bin with the least room that still fits it, or in a new bin. A max tree over the room values 1..L
 * finds that bin in O(log L); bins with equal room are used first-opened first.
 */
function bestFitDecreasing(lengths: number[], L: number): number[][] {
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[b] - lengths[a] || a - b);
  let size = 1;
  while (size < L) size <<= 1;
  const tree = new Int32Array(2 * size);          // leaf size+r-1 holds r when some bin has room r, else 0
  const set = (room: number, on: boolean) => {
    let i = size + room - 1;
    tree[i] = on ? room : 0;
    for (i >>= 1; i >= 1; i >>= 1) tree[i] = Math.max(tree[2 * i], tree[2 * i + 1]);
  };
  const smallestRoomAtLeast = (need: number): number => {   // 0 when none
    if (tree[1] < need) return 0;
    let i = 1;
    while (i < size) i = tree[2 * i] >= need ? 2 * i : 2 * i + 1;
    return tree[i];
  };
  const byRoom = new Map<number, number[]>();      // room -> bins with that room, first-opened first
  const bins: number[][] = [];
  for (const idx of order) {
    const len = lengths[idx];
    if (len <= 0) continue;
    const room = smallestRoomAtLeast(len);
    let bin: number;
    if (room > 0) {
      const q = byRoom.get(room)!;
      bin = q.shift()!;
      if (q.length === 0) set(room, false);
    } else {
      bin = bins.length;
      bins.push([]);
    }
    bins[bin].push(idx);
    const left = (room > 0 ? room : L) - len;
    if (left > 0) {
      const q = byRoom.get(left);
      if (q && q.length) q.push(bin);
      else { byRoom.set(left, [bin]); set(left, true); }
    }
  }
  return bins;
}

/**
 * Packs tokenized SFT rows (prepareDataset's rows, method "sft"). Every row appears exactly once (bfd: cut to
 * max_length; bfd_split: in pieces; wrapped: in order across chunks); empty rows are left out.
 */
export function packRows(rows: TokenizedUnpaired[], o: PackOptions): { rows: PackedRow[]; stats: PackStats } {
  const L = o.max_length;
  if (!Number.isInteger(L) || L < 1) throw new Error(`packing needs max_length (a positive integer), got ${JSON.stringify(L)}`);
  const strategy = checkPackingStrategy(o.packing_strategy);
  const block = o.blockSize ?? 1000;
  if (!Number.isInteger(block) || block < 1) throw new Error(`blockSize must be a positive integer, got ${block}`);
  if (o.shuffle_dataset) rows = permutation(rows.length, seededRandom(o.seed ?? 42)).map((i) => rows[i]);
  const out: PackedRow[] = [];
  let tokensCut = 0;
  for (let s = 0; s < rows.length; s += block) {
    const chunk = rows.slice(s, s + block);
    if (strategy === "wrapped") {
      const ids: number[] = [], mask: number[] = [];
      for (const r of chunk) {
        const m = maskedFromRow(r);
        for (let k = 0; k < m.ids.length; k++) { ids.push(m.ids[k]); mask.push(m.mask[k]); }
      }
      for (let a = 0; a < ids.length; a += L) out.push({ segments: [rowFromMask({ ids: ids.slice(a, a + L), mask: mask.slice(a, a + L) })] });
      continue;
    }
    let items: TokenizedUnpaired[];
    if (strategy === "bfd") {
      items = chunk.map((r) => {
        const n = rowLength(r);
        if (n <= L) return r;
        tokensCut += n - L;
        return headOf(r, L);
      });
    } else {
      items = chunk.flatMap((r) => piecesOf(r, L));
    }
    for (const bin of bestFitDecreasing(items.map(rowLength), L)) out.push({ segments: bin.map((i) => items[i]) });
  }
  let tokens = 0, segments = 0;
  for (const p of out) for (const g of p.segments) { tokens += rowLength(g); segments++; }
  return {
    rows: out,
    stats: { strategy, rowsIn: rows.length, packedRows: out.length, segments, tokens, tokensCut, fill: out.length ? tokens / (out.length * L) : 0 },
  };
}

/** Tokens per packed row (for group_by_length and step planning). */
export function packedLengths(rows: PackedRow[]): Int32Array {
  return Int32Array.from(rows, (p) => p.segments.reduce((n, g) => n + rowLength(g), 0));
}

/**
 * A batch of packed rows for the SFT objective: every segment becomes a row of its own (B = the number of
 * segments), right-padded as usual; the core runs rows end to end without padding and without attention
 * between them. `rows` (per segment) says which packed row each batch row came from.
 */
export function collatePacked(rows: PackedRow[], opts: CollateOptions): UnpairedBatch & { rows: Int32Array } {
  const segs: { prompt: number[]; completion: number[]; mask?: number[] }[] = [];
  const from: number[] = [];
  rows.forEach((p, i) => {
    for (const g of p.segments) {
      segs.push({ prompt: g.prompt_ids, completion: g.completion_ids, mask: g.completion_mask });
      from.push(i);
    }
  });
  if (segs.length === 0) throw new Error("collatePacked: empty batch");
  const b = padRows(segs, opts);
  return { ...b, labels: segs.map(() => true), rows: Int32Array.from(from) };
}
