// The workflow users copy, per model family, through the real CLI in child processes: a tiny random Gemma 2, Phi-3
// (fused weights), GPT-NeoX (parallel residual, partial rotary) and OPT-350m-shaped model (LayerNorm after each
// block, project_in / project_out) with the real Llama-2 tokenizer trains ORPO with a LoRA adapter on PEFT's
// "all-linear" modules, the adapter folder carries the family's module names, and `preftune generate` decodes from
// it; one family also trains fully and its saved folder reads back as the same family.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { readModelDir } from "../../src/models/checkpoint.ts";
import { makeTinyModel, scratch, writeWordPairs } from "../helpers/tiny-model.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
let tmp: ReturnType<typeof scratch>;
before(() => {
  tmp = scratch("preftune-families-");
  writeWordPairs(join(tmp.dir, "data"), 12, 4);
});
after(() => tmp.cleanup());

// config.json keys of each family over the tiny Llama ones (hidden 32, 2 heads of 16), and PEFT's all-linear modules.
const FAMILIES: Record<string, { config: Record<string, unknown>; modules: string[] }> = {
  gemma2: {
    config: { architectures: ["Gemma2ForCausalLM"], model_type: "gemma2", head_dim: 16, query_pre_attn_scalar: 16, sliding_window: 8,
      attn_logit_softcapping: 50.0, final_logit_softcapping: 30.0, hidden_activation: "gelu_pytorch_tanh" },
    modules: ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"],
  },
  phi3: {
    config: { architectures: ["Phi3ForCausalLM"], model_type: "phi3", tie_word_embeddings: false, partial_rotary_factor: 0.5 },
    modules: ["down_proj", "gate_up_proj", "o_proj", "qkv_proj"],
  },
  gpt_neox: {
    config: { architectures: ["GPTNeoXForCausalLM"], model_type: "gpt_neox", rotary_pct: 0.25, use_parallel_residual: true, hidden_act: "gelu",
      layer_norm_eps: 1e-5, tie_word_embeddings: false },
    modules: ["dense", "dense_4h_to_h", "dense_h_to_4h", "query_key_value"],
  },
  opt: {
    config: { architectures: ["OPTForCausalLM"], model_type: "opt", ffn_dim: 64, do_layer_norm_before: false, word_embed_proj_dim: 16,
      activation_function: "relu", enable_bias: true },
    modules: ["fc1", "fc2", "k_proj", "out_proj", "project_in", "project_out", "q_proj", "v_proj"],
  },
};

function cli(args: string[]): string {
  const r = spawnSync(process.execPath, [join(ROOT, "bin", "preftune.js"), ...args], { cwd: ROOT, encoding: "utf8", timeout: 120_000 });
  const out = `${r.stdout}${r.stderr}`;
  assert.equal(r.status, 0, `preftune ${args.join(" ")}:\n${out}`);
  return out;
}

function trainConfig(name: string, model: string, out: string, extra: string[]): string {
  const file = join(tmp.dir, `${name}.yaml`);
  writeFileSync(file, [
    "method: orpo", `model_name_or_path: ${model}`, `dataset: ${join(tmp.dir, "data")}`, `output_dir: ${out}`,
    `dataset_cache_dir: ${join(tmp.dir, "cache")}`, "max_length: 64", "per_device_train_batch_size: 2", "learning_rate: 1.0e-3",
    "logging_steps: 1", "max_steps: 4", "threads: 1", ...extra, "",
  ].join("\n"));
  return file;
}

for (const [name, f] of Object.entries(FAMILIES)) {
  test(`${name}: ORPO with LoRA on all-linear trains from the CLI, saves PEFT's module names, and generates`, () => {
    const model = makeTinyModel(join(tmp.dir, `${name}-model`), { tokenizer: "llama2", hidden: 32, intermediate: 64, layers: 2, heads: 2, kvHeads: 1, seed: 7, config: f.config });
    const out = join(tmp.dir, `${name}-lora`);
    cli(["train", trainConfig(`${name}-lora`, model, out, ["use_peft: true", "lora_r: 4", "lora_alpha: 8", "lora_target_modules: all-linear"])]);
    const losses = readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((e) => "loss" in e);
    assert.equal(losses.length, 4);
    assert.ok(losses.every((e) => Number.isFinite(e.loss)), JSON.stringify(losses));
    const adapterCfg = JSON.parse(readFileSync(join(out, "adapter_config.json"), "utf8"));
    assert.deepEqual([...adapterCfg.target_modules].sort(), f.modules);
    const text = cli(["generate", "--model", out, "--prompt", "Which is larger?", "--max-new-tokens", "4", "--threads", "1"]);
    assert.ok(text.trim().length > 0);
  });
}

test("gpt_neox: full fine-tuning saves a folder that reads back as the same family and generates", () => {
  const f = FAMILIES.gpt_neox;
  const model = makeTinyModel(join(tmp.dir, "neox-full-model"), { tokenizer: "llama2", hidden: 32, intermediate: 64, layers: 2, heads: 2, seed: 8, config: f.config });
  const out = join(tmp.dir, "neox-full");
  cli(["train", trainConfig("neox-full", model, out, [])]);
  assert.ok(existsSync(join(out, "model.safetensors")));
  const before = readModelDir(model).config, after = readModelDir(out).config;
  assert.deepEqual({ ...after }, { ...before });
  cli(["generate", "--model", out, "--prompt", "Which is larger?", "--max-new-tokens", "4", "--threads", "1"]);
});
