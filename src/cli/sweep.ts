// `preftune sweep BASE.yaml --grid KEY=V1,V2 ... [--key value ...]`: option parsing and printing only; planning,
// running and the table are src/sweep/, the report src/report/sweep-report.ts.
import { existsSync } from "node:fs";
import type { Command } from "commander";
import { runSweep, SWEEP_EVAL_TASKS, type SweepEvalTask } from "../sweep/run.ts";

const SWEEP_HELP = `
Trains one run per cell of a grid over a base config (CONFIG, as for preftune train; --key value options after it
override the file for every cell) and compares them. Example, the DPO / IPO / KTO × β study:

  preftune sweep presets/pref-align-scan-zephyr.yaml --model_name_or_path ./zephyr-7b-sft-full --output_dir runs/scan
  preftune sweep base.yaml --grid method=dpo,ipo,kto --grid beta=0.01,0.1,0.3,0.6 --eval pairwise

Grid: --grid KEY=V1,V2,... (repeatable; or KEY=[JSON list] for values holding commas). Any config key of
preftune train --help can be an axis except output_dir and resume_from_checkpoint; values are read as
--key value reads them and checked against the key's type before anything runs, and so is every cell's whole config
(an unknown key names the closest one). The config file may hold the grid itself as grid: {KEY: [V1, V2]}; a
--grid of the same key replaces it. Cells are every combination, the first axis outermost.

Output in output_dir: cells/KEY=V,KEY=V/ is each cell's training output_dir (the base config plus its values:
sweep_config.json; metrics, checkpoints, final model, its own report.html), sweep.jsonl and sweep.csv (one row
per cell: grid values, status, the final train log line, the final evaluation, pairwise:* and mt_bench_* results,
wall_seconds), report.html (the chosen metric against beta per method with the best beta marked, training curves
overlaid per method, the table; plots/*.svg). They are rewritten after every cell; preftune report OUTPUT_DIR
re-renders the report at any time, also mid-sweep.

Re-running the same command continues the sweep: a finished cell (cells/*/sweep_result.json) is never run again, an
interrupted one resumes from its latest checkpoint (keep save_steps set so there is one), a failed one is tried
again. A cell folder started with a different config is refused (use another output_dir). Ctrl-C stops the
running cells at a checkpoint (exit 130); KTO cells on paired data are unpaired as TRL does (each pair gives a
desirable and an undesirable row).

Evaluation: every cell's own eval_* metrics (set eval_strategy / eval_steps in the base config). --eval pairwise
also runs preftune eval --task pairwise on each final model (every method ranked the same way: summed completion
log-probs against the cell's starting model, beta of the cell), and --eval mt-bench writes MT-Bench answers,
judged with --judge-url and --judge-model (then mt_bench_score is the study's metric).
`;

const collect = (v: string, prev: string[] = []) => [...prev, v];
const int = (name: string, min: number) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be a whole number ≥ ${min}, got ${JSON.stringify(v)}`);
  return n;
};

interface SweepCliOptions {
  grid?: string[]; parallel: number; eval?: string[]; evalDataset?: string; metric?: string;
  judgeUrl?: string; judgeModel?: string; judgeApiKeyEnv?: string; questions?: number; maxNewTokens?: number;
}

export function registerSweepCommand(program: Command): void {
  program
    .command("sweep")
    .description("train a grid of runs (e.g. method × beta) over a base config, evaluate each the same way, and compare them in one table and report")
    .argument("[config]", "base config, YAML or JSON (optional when every required key is given as --key value)")
    .option("--grid <KEY=V1,V2>", "a grid axis: a config key and its values; repeatable (default: the config file's grid: mapping)", collect)
    .option("--parallel <n>", "cells trained at once; the threads (the base config's threads, or all cores) are split between them", int("parallel", 1), 1)
    .option("--eval <task>", `also evaluate each final model with preftune eval: ${SWEEP_EVAL_TASKS.join(" or ")}; repeatable (default: only the cells' logged eval metrics)`, collect)
    .option("--eval-dataset <path>", "pairwise: preference data to rank (default: the base config's eval_dataset, else its dataset_name; its test split when it has one)")
    .option("--metric <key>", "the table column the study figure compares (default: mt_bench_score when judged, else pairwise:rewards/accuracies, else eval_rewards/accuracies, else eval_loss)")
    .option("--judge-url <url>", "mt-bench: the judge's OpenAI-compatible API (default: none, answers only)")
    .option("--judge-model <name>", "mt-bench: the judge model's name (required with --judge-url)")
    .option("--judge-api-key-env <var>", "mt-bench: environment variable holding the judge's API key (default OPENAI_API_KEY)")
    .option("--questions <n>", "mt-bench: only the first n questions (default: all 80)", int("questions", 1))
    .option("--max-new-tokens <n>", "mt-bench: new tokens per answer (default 1024, FastChat's)", int("max-new-tokens", 1))
    .allowUnknownOption(true)
    .allowExcessArguments(true)
    .addHelpText("after", SWEEP_HELP)
    .action(async (_config: string | undefined, opts: SweepCliOptions, cmd: Command) => {
      const args = [...cmd.args];
      const file = args.length > 0 && !args[0].startsWith("--") ? args.shift()! : null;
      if (file && !existsSync(file)) throw new Error(`${file}: no such config file`);
      const tasks = (opts.eval ?? []).map((t) => {
        if (!SWEEP_EVAL_TASKS.includes(t as SweepEvalTask)) throw new Error(`--eval ${JSON.stringify(t)}: use ${SWEEP_EVAL_TASKS.join(" or ")}`);
        return t as SweepEvalTask;
      });
      const r = await runSweep({
        configFile: file, overrides: args, grid: opts.grid ?? [], parallel: opts.parallel, metric: opts.metric ?? null,
        eval: { tasks: [...new Set(tasks)], dataset: opts.evalDataset ?? null, judgeUrl: opts.judgeUrl ?? null, judgeModel: opts.judgeModel ?? null, judgeApiKeyEnv: opts.judgeApiKeyEnv ?? null, questions: opts.questions ?? null, maxNewTokens: opts.maxNewTokens ?? null },
      });
      if (r.exitCode !== 0) process.exitCode = r.exitCode;
    });
}
