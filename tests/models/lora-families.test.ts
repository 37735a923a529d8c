// LoRA across the families: target_modules resolved as PEFT resolves them for each family (its module names,
// "all-linear", PEFT's per-model_type default, refusals naming the valid names), the adapter tensors each family's
// adapter has (PEFT's names and shapes, worked out by hand), adapter folders of each family read back with their
// module names, GPT-NeoX's query_key_value B rows (and DoRA magnitudes) put into the core's order on load and back on
// save; and, on a core with the family layouts, the core's adapter table against those names and a save -> load
// round trip of an all-linear (DoRA) adapter on each tiny family.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type LoraAdapter, NativeModel } from "../../src/core/native.ts";
import type { DecoderConfig, LoraConfig, ParamInfo } from "../../src/core/types.ts";
import { neoxQkvToStacked, stackedToNeoxQkv } from "../../src/models/neox.ts";
import {
  ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, adapterConfigJson, adapterShapes, checkTargetModules, initLora, loadAdapter, loadAdapterWeights, pythonJson,
  readAdapterFolder, resolveTargetModules, saveAdapter, writeAdapterFiles,
} from "../../src/models/peft.ts";
import { readHeader, readTensor, writeSafetensors } from "../../src/models/safetensors.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { tinyFamily } from "../helpers/families.ts";

const root = mkdtempSync(join(tmpdir(), "preftune-lora-families-"));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => join(root, `a${n++}`);
const resolve = (v: unknown, name: string) => resolveTargetModules(v, "lora_target_modules", tinyFamily(name));

