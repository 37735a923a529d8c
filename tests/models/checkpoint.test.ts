// Model folders: the parameter table layout (offsets worked out by hand), seeded init, save -> load round
// trips (single file, shards, bf16), strict name/shape checks, tied lm_head handling, and atomic saves that
// leave nothing behind when interrupted. All folders are created under os.tmpdir() and removed.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildParamTable, loadWeightsInto, paramBufferSize, randomInit, readModelDir, saveModel } from "../../src/models/checkpoint.ts";
import { configToJson, parseConfig } from "../../src/models/config.ts";
import { readHeader, readTensorBytes, writeSafetensors, type TensorToWrite } from "../../src/models/safetensors.ts";
import { f32ToBf16, bf16ToF32 } from "../../src/models/dtype.ts";
import type { DecoderConfig, ParamInfo } from "../../src/core/types.ts";

const root = mkdtempSync(join(tmpdir(), "preftune-checkpoint-"));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => join(root, `m${n++}`);

const base: DecoderConfig = {
  architecture: "Qwen3ForCausalLM", vocabSize: 5, hiddenSize: 4, intermediateSize: 6, numLayers: 1, numHeads: 2, numKvHeads: 1, headDim: 2,
  rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 64, tieWordEmbeddings: false, qkvBias: true, oBias: false, mlpBias: false, qkNorm: true,
  ropeScaling: null,
};
const tinyLlama = parseConfig({ architectures: ["LlamaForCausalLM"], vocab_size: 7, hidden_size: 8, intermediate_size: 12, num_hidden_layers: 2,
  num_attention_heads: 2, num_key_value_heads: 1, tie_word_embeddings: true, max_position_embeddings: 32 }, "tiny");

test("buildParamTable: order, 16-float alignment, stacked q/k/v and gate/up, decay flags", () => {
  const t = buildParamTable(base);
  const rows = t.map((p) => [p.name, p.shape, p.offset, p.decay]);
  const L = "model.layers.0.";
  assert.deepEqual(rows, [
    ["model.embed_tokens.weight", [5, 4], 0, true],
    [`${L}input_layernorm.weight`, [4], 32, false],
    [`${L}self_attn.q_proj.weight`, [4, 4], 48, true],
    [`${L}self_attn.k_proj.weight`, [2, 4], 64, true],
    [`${L}self_attn.v_proj.weight`, [2, 4], 72, true],
    [`${L}self_attn.q_proj.bias`, [4], 80, false],
    [`${L}self_attn.k_proj.bias`, [2], 84, false],
    [`${L}self_attn.v_proj.bias`, [2], 86, false],
    [`${L}self_attn.q_norm.weight`, [2], 96, false],
    [`${L}self_attn.k_norm.weight`, [2], 112, false],
    [`${L}self_attn.o_proj.weight`, [4, 4], 128, true],
    [`${L}post_attention_layernorm.weight`, [4], 144, false],
    [`${L}mlp.gate_proj.weight`, [6, 4], 160, true],
    [`${L}mlp.up_proj.weight`, [6, 4], 184, true],
    [`${L}mlp.down_proj.weight`, [4, 6], 208, true],
    ["model.norm.weight", [4], 240, false],
    ["lm_head.weight", [5, 4], 256, true],
  ]);
  for (const p of t) assert.equal(p.size, p.shape.reduce((a, b) => a * b, 1));
  assert.equal(paramBufferSize(base), 288);
  const tied = buildParamTable({ ...base, tieWordEmbeddings: true, qkNorm: false, qkvBias: false, oBias: true, mlpBias: true, numLayers: 2 });
  assert.ok(!tied.some((p) => p.name === "lm_head.weight"));
  const names = tied.map((p) => p.name.replace("model.layers.1.", "L1.")).filter((s) => s.startsWith("L1."));
  assert.deepEqual(names, ["L1.input_layernorm.weight", "L1.self_attn.q_proj.weight", "L1.self_attn.k_proj.weight", "L1.self_attn.v_proj.weight",
    "L1.self_attn.o_proj.weight", "L1.self_attn.o_proj.bias", "L1.post_attention_layernorm.weight", "L1.mlp.gate_proj.weight", "L1.mlp.up_proj.weight",
    "L1.mlp.gate_proj.bias", "L1.mlp.up_proj.bias", "L1.mlp.down_proj.weight", "L1.mlp.down_proj.bias"]);
  const up = tied.find((p) => p.name === "model.layers.1.mlp.up_proj.bias")!;
  const gate = tied.find((p) => p.name === "model.layers.1.mlp.gate_proj.bias")!;
  assert.equal(up.offset, gate.offset + gate.size);
});

