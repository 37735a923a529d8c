// The CLI and the library give identical metrics for the same config: `preftune train` on a data file, and
// ORPOTrainer on load_dataset of the same file with the model loaded by AutoModelForCausalLM. Every logged
// number but the timings must be equal.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { AutoModelForCausalLM, ORPOConfig, ORPOTrainer, load_dataset } from "../../src/index.ts";
import { makeTinyModel, scratch } from "../helpers/tiny-model.ts";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const tmp = scratch("preftune-parity-");
after(() => tmp.cleanup());
const TIMING = /runtime|per_second|tokens_per_second/;

function metrics(dir: string): Record<string, number>[] {
  return readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => {
    const e = JSON.parse(l) as Record<string, number>;
    return Object.fromEntries(Object.entries(e).filter(([k]) => !TIMING.test(k)));
  });
}

test("preftune train and ORPOTrainer log the same metrics for the same config", async () => {
  const model = makeTinyModel(join(tmp.dir, "tiny"), { tokenizer: "llama2", hidden: 32, layers: 1, heads: 2, kvHeads: 1, intermediate: 64, maxPositions: 512, seed: 9 });
  const rows = readFileSync(join(repo, "data", "hh-rlhf-harmless-sample", "train.jsonl"), "utf8").trim().split("\n").slice(0, 12);
  const file = join(tmp.dir, "pairs.jsonl");
  writeFileSync(file, rows.join("\n") + "\n");
  const keys = { max_steps: 3, per_device_train_batch_size: 2, gradient_accumulation_steps: 2, learning_rate: 1e-3, beta: 0.2, max_length: 128, logging_steps: 1, save_strategy: "no", dataset_cache_dir: null, seed: 3 } as const;

  const cliOut = join(tmp.dir, "cli");
  const args = ["bin/preftune.js", "train", "--method", "orpo", "--model_name_or_path", model, "--dataset_name", file, "--output_dir", cliOut, "--disable_tqdm", "true",
    ...Object.entries(keys).flatMap(([k, v]) => [`--${k}`, String(v)])];
  const cli = spawnSync(process.execPath, args, { cwd: repo, encoding: "utf8" });
  assert.equal(cli.status, 0, cli.stderr);

  const apiOut = join(tmp.dir, "api");
  const m = await AutoModelForCausalLM.from_pretrained(model, { print: null });
  try {
    const train_dataset = await load_dataset(file, { split: "train" });
    const trainer = new ORPOTrainer({ model: m, args: new ORPOConfig({ ...keys, output_dir: apiOut }), train_dataset, quiet: true });
    await trainer.train();
    assert.equal(trainer.state.global_step, 3);
  } finally {
    m.dispose();
  }
  const a = metrics(cliOut), b = metrics(apiOut);
  assert.equal(a.length, 4);   // three step logs and the summary
  assert.deepEqual(b, a);
});
