// The demo's experiment, the ORPO paper's point in a few minutes on a CPU: a tiny Llama-shaped model (the real
// Llama-2 tokenizer) starts from random weights, a short warm-up on random answers starts it on the answer format
// of "max(47,38)=" (a brief pretraining: no comparing), and from that one starting point it is fine-tuned twice
// with the same steps, schedule and problems: SFT on the correct answers (the larger number), and ORPO on correct
// (chosen) vs the smaller number (rejected). Held-out chosen and rejected log-probs are measured at the start, on a
// checkpoint every few steps and at the end, and the final models answer the held-out problems greedily. Not the
// CLI (cli/demo.ts) and not the page (demo/report.ts); the task is task.ts.
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { prepareDataset } from "../data/prepare.ts";
import { loadTokenizer, type Tokenizer } from "../data/tokenizer.ts";
import type { TokenizedPair } from "../data/tokenize.ts";
import { pairLogps } from "../eval/pairwise.ts";
import { greedyIds } from "../generate/greedy.ts";
import { loadModelFolder } from "../models/checkpoint.ts";
import { makeTinyModel, type TinyModelOptions } from "../models/tiny.ts";
import { resolveConfig } from "../train/config.ts";
import { train } from "../train/loop.ts";
import { removeFolder } from "../util/durable.ts";
import { isCorrect, largerTask, writeTaskFiles, type Problem } from "./task.ts";

export interface DemoSettings {
  operands: { min: number; max: number };   // a, b two-digit numbers in [min, max]
  heldOut: number;                          // problems never trained on, where everything is measured
  seed: number;
  model: TinyModelOptions;
  warmupSteps: number;
  warmupLr: number;
  steps: number;                            // fine-tuning steps of each method
  batch: number;                            // problems per step (pairs for ORPO, answers for SFT)
  lr: number;
  beta: number;                             // ORPO's λ (TRL's beta)
  measureEvery: number;                     // held-out log-probs on a checkpoint every this many steps
  threads: number;
}

/** The demo as shipped: 43 s measured on 2 idle cores, 2 min 55 s on the same machine busy with other jobs. */
export const DEMO_SETTINGS: DemoSettings = {
  operands: { min: 10, max: 99 }, heldOut: 100, seed: 7,
  model: { tokenizer: "llama2", hidden: 64, layers: 2, heads: 4, kvHeads: 2, intermediate: 192, maxPositions: 32, seed: 7 },
  warmupSteps: 45, warmupLr: 3e-3,
  steps: 100, batch: 8, lr: 5e-3, beta: 2.0, measureEvery: 10, threads: 2,
};

/** Held-out means: summed completion log-probs (answer digits and EOS, nats) and the share of pairs ranked right. */
export interface Measure { step: number; chosen: number; rejected: number; margin: number; pairAccuracy: number }

export interface DemoRun {
  method: "sft" | "orpo";
  dir: string;            // the final model
  curve: Measure[];       // step 0 (the warm-up model) … the final step
  accuracy: number;       // greedy answers equal to the sum, held out
  seconds: number;
}

export interface DemoResult {
  out: string;
  warmupDir: string;
  before: Measure;
  beforeAccuracy: number;
  runs: DemoRun[];        // sft, then orpo
  heldOut: number;
  settings: DemoSettings;
  seconds: number;
}

export interface DemoHooks {
  phase?: (n: number, total: number, text: string) => void;
  quiet?: boolean;        // no training output
}

const mean = (a: ArrayLike<number>) => { let s = 0; for (let i = 0; i < a.length; i++) s += a[i]; return s / a.length; };

/** Held-out chosen/rejected log-probs of the model in `dir`. */
function measure(dir: string, rows: TokenizedPair[], padTokenId: number, step: number): Measure {
  const m = loadModelFolder(dir).model;
  try {
    const lp = pairLogps(m, rows, padTokenId, 50);
    let right = 0;
    for (let i = 0; i < rows.length; i++) if (lp.chosen[i] > lp.rejected[i]) right++;
    const chosen = mean(lp.chosen), rejected = mean(lp.rejected);
    return { step, chosen, rejected, margin: chosen - rejected, pairAccuracy: right / rows.length };
  } finally {
    m.free();
  }
}

