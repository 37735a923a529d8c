// What a data-parallel trainer does with its process group: the data order is made of global micro-batches
// (per_device_train_batch_size × world size rows, as HF Trainer counts it), each rank reads its own contiguous
// part of every one, scales its loss by its share of the rows, and after the accumulation steps the gradients are
// summed over the ranks in place, so every rank takes the same optimizer step and the result is the one a single
// process gets with the whole global batch. Per micro-batch the loss, token counts and metrics of every rank are
// combined into the values one process would log; KTO's KL estimate is averaged over the ranks' KL rows before
// the clamp, as TRL gathers it. With one process every call is the identity. Not here: MPI itself (group.ts),
// the loop's control flow (src/train/trainer.ts).
import { getNumThreads, type Trainable } from "../core/native.ts";
import type { StepOutput } from "../train/objectives.ts";
import type { RefTable } from "../train/reference.ts";
import { bindingNote, defaultThreads, processGroup, type ProcessGroup } from "./group.ts";

/** One rank's part of a global micro-batch. */
export interface Shard {
  rows: number[];   // row indices this rank reads (may be empty when the last global batch has fewer rows than ranks)
  weight: number;   // rows.length / rows in the global micro-batch: the share of the global mean this rank's loss is
}

/** A rank's view of one micro-batch, to combine with the others'. */
export interface RankStep {
  out: StepOutput | null;   // null: this rank had no rows
  rows: number;
  numel: number;            // padded input_ids numel (flos)
  /** KTO: desirable / undesirable rows, the weights of the per-side metrics (TRL reports them as Σ / count). */
  sides?: { chosen: number; rejected: number };
}

export interface GlobalStep { loss: number; metrics: Record<string, number>; tokens: number; numel: number; rows: number }

/**
 * Rows [s_r, e_r) of one global micro-batch for rank r of W: contiguous parts of per-device size (the last global
 * batch of an epoch split as evenly as its rows allow).
 */
export function shardOf(global: readonly number[], rank: number, world: number): Shard {
  const n = global.length;
  const base = Math.floor(n / world), extra = n % world;
  const start = rank * base + Math.min(rank, extra);
  const len = base + (rank < extra ? 1 : 0);
  return { rows: global.slice(start, start + len), weight: n > 0 ? len / n : 0 };
}

/** The per-side key of a KTO metric ("rewards/chosen" → "chosen"), or null for a whole-batch key. */
function side(key: string): "chosen" | "rejected" | null {
  return /chosen/.test(key) ? "chosen" : /rejected/.test(key) ? "rejected" : null;
}

/**
 * One micro-batch's values over every rank, the same on every rank: the loss is Σ_r share_r · loss_r (the mean
 * over the global batch's rows; for SFT over its loss tokens); tokens and numel add up; each metric is the mean
 * over the ranks that have it, weighted by their rows (SFT: loss tokens) (by their desirable / undesirable rows for KTO's per-side keys, and KTO's
 * rewards/margins is then chosen − rejected of the combined values, as TRL computes it from its sums).
 */
export function combineSteps(parts: readonly RankStep[]): GlobalStep {
  const rows = parts.reduce((s, p) => s + p.rows, 0);
  let loss = 0, tokens = 0, numel = 0;
  const sum: Record<string, number> = {}, weight: Record<string, number> = {};
  const kto = parts.some((p) => p.sides);
  for (const p of parts) {
    tokens += p.out?.tokens ?? 0;
    numel += p.numel;
    if (!p.out || p.rows === 0) continue;
    const share = p.out.lossShare ?? p.rows / rows;   // SFT: the rank's share of the loss tokens
    loss += share * p.out.loss;
    for (const [k, v] of Object.entries(p.out.metrics)) {
      if (kto && k === "rewards/margins") continue;
      const s = kto ? side(k) : null;
      const w = s && p.sides ? p.sides[s] : p.out.lossShare ?? p.rows;
      if (w === 0) continue;
      sum[k] = (sum[k] ?? 0) + w * v;
      weight[k] = (weight[k] ?? 0) + w;
    }
  }
  const metrics: Record<string, number> = {};
  for (const k of Object.keys(sum)) metrics[k] = sum[k] / weight[k];
  if (kto && "rewards/chosen" in metrics && "rewards/rejected" in metrics) metrics["rewards/margins"] = metrics["rewards/chosen"] - metrics["rewards/rejected"];
  return { loss, metrics, tokens, numel, rows };
}

// JSON has no NaN or ±Infinity: they travel as strings, so a rank's non-finite loss stays non-finite everywhere.
const NON_FINITE = new Set(["NaN", "Infinity", "-Infinity"]);
const encode = (_k: string, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v);
const decode = (_k: string, v: unknown) => (typeof v === "string" && NON_FINITE.has(v) ? Number(v) : v);

