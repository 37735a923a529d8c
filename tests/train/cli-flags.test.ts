// Command lines as HfArgumentParser reads them: every flag form (bare, --no_, --key=value, --key value, several
// list values), bare flags of accepted-and-ignored keys that must not swallow the next option, every problem
// of a command line reported at once, and suggestions that point at the key a user meant.
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError, loadConfig, parseArgs, resolveConfig, unknownKeyMessage } from "../../src/train/config.ts";
import { scratch } from "../helpers/tiny-model.ts";

const base = ["--method", "dpo", "--model_name_or_path", "m", "--dataset", "d", "--output_dir", "o"];
const values = (...args: string[]) => {
  const p = parseArgs(args);
  assert.deepEqual(p.problems, [], p.problems.join("\n"));
  return p.values;
};

test("a bare flag is true for every true/false key, accepted-and-ignored ones included; a true/false word after it is its value", () => {
  assert.deepEqual(values("--logging_first_step"), { logging_first_step: true });
  assert.deepEqual(values("--logging_first_step", "false"), { logging_first_step: false });
  assert.deepEqual(values("--bf16", "True", "--fp16", "no"), { bf16: true, fp16: false });   // HfArgumentParser's string_to_bool words
  // ignored keys are bare flags too: the bug was that they swallowed the next option as their value
  assert.deepEqual(values("--gradient_checkpointing", "--use_peft"), { gradient_checkpointing: true, use_peft: true });
  assert.deepEqual(values("--learning_rate", "1e-5", "--bf16"), { learning_rate: 1e-5, bf16: true });   // last on the line
  assert.deepEqual(values("--load_in_4bit", "--lora_target_modules=all-linear"), { load_in_4bit: true, lora_target_modules: "all-linear" });
  assert.deepEqual(values("--push_to_hub", "--no_remove_unused_columns", "--do_eval"), { push_to_hub: true, remove_unused_columns: false, do_eval: true });
  // resume_from_checkpoint takes a path or nothing (true)
  assert.deepEqual(values("--resume_from_checkpoint"), { resume_from_checkpoint: true });
  assert.deepEqual(values("--resume_from_checkpoint", "runs/x/checkpoint-4", "--seed", "3"), { resume_from_checkpoint: "runs/x/checkpoint-4", seed: 3 });
});

test("--no_KEY sets false, for honoured and ignored keys alike", () => {
  assert.deepEqual(values("--no_use_peft", "--no_remove_unused_columns", "--no-logging-first-step"), { use_peft: false, remove_unused_columns: false, logging_first_step: false });
  const c = loadConfig(null, [...base, "--use_peft", "--no_use_peft"]).config;   // the last one wins, as in argparse
  assert.equal(c.use_peft, false);
  assert.match(parseArgs(["--no_use_peft=1"]).problems.join(), /--no_use_peft takes no value/);
  assert.match(parseArgs(["--no_learning_rate"]).problems.join(), /unknown option --no_learning_rate/);   // not a true/false key
});

test("--key=value and --key value read the same, for numbers, strings, lists and mappings; dashes or underscores", () => {
  const a = values("--learning_rate=5e-7", "--lr_scheduler_type=cosine", "--lora_target_modules=q_proj,v_proj", '--lr_scheduler_kwargs={"min_lr_rate": 0.1}', "--max_steps=-1");
  const b = values("--learning-rate", "5e-7", "--lr_scheduler_type", "cosine", "--lora_target_modules", "q_proj", "v_proj", "--lr_scheduler_kwargs", '{"min_lr_rate": 0.1}', "--max_steps", "-1");
  assert.deepEqual(a, b);
  assert.deepEqual(a, { learning_rate: 5e-7, lr_scheduler_type: "cosine", lora_target_modules: ["q_proj", "v_proj"], lr_scheduler_kwargs: { min_lr_rate: 0.1 }, max_steps: -1 });
  // argparse nargs="+": several values after a list key
  assert.deepEqual(values("--loss_type", "sigmoid", "sft", "--loss_weights", "1", "0.5", "--report_to", "wandb", "tensorboard"),
    { loss_type: ["sigmoid", "sft"], loss_weights: [1, 0.5], report_to: ["wandb", "tensorboard"] });
  assert.deepEqual(values("--max_length", "null", "--warmup_steps", "0.1"), { max_length: null, warmup_steps: 0.1 });
  // deprecated names read as their type and map onto the current key, with a note
  const r = loadConfig(null, [...base, "--torch_dtype", "bfloat16", "--evaluation_strategy=steps", "--eval_steps", "5"]);
  assert.equal(r.config.dtype, "bfloat16");
  assert.equal(r.config.eval_strategy, "steps");
  assert.ok(r.notes.some((n) => /^torch_dtype: deprecated name of dtype/.test(n)), r.notes.join("\n"));
  assert.ok(r.notes.some((n) => /^evaluation_strategy: deprecated name of eval_strategy/.test(n)));
});