/** Greedy answers (up to 3 new tokens, cut at EOS) to the held-out prompts; the share equal to the sum. */
function greedyAccuracy(dir: string, tok: Tokenizer, problems: Problem[], rows: TokenizedPair[]): number {
  const m = loadModelFolder(dir).model;
  try {
    const out = greedyIds(m, rows.map((r) => r.prompt_ids), 3);
    let right = 0;
    out.forEach((ids, i) => {
      const end = ids.indexOf(tok.eosTokenId ?? -1);
      const answer = end >= 0 ? ids.slice(0, end) : ids;
      if (answer.length > 0 && isCorrect(problems[i], tok.decode(answer, true))) right++;
    });
    return right / problems.length;
  } finally {
    m.free();
  }
}

/** Runs the whole experiment into `out` (earlier demo runs there are replaced). */
export async function runOrpoDemo(outDir: string, s: DemoSettings = DEMO_SETTINGS, hooks: DemoHooks = {}): Promise<DemoResult> {
  const t0 = performance.now();
  const out = resolve(outDir);
  const phase = hooks.phase ?? (() => {});
  const task = largerTask({ ...s.operands, heldOut: s.heldOut, seed: s.seed });
  const files = writeTaskFiles(join(out, "data"), task);
  const base = join(out, "base-model");
  for (const d of [base, join(out, "warmup"), join(out, "sft"), join(out, "orpo")]) if (existsSync(d)) removeFolder(d);

  phase(1, 4, `a tiny random Llama-shaped model (hidden ${s.model.hidden}, ${s.model.layers} layers, Llama-2 tokenizer), ${s.warmupSteps} warm-up steps on random answers to max(a,b)= (the format, no comparing)`);
  makeTinyModel(base, s.model);
  const common = {
    lr_scheduler_type: "cosine", warmup_steps: 0.05, max_length: 32, per_device_train_batch_size: s.batch, logging_steps: 10,
    eval_strategy: "no", seed: s.seed, threads: s.threads, save_total_limit: 1,
  };
  const warmupDir = join(out, "warmup");
  const warm = resolveConfig({ ...common, method: "sft", model_name_or_path: base, dataset_name: files.warmup, output_dir: warmupDir, learning_rate: s.warmupLr, max_steps: s.warmupSteps, save_strategy: "no" }, "demo warm-up");
  await train(warm.config, { quiet: hooks.quiet, handleSignals: false });

  const tok = await loadTokenizer(warmupDir);
  const held = await prepareDataset(join(files.pairs, "test.jsonl"), tok, { method: "orpo", max_length: 32, cacheDir: null, progress: false });
  if (held.kind !== "paired" || held.rows.length !== task.heldOut.length) throw new Error("demo: the held-out pairs did not tokenize one row per problem; this is a bug in the demo");
  const rows = held.rows as TokenizedPair[];
  const before = measure(warmupDir, rows, tok.padTokenId, 0);
  const beforeAccuracy = greedyAccuracy(warmupDir, tok, task.heldOut, rows);

  const runs: DemoRun[] = [];
  for (const [i, method] of (["sft", "orpo"] as const).entries()) {
    const dir = join(out, method);
    phase(2 + i, 4, method === "sft"
      ? `SFT: ${s.steps} steps of ${s.batch} correct answers (the larger number; the NLL of the chosen answer only)`
      : `ORPO: the same ${s.steps} steps of the same ${s.batch} problems, chosen = the larger number, rejected = the smaller (λ = beta = ${s.beta})`);
    const t = performance.now();
    const curve: Measure[] = [{ ...before }];
    const cfg = resolveConfig({
      ...common, method, model_name_or_path: warmupDir, output_dir: dir, learning_rate: s.lr, max_steps: s.steps, save_steps: s.measureEvery,
      ...(method === "sft" ? { dataset_name: files.sft } : { dataset_name: files.pairs, dataset_train_split: "train", beta: s.beta }),
    }, `demo ${method}`);
    await train(cfg.config, {
      quiet: hooks.quiet, handleSignals: false,
      onStep: (step) => { if (step % s.measureEvery === 0 && step < s.steps) curve.push(measure(join(dir, `checkpoint-${step}`), rows, tok.padTokenId, step)); },
    });
    curve.push(measure(dir, rows, tok.padTokenId, s.steps));
    runs.push({ method, dir, curve, accuracy: greedyAccuracy(dir, tok, task.heldOut, rows), seconds: (performance.now() - t) / 1000 });
  }
  phase(4, 4, "held-out log-probs, greedy answers and the report");
  return { out, warmupDir, before, beforeAccuracy, runs, heldOut: rows.length, settings: s, seconds: (performance.now() - t0) / 1000 };
}