/** Every rank's JSON-able value, in rank order, through two sums over the ranks (lengths, then UTF-16 codes). */
export function allGatherJson<T>(g: ProcessGroup, value: T): T[] {
  if (g.worldSize === 1) return [value];
  const text = JSON.stringify(value, encode);
  const lens = new Float64Array(g.worldSize);
  lens[g.rank] = text.length;
  g.allReduceSum(lens);
  const max = Math.max(...lens);
  const codes = new Float64Array(g.worldSize * max);
  for (let i = 0; i < text.length; i++) codes[g.rank * max + i] = text.charCodeAt(i);
  g.allReduceSum(codes);
  const out: T[] = [];
  for (let r = 0; r < g.worldSize; r++) {
    let s = "";
    for (let i = 0; i < lens[r]; i++) s += String.fromCharCode(codes[r * max + i]);
    out.push(JSON.parse(s, decode) as T);
  }
  return out;
}

/**
 * Where each decoder layer's parameters lie in a parameter set's flat buffer ("…layers.N.…" in the HF or PEFT
 * names): (L, 2) [start, end) per layer, and the ranges no layer covers, or null when some layer's parameters are
 * not contiguous (then the gradient is summed after the backward in one piece).
 */
export function layerLayout(t: Pick<Trainable, "table">, length: number): { ranges: Float64Array; rest: Float64Array } | null {
  const span = new Map<number, [number, number]>();
  for (const p of t.table) {
    const m = /\blayers\.(\d+)\./.exec(p.name);
    if (!m) continue;
    const l = Number(m[1]), s = span.get(l);
    span.set(l, s ? [Math.min(s[0], p.offset), Math.max(s[1], p.offset + p.size)] : [p.offset, p.offset + p.size]);
  }
  if (span.size === 0) return null;
  const L = Math.max(...span.keys()) + 1;
  const ranges = new Float64Array(2 * L);
  for (const [l, [a, b]] of span) { ranges[2 * l] = a; ranges[2 * l + 1] = b; }
  // no other parameter inside a layer's range, and no two layers' ranges overlapping
  for (const p of t.table) {
    const m = /\blayers\.(\d+)\./.exec(p.name);
    for (const [l, [a, b]] of span) if ((!m || Number(m[1]) !== l) && p.offset < b && p.offset + p.size > a) return null;
  }
  const sorted = [...span.values()].sort((x, y) => x[0] - y[0]);
  const rest: number[] = [];
  let at = 0;
  for (const [a, b] of sorted) { if (a > at) rest.push(at, a); at = Math.max(at, b); }
  if (length > at) rest.push(at, length);
  return { ranges, rest: Float64Array.from(rest) };
}

/** PREFTUNE_MPI_OVERLAP=0 sums the gradients after the backward instead of during it (same result). */
const overlapOn = () => process.env.PREFTUNE_MPI_OVERLAP !== "0";

/** The trainer's side of data parallelism; every method is a no-op (or the identity) with one process. */
export class DataParallel {
  constructor(readonly group: ProcessGroup) {}

  /** This process's group (MPI under mpirun with more than one rank, else one process). */
  static forRun(): DataParallel {
    return new DataParallel(processGroup());
  }

  /**
   * Native threads for a config's `threads` (0 = automatic): as given, else the cores this rank may use
   * (defaultThreads) when several ranks share the machine or a launcher bound it, else 0 (the core's default: all,
   * or OMP_NUM_THREADS when set, which is also left alone under mpirun).
   */
  threads(configured: number): number {
    if (configured > 0) return configured;
    if (process.env.OMP_NUM_THREADS) return 0;
    const t = defaultThreads(this.group);
    return this.group.localSize > 1 || this.world > 1 ? t : 0;
  }

  /** The line a multi-process run prints once (rank 0), or null with one process. */
  describe(perDevice: number, accumulation: number, threads: number): string | null {
    if (this.world === 1) return null;
    const g = this.group;
    const note = bindingNote(g);
    return `data parallel: ${g.worldSize} ranks (${g.localSize} on this machine), global batch ${perDevice} per rank × ${g.worldSize} ranks × ${accumulation} accumulation = ${perDevice * g.worldSize * accumulation} rows per step, ${threads || getNumThreads()} thread(s) per rank; rank 0 writes every file and log${note ? `\nnote: ${note}` : ""}`;
  }

  /** The end of a run: waits for every rank (none leaves while rank 0 still writes), then settles the group. */
  barrier(): void {
    if (this.world === 1) return;
    this.group.barrier();
    this.group.settle();
  }
  get world(): number { return this.group.worldSize; }
  get rank(): number { return this.group.rank; }
  get isMainProcess(): boolean { return this.group.isMainProcess; }

