// SFT packing: TRL's bfd / bfd_split / wrapped layouts (the pack_dataset docstring example as a vector), bins
// within max_length, every example exactly once, wrapped chunk lengths and masks, blocks of 1000 rows, and the
// point of the representation: on the real native model, every token's log-prob in a packed batch equals its
// log-prob with the rows unpacked (no attention across segments, positions from 0 per segment).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { NativeModel } from "../../src/core/native.ts";
import { collatePacked, collateUnpaired, maskedFromRow, packedLengths, packRows, type PackedRow, type TokenizedUnpaired } from "../../src/data/index.ts";
import { sftLoss } from "../../src/losses/sft.ts";
import { loadWeightsInto, readModelDir } from "../../src/models/checkpoint.ts";
import { makeTinyModel, scratch } from "../helpers/tiny-model.ts";
import { seededRandom } from "../../src/data/sampler.ts";

const row = (ids: number[], promptLen = 0, mask?: number[]): TokenizedUnpaired => {
  const r: TokenizedUnpaired = { prompt_ids: ids.slice(0, promptLen), completion_ids: ids.slice(promptLen), label: true };
  if (mask) r.completion_mask = mask;
  return r;
};
const ids = (p: PackedRow) => p.segments.map((g) => [...g.prompt_ids, ...g.completion_ids]);

/** n random rows of 1..maxLen tokens (ids 3..V-1), some with a prompt, some with a completion_mask. */
function randomRows(n: number, maxLen: number, seed: number, V = 96): TokenizedUnpaired[] {
  const rand = seededRandom(seed);
  return Array.from({ length: n }, (_, i) => {
    const len = 1 + Math.floor(rand() * maxLen);
    const t = Array.from({ length: len }, () => 3 + Math.floor(rand() * (V - 3)));
    const p = i % 3 === 0 ? Math.floor(len / 2) : 0;
    const mask = i % 5 === 0 && len - p > 1 ? Array.from({ length: len - p }, (_, k) => (k % 2 ? 0 : 1)) : undefined;
    return row(t, p, mask);
  });
}

test("TRL's pack_dataset example: bfd truncates, bfd_split splits, bins in creation order", () => {
  const rows = [row([1, 2, 3, 4, 5]), row([6, 7]), row([8, 9, 10]), row([11])];
  const bfd = packRows(rows, { max_length: 4 });
  assert.deepEqual(bfd.rows.map(ids), [[[1, 2, 3, 4]], [[8, 9, 10], [11]], [[6, 7]]]);
  assert.deepEqual([bfd.stats.strategy, bfd.stats.tokensCut, bfd.stats.packedRows, bfd.stats.segments], ["bfd", 1, 3, 4]);
  const split = packRows(rows, { max_length: 4, packing_strategy: "bfd_split" });
  assert.deepEqual(split.rows.map(ids), [[[1, 2, 3, 4]], [[8, 9, 10], [5]], [[6, 7], [11]]]);
  assert.equal(packRows(rows, { max_length: 4, packing_strategy: "bfd-requeue" }).stats.strategy, "bfd_split");
  const wrapped = packRows(rows, { max_length: 4, packing_strategy: "wrapped" });
  assert.deepEqual(wrapped.rows.map(ids), [[[1, 2, 3, 4]], [[5, 6, 7, 8]], [[9, 10, 11]]]);
  assert.throws(() => packRows(rows, { max_length: 4, packing_strategy: "first_fit" as never }), /packing_strategy must be one of bfd, bfd_split, wrapped/);
  assert.throws(() => packRows(rows, { max_length: 0 }), /packing needs max_length/);
});

test("bfd: every bin fits max_length, every example exactly once, close to the fewest bins", () => {
  const L = 64;
  const rows = randomRows(700, L, 5);
  const { rows: packed, stats } = packRows(rows, { max_length: L });
  const seen = new Map<TokenizedUnpaired, number>();
  for (const p of packed) {
    assert.ok(p.segments.length >= 1);
    assert.ok(p.segments.reduce((n, g) => n + g.prompt_ids.length + g.completion_ids.length, 0) <= L);
    for (const g of p.segments) seen.set(g, (seen.get(g) ?? 0) + 1);
  }
  assert.equal(seen.size, rows.length);
  for (const r of rows) assert.equal(seen.get(r), 1, "each row once, as itself (masks and prompt kept)");
  const total = rows.reduce((n, r) => n + r.prompt_ids.length + r.completion_ids.length, 0);
  assert.equal(stats.tokens, total);
  assert.ok(packed.length <= Math.ceil(total / L) * 1.1 + 1, `${packed.length} bins for ${total} tokens`);
  assert.deepEqual([...packedLengths(packed)].reduce((a, b) => a + b, 0), total);
  // blocks of 1000 rows are packed separately (datasets' map batches); blockSize changes that
  const big = randomRows(2500, L, 6);
  const perBlock = packRows(big, { max_length: L });
  const firstBlock = new Set(big.slice(0, 1000));
  for (const p of perBlock.rows) {
    const inFirst = p.segments.map((g) => firstBlock.has(g));
    assert.ok(inFirst.every((x) => x === inFirst[0]), "no bin mixes rows of two blocks");
  }
  assert.ok(packRows(big, { max_length: L, blockSize: 5000 }).rows.length <= perBlock.rows.length);
  // shuffle_dataset: the rows shuffled with the seed before packing (same seed, same bins)
  const sh = (seed: number) => packRows(rows, { max_length: L, shuffle_dataset: true, seed }).rows.map(ids);
  assert.deepEqual(sh(1), sh(1));
  assert.notDeepEqual(sh(1), packed.map(ids));
  assert.equal(sh(2).flat().length, rows.length);
});

