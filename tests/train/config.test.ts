// The train config schema: suggestions for unknown keys, conflicts naming both keys, TRL's per-method
// defaults, YAML and JSON files, typed --key value overrides, and --help generated from the same schema.
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { CONFIG_KEYS, ConfigError, IGNORED_KEYS, closestKey, configHelp, loadConfig, parseOverrides, resolveConfig } from "../../src/train/config.ts";
import { scratch } from "../helpers/tiny-model.ts";

const base = { model_name_or_path: "m", dataset: "d", output_dir: "o" };
const fails = (raw: Record<string, unknown>, ...patterns: RegExp[]) => {
  assert.throws(() => resolveConfig(raw, "cfg.yaml"), (e: Error) => {
    assert.ok(e instanceof ConfigError, `not a ConfigError: ${e.message}`);
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
};

test("unknown keys are rejected with the closest valid key", () => {
  fails({ ...base, method: "dpo", lerning_rate: 1e-5 }, /unknown key "lerning_rate"; did you mean "learning_rate"/);
  fails({ ...base, method: "dpo", warmup_ration: 0.1 }, /did you mean "warmup_ratio"/);
  fails({ ...base, method: "orpo", gradient_accumulation_step: 2 }, /did you mean "gradient_accumulation_steps"/);
  assert.equal(closestKey("max-lenght"), "max_length");
  assert.throws(() => parseOverrides(["--learning-rat", "1"]), /did you mean --learning_rate/);
});

test("conflicting values name both keys", () => {
  // as transformers 4: warmup_steps wins over warmup_ratio, with a note naming both
  assert.ok(resolveConfig({ ...base, method: "dpo", warmup_ratio: 0.1, warmup_steps: 10 }).notes.some((n) => /^warmup_ratio: .*warmup_steps \(10\) is also set and wins/.test(n)));
  fails({ ...base, method: "kto", loss_type: "sigmoid" }, /method kto with loss_type "sigmoid"/);
  fails({ ...base, method: "ipo", loss_type: "hinge" }, /method ipo/, /loss_type/);
  fails({ ...base, method: "dpo", desirable_weight: 2 }, /desirable_weight does not apply to method dpo/);
  fails({ ...base, method: "dpo", loss_type: ["sigmoid", "sft"], loss_weights: [1] }, /loss_weights/, /loss_type/);
  fails({ ...base, method: "orpo", precompute_ref_log_probs: true }, /precompute_ref_log_probs does not apply to method orpo/);
  fails({ ...base, method: "dpo", max_length: 64, max_prompt_length: 64 }, /max_prompt_length/, /max_length/);
  fails({ ...base, method: "kto", per_device_train_batch_size: 1 }, /kto/, /per_device_train_batch_size/);
  // as in HF, max_steps and num_train_epochs together are fine (max_steps wins in the loop)
  assert.equal(resolveConfig({ ...base, method: "dpo", max_steps: 5, num_train_epochs: 2 }).config.max_steps, 5);
});

test("bad values and missing required keys are reported together", () => {
  fails({ method: "dpo", learning_rate: "fast", per_device_train_batch_size: 0 }, /learning_rate: must be a number/, /per_device_train_batch_size: must be ≥ 1/, /"model_name_or_path" is required/);
  fails({ ...base }, /"method" is required/);
  fails({ ...base, method: "ppo" }, /method: must be one of orpo, dpo/);
});

test("TRL defaults per method", () => {
  const dpo = resolveConfig({ ...base, method: "dpo" }).config;
  assert.equal(dpo.learning_rate, 1e-6);
  assert.equal(dpo.beta, 0.1);
  assert.deepEqual(dpo.loss_type, ["sigmoid"]);
  assert.equal(dpo.max_length, 1024);
  assert.equal(dpo.logging_steps, 10);
  assert.equal(dpo.num_train_epochs, 3);
  assert.equal(dpo.per_device_train_batch_size, 8);
  assert.equal(dpo.seed, 42);
  assert.equal(dpo.save_steps, 500);
  assert.equal(dpo.lr_scheduler_type, "linear");
  assert.equal(dpo.max_grad_norm, 1);
  assert.equal(dpo.adam_beta2, 0.999);
  assert.equal(dpo.train_sampling_strategy, "random");
  assert.equal(resolveConfig({ ...base, method: "sft" }).config.learning_rate, 2e-5);
  assert.equal(resolveConfig({ ...base, method: "ipo" }).config.loss_type, "ipo");
  const kto = resolveConfig({ ...base, method: "kto" }).config;
  assert.equal(kto.loss_type, "kto");
  assert.equal(kto.train_sampling_strategy, "sequential");
  const simpo = resolveConfig({ ...base, method: "simpo" }).config;
  assert.deepEqual([simpo.beta, simpo.cpo_alpha, simpo.loss_type], [2, 0, "simpo"]);
  assert.deepEqual([resolveConfig({ ...base, method: "cpo" }).config.cpo_alpha, resolveConfig({ ...base, method: "orpo" }).config.loss_type], [1, null]);
});

test("ignored keys are accepted with a note", () => {
  const { config, notes } = resolveConfig({ ...base, method: "orpo", fp16: true, gradient_checkpointing: true });
  assert.equal(config.method, "orpo");
  assert.ok(notes.some((n) => /^fp16: no effect: there is no fp16 compute on the CPU/.test(n)), notes.join("\n"));
  assert.ok(notes.some((n) => n.startsWith("gradient_checkpointing: no effect")));
});

test("YAML and JSON files give the same config; overrides are typed by the schema", () => {
  const s = scratch();
  try {
    const yaml = join(s.dir, "run.yaml"), json = join(s.dir, "run.json");
    writeFileSync(yaml, "method: dpo\nmodel_name_or_path: m\ndataset: d\noutput_dir: o\nlearning_rate: 5.0e-7\nloss_type: [sigmoid, sft]\nbf16: true\n");
    writeFileSync(json, JSON.stringify({ method: "dpo", model_name_or_path: "m", dataset: "d", output_dir: "o", learning_rate: 5e-7, loss_type: ["sigmoid", "sft"], bf16: true }));
    const a = loadConfig(yaml).config, b = loadConfig(json).config;
    assert.deepEqual(a, b);
    assert.equal(a.learning_rate, 5e-7);
    const o = loadConfig(yaml, ["--learning_rate", "1e-5", "--logging-steps=3", "--loss_type", "sigmoid,hinge", "--max_length", "null", "--eval_strategy", "steps", "--eval_steps", "2", "--group_by_length", "--resume_from_checkpoint", "true", "--seed", "7"]).config;
    assert.equal(o.learning_rate, 1e-5);
    assert.equal(o.logging_steps, 3);
    assert.deepEqual(o.loss_type, ["sigmoid", "hinge"]);
    assert.equal(o.max_length, null);
    assert.equal(o.eval_strategy, "steps");
    assert.equal(o.group_by_length, true);
    assert.equal(o.resume_from_checkpoint, true);
    assert.equal(o.seed, 7);
    assert.throws(() => loadConfig(yaml, ["--seed", "seven"]), /seed: must be a whole number, got "seven"/);
    writeFileSync(yaml, "method: [dpo\n");
    assert.throws(() => loadConfig(yaml), /run\.yaml: not valid YAML/);
  } finally {
    s.cleanup();
  }
});

test("--help lists every key with its default, from the schema", () => {
  const help = configHelp();
  for (const k of CONFIG_KEYS) assert.match(help, new RegExp(`^  (${k} |.*\\b${k}\\b)`, "m"), `help lacks ${k}`);
  assert.match(help, /learning_rate .*\n .*default 1e-6 \(orpo, dpo, ipo, kto, simpo, cpo\); 2e-5 \(sft\)/);
  assert.match(help, /beta .*\n .*default 0\.1 \(orpo, dpo, ipo, kto, cpo\); 2 \(simpo\)/);
  for (const k of IGNORED_KEYS) assert.doesNotMatch(help, new RegExp(`^  ${k} +`, "m"), `${k} is listed with the honoured keys`);
});
