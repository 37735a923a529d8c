// The `preftune` command line: one commander program; each command family registers itself from its
// own file. Not business logic: every command calls into src/.
import { Command } from "commander";
import { registerBenchCommand } from "./bench.ts";

export async function main(argv: string[]): Promise<void> {
  const program = new Command();
  program
    .name("preftune")
    .description("Preference tuning (ORPO, DPO/IPO, KTO, SimPO/CPO, SFT) with TRL's keys and Hugging Face files, on a native CPU core")
    .showHelpAfterError();
  registerBenchCommand(program);
  for (const [file, fn] of [["./data.ts", "registerDataCommands"], ["./train.ts", "registerTrainCommands"], ["./demo.ts", "registerDemoCommand"], ["./report.ts", "registerReportCommand"]] as const) {
    // Command families are optional while they are being built; a missing file is not an error here.
    const mod = await import(file).catch((e: Error & { code?: string }) => {
      if (e.code === "ERR_MODULE_NOT_FOUND" && e.message.includes(file.slice(2))) return null;
      throw e;
    });
    if (mod && typeof mod[fn] === "function") mod[fn](program);
  }
  try {
    await program.parseAsync(argv);
  } catch (e) {
    console.error(`preftune: ${(e as Error).message}`);
    process.exitCode = 1;
  }
}
