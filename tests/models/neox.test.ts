// GPT-NeoX's query_key_value row order: the checkpoint's per-head [q_h | k_h | v_h] blocks against the core's q | k | v
// stack, on a hand-built 2-head example, as transformers splits the fused output (view (heads, 3·HS), chunk in 3),
// round trips in both directions for weights, biases and bf16 bits, and the refusals.
import { test } from "node:test";
import assert from "node:assert/strict";
import { isNeoxQkv, isNeoxQkvAdapter, neoxQkvToStacked, stackedToNeoxQkv } from "../../src/models/neox.ts";
import { mulberry32 } from "../../src/util/random.ts";

test("a hand-built 2-head example: per-head [q0 k0 v0 q1 k1 v1] rows become [q0 q1 k0 k1 v0 v1], each row whole", () => {
  // NH = 2, HS = 2, C = 3: row names q0a q0b k0a k0b v0a v0b q1a q1b k1a k1b v1a v1b; row r holds 10r, 10r + 1, 10r + 2
  const hf = Float32Array.from({ length: 12 * 3 }, (_, i) => 10 * Math.floor(i / 3) + (i % 3));
  const stacked = neoxQkvToStacked(hf, 2, 2);
  const rowsOf = (a: Float32Array) => Array.from({ length: 12 }, (_, r) => Array.from(a.subarray(3 * r, 3 * r + 3)));
  const row = (r: number) => [10 * r, 10 * r + 1, 10 * r + 2];
  //           q0a     q0b     q1a     q1b     k0a     k0b     k1a     k1b     v0a     v0b     v1a      v1b
  assert.deepEqual(rowsOf(stacked), [row(0), row(1), row(6), row(7), row(2), row(3), row(8), row(9), row(4), row(5), row(10), row(11)]);
  assert.deepEqual(Array.from(stackedToNeoxQkv(stacked, 2, 2)), Array.from(hf));
  // the bias (one value a row) moves the same way
  const bias = Float32Array.from({ length: 12 }, (_, r) => r);
  assert.deepEqual(Array.from(neoxQkvToStacked(bias, 2, 2)), [0, 1, 6, 7, 2, 3, 8, 9, 4, 5, 10, 11]);
  assert.equal(hf[0], 0, "the input is not changed");
});

test("the stacked rows are what transformers computes: the fused output viewed as (heads, 3 · head_size) and chunked into q, k, v", () => {
  const NH = 3, HS = 4, C = 5, uniform = mulberry32(7);
  const W = Float32Array.from({ length: 3 * NH * HS * C }, () => uniform() - 0.5);
  const x = Float32Array.from({ length: C }, () => uniform() - 0.5);
  const y = (w: Float32Array) => Array.from({ length: 3 * NH * HS }, (_, r) => w.subarray(r * C, (r + 1) * C).reduce((s, v, c) => s + v * x[c], 0));
  const fused = y(W);                                   // (3·NH·HS) = (NH, 3·HS) per head
  const want: number[] = [];
  for (const part of [0, 1, 2]) for (let h = 0; h < NH; h++) want.push(...fused.slice(h * 3 * HS + part * HS, h * 3 * HS + (part + 1) * HS));
  assert.deepEqual(y(neoxQkvToStacked(W, NH, HS)), want);
});

test("round trips both ways for any heads, head size and width, in fp32 and in bf16 bits", () => {
  const uniform = mulberry32(3);
  for (const [NH, HS, C] of [[1, 2, 1], [2, 8, 3], [4, 16, 7], [12, 64, 1]]) {
    const w = Float32Array.from({ length: 3 * NH * HS * C }, () => uniform());
    assert.deepEqual(stackedToNeoxQkv(neoxQkvToStacked(w, NH, HS), NH, HS), w);
    assert.deepEqual(neoxQkvToStacked(stackedToNeoxQkv(w, NH, HS), NH, HS), w);
    if (NH > 1) assert.notDeepEqual(neoxQkvToStacked(w, NH, HS), w);
    const bits = Uint16Array.from(w, (v) => Math.floor(v * 65535));
    const out = neoxQkvToStacked(bits, NH, HS);
    assert.ok(out instanceof Uint16Array);
    assert.deepEqual(stackedToNeoxQkv(out, NH, HS), bits);
  }
  // one head: the orders agree
  const one = Float32Array.from({ length: 6 * 2 }, (_, i) => i);
  assert.deepEqual(neoxQkvToStacked(one, 1, 2), one);
});

test("lengths that are not 3 × heads × head size rows are refused; the tensor names it applies to", () => {
  assert.throws(() => neoxQkvToStacked(new Float32Array(10), 2, 2), /10 values are not 3 × 2 heads × 2 rows of equal length/);
  assert.throws(() => neoxQkvToStacked(new Float32Array(0), 2, 2), /0 values/);
  assert.throws(() => stackedToNeoxQkv(new Float32Array(12), 0, 2), /numHeads 0 and headSize 2 must be positive integers/);
  assert.ok(isNeoxQkv("gpt_neox.layers.11.attention.query_key_value.weight") && isNeoxQkv("gpt_neox.layers.0.attention.query_key_value.bias"));
  assert.ok(!isNeoxQkv("gpt_neox.layers.0.attention.dense.weight") && !isNeoxQkv("model.layers.0.self_attn.qkv_proj.weight"));
  assert.ok(isNeoxQkvAdapter("base_model.model.gpt_neox.layers.3.attention.query_key_value.lora_B.weight"));
  assert.ok(isNeoxQkvAdapter("base_model.model.gpt_neox.layers.3.attention.query_key_value.lora_magnitude_vector"));
  assert.ok(!isNeoxQkvAdapter("base_model.model.gpt_neox.layers.3.attention.query_key_value.lora_A.weight"));
});
