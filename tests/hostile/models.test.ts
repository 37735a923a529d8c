// Hostile model files: a safetensors header nested a million levels deep, a folder or a symbolic link loop
// where a weights file should be, config.json sizes of 2^31 and more, and keys named after Object's
// prototype. Each is an error naming the file and the field, never "Maximum call stack size exceeded",
// "EISDIR" without a path or a TypeError.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseConfig } from "../../src/models/config.ts";
import { parseHeader, readHeader } from "../../src/models/safetensors.ts";
import { scratch } from "./helpers.ts";

const tmp = scratch("preftune-hostile-models-");
after(() => tmp.cleanup());

const header = (json: string) => {
  const b = Buffer.from(json);
  return { bytes: new Uint8Array(b), size: 8 + b.length };
};

test("a safetensors header nested a million levels deep is refused naming the tensor, not with a stack overflow", () => {
  const deep = "[".repeat(1_000_000) + "]".repeat(1_000_000);
  for (const [json, want] of [
    [`{"w":{"dtype":"F32","shape":${deep},"data_offsets":[0,0]}}`, /x\.safetensors: tensor "w": shape must be an array of non-negative integers, got \[\[\[\[/],
    [`{"__metadata__":{"k":${deep}}}`, /x\.safetensors: __metadata__\["k"\] must be a string, got \[\[\[/],
    [`{"w":{"dtype":${deep}}}`, /x\.safetensors: tensor "w": unknown dtype \[\[\[/],
  ] as const) {
    const h = header(json);
    assert.throws(() => parseHeader(h.bytes, h.size, "x.safetensors"), (e: unknown) => {
      assert.match((e as Error).message, want);
      assert.doesNotMatch((e as Error).message, /call stack/);
      assert.ok((e as Error).message.length < 400);
      return true;
    });
  }
  const file = join(tmp.dir, "deep.safetensors");
  const json = Buffer.from(`{"w":{"dtype":"F32","shape":${deep},"data_offsets":[0,0]}}`);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(file, Buffer.concat([len, json]));
  assert.throws(() => readHeader(file), /deep\.safetensors: tensor "w": shape must be/);
});

test("a folder or a symbolic link loop where the weights should be is named as such, with its path", () => {
  const dir = join(tmp.dir, "model.safetensors");
  mkdirSync(dir);
  assert.throws(() => readHeader(dir), new RegExp(`^Error: ${dir.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: is a folder, not a safetensors file$`));
  const loop = join(tmp.dir, "loop.safetensors");
  symlinkSync(loop, loop);
  assert.throws(() => readHeader(loop), (e: unknown) => (e as Error).message.startsWith(loop) && /is a symbolic link loop/.test((e as Error).message));
});

test("config.json sizes of 2^31 and more name the field and the limit; an uncountable parameter total is refused", () => {
  const base = { architectures: ["LlamaForCausalLM"], vocab_size: 128, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 };
  for (const key of ["hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size", "max_position_embeddings"]) {
    assert.throws(() => parseConfig({ ...base, [key]: 2 ** 31 }, "config.json"), new RegExp(`config\\.json: "${key}" must be at most 2147483647 \\(2\\^31 − 1, the largest size the native core takes\\), got 2147483648`));
  }
  assert.throws(() => parseConfig({ ...base, hidden_size: 1e300 }, "config.json"), /"hidden_size" must be at most 2147483647/);
  assert.throws(() => parseConfig({ ...base, vocab_size: 2 ** 31 - 1, hidden_size: 2 ** 30, num_attention_heads: 2 ** 23, num_key_value_heads: 2 ** 23 }, "config.json"),
    /config\.json: the sizes imply about .* parameters, more than can be counted exactly \(2\^53\)/);
  const deep = JSON.parse("[".repeat(100_000) + "]".repeat(100_000));
  assert.throws(() => parseConfig({ ...base, hidden_size: deep }, "config.json"), /config\.json: "hidden_size" must be a positive integer, got \[\[\[/);
});

test("keys named constructor or __proto__ are refused as unknown, not looked up on Object's prototype", () => {
  for (const arch of ["constructor", "__proto__", "toString", "hasOwnProperty"]) {
    assert.throws(() => parseConfig({ architectures: [arch] }, "config.json"), new RegExp(`config\\.json: architecture "${arch}" is not supported; supported: LlamaForCausalLM`));
  }
  const h = header('{"w":{"dtype":"constructor","shape":[1],"data_offsets":[0,4]}}');
  assert.throws(() => parseHeader(h.bytes, h.size + 4, "x.safetensors"), /x\.safetensors: tensor "w": unknown dtype "constructor"/);
  // a config key "constructor" is ignored like any unknown key
  const cfg = parseConfig(JSON.parse('{"architectures":["LlamaForCausalLM"],"vocab_size":128,"hidden_size":32,"intermediate_size":64,"num_hidden_layers":1,"num_attention_heads":2,"constructor":5,"__proto__":{"hidden_size":7}}'), "config.json");
  assert.equal(cfg.hiddenSize, 32);
});