test("TRL's documented KTO QLoRA command line parses to all seven projections, peft on, and warmup as a fraction", () => {
  // https://github.com/huggingface/trl/blob/main/examples/scripts/kto.py (docstring, "QLoRA:")
  const argv = [
    "--method", "kto", "--dataset_name", ".", "--model_name_or_path=m", "--per_device_train_batch_size", "8", "--num_train_epochs", "1",
    "--learning_rate", "5e-7", "--lr_scheduler_type=cosine", "--gradient_accumulation_steps", "1", "--eval_steps", "500",
    "--output_dir=kto-aligned-model-lora", "--warmup_steps", "0.1", "--logging_first_step", "--use_peft", "--load_in_4bit",
    "--lora_target_modules=all-linear", "--lora_r=16", "--lora_alpha=16",
  ];
  const { config, notes } = loadConfig(null, argv);
  assert.equal(config.use_peft, true);
  assert.equal(config.lora_target_modules, "all-linear");
  assert.equal(config.load_in_4bit, true);
  assert.equal(config.warmup_steps, 0.1);
  assert.equal(config.eval_strategy, "steps");   // eval_steps alone means evaluating every eval_steps
  assert.equal(config.logging_first_step, true);
  assert.ok(!notes.some((n) => /load_in_4bit/.test(n)), notes.join("\n"));   // honoured: a 4-bit base, no note
  assert.ok(notes.some((n) => /^lora_dropout: 0.05 \(TRL's default with use_peft\) has no effect: disable_dropout is true/.test(n)), notes.join("\n"));
});

test("every problem of a file and its command line is reported at once", () => {
  const s = scratch();
  try {
    const file = join(s.dir, "run.yaml");
    writeFileSync(file, "method: dpo\nmodel_name_or_path: m\ndataset: d\noutput_dir: o\nlearning_rate: fast\norpo_alpha: 0.1\n");
    assert.throws(() => loadConfig(file, ["stray", "--lerning_rate", "1e-5", "--max_steps", "many", "--r", "8", "--per_device_train_batch_size"]), (e: Error) => {
      assert.ok(e instanceof ConfigError);
      const m = e.message;
      assert.match(m, /7 problems/);
      for (const p of [/--lerning_rate; did you mean --learning_rate/, /unexpected argument "stray"/, /--per_device_train_batch_size needs a value/,
        /--r; did you mean --lora_r\? \(PEFT's LoraConfig r/, /unknown key "orpo_alpha"; did you mean "beta"\? \(TRL's ORPOConfig calls ORPO's λ \(the weight of the odds-ratio term\) beta/,
        /learning_rate: must be a number, got "fast"/, /max_steps: must be a whole number, got "many"/]) assert.match(m, p);
      return true;
    });
    // --config FILE (trl dpo --config dpo.yaml) is the same as the positional file
    writeFileSync(file, "method: dpo\nmodel_name_or_path: m\ndataset: d\noutput_dir: o\n");
    assert.equal(loadConfig(null, ["--config", file, "--seed", "5"]).config.seed, 5);
    assert.throws(() => loadConfig(file, ["--config", file]), /--config .* and the config file .* are both given/);
  } finally {
    s.cleanup();
  }
});

test("suggestions come from what the key means first, then from spelling, and never from an unrelated key", () => {
  const ok = (raw: Record<string, unknown>) => resolveConfig({ method: "dpo", model_name_or_path: "m", dataset: "d", output_dir: "o", ...raw });
  // keys the issue saw pointed at unrelated keys are now accepted
  assert.match(ok({ log_level: "info" }).notes.join("\n"), /^log_level: no effect/m);
  assert.equal(ok({ dtype: "bfloat16" }).config.dtype, "bfloat16");
  assert.throws(() => ok({ log_level: "loud" }), /log_level: must be one of passive, debug, info/);
  // names from PEFT / Unsloth / other tools
  assert.match(unknownKeyMessage("r"), /did you mean "lora_r"/);
  assert.match(unknownKeyMessage("target_modules"), /did you mean "lora_target_modules"/);
  assert.match(unknownKeyMessage("bias"), /^unknown key "bias": PEFT's LoraConfig bias has no TRL config key .*bias "none"/);
  assert.match(unknownKeyMessage("random_state"), /did you mean "seed"/);
  assert.match(unknownKeyMessage("orpo_alpha"), /did you mean "beta"/);
  assert.match(unknownKeyMessage("text_column"), /did you mean "dataset_text_field"/);
  assert.match(unknownKeyMessage("train_file"), /did you mean "dataset_name"/);
  assert.match(unknownKeyMessage("cutoff_len", true), /unknown option --cutoff_len; did you mean --max_length\?/);
  // spelling
  assert.match(unknownKeyMessage("warmup_ration"), /did you mean "warmup_ratio"/);
  assert.match(unknownKeyMessage("gradient_accumulation_step"), /did you mean "gradient_accumulation_steps"/);
  // nothing close: no suggestion rather than a random key
  assert.doesNotMatch(unknownKeyMessage("frobnicate"), /did you mean/);
  assert.doesNotMatch(unknownKeyMessage("xyz"), /did you mean/);
});
