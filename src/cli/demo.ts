// `preftune demo`: the ORPO paper's point, offline, in a few minutes on a CPU — a tiny model learns to answer
// max(a,b)= from scratch and is fine-tuned once with SFT and once with ORPO (same steps and problems); the table shows
// SFT raising the held-out rejected (wrong) answers' log-probs with the chosen ones and ORPO pushing them down. Option
// parsing and printing only: the experiment is src/demo/orpo-demo.ts, the table and page src/demo/report.ts.
import type { Command } from "commander";
import pc from "picocolors";
import { DEMO_SETTINGS, runOrpoDemo } from "../demo/orpo-demo.ts";
import { demoTable, verdict, writeDemoReport } from "../demo/report.ts";

export interface DemoOptions { output: string; steps: number; threads: number }

export function registerDemoCommand(program: Command): void {
  program
    .command("demo")
    .description("SFT vs ORPO on a tiny model learning max(a,b) from scratch: SFT raises the wrong answers' log-probs too, ORPO pushes them down")
    .option("--output <dir>", "where the data, models, runs and report go (an earlier demo there is replaced)", "runs/demo")
    .option("--steps <n>", "fine-tuning steps of each method", (v) => parseInt(v, 10), DEMO_SETTINGS.steps)
    .option("--threads <n>", "native threads", (v) => parseInt(v, 10), DEMO_SETTINGS.threads)
    .action(async (o: DemoOptions) => {
      if (!(o.steps >= 1) || !(o.threads >= 1)) throw new Error("--steps and --threads must be whole numbers ≥ 1");
      const log = (l: string) => process.stderr.write(l + "\n");
      log(pc.bold("preftune demo") + ": SFT vs ORPO on max(a,b)=, from random weights");
      const r = await runOrpoDemo(o.output, { ...DEMO_SETTINGS, steps: o.steps, threads: o.threads, measureEvery: Math.max(1, Math.round(o.steps / 10)) }, {
        phase: (n, total, text) => log(pc.bold(`${n}/${total}`) + ` ${text}`),
      });
      const report = writeDemoReport(r);
      for (const run of r.runs) {
        try { const { writeReport } = await import("../report/report.ts"); writeReport(run.dir); } catch { /* the demo's own page is the report */ }
      }
      process.stdout.write("\n" + demoTable(r).join("\n") + "\n\n");
      const v = verdict(r);
      if (v.sftRaisesRejected && v.orpoLowersRejected) log(pc.green("SFT raised the held-out rejected log-probs with the chosen ones; ORPO pushed them below where both started."));
      else {
        log(pc.yellow(`note: this run did not show the expected pattern (SFT ${v.sftRaisesRejected ? "raised" : "did not raise"} the rejected log-probs, ORPO ${v.orpoLowersRejected ? "lowered" : "did not lower"} them)`));
        process.exitCode = 1;
      }
      log(`report: ${report}`);
      log(`models: ${r.runs.map((x) => x.dir).join(" and ")} (Hugging Face folders; the warm-up model both start from: ${r.warmupDir})`);
      log(`time: ${r.seconds.toFixed(0)} s`);
    });
}
