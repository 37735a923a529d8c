// HF's logits processors and warpers (sampling.ts): the reference vectors computed with transformers' own
// classes (TV1-TV5: top-p alone and after temperature, the full order, repetition counted once, min-p and
// top-k ties, greedy ties, n-gram bans), kept sets checked against a plain full-sort implementation of HF's
// formulas on random rows (ties included, full vocabulary and after top-k), seeded draws, and sampled frequencies.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chooseToken, processLogits } from "../../src/generate/sampling.ts";
import { defaultGenerationConfig } from "../../src/generate/config.ts";
import type { GenerationConfig } from "../../src/generate/types.ts";
import { mulberry32 } from "../../src/util/random.ts";

const cfg = (o: Partial<GenerationConfig> = {}): GenerationConfig => ({ ...defaultGenerationConfig(), ...o });
const sample = (o: Partial<GenerationConfig> = {}) => cfg({ do_sample: true, top_k: 0, ...o });
const row = (a: readonly number[]) => Float32Array.from(a);
const kept = (scores: Float32Array) => [...scores.keys()].filter((i) => scores[i] > -Infinity);
const close = (a: ArrayLike<number>, b: readonly number[], tol = 1e-5) => {
  assert.equal(a.length, b.length);
  for (let i = 0; i < b.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= tol, `[${i}] ${a[i]} vs ${b[i]}`);
};
function softmaxKept(scores: Float32Array): number[] {
  const max = Math.max(...scores);
  const w = [...scores].map((s) => (s > -Infinity ? Math.exp(s - max) : 0));
  const z = w.reduce((a, b) => a + b, 0);
  return w.map((x) => x / z);
}

test("TV1: top-p keeps the head that reaches top_p, crossing token included; temperature runs first", () => {
  const logits = [2.0, 1.0, 0.5, -1.0];
  close(softmaxKept(row(logits)), [0.60946, 0.224208, 0.135989, 0.030343]);
  assert.deepEqual(kept(processLogits(row(logits), [], 0, sample({ top_p: 0.8 }))), [0, 1]);
  assert.deepEqual(kept(processLogits(row(logits), [], 0, sample({ top_p: 0.9 }))), [0, 1, 2]);
  const cold = processLogits(row(logits), [], 0, sample({ temperature: 0.5, top_p: 0.8 }));
  assert.deepEqual(kept(cold), [0]);
  assert.equal(cold[0], 4);
  const hot = processLogits(row(logits), [], 0, sample({ temperature: 2.0, top_p: 0.8 }));
  assert.deepEqual(kept(hot), [0, 1, 2]);
  close(softmaxKept(row([1.0, 0.5, 0.25, -0.5])), [0.4344, 0.263477, 0.205196, 0.096928]);
  // exact boundary: four equal tokens of p = 0.25; HF drops where the ascending cumsum <= 1 - top_p, so
  // top_p 0.5 keeps exactly two (which two among ties is arbitrary in torch; here the lowest ids)
  assert.deepEqual(kept(processLogits(row([1, 1, 1, 1]), [], 0, sample({ top_p: 0.5 }))), [0, 1]);
  assert.deepEqual(kept(processLogits(row([1, 1, 1, 1]), [], 0, sample({ top_p: 0.75 }))), [0, 1, 2]);
  assert.deepEqual(kept(processLogits(row([1, 1, -50, 1, 1]), [], 0, sample({ top_k: 4, top_p: 0.5 }))), [0, 1]);
  // top_p 0 still keeps one token (min_tokens_to_keep)
  assert.deepEqual(kept(processLogits(row(logits), [], 0, sample({ top_p: 0 }))), [0]);
});

test("TV2: penalty on raw logits, then temperature, top-k, top-p, in that order", () => {
  const logits = [2.0, 1.0, 0.5, -1.0];
  const ids = [0, 3];
  // the processors alone (greedy mode runs them too)
  close(processLogits(row(logits), ids, 2, cfg({ repetition_penalty: 1.3 })), [1.538462, 1.0, 0.5, -1.3]);
  const c = sample({ repetition_penalty: 1.3, temperature: 0.5, top_k: 3, top_p: 0.8 });
  const out = processLogits(row(logits), ids, 2, c);
  close(out.subarray(0, 2), [3.076923, 2.0]);
  assert.deepEqual(kept(out), [0, 1]);
  close(softmaxKept(out), [0.745911, 0.254089, 0, 0], 1e-6);
  // top-p before temperature would have kept {0,1,2}: the order matters
  assert.deepEqual(kept(processLogits(row([1.538462, 1.0, 0.5, -1.3]), [], 0, sample({ top_p: 0.8 }))), [0, 1, 2]);
});

