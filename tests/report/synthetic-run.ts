// A synthetic run folder for the report tests: metrics.jsonl shaped like the training loop's (train lines
// every `logEvery` steps with TRL metric keys, eval lines with eval_ keys, the end-of-training line) and a
// checkpoint's training_args.json. The values are smooth made-up curves, not a real training run.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface SyntheticRun {
  lines: Record<string, number | null>[];
  trainSteps: number[];
  evalSteps: number[];
}

export function syntheticLines(o: { steps?: number; logEvery?: number; evalEvery?: number; nanAt?: number } = {}): SyntheticRun {
  const steps = o.steps ?? 200, logEvery = o.logEvery ?? 10, evalEvery = o.evalEvery ?? 50;
  const lines: Record<string, number | null>[] = [];
  const trainSteps: number[] = [], evalSteps: number[] = [];
  const evalLine = (s: number) => {
    const t = s / steps;
    evalSteps.push(s);
    lines.push({
      step: s, epoch: t * 2, eval_loss: 1.1 - 0.3 * t, "eval_rewards/chosen": -0.05 - 0.1 * t, "eval_rewards/rejected": -0.05 - 0.3 * t,
      "eval_rewards/accuracies": 0.5 + 0.3 * t, "eval_rewards/margins": 0.2 * t, eval_nll_loss: 1.0 - 0.2 * t,
      eval_runtime: 3.5, eval_samples_per_second: 18.2, eval_steps_per_second: 2.3,
    });
  };
  evalLine(0);
  for (let s = logEvery; s <= steps; s += logEvery) {
    const t = s / steps;
    trainSteps.push(s);
    const lr = s < 20 ? 5e-6 * (s / 20) : 5e-6 * (steps - s) / (steps - 20);
    lines.push({
      step: s, epoch: t * 2, loss: 1.2 - 0.5 * t + 0.03 * Math.sin(s), grad_norm: s === o.nanAt ? null : 2 + Math.cos(s / 7), learning_rate: lr,
      "rewards/chosen": -0.04 - 0.08 * t, "rewards/rejected": -0.05 - 0.35 * t, "rewards/accuracies": 0.45 + 0.45 * t,
      "rewards/margins": 0.01 + 0.27 * t, "logps/chosen": -120 - 20 * t, "logps/rejected": -130 - 60 * t,
      "logits/chosen": -1.5 + 0.1 * t, "logits/rejected": -1.4 + 0.05 * t, nll_loss: 1.1 - 0.3 * t,
      log_odds_ratio: -0.7 + 0.3 * t, log_odds_chosen: 0.1 + 0.6 * t, num_tokens: s * 4096, tokens_per_second: 950 + 10 * Math.sin(s),
    });
    if (s % evalEvery === 0) evalLine(s);
  }
  lines.push({ step: steps, epoch: 2, train_runtime: 812.4, train_samples_per_second: 3.9, train_steps_per_second: 0.246, total_flos: 0, train_loss: 0.95 });
  return { lines, trainSteps, evalSteps };
}

/** Writes the run into `dir` (metrics.jsonl and checkpoint-<steps>/training_args.json). */
export function writeSyntheticRun(dir: string, run: SyntheticRun = syntheticLines()): SyntheticRun {
  mkdirSync(join(dir, "checkpoint-200"), { recursive: true });
  writeFileSync(join(dir, "metrics.jsonl"), run.lines.map((l) => JSON.stringify(l)).join("\n") + "\n");
  writeFileSync(join(dir, "checkpoint-200", "training_args.json"), JSON.stringify({
    method: "orpo", model_name_or_path: "models/SmolLM2-135M-Instruct", dataset: "data/hh-rlhf-harmless-sample",
    output_dir: dir, learning_rate: 5e-6, beta: 0.1, lr_scheduler_type: "linear", warmup_steps: 20,
    per_device_train_batch_size: 4, gradient_accumulation_steps: 4, max_steps: 200, max_length: 1024, seed: 42,
    eval_strategy: "steps", eval_steps: 50, eval_on_start: true, logging_steps: 10, loss_type: null,
  }, null, 2));
  return run;
}
