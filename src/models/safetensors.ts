// The safetensors file format: u64 little-endian header length N, N bytes of JSON (padded with spaces to a
// multiple of 8), then the raw little-endian tensor data; each tensor's data_offsets are relative to the end
// of the header. Headers are read and validated without touching the data; tensors are read one at a time,
// converted to fp32, optionally straight into a caller's buffer. Not a checkpoint loader (see checkpoint.ts).
import { closeSync, fstatSync, openSync, readSync, writeSync, fsyncSync } from "node:fs";
import { endianness } from "node:os";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "./dtype.ts";
import { brief } from "./config.ts";

/** Bytes per element of every dtype the format defines (we validate headers holding any of them). */
export const DTYPE_SIZES: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8,
};
export const READ_DTYPES = ["F32", "F16", "BF16", "I32", "I64", "U8"] as const;
export type WriteDtype = "F32" | "F16" | "BF16" | "I32" | "U8";

export interface TensorInfo {
  dtype: string;
  shape: number[];
  dataOffsets: [number, number];  // [begin, end) in bytes, relative to dataStart
}

export interface SafetensorsHeader {
  file: string;
  fileSize: number;
  dataStart: number;              // 8 + N: absolute byte where tensor data begins
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string> | null;
}

export interface TensorToWrite {
  name: string;
  dtype: WriteDtype;
  shape: number[];
  data: Float32Array | Int32Array | Uint8Array; // Int32Array for I32, Uint8Array for U8, Float32Array otherwise; length = prod(shape)
}

// The reference implementation refuses headers above 100 MB; a larger length means a corrupt or foreign file.
const MAX_HEADER_BYTES = 100_000_000;
const CHUNK_ELEMS = 1 << 20;

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function requireLittleEndian(): void {
  if (endianness() !== "LE") throw new Error("safetensors I/O here assumes a little-endian machine");
}

function readFully(fd: number, out: Uint8Array, position: number, file: string, what: string): void {
  let done = 0;
  while (done < out.length) {
    const n = readSync(fd, out, done, out.length - done, position + done);
    if (n === 0) throw new Error(`${file}: unexpected end of file while reading ${what} (file truncated?)`);
    done += n;
  }
}

/** Opens `file` for reading; errors name the path and what is wrong with it (a folder, a link loop, ...). */
function openForReading(file: string): number {
  let fd: number;
  try { fd = openSync(file, "r"); } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ELOOP") throw new Error(`${file}: is a symbolic link loop (it points back at itself); point it at the real weights file`);
    if (code === "ENOENT") throw new Error(`${file}: no such file (missing, or a link to nothing)`);
    if (code === "EISDIR") throw new Error(`${file}: is a folder, not a safetensors file`);
    throw new Error(`${file}: cannot open (${(e as Error).message})`);
  }
  if (fstatSync(fd).isDirectory()) {
    closeSync(fd);
    throw new Error(`${file}: is a folder, not a safetensors file`);
  }
  return fd;
}