test("randomInit is seeded: normal weights, zero biases, unit norms", () => {
  const cfg = { ...base, hiddenSize: 64, intermediateSize: 256, numHeads: 4, numKvHeads: 2, headDim: 16, vocabSize: 300 };
  const t = buildParamTable(cfg);
  const a = new Float32Array(paramBufferSize(cfg)).fill(9);
  const b = new Float32Array(a.length);
  randomInit(t, a, 42);
  randomInit(t, b, 42);
  const same = (x: Float32Array, y: Float32Array) => Buffer.from(x.buffer).equals(Buffer.from(y.buffer));
  assert.ok(same(a, b));
  randomInit(t, b, 43);
  assert.ok(!same(a, b));
  for (const p of t) {
    const v = a.subarray(p.offset, p.offset + p.size);
    if (p.name.endsWith(".bias")) assert.ok(v.every((x) => x === 0), p.name);
    else if (p.shape.length === 1) assert.ok(v.every((x) => x === 1), p.name);
  }
  const w = t.find((p) => p.name.endsWith("mlp.gate_proj.weight"))!;
  const v = a.subarray(w.offset, w.offset + w.size);
  const mean = v.reduce((s, x) => s + x, 0) / v.length;
  const std = Math.sqrt(v.reduce((s, x) => s + (x - mean) ** 2, 0) / v.length);
  assert.ok(Math.abs(mean) < 0.001 && Math.abs(std - 0.02) < 0.001, `mean ${mean} std ${std}`);
  const within1 = v.filter((x) => Math.abs(x) < 0.02).length / v.length;
  assert.ok(Math.abs(within1 - 0.6827) < 0.02, `fraction within 1 std: ${within1}`); // normal, not uniform
  const small = buildParamTable(base); // embedding of 20 floats, next tensor at 32
  const s = new Float32Array(paramBufferSize(base)).fill(9);
  randomInit(small, s, 1);
  assert.ok(s.subarray(20, 32).every((x) => x === 0), "alignment gaps are zeroed");
});

function randomModel(cfg: DecoderConfig, seed = 1): { table: ParamInfo[]; params: Float32Array } {
  const table = buildParamTable(cfg);
  const params = new Float32Array(paramBufferSize(cfg));
  randomInit(table, params, seed, 0.5);
  for (const p of table) if (p.shape.length === 1) for (let i = 0; i < p.size; i++) params[p.offset + i] = 1 + i / 8; // make norms/biases distinguishable
  return { table, params };
}
const values = (t: ParamInfo[], p: Float32Array) => t.map((x) => [...p.subarray(x.offset, x.offset + x.size)]);

test("save -> load round trip (F32 exact), tied model stored without lm_head.weight", () => {
  const dir = freshDir();
  const { table, params } = randomModel(tinyLlama);
  saveModel(dir, configToJson(tinyLlama), table, params);
  assert.deepEqual(readdirSync(dir).sort(), ["config.json", "model.safetensors"]);
  const h = readHeader(join(dir, "model.safetensors"));
  assert.deepEqual(h.metadata, { format: "pt" });
  assert.ok(!h.tensors.has("lm_head.weight"));
  assert.deepEqual([...h.tensors.keys()].sort(), table.map((p) => p.name).sort());
  const { config, configJson } = readModelDir(dir);
  assert.deepEqual(config, tinyLlama);
  assert.equal(configJson.torch_dtype, "float32");
  const back = new Float32Array(params.length);
  loadWeightsInto(dir, buildParamTable(config), back);
  assert.deepEqual(values(table, back), values(table, params));
});

