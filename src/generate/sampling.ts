// Hugging Face's logits processors and warpers for one row of fp32 logits, in HF's order: repetition penalty,
// no-repeat n-gram, min_new_tokens (always), then temperature, top-k, top-p, min-p, typical (sampling only),
// and the final choice (first argmax, or a seeded draw). Removed tokens become -Infinity, as in HF.
// Not the decoding loop (engine.ts) and not config validation (config.ts): the config is trusted here.
// Speed matters (V up to ~152k, every step): greedy without penalties is one pass; no filter sorts the whole
// vocabulary (top-k keeps a heap of k; top-p / typical bucket tokens by rank key and sort only the boundary bucket).
import type { GenerationConfig } from "./types.ts";

/**
 * Survivors of the filters so far: the finite entries, listed in ascending id order, or `null` meaning "every
 * finite entry of the row" (no list built yet, so no O(V) allocation when nothing has narrowed the set).
 */
type Survivors = Int32Array | null;

// ---- processors (greedy and sampling) ----

/** HF RepetitionPenaltyLogitsProcessor: each distinct id of prompt + generated, once: s<0 ? s*θ : s/θ. */
export function applyRepetitionPenalty(scores: Float32Array, ids: readonly number[], penalty: number): void {
  // HF gathers every id's score first and scatters after, so a repeated id is penalised once: do the same.
  const penalised = new Float32Array(ids.length);
  for (let j = 0; j < ids.length; j++) {
    const s = scores[checkId(ids[j], scores.length)];
    penalised[j] = s < 0 ? s * penalty : s / penalty;
  }
  for (let j = 0; j < ids.length; j++) scores[ids[j]] = penalised[j];
}

/** HF NoRepeatNGramLogitsProcessor: ban t when (last n-1 ids) + t already occurs in ids (prompt included). */
export function bannedNgramTokens(ids: readonly number[], n: number): number[] {
  const len = ids.length;
  if (n <= 0 || len < n) return [];          // no complete n-gram yet
  const start = len - n + 1;                  // the window w = ids[start .. len)
  const banned: number[] = [];
  for (let i = 0; i + n <= len; i++) {
    let same = true;
    for (let j = 0; j < n - 1; j++) if (ids[i + j] !== ids[start + j]) { same = false; break; }
    if (same) banned.push(ids[i + n - 1]);
  }
  return banned;
}

/** Penalties, n-gram bans and min_new_tokens: the processors HF runs in greedy and sampling mode alike. */
function applyProcessors(scores: Float32Array, ids: readonly number[], promptLength: number, cfg: GenerationConfig): void {
  if (cfg.repetition_penalty !== 1) applyRepetitionPenalty(scores, ids, cfg.repetition_penalty);
  if (cfg.no_repeat_ngram_size > 0) {
    for (const t of bannedNgramTokens(ids, cfg.no_repeat_ngram_size)) scores[checkId(t, scores.length)] = -Infinity;
  }
  if (cfg.min_new_tokens != null && ids.length - promptLength < cfg.min_new_tokens) {
    // an EOS id outside the row cannot be chosen anyway, so there is nothing to mask
    for (const e of cfg.eos_token_id) if (e >= 0 && e < scores.length) scores[e] = -Infinity;
  }
}

// ---- warpers (sampling only) ----

/** HF TemperatureLogitsWarper: s / T, stored back in fp32. */
export function applyTemperature(scores: Float32Array, temperature: number): void {
  checkTemperature(temperature);
  for (let i = 0; i < scores.length; i++) scores[i] = scores[i] / temperature;
}

function checkTemperature(t: number): void {
  if (!(t > 0)) throw new RangeError(`temperature = ${t}: sampling needs temperature > 0; use do_sample false for greedy decoding`);
}

/** Restores the min-heap property below `at` (heap of k entries). */
function siftDown(heap: Float64Array, k: number, at: number): void {
  const v = heap[at];
  for (;;) {
    let c = 2 * at + 1;
    if (c >= k) break;
    if (c + 1 < k && heap[c + 1] < heap[c]) c++;
    if (heap[c] >= v) break;
    heap[at] = heap[c];
    at = c;
  }
  heap[at] = v;
}

/**
 * The k-th largest value of the row (NaN refused), with a min-heap of k entries: one pass, O(V log k) at worst.
 * With `divisor` (a temperature) every entry is first replaced by entry / divisor, in the same pass.
 */
