// From label-aligned per-token stats (src/core/types.ts TokenStats) to the per-sequence numbers the
// preference losses take, the way back (d loss / d token logps for the native backward), the token-mean
// NLL of TRL's nn.CrossEntropyLoss, and the token-level metrics (logits/*, entropy, mean_token_accuracy).
// Not a loss and no model plumbing: masks are built by the caller (data collation), never guessed here.
//
// Convention: an (N, T) mask entry (n, t) is about token t of row n as predicted from tokens < t, so
// column 0 and padding are always 0. TRL's `mask[:, 1:]` after the shift is our mask minus column 0.

import type { TokenStats } from "../core/types.ts";

/** Token-level values; tests pass Float64Array so finite differences are exact to float64. */
export type Floats = Float32Array | Float64Array;

function checkTokens(fn: string, field: string, a: ArrayLike<number>, N: number, T: number): void {
  if (!Number.isInteger(N) || !Number.isInteger(T) || N < 0 || T < 0) {
    throw new Error(`${fn}: N = ${N}, T = ${T} must be non-negative integers`);
  }
  if (a.length !== N * T) {
    throw new Error(`${fn}: "${field}" has ${a.length} entries, expected N*T = ${N}*${T} = ${N * T} (row-major (N, T))`);
  }
}

export interface SequenceStats {
  sum: Float64Array;   // (N,) Σ_t mask·logp — DPO, KTO, CPO sigmoid/hinge
  count: Float64Array; // (N,) Σ_t mask, unclamped (0 for an empty completion)
  avg: Float64Array;   // (N,) sum / max(count, 1) — ORPO, IPO, SimPO, CPO ipo/simpo
}

/**
 * Per-sequence sums, token counts and averages of masked token log-probs.
 * The average divides by max(count, 1), as TRL's DPO does for ipo/sigmoid_norm (`.clamp(min=1)`).
 * TRL's ORPO/CPO divide by the raw count and get NaN (0/0) on an empty completion; we give 0 instead,
 * and orpoLoss guards the avg = 0 case itself.
 */
export function sequenceStats(logps: Floats, mask: Uint8Array, N: number, T: number): SequenceStats {
  checkTokens("sequenceStats", "logps", logps, N, T);
  checkTokens("sequenceStats", "mask", mask, N, T);
  const sum = new Float64Array(N), count = new Float64Array(N), avg = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    let s = 0, c = 0;
    for (let t = n * T, end = t + T; t < end; t++) {
      if (mask[t]) { s += logps[t]; c++; }
    }
    sum[n] = s; count[n] = c; avg[n] = s / Math.max(c, 1);
  }
  return { sum, count, avg };
}

/**
 * d loss / d logps (N, T) implied by d loss / d sum (N,) and d loss / d avg (N,); either may be null.
 * Entry (n, t) = mask ? dSum[n] + dAvg[n] / max(count[n], 1) : 0. `count` is sequenceStats' raw count.
 * ADDS into `out` when given (so several terms, e.g. ORPO's odds term and NLL, share one buffer);
 * otherwise returns a fresh zero-based array.
 */
export function tokenGrads(
  dSum: Float64Array | null, dAvg: Float64Array | null, mask: Uint8Array, count: Float64Array,
  N: number, T: number, out?: Float32Array,
): Float32Array {
  checkTokens("tokenGrads", "mask", mask, N, T);
  if (dSum && dSum.length !== N) throw new Error(`tokenGrads: dSum has ${dSum.length} entries, expected N = ${N}`);
  if (dAvg && dAvg.length !== N) throw new Error(`tokenGrads: dAvg has ${dAvg.length} entries, expected N = ${N}`);
  if (dAvg && count.length !== N) throw new Error(`tokenGrads: count has ${count.length} entries, expected N = ${N}`);
  const g = out ?? new Float32Array(N * T);
  checkTokens("tokenGrads", "out", g, N, T);
  for (let n = 0; n < N; n++) {
    const d = (dSum ? dSum[n] : 0) + (dAvg ? dAvg[n] / Math.max(count[n], 1) : 0);
    if (d === 0) continue;
    for (let t = n * T, end = t + T; t < end; t++) if (mask[t]) g[t] += d;
  }
  return g;
}

