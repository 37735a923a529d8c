// The QLoRA ORPO walkthrough's YAML (fixtures/orpo-qlora-walkthrough.yaml: paged_adamw_8bit, 4-bit NF4 base with
// nested quantization, LoRA on all seven projections with dropout, eval every 20 steps, save_strategy epoch
// with save_steps, evaluation_strategy, log_level, torch_dtype) run verbatim with only the model, the dataset
// (the bundled HH-RLHF sample, cut to 64 pairs), output_dir and max_steps changed: it trains end to end, evaluates at steps 20
// and 40, writes a PEFT adapter, keeps 8-bit optimizer state, and every key is honoured or has its note.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { IGNORED_KEYS, loadConfig, readConfigFile, resolveConfig } from "../../src/train/config.ts";
import { ALIASES, COMPAT_KEYS, type CompatKey } from "../../src/train/config-compat.ts";
import { train } from "../../src/train/loop.ts";
import { readHeader } from "../../src/models/safetensors.ts";
import { makeTinyModel, scratch } from "../helpers/tiny-model.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const RECIPE = join(ROOT, "tests", "recipes", "fixtures", "orpo-qlora-walkthrough.yaml");
let tmp: ReturnType<typeof scratch>;
let cwd: string;
before(() => {
  tmp = scratch();
  cwd = process.cwd();
  process.chdir(tmp.dir);   // the recipe's relative paths and the default dataset cache land in the scratch folder
});
after(() => {
  process.chdir(cwd);
  tmp.cleanup();
});

test("the QLoRA ORPO walkthrough YAML trains 40 steps end to end: eval at 20 and 40, a PEFT adapter, 8-bit AdamW state", async () => {
  // intermediate 256: the MLP adapters' lora_A of down_proj (16 x 256) and lora_B of gate/up (256 x 16) reach
  // bitsandbytes' min_8bit_size and hold 8-bit state
  const model = makeTinyModel(join(tmp.dir, "model"), { tokenizer: "llama2", hidden: 16, intermediate: 256, layers: 1, heads: 2, kvHeads: 1, maxPositions: 2048, seed: 13 });
  const raw = readConfigFile(RECIPE);
  const given = Object.keys(raw);
  const outDir = join(tmp.dir, "results");
  // the bundled HH-RLHF sample, its first 64 training and 8 test pairs (8 steps per epoch at 2 x 4 pairs)
  const data = join(tmp.dir, "hh-rlhf");
  mkdirSync(data);
  for (const [split, n] of [["train", 64], ["test", 8]] as const) {
    const lines = readFileSync(join(ROOT, "data", "hh-rlhf-harmless-sample", `${split}.jsonl`), "utf8").split("\n").filter(Boolean).slice(0, n);
    writeFileSync(join(data, `${split}.jsonl`), lines.join("\n") + "\n");
  }
  Object.assign(raw, { model_name_or_path: model, dataset: data, output_dir: outDir, max_steps: 40 });
  const file = join(tmp.dir, "recipe.yaml");
  writeFileSync(file, stringify(raw));
  const { config, notes } = loadConfig(file);

  // every key: honoured, or read under its current name with a note, or accepted with its reason (a key with no
  // effect at the value that changes nothing, its quiet value, needs none)
  for (const k of given) {
    const noted = notes.some((n) => n.split(": ")[0].split(", ").includes(k));
    const compat = (COMPAT_KEYS as Record<string, CompatKey>)[k];
    const quiet = compat && (compat.quiet ?? [compat.def]).some((q) => JSON.stringify(q) === JSON.stringify(raw[k]));
    if (Object.hasOwn(ALIASES, k) || ((IGNORED_KEYS as readonly string[]).includes(k) && !quiet)) assert.ok(noted, `${k} has no note:\n${notes.join("\n")}`);
  }
  assert.ok(notes.some((n) => /^optim: paged_adamw_8bit: paging .* no meaning on the CPU; adamw_8bit runs/.test(n)), notes.join("\n"));
  assert.ok(notes.some((n) => /^evaluation_strategy: deprecated name of eval_strategy/.test(n)));
  assert.ok(notes.some((n) => /^save_steps: no effect with save_strategy "epoch"/.test(n)));
  assert.equal(config.eval_strategy, "steps");
  assert.equal(config.eval_steps, 20);
  assert.equal(config.optim, "paged_adamw_8bit");

  const r = await train(config, { quiet: true, notes, handleSignals: false });
  assert.equal(r.exitCode, 0);
  assert.equal(r.globalStep, 40);
  const log = readFileSync(join(outDir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  const evals = log.filter((e) => "eval_loss" in e);
  assert.deepEqual(evals.map((e) => e.step), [20, 40]);
  for (const e of evals) for (const k of ["eval_loss", "eval_rewards/accuracies", "eval_log_odds_ratio", "eval_nll_loss"]) assert.ok(Number.isFinite(e[k]), `${k} at step ${e.step}`);
  const trainLogs = log.filter((e) => "loss" in e);
  assert.deepEqual(trainLogs.map((e) => e.step), [20, 40]);   // logging_steps 20
  assert.ok(trainLogs.every((e) => Number.isFinite(e.loss) && e.learning_rate > 0));

  // a PEFT adapter folder, as the recipe's LoraConfig says
  const adapter = JSON.parse(readFileSync(join(outDir, "adapter_config.json"), "utf8"));
  assert.equal(adapter.peft_type, "LORA");
  assert.equal(adapter.r, 16);
  assert.equal(adapter.lora_alpha, 16);
  assert.deepEqual([...adapter.target_modules].sort(), ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]);
  assert.ok(existsSync(join(outDir, "adapter_model.safetensors")));
  assert.ok(!existsSync(join(outDir, "model.safetensors")), "an adapter, not the full model");

  // save_strategy epoch: a checkpoint at the end of each epoch of 8 steps (save_steps 20 has no effect)
  assert.deepEqual(readdirSync(outDir).filter((f) => f.startsWith("checkpoint-")).sort(), ["checkpoint-16", "checkpoint-24", "checkpoint-32", "checkpoint-40", "checkpoint-8"]);
  const ck = join(outDir, "checkpoint-40");
  const h = readHeader(join(ck, "optimizer.safetensors"));
  assert.equal(h.metadata?.format, "preftune.adamw_8bit");
  const down = h.tensors.get("base_model.model.model.layers.0.mlp.down_proj.lora_A.weight.state1");
  assert.deepEqual([down?.dtype, down?.shape], ["U8", [16, 256]]);
  assert.equal(h.tensors.get("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight.exp_avg")?.dtype, "F32");   // 16 x 16: fp32 state
});

test("the smol-course's orpo_alpha / orpo_beta are refused: TRL's ORPOConfig calls λ beta", () => {
  const base = { method: "orpo", model_name_or_path: "m", dataset: "d" };
  for (const k of ["orpo_alpha", "orpo_beta"]) {
    assert.throws(() => resolveConfig({ ...base, [k]: 0.1 }), new RegExp(`unknown key "${k}"; did you mean "beta"\\? \\(TRL's ORPOConfig calls ORPO's λ \\(the weight of the odds-ratio term\\) beta`));
  }
  // a key that exists in no version of TRL, transformers, PEFT or bitsandbytes: refused with a suggestion by spelling
  assert.throws(() => resolveConfig({ ...base, lora_dropuot: 0.1 }), /unknown key "lora_dropuot"; did you mean "lora_dropout"\?/);
});
