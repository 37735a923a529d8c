// Finite-difference gradient checks of every native op family (run in C++ on the fp64 instantiation
// of the same templates the fp32 model uses; see native/src/gradcheck.cpp).
import { test } from "node:test";
import assert from "node:assert/strict";
import { native } from "../../src/core/native.ts";

// rope_scaled: yarn's tables (cos and sin times its attention factor). lora: a frozen base linear plus a two-member LoRA group; head_input: the frozen head LoRA training uses.
const OPS = ["rmsnorm", "rmsnorm_inplace", "rope", "rope_scaled", "attention", "swiglu", "linear", "head", "embedding", "lora", "head_input"];

for (const op of OPS) {
  test(`${op}: analytic gradient equals central differences`, () => {
    for (const seed of [1, 2]) {
      const err = native().gradcheck(op, seed);
      assert.ok(err >= 0, `unknown op ${op}`);
      assert.ok(err < 1e-6, `${op} (seed ${seed}): relative gradient error ${err}`);
    }
  });
}

test("an unknown op is reported, not silently passed", () => {
  assert.ok(native().gradcheck("no-such-op", 1) < 0);
});