export function kthLargest(scores: Float32Array, k: number, divisor = 1): number {
  const n = scores.length;
  if (divisor !== 1) for (let i = 0; i < n; i++) scores[i] = scores[i] / divisor;
  const heap = new Float64Array(k);
  for (let i = 0; i < k; i++) heap[i] = checkNumber(scores, i);
  for (let i = (k >> 1) - 1; i >= 0; i--) siftDown(heap, k, i);
  let min = heap[0];
  for (let i = k; i < n; i++) {
    const v = scores[i];
    if (!(v <= min)) { checkNumber(scores, i); heap[0] = v; siftDown(heap, k, 0); min = heap[0]; }
  }
  return min;
}

/**
 * HF TopKLogitsWarper (after temperature, done in the same pass): k = max(top_k, 1); scores strictly below the
 * k-th largest go, so ties at it survive. Returns the survivors.
 */
function topK(scores: Float32Array, topk: number, temperature: number, mask: boolean): Int32Array {
  const k = Math.min(Math.max(topk, 1), scores.length);
  const threshold = kthLargest(scores, k, temperature);
  const kept: number[] = [];
  const n = scores.length;
  for (let i = 0; i < n; i++) {
    const v = scores[i];
    if (v >= threshold) { if (v > -Infinity) kept.push(i); }
    else if (mask) scores[i] = -Infinity;
  }
  return Int32Array.from(kept);
}

/** HF MinPLogitsWarper: drop p_i < min_p * p_max, i.e. s_i < s_max + ln(min_p); the argmax always stays. */
function minP(scores: Float32Array, survivors: Survivors, min: number): Survivors {
  const threshold = maxOf(scores, survivors) + Math.log(min);   // min_p 0: -Infinity, nothing goes
  if (survivors === null) {
    for (let i = 0; i < scores.length; i++) if (scores[i] < threshold) scores[i] = -Infinity;
    return null;
  }
  const kept: number[] = [];
  for (const i of survivors) {
    if (scores[i] < threshold) scores[i] = -Infinity;
    else kept.push(i);
  }
  return Int32Array.from(kept);
}

/**
 * HF TopPLogitsWarper: keep token i iff the probability ranked strictly above it is < top_p: the head that
 * reaches top_p, crossing token included, at least one. Exactly tied scores rank by ascending id (torch.sort is
 * not stable, so HF's choice among ties at the boundary is arbitrary).
 */
function topP(scores: Float32Array, survivors: Survivors, top: number, mask: boolean): Int32Array {
  const d = distribution(scores, survivors);
  return nucleus(scores, survivors, d, d.max, top, false, mask);
}

/**
 * HF TypicalLogitsWarper: H = -Σ p log p; rank by |-log p_i - H| ascending; `last` = #(cumsum < typical_p)
 * (clamped); keep every token whose distance is <= the distance at `last` (ties survive), at least one.
 */
function typical(scores: Float32Array, survivors: Survivors, mass: number, mask: boolean): Int32Array {
  const d = distribution(scores, survivors);
  // -log p_i - H = (max + log Z - H) - s_i: the ranking is by distance of s_i from one centre in logit space
  return nucleus(scores, survivors, d, d.max + Math.log(d.z) - d.entropy, mass, true, mask);
}

// ---- helpers for the filters ----

interface Distribution {
  max: number;       // the largest finite score
  z: number;         // Σ exp(s - max) over the survivors
  entropy: number;   // -Σ p log p
}

/** max, normaliser and entropy of softmax over the survivors, in float64. */
function distribution(scores: Float32Array, survivors: Survivors): Distribution {
  const max = maxOf(scores, survivors);
  let z = 0, zs = 0;
  const add = (s: number) => { if (s > -Infinity) { const w = Math.exp(s - max); z += w; zs += w * (s - max); } };
  if (survivors === null) for (let i = 0; i < scores.length; i++) add(scores[i]);
  else for (const i of survivors) add(scores[i]);
  // H = -Σ p (s - max - log Z) = log Z - Σ p (s - max)
  return { max, z, entropy: Math.log(z) - zs / z };
}

/** Sorts ids by key = |centre - s| ascending, ties by ascending id. */
function rankByKey(scores: Float32Array, ids: ArrayLike<number>, centre: number): Int32Array {
  const n = ids.length;
  const keys = new Float64Array(n);
  for (let j = 0; j < n; j++) keys[j] = Math.abs(centre - scores[ids[j]]);
  const order = Array.from({ length: n }, (_, j) => j).sort((a, b) => keys[a] - keys[b] || ids[a] - ids[b]);
  return Int32Array.from(order, (j) => ids[j]);
}