test("target_modules per family: all-linear, PEFT's default, lists in the family's order, other families' names refused naming the valid ones", () => {
  const llama7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
  for (const name of ["gemma2", "gemma3"]) {
    assert.deepEqual(resolve("all-linear", name), llama7);
    assert.deepEqual(resolve(null, name), ["q_proj", "v_proj"]);
  }
  assert.deepEqual(resolve("all-linear", "phi3"), ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]);
  assert.deepEqual(resolve(["down_proj", "qkv_proj"], "phi3"), ["qkv_proj", "down_proj"]);
  assert.throws(() => resolve(null, "phi3"), /lora_target_modules: PEFT has no default target_modules for Phi3ForCausalLM; name them, e\.g\. \["qkv_proj", "o_proj", "gate_up_proj", "down_proj"\] or "all-linear"/);
  assert.throws(() => resolve(["q_proj", "v_proj"], "phi3"), /"q_proj", "v_proj" are not a LoRA target of Phi3ForCausalLM; use names from qkv_proj, o_proj, gate_up_proj, down_proj or "all-linear"/);
  assert.deepEqual(resolve("all-linear", "phi"), ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"]);
  assert.deepEqual(resolve(null, "phi"), ["q_proj", "v_proj", "fc1", "fc2"]);
  assert.throws(() => resolve("o_proj", "phi"), /"o_proj" is not a LoRA target of PhiForCausalLM; use names from q_proj, k_proj, v_proj, dense, fc1, fc2/);
  assert.deepEqual(resolve("all-linear", "gpt_neox"), ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"]);
  assert.deepEqual(resolve(null, "gpt_neox"), ["query_key_value"]);
  assert.throws(() => resolve(["q_proj"], "gpt_neox"), /"q_proj" is not a LoRA target of GPTNeoXForCausalLM; use names from query_key_value, dense, dense_h_to_4h, dense_4h_to_h or "all-linear"/);
  assert.throws(() => resolve(["embed_out"], "gpt_neox"), /\(adapters on the embeddings or the head are not supported\)/);
  assert.deepEqual(resolve("all-linear", "opt"), ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]);
  assert.deepEqual(resolve(null, "opt"), ["q_proj", "v_proj"]);
  assert.throws(() => resolve(["q_proj", "o_proj"], "opt"), /"o_proj" is not a LoRA target of OPTForCausalLM; use names from q_proj, k_proj, v_proj, out_proj, fc1, fc2/);
  // before the model is known (config time) any family's module name passes, anything else does not
  for (const ok of ["qkv_proj", ["query_key_value", "dense"], "all-linear", null]) checkTargetModules(ok);
  assert.throws(() => checkTargetModules(["q_proj", "c_attn"]), /"c_attn" is not a LoRA target of any supported model; use a model's linear modules \(q_proj, .*out_proj, project_in, project_out\) or "all-linear"/);
  // OPT-350m's project_in / project_out (word_embed_proj_dim) are linear modules PEFT's all-linear adapts too
  const opt350 = { ...tinyFamily("opt"), embedDim: 16 };
  assert.deepEqual(resolveTargetModules("all-linear", "t", opt350), ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2", "project_in", "project_out"]);
  assert.throws(() => checkTargetModules([]), /non-empty list/);
});

/** The adapter tensors of a tiny family, by hand: [name suffix after the layer, A shape, B shape] for r = 4. */
const HAND: Record<string, { prefix: string; modules: [string, number, number][] }> = {
  // C 16, heads 2 (kv 1) of 8, I 24: q 16, kv 8
  gemma2: { prefix: "model.layers", modules: [["self_attn.q_proj", 16, 16], ["self_attn.k_proj", 16, 8], ["self_attn.v_proj", 16, 8], ["self_attn.o_proj", 16, 16], ["mlp.gate_proj", 16, 24], ["mlp.up_proj", 16, 24], ["mlp.down_proj", 24, 16]] },
  phi3: { prefix: "model.layers", modules: [["self_attn.qkv_proj", 16, 32], ["self_attn.o_proj", 16, 16], ["mlp.gate_up_proj", 16, 48], ["mlp.down_proj", 24, 16]] },
  phi: { prefix: "model.layers", modules: [["self_attn.q_proj", 16, 16], ["self_attn.k_proj", 16, 16], ["self_attn.v_proj", 16, 16], ["self_attn.dense", 16, 16], ["mlp.fc1", 16, 24], ["mlp.fc2", 24, 16]] },
  gpt_neox: { prefix: "gpt_neox.layers", modules: [["attention.query_key_value", 16, 48], ["attention.dense", 16, 16], ["mlp.dense_h_to_4h", 16, 24], ["mlp.dense_4h_to_h", 24, 16]] },
  opt: { prefix: "model.decoder.layers", modules: [["self_attn.q_proj", 16, 16], ["self_attn.k_proj", 16, 16], ["self_attn.v_proj", 16, 16], ["self_attn.out_proj", 16, 16], ["fc1", 16, 24], ["fc2", 24, 16]] },
};
const handShapes = (name: string, dora: boolean) => {
  const { prefix, modules } = HAND[name];
  const out = new Map<string, number[]>();
  for (let l = 0; l < tinyFamily(name).numLayers; l++) {
    for (const [path, inF, outF] of modules) {
      const base = `base_model.model.${prefix}.${l}.${path}`;
      out.set(`${base}.lora_A.weight`, [4, inF]).set(`${base}.lora_B.weight`, [outF, 4]);
      if (dora) out.set(`${base}.lora_magnitude_vector`, [outF]);
    }
  }
  return out;
};
const all = (name: string, useDora = false): LoraConfig => ({ r: 4, loraAlpha: 8, useRslora: false, targetModules: resolve("all-linear", name), loraDropout: 0, useDora });

test("the adapter tensors of each family: PEFT's names (base_model.model. + the module path) and [r, in] / [out, r] shapes", () => {
  for (const name of Object.keys(HAND)) {
    for (const dora of [false, true]) {
      const shapes = adapterShapes(tinyFamily(name), all(name, dora));
      assert.deepEqual(new Map(shapes.map((s) => [s.name, s.shape])), handShapes(name, dora), `${name}${dora ? " DoRA" : ""}`);
    }
  }
  assert.throws(() => adapterShapes(tinyFamily("gpt_neox"), { r: 4, targetModules: ["q_proj"] }), /target_modules "q_proj" are not modules of this GPTNeoXForCausalLM \(its modules: query_key_value, dense, dense_h_to_4h, dense_4h_to_h\); the adapter was trained on another model family/);
});

/** An adapter folder written by hand: adapter_config.json (PEFT's keys) and the given tensors, random values. */
function writeAdapterFolder(dir: string, targetModules: string[], shapes: Map<string, number[]>, more: Record<string, unknown> = {}): Map<string, Float32Array> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, ADAPTER_CONFIG_FILE), pythonJson({ ...adapterConfigJson({ r: 4, loraAlpha: 8, useRslora: false, targetModules: targetModules as LoraConfig["targetModules"], loraDropout: 0 }, null), ...more }));
  const uniform = mulberry32(9);
  const values = new Map([...shapes].map(([k, s]) => [k, Float32Array.from({ length: s.reduce((a, b) => a * b, 1) }, () => uniform() - 0.5)]));
  writeSafetensors(join(dir, ADAPTER_WEIGHTS_FILE), [...shapes].map(([name, shape]) => ({ name, dtype: "F32" as const, shape, data: values.get(name)! })), { format: "pt" });
  return values;
}