test("TV3: the repetition penalty applies once per distinct id, s<0 ? s*θ : s/θ", () => {
  close(processLogits(row([1.5, -0.5, 0.2]), [0, 1, 1], 0, cfg({ repetition_penalty: 1.3 })), [1.153846, -0.65, 0.2]);
  // 0 stays 0; θ < 1 rewards repetition; ids of the prompt count as well as generated ones
  close(processLogits(row([0, 2, -2, 5]), [0, 1, 2], 2, cfg({ repetition_penalty: 0.5 })), [0, 4, -1, 5]);
  // the same id many times is still one penalty
  close(processLogits(row([4, 1]), [0, 0, 0, 0, 0], 5, cfg({ repetition_penalty: 2 })), [2, 1]);
  assert.throws(() => processLogits(row([1, 2]), [5], 1, cfg({ repetition_penalty: 1.1 })), /token id 5 is outside the logits row of 2/);
});

test("TV4: min-p threshold, top-k keeps ties at the k-th value, greedy ties pick the first index", () => {
  assert.deepEqual(kept(processLogits(row([3, 2, 1, 0, -1]), [], 0, sample({ min_p: 0.1 }))), [0, 1, 2]);
  assert.deepEqual(kept(processLogits(row([3, 2, 1, 0, -1]), [], 0, sample({ min_p: 0 }))), [0, 1, 2, 3, 4]);
  assert.deepEqual(kept(processLogits(row([3, 2, 1, 0, -1]), [], 0, sample({ min_p: 1 }))), [0]);
  assert.deepEqual(kept(processLogits(row([1.0, 2.0, 2.0, 2.0, 0.5]), [], 0, sample({ top_k: 2 }))), [1, 2, 3]);
  assert.deepEqual(kept(processLogits(row([1.0, 2.0, 3.0, 2.0, 0.5]), [], 0, sample({ top_k: 2 }))), [1, 2, 3]);
  assert.deepEqual(kept(processLogits(row([5, 4, 3]), [], 0, sample({ top_k: 1 }))), [0]);
  const never = () => { throw new Error("greedy must not draw"); };
  assert.equal(chooseToken(row([1.0, 3.0, 3.0, 0.0]), [], 0, cfg(), never), 1);
  assert.equal(chooseToken(row([7, 7, 7]), [], 0, cfg(), never), 0);
  assert.equal(chooseToken(row([-Infinity, -5, -Infinity, -5]), [], 0, cfg(), never), 1);
});

test("TV5: no-repeat n-gram bans (prompt included), in greedy mode too", () => {
  assert.deepEqual(kept(processLogits(row([0, 0, 0, 0, 0]), [1, 2, 3, 1], 4, cfg({ no_repeat_ngram_size: 2 }))), [0, 1, 3, 4]);
  assert.deepEqual(kept(processLogits(row([0, 0, 0, 0, 0]), [1, 2, 3, 1, 2], 5, cfg({ no_repeat_ngram_size: 3 }))), [0, 1, 2, 4]);
  // nothing while no complete n-gram exists; size 1 bans every seen token
  assert.deepEqual(kept(processLogits(row([0, 0, 0, 0]), [1, 2], 2, cfg({ no_repeat_ngram_size: 3 }))), [0, 1, 2, 3]);
  assert.deepEqual(kept(processLogits(row([0, 0, 0, 0]), [1, 3, 1], 1, cfg({ no_repeat_ngram_size: 1 }))), [0, 2]);
  // greedy picks around the ban: 2 would repeat the bigram (1, 2)
  assert.equal(chooseToken(row([0, 0, 9, 8]), [1, 2, 3, 1], 4, cfg({ no_repeat_ngram_size: 2 }), Math.random), 3);
});

