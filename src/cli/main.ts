// The `preftune` command line: one commander program; each command family registers itself from its
// own file. Not business logic: every command calls into src/.
import { Command } from "commander";
import { registerBenchCommand } from "./bench.ts";
import { registerChatCommand } from "./chat.ts";
import { registerDataCommands } from "./data.ts";
import { registerDemoCommand } from "./demo.ts";
import { registerEvalCommand } from "./eval.ts";
import { registerGenerateCommand } from "./generate.ts";
import { registerReportCommand } from "./report.ts";
import { registerServeCommand } from "./serve.ts";
import { registerSweepCommand } from "./sweep.ts";
import { registerTrainCommands } from "./train.ts";

export async function main(argv: string[]): Promise<void> {
  const program = new Command();
  program
    .name("preftune")
    .description("Preference tuning (ORPO, DPO/IPO, KTO, SimPO/CPO, SFT) with TRL's keys and Hugging Face files, on a native CPU core")
    .showHelpAfterError();
  registerTrainCommands(program);
  registerDataCommands(program);
  registerReportCommand(program);
  registerDemoCommand(program);
  registerBenchCommand(program);
  registerGenerateCommand(program);
  registerChatCommand(program);
  registerServeCommand(program);
  registerEvalCommand(program);
  registerSweepCommand(program);
  try {
    await program.parseAsync(argv);
  } catch (e) {
    console.error(`preftune: ${(e as Error).message}`);
    process.exitCode = 1;
  }
}