/**
 * The ranked head that top-p and typical keep: rank the survivors by key = |centre - s| ascending (ties by id),
 * find the crossing token c, the first whose inclusive cumulative probability reaches `mass` (the last one if
 * rounding never gets there), keep tokens up to c, plus (keepTies) later ones with c's key. Everything else
 * becomes -Infinity. Returns the kept ids in ascending order.
 *
 * On the full vocabulary it avoids sorting V entries: tokens are bucketed by key (fixed-width buckets, in key
 * order) in one pass; buckets wholly before the crossing are kept as they are, buckets after it removed, and
 * only the bucket(s) holding the crossing are sorted and walked token by token.
 */
function nucleus(scores: Float32Array, survivors: Survivors, d: Distribution, centre: number, mass: number, keepTies: boolean, mask: boolean): Int32Array {
  const prob = (i: number) => Math.exp(scores[i] - d.max) / d.z;
  // Walks ranked tokens from cumulative probability `cum`; returns how many are kept, or -1 if no crossing yet.
  const walk = (ranked: Int32Array, cum: number): number => {
    for (let j = 0; j < ranked.length; j++) {
      cum += prob(ranked[j]);
      if (cum >= mass) {
        let end = j + 1;
        const limit = Math.abs(centre - scores[ranked[j]]);
        while (keepTies && end < ranked.length && Math.abs(centre - scores[ranked[end]]) <= limit) end++;
        return end;
      }
    }
    return -1;
  };

  if (survivors !== null) {
    const ranked = rankByKey(scores, survivors, centre);
    const end = walk(ranked, 0);
    const kept = end < 0 ? ranked : ranked.subarray(0, end);
    for (let j = kept.length; j < ranked.length; j++) scores[ranked[j]] = -Infinity;
    return Int32Array.from(kept).sort();
  }

  const V = scores.length;
  const bin = scratch.bins(V);
  const binMass = new Float64Array(BINS + 1);
  for (let i = 0; i < V; i++) {
    const s = scores[i];
    if (!(s > -Infinity)) { bin[i] = REMOVED; continue; }
    const b = Math.min(Math.floor(Math.abs(centre - s) * BINS_PER_UNIT), BINS);
    bin[i] = b;
    binMass[b] += prob(i);
  }
  // the first bucket whose mass reaches `mass`; if rounding walks past the crossing, the next one is tried
  let cut = 0, cum = 0;
  while (cut <= BINS && cum + binMass[cut] < mass) cum += binMass[cut++];
  let lastBin = BINS;        // buckets <= lastBin stay (all of them if no crossing is ever found)
  for (; cut <= BINS; cum += binMass[cut++]) {
    if (binMass[cut] === 0) continue;
    const members: number[] = [];
    for (let i = 0; i < V; i++) if (bin[i] === cut) members.push(i);
    const ranked = rankByKey(scores, members, centre);
    const end = walk(ranked, cum);
    if (end < 0) continue;
    for (let j = end; j < ranked.length; j++) bin[ranked[j]] = REMOVED;
    lastBin = cut;
    break;
  }
  const kept: number[] = [];
  for (let i = 0; i < V; i++) {
    if (bin[i] <= lastBin) kept.push(i);
    else if (mask) scores[i] = -Infinity;
  }
  return Int32Array.from(kept);
}

const BINS_PER_UNIT = 32;               // key buckets of width 1/32 over [0, 32) ...
const BINS = 32 * BINS_PER_UNIT;        // ... plus one overflow bucket (index BINS) for larger keys
const REMOVED = BINS + 1;               // marks -Infinity scores and tokens cut inside the crossing bucket

/** Reused per-row buffers (one row is processed at a time), so a full-vocabulary step allocates nothing big. */
const scratch = (() => {
  let bins = new Uint16Array(0), weights = new Float64Array(0);
  return {
    bins(n: number): Uint16Array { if (bins.length < n) bins = new Uint16Array(n); return bins; },
    weights(n: number): Float64Array { if (weights.length < n) weights = new Float64Array(n); weights.fill(0, 0, n); return weights; },
  };
})();

