// The library's trainers and objects: callbacks in order, an AbortSignal that stops with a checkpoint that
// resumes, evaluate() on the trained model (equal to the eval entry training logged at the same step),
// save_model, load_dataset's map/filter/select, and the error classes callers branch on (ConfigError,
// DataError naming file/row/field, ModelLoadError).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  AutoModelForCausalLM, AutoTokenizer, ConfigError, DataError, Dataset, DPOConfig, DPOTrainer, KTOConfig, LoraConfig, ModelLoadError,
  ORPOConfig, ORPOTrainer, PeftModel, load_dataset, type LogEntry,
} from "../../src/index.ts";
import { makeTinyModel, scratch } from "../helpers/tiny-model.ts";

const tmp = scratch("preftune-api-");
let modelDir: string, file: string;
const rows = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => ({ prompt: `Question ${i}: what is ${i} plus ${i}?`, chosen: ` It is ${2 * i}.`, rejected: ` No idea ${i}.` }));
before(() => {
  modelDir = makeTinyModel(join(tmp.dir, "tiny"), { tokenizer: "llama2", hidden: 32, layers: 1, heads: 2, kvHeads: 1, intermediate: 64, seed: 2 });
  file = join(tmp.dir, "pairs.jsonl");
  writeFileSync(file, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
});
after(() => tmp.cleanup());
const common = { per_device_train_batch_size: 2, per_device_eval_batch_size: 4, learning_rate: 1e-3, max_length: 64, dataset_cache_dir: null, logging_steps: 1 } as const;

test("load_dataset: rows to iterate, map, filter and select; a file is its train split", async () => {
  const ds = await load_dataset(file, { split: "train" });
  assert.equal(ds.num_rows, 8);
  assert.deepEqual(ds.column_names, ["prompt", "chosen", "rejected"]);
  assert.equal([...ds].length, 8);
  const mapped = ds.map((r, i) => ({ prompt: `${r.prompt} (${i})` })).filter((_, i) => i % 2 === 0).select([0, 1]);
  assert.equal(mapped.num_rows, 2);
  assert.equal(mapped.at(1)!.prompt, `${rows[2].prompt} (2)`);
  assert.equal(mapped.at(1)!.chosen, rows[2].chosen);
  const dict = await load_dataset(file);
  assert.deepEqual(Object.keys(dict), ["train"]);
});

test("callbacks, an AbortSignal that stops with a checkpoint, resume, evaluate() and save_model", async () => {
  const model = await AutoModelForCausalLM.from_pretrained(modelDir, { print: null });
  try {
    const ds = await load_dataset(file, { split: "train" });
    const events: string[] = [];
    const ac = new AbortController();
    const out = join(tmp.dir, "orpo");
    const args = new ORPOConfig({ ...common, output_dir: out, max_steps: 4, eval_strategy: "steps", eval_steps: 2, save_strategy: "no" });
    const trainer = new ORPOTrainer({
      model, args, train_dataset: ds, eval_dataset: ds.select([0, 1, 2, 3]), signal: ac.signal, quiet: true,
      callbacks: [{
        on_log: (l) => events.push("eval_loss" in l ? `eval@${l.step}` : `log@${l.step}`),
        on_evaluate: (m: LogEntry, s) => events.push(`on_evaluate@${m.step}/${s.global_step}`),
        on_step_end: (s) => { events.push(`step@${s.global_step}`); if (s.global_step === 2) ac.abort(); },
      }],
    });
    const r = await trainer.train();
    assert.equal(r.stopped_by, "abort");
    assert.equal(r.global_step, 2);
    assert.deepEqual(events, ["log@1", "step@1", "log@2", "eval@2", "on_evaluate@2/2", "step@2"]);
    assert.ok(r.last_checkpoint && existsSync(join(r.last_checkpoint, "model.safetensors")), "stopped with a checkpoint");
    const evalAt2 = trainer.state.log_history.find((e) => "eval_loss" in e)!;
    // evaluate() on the model as it is now (after step 2) gives what training logged at step 2
    events.length = 0;
    const e = await trainer.evaluate();
    assert.deepEqual(events, ["eval@2", "on_evaluate@2/2"]);
    assert.equal(e.step, 2);
    assert.equal(e.eval_loss, evalAt2.eval_loss);
    assert.equal(e["eval_rewards/accuracies"], evalAt2["eval_rewards/accuracies"]);
    // resume from the checkpoint to the end
    const r2 = await new ORPOTrainer({ model, args, train_dataset: ds, eval_dataset: ds.select([0, 1, 2, 3]), quiet: true }).train({ resume_from_checkpoint: true });
    assert.equal(r2.global_step, 4);
    assert.equal(r2.stopped_by, null);
    trainer.save_model(join(tmp.dir, "saved"));
    assert.ok(existsSync(join(tmp.dir, "saved", "model.safetensors")) && existsSync(join(tmp.dir, "saved", "tokenizer.json")));
    const again = await AutoModelForCausalLM.from_pretrained(join(tmp.dir, "saved"), { print: null });
    assert.deepEqual(again.logits([1, 5, 9]), model.logits([1, 5, 9]));
    again.dispose();
  } finally {
    model.dispose();
  }
});

test("DPO with a LoraConfig: the adapter is attached to the model, saved as a PEFT folder and loads back with PeftModel", async () => {
  const model = await AutoModelForCausalLM.from_pretrained(modelDir, { print: null });
  const tokenizer = await AutoTokenizer.from_pretrained(modelDir);
  try {
    const trainer = new DPOTrainer({ model, processing_class: tokenizer, args: new DPOConfig({ ...common, output_dir: join(tmp.dir, "dpo"), max_steps: 2, save_strategy: "no" }), train_dataset: Dataset.from_list(rows), peft_config: new LoraConfig({ r: 2, lora_alpha: 4 }), quiet: true });
    await trainer.train();
    assert.ok(model.has_adapter);
    trainer.save_model(join(tmp.dir, "adapter"));
    assert.ok(existsSync(join(tmp.dir, "adapter", "adapter_config.json")));
    const base = await AutoModelForCausalLM.from_pretrained(modelDir, { print: null });
    await PeftModel.from_pretrained(base, join(tmp.dir, "adapter"));
    assert.deepEqual(base.logits([1, 7, 3]), model.logits([1, 7, 3]));
    base.dispose();
    const gen = await model.generate([[1, 7, 3]], { max_new_tokens: 3, do_sample: false });
    assert.equal(gen[0].length, 6);
  } finally {
    model.dispose();
  }
});

test("errors callers branch on: ConfigError, DataError with file/row/field, ModelLoadError, and LoraConfig's keys", async () => {
  assert.throws(() => new ORPOConfig({ beta: -1 }), (e: unknown) => e instanceof ConfigError && /beta: must be > 0/.test(e.message));
  assert.throws(() => new KTOConfig({ loss_type: "sigmoid" }), ConfigError);
  assert.throws(() => new LoraConfig({ ["rank" as "r"]: 8 }), /unknown key "rank"/);
  await assert.rejects(AutoModelForCausalLM.from_pretrained(join(tmp.dir, "nowhere")), ModelLoadError);
  const bad = Dataset.from_list([...rows.slice(0, 3), { prompt: "p", chosen: 5, rejected: "r" }], "my rows");
  const model = await AutoModelForCausalLM.from_pretrained(modelDir, { print: null });
  try {
    const trainer = new ORPOTrainer({ model, args: new ORPOConfig({ ...common, output_dir: join(tmp.dir, "bad"), max_steps: 1 }), train_dataset: bad, quiet: true });
    await assert.rejects(trainer.train(), (e: unknown) => e instanceof DataError && e.file === "my rows" && e.row === 4 && e.field === "chosen");
  } finally {
    model.dispose();
  }
});