test("BF16 save rounds once; sharded save writes an index and loads back", () => {
  const cfg = { ...tinyLlama, tieWordEmbeddings: false };
  const { table, params } = randomModel(cfg, 5);
  const dir = freshDir();
  saveModel(dir, configToJson(cfg), table, params, { dtype: "BF16", maxShardBytes: 400 });
  const files = readdirSync(dir).sort();
  const shards = files.filter((f) => f.endsWith(".safetensors"));
  assert.ok(shards.length >= 3, files.join(" "));
  shards.forEach((f, i) => assert.equal(f, `model-${String(i + 1).padStart(5, "0")}-of-${String(shards.length).padStart(5, "0")}.safetensors`));
  assert.ok(files.includes("model.safetensors.index.json") && !files.includes("model.safetensors"));
  const index = JSON.parse(readFileSync(join(dir, "model.safetensors.index.json"), "utf8"));
  assert.deepEqual(Object.keys(index.weight_map), table.map((p) => p.name).sort());
  assert.equal(index.metadata.total_size, table.reduce((s, p) => s + p.size * 2, 0));
  assert.equal(JSON.parse(readFileSync(join(dir, "config.json"), "utf8")).torch_dtype, "bfloat16");
  for (const f of shards) {
    const h = readHeader(join(dir, f));
    assert.equal(h.metadata?.format, "pt");
    const bytes = [...h.tensors.values()].reduce((s, t) => s + t.dataOffsets[1] - t.dataOffsets[0], 0);
    assert.ok(bytes <= 400 || h.tensors.size === 1, `${f} holds ${bytes} bytes`);
  }
  const back = new Float32Array(params.length);
  loadWeightsInto(dir, table, back);
  const want = bf16ToF32(f32ToBf16(params));
  for (const p of table) assert.deepEqual([...back.subarray(p.offset, p.offset + p.size)], [...want.subarray(p.offset, p.offset + p.size)], p.name);
});

// Writes a folder with the given tensors (name -> shape) filled with the tensor's index + 1.
function writeFolder(dir: string, cfg: DecoderConfig, tensors: [string, number[]][]): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), JSON.stringify(configToJson(cfg)));
  const list: TensorToWrite[] = tensors.map(([name, shape], i) => ({ name, dtype: "F32", shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(i + 1) }));
  writeSafetensors(join(dir, "model.safetensors"), list, { format: "pt" });
}

test("missing, extra and misshaped tensors are all reported with names and shapes", () => {
  const table = buildParamTable(tinyLlama);
  const entries: [string, number[]][] = table.map((p) => [p.name, p.shape]);
  const dir = freshDir();
  writeFolder(dir, tinyLlama, [
    ...entries.filter(([n]) => n !== "model.layers.1.mlp.up_proj.weight").map(([n, s]): [string, number[]] => n === "model.layers.0.self_attn.k_proj.weight" ? [n, [8, 8]] : [n, s]),
    ["model.layers.0.self_attn.extra.weight", [3]],
    ["model.layers.0.self_attn.rotary_emb.inv_freq", [2]],
  ]);
  const params = new Float32Array(paramBufferSize(tinyLlama));
  assert.throws(() => loadWeightsInto(dir, table, params), (e: Error) => {
    assert.match(e.message, /checkpoint does not match the model config \(3 problems\)/);
    assert.match(e.message, /missing tensor model\.layers\.1\.mlp\.up_proj\.weight, expected shape \[12, 8\]/);
    assert.match(e.message, /model\.layers\.0\.self_attn\.k_proj\.weight: expected shape \[4, 8\], found \[8, 8\] in model\.safetensors/);
    assert.match(e.message, /unexpected tensor model\.layers\.0\.self_attn\.extra\.weight \[3\]/);
    assert.doesNotMatch(e.message, /inv_freq/);
    return true;
  });
  assert.ok(params.every((x) => x === 0), "nothing is read when the check fails");
  // Many problems: the list is capped.
  const dir2 = freshDir();
  writeFolder(dir2, tinyLlama, [["only.one", [1]]]);
  assert.throws(() => loadWeightsInto(dir2, table, params), /\(\d+ problems\)[\s\S]*\.\.\. and \d+ more$/);
  const untied = buildParamTable({ ...tinyLlama, tieWordEmbeddings: false });
  assert.throws(() => loadWeightsInto(dir, untied, new Float32Array(paramBufferSize({ ...tinyLlama, tieWordEmbeddings: false }))), /missing tensor lm_head\.weight.*tie_word_embeddings: true/);
});