/** Read and strictly validate the header of a .safetensors file; tensor data is not read. */
export function readHeader(file: string): SafetensorsHeader {
  const fd = openForReading(file);
  try {
    const fileSize = fstatSync(fd).size;
    if (fileSize < 8) throw new Error(`${file}: ${fileSize} bytes is too short for a safetensors file (needs an 8-byte header length)`);
    const lenBytes = new Uint8Array(8);
    readFully(fd, lenBytes, 0, file, "the header length");
    const n = new DataView(lenBytes.buffer).getBigUint64(0, true);
    if (n > BigInt(fileSize - 8)) {
      throw new Error(`${file}: header length ${n} runs past the end of the ${fileSize}-byte file (not a safetensors file, or truncated)`);
    }
    if (n > BigInt(MAX_HEADER_BYTES)) throw new Error(`${file}: header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
    const headerBytes = new Uint8Array(Number(n));
    readFully(fd, headerBytes, 8, file, "the header");
    return parseHeader(headerBytes, fileSize, file);
  } finally {
    closeSync(fd);
  }
}

/** Validate header JSON bytes (the N bytes after the length) against a file of fileSize bytes. */
export function parseHeader(headerBytes: Uint8Array, fileSize: number, file: string): SafetensorsHeader {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(headerBytes);
  } catch {
    throw new Error(`${file}: header is not valid UTF-8`);
  }
  if (!text.startsWith("{")) throw new Error(`${file}: header does not start with '{' (not a safetensors file?)`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: header is not valid JSON: ${(e as Error).message}`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) throw new Error(`${file}: header must be a JSON object`);
  const dataStart = 8 + headerBytes.length;
  const dataSize = fileSize - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> | null = null;
  for (const [name, v] of Object.entries(json as Record<string, unknown>)) {
    if (name === "__metadata__") {
      metadata = parseMetadata(v, file);
      continue;
    }
    tensors.set(name, parseEntry(name, v, file));
  }
  // Data must be tiled exactly: sorted by offset, each tensor starts where the previous ended, the last one
  // ends at the end of the file. This rules out overlaps, gaps and truncation in one pass.
  const sorted = [...tensors.entries()].sort((a, b) => a[1].dataOffsets[0] - b[1].dataOffsets[0] || a[1].dataOffsets[1] - b[1].dataOffsets[1]);
  let pos = 0;
  let prev = "";
  for (const [name, t] of sorted) {
    const [begin, end] = t.dataOffsets;
    if (begin < pos) throw new Error(`${file}: tensor "${name}" data_offsets [${begin}, ${end}] overlap tensor "${prev}" (which ends at ${pos})`);
    if (begin > pos) throw new Error(`${file}: tensor "${name}" data_offsets [${begin}, ${end}] leave a gap after byte ${pos}${prev ? ` (end of "${prev}")` : ""}`);
    if (end > dataSize) {
      throw new Error(`${file}: tensor "${name}" data_offsets [${begin}, ${end}] run past the end of the data (${dataSize} bytes after the header; file truncated?)`);
    }
    pos = end;
    prev = name;
  }
  if (pos !== dataSize) throw new Error(`${file}: ${dataSize - pos} bytes of data after the last tensor are not described by the header`);
  return { file, fileSize, dataStart, tensors, metadata };
}

function parseMetadata(v: unknown, file: string): Record<string, string> {
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error(`${file}: __metadata__ must be an object of strings`);
  for (const [k, s] of Object.entries(v)) {
    if (typeof s !== "string") throw new Error(`${file}: __metadata__[${brief(k)}] must be a string, got ${brief(s)}`);
  }
  return { ...(v as Record<string, string>) };
}

function isCount(x: unknown): x is number {
  return typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
}

function parseEntry(name: string, v: unknown, file: string): TensorInfo {
  const where = `${file}: tensor ${brief(name)}`;
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error(`${where}: header entry must be an object with dtype, shape, data_offsets`);
  const { dtype, shape, data_offsets: offs } = v as Record<string, unknown>;
  if (typeof dtype !== "string" || !Object.hasOwn(DTYPE_SIZES, dtype)) {
    throw new Error(`${where}: unknown dtype ${brief(dtype)} (known: ${Object.keys(DTYPE_SIZES).join(", ")})`);
  }
  if (!Array.isArray(shape) || !shape.every(isCount)) throw new Error(`${where}: shape must be an array of non-negative integers, got ${brief(shape)}`);
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(isCount) || offs[0] > offs[1]) {
    throw new Error(`${where}: data_offsets must be [begin, end] with 0 <= begin <= end, got ${brief(offs)}`);
  }
  const bytes = numel(shape) * DTYPE_SIZES[dtype];
  if (!Number.isSafeInteger(bytes)) throw new Error(`${where}: shape [${shape.slice(0, 8).join(", ")}${shape.length > 8 ? ", …" : ""}] holds more elements than can be counted exactly`);
  if (offs[1] - offs[0] !== bytes) {
    throw new Error(`${where}: data_offsets [${offs[0]}, ${offs[1]}] span ${offs[1] - offs[0]} bytes but ${dtype} shape [${shape.join(", ")}] needs ${bytes}`);
  }
  return { dtype, shape: [...shape], dataOffsets: [offs[0], offs[1]] };
}

function tensorInfo(header: SafetensorsHeader, name: string): TensorInfo {
  const t = header.tensors.get(name);
  if (!t) throw new Error(`${header.file}: no tensor "${name}" (the file holds ${header.tensors.size} tensors)`);
  return t;
}