test("adapter folders of each family read back with the family's module names, in its order; mixed or unknown modules refused", () => {
  for (const name of Object.keys(HAND)) {
    const dir = freshDir();
    writeAdapterFolder(dir, all(name).targetModules, handShapes(name, false));
    assert.deepEqual(readAdapterFolder(dir).config.targetModules, all(name).targetModules, name);
  }
  // a subset: GPT-NeoX's query_key_value and dense_4h_to_h
  const neox = freshDir();
  const sub = new Map([...handShapes("gpt_neox", false)].filter(([k]) => /query_key_value|dense_4h_to_h/.test(k)));
  writeAdapterFolder(neox, ["dense_4h_to_h", "query_key_value"], sub);
  assert.deepEqual(readAdapterFolder(neox).config.targetModules, ["query_key_value", "dense_4h_to_h"]);
  // adapter_config.json must list what the tensors hold
  const lying = freshDir();
  writeAdapterFolder(lying, ["query_key_value"], sub);
  assert.throws(() => readAdapterFolder(lying), /lists target_modules \[query_key_value\] but adapter_model\.safetensors holds adapters for \[dense_4h_to_h, query_key_value\]/);
  // tensors of two families' layouts
  const mixed = freshDir();
  writeAdapterFolder(mixed, ["q_proj", "fc1"], new Map([...handShapes("opt", false)].filter(([k]) => /q_proj|\.fc1\./.test(k)).concat([...handShapes("phi", false)].filter(([k]) => /mlp\.fc1/.test(k)))));
  assert.throws(() => readAdapterFolder(mixed), /its tensors adapt modules of different model families \(model\.decoder\.layers\.\{i\}\.self_attn\.q_proj, model\.decoder\.layers\.\{i\}\.fc1, model\.layers\.\{i\}\.mlp\.fc1\)/);
  const unknown = freshDir();
  writeAdapterFolder(unknown, ["c_attn"], new Map([["base_model.model.transformer.h.0.attn.c_attn.lora_A.weight", [4, 16]]]));
  assert.throws(() => readAdapterFolder(unknown), /unexpected tensor base_model\.model\.transformer\.h\.0\.attn\.c_attn\.lora_A\.weight; expected base_model\.model\.<layers>\.\{i\}\.<module>\.lora_\{A\|B\}\.weight of a layer module/);
});