test("min_new_tokens masks every EOS id until enough new tokens exist", () => {
  const c = cfg({ min_new_tokens: 2, eos_token_id: [0, 3] });
  assert.deepEqual(kept(processLogits(row([9, 1, 1, 9]), [5, 5, 5], 2, c)), [1, 2]);        // 1 new token
  assert.deepEqual(kept(processLogits(row([9, 1, 1, 9]), [5, 5, 5, 5], 2, c)), [0, 1, 2, 3]); // 2 new tokens
  assert.equal(chooseToken(row([9, 1, 2, 9]), [5, 5], 2, c, Math.random), 2);
});

test("greedy without processors leaves the logits untouched and never calls rand", () => {
  const r = mulberry32(1);
  const logits = Float32Array.from({ length: 1000 }, () => r() * 10 - 5);
  const copy = logits.slice();
  let calls = 0;
  const id = chooseToken(logits, [1, 2, 3], 1, cfg({ temperature: 0.3, top_k: 5, top_p: 0.5 }), () => { calls++; return 0.5; });
  assert.deepEqual(logits, copy);
  assert.equal(calls, 0);
  assert.equal(id, copy.indexOf(Math.max(...copy)));
});

test("NaN logits and temperature 0 with sampling are refused with a clear message", () => {
  assert.throws(() => chooseToken(row([1, NaN, 2]), [], 0, cfg(), Math.random), /logits\[1\] is NaN/);
  assert.throws(() => chooseToken(row([1, NaN, 2]), [], 0, cfg({ do_sample: true }), Math.random), /logits\[1\] is NaN/);
  assert.throws(() => chooseToken(row([1, NaN, 2]), [], 0, sample({ top_p: 0.5 }), Math.random), /logits\[1\] is NaN/);
  assert.throws(() => chooseToken(row([1, 2]), [], 0, sample({ temperature: 0 }), Math.random), /temperature = 0.*do_sample false/);
  assert.throws(() => chooseToken(row([1, 2]), [], 0, cfg({ do_sample: true, temperature: 0 }), Math.random), /temperature = 0/);
});

// ---- a plain full-sort implementation of HF's warpers, to compare kept sets against ----

/** HF's warpers on one row, literally: full sorts, ascending cumsum for top-p; ties rank by ascending id. */
function reference(logits: Float32Array, c: GenerationConfig): boolean[] {
  const V = logits.length;
  let s = Array.from(logits, (x) => Math.fround(x / c.temperature));
  const finite = () => s.map((x) => x > -Infinity);
  const probs = () => {
    const m = s.reduce((a, x) => (x > a ? x : a), -Infinity);
    const w = s.map((x) => (x > -Infinity ? Math.exp(x - m) : 0));
    const z = w.reduce((a, b) => a + b, 0);
    return w.map((x) => x / z);
  };
  if (c.top_k > 0) {
    const k = Math.min(Math.max(c.top_k, 1), V);
    const thr = [...s].sort((a, b) => b - a)[k - 1];
    s = s.map((x) => (x < thr ? -Infinity : x));
  }
  if (c.top_p < 1) {
    const p = probs();
    // ascending by score; among ties the higher id comes first (so the lower id ranks higher)
    const asc = [...s.keys()].sort((a, b) => s[a] - s[b] || b - a);
    let cum = 0;
    const remove = new Set<number>();
    for (const i of asc) { cum += p[i]; if (cum <= 1 - c.top_p) remove.add(i); }
    remove.delete(asc[V - 1]);
    s = s.map((x, i) => (remove.has(i) ? -Infinity : x));
  }
  if (c.min_p != null) {
    const p = probs();
    const top = p.reduce((a, x) => (x > a ? x : a), 0);
    const arg = p.indexOf(top);
    s = s.map((x, i) => (i !== arg && p[i] < c.min_p! * top ? -Infinity : x));
  }
  if (c.typical_p < 1) {
    const p = probs();
    const logp = p.map((x) => Math.log(x));
    const ent = -p.reduce((a, x, i) => a + (x > 0 ? x * logp[i] : 0), 0);
    const shifted = logp.map((l) => Math.abs(-l - ent));
    const order = [...s.keys()].sort((a, b) => shifted[a] - shifted[b] || a - b);
    let cum = 0, last = 0;
    for (const i of order) { cum += p[i]; if (cum < c.typical_p) last++; }
    last = Math.min(last, V - 1);
    const limit = shifted[order[last]];
    s = s.map((x, i) => (i !== order[0] && shifted[i] > limit ? -Infinity : x));
  }
  return finite().map((f, i) => f && s[i] > -Infinity);
}

