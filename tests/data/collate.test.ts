// Collation against TRL's own collator test vectors (DataCollatorForPreference, DataCollatorForUnpairedPreference
// docstring), the KL rotation, and the seeded batch sampler. Pure data: no tokenizer.
import { test } from "node:test";
import assert from "node:assert/strict";
import { batchIndices, collatePairs, collateUnpaired, pairLengths, withKlCompletions } from "../../src/data/index.ts";
import type { TokenBatch } from "../../src/core/types.ts";

/** (B, T) rows of a flat array, for comparing with TRL's nested lists. */
const rows2d = (a: ArrayLike<number>, B: number, T: number) => Array.from({ length: B }, (_, b) => Array.from(a).slice(b * T, (b + 1) * T));
/** TRL's attention_mask, rebuilt from lengths. */
const attention = (x: TokenBatch) => Array.from({ length: x.B }, (_, b) => Array.from({ length: x.T }, (_, t) => (t < x.lengths[b] ? 1 : 0)));

test("collatePairs reproduces TRL's DataCollatorForPreference test vectors", () => {
  const { batch, completionMask } = collatePairs([
    { prompt_ids: [1, 2, 3], chosen_ids: [4, 5], rejected_ids: [6] },
    { prompt_ids: [7, 8], chosen_ids: [9, 10], rejected_ids: [11, 12, 13] },
  ], { padTokenId: 0 });
  assert.deepEqual([batch.B, batch.T], [4, 5]);
  assert.deepEqual(rows2d(batch.ids, 4, 5), [[1, 2, 3, 4, 5], [7, 8, 9, 10, 0], [1, 2, 3, 6, 0], [7, 8, 11, 12, 13]]);
  assert.deepEqual(attention(batch), [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]);
  assert.deepEqual(rows2d(completionMask, 4, 5), [[0, 0, 0, 1, 1], [0, 0, 1, 1, 0], [0, 0, 0, 1, 0], [0, 0, 1, 1, 1]]);
  assert.ok(batch.ids instanceof Int32Array && batch.lengths instanceof Int32Array && completionMask instanceof Uint8Array);

  const padded = collatePairs([
    { prompt_ids: [1], chosen_ids: [2], rejected_ids: [3] },
    { prompt_ids: [4, 5], chosen_ids: [6, 7], rejected_ids: [8, 9] },
  ], { padTokenId: 0, padToMultipleOf: 5 });
  assert.equal(padded.batch.T, 5);
  assert.deepEqual(rows2d(padded.batch.ids, 4, 5), [[1, 2, 0, 0, 0], [4, 5, 6, 7, 0], [1, 3, 0, 0, 0], [4, 5, 8, 9, 0]]);
  assert.deepEqual(Array.from(padded.batch.lengths), [2, 4, 2, 4]);
});

test("collatePairs pads with the pad id given and rejects an empty batch", () => {
  const { batch } = collatePairs([{ prompt_ids: [5], chosen_ids: [6, 7, 8], rejected_ids: [9] }], { padTokenId: 151643 });
  assert.deepEqual(rows2d(batch.ids, 2, 4), [[5, 6, 7, 8], [5, 9, 151643, 151643]]);
  assert.throws(() => collatePairs([], { padTokenId: 0 }), /empty batch/);
});

test("collateUnpaired reproduces TRL's DataCollatorForUnpairedPreference docstring, with and without KL", () => {
  const plain = collateUnpaired([
    { prompt_ids: [1, 2, 3], completion_ids: [4, 5], label: true },
    { prompt_ids: [7, 8], completion_ids: [9], label: false },
  ], { padTokenId: 0 });
  assert.deepEqual(rows2d(plain.batch.ids, 2, 5), [[1, 2, 3, 4, 5], [7, 8, 9, 0, 0]]);
  assert.deepEqual(attention(plain.batch), [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]);
  assert.deepEqual(rows2d(plain.completionMask, 2, 5), [[0, 0, 0, 1, 1], [0, 0, 1, 0, 0]]);
  assert.deepEqual(plain.labels, [true, false]);
  assert.equal(plain.kl, undefined);

  // the docstring's KL example gives KL completions explicitly (TRL precomputes them at data-prep time)
  const withKl = collateUnpaired([
    { prompt_ids: [1, 2, 3], completion_ids: [4, 5], kl_completion_ids: [6], label: true },
    { prompt_ids: [7, 8], completion_ids: [9], kl_completion_ids: [10, 11], label: false },
  ], { padTokenId: 0, kl: true });
  assert.deepEqual(rows2d(withKl.batch.ids, 2, 5), [[1, 2, 3, 4, 5], [7, 8, 9, 0, 0]]);
  assert.deepEqual([withKl.kl!.batch.B, withKl.kl!.batch.T], [2, 4]);
  assert.deepEqual(rows2d(withKl.kl!.batch.ids, 2, 4), [[1, 2, 3, 6], [7, 8, 10, 11]]);
  assert.deepEqual(attention(withKl.kl!.batch), [[1, 1, 1, 1], [1, 1, 1, 1]]);
  assert.deepEqual(rows2d(withKl.kl!.completionMask, 2, 4), [[0, 0, 0, 1], [0, 0, 1, 1]]);
});

