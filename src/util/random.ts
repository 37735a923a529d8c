// The one seeded PRNG of the project: mulberry32 (32-bit state; the same sequence on every platform for a
// given seed). Used for weight init, data order and test inputs. Not cryptographic.
//
// Seeds: Hugging Face's set_seed hands the seed to numpy, which takes 0 … 2^32 − 1, so user-facing seed keys
// are checked against that range (checkSeed). The generators themselves take any safe integer: seeds below
// 2^32 start where they always did, larger ones (a seed plus an epoch number, a request's seed) fold their high
// bits into the state instead of wrapping to seed − 2^32 (2^32 would otherwise replay seed 0).

/** The largest seed Hugging Face accepts (numpy's limit): 2^32 − 1. */
export const MAX_SEED = 0xffffffff;

/**
 * Checks a user-given seed: a whole number in [0, 2^32 − 1], as transformers' set_seed / numpy accept.
 * `name` says where it came from (a config key or a flag) in the message.
 */
export function checkSeed(seed: unknown, name = "seed"): number {
  if (typeof seed !== "number" || !Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) {
    throw new Error(`${name} must be a whole number from 0 to ${MAX_SEED} (2^32 − 1, the range Hugging Face's set_seed accepts), got ${JSON.stringify(seed) ?? String(seed)}`);
  }
  return seed;
}

/**
 * A seed as 32 bits of generator state: seeds in [0, 2^32) (and negative ones, as before) unchanged by
 * `>>> 0`; larger safe integers mix their bits above 2^32 in, so no two seeds below 2^53 that differ only
 * there share a start. Non-integers are truncated first.
 */
export function seedState(seed: number): number {
  const s = Math.trunc(seed);
  if (!(s >= 2 ** 32) || !Number.isFinite(s)) return s >>> 0;
  const hi = Math.floor(s / 2 ** 32) >>> 0, lo = s >>> 0;
  let h = Math.imul(hi ^ (hi >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  h ^= h >>> 16;
  return (lo ^ (h | 1)) >>> 0;
}

/** A generator of uniforms in [0, 1) from a seed (any safe integer; see seedState). */
export function mulberry32(seed: number): () => number {
  let a = seedState(seed);
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
