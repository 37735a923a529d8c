// `preftune demo`: the whole workflow in about a minute on a laptop CPU — a tiny Llama-shaped model with the
// real Llama-2 tokenizer, ORPO on the HH-RLHF harmless sample shipped in data/, evaluated on its test split
// before and after, metrics.jsonl, checkpoints, a final Hugging Face model folder and (when available) a report.
// Not a quality claim: the model is tiny and random at the start; the point is that preference accuracy rises.
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Command } from "commander";
import pc from "picocolors";
import { makeTinyModel } from "../models/tiny.ts";
import { resolveConfig } from "../train/config.ts";
import { train } from "../train/loop.ts";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

export interface DemoOptions { output: string; steps: number; threads: number }

export async function runDemo(o: DemoOptions): Promise<{ before: number; after: number; outputDir: string }> {
  const out = resolve(o.output);
  const base = join(out, "base-model");
  const dataset = join(repoRoot, "data", "hh-rlhf-harmless-sample");
  if (!existsSync(dataset)) throw new Error(`${dataset}: the demo data set is missing from this preftune folder`);
  console.error(pc.bold("preftune demo") + `: ORPO on ${dataset}`);
  console.error(`1/3 writing a tiny random Llama-shaped model with the Llama-2 tokenizer to ${base}`);
  if (!existsSync(join(base, "config.json")))
    makeTinyModel(base, { tokenizer: "llama2", hidden: 64, layers: 2, heads: 4, kvHeads: 2, intermediate: 192, maxPositions: 512, seed: 7 });
  const evalEvery = Math.max(1, Math.round(o.steps / 4));
  const { config, notes } = resolveConfig({
    method: "orpo",
    model_name_or_path: base,
    dataset_name: dataset,
    output_dir: join(out, "run"),
    beta: 0.1,
    learning_rate: 2e-3,
    lr_scheduler_type: "cosine",
    warmup_steps: 0.05,   // below 1: a fraction of the total steps
    max_length: 192,
    per_device_train_batch_size: 8,
    per_device_eval_batch_size: 25,
    max_steps: o.steps,
    logging_steps: 5,
    eval_strategy: "steps",
    eval_steps: evalEvery,
    eval_on_start: true,
    save_steps: o.steps,
    save_total_limit: 1,
    seed: 42,
    threads: o.threads,
  }, "demo");
  console.error(`2/3 training ${o.steps} steps (8 pairs a step), evaluating every ${evalEvery}`);
  const res = await train(config, { notes });
  const evals = res.logHistory.filter((e) => typeof e["eval_rewards/accuracies"] === "number");
  const before = evals[0]?.["eval_rewards/accuracies"] as number;
  const after = evals[evals.length - 1]?.["eval_rewards/accuracies"] as number;
  console.error(`3/3 eval_rewards/accuracies on the test split: ${before.toFixed(3)} before -> ${pc.bold(after.toFixed(3))} after`);
  try {
    const { writeReport } = await import("../report/report.ts");
    console.error(`report: ${writeReport(res.outputDir)}`);
  } catch (e) {
    if ((e as { code?: string }).code !== "ERR_MODULE_NOT_FOUND") throw e;
  }
  console.error(`model: ${res.outputDir} (config.json, model.safetensors, tokenizer) — loadable by transformers`);
  console.error(`metrics: ${join(res.outputDir, "metrics.jsonl")}`);
  return { before, after, outputDir: res.outputDir };
}

export function registerDemoCommand(program: Command): void {
  program
    .command("demo")
    .description("train a tiny model with ORPO on the bundled HH-RLHF sample and show preference accuracy rise")
    .option("--output <dir>", "where the model, run and report go", "runs/demo")
    .option("--steps <n>", "optimizer steps", (v) => parseInt(v, 10), 60)
    .option("--threads <n>", "native threads", (v) => parseInt(v, 10), 2)
    .action(async (o: DemoOptions) => {
      const r = await runDemo(o);
      if (!(r.after > r.before)) process.exitCode = 1;
    });
}