test("withKlCompletions pairs each prompt with the previous row's completion in its chunk (the first with the last); a chunk of one keeps its own; the collator needs them", () => {
  const rows = [
    { prompt_ids: [1], completion_ids: [10, 11], label: true },
    { prompt_ids: [2, 2], completion_ids: [20], label: false },
    { prompt_ids: [3], completion_ids: [30, 31, 32], label: true },
  ];
  const out = collateUnpaired(withKlCompletions(rows, 3), { padTokenId: 0, kl: true });
  assert.deepEqual(rows2d(out.kl!.batch.ids, 3, 4), [[1, 30, 31, 32], [2, 2, 10, 11], [3, 20, 0, 0]]);
  assert.deepEqual(rows2d(out.kl!.completionMask, 3, 4), [[0, 1, 1, 1], [0, 0, 1, 1], [0, 1, 0, 0]]);
  // odd batch: no row keeps its own completion (TRL issue #1911 came from reversing instead of rotating)
  for (let i = 0; i < 3; i++) assert.notDeepEqual(rows2d(out.kl!.batch.ids, 3, 4)[i].slice(rows[i].prompt_ids.length, rows[i].prompt_ids.length + rows[i].completion_ids.length), rows[i].completion_ids);
  assert.equal(collateUnpaired(rows, { padTokenId: 0 }).kl, undefined);
  assert.throws(() => collateUnpaired(rows, { padTokenId: 0, kl: true }), /row 0 of the batch has no kl_completion_ids.*withKlCompletions/);
  // chunks of the batch size: the last chunk of one row keeps its own completion (TRL maps _get_kl_dataset in batches)
  assert.deepEqual(withKlCompletions(rows, 2).map((r) => r.kl_completion_ids), [[20], [10, 11], [30, 31, 32]]);
});

test("batchIndices: every index once, deterministic per seed, different across seeds, dropLast", () => {
  const seq = batchIndices(10, { batchSize: 4, shuffle: false, seed: 0 });
  assert.deepEqual(seq, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]);
  assert.deepEqual(batchIndices(10, { batchSize: 4, shuffle: false, seed: 0, dropLast: true }), [[0, 1, 2, 3], [4, 5, 6, 7]]);
  const a = batchIndices(1000, { batchSize: 8, shuffle: true, seed: 42 });
  assert.deepEqual(a, batchIndices(1000, { batchSize: 8, shuffle: true, seed: 42 }));
  assert.notDeepEqual(a, batchIndices(1000, { batchSize: 8, shuffle: true, seed: 43 }));
  assert.deepEqual(a.flat().sort((x, y) => x - y), Array.from({ length: 1000 }, (_, i) => i));
  assert.notDeepEqual(a.flat(), Array.from({ length: 1000 }, (_, i) => i));
  assert.throws(() => batchIndices(5, { batchSize: 0, shuffle: false, seed: 0 }), /batchSize/);
});

test("batchIndices with groupByLength cuts padding, keeps every index, and puts the longest batch first", () => {
  const n = 2000;
  const lengths = Int32Array.from({ length: n }, (_, i) => 10 + ((i * 7919) % 997));
  const padding = (batches: number[][]) => batches.reduce((s, b) => s + b.length * Math.max(...b.map((i) => lengths[i])) - b.reduce((t, i) => t + lengths[i], 0), 0);
  const random = batchIndices(n, { batchSize: 8, shuffle: true, seed: 1 });
  const grouped = batchIndices(n, { batchSize: 8, shuffle: true, seed: 1, groupByLength: true, lengths });
  assert.deepEqual(grouped.flat().sort((x, y) => x - y), Array.from({ length: n }, (_, i) => i));
  assert.ok(padding(grouped) < padding(random) / 5, `padding ${padding(grouped)} vs ${padding(random)}`);
  assert.equal(Math.max(...grouped[0].map((i) => lengths[i])), Math.max(...lengths));
  assert.deepEqual(grouped, batchIndices(n, { batchSize: 8, shuffle: true, seed: 1, groupByLength: true, lengths }));
  assert.throws(() => batchIndices(3, { batchSize: 2, shuffle: false, seed: 0, groupByLength: true }), /needs lengths/);
  assert.deepEqual(Array.from(pairLengths([{ prompt_ids: [1, 2], chosen_ids: [3], rejected_ids: [4, 5, 6] }])), [5]);
});
