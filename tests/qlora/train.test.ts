// QLoRA through the training config and loop: the bitsandbytes keys honoured (and refused or noted where they ask
// for what is not built); the ORPO QLoRA walkthrough's YAML verbatim (model, data, output_dir and max_steps
// substituted) training end to end on a 4-bit base with an evaluation at step 20 and a PEFT adapter written; and a
// run on the 4-bit base giving the same losses and adapter as a run on an fp32 folder holding its dequantized weights;
// and generation (src/generate) on a 4-bit base.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { saveModel, readModelDir } from "../../src/models/checkpoint.ts";
import { dequantizedCopy, loadQuantizedModel } from "../../src/models/quantize.ts";
import type { Quant4Config } from "../../src/core/native.ts";
import { loadConfig, readConfigFile, resolveConfig } from "../../src/train/config.ts";
import { train } from "../../src/train/loop.ts";
import { Generator, loadGenerationModel } from "../../src/generate/engine.ts";
import { readHeader, readTensor } from "../../src/models/safetensors.ts";
import { makeTinyModel, scratch } from "../helpers/tiny-model.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
let tmp: ReturnType<typeof scratch>;
let model: string, pairs: string;
before(() => {
  tmp = scratch("preftune-qlora-");
  model = makeTinyModel(join(tmp.dir, "model"), { tokenizer: "llama2", hidden: 32, intermediate: 64, layers: 1, heads: 2, kvHeads: 1, maxPositions: 1024, seed: 3 });
  pairs = join(tmp.dir, "pairs");
  mkdirSync(pairs);
  for (const [f, n] of [["train.jsonl", 24], ["test.jsonl", 4]] as const) {
    const lines = readFileSync(join(ROOT, "data", "hh-rlhf-harmless-sample", f), "utf8").split("\n").filter(Boolean).slice(0, n);
    writeFileSync(join(pairs, f), lines.join("\n") + "\n");
  }
});
after(() => tmp.cleanup());

const base = { method: "orpo", model_name_or_path: "m", dataset: "d", use_peft: true };

