// A parameter buffer of 4 GiB or more (a 2B+ model held in bf16, or a 1B+ model in fp32): N-API views external
// memory only below 4 GiB, so the binding lets the core use a JavaScript ArrayBuffer as its storage. The core and
// the TypeScript view must see the same memory past the 4 GiB mark. The buffer is zero pages until written, so the
// test touches a few pages of two 4.9 GB buffers (bf16 and fp32), not gigabytes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { NativeModel } from "../../src/core/native.ts";
import type { DecoderConfig } from "../../src/core/types.ts";
import { bf16ToF32, f32ToBf16 } from "../../src/models/dtype.ts";

const base: DecoderConfig = {
  architecture: "LlamaForCausalLM", vocabSize: 1000, hiddenSize: 4096, intermediateSize: 11008, numLayers: 12, numHeads: 32,
  numKvHeads: 32, headDim: 128, rmsNormEps: 1e-5, ropeTheta: 10000, maxPositionEmbeddings: 64, tieWordEmbeddings: false,
  qkvBias: false, oBias: false, mlpBias: false, qkNorm: false, ropeScaling: null,
};

test("a bf16 base of 2.4B parameters (4.9 GB): the view and the core share the memory past 4 GiB", () => {
  const model = new NativeModel(base, { baseDtype: "bf16" });
  try {
    assert.ok(model.paramsBf16.length * 2 > 2 ** 32, "the buffer is over 4 GiB");
    const last = model.table.find((p) => p.name === "model.layers.11.mlp.down_proj.weight")!;
    assert.ok(last.offset * 2 > 2 ** 32, "the tensor lies past 4 GiB");
    const values = Float32Array.from({ length: last.size }, (_, i) => ((i % 97) - 48) / 64);
    model.paramBf16(last.name).set(f32ToBf16(values));
    assert.deepEqual(model.dequantize(last.name), bf16ToF32(f32ToBf16(values)), "the core reads what the view wrote");
  } finally {
    model.free();
  }
});

test("an fp32 model of 1.2B parameters (4.9 GB): the core writes what the view reads past 4 GiB", () => {
  const model = new NativeModel({ ...base, numLayers: 6 });
  try {
    assert.ok(model.params.length * 4 > 2 ** 32, "the buffer is over 4 GiB");
    const head = model.table.find((p) => p.name === "lm_head.weight")!;
    assert.ok(head.offset * 4 > 2 ** 32, "the tensor lies past 4 GiB");
    const values = Float32Array.from({ length: head.size }, (_, i) => Math.sin(i));
    model.writeTensor(head.name, values, 0);
    assert.deepEqual(model.param(head.name), values);
  } finally {
    model.free();
  }
});