/** The raw bytes of one tensor, as stored. */
export function readTensorBytes(header: SafetensorsHeader, name: string): Uint8Array {
  const t = tensorInfo(header, name);
  const out = new Uint8Array(t.dataOffsets[1] - t.dataOffsets[0]);
  const fd = openSync(header.file, "r");
  try {
    readFully(fd, out, header.dataStart + t.dataOffsets[0], header.file, `tensor "${name}"`);
  } finally {
    closeSync(fd);
  }
  return out;
}

// Reads elements [start, start + out.length) of a tensor, converted to fp32, into out.
function readRange(fd: number, header: SafetensorsHeader, name: string, t: TensorInfo, start: number, out: Float32Array): void {
  const size = DTYPE_SIZES[t.dtype];
  const pos0 = header.dataStart + t.dataOffsets[0] + start * size;
  const what = `tensor "${name}"`;
  if (t.dtype === "F32") {
    readFully(fd, new Uint8Array(out.buffer, out.byteOffset, out.length * 4), pos0, header.file, what);
    return;
  }
  const chunk = Math.min(out.length, CHUNK_ELEMS);
  // A typed-array scratch buffer keeps element views aligned whatever the file offset is.
  const scratch =
    t.dtype === "F16" || t.dtype === "BF16" ? new Uint16Array(chunk)
    : t.dtype === "I32" ? new Int32Array(chunk)
    : t.dtype === "I64" ? new BigInt64Array(chunk)
    : t.dtype === "U8" ? new Uint8Array(chunk)
    : null;
  if (!scratch) {
    throw new Error(`${header.file}: ${what} has dtype ${t.dtype}, which cannot be read as fp32 (supported: ${READ_DTYPES.join(", ")})`);
  }
  for (let s = 0; s < out.length; s += chunk) {
    const n = Math.min(chunk, out.length - s);
    const buf = scratch.subarray(0, n);
    readFully(fd, new Uint8Array(buf.buffer, 0, n * size), pos0 + s * size, header.file, what);
    const dst = out.subarray(s, s + n);
    if (t.dtype === "F16") f16ToF32(buf as Uint16Array, dst);
    else if (t.dtype === "BF16") bf16ToF32(buf as Uint16Array, dst);
    else if (t.dtype === "I64") for (let i = 0; i < n; i++) dst[i] = Number((buf as BigInt64Array)[i]);
    else for (let i = 0; i < n; i++) dst[i] = (buf as Int32Array | Uint8Array)[i];
  }
}

/**
 * One tensor converted to fp32. With dest, the values land in dest[destOffset .. destOffset + numel) (no
 * intermediate copy of the whole tensor) and that subarray is returned.
 */
export function readTensor(header: SafetensorsHeader, name: string, dest?: Float32Array, destOffset = 0): Float32Array {
  requireLittleEndian();
  const t = tensorInfo(header, name);
  const n = numel(t.shape);
  let out: Float32Array;
  if (dest) {
    if (destOffset < 0 || destOffset + n > dest.length) {
      throw new Error(`${header.file}: tensor "${name}" has ${n} elements; destination has room for ${Math.max(0, dest.length - destOffset)} at offset ${destOffset}`);
    }
    out = dest.subarray(destOffset, destOffset + n);
  } else {
    out = new Float32Array(n);
  }
  const fd = openSync(header.file, "r");
  try {
    readRange(fd, header, name, t, 0, out);
  } finally {
    closeSync(fd);
  }
  return out;
}

/** Visit a tensor in fp32 chunks (values, index of values[0]) without holding all of it in memory. */
export function forEachTensorChunk(header: SafetensorsHeader, name: string, fn: (values: Float32Array, start: number) => void, chunkElems = CHUNK_ELEMS): void {
  requireLittleEndian();
  const t = tensorInfo(header, name);
  const n = numel(t.shape);
  const scratch = new Float32Array(Math.max(1, Math.min(n, chunkElems)));
  const fd = openSync(header.file, "r");
  try {
    for (let s = 0; s < n; s += scratch.length) {
      const part = scratch.subarray(0, Math.min(scratch.length, n - s));
      readRange(fd, header, name, t, s, part);
      fn(part, s);
    }
  } finally {
    closeSync(fd);
  }
}

// ---- writing ----

