// safetensors reader/writer: a file laid out byte by byte by hand, round trips for every dtype, and the
// errors for malformed headers and truncated files. Files live in a temp dir removed at the end.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeSafetensors, forEachTensorChunk, readHeader, readTensor, readTensorBytes, writeSafetensors } from "../../src/models/safetensors.ts";

const dir = mkdtempSync(join(tmpdir(), "preftune-safetensors-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const tmpFile = (bytes?: Uint8Array) => {
  const f = join(dir, `t${n++}.safetensors`);
  if (bytes) writeFileSync(f, bytes);
  return f;
};

// Builds a file from a literal header string and raw data bytes, padding the header with spaces.
function rawFile(headerJson: string, data: number[], pad = true): Uint8Array {
  let h = headerJson;
  if (pad) while (h.length % 8) h += " ";
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(Buffer.from(h, "latin1"), 8);
  out.set(data, 8 + h.length);
  return out;
}

test("writer output matches a hand-built file byte for byte", () => {
  const header = '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[1],"data_offsets":[8,10]}}';
  assert.equal(header.length, 140);
  const want = [
    140 + 4, 0, 0, 0, 0, 0, 0, 0,                // u64 LE header length, padded from 140 to 144
    ...Buffer.from(header + "    ", "latin1"),
    0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0, // F32 1.0, -2.0 little-endian
    0x80, 0x3f,                                     // BF16 1.0
  ];
  const got = encodeSafetensors(
    [
      { name: "a", dtype: "F32", shape: [2], data: new Float32Array([1, -2]) },
      { name: "b", dtype: "BF16", shape: [1], data: new Float32Array([1]) },
    ],
    { format: "pt" },
  );
  assert.deepEqual([...got], want);
  const f = tmpFile();
  writeSafetensors(f, [
    { name: "a", dtype: "F32", shape: [2], data: new Float32Array([1, -2]) },
    { name: "b", dtype: "BF16", shape: [1], data: new Float32Array([1]) },
  ], { format: "pt" });
  assert.deepEqual([...readFileSync(f)], want);
});

test("reads a hand-built file with F16, I32, I64, U8 and a scalar", () => {
  const header = JSON.stringify({
    h: { dtype: "F16", shape: [3], data_offsets: [0, 6] },
    i: { dtype: "I32", shape: [2], data_offsets: [6, 14] },
    l: { dtype: "I64", shape: [1], data_offsets: [14, 22] },
    u: { dtype: "U8", shape: [2], data_offsets: [22, 24] },
    s: { dtype: "F32", shape: [], data_offsets: [24, 28] },
    z: { dtype: "F32", shape: [0, 4], data_offsets: [28, 28] },
  });
  const data = [
    0x00, 0x3c, 0x01, 0x00, 0x00, 0xfc,             // F16 1.0, 2^-24, -inf
    0xff, 0xff, 0xff, 0xff, 0x07, 0x00, 0x00, 0x00, // I32 -1, 7
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x00, // I64 2^53
    0x00, 0xff,                                     // U8 0, 255
    0x00, 0x00, 0x40, 0x40,                         // F32 3.0
  ];
  const f = tmpFile(rawFile(header, data));
  const h = readHeader(f);
  assert.equal(h.metadata, null);
  assert.equal(h.tensors.size, 6);
  assert.deepEqual([...readTensor(h, "h")], [1, 2 ** -24, -Infinity]);
  assert.deepEqual([...readTensor(h, "i")], [-1, 7]);
  assert.deepEqual([...readTensor(h, "l")], [2 ** 53]);
  assert.deepEqual([...readTensor(h, "u")], [0, 255]);
  assert.deepEqual([...readTensor(h, "s")], [3]);
  assert.equal(readTensor(h, "z").length, 0);
  assert.deepEqual([...readTensorBytes(h, "u")], [0, 255]);
  assert.throws(() => readTensor(h, "nope"), /t\d+\.safetensors: no tensor "nope"/);
});

test("round trip for every writable dtype, into a caller's buffer and in chunks", () => {
  const vals = new Float32Array([0, -0, 1, -1.5, 3.140625, 1e-3, 65504, 1e-7, 2 ** -24, NaN, Infinity, -Infinity, 1 + 2 ** -8]);
  const ints = new Int32Array([0, -1, 2147483647, -2147483648]);
  const f = tmpFile();
  writeSafetensors(f, [
    { name: "f32", dtype: "F32", shape: [vals.length], data: vals },
    { name: "f16", dtype: "F16", shape: [vals.length], data: vals },
    { name: "bf16", dtype: "BF16", shape: [vals.length], data: vals },
    { name: "i32", dtype: "I32", shape: [2, 2], data: ints },
  ], { format: "pt", note: "x" });
  const h = readHeader(f);
  assert.deepEqual(h.metadata, { format: "pt", note: "x" });
  assert.equal(h.dataStart % 8, 0);
  assert.deepEqual([...readTensor(h, "f32")], [...vals]);
  // Expected values after rounding, worked out by hand: f16 keeps 10 mantissa bits, bf16 keeps 7.
  const f16 = [0, -0, 1, -1.5, 3.140625, 0.0010004043579101562, 65504, 1.1920928955078125e-7, 2 ** -24, NaN, Infinity, -Infinity, 1.00390625];
  const bf16 = [0, -0, 1, -1.5, 3.140625, 0.00099945068359375, 65536, 1.0011717677116394e-7, 2 ** -24, NaN, Infinity, -Infinity, 1];
  assert.deepEqual([...readTensor(h, "f16")], f16);
  assert.deepEqual([...readTensor(h, "bf16")], bf16);
  assert.deepEqual([...readTensor(h, "i32")], [0, -1, 2147483648, -2147483648]); // 2^31-1 is not an fp32
  const dest = new Float32Array(20).fill(7);
  const view = readTensor(h, "bf16", dest, 5);
  assert.equal(view.buffer, dest.buffer);
  assert.deepEqual([...dest.subarray(0, 5)], [7, 7, 7, 7, 7]);
  assert.deepEqual([...dest.subarray(5, 18)], bf16);
  assert.deepEqual([...dest.subarray(18)], [7, 7]);
  assert.throws(() => readTensor(h, "f32", new Float32Array(20), 10), /13 elements; destination has room for 10/);
  const seen: number[] = [];
  forEachTensorChunk(h, "f16", (v, start) => {
    assert.equal(start, seen.length);
    seen.push(...v);
  }, 4);
  assert.deepEqual(seen, f16);
});

test("large tensors convert across chunk boundaries", () => {
  const big = new Float32Array((1 << 20) + 37);
  for (let i = 0; i < big.length; i++) big[i] = (i % 1000) - 500; // integers are exact in bf16 up to 256, in f16 up to 2048
  const f = tmpFile();
  writeSafetensors(f, [{ name: "w", dtype: "F16", shape: [big.length], data: big }]);
  const back = readTensor(readHeader(f), "w");
  assert.deepEqual(back, big);
});

test("malformed files give errors naming the file and the tensor", () => {
  const ok = (offs: [number, number]) => ({ dtype: "F32", shape: [1], data_offsets: offs });
  const bad: [string, Uint8Array, RegExp][] = [
    ["short file", new Uint8Array(5), /5 bytes is too short/],
    ["length past end", (() => { const b = rawFile('{"a":1}', []); b[0] = 200; return b; })(), /header length 200 runs past the end/],
    ["bad JSON", rawFile('{"a": {', []), /header is not valid JSON/],
    ["not an object", rawFile("[1,2]", []), /does not start with '\{'/],
    ["unknown dtype", rawFile(JSON.stringify({ w: { dtype: "F33", shape: [1], data_offsets: [0, 4] } }), [0, 0, 0, 0]), /tensor "w": unknown dtype "F33"/],
    ["size mismatch", rawFile(JSON.stringify({ w: { dtype: "F32", shape: [2], data_offsets: [0, 4] } }), [0, 0, 0, 0]), /tensor "w": data_offsets \[0, 4\] span 4 bytes but F32 shape \[2\] needs 8/],
    ["negative shape", rawFile(JSON.stringify({ w: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }), [0, 0, 0, 0]), /tensor "w": shape must be/],
    ["reversed offsets", rawFile(JSON.stringify({ w: { dtype: "F32", shape: [0], data_offsets: [4, 0] } }), [0, 0, 0, 0]), /tensor "w": data_offsets must be/],
    ["overlap", rawFile(JSON.stringify({ a: ok([0, 4]), b: { dtype: "F32", shape: [2], data_offsets: [2, 10] } }), new Array(10).fill(0)), /tensor "b" data_offsets \[2, 10\] overlap tensor "a"/],
    ["gap", rawFile(JSON.stringify({ a: ok([0, 4]), b: ok([8, 12]) }), new Array(12).fill(0)), /tensor "b" .* leave a gap after byte 4/],
    ["out of range", rawFile(JSON.stringify({ a: ok([0, 4]), b: ok([4, 8]) }), [0, 0, 0, 0]), /tensor "b" data_offsets \[4, 8\] run past the end of the data \(4 bytes/],
    ["trailing bytes", rawFile(JSON.stringify({ a: ok([0, 4]) }), new Array(8).fill(0)), /4 bytes of data after the last tensor/],
    ["bad metadata", rawFile(JSON.stringify({ __metadata__: { format: 1 } }), []), /__metadata__\["format"\] must be a string/],
  ];
  for (const [what, bytes, re] of bad) {
    const f = tmpFile(bytes);
    assert.throws(() => readHeader(f), (e: Error) => {
      assert.match(e.message, re, what);
      assert.ok(e.message.startsWith(f), `${what}: message should start with the file name: ${e.message}`);
      return true;
    });
  }
});

test("a truncated real file is caught by the header check", () => {
  const full = encodeSafetensors([{ name: "emb", dtype: "F32", shape: [4, 4], data: new Float32Array(16) }]);
  const f = tmpFile(full.subarray(0, full.length - 3));
  assert.throws(() => readHeader(f), /tensor "emb" data_offsets \[0, 64\] run past the end of the data \(61 bytes.*truncated/);
});

test("unsupported dtypes are rejected on read and on write", () => {
  const f = tmpFile(rawFile(JSON.stringify({ d: { dtype: "F64", shape: [1], data_offsets: [0, 8] } }), new Array(8).fill(0)));
  const h = readHeader(f); // valid header
  assert.throws(() => readTensor(h, "d"), /tensor "d" has dtype F64, which cannot be read as fp32 \(supported: F32, F16, BF16, I32, I64, U8\)/);
  assert.throws(() => encodeSafetensors([{ name: "x", dtype: "F32", shape: [3], data: new Float32Array(2) }]), /"x": 2 values for shape \[3\]/);
  assert.throws(() => encodeSafetensors([{ name: "x", dtype: "I32", shape: [1], data: new Float32Array(1) }]), /needs an Int32Array/);
  assert.throws(() => encodeSafetensors([
    { name: "x", dtype: "F32", shape: [1], data: new Float32Array(1) },
    { name: "x", dtype: "F32", shape: [1], data: new Float32Array(1) },
  ]), /"x" given twice/);
});
