// KV-cache decoding in the native core against the model's own full forward, on the tiny Llama (untied),
// Qwen2 (q/k/v bias, tied) and Qwen3 (q/k norm) checkpoints, with and without their LoRA adapters:
// every greedy token is the argmax of a full forward over prompt + generated, its log-prob from the cached
// logits equals the full forward's, and each row of a batch of prompts of different lengths equals its own
// batch-of-one run; sliding-window layers, whose cache is a ring of the window plus 127 positions, decode past
// several wraps of it (prefill in chunks, pieces of every size, two rows at different positions) as the full forward
// computes. Also the refusals of the native decode call.
import { test } from "node:test";
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { NativeModel, setNumThreads } from "../../src/core/native.ts";
import { argmax, greedyIds } from "../../src/generate/greedy.ts";
import { loadWeightsInto, readModelDir } from "../../src/models/checkpoint.ts";
import { loadAdapter } from "../../src/models/peft.ts";
import { mulberry32 } from "../../src/util/random.ts";

const fixtures = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures");
setNumThreads(2);

function load(name: string, lora: boolean): NativeModel {
  const dir = join(fixtures, "core", name);
  const model = new NativeModel(readModelDir(dir).config);
  loadWeightsInto(dir, model.table, model.params);
  if (lora) loadAdapter(join(fixtures, "lora", `${name}-adapter`), model);
  return model;
}

function prompts(V: number, lengths: number[], seed: number): number[][] {
  const r = mulberry32(seed);
  return lengths.map((n) => Array.from({ length: n }, () => Math.floor(r() * V)));
}

function logSoftmaxAt(x: Float32Array, i: number): number {
  let m = -Infinity;
  for (const v of x) m = Math.max(m, v);
  let s = 0;
  for (const v of x) s += Math.exp(v - m);
  return x[i] - m - Math.log(s);
}

const NEW = 12;
for (const name of ["llama-tiny", "qwen2-tiny", "qwen3-tiny"]) {
  for (const lora of [false, true]) {
    test(`${name}${lora ? " + LoRA" : ""}: cached greedy decoding equals the full forward, token for token`, (t) => {
      const model = load(name, lora);
      try {
        const V = model.config.vocabSize;
        const ps = prompts(V, [5, 1, 17, 9], 11);
        const batch = greedyIds(model, ps, NEW);
        let worst = 0;
        ps.forEach((p, i) => {
          // the row alone
          assert.deepEqual(greedyIds(model, [p], NEW)[0], batch[i], `row ${i} differs from its batch-of-one run`);
          // the full forward over prompt + generated: every generated token is its argmax and has its log-prob
          const seq = [...p, ...batch[i]];
          const T = seq.length;
          const st = model.forward({ ids: Int32Array.from(seq), lengths: Int32Array.of(T), B: 1, T }, { train: false });
          for (let j = p.length; j < T; j++) assert.equal(st.correct[j], 1, `row ${i}: token ${j} is not the argmax of the full forward`);
          // the cached logits of each step, replayed one token at a time, give the same log-probs
          const cache = model.kvCache(1, T);
          try {
            let logits = model.decode(cache, Int32Array.of(0), Int32Array.from(p), Int32Array.of(p.length), p.length);
            for (let j = p.length; j < T; j++) {
              assert.equal(argmax(logits), seq[j]);
              worst = Math.max(worst, Math.abs(logSoftmaxAt(logits, seq[j]) - st.logps[j]));
              if (j + 1 < T) logits = model.decode(cache, Int32Array.of(0), Int32Array.of(seq[j]), Int32Array.of(1), 1);
            }
            assert.equal(cache.length(0), T - 1);
          } finally {
            cache.free();
          }
        });
        assert.ok(worst < 1e-5, `cached log-probs differ from the full forward by ${worst}`);
        t.diagnostic(`max |logp cached - full| = ${worst.toExponential(2)}`);
      } finally {
        model.free();
      }
    });
  }
}

test("LoRA on and off: adapters: false decodes as the base model", () => {
  const withLora = load("llama-tiny", true);
  const base = load("llama-tiny", false);
  try {
    const ps = prompts(base.config.vocabSize, [6, 10], 3);
    assert.deepEqual(greedyIds(withLora, ps, NEW, { adapters: false }), greedyIds(base, ps, NEW));
  } finally {
    withLora.free();
    base.free();
  }
});