function randomRow(r: () => number, V: number, kind: number): Float32Array {
  const scale = [1, 3, 12, 40][kind % 4];
  const out = new Float32Array(V);
  for (let i = 0; i < V; i++) {
    let x = (r() + r() + r() - 1.5) * scale;
    if (kind >= 4) x = Math.round(x * 2) / 2;          // coarse values: many exact ties
    out[i] = x;
  }
  if (r() < 0.3) out[Math.floor(r() * V)] += 8;      // a dominant token now and then
  return out;
}

test("kept sets equal a full-sort implementation of HF's formulas on random rows (ties, full vocabulary, after top-k)", () => {
  const r = mulberry32(2024);
  const configs: Partial<GenerationConfig>[] = [
    { top_p: 0.9 }, { top_p: 0.5 }, { top_p: 0.99 }, { top_p: 0.3, temperature: 0.7 },
    { top_k: 10 }, { top_k: 10, top_p: 0.8 }, { top_k: 40, top_p: 0.95, temperature: 1.3 },
    { min_p: 0.05 }, { min_p: 0.3, top_k: 20 }, { top_p: 0.9, min_p: 0.1 },
    { typical_p: 0.9 }, { typical_p: 0.4 }, { typical_p: 0.7, top_k: 30 }, { top_p: 0.95, typical_p: 0.8 },
  ];
  let checked = 0, narrowed = 0;
  for (const V of [7, 60, 3000]) {
    for (let kind = 0; kind < 8; kind++) {
      for (const o of configs) {
        const logits = randomRow(r, V, kind);
        const c = sample(o);
        const got = processLogits(logits.slice(), [], 0, c);
        const want = reference(logits, c);
        const gotSet = [...got.keys()].filter((i) => got[i] > -Infinity);
        const wantSet = [...want.keys()].filter((i) => want[i]);
        assert.deepEqual(gotSet, wantSet, `V=${V} kind=${kind} ${JSON.stringify(o)}`);
        checked++;
        if (wantSet.length < V) narrowed++;
        // survivors keep their (temperature-scaled) values
        for (const i of gotSet) assert.equal(got[i], Math.fround(logits[i] / c.temperature));
        // and chooseToken only ever picks among them
        const id = chooseToken(logits.slice(), [], 0, c, mulberry32(checked));
        assert.ok(want[id], `drew ${id}, which the filters remove`);
      }
    }
  }
  assert.equal(checked, 3 * 8 * configs.length);
  assert.ok(narrowed > checked * 0.8, `only ${narrowed}/${checked} rows were narrowed: the comparison is too weak`);
});

test("top-p and typical on a 152k vocabulary match the full-sort implementation", () => {
  const r = mulberry32(99);
  for (const kind of [0, 1, 2, 5]) {
    const logits = randomRow(r, 152000, kind);
    for (const o of [{ top_p: 0.9 }, { top_p: 0.2, temperature: 0.6 }, { typical_p: 0.9 }, { typical_p: 0.3 }]) {
      const c = sample(o);
      const got = kept(processLogits(logits.slice(), [], 0, c));
      const want = reference(logits, c);
      assert.deepEqual(got, [...want.keys()].filter((i) => want[i]), `kind=${kind} ${JSON.stringify(o)}`);
    }
  }
});

// ---- draws ----

test("a fixed seed reproduces the same draws; another seed does not", () => {
  const r = mulberry32(5);
  const logits = Float32Array.from({ length: 500 }, () => r() * 4);
  const run = (seed: number, o: Partial<GenerationConfig>) => {
    const rand = mulberry32(seed);
    return Array.from({ length: 60 }, () => chooseToken(logits.slice(), [], 0, sample(o), rand));
  };
  for (const o of [{}, { top_k: 50 }, { top_p: 0.9, temperature: 0.8 }, { min_p: 0.2 }, { typical_p: 0.9 }]) {
    assert.deepEqual(run(42, o), run(42, o));
    assert.notDeepEqual(run(42, o), run(43, o));
  }
  // exactly one uniform per sampled token
  let calls = 0;
  const counting = mulberry32(1);
  for (let i = 0; i < 10; i++) chooseToken(logits.slice(), [], 0, sample({ top_k: 20 }), () => { calls++; return counting(); });
  assert.equal(calls, 10);
});

