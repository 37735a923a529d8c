// Bad input to the native core is refused with the numbers, never silently clamped or crashed on.
import { test } from "node:test";
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { NativeModel } from "../../src/core/native.ts";
import { readModelDir } from "../../src/models/checkpoint.ts";

const dir = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "core", "llama-tiny");
const { config } = readModelDir(dir);

test("a sequence longer than max_position_embeddings is refused with both numbers", () => {
  const m = new NativeModel(config);
  const T = config.maxPositionEmbeddings + 1;
  const batch = { ids: new Int32Array(T), lengths: Int32Array.of(T), B: 1, T };
  assert.throws(() => m.forward(batch, { train: false }), new RegExp(`${T} tokens.*max_position_embeddings is ${config.maxPositionEmbeddings}`));
  m.free();
});

test("a token id outside the vocabulary names the row, position and vocab size", () => {
  const m = new NativeModel(config);
  const ids = Int32Array.of(1, 2, config.vocabSize, 3);
  assert.throws(() => m.forward({ ids, lengths: Int32Array.of(4), B: 1, T: 4 }, { train: false }),
    new RegExp(`token id ${config.vocabSize} at row 0, position 2 .*vocab_size = ${config.vocabSize}`));
  m.free();
});

test("a row length outside [0, T] is refused", () => {
  const m = new NativeModel(config);
  assert.throws(() => m.forward({ ids: new Int32Array(4), lengths: Int32Array.of(5), B: 1, T: 4 }, { train: false }), /row 0 has length 5 outside \[0, 4\]/);
  m.free();
});

test("backward without a training forward is an error, and after free() the model refuses work", () => {
  const m = new NativeModel(config);
  assert.throws(() => m.backward(new Float32Array(4)), /backward needs a forward with train = true/);
  m.forward({ ids: Int32Array.of(1, 2, 3, 4), lengths: Int32Array.of(4), B: 1, T: 4 }, { train: false });
  assert.throws(() => m.backward(new Float32Array(4)), /backward needs a forward with train = true/);
  m.free();
  assert.throws(() => m.zeroGrad(), /after free/);
});

test("padding rows and empty rows produce zeros and no gradient", () => {
  const m = new NativeModel(config);
  for (let i = 0; i < m.params.length; i++) m.params[i] = Math.sin(i) * 0.02;
  const T = 6;
  const ids = Int32Array.of(5, 6, 7, 8, 0, 0, /* row 1 empty */ 0, 0, 0, 0, 0, 0);
  const st = m.forward({ ids, lengths: Int32Array.of(4, 0), B: 2, T }, { train: true });
  assert.deepEqual([...st.logps.subarray(4, 12)].map(Math.abs), new Array(8).fill(0));
  assert.equal(st.logps[0], 0);
  for (let t = 1; t < 4; t++) assert.ok(st.logps[t] < 0);
  m.zeroGrad();
  const d = new Float32Array(2 * T);
  d[1] = -1;
  m.backward(d);
  assert.ok(m.gradNorm() > 0);
  m.free();
});

test("hostile sizes: a huge max_position_embeddings costs nothing until used; overflowing or unallocatable sizes are refused", () => {
  const m = new NativeModel({ ...config, maxPositionEmbeddings: 1e9 });
  const st = m.forward({ ids: Int32Array.of(1, 2, 3), lengths: Int32Array.of(3), B: 1, T: 3 }, { train: false });
  assert.ok(Number.isFinite(st.logps[2]));
  m.free();
  assert.throws(() => new NativeModel({ ...config, hiddenSize: 2 ** 31 }), /hidden_size = 2147483648\.0+ must be a whole number in \[1, 2147483647\]/);
  assert.throws(() => new NativeModel({ ...config, maxPositionEmbeddings: 1.5 }), /max_position_embeddings = 1\.50+ must be a whole number/);
  assert.throws(() => new NativeModel({ ...config, vocabSize: 2e9, hiddenSize: 4096 }), /cannot allocate \d+ MiB for \d+ parameters/);
});
