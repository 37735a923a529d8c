// The data-parallel arithmetic without MPI: which rows each rank reads of a global micro-batch, and how one
// micro-batch's losses and metrics of every rank combine into the one-process values.
import { test } from "node:test";
import assert from "node:assert/strict";
import { combineSteps, layerLayout, shardOf } from "../../src/parallel/shard.ts";

test("every row of a global micro-batch is read by exactly one rank, in contiguous parts, shares adding to 1", () => {
  for (const [n, world] of [[8, 2], [7, 2], [5, 4], [3, 4], [1, 3]]) {
    const global = Array.from({ length: n }, (_, i) => 100 + i);
    const parts = Array.from({ length: world }, (_, r) => shardOf(global, r, world));
    assert.deepEqual(parts.flatMap((p) => p.rows), global);
    assert.ok(Math.abs(parts.reduce((s, p) => s + p.weight, 0) - 1) < 1e-15);
    const sizes = parts.map((p) => p.rows.length);
    assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `${n} rows on ${world} ranks: ${sizes}`);
  }
  assert.deepEqual(shardOf([4, 5, 6, 7], 1, 2), { rows: [6, 7], weight: 0.5 });
});

test("combined loss is the global row mean; metrics weigh ranks by rows; KTO sides by their rows, margins recomputed", () => {
  // rank 0: 3 rows with loss 1, rank 1: 1 row with loss 5 → global mean (3·1 + 5)/4 = 2
  const g = combineSteps([
    { out: { loss: 1, metrics: { a: 2 }, tokens: 30 }, rows: 3, numel: 40 },
    { out: { loss: 5, metrics: { a: 6 }, tokens: 10 }, rows: 1, numel: 12 },
  ]);
  assert.equal(g.loss, 2);
  assert.equal(g.metrics.a, 3);
  assert.equal(g.tokens, 40);
  assert.equal(g.numel, 52);
  // KTO: rank 0 has 2 desirable rows (rewards/chosen 1) and no undesirable; rank 1 has 1 / 1
  const k = combineSteps([
    { out: { loss: 1, metrics: { kl: 0.5, "rewards/chosen": 1 }, tokens: 1 }, rows: 2, numel: 1, sides: { chosen: 2, rejected: 0 } },
    { out: { loss: 1, metrics: { kl: 0.5, "rewards/chosen": 4, "rewards/rejected": -1, "rewards/margins": 5 }, tokens: 1 }, rows: 2, numel: 1, sides: { chosen: 1, rejected: 1 } },
  ]);
  assert.equal(k.metrics["rewards/chosen"], 2);
  assert.equal(k.metrics["rewards/rejected"], -1);
  assert.equal(k.metrics["rewards/margins"], 3);
  assert.equal(k.metrics.kl, 0.5);
  // a rank without rows adds nothing
  const e = combineSteps([{ out: { loss: 2, metrics: { a: 1 }, tokens: 5 }, rows: 1, numel: 3 }, { out: null, rows: 0, numel: 0 }]);
  assert.equal(e.loss, 2);
  assert.equal(e.metrics.a, 1);
});

test("layer layout: each layer's contiguous range, the rest around them; null when a layer is split", () => {
  const p = (name: string, offset: number, size: number) => ({ name, offset, size, shape: [size], decay: true, quant4: false });
  const table = [p("model.embed_tokens.weight", 0, 10), p("model.layers.0.a", 10, 4), p("model.layers.0.b", 14, 2), p("model.layers.1.a", 16, 6), p("model.norm.weight", 22, 2)];
  const l = layerLayout({ table }, 26)!;
  assert.deepEqual(Array.from(l.ranges), [10, 16, 16, 22]);
  assert.deepEqual(Array.from(l.rest), [0, 10, 22, 26]);
  const split = [p("model.layers.0.a", 0, 4), p("model.norm.weight", 4, 2), p("model.layers.0.b", 6, 2)];
  assert.equal(layerLayout({ table: split }, 8), null);
  assert.equal(layerLayout({ table: [p("model.norm.weight", 0, 2)] }, 2), null);
});