test("draw picks by cumulative weight in id order: u just below / above a boundary", () => {
  // survivors 0 and 1 with p = 0.745911 / 0.254089 (TV2)
  const c = sample({ repetition_penalty: 1.3, temperature: 0.5, top_k: 3, top_p: 0.8 });
  const at = (u: number) => chooseToken(row([2.0, 1.0, 0.5, -1.0]), [0, 3], 2, c, () => u);
  assert.equal(at(0), 0);
  assert.equal(at(0.7459), 0);
  assert.equal(at(0.7460), 1);
  assert.equal(at(0.999999), 1);
});

/** Draws n tokens, each with its own seed, and checks only `allowed` appears with about the expected frequency. */
function checkFrequencies(logits: number[], o: Partial<GenerationConfig>, allowed: number[], n = 20000) {
  const c = sample(o);
  const counts = new Map<number, number>();
  for (let seed = 0; seed < n; seed++) {
    const id = chooseToken(row(logits), [], 0, c, mulberry32(seed * 7919 + 1));
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  assert.deepEqual([...counts.keys()].sort((a, b) => a - b), allowed, `${JSON.stringify(o)}: drawn ${[...counts.keys()]}`);
  const scaled = logits.map((x) => x / c.temperature);
  const w = allowed.map((i) => Math.exp(scaled[i]));
  const z = w.reduce((a, b) => a + b, 0);
  allowed.forEach((id, j) => {
    const p = w[j] / z, f = counts.get(id)! / n;
    const sigma = Math.sqrt((p * (1 - p)) / n);
    assert.ok(Math.abs(f - p) < 5 * sigma + 1e-3, `${JSON.stringify(o)} id ${id}: frequency ${f} vs p ${p}`);
  });
}

test("sampled frequencies: only the allowed tokens appear, in proportion to their renormalised probabilities", () => {
  const logits = [0.4, 0.25, 0.15, 0.1, 0.06, 0.04].map(Math.log);
  checkFrequencies(logits, {}, [0, 1, 2, 3, 4, 5]);
  checkFrequencies(logits, { top_k: 4 }, [0, 1, 2, 3]);
  checkFrequencies(logits, { top_p: 0.6 }, [0, 1]);             // mass above id 2 is 0.65 >= 0.6
  checkFrequencies(logits, { top_p: 0.7 }, [0, 1, 2]);          // 0.65 < 0.7 keeps it
  checkFrequencies(logits, { min_p: 0.3 }, [0, 1, 2]);          // p >= 0.12
  checkFrequencies(logits, { temperature: 0.5, top_k: 3 }, [0, 1, 2]);
});

test("speed on a 152k vocabulary: greedy is one pass, the default sampler works on the top-k survivors", () => {
  const r = mulberry32(3);
  const V = 152000;
  // a peaked, LM-like row: most logits low, a few dozen high
  const base = Float32Array.from({ length: V }, () => (r() + r() + r() - 1.5) * 3);
  for (let j = 0; j < 40; j++) base[Math.floor(r() * V)] += 10 + r() * 5;
  const time = (c: GenerationConfig) => {
    const rand = mulberry32(1);
    const l = new Float32Array(V);
    for (let i = 0; i < 3; i++) { l.set(base); chooseToken(l, [1, 2, 3], 3, c, rand); }   // warm up
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) { l.set(base); chooseToken(l, [1, 2, 3], 3, c, rand); }
    return (performance.now() - t0) / 20;
  };
  // generous bounds (shared CI machines); the point is that nothing sorts 152k entries per step
  assert.ok(time(cfg()) < 15, "greedy");
  assert.ok(time(sample({ top_k: 50, top_p: 0.9, temperature: 0.7 })) < 30, "top-k + top-p");
  assert.ok(time(sample({ top_p: 0.9 })) < 60, "top-p on the full vocabulary");
  assert.ok(time(sample({ typical_p: 0.9 })) < 60, "typical on the full vocabulary");
});