/**
 * Label-aligned mask of every real token but the first: 1 at t in [1, lengths[n]). This is the set
 * TRL's ORPO NLL covers (labels = input_ids where attention_mask == 1, then shifted): prompt + completion.
 */
export function sequenceMask(lengths: ArrayLike<number>, N: number, T: number): Uint8Array {
  if (lengths.length !== N) throw new Error(`sequenceMask: lengths has ${lengths.length} entries, expected N = ${N}`);
  const m = new Uint8Array(N * T);
  for (let n = 0; n < N; n++) {
    const L = lengths[n];
    if (!Number.isInteger(L) || L < 0 || L > T) throw new Error(`sequenceMask: lengths[${n}] = ${L} is outside [0, T = ${T}]`);
    m.fill(1, n * T + 1, n * T + Math.max(L, 1));
  }
  return m;
}

/**
 * Token-level mean of −logp over every masked token of the given rows: TRL's nn.CrossEntropyLoss()
 * (mean reduction over non-ignored labels across the whole batch, not a per-sequence mean).
 * Which tokens is the caller's choice, and it matters:
 *   ORPO: the whole chosen sequence, prompt included — sequenceMask(lengths of the chosen rows).
 *   CPO, DPO "sft", SFT: chosen completion tokens only — the completion mask of the chosen rows.
 * With no masked token torch gives NaN; we give nll = 0 (and a zero gradient) so one degenerate batch
 * cannot poison the run.
 */
export function nllMean(logps: Floats, mask: Uint8Array, N: number, T: number): { nll: number; tokens: number } {
  checkTokens("nllMean", "logps", logps, N, T);
  checkTokens("nllMean", "mask", mask, N, T);
  let s = 0, c = 0;
  for (let i = 0; i < N * T; i++) if (mask[i]) { s -= logps[i]; c++; }
  return { nll: c > 0 ? s / c : 0, tokens: c };
}

/** d (dNll · nllMean) / d logps: −dNll / tokens on masked entries, ADDED into `out` when given. */
export function nllTokenGrads(dNll: number, mask: Uint8Array, N: number, T: number, out?: Float32Array): Float32Array {
  checkTokens("nllTokenGrads", "mask", mask, N, T);
  const g = out ?? new Float32Array(N * T);
  checkTokens("nllTokenGrads", "out", g, N, T);
  let c = 0;
  for (let i = 0; i < N * T; i++) if (mask[i]) c++;
  if (c === 0 || dNll === 0) return g;
  const d = -dNll / c;
  for (let i = 0; i < N * T; i++) if (mask[i]) g[i] += d;
  return g;
}

/** Σ mask·values / Σ mask over (N, T); `tokens` = Σ mask. mean = 0 when there is no token (TRL's choice). */
export function maskedTokenMean(values: Floats | Uint8Array, mask: Uint8Array, N: number, T: number): { mean: number; tokens: number } {
  checkTokens("maskedTokenMean", "values", values, N, T);
  checkTokens("maskedTokenMean", "mask", mask, N, T);
  let s = 0, c = 0;
  for (let i = 0; i < N * T; i++) if (mask[i]) { s += values[i]; c++; }
  return { mean: c > 0 ? s / c : 0, tokens: c };
}

function rows<A extends Floats | Uint8Array>(a: A, from: number, to: number, T: number): A {
  return a.subarray(from * T, to * T) as A;
}

/**
 * Token metrics of current TRL DPO for a concatenated batch: rows [0, B) chosen, [B, 2B) rejected.
 *   logits/chosen|rejected: Σ over completion tokens of the vocab-mean logit / completion tokens (0 if none)
 *   entropy:                token-weighted mean entropy over chosen + rejected completion tokens
 *   mean_token_accuracy:    argmax == label over chosen completion tokens
 * completionMask: (2B, T) label-aligned.
 */