function checkTensorsToWrite(tensors: readonly TensorToWrite[], metadata: Record<string, string> | null): void {
  const seen = new Set<string>();
  for (const t of tensors) {
    if (!t.name || t.name === "__metadata__") throw new Error(`safetensors: invalid tensor name ${JSON.stringify(t.name)}`);
    if (seen.has(t.name)) throw new Error(`safetensors: tensor "${t.name}" given twice`);
    seen.add(t.name);
    if (!["F32", "F16", "BF16", "I32", "U8"].includes(t.dtype)) throw new Error(`safetensors: tensor "${t.name}": cannot write dtype ${t.dtype} (F32, F16, BF16, I32, U8)`);
    if (!t.shape.every(isCount)) throw new Error(`safetensors: tensor "${t.name}": bad shape ${JSON.stringify(t.shape)}`);
    if (t.data.length !== numel(t.shape)) throw new Error(`safetensors: tensor "${t.name}": ${t.data.length} values for shape [${t.shape.join(", ")}]`);
    const want = t.dtype === "I32" ? Int32Array : t.dtype === "U8" ? Uint8Array : Float32Array;
    if (!(t.data instanceof want)) throw new Error(`safetensors: tensor "${t.name}": dtype ${t.dtype} needs ${want === Int32Array ? "an" : "a"} ${want.name}`);
  }
  for (const [k, v] of Object.entries(metadata ?? {})) {
    if (typeof v !== "string") throw new Error(`safetensors: __metadata__["${k}"] must be a string`);
  }
}

/** The header bytes (length prefix + padded JSON) for these tensors, laid out in the given order. */
export function encodeHeader(tensors: readonly TensorToWrite[], metadata: Record<string, string> | null = null): { header: Uint8Array; dataBytes: number } {
  checkTensorsToWrite(tensors, metadata);
  const obj: Record<string, unknown> = {};
  if (metadata) obj.__metadata__ = metadata;
  let off = 0;
  for (const t of tensors) {
    const bytes = t.data.length * DTYPE_SIZES[t.dtype];
    obj[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + bytes] };
    off += bytes;
  }
  let json = JSON.stringify(obj);
  // Padding keeps the data 8-byte aligned when the file is memory-mapped.
  const len = Buffer.byteLength(json, "utf8");
  json += " ".repeat((8 - (len % 8)) % 8);
  const jsonBytes = Buffer.from(json, "utf8");
  const header = new Uint8Array(8 + jsonBytes.length);
  new DataView(header.buffer).setBigUint64(0, BigInt(jsonBytes.length), true);
  header.set(jsonBytes, 8);
  return { header, dataBytes: off };
}

// Streams each tensor's little-endian bytes to sink, converting floats chunk by chunk.
function emitData(tensors: readonly TensorToWrite[], sink: (bytes: Uint8Array) => void): void {
  for (const t of tensors) {
    const d = t.data;
    if (t.dtype === "F32" || t.dtype === "I32" || t.dtype === "U8") {
      sink(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
      continue;
    }
    const scratch = new Uint16Array(Math.min(d.length, CHUNK_ELEMS));
    for (let s = 0; s < d.length; s += CHUNK_ELEMS) {
      const part = (d as Float32Array).subarray(s, Math.min(d.length, s + CHUNK_ELEMS));
      const bits = scratch.subarray(0, part.length);
      if (t.dtype === "BF16") f32ToBf16(part, bits);
      else f32ToF16(part, bits);
      sink(new Uint8Array(bits.buffer, 0, bits.length * 2));
    }
  }
}

/** A whole safetensors file in memory (for small files and tests). */
export function encodeSafetensors(tensors: readonly TensorToWrite[], metadata: Record<string, string> | null = null): Uint8Array {
  requireLittleEndian();
  const { header, dataBytes } = encodeHeader(tensors, metadata);
  const out = new Uint8Array(header.length + dataBytes);
  out.set(header, 0);
  let pos = header.length;
  emitData(tensors, (b) => {
    out.set(b, pos);
    pos += b.length;
  });
  return out;
}

/** Write a safetensors file without building it in memory; fsync (default true) before closing. */
export function writeSafetensors(file: string, tensors: readonly TensorToWrite[], metadata: Record<string, string> | null = null, opts: { fsync?: boolean } = {}): void {
  requireLittleEndian();
  const { header } = encodeHeader(tensors, metadata);
  const fd = openSync(file, "w");
  try {
    const sink = (b: Uint8Array) => {
      let done = 0;
      while (done < b.length) done += writeSync(fd, b, done, b.length - done);
    };
    sink(header);
    emitData(tensors, sink);
    if (opts.fsync ?? true) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