test("a merged LoRA model decodes like the model with its adapter", () => {
  const model = load("qwen3-tiny", true);
  try {
    const ps = prompts(model.config.vocabSize, [4, 13, 8], 5);
    const before = greedyIds(model, ps, NEW);
    model.mergeLora();
    assert.deepEqual(greedyIds(model, ps, NEW), before);
  } finally {
    model.free();
  }
});

test("a prefill appended in pieces equals one prefill (chat turns reuse the cache)", () => {
  const model = load("qwen2-tiny", false);
  try {
    const V = model.config.vocabSize;
    const [p] = prompts(V, [14], 9);
    const one = model.kvCache(1, 32), two = model.kvCache(1, 32);
    try {
      const a = model.decode(one, Int32Array.of(0), Int32Array.from(p), Int32Array.of(14), 14);
      model.decode(two, Int32Array.of(0), Int32Array.from(p.slice(0, 6)), Int32Array.of(6), 6);
      const b = model.decode(two, Int32Array.of(0), Int32Array.from(p.slice(6)), Int32Array.of(8), 8);
      let d = 0;
      for (let i = 0; i < V; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
      assert.ok(d < 1e-5, `logits differ by ${d}`);
      two.reset(0);
      assert.equal(two.length(0), 0);
    } finally {
      one.free();
      two.free();
    }
  } finally {
    model.free();
  }
});

// Mistral with an 8-token window on every layer, and Gemma 2 (window 8 on alternate layers, soft-caps): a cache
// of 256 positions holds rings of 135 on those layers; 250-token rows wrap them.
for (const [dir, what] of [["window/mistral-window", "every layer"], ["family/gemma2", "alternate layers"]]) {
  test(`sliding window on ${what}: the ring cache decodes 250 tokens in pieces as the full forward computes`, (t) => {
    const path = join(fixtures, dir);
    const model = new NativeModel(readModelDir(path).config);
    loadWeightsInto(path, model.table, model.params);
    try {
      const V = model.config.vocabSize, T = 250;
      const seqs = prompts(V, [T, T], 21);
      const cache = model.kvCache(2, 256);
      try {
        // row 0: a 200-token prefill (two chunks of 128 and 72) then pieces of 1..13 tokens; row 1 starts 37 tokens behind
        const pieces = (start: number): number[][] => {
          const out: number[][] = [];
          for (let at = start, k = 1; at < T; at += k, k = (k % 13) + 1) out.push([at, Math.min(T, at + k)]);
          return out;
        };
        let worst = 0;
        for (const [row, first] of [[0, 200], [1, 163]] as const) {
          const full = model.forward({ ids: Int32Array.from(seqs[row]), lengths: Int32Array.of(T), B: 1, T }, { train: false }).logps;
          for (const [a, b] of [[0, first], ...pieces(first)]) {
            const logits = model.decode(cache, Int32Array.of(row), Int32Array.from(seqs[row].slice(a, b)), Int32Array.of(b - a), b - a);
            if (b < T) worst = Math.max(worst, Math.abs(logSoftmaxAt(logits, seqs[row][b]) - full[b]));
          }
          assert.equal(cache.length(row), T);
        }
        assert.ok(worst < 1e-5, `ring-cache log-probs differ from the full forward by ${worst}`);
        t.diagnostic(`max |logp cached - full| = ${worst.toExponential(2)} over two rows of ${T} tokens`);
      } finally {
        cache.free();
      }
    } finally {
      model.free();
    }
  });
}

test("decode refuses bad input with the numbers", () => {
  const model = load("llama-tiny", false);
  const maxPos = model.config.maxPositionEmbeddings;
  try {
    assert.throws(() => model.kvCache(1, maxPos + 1), /max_position_embeddings/);
    const cache = model.kvCache(2, 8);
    try {
      const one = Int32Array.of(1);
      assert.throws(() => model.decode(cache, Int32Array.of(2), one, one, 1), /outside the cache/);
      assert.throws(() => model.decode(cache, Int32Array.of(0, 0), Int32Array.of(1, 1), Int32Array.of(1, 1), 1), /given twice/);
      assert.throws(() => model.decode(cache, Int32Array.of(0), Int32Array.of(model.config.vocabSize), one, 1), /vocab_size/);
      assert.throws(() => model.decode(cache, Int32Array.of(0), new Int32Array(9), Int32Array.of(9), 9), /8 positions/);
      assert.throws(() => model.decode(cache, Int32Array.of(0), one, Int32Array.of(0), 1), /between 1 and T/);
      cache.free();
      assert.throws(() => cache.length(0), /after free/);
    } finally {
      cache.free();
    }
  } finally {
    model.free();
  }
});
