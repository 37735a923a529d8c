// Scalar float64 numerics shared by the preference losses: stable sigmoid, log-sigmoid, log(1 − e^x),
// and the input checks every loss runs at its boundary.
// Not a tensor library: plain numbers and typed arrays, no losses here.

/** Per-sequence input vector: Float64Array from aggregate.ts, or any array of numbers. */
export type Vec = ArrayLike<number>;

/** σ(x) without overflow for either sign of x. */
export function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

/** log σ(x) = −softplus(−x); finite for every finite x (torch's F.logsigmoid). d/dx = σ(−x). */
export function logSigmoid(x: number): number {
  return x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x));
}

/**
 * log(1 − e^x) for x ≤ 0, switching formula at −ln 2 to avoid cancellation (Mächler 2012); the same
 * branch point as TRL's ORPO since v0.27. −inf at x = 0, NaN for x > 0.
 */
export function log1mexp(x: number): number {
  return x < -Math.LN2 ? Math.log1p(-Math.exp(x)) : Math.log(-Math.expm1(x));
}

/** d/dx log(1 − e^x) = −e^x / (1 − e^x) = −1 / expm1(−x). */
export function log1mexpGrad(x: number): number {
  return -1 / Math.expm1(-x);
}

export function mean(v: Vec): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i];
  return v.length > 0 ? s / v.length : 0;
}

/** Throws unless v has length n and only finite entries; names the function, the field and the row. */
export function checkVec(fn: string, field: string, v: Vec | undefined | null, n: number): void {
  if (v == null) throw new Error(`${fn}: input "${field}" is missing; pass a (${n},) array of per-sequence values`);
  if (v.length !== n) {
    throw new Error(`${fn}: input "${field}" has ${v.length} entries but the batch has ${n}; pass one value per sequence`);
  }
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(v[i])) {
      throw new Error(
        `${fn}: input "${field}"[${i}] is ${v[i]}; per-sequence log-probs must be finite ` +
          `(an empty completion averaged as 0/0 gives NaN: build averages with sequenceStats, which clamps the count at 1)`,
      );
    }
  }
}

export function checkScalar(fn: string, field: string, x: number | undefined, cond: (x: number) => boolean, want: string): number {
  if (x === undefined || typeof x !== "number" || !cond(x)) {
    throw new Error(`${fn}: ${field} = ${x} is invalid; it must be ${want}`);
  }
  return x;
}
