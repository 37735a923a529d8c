// GPT-NeoX's query_key_value row order (per head [q_h | k_h | v_h]) against the core's q|k|v-stacked rows: a
// hand-written case, the round trip at several widths, and the refusal of a length that is not 3·NH·HS rows.
import { test } from "node:test";
import assert from "node:assert/strict";
import { neoxQkvToStacked, stackedToNeoxQkv } from "../../src/models/neox.ts";

test("per-head [q|k|v] rows become q|k|v-stacked rows, and back", () => {
  // 2 heads of 2, one column: checkpoint rows q0 q0' k0 k0' v0 v0' q1 q1' k1 k1' v1 v1'
  const neox = Float32Array.of(0, 1, 10, 11, 20, 21, 2, 3, 12, 13, 22, 23);
  const stacked = Float32Array.of(0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23);
  assert.deepEqual(neoxQkvToStacked(neox, 2, 2), stacked);
  assert.deepEqual(stackedToNeoxQkv(stacked, 2, 2), neox);
  // two columns: whole rows move
  const wide = Float32Array.from([...neox].flatMap((v) => [v, -v]));
  assert.deepEqual(neoxQkvToStacked(wide, 2, 2), Float32Array.from([...stacked].flatMap((v) => [v, -v])));
});

test("the two permutations are inverse at any width; a length that is not whole rows is refused", () => {
  for (const [nh, hs, cols] of [[4, 16, 64], [4, 16, 1], [3, 2, 4]]) {
    const x = Float32Array.from({ length: 3 * nh * hs * cols }, (_, i) => i);
    assert.deepEqual(stackedToNeoxQkv(neoxQkvToStacked(x, nh, hs), nh, hs), x);
    assert.notDeepEqual(neoxQkvToStacked(x, nh, hs), x);
  }
  assert.throws(() => neoxQkvToStacked(new Float32Array(10), 2, 2), /10 values are not rows of 3 × 2 heads × 2/);
});