test("tied model: an lm_head.weight equal to the embedding is accepted, a different one refused", () => {
  const table = buildParamTable(tinyLlama);
  const embed = table[0];
  const { params } = randomModel(tinyLlama, 3);
  const tensors = (head: Float32Array): TensorToWrite[] => [
    ...table.map((p): TensorToWrite => ({ name: p.name, dtype: "BF16", shape: p.shape, data: params.subarray(p.offset, p.offset + p.size) })),
    { name: "lm_head.weight", dtype: "BF16", shape: embed.shape, data: head },
  ];
  const dir = freshDir();
  mkdirSync(dir);
  writeFileSync(join(dir, "config.json"), JSON.stringify(configToJson(tinyLlama)));
  writeSafetensors(join(dir, "model.safetensors"), tensors(params.slice(embed.offset, embed.offset + embed.size)));
  const back = new Float32Array(params.length);
  loadWeightsInto(dir, table, back);
  const head = params.slice(embed.offset, embed.offset + embed.size);
  head[13] += 1;
  writeSafetensors(join(dir, "model.safetensors"), tensors(head));
  assert.throws(() => loadWeightsInto(dir, table, back), /lm_head\.weight differs from model\.embed_tokens\.weight \(element 13: .*tie_word_embeddings: true/);
});

test("sharded checkpoints written by hand (index + shards) load; index problems are named", () => {
  const table = buildParamTable(tinyLlama);
  const { params } = randomModel(tinyLlama, 9);
  const dir = freshDir();
  mkdirSync(dir);
  writeFileSync(join(dir, "config.json"), JSON.stringify(configToJson(tinyLlama)));
  const half = Math.ceil(table.length / 2);
  const parts = [table.slice(0, half), table.slice(half)];
  const weightMap: Record<string, string> = {};
  parts.forEach((part, i) => {
    const f = `model-0000${i + 1}-of-00002.safetensors`;
    writeSafetensors(join(dir, f), part.map((p) => ({ name: p.name, dtype: "F16", shape: p.shape, data: params.subarray(p.offset, p.offset + p.size) })));
    for (const p of part) weightMap[p.name] = f;
  });
  writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  const { files } = readModelDir(dir);
  assert.equal(files.shards.length, 2);
  const back = new Float32Array(params.length);
  loadWeightsInto(dir, table, back);
  for (const p of table) {
    for (let i = 0; i < p.size; i++) {
      const a = back[p.offset + i], b = params[p.offset + i];
      assert.ok(Math.abs(a - b) <= Math.abs(b) * 2 ** -11 + 2 ** -24, `${p.name}[${i}]: ${a} vs ${b}`);
    }
  }
  writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: { ...weightMap, "x.weight": "model-00003-of-00002.safetensors" } }));
  assert.throws(() => readModelDir(dir), /shard model-00003-of-00002\.safetensors \(listed for "x\.weight"\) is missing/);
  writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: { ...weightMap, "x.weight": "model-00001-of-00002.safetensors" } }));
  assert.throws(() => readModelDir(dir), /weight_map lists "x\.weight" in model-00001-of-00002\.safetensors, but that file does not hold it/);
});

test("missing files are named", () => {
  const dir = freshDir();
  mkdirSync(dir);
  assert.throws(() => readModelDir(dir), /no config\.json/);
  writeFileSync(join(dir, "config.json"), JSON.stringify(configToJson(tinyLlama)));
  writeFileSync(join(dir, "pytorch_model.bin"), "");
  assert.throws(() => readModelDir(dir), /no model weights: looked for model\.safetensors and model\.safetensors\.index\.json; found pytorch_model\.bin/);
});