test("wrapped: chunks of exactly max_length (the last of each block shorter), tokens and masks in order", () => {
  const L = 16;
  const rows = randomRows(40, 20, 9);
  const { rows: packed } = packRows(rows, { max_length: L, packing_strategy: "wrapped" });
  const flat = rows.map(maskedFromRow);
  const allIds = flat.flatMap((m) => m.ids), allMask = flat.flatMap((m) => m.mask);
  assert.equal(packed.length, Math.ceil(allIds.length / L));
  packed.forEach((p, i) => {
    assert.equal(p.segments.length, 1);
    const m = maskedFromRow(p.segments[0]);
    assert.equal(m.ids.length, i < packed.length - 1 ? L : allIds.length - L * (packed.length - 1));
    assert.deepEqual(m.ids, allIds.slice(i * L, i * L + m.ids.length));
    assert.deepEqual(m.mask, allMask.slice(i * L, i * L + m.ids.length));
  });
});

test("collatePacked: one batch row per segment, column 0 of each never trained, rows say their packed row", () => {
  const packed: PackedRow[] = [{ segments: [row([5, 6, 7]), row([8, 9], 1)] }, { segments: [row([10, 11, 12, 13], 0, [1, 0, 1, 1])] }];
  const b = collatePacked(packed, { padTokenId: 0 });
  assert.deepEqual([b.batch.B, b.batch.T, [...b.batch.lengths], [...b.rows]], [3, 4, [3, 2, 4], [0, 0, 1]]);
  assert.deepEqual([...b.completionMask], [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1, 1]);
  assert.deepEqual(b.labels, [true, true, true]);
});

let tmp: ReturnType<typeof scratch>;
let model: NativeModel;
before(() => {
  tmp = scratch();
  const dir = makeTinyModel(join(tmp.dir, "model"), { vocab: 96, hidden: 32, layers: 2, heads: 4, kvHeads: 2, seed: 4, std: 0.2, maxPositions: 128 });
  model = new NativeModel(readModelDir(dir).config);
  loadWeightsInto(dir, model.table, model.params);
});
after(() => { model?.free(); tmp.cleanup(); });

test("real model: log-probs of packed rows equal those of the same rows unpacked (within 1e-5), and so does the SFT loss", () => {
  const L = 48;
  const rows = randomRows(24, 30, 12);
  const { rows: packed } = packRows(rows, { max_length: L });
  assert.ok(packed.some((p) => p.segments.length >= 3), "some packed rows hold several examples");
  // one packed batch of 4 packed rows, against the same examples each forwarded alone
  const batchRows = packed.slice(0, 4);
  const pb = collatePacked(batchRows, { padTokenId: 0 });
  const pst = model.forward(pb.batch, { train: false });
  const segs = batchRows.flatMap((p) => p.segments);
  let worst = 0, compared = 0;
  segs.forEach((g, s) => {
    const alone = collateUnpaired([g], { padTokenId: 0 });
    const ast = model.forward(alone.batch, { train: false });
    const n = alone.batch.lengths[0];
    assert.equal(pb.batch.lengths[s], n);
    for (let t = 1; t < n; t++) {
      worst = Math.max(worst, Math.abs(pst.logps[s * pb.batch.T + t] - ast.logps[t]));
      compared++;
    }
  });
  assert.ok(compared > 50);
  assert.ok(worst < 1e-5, `max |Δ logp| ${worst}`);
  // the token-mean SFT loss of the packed batch is that of the same examples as an ordinary batch
  const ub = collateUnpaired(segs, { padTokenId: 0 });
  const ust = model.forward(ub.batch, { train: false });
  const lp = sftLoss(pst.logps, pb.completionMask, pb.batch.B, pb.batch.T);
  const lu = sftLoss(ust.logps, ub.completionMask, ub.batch.B, ub.batch.T);
  assert.equal(lp.tokens, lu.tokens);
  assert.ok(Math.abs(lp.loss - lu.loss) < 1e-6, `${lp.loss} vs ${lu.loss}`);
  // and a packed segment is not the same as the examples concatenated into one row (that would attend across)
  const joined = row(segs.slice(0, 2).flatMap((g) => [...g.prompt_ids, ...g.completion_ids]));
  const jst = model.forward(collateUnpaired([joined], { padTokenId: 0 }).batch, { train: false });
  const n0 = segs[0].prompt_ids.length + segs[0].completion_ids.length;
  assert.ok(Math.abs(jst.logps[n0 + 1] - pst.logps[pb.batch.T + 1]) > 1e-4, "a real model whose second example depends on context");
});
