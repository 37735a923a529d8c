// Shared test helpers for tests/losses: a seeded PRNG, tolerance asserts and central finite differences.
// Not a test file itself (no .test.ts suffix) and no loss math.

import assert from "node:assert/strict";

/** The project's seeded PRNG, so every gradient check sees the same random inputs. */
export { mulberry32 as rng } from "../../src/util/random.ts";

export function uniform(r: () => number, n: number, lo: number, hi: number): Float64Array {
  return Float64Array.from({ length: n }, () => lo + (hi - lo) * r());
}

/** |a − e| ≤ atol + rtol·|e|, element-wise for arrays. */
export function close(actual: number | ArrayLike<number>, expected: number | ArrayLike<number>, rtol = 1e-6, atol = 1e-12, what = ""): void {
  const a = typeof actual === "number" ? [actual] : Array.from(actual);
  const e = typeof expected === "number" ? [expected] : Array.from(expected);
  assert.equal(a.length, e.length, `${what}: length ${a.length} vs expected ${e.length}`);
  for (let i = 0; i < a.length; i++) {
    const ok = Math.abs(a[i] - e[i]) <= atol + rtol * Math.abs(e[i]);
    assert.ok(ok, `${what}[${i}]: got ${a[i]}, expected ${e[i]} (rtol ${rtol}, atol ${atol})`);
  }
}

/** Central differences of f at x in float64, one coordinate at a time (x is restored afterwards). */
export function fdGrad(f: (x: Float64Array) => number, x: Float64Array, h = 1e-6): Float64Array {
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const x0 = x[i];
    x[i] = x0 + h; const fp = f(x);
    x[i] = x0 - h; const fm = f(x);
    x[i] = x0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}
