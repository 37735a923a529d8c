// Test helper: writes small uncompressed Parquet files by hand (Thrift compact footer, PLAIN pages, one row
// group) for string, boolean and list<struct<role, content>> columns, then re-encodes them with parquet-wasm
// (an independent writer) into snappy/zstd/gzip/brotli. Not a general Parquet writer: test fixtures only.
import { Compression, readParquet, writeParquet, WriterPropertiesBuilder } from "parquet-wasm/node";

export type Column =
  | { name: string; kind: "string"; values: (string | null)[] }    // null -> optional column with a null
  | { name: string; kind: "bool"; values: boolean[] }
  | { name: string; kind: "messages"; values: { role: string; content: string }[][] };

class Bytes {
  parts: number[] = [];
  byte(b: number) { this.parts.push(b & 0xff); }
  bytes(a: Uint8Array | number[]) { for (const b of a) this.parts.push(b); }
  varint(v: number) { let n = BigInt(v); do { let b = Number(n & 0x7fn); n >>= 7n; if (n) b |= 0x80; this.byte(b); } while (n); }
  zigzag(v: number) { const n = BigInt(v); this.varint(Number(n >= 0n ? n * 2n : -n * 2n - 1n)); }
  u32le(v: number) { this.byte(v); this.byte(v >>> 8); this.byte(v >>> 16); this.byte(v >>> 24); }
  get length() { return this.parts.length; }
  out() { return Uint8Array.from(this.parts); }
}

// Thrift compact protocol: just what the footer and page headers need.
type TVal = { t: "i32" | "i64"; v: number } | { t: "bin"; v: string } | { t: "struct"; v: TField[] } | { t: "list"; elem: "i32" | "bin" | "struct"; v: TVal[] };
type TField = [number, TVal];
const CT = { i32: 5, i64: 6, bin: 8, list: 9, struct: 12 } as const;
const i32 = (v: number): TVal => ({ t: "i32", v });
const i64 = (v: number): TVal => ({ t: "i64", v });
const bin = (v: string): TVal => ({ t: "bin", v });
const struct = (...v: TField[]): TVal => ({ t: "struct", v });
const list = (elem: "i32" | "bin" | "struct", v: TVal[]): TVal => ({ t: "list", elem, v });

function writeValue(b: Bytes, val: TVal) {
  switch (val.t) {
    case "i32": case "i64": b.zigzag(val.v); break;
    case "bin": { const e = new TextEncoder().encode(val.v); b.varint(e.length); b.bytes(e); break; }
    case "struct": writeStruct(b, val.v); break;
    case "list": {
      const n = val.v.length;
      if (n < 15) b.byte((n << 4) | CT[val.elem]); else { b.byte(0xf0 | CT[val.elem]); b.varint(n); }
      for (const x of val.v) writeValue(b, x);
    }
  }
}
function writeStruct(b: Bytes, fields: TField[]) {
  let last = 0;
  for (const [id, val] of fields) {
    const d = id - last;
    if (d > 0 && d <= 15) b.byte((d << 4) | CT[val.t]); else { b.byte(CT[val.t]); b.zigzag(id); }
    last = id;
    writeValue(b, val);
  }
  b.byte(0);
}

/** RLE/bit-packed hybrid, every value its own RLE run; prefixed with its byte length (data page v1). */
function levels(b: Bytes, values: number[]) {
  const body = new Bytes();
  for (const v of values) { body.varint(1 << 1); body.byte(v); }
  b.u32le(body.length);
  b.bytes(body.parts);
}

function plainStrings(b: Bytes, values: string[]) {
  for (const s of values) { const e = new TextEncoder().encode(s); b.u32le(e.length); b.bytes(e); }
}

interface Leaf { path: string[]; type: number; rep: number[]; def: number[]; data: Bytes; count: number; maxRep: number; maxDef: number }