test("the bitsandbytes keys: honoured, noted when they change nothing, refused when they ask for what is not built", () => {
  const { config } = resolveConfig({ ...base, load_in_4bit: true, bnb_4bit_quant_type: "fp4", bnb_4bit_use_double_quant: true });
  assert.equal(config.load_in_4bit, true);
  assert.equal(config.bnb_4bit_quant_type, "fp4");
  assert.equal(config.bnb_4bit_use_double_quant, true);
  assert.equal(resolveConfig({ ...base, load_in_4bit: true }).config.bnb_4bit_quant_type, "nf4", "TRL's default code book");
  assert.throws(() => resolveConfig({ ...base, use_peft: false, load_in_4bit: true }), /load_in_4bit: true needs use_peft: true: a 4-bit base is frozen/);
  assert.throws(() => resolveConfig({ ...base, load_in_8bit: true }), /load_in_8bit: true \(bitsandbytes' LLM.int8 base\) is not built; use load_in_4bit/);
  assert.throws(() => resolveConfig({ ...base, load_in_4bit: true, bnb_4bit_quant_type: "int4" }), /bnb_4bit_quant_type: must be one of nf4, fp4/);
  const bf = resolveConfig({ ...base, load_in_4bit: true, bnb_4bit_compute_dtype: "torch.bfloat16" });
  assert.ok(bf.notes.some((n) => /^bnb_4bit_compute_dtype: torch.bfloat16: the 4-bit weights are dequantized into fp32 tiles/.test(n)), bf.notes.join("\n"));
  const off = resolveConfig({ ...base, use_bnb_nested_quant: true, bnb_4bit_quant_type: "fp4" });
  assert.ok(off.notes.some((n) => /^use_bnb_nested_quant, bnb_4bit_quant_type: no effect because load_in_4bit is false/.test(n)), off.notes.join("\n"));
  const merged = resolveConfig({ ...base, load_in_4bit: true, merge_adapter: true });
  assert.ok(merged.notes.some((n) => /^merge_adapter: with load_in_4bit the merged model is the dequantized 4-bit weights plus s·B·A/.test(n)), merged.notes.join("\n"));
  const storage = resolveConfig({ ...base, load_in_4bit: true, bnb_4bit_quant_storage: "bfloat16" });
  assert.ok(storage.notes.some((n) => /^bnb_4bit_quant_storage: no effect: the packed 4-bit bytes are the same/.test(n)));
});

test("the ORPO QLoRA walkthrough's YAML trains end to end on a 4-bit base: eval at step 20, a PEFT adapter, no 4-bit note", async () => {
  const raw = readConfigFile(join(ROOT, "tests", "recipes", "fixtures", "orpo-qlora-walkthrough.yaml"));
  const outDir = join(tmp.dir, "walkthrough");
  Object.assign(raw, { model_name_or_path: model, dataset: pairs, output_dir: outDir, max_steps: 20 });
  const file = join(tmp.dir, "walkthrough.yaml");
  writeFileSync(file, stringify(raw));
  const { config, notes } = loadConfig(file);
  for (const k of ["load_in_4bit", "bnb_4bit_quant_type", "use_bnb_nested_quant"]) assert.ok(!notes.some((n) => n.includes(k)), `${k} is honoured, not noted:\n${notes.join("\n")}`);
  const lines: string[] = [];
  const r = await train(config, { notes, handleSignals: false, print: (l) => lines.push(l) });
  assert.equal(r.exitCode, 0);
  assert.equal(r.globalStep, 20);
  assert.ok(lines.some((l) => /load_in_4bit: base projections held in nf4 with double quantization \(blocks of 64\), embeddings, norms and lm_head in bf16/.test(l)), lines.join("\n"));
  const evals = r.logHistory.filter((e) => "eval_loss" in e);
  assert.deepEqual(evals.map((e) => e.step), [20]);
  assert.ok(Number.isFinite(evals[0].eval_loss as number));
  assert.ok(existsSync(join(outDir, "adapter_model.safetensors")) && existsSync(join(outDir, "adapter_config.json")));
  assert.ok(!existsSync(join(outDir, "model.safetensors")));
});

/** An fp32 model folder (with the tokenizer) holding what `model` dequantizes to under `quant`: the reference run. */
function writeDequantized(name: string, quant: Quant4Config): string {
  const deqDir = join(tmp.dir, name);
  const { config: dcfg, configJson } = readModelDir(model);
  const q = loadQuantizedModel(model, dcfg, quant, "fp32");
  const full = dequantizedCopy(q);
  q.free();
  try {
    saveModel(deqDir, configJson, full.table, full.params, { extra: (d) => { for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(model, f), join(d, f)); } });
  } finally {
    full.free();
  }
  return deqDir;
}

test("training on the 4-bit base equals training on an fp32 folder of its dequantized weights", async () => {
  const deqDir = writeDequantized("dequantized", { quantType: "nf4", doubleQuant: true });
  const run = async (modelDir: string, quant: boolean, out: string) => {
    const { config, notes } = loadConfig(null, [
      "--method", "orpo", "--model_name_or_path", modelDir, "--dataset", pairs, "--output_dir", join(tmp.dir, out), "--max_steps", "3",
      "--per_device_train_batch_size", "2", "--learning_rate", "1e-3", "--use_peft", "--lora_target_modules", "all-linear", "--lora_dropout", "0",
      "--logging_steps", "1", "--max_length", "64", "--dtype", "float32", ...(quant ? ["--load_in_4bit", "--use_bnb_nested_quant"] : []),
    ]);
    const r = await train(config, { notes, quiet: true, handleSignals: false });
    const adapter = readHeader(join(tmp.dir, out, "adapter_model.safetensors"));
    return { losses: r.logHistory.filter((e) => "loss" in e).map((e) => e.loss as number), adapter };
  };
  const a = await run(model, true, "q4"), b = await run(deqDir, false, "fp32");
  assert.equal(a.losses.length, 3);
  for (let i = 0; i < 3; i++) assert.ok(Math.abs(a.losses[i] - b.losses[i]) <= 1e-5, `step ${i + 1} loss ${a.losses[i]} vs ${b.losses[i]}`);
  let worst = 0;
  for (const name of a.adapter.tensors.keys()) {
    const x = readTensor(a.adapter, name), y = readTensor(b.adapter, name);
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - y[i]));
  }
  assert.ok(worst <= 1e-5, `adapter max abs diff ${worst}`);
});

test("generation (src/generate) on a 4-bit base: the greedy tokens of an fp32 model holding its dequantized weights", async () => {
  const deqDir = writeDequantized("dequantized-gen", { quantType: "fp4", doubleQuant: false });
  const a = await loadGenerationModel(model, { quantization: { quantType: "fp4", doubleQuant: false } });
  const b = await loadGenerationModel(deqDir);
  try {
    assert.ok(a.model.quantization && !b.model.quantization);
    const req = (ids: number[]) => ({ promptIds: ids, config: { ...a.generationDefaults, max_new_tokens: 12, do_sample: false, eos_token_id: [] } });
    const prompts = [[1, 450, 4996, 17354], [1, 29871, 13, 3492, 526, 263]];
    const ra = await new Generator(a).generate(prompts.map(req)), rb = await new Generator(b).generate(prompts.map(req));
    assert.deepEqual(ra.map((r) => r.completionIds), rb.map((r) => r.completionIds));
    assert.equal(ra[0].completionIds.length, 12);
  } finally {
    a.dispose();
    b.dispose();
  }
});