test("atomic save: an interrupted save leaves no folder and no temp dir; an old folder survives intact", () => {
  const parent = freshDir();
  mkdirSync(parent);
  const dir = join(parent, "out");
  const { table, params } = randomModel(tinyLlama, 11);
  const boom = (after: number) => {
    let k = 0;
    return () => {
      if (++k === after) throw new Error("disk full (injected)");
    };
  };
  // Fails after the first shard of several.
  assert.throws(() => saveModel(dir, configToJson(tinyLlama), table, params, { maxShardBytes: 300, onFileWritten: boom(2) }), /injected/);
  assert.deepEqual(readdirSync(parent), []);
  // An existing folder is replaced only by a complete one.
  saveModel(dir, configToJson(tinyLlama), table, params);
  const before = readFileSync(join(dir, "model.safetensors"));
  const other = randomModel(tinyLlama, 12).params;
  assert.throws(() => saveModel(dir, configToJson(tinyLlama), table, other, { onFileWritten: boom(2) }), /injected/);
  assert.deepEqual(readdirSync(parent), ["out"]);
  assert.deepEqual(readFileSync(join(dir, "model.safetensors")), before);
  // A successful save over it replaces the contents and leaves no side folders.
  saveModel(dir, configToJson(tinyLlama), table, other, { maxShardBytes: 300 });
  assert.deepEqual(readdirSync(parent), ["out"]);
  assert.ok(!existsSync(join(dir, "model.safetensors")) && existsSync(join(dir, "model.safetensors.index.json")));
  const back = new Float32Array(params.length);
  loadWeightsInto(dir, table, back);
  assert.deepEqual(values(table, back), values(table, other));
});

test("saveModel refuses a config whose tying disagrees with the table", () => {
  const { table, params } = randomModel(tinyLlama);
  assert.throws(() => saveModel(freshDir(), configToJson({ ...tinyLlama, tieWordEmbeddings: false }), table, params), /tie_word_embeddings=false but the parameter table has no lm_head\.weight/);
});

// Tiny checkpoints written by PyTorch/transformers (tools/reference), when present.
const fixtures = join("tests", "fixtures", "core");
const fixtureDirs = existsSync(fixtures) ? readdirSync(fixtures).filter((d) => existsSync(join(fixtures, d, "config.json"))) : [];
test("transformers-written fixtures load with buildParamTable + loadWeightsInto", { skip: fixtureDirs.length === 0 && "no fixtures in tests/fixtures/core" }, () => {
  for (const d of fixtureDirs) {
    const dir = join(fixtures, d);
    const { config } = readModelDir(dir);
    const table = buildParamTable(config);
    const params = new Float32Array(paramBufferSize(config));
    loadWeightsInto(dir, table, params);
    for (const p of table) {
      const v = params.subarray(p.offset, p.offset + p.size);
      assert.ok(v.every(Number.isFinite), `${d}: ${p.name} has non-finite values`);
      if (p.shape.length === 2) assert.ok(v.some((x) => x !== 0), `${d}: ${p.name} is all zeros`);
    }
    // What we save has the tensor names, shapes, dtype and metadata transformers itself wrote, and the same bytes.
    const { configJson } = readModelDir(dir);
    const out = freshDir();
    saveModel(out, configJson, table, params);
    const ours = readHeader(join(out, "model.safetensors"));
    const theirs = readHeader(join(dir, "model.safetensors"));
    assert.deepEqual(ours.metadata, theirs.metadata);
    const summary = (h: typeof ours) => [...h.tensors].map(([k, t]) => `${k} ${t.dtype} [${t.shape}]`).sort();
    assert.deepEqual(summary(ours), summary(theirs), d);
    for (const name of theirs.tensors.keys()) assert.deepEqual(readTensorBytes(ours, name), readTensorBytes(theirs, name), `${d}: ${name}`);
  }
});