/** An uncompressed Parquet file holding `columns` (all the same row count). */
export function writeParquetPlain(columns: Column[]): Uint8Array {
  const n = columns[0]?.values.length ?? 0;
  const schema: TVal[] = [struct([4, bin("schema")], [5, i32(0)])];
  const leaves: Leaf[] = [];
  for (const col of columns) {
    if (col.kind === "string") {
      const nullable = col.values.some((v) => v === null);
      schema.push(struct([1, i32(6)], [3, i32(nullable ? 1 : 0)], [4, bin(col.name)], [6, i32(0)]));
      const data = new Bytes();
      plainStrings(data, col.values.filter((v): v is string => v !== null));
      leaves.push({ path: [col.name], type: 6, rep: [], def: nullable ? col.values.map((v) => (v === null ? 0 : 1)) : [], data, count: n, maxRep: 0, maxDef: nullable ? 1 : 0 });
    } else if (col.kind === "bool") {
      schema.push(struct([1, i32(0)], [3, i32(0)], [4, bin(col.name)]));
      const data = new Bytes();
      for (let i = 0; i < n; i += 8) { let byte = 0; for (let j = 0; j < 8 && i + j < n; j++) if (col.values[i + j]) byte |= 1 << j; data.byte(byte); }
      leaves.push({ path: [col.name], type: 0, rep: [], def: [], data, count: n, maxRep: 0, maxDef: 0 });
    } else {
      // required group <name> (LIST) { repeated group list { required group element { required role; required content } } }
      schema.push(struct([3, i32(0)], [4, bin(col.name)], [5, i32(1)], [6, i32(3)]));
      schema.push(struct([3, i32(2)], [4, bin("list")], [5, i32(1)]));
      schema.push(struct([3, i32(0)], [4, bin("element")], [5, i32(2)]));
      for (const field of ["role", "content"] as const) {
        schema.push(struct([1, i32(6)], [3, i32(0)], [4, bin(field)], [6, i32(0)]));
        const rep: number[] = [], def: number[] = [], vals: string[] = [];
        for (const msgs of col.values) {
          if (msgs.length === 0) { rep.push(0); def.push(0); continue; }
          msgs.forEach((m, i) => { rep.push(i === 0 ? 0 : 1); def.push(1); vals.push(m[field]); });
        }
        const data = new Bytes();
        plainStrings(data, vals);
        leaves.push({ path: [col.name, "list", "element", field], type: 6, rep, def, data, count: rep.length, maxRep: 1, maxDef: 1 });
      }
    }
  }
  (schema[0] as { v: TField[] }).v[1] = [5, i32(columns.length)];

  const file = new Bytes();
  file.bytes(new TextEncoder().encode("PAR1"));
  const chunks: TVal[] = [];
  let totalBytes = 0;
  for (const leaf of leaves) {
    const page = new Bytes();
    if (leaf.maxRep > 0) levels(page, leaf.rep);
    if (leaf.maxDef > 0) levels(page, leaf.def);
    page.bytes(leaf.data.parts);
    const header = new Bytes();
    writeStruct(header, [[1, i32(0)], [2, i32(page.length)], [3, i32(page.length)], [5, struct([1, i32(leaf.count)], [2, i32(0)], [3, i32(3)], [4, i32(3)])]]);
    const offset = file.length;
    file.bytes(header.parts);
    file.bytes(page.parts);
    const size = header.length + page.length;
    totalBytes += size;
    chunks.push(struct([2, i64(offset)], [3, struct(
      [1, i32(leaf.type)], [2, list("i32", [i32(0), i32(3)])], [3, list("bin", leaf.path.map(bin))], [4, i32(0)],
      [5, i64(leaf.count)], [6, i64(size)], [7, i64(size)], [9, i64(offset)],
    )]));
  }
  const footer = new Bytes();
  writeStruct(footer, [[1, i32(1)], [2, list("struct", schema)], [3, i64(n)], [4, list("struct", [struct([1, list("struct", chunks)], [2, i64(totalBytes)], [3, i64(n)])])]]);
  file.bytes(footer.parts);
  file.u32le(footer.length);
  file.bytes(new TextEncoder().encode("PAR1"));
  return file.out();
}

export const CODECS = { snappy: Compression.SNAPPY, zstd: Compression.ZSTD, gzip: Compression.GZIP, brotli: Compression.BROTLI, none: Compression.UNCOMPRESSED } as const;

/** Re-encodes a Parquet file with parquet-wasm under `codec`, in row groups of `rowGroupSize` rows. */
export function recompress(plain: Uint8Array, codec: keyof typeof CODECS, rowGroupSize = 1024): Uint8Array {
  const table = readParquet(plain);
  const props = new WriterPropertiesBuilder().setCompression(CODECS[codec]).setMaxRowGroupSize(rowGroupSize).build();
  return writeParquet(table, props);
}
