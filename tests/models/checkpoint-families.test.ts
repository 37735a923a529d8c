// Model folders of the families beyond the Llama shape: GPT-NeoX's per-head query_key_value rows put into the core's
// q | k | v stack on load (fp32 and bf16) and back on save, byte for byte; checkpoints of the base model (OPTModel's
// decoder.* names, LlamaModel's) read as transformers reads them; the tied head under each family's name;
// transformers v5's lm_head.weight for GPT-NeoX's embed_out; old GPT-NeoX buffers ignored; tie_word_embeddings'
// family default when saving. Tables are built from the family descriptions (no native layout needed) except where a
// test says; the native round trips of each tiny family wait for a core with the family layouts.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dequantize4bit, NativeModel, quantize4bit } from "../../src/core/native.ts";
import type { ParamInfo } from "../../src/core/types.ts";
import { buildParamTable, loadModelFolder, loadWeightsInto, loadWeightsIntoBf16, randomInit, saveModel } from "../../src/models/checkpoint.ts";
import { configToJson, parseConfig } from "../../src/models/config.ts";
import { f32ToBf16 } from "../../src/models/dtype.ts";
import { describeModel, tensorShapes } from "../../src/models/family.ts";
import { neoxQkvToStacked, stackedToNeoxQkv } from "../../src/models/neox.ts";
import { loadQuantizedModel } from "../../src/models/quantize.ts";
import { readHeader, readTensor, writeSafetensors } from "../../src/models/safetensors.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { TINY_FAMILY_JSON, tinyFamily } from "../helpers/families.ts";

const root = mkdtempSync(join(tmpdir(), "preftune-checkpoint-families-"));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => join(root, `m${n++}`);

/** A parameter table of a config.json laid out back to back from the family description (what the core's layout names). */
function handTable(json: Record<string, unknown>): ParamInfo[] {
  let offset = 0;
  return tensorShapes(describeModel(json, "c")).map(({ name, shape }) => {
    const size = shape.reduce((a, b) => a * b, 1);
    const p = { name, shape, offset, size, decay: shape.length === 2, quant4: false };
    offset += size;
    return p;
  });
}
const total = (t: readonly ParamInfo[]) => t.reduce((s, p) => s + p.size, 0);

/** A folder with config.json and one safetensors file of random tensors named by rename(name); returns the values by table name. */
function writeFolder(dir: string, json: Record<string, unknown>, table: readonly ParamInfo[], rename = (s: string) => s, extra: { name: string; data: Float32Array; shape: number[] }[] = []): Map<string, Float32Array> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), JSON.stringify(json));
  const uniform = mulberry32(11);
  const values = new Map(table.map((p) => [p.name, Float32Array.from({ length: p.size }, () => uniform() - 0.5)]));
  writeSafetensors(join(dir, "model.safetensors"), [
    ...table.map((p) => ({ name: rename(p.name), dtype: "F32" as const, shape: p.shape, data: values.get(p.name)! })),
    ...extra.map((e) => ({ name: e.name, dtype: "F32" as const, shape: e.shape, data: e.data })),
  ], { format: "pt" });
  return values;
}
const view = (params: Float32Array | Uint16Array, p: ParamInfo) => params.subarray(p.offset, p.offset + p.size);

test("GPT-NeoX: query_key_value rows are stacked q | k | v on load (fp32 and bf16) and per head again on save, byte for byte", () => {
  const json = TINY_FAMILY_JSON.gpt_neox;
  const table = handTable(json);
  const dir = freshDir();
  const file = writeFolder(dir, json, table);
  const params = new Float32Array(total(table));
  loadWeightsInto(dir, table, params);
  const qkv = table.filter((p) => p.name.includes("query_key_value"));
  assert.equal(qkv.length, 4, "weight and bias of 2 layers");
  for (const p of table) {
    const want = qkv.includes(p) ? neoxQkvToStacked(file.get(p.name)!, 2, 8) : file.get(p.name)!;
    assert.deepEqual(view(params, p), want, p.name);
  }
  // by hand: head 1's q rows (checkpoint rows 24..31 of 48) are stacked rows 8..15
  const w = table.find((p) => p.name === "gpt_neox.layers.0.attention.query_key_value.weight")!;
  assert.deepEqual(view(params, w).subarray(8 * 16, 16 * 16), file.get(w.name)!.subarray(24 * 16, 32 * 16));
  const bits = new Uint16Array(total(table));
  loadWeightsIntoBf16(dir, table, bits);
  for (const p of qkv) assert.deepEqual(view(bits, p), f32ToBf16(params.subarray(p.offset, p.offset + p.size)), p.name);
  // saved: the checkpoint's per-head order again, the model's buffer untouched
  const before = params.slice();
  const out = freshDir();
  saveModel(out, json, table, params);
  assert.deepEqual(params, before);
  const h = readHeader(join(out, "model.safetensors"));
  for (const p of table) assert.deepEqual(readTensor(h, p.name), file.get(p.name)!, p.name);
});

