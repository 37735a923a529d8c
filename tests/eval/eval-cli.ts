// A `preftune eval` entry for tests to spawn as a child process: a commander program holding only the eval
// command, run the way bin/preftune.js runs the full one (errors printed, exit code 1). Not a test itself.
import { Command } from "commander";
import { registerEvalCommand } from "../../src/cli/eval.ts";

const program = new Command().name("preftune");
registerEvalCommand(program);
try {
  await program.parseAsync(process.argv);
} catch (e) {
  console.error(`preftune: ${(e as Error).message}`);
  process.exitCode = 1;
}