export function pairedTokenMetrics(stats: TokenStats, completionMask: Uint8Array, B: number, T: number): Record<string, number> {
  const N = 2 * B;
  for (const [k, a] of [["logitsMean", stats.logitsMean], ["entropy", stats.entropy], ["correct", stats.correct], ["completionMask", completionMask]] as const) {
    checkTokens("pairedTokenMetrics", k, a, N, T);
  }
  const cm = rows(completionMask, 0, B, T), rm = rows(completionMask, B, N, T);
  return {
    "logits/chosen": maskedTokenMean(rows(stats.logitsMean, 0, B, T), cm, B, T).mean,
    "logits/rejected": maskedTokenMean(rows(stats.logitsMean, B, N, T), rm, B, T).mean,
    entropy: maskedTokenMean(stats.entropy, completionMask, N, T).mean,
    mean_token_accuracy: maskedTokenMean(rows(stats.correct, 0, B, T), cm, B, T).mean,
  };
}

/**
 * Token metrics of current TRL KTO: logits/chosen over desirable rows and logits/rejected over undesirable
 * rows (each key omitted when that side has no completion token, as TRL does), entropy over all rows.
 * KTO logs no mean_token_accuracy. labels: (N,) truthy = desirable.
 */
export function unpairedTokenMetrics(
  stats: Pick<TokenStats, "logitsMean" | "entropy">, completionMask: Uint8Array,
  labels: ArrayLike<boolean | number>, N: number, T: number,
): Record<string, number> {
  checkTokens("unpairedTokenMetrics", "logitsMean", stats.logitsMean, N, T);
  checkTokens("unpairedTokenMetrics", "entropy", stats.entropy, N, T);
  checkTokens("unpairedTokenMetrics", "completionMask", completionMask, N, T);
  if (labels.length !== N) throw new Error(`unpairedTokenMetrics: labels has ${labels.length} entries, expected N = ${N}`);
  let sc = 0, nc = 0, sr = 0, nr = 0;
  for (let n = 0; n < N; n++) {
    for (let t = n * T, end = t + T; t < end; t++) {
      if (!completionMask[t]) continue;
      if (labels[n]) { sc += stats.logitsMean[t]; nc++; } else { sr += stats.logitsMean[t]; nr++; }
    }
  }
  const m: Record<string, number> = {};
  if (nc > 0) m["logits/chosen"] = sc / nc;
  if (nr > 0) m["logits/rejected"] = sr / nr;
  m.entropy = maskedTokenMean(stats.entropy, completionMask, N, T).mean;
  return m;
}

/**
 * ORPO/CPO convention for logits/chosen|rejected: TRL takes the plain mean of the whole logits tensor of
 * the chosen (resp. rejected) rows, prompt included. We average the vocab-mean logit over the real
 * label-aligned positions given by `seqMask` (2B, T) — normally sequenceMask(lengths) — token-weighted.
 * Equal to TRL's ORPO value when no row is padded. It differs when rows are padded (TRL also averages the
 * logits computed at padding positions, which our core never computes) and, for CPO, by the final
 * position of each row (CPO does not drop logits[:, -1]; the logit that predicts past the end is not in
 * label-aligned stats).
 */
export function sequenceLogitsMetrics(logitsMean: Floats, seqMask: Uint8Array, B: number, T: number): Record<string, number> {
  checkTokens("sequenceLogitsMetrics", "logitsMean", logitsMean, 2 * B, T);
  checkTokens("sequenceLogitsMetrics", "seqMask", seqMask, 2 * B, T);
  return {
    "logits/chosen": maskedTokenMean(rows(logitsMean, 0, B, T), rows(seqMask, 0, B, T), B, T).mean,
    "logits/rejected": maskedTokenMean(rows(logitsMean, B, 2 * B, T), rows(seqMask, B, 2 * B, T), B, T).mean,
  };
}
