// A stand-alone `preftune chat` for tests/cli/chat.test.ts: a fresh commander program with only the chat command,
// run as the real command line would (errors printed, exit code 1).
import { Command } from "commander";
import { registerChatCommand } from "../../src/cli/chat.ts";

const program = new Command().name("preftune").showHelpAfterError();
registerChatCommand(program);
try {
  await program.parseAsync(process.argv);
} catch (e) {
  console.error(`preftune: ${(e as Error).message}`);
  process.exitCode = 1;
}