function maxOf(scores: Float32Array, survivors: Survivors): number {
  let max = -Infinity;
  if (survivors === null) {
    const n = scores.length;
    for (let i = 0; i < n; i++) {
      const v = scores[i];
      if (!(v <= max)) { checkNumber(scores, i); max = v; }
    }
  } else for (const i of survivors) if (scores[i] > max) max = scores[i];
  return max;
}

function checkNumber(scores: Float32Array, i: number): number {
  const v = scores[i];
  if (v !== v) throw new RangeError(`logits[${i}] is NaN: the model's forward pass produced NaN; check the checkpoint's weights and dtype`);
  return v;
}

function checkId(id: number, vocab: number): number {
  if (!Number.isInteger(id) || id < 0 || id >= vocab) {
    throw new RangeError(`token id ${id} is outside the logits row of ${vocab} entries; the tokenizer and the model's vocab_size disagree`);
  }
  return id;
}

/**
 * Temperature, top-k, top-p, min-p, typical in HF's order; returns the survivors. With `mask` false, tokens
 * dropped by top-k / top-p / typical on the full row are left as they are (only the returned list counts).
 */
function applyWarpers(scores: Float32Array, cfg: GenerationConfig, mask: boolean): Survivors {
  let survivors: Survivors = null;
  if (cfg.top_k > 0 && cfg.top_k < scores.length) {
    checkTemperature(cfg.temperature);
    survivors = topK(scores, cfg.top_k, cfg.temperature, mask);
  } else if (cfg.temperature !== 1) applyTemperature(scores, cfg.temperature);
  if (cfg.top_p < 1) survivors = topP(scores, survivors, cfg.top_p, mask);
  if (cfg.min_p != null) survivors = minP(scores, survivors, cfg.min_p);
  if (cfg.typical_p < 1) survivors = typical(scores, survivors, cfg.typical_p, mask);
  return survivors;
}

// ---- the choice ----

/** torch.argmax: the first index among equal maxima. NaN is refused. */
export function argmax(scores: Float32Array): number {
  let best = 0, max = checkNumber(scores, 0);
  const n = scores.length;
  for (let i = 1; i < n; i++) {
    const v = scores[i];
    if (!(v <= max)) { checkNumber(scores, i); max = v; best = i; }   // one comparison per entry; NaN falls in here
  }
  return best;
}

/**
 * One draw from softmax over the survivors with one uniform u = rand() in [0, 1): the first survivor (ascending
 * id) whose cumulative weight exceeds u * total. One rand() call per token, so a seed fixes the whole sequence.
 */
function draw(scores: Float32Array, survivors: Survivors, rand: () => number): number {
  const max = maxOf(scores, survivors);
  if (!(max > -Infinity)) throw new RangeError("every token was filtered out of the sampling distribution; loosen min_new_tokens / no_repeat_ngram_size");
  const ids = survivors;
  const n = ids ? ids.length : scores.length;
  const w = scratch.weights(n);
  let total = 0;
  for (let j = 0; j < n; j++) {
    const s = scores[ids ? ids[j] : j];
    if (s > -Infinity) total += w[j] = Math.exp(s - max);
  }
  const target = rand() * total;
  let cum = 0, last = -1;
  for (let j = 0; j < n; j++) {
    if (w[j] === 0) continue;
    cum += w[j];
    last = j;
    if (cum > target) break;
  }
  return ids ? ids[last] : last;
}

// ---- the public calls ----

/**
 * HF's processors, then (when do_sample) its warpers, applied in place to one row of logits; removed tokens are
 * -Infinity. `ids` is prompt + generated so far; `promptLength` its prompt part. Returns `scores`.
 */
export function processLogits(scores: Float32Array, ids: readonly number[], promptLength: number, cfg: GenerationConfig): Float32Array {
  applyProcessors(scores, ids, promptLength, cfg);
  if (cfg.do_sample) applyWarpers(scores, cfg, true);
  return scores;
}

/**
 * The next token for one row: processors, then greedy argmax, or warpers and a draw with `rand` (uniform in
 * [0, 1), e.g. mulberry32(seed)). May modify `logits` in place.
 */
export function chooseToken(logits: Float32Array, ids: readonly number[], promptLength: number, cfg: GenerationConfig, rand: () => number): number {
  if (logits.length === 0) throw new RangeError("empty logits row");
  applyProcessors(logits, ids, promptLength, cfg);
  if (!cfg.do_sample) return argmax(logits);
  return draw(logits, applyWarpers(logits, cfg, false), rand);
}
