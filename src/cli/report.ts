// `preftune report RUN_DIR [--out FILE]`: argument handling and printing only; the report is
// src/report/report.ts. Errors are thrown with their message (main.ts prints them and sets the exit code).
import type { Command } from "commander";
import { writeReport } from "../report/report.ts";

const REPORT_HELP = `
Reads RUN_DIR/metrics.jsonl (or trainer_state.json's log_history), the run's training_args.json and
trainer_state.json, and writes a self-contained report.html (no network needed to view it) with a config
summary, first/last/best values, eval before vs after, and charts; each chart is also written to
plots/<name>.svg next to the HTML file. Works on a run that is still training.

  preftune report runs/orpo
  preftune report runs/orpo --out /tmp/orpo-report.html
`;

export function registerReportCommand(program: Command): void {
  program
    .command("report")
    .description("write an HTML report with charts of a training run's metrics")
    .argument("<RUN_DIR>", "a training run's output_dir (holding metrics.jsonl)")
    .option("--out <FILE>", "HTML file to write (default RUN_DIR/report.html); plots/ goes in the same folder")
    .addHelpText("after", REPORT_HELP)
    .action((runDir: string, opts: { out?: string }) => {
      const file = writeReport(runDir, { out: opts.out });
      process.stdout.write(file + "\n");
    });
}
