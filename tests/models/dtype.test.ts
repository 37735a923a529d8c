// fp32 <-> bf16 / f16 conversions against bit patterns worked out by hand from the IEEE formats
// (bf16: 1+8+7 bits; binary16: 1+5+10 bits, subnormal step 2^-24), plus exhaustive 16-bit round trips.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Float16Array } from "@petamoriken/float16";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../../src/models/dtype.ts";

const fromBits = (bits: number[]) => new Float32Array(new Uint32Array(bits).buffer);
const toBits = (f: Float32Array) => [...new Uint32Array(f.buffer, f.byteOffset, f.length)];

test("f32 -> bf16 rounds to nearest even and keeps NaN, signs and infinities", () => {
  const cases: [number, number, string][] = [
    [0x3f800000, 0x3f80, "1.0"],
    [0x3f808000, 0x3f80, "1 + 2^-8: exact tie, stays on even 0x3f80"],
    [0x3f818000, 0x3f82, "1 + 3*2^-8: exact tie, goes up to even 0x3f82"],
    [0x3f808001, 0x3f81, "just above the tie rounds up"],
    [0x3f807fff, 0x3f80, "just below the tie rounds down"],
    [0x80000000, 0x8000, "-0"],
    [0xc0400000, 0xc040, "-3"],
    [0x7f7fffff, 0x7f80, "FLT_MAX overflows to +inf"],
    [0xff800000, 0xff80, "-inf"],
    [0x7f800001, 0x7fc0, "signalling NaN with its payload in the low bits: truncation would give inf; quiet bit set instead"],
    [0x7f810000, 0x7fc1, "signalling NaN with payload in the kept bits: payload kept, quiet bit set"],
    [0x7fc00000, 0x7fc0, "quiet NaN"],
    [0xffc00000, 0xffc0, "negative NaN keeps its sign"],
    [0x00000001, 0x0000, "smallest fp32 subnormal rounds to +0"],
  ];
  const got = f32ToBf16(fromBits(cases.map((c) => c[0])));
  cases.forEach(([, want, what], i) => assert.equal(got[i], want, `${what}: got 0x${got[i].toString(16)}`));
});

test("bf16 -> f32 is exact for all 65536 patterns and round-trips", () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const f = bf16ToF32(all);
  const bits = toBits(f);
  for (let i = 0; i < 65536; i++) assert.equal(bits[i], i << 16 >>> 0);
  const back = f32ToBf16(f);
  for (let i = 0; i < 65536; i++) {
    const isNan = (i & 0x7f80) === 0x7f80 && (i & 0x7f) !== 0;
    if (isNan) assert.ok(Number.isNaN(bf16ToF32(new Uint16Array([back[i]]))[0]));
    else assert.equal(back[i], i);
  }
});

test("f32 -> f16 rounds to nearest even, keeps subnormals, overflows to inf", () => {
  const cases: [number, number, string][] = [
    [1, 0x3c00, "1.0"],
    [-2, 0xc000, "-2"],
    [65504, 0x7bff, "max finite"],
    [65519, 0x7bff, "below the overflow tie"],
    [65520, 0x7c00, "the overflow tie goes to inf (even)"],
    [2 ** -24, 0x0001, "smallest subnormal"],
    [2 ** -25, 0x0000, "half the smallest subnormal: tie to even 0"],
    [3 * 2 ** -25, 0x0002, "1.5 subnormal steps: tie to even 2"],
    [1023 * 2 ** -24, 0x03ff, "largest subnormal"],
    [2 ** -14, 0x0400, "smallest normal"],
    [1 + 2 ** -11, 0x3c00, "1 + half ulp: tie stays even"],
    [1 + 3 * 2 ** -11, 0x3c02, "1 + 1.5 ulp: tie up to even"],
    [-0, 0x8000, "-0"],
    [-Infinity, 0xfc00, "-inf"],
  ];
  const got = f32ToF16(new Float32Array(cases.map((c) => c[0])));
  cases.forEach(([, want, what], i) => assert.equal(got[i], want, `${what}: got 0x${got[i].toString(16)}`));
  const nan = f32ToF16(new Float32Array([NaN]))[0];
  assert.ok((nan & 0x7c00) === 0x7c00 && (nan & 0x3ff) !== 0, `NaN must stay NaN, got 0x${nan.toString(16)}`);
});

test("f32 -> f16 agrees with @petamoriken/float16 on every f16 value, every midpoint and its neighbours", () => {
  const vals: number[] = [];
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  const nextUp = (x: number) => {
    f[0] = x;
    u[0] += 1;
    return f[0];
  };
  const nextDown = (x: number) => {
    f[0] = x;
    u[0] -= 1;
    return f[0];
  };
  for (let b = 0; b < 0x7c00; b++) {
    const lo = b < 0x400 ? b * 2 ** -24 : (1 + (b & 0x3ff) / 1024) * 2 ** ((b >> 10) - 15);
    const hi = b + 1 < 0x400 ? (b + 1) * 2 ** -24 : (1 + ((b + 1) & 0x3ff) / 1024) * 2 ** (((b + 1) >> 10) - 15);
    const mid = (lo + hi) / 2; // exact in fp32: one bit more than f16
    vals.push(lo, mid, mid > 0 ? nextDown(mid) : 0, nextUp(mid), -mid, -lo);
  }
  vals.push(1e-9, 3e-8, 65519.99, 1e6, 3.4e38, Infinity);
  const src = new Float32Array(vals);
  const ours = f32ToF16(src);
  const ref = new Uint16Array(new Float16Array(src).buffer);
  for (let i = 0; i < src.length; i++) assert.equal(ours[i], ref[i], `${src[i]}: 0x${ours[i].toString(16)} vs 0x${ref[i].toString(16)}`);
});

test("f16 -> f32 decodes every pattern exactly and round-trips", () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const f = f16ToF32(all);
  assert.equal(f[0x0001], 2 ** -24);
  assert.equal(f[0x03ff], 1023 * 2 ** -24);
  assert.equal(f[0x3c00], 1);
  assert.equal(f[0x7bff], 65504);
  assert.equal(f[0x7c00], Infinity);
  assert.equal(f[0xfc00], -Infinity);
  assert.ok(Object.is(f[0x8000], -0));
  assert.ok(Number.isNaN(f[0x7e00]) && Number.isNaN(f[0xfc01]));
  // Independent decode of the formula for every finite pattern.
  for (let b = 0; b < 65536; b++) {
    const e = (b >> 10) & 0x1f, m = b & 0x3ff, s = b & 0x8000 ? -1 : 1;
    if (e === 31) continue;
    const want = e === 0 ? s * m * 2 ** -24 : s * (1 + m / 1024) * 2 ** (e - 15);
    assert.ok(Object.is(f[b], want), `0x${b.toString(16)}: ${f[b]} vs ${want}`);
  }
  const back = f32ToF16(f);
  for (let b = 0; b < 65536; b++) if (!Number.isNaN(f[b])) assert.equal(back[b], b);
});

test("destination length mismatch is an error", () => {
  assert.throws(() => f32ToBf16(new Float32Array(3), new Uint16Array(2)), /3 elements.*2/);
  assert.throws(() => f16ToF32(new Uint16Array(1), new Float32Array(2)), /f16ToF32/);
});
