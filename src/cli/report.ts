// `preftune report RUN_DIR [--out FILE] [--eval DIR ...]`: argument handling and printing only; the report is
// src/report/report.ts. Errors are thrown with their message (main.ts prints them and sets the exit code).
import type { Command } from "commander";
import { writeReport } from "../report/report.ts";
import { writeSweepReport } from "../report/sweep-report.ts";
import { isSweepDir } from "../sweep/table.ts";

const REPORT_HELP = `
Reads RUN_DIR/metrics.jsonl (or trainer_state.json's log_history), the run's training_args.json and
trainer_state.json, and writes a self-contained report.html (no network needed to view it) with a config
summary, first/last/best values, eval before vs after, and charts; each chart is also written to
plots/<name>.svg next to the HTML file. Works on a run that is still training.

A run trained with generate_during_eval: true also gets its completions.jsonl shown: the policy's (and the
reference model's) completions of the first eval prompts at each evaluation, latest first.

--eval DIR adds MT-Bench results: every mt_bench_scores_MODEL.json in DIR or its direct subfolders (what
\`preftune eval --task mt-bench --output DIR\` writes once answers are judged) becomes one series of a bar
chart of per-category scores (plots/mt_bench.svg), with turn 1 / turn 2 / average tables. Repeat --eval
to compare models evaluated into different folders.

  preftune report runs/orpo
  preftune report runs/orpo --out /tmp/orpo-report.html
  preftune report runs/orpo --eval eval/orpo --eval eval/base

A sweep folder (the output_dir of preftune sweep, holding sweep.json) gets the sweep report instead: the study
figure, best cell per method, the comparison table and training curves per method (--metric picks the compared
column; --eval does not apply).

  preftune report runs/scan --metric eval_rewards/accuracies
`;

export function registerReportCommand(program: Command): void {
  program
    .command("report")
    .description("write an HTML report with charts of a training run's metrics (and its MT-Bench scores)")
    .argument("<RUN_DIR>", "a training run's output_dir (holding metrics.jsonl), or a sweep's")
    .option("--out <FILE>", "HTML file to write (default RUN_DIR/report.html); plots/ goes in the same folder")
    .option("--eval <DIR>", "a folder of `preftune eval --task mt-bench` output (mt_bench_scores_MODEL.json, here or one folder down); repeatable",
      (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
    .option("--metric <KEY>", "sweep folders: the table column the study figure compares (default: the sweep's choice)")
    .addHelpText("after", REPORT_HELP)
    .action((runDir: string, opts: { out?: string; eval?: string[]; metric?: string }) => {
      if (isSweepDir(runDir)) {
        if (opts.eval?.length) throw new Error(`${runDir} is a sweep folder: --eval applies to a single run's report (use preftune sweep --eval mt-bench to judge every cell)`);
        process.stdout.write(writeSweepReport(runDir, { out: opts.out, metric: opts.metric }) + "\n");
        return;
      }
      if (opts.metric) throw new Error("--metric applies to sweep folders (the output_dir of preftune sweep)");
      const file = writeReport(runDir, { out: opts.out, evalDirs: opts.eval });
      process.stdout.write(file + "\n");
    });
}
