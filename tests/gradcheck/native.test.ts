// Finite-difference gradient checks of every native op family (run in C++ on the fp64 instantiation
// of the same templates the fp32 model uses; see native/src/gradcheck.cpp).
import { test } from "node:test";
import assert from "node:assert/strict";
import { native } from "../../src/core/native.ts";

// rope_scaled: yarn's tables (cos and sin times its attention factor). lora: a frozen base linear plus a two-member
// LoRA group; head_input: the frozen head LoRA training uses; lora_dropout, dora, dora_dropout: one member on the
// member-wise path (dora.h), DoRA's row norm held constant. attention_window: a sliding window of 5 keys over a
// 133-token sequence (two 128-row blocks) and a 6-token one; attention_softcap: that window with a score scale
// of 0.3 and scores soft-capped at 1.5 (Gemma 2). The families' ops: Gemma's (1 + w) RMSNorm, LayerNorm with its
// bias, RoPE over the first half of each head (partial rotary), the MLP activations gated (swiglu, geglu_tanh) and
// plain (gelu_tanh, gelu, relu), and the head with lm_head's bias and a logit soft-cap.
const OPS = ["rmsnorm", "rmsnorm_inplace", "rmsnorm_unit_offset", "layernorm", "layernorm_inplace", "rope", "rope_scaled",
  "rope_partial", "attention", "attention_window", "attention_softcap", "swiglu", "geglu_tanh", "gelu_tanh", "gelu", "relu",
  "linear", "head", "head_bias_softcap", "embedding", "lora", "head_input", "lora_dropout", "dora", "dora_dropout"];

for (const op of OPS) {
  test(`${op}: analytic gradient equals central differences`, () => {
    for (const seed of [1, 2]) {
      const err = native().gradcheck(op, seed);
      assert.ok(err >= 0, `unknown op ${op}`);
      assert.ok(err < 1e-6, `${op} (seed ${seed}): relative gradient error ${err}`);
    }
  });
}

test("DoRA's row norms ‖W + s·B·A‖ equal the plain computation", () => {
  for (const seed of [1, 2]) assert.ok(native().gradcheck("dora_norm", seed) < 1e-12, "dora_norm");
});

test("LoRA dropout keeps about 1 - p of the elements, each scaled by 1 / (1 - p)", () => {
  const err = native().gradcheck("dropout_stats", 0);
  assert.ok(err < 0.01, `kept fraction off by ${err} (or a kept element not scaled by 1 / (1 - p))`);
});

test("an unknown op is reported, not silently passed", () => {
  assert.ok(native().gradcheck("no-such-op", 1) < 0);
});