test("a checkpoint of the base model (OPTModel's decoder.* names, no head) loads as transformers loads it into OPTForCausalLM", () => {
  const json = TINY_FAMILY_JSON.opt;
  const table = handTable(json);
  assert.ok(!table.some((p) => p.name === "lm_head.weight"), "OPT ties its head");
  const dir = freshDir();
  const file = writeFolder(dir, json, table, (s) => s.replace(/^model\./, ""));
  const params = new Float32Array(total(table));
  loadWeightsInto(dir, table, params);
  for (const p of table) assert.deepEqual(view(params, p), file.get(p.name)!, p.name);
  // a misshaped tensor is named by the table name and the name it has in the file
  const bad = freshDir();
  writeFolder(bad, json, table.map((p) => (p.name === "model.decoder.layers.0.fc1.weight" ? { ...p, shape: [p.shape[1], p.shape[0]] } : p)), (s) => s.replace(/^model\./, ""));
  assert.throws(() => loadWeightsInto(bad, table, params), /model\.decoder\.layers\.0\.fc1\.weight \(as decoder\.layers\.0\.fc1\.weight\): expected shape \[24, 16\], found \[16, 24\]/);
  // prefixed names with a mix of unprefixed ones are not a base-model checkpoint: the unprefixed ones are unexpected
  const mixed = freshDir();
  writeFolder(mixed, json, table, (s) => (s.includes("fc2") ? s.replace(/^model\./, "") : s));
  assert.throws(() => loadWeightsInto(mixed, table, params), /missing tensor model\.decoder\.layers\.0\.fc2\.weight[\s\S]*unexpected tensor decoder\.layers\.0\.fc2\.weight/);
});