  /** This rank's part of a global micro-batch. */
  shard(global: readonly number[]): Shard {
    return this.world === 1 ? { rows: [...global], weight: 1 } : shardOf(global, this.rank, this.world);
  }

  /** One micro-batch's loss, metrics and counts over every rank (see combineSteps). */
  combine(part: RankStep): GlobalStep {
    if (this.world === 1) {
      const o = part.out!;
      return { loss: o.loss, metrics: o.metrics, tokens: o.tokens, numel: part.numel, rows: part.rows };
    }
    return combineSteps(allGatherJson(this.group, part));
  }

  /**
   * KTO's KL estimate over every rank's KL rows: Σ_r (rows_r · mean_r) / Σ_r rows_r, before the clamp at 0
   * (TRL gathers the per-rank estimates and averages them; with equal shards that is this). A rank without rows
   * still calls it, with rows 0.
   */
  klMean(localMean: number, rows: number): number {
    if (this.world === 1) return localMean;
    const b = Float64Array.of(rows > 0 ? rows * localMean : 0, rows);
    this.group.allReduceSum(b);
    return b[0] / b[1];
  }

  private layouts = new WeakMap<Trainable, ReturnType<typeof layerLayout>>();
  private overlapping: { rest: Float64Array } | null = null;
  /** Layers whose gradient sum the last step's backward started itself (0: summed after the backward). */
  layersOverlapped = 0;

  /**
   * Called before the backward of a step's last micro-batch (`global` its rows): that backward then starts
   * summing each layer's gradients over the ranks as soon as the layer is done, while it goes on with the layers
   * below. Only when every rank has rows in this micro-batch (so every rank runs a backward and calls the same
   * collectives in the same order) and the layers' parameters are contiguous.
   */
  startGradientSum(t: Trainable, global: readonly number[]): void {
    if (this.world === 1 || this.overlapping || !overlapOn() || global.length < this.world) return;
    const grads = t.grads;
    if (!this.layouts.has(t)) this.layouts.set(t, layerLayout(t, grads.length));
    const lay = this.layouts.get(t);
    if (!lay) return;
    this.group.overlapBegin(grads, lay.ranges);
    this.overlapping = { rest: lay.rest };
  }

  /**
   * Reference log-probs of every row (precompute_ref_log_probs), the work split over the ranks: `compute` gets
   * this rank's share of `batches` (every world-th, from the rank's own), the rows the others computed are
   * merged in (each row is computed by exactly one rank, so the sum over the ranks with zeros elsewhere is
   * exact; a row nobody computed stays NaN). `empty` is the table of a rank left without batches.
   */
  precompute<B>(batches: Iterable<B>, count: number, compute: (mine: Iterable<B>) => RefTable, empty: () => RefTable): RefTable {
    if (this.world === 1) return compute(batches);
    const world = this.world, rank = this.rank;
    const mine = function* () { let i = 0; for (const b of batches) if (i++ % world === rank) yield b; };
    const table = rank < count ? compute(mine()) : empty();
    const arrays = table.kind === "paired" ? [table.chosen, table.rejected] : [table.logps, ...(table.klLogps ? [table.klLogps] : [])];
    for (const a of arrays) {
      const have = new Float64Array(a.length);
      for (let i = 0; i < a.length; i++) if (Number.isNaN(a[i])) a[i] = 0; else have[i] = 1;
      this.group.allReduceSum(a);
      this.group.allReduceSum(have);
      for (let i = 0; i < a.length; i++) if (have[i] === 0) a[i] = Number.NaN;
    }
    return table;
  }

  /** Sums the accumulated gradients over the ranks, in place (each rank's loss was scaled by its share). */
  reduceGradients(t: Trainable): void {
    if (this.world === 1) return;
    if (this.overlapping) {
      const { rest } = this.overlapping;
      this.overlapping = null;
      this.layersOverlapped = this.group.overlapEnd(rest);
    } else {
      this.layersOverlapped = 0;
      this.group.allReduceSum(t.grads);
    }
  }

  /** Σ of a number over the ranks (SFT's loss tokens). */
  sum(x: number): number {
    if (this.world === 1) return x;
    const b = Float64Array.of(x);
    this.group.allReduceSum(b);
    return b[0];
  }

  /** True on every rank when any rank says true (a stop signal seen by one rank stops all at the same step). */
  any(flag: boolean): boolean {
    if (this.world === 1) return flag;
    const b = Float64Array.of(flag ? 1 : 0);
    this.group.allReduceSum(b);
    return b[0] > 0;
  }
}