/** A stand-in for an attached adapter of `cfg` (table laid out from adapterShapes), for the file functions. */
function fakeAdapter(cfg: DecoderConfig, lora: LoraConfig): LoraAdapter {
  let offset = 0;
  const table: ParamInfo[] = adapterShapes(cfg, lora).map(({ name, shape }) => {
    const size = shape.reduce((a, b) => a * b, 1);
    const p = { name, shape, offset, size, decay: true, quant4: false };
    offset += size;
    return p;
  });
  return { table, params: new Float32Array(offset), config: lora, modelConfig: cfg } as unknown as LoraAdapter;
}

test("GPT-NeoX adapters: query_key_value's lora_B rows and DoRA magnitude in the core's q | k | v order once loaded, per head again when saved", () => {
  const cfg = tinyFamily("gpt_neox"), lora = all("gpt_neox", true);
  const dir = freshDir();
  const file = writeAdapterFolder(dir, lora.targetModules, handShapes("gpt_neox", true), { use_dora: true });
  const adapter = fakeAdapter(cfg, lora);
  loadAdapterWeights(dir, adapter);
  for (const p of adapter.table) {
    const v = adapter.params.subarray(p.offset, p.offset + p.size);
    const rows = /query_key_value\.(lora_B\.weight|lora_magnitude_vector)$/.test(p.name);
    assert.deepEqual(v, rows ? neoxQkvToStacked(file.get(p.name)!, 2, 8) : file.get(p.name)!, p.name);
  }
  const out = freshDir();
  mkdirSync(out);
  writeAdapterFiles(out, adapter, null);
  const h = readHeader(join(out, ADAPTER_WEIGHTS_FILE));
  for (const p of adapter.table) assert.deepEqual(readTensor(h, p.name), file.get(p.name)!, p.name);
  // Phi-3's fused qkv_proj is already q | k | v: nothing moves
  const phi3 = tinyFamily("phi3"), l3 = all("phi3");
  const d3 = freshDir();
  const f3 = writeAdapterFolder(d3, l3.targetModules, handShapes("phi3", false));
  const a3 = fakeAdapter(phi3, l3);
  loadAdapterWeights(d3, a3);
  for (const p of a3.table) assert.deepEqual(a3.params.subarray(p.offset, p.offset + p.size), f3.get(p.name)!, p.name);
});

for (const name of Object.keys(HAND)) {
  test(`${name}: the core's adapter table has PEFT's names and shapes; an all-linear DoRA adapter saves and loads back`, () => {
    const cfg = tinyFamily(name);
    const model = new NativeModel(cfg), other = new NativeModel(cfg);
    try {
      const adapter = model.attachLora(all(name, true));
      assert.deepEqual(adapter.config.targetModules, all(name).targetModules);
      assert.deepEqual(new Map(adapter.table.map((p) => [p.name, p.shape])), handShapes(name, true));
      initLora(adapter, 3);
      for (const p of adapter.table) adapter.param(p.name).forEach((_, i, a) => { a[i] += 1e-3 * ((i % 7) - 3); });   // B != 0, so the rows matter
      const dir = freshDir();
      saveAdapter(dir, adapter, { baseModelNameOrPath: null });
      const j = readAdapterFolder(dir);
      assert.deepEqual(j.configJson.target_modules, [...all(name).targetModules].sort());
      const h = readHeader(join(dir, ADAPTER_WEIGHTS_FILE));
      for (const p of adapter.table) {
        const v = adapter.params.subarray(p.offset, p.offset + p.size);
        const rows = name === "gpt_neox" && /query_key_value\.(lora_B\.weight|lora_magnitude_vector)$/.test(p.name);
        assert.deepEqual(readTensor(h, p.name), rows ? stackedToNeoxQkv(v, cfg.numHeads, cfg.headDim) : v, p.name);
      }
      const { adapter: back } = loadAdapter(dir, other);
      for (const p of adapter.table) assert.deepEqual(back.param(p.name), adapter.param(p.name), p.name);
    } finally {
      model.free();
      other.free();
    }
  });
}