test("tied heads: OPT's lm_head.weight equal to model.decoder.embed_tokens is accepted, a different one refused; GPT-NeoX's embed_out likewise", () => {
  const json = TINY_FAMILY_JSON.opt;
  const table = handTable(json);
  const params = new Float32Array(total(table));
  const embed = table.find((p) => p.name === "model.decoder.embed_tokens.weight")!;
  const same = freshDir();
  const values = writeFolder(same, json, table);
  writeFolder(same, json, table, (s) => s, [{ name: "lm_head.weight", data: values.get(embed.name)!, shape: embed.shape }]);
  loadWeightsInto(same, table, params);
  const other = freshDir();
  writeFolder(other, json, table, (s) => s, [{ name: "lm_head.weight", data: new Float32Array(embed.size).fill(1), shape: embed.shape }]);
  assert.throws(() => loadWeightsInto(other, table, params), /lm_head\.weight differs from model\.decoder\.embed_tokens\.weight \(element 0: 1 vs /);
  // GPT-NeoX tied (tie_word_embeddings true): its head copy is embed_out.weight
  const neoxJson = { ...TINY_FAMILY_JSON.gpt_neox, tie_word_embeddings: true };
  const neoxTable = handTable(neoxJson);
  assert.ok(!neoxTable.some((p) => p.name === "embed_out.weight"));
  const e = neoxTable.find((p) => p.name === "gpt_neox.embed_in.weight")!;
  const neox = freshDir();
  const nv = writeFolder(neox, neoxJson, neoxTable);
  writeFolder(neox, neoxJson, neoxTable, (s) => s, [{ name: "embed_out.weight", data: nv.get(e.name)!, shape: e.shape }]);
  loadWeightsInto(neox, neoxTable, new Float32Array(total(neoxTable)));
});

test("GPT-NeoX: transformers v5's lm_head.weight stands for embed_out.weight; old checkpoints' attention.bias, masked_bias and inv_freq are ignored", () => {
  const json = TINY_FAMILY_JSON.gpt_neox;
  const table = handTable(json);
  const head = table.find((p) => p.name === "embed_out.weight")!;
  const dir = freshDir();
  const buffers = [0, 1].flatMap((i) => [
    { name: `gpt_neox.layers.${i}.attention.bias`, data: new Float32Array(64 * 64), shape: [1, 1, 64, 64] },
    { name: `gpt_neox.layers.${i}.attention.masked_bias`, data: new Float32Array(1), shape: [] },
    { name: `gpt_neox.layers.${i}.attention.rotary_emb.inv_freq`, data: new Float32Array(2), shape: [2] },
  ]);
  const file = writeFolder(dir, json, table, (s) => (s === "embed_out.weight" ? "lm_head.weight" : s), buffers);
  const params = new Float32Array(total(table));
  loadWeightsInto(dir, table, params);
  assert.deepEqual(view(params, head), file.get(head.name)!);
  // saved under the checkpoint's own name, as transformers saves it (save_original_format)
  const out = freshDir();
  saveModel(out, json, table, params);
  assert.ok(readHeader(join(out, "model.safetensors")).tensors.has("embed_out.weight"));
});

test("saveModel: tie_word_embeddings absent from config.json is the family's default (OPT and Gemma tie, Phi-2 does not)", () => {
  for (const [json, tied] of [[TINY_FAMILY_JSON.opt, true], [TINY_FAMILY_JSON.gemma2, true], [TINY_FAMILY_JSON.phi, false]] as const) {
    const table = handTable(json);
    assert.equal(table.some((p) => p.name === "lm_head.weight"), !tied);
    saveModel(freshDir(), json, table, new Float32Array(total(table)));
    const other = handTable({ ...json, tie_word_embeddings: !tied });
    assert.throws(() => saveModel(freshDir(), json, other, new Float32Array(total(other))), new RegExp(`config says tie_word_embeddings=${tied} but the parameter table ${tied ? "has" : "has no"} lm_head\\.weight`));
  }
  // a GPT-NeoX table with its query_key_value needs a GPT-NeoX config to know the heads
  const table = handTable(TINY_FAMILY_JSON.gpt_neox);
  assert.throws(() => saveModel(freshDir(), { ...TINY_FAMILY_JSON.phi, tie_word_embeddings: false }, table, new Float32Array(total(table))), /not a GPTNeoXForCausalLM config/);
});

test("a LlamaModel checkpoint (no model. prefix) loads into the native Llama layout", () => {
  const json = { architectures: ["LlamaForCausalLM"], vocab_size: 32, hidden_size: 8, intermediate_size: 12, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1, tie_word_embeddings: true };
  const table = buildParamTable(parseConfig(json, "c"));
  const dir = freshDir();
  const file = writeFolder(dir, json, table, (s) => s.replace(/^model\./, ""));
  const params = new Float32Array(table.reduce((m, p) => Math.max(m, p.offset + p.size), 0));
  loadWeightsInto(dir, table, params);
  for (const p of table) assert.deepEqual(view(params, p), file.get(p.name)!, p.name);
});

for (const name of Object.keys(TINY_FAMILY_JSON)) {
  test(`${name}: a random model saved with configToJson loads back through the native layout unchanged`, () => {
    const cfg = tinyFamily(name);
    const model = new NativeModel(cfg);
    const dir = freshDir();
    try {
      randomInit(model.table, model.params, 5);
      saveModel(dir, configToJson(cfg), model.table, model.params);
      const h = readHeader(join(dir, "model.safetensors"));
      const expected = new Map(tensorShapes(describeModel(configToJson(cfg), "c")).map((t) => [t.name, t.shape]));
      assert.deepEqual([...h.tensors.keys()].sort(), [...expected.keys()].sort());
      for (const p of model.table) {
        const v = model.params.subarray(p.offset, p.offset + p.size);
        const want = /query_key_value/.test(p.name) ? stackedToNeoxQkv(v, cfg.numHeads, cfg.headDim) : v;
        assert.deepEqual(readTensor(h, p.name), want, p.name);
      }
      const loaded = loadModelFolder(dir);
      try {
        assert.deepEqual(loaded.config, cfg);
        for (const p of model.table) assert.deepEqual(loaded.model.param(p.name), model.param(p.name), p.name);
      } finally {
        loaded.model.free();
      }
    } finally {
      model.free();
    }
  });
}

test("GPT-NeoX 4-bit base: query_key_value is quantized in the core's q | k | v order, its bias kept exact in that order", () => {
  const cfg = tinyFamily("gpt_neox");
  const json = configToJson(cfg);
  const dir = freshDir();
  const file = writeFolder(dir, json, buildParamTable(cfg));
  const model = loadQuantizedModel(dir, cfg, { quantType: "nf4", doubleQuant: false }, "fp32");
  try {
    for (const name of ["gpt_neox.layers.1.attention.query_key_value.weight", "gpt_neox.layers.1.attention.query_key_value.bias"]) {
      const stacked = neoxQkvToStacked(file.get(name)!, cfg.numHeads, cfg.headDim);
      const q = model.info(name).quant4 ? quantize4bit(stacked, "nf4") : null;
      assert.deepEqual(model.dequantize(name), q ? dequantize4bit(q.packed, q.absmax, stacked.length, "nf4") : stacked, name);
    }
  } finally {
    model.free();
  }
});
