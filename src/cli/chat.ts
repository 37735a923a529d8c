// `preftune chat`: a multi-turn conversation with a model folder (plus an optional PEFT adapter) in the terminal.
// Each turn renders the whole history through the model's chat template and streams the answer as it decodes.
// The session itself is runChat, over any pair of streams (tests drive it through PassThrough streams); the
// command only wires it to stdin/stdout. Decoding is src/generate/engine.ts, the settings src/generate/config.ts.
import { basename, resolve } from "node:path";
import { createInterface } from "node:readline";
import type { Command } from "commander";
import type { Message } from "../data/formats.ts";
import { GenerationConfigError, resolveGenerationConfig } from "../generate/config.ts";
import { Generator, loadGenerationModel } from "../generate/engine.ts";
import type { GenerateResult, GenerationConfig } from "../generate/types.ts";

/** New tokens per answer when neither --max-new-tokens nor generation_config.json says (at most half the positions). */
export const DEFAULT_MAX_NEW_TOKENS = 512;

/** The command's options as commander hands them over (strings), or as numbers from code. */
export interface ChatOptions {
  model: string;
  adapter?: string | null;
  system?: string | null;
  maxNewTokens?: string | number;
  temperature?: string | number;
  topP?: string | number;
  topK?: string | number;
  minP?: string | number;
  repetitionPenalty?: string | number;
  seed?: string | number;
  threads?: string | number;
}

/** One answered (or stopped) turn, for callers that watch the session. */
export interface ChatTurn {
  messages: Message[];               // what went through the chat template (system message first when set)
  promptIds: number[];               // what the engine got
  result: GenerateResult;
  droppedTurns: number;              // oldest user/assistant pairs dropped before this turn to fit the positions
}

export interface ChatIO {
  input: NodeJS.ReadableStream;
  output: NodeJS.WritableStream;
  /** A terminal: line editing, Ctrl-C as a key, dim notes and tokens/s. Otherwise plain lines, no escape codes. */
  isTTY: boolean;
  /** Also treat the process's SIGINT as Ctrl-C (the command sets it: with piped stdin the key arrives as a signal). */
  processSignals?: boolean;
  /** Called after every generated answer. */
  onTurn?: (turn: ChatTurn) => void;
}

/** What is left when the session ends. */
export interface ChatSummary {
  history: Message[];                // system message first when set
  answers: number;
}

const COMMANDS_HELP = [
  "/reset          clear the conversation (the system message stays)",
  "/system TEXT    set the system message and clear the conversation; /system alone removes it",
  "/help           this list",
  "/exit           leave (so do Ctrl-D and, at an empty prompt, Ctrl-C)",
  "//TEXT          send a message that starts with \"/\" (the first \"/\" is dropped)",
  "Ctrl-C while an answer streams stops it; the partial answer stays in the conversation.",
];

/** The command-line flags that set generation keys, with their HF names. */
const FLAG_KEYS = [
  ["maxNewTokens", "max-new-tokens", "max_new_tokens"],
  ["temperature", "temperature", "temperature"],
  ["topP", "top-p", "top_p"],
  ["topK", "top-k", "top_k"],
  ["minP", "min-p", "min_p"],
  ["repetitionPenalty", "repetition-penalty", "repetition_penalty"],
  ["seed", "seed", "seed"],
] as const;

interface ParsedFlags {
  overrides: Record<string, unknown>;  // HF keys layered over the model's generation_config.json
  maxNewTokens: number | null;
  seed: number | null;
  threads: number;
}

/** Checks every flag by itself (before the model loads), naming the flag; all problems at once. */
export function parseChatFlags(o: ChatOptions): ParsedFlags {
  const problems: string[] = [];
  const typed: Record<string, unknown> = {};
  for (const [prop, flag, key] of FLAG_KEYS) {
    const raw = o[prop];
    if (raw === undefined || raw === null) continue;
    if (typeof raw === "string" && raw.trim() === "") { problems.push(`--${flag}: a value is required`); continue; }
    try {
      typed[key] = resolveGenerationConfig({ overrides: { [key]: raw }, where: `--${flag}` })[key];
    } catch (e) {
      if (e instanceof GenerationConfigError) problems.push(...e.problems);
      else throw e;
    }
  }
  let threads = 0;
  if (o.threads !== undefined && o.threads !== null) {
    threads = Number(o.threads);
    if (!Number.isInteger(threads) || threads < 0 || String(o.threads).trim() === "") {
      problems.push(`--threads must be a whole number >= 0 (0: all cores), got ${JSON.stringify(String(o.threads))}`);
    }
  }
  if (problems.length) throw new GenerationConfigError(problems);
  const overrides: Record<string, unknown> = {};
  // As in the OpenAI API (and preftune serve): temperature 0 is greedy decoding, any other turns sampling on.
  if (typed.temperature !== undefined) {
    if (typed.temperature === 0) overrides.do_sample = false;
    else Object.assign(overrides, { do_sample: true, temperature: typed.temperature });
  }
  for (const key of ["top_p", "top_k", "min_p", "repetition_penalty"]) if (typed[key] !== undefined) overrides[key] = typed[key];
  return {
    overrides,
    maxNewTokens: (typed.max_new_tokens as number | undefined) ?? null,
    seed: (typed.seed as number | undefined) ?? null,
    threads,
  };
}

/** How an answer is decoded, in a few words for the banner. */
function describeDecoding(c: GenerationConfig): string {
  const parts: string[] = [];
  if (c.do_sample) {
    parts.push(`sampling at temperature ${c.temperature}`);
    if (c.top_p < 1) parts.push(`top_p ${c.top_p}`);
    if (c.top_k > 0) parts.push(`top_k ${c.top_k}`);
    if (c.min_p != null && c.min_p > 0) parts.push(`min_p ${c.min_p}`);
  } else parts.push("greedy");
  if (c.repetition_penalty !== 1) parts.push(`repetition_penalty ${c.repetition_penalty}`);
  parts.push(`up to ${c.max_new_tokens} new tokens`);
  return parts.join(", ");
}

/**
 * Runs one conversation over `io` until /exit, the end of the input, or Ctrl-C at an empty prompt. Throws before
 * the first prompt when a setting is bad or the model cannot chat (no chat template, a system message it refuses).
 */
export async function runChat(opts: ChatOptions, io: ChatIO): Promise<ChatSummary> {
  const flags = parseChatFlags(opts);
  const { output } = io;
  const dim = (s: string) => (io.isTTY ? `\x1b[2m${s}\x1b[22m` : s);
  const say = (s = "") => output.write(`${s}\n`);
  const note = (s: string) => say(dim(s));

  if (io.isTTY) note(`loading ${opts.model}${opts.adapter ? ` with the adapter ${opts.adapter}` : ""} ...`);
  const loaded = await loadGenerationModel(opts.model, { adapter: opts.adapter ?? null, threads: flags.threads });
  let rl: ReturnType<typeof createInterface> | null = null;
  let onProcessSigint: (() => void) | null = null;
  try {
    const generator = new Generator(loaded);
    const positions = loaded.maxPositions > 0 ? loaded.maxPositions : Infinity;
    if (!loaded.tokenizer.chatTemplate) {
      throw new Error(`${loaded.name} has no chat template (${loaded.tokenizer.chatTemplateSource}), so a conversation cannot be rendered; ` +
        "use a chat model, or add chat_template to its tokenizer_config.json");
    }

    let maxNew: number;
    if (flags.maxNewTokens != null) {
      if (flags.maxNewTokens >= positions) {
        throw new Error(`--max-new-tokens ${flags.maxNewTokens} leaves no room for the conversation: the model has ${positions} positions ` +
          `(max_position_embeddings); pass a smaller value (half, ${Math.floor(positions / 2)}, leaves the other half for the conversation)`);
      }
      maxNew = flags.maxNewTokens;
    } else {
      maxNew = Math.min(loaded.generationDefaults.max_new_tokens ?? DEFAULT_MAX_NEW_TOKENS, Math.max(1, Math.floor(positions / 2)));
    }
    let config: GenerationConfig;
    try {
      config = resolveGenerationConfig({
        overrides: { ...loaded.generationDefaults, ...flags.overrides, max_new_tokens: maxNew, max_length: null },
        where: "the model's generation_config.json with the command-line flags",
      });
    } catch (e) {
      throw new Error(`${(e as Error).message}\n(set the value on the command line to override the model's generation_config.json)`);
    }
    const baseSeed = flags.seed ?? config.seed;

    let system = opts.system ? opts.system : null;
    const systemRefused = (text: string): string | null => {
      try {
        generator.chatPromptIds([{ role: "system", content: text }, { role: "user", content: "Hello" }]);
        return null;
      } catch (e) {
        return `the model's chat template cannot render a system message: ${(e as Error).message}`;
      }
    };
    if (system) {
      const why = systemRefused(system);
      if (why) throw new Error(`--system: ${why}`);
    }

    const modelName = basename(resolve(loaded.dir));
    const adapterName = loaded.adapterDir ? basename(resolve(loaded.adapterDir)) : "none";
    say(`preftune chat: model ${modelName}, adapter ${adapterName} (${describeDecoding(config)}). ` +
      `Commands: /help /reset /system TEXT /exit; Ctrl-C stops an answer, at an empty prompt leaves.`);

    // ---- the input: a queue of lines, so lines that arrive while an answer decodes wait their turn ----
    const lines = createInterface({ input: io.input, output: io.isTTY ? output : undefined, terminal: io.isTTY, prompt: "> " });
    rl = lines;
    const queue: string[] = [];
    let closed = false;
    let wake: (() => void) | null = null;
    const poke = () => { const w = wake; wake = null; w?.(); };
    lines.on("line", (l) => { queue.push(l); poke(); });
    lines.on("close", () => { closed = true; poke(); });
    const nextLine = async (): Promise<string | null> => {
      while (queue.length === 0 && !closed) await new Promise<void>((r) => { wake = r; });
      return queue.length ? queue.shift()! : null;
    };

    // ---- Ctrl-C: stop the answer; clear a typed line; at an empty prompt leave ----
    let generating = false;
    let stopRequested = false;
    let leaving = false;
    const interrupt = () => {
      if (generating) { stopRequested = true; return; }
      if (io.isTTY && !closed && lines.line.length > 0) {
        output.write("^C\n");
        lines.write(null, { ctrl: true, name: "e" });
        lines.write(null, { ctrl: true, name: "u" });
        lines.prompt();
        return;
      }
      leaving = true;
      if (io.isTTY) output.write("\n");
      if (!closed) lines.close();
      poke();
    };
    lines.on("SIGINT", interrupt);
    if (io.processSignals) { onProcessSigint = interrupt; process.on("SIGINT", onProcessSigint); }

    const prompt = () => {
      if (io.isTTY && !closed) lines.prompt();
      else output.write("> ");
    };
    const help = () => { for (const l of COMMANDS_HELP) say(`  ${l}`); };

    // ---- the conversation ----
    const history: Message[] = [];     // user / assistant turns, oldest first; the system message is kept apart
    let answers = 0;
    const withSystem = (h: Message[]): Message[] => (system ? [{ role: "system", content: system }, ...h] : [...h]);

    const answer = async (content: string): Promise<void> => {
      // Drop the oldest user/assistant pairs until the rendered history leaves room for max_new_tokens; a
      // message that does not fit even alone is refused and the history stays as it was.
      let kept = [...history, { role: "user", content }];
      let dropped = 0;
      let messages: Message[];
      let ids: number[];
      for (;;) {
        messages = withSystem(kept);
        try {
          ids = generator.chatPromptIds(messages);
        } catch (e) {
          say(`error: the model's chat template cannot render the conversation: ${(e as Error).message}`);
          return;
        }
        if (ids.length + maxNew <= positions) break;
        if (kept.length <= 1) {
          say(`error: this message does not fit: it is ${ids.length} tokens after the chat template${system ? " (with the system message)" : ""}, ` +
            `and with room for ${maxNew} new tokens that is more than the model's ${positions} positions. ` +
            `Send a shorter message${system ? ", shorten the system message" : ""} or start with a lower --max-new-tokens. The conversation so far is kept.`);
          return;
        }
        kept = kept.slice(2);
        dropped++;
      }
      if (dropped > 0) {
        note(`(dropped the oldest ${dropped === 1 ? "turn" : `${dropped} turns`} to fit the model's ${positions} positions)`);
        history.splice(0, dropped * 2);
      }
      history.push({ role: "user", content });

      generating = true;
      stopRequested = false;
      let result: GenerateResult;
      try {
        [result] = await generator.generate([{
          promptIds: ids,
          config: { ...config, seed: baseSeed == null ? null : baseSeed + answers },
          onText: (delta) => { output.write(delta); },
          aborted: () => stopRequested,
        }]);
      } catch (e) {
        history.pop();
        say(`\nerror: ${(e as Error).message}`);
        return;
      } finally {
        generating = false;
      }
      say();
      answers++;
      // Stored trimmed (as chat front ends do): templates add their own spacing around a message.
      const text = result.completion.trim();
      if (result.finishReason === "abort") {
        if (text) {
          history.push({ role: "assistant", content: text });
          note("(stopped; the partial answer stays in the conversation)");
        } else {
          history.pop();
          note("(stopped before any text; the message is dropped)");
        }
      } else {
        history.push({ role: "assistant", content: text });
      }
      if (io.isTTY) {
        const cut = result.finishReason === "length" ? `, cut at ${maxNew} new tokens` : "";
        note(`(${result.completionTokens} tokens, ${result.tokensPerSecond.toFixed(1)} tokens/s${cut})`);
      }
      io.onTurn?.({ messages, promptIds: ids, result, droppedTurns: dropped });
    };

    for (;;) {
      if (leaving) break;
      prompt();
      const line = await nextLine();
      if (line === null || leaving) {
        if (!leaving && io.isTTY) output.write("\n");  // Ctrl-D: end the prompt's line
        break;
      }
      const text = line.trim();
      if (text === "") continue;
      if (text.startsWith("/") && !text.startsWith("//")) {
        const cmd = text.split(/\s/, 1)[0];
        const arg = text.slice(cmd.length).trim();
        if (cmd === "/exit" || cmd === "/quit") break;
        if (cmd === "/reset") {
          history.length = 0;
          note(system ? "(conversation cleared; the system message stays)" : "(conversation cleared)");
        } else if (cmd === "/system") {
          const why = arg ? systemRefused(arg) : null;
          if (why) say(`error: ${why}; the system message is unchanged`);
          else {
            system = arg || null;
            history.length = 0;
            note(arg ? "(system message set; conversation cleared)" : "(system message removed; conversation cleared)");
          }
        } else if (cmd === "/help") {
          help();
        } else {
          say(`unknown command ${cmd}; the commands are:`);
          help();
        }
        continue;
      }
      await answer(text.startsWith("//") ? text.slice(1) : text);
    }
    return { history: withSystem(history), answers };
  } finally {
    if (onProcessSigint) process.off("SIGINT", onProcessSigint);
    rl?.close();
    loaded.dispose();
  }
}

const CHAT_HELP = `
Commands at the prompt:
${COMMANDS_HELP.slice(0, -1).map((l) => `  ${l}`).join("\n")}

Ctrl-C: while an answer streams it stops that answer (the partial answer stays in the conversation); with text
typed at the prompt it clears the line; at an empty prompt it leaves, as do /exit and Ctrl-D (end of input).

Every turn sends the whole conversation (the system message first) through the model's chat template with the
generation prompt. When it plus --max-new-tokens no longer fits the model's positions (max_position_embeddings),
the oldest user/assistant turns are dropped (the system message stays) and a note says so; a message that does
not fit even alone is refused with the numbers, and the conversation goes on.

Decoding follows Hugging Face generate with the model's generation_config.json as the defaults (greedy when it
sets nothing); the flags override it. --temperature 0 decodes greedily, any other temperature samples (also when
the model's defaults are greedy); --top-p, --top-k and --min-p matter only when sampling.

Input may be piped: \`printf 'Hello\\n/exit\\n' | preftune chat --model DIR\` prints plain text without colours.
`;

export function registerChatCommand(program: Command): void {
  program
    .command("chat")
    .description("talk to a model in the terminal: multi-turn, with its chat template, answers streamed as they decode")
    .requiredOption("--model <dir>", "Hugging Face model folder (or a PEFT adapter folder whose base_model_name_or_path is a local folder)")
    .option("--adapter <dir>", "PEFT LoRA adapter folder applied on top of --model (default: none)")
    .option("--system <text>", "system message sent first in every turn; /system changes it (default: none)")
    .option("--max-new-tokens <n>", `most new tokens per answer (default: generation_config.json's max_new_tokens, else ${DEFAULT_MAX_NEW_TOKENS}; either at most half the model's positions)`)
    .option("--temperature <t>", "0: greedy; > 0: sample at this temperature (default: generation_config.json's do_sample and temperature; greedy when unset)")
    .option("--top-p <p>", "nucleus sampling mass in [0, 1], 1 disables (default: generation_config.json's top_p, else 1)")
    .option("--top-k <k>", "sample among the k most likely tokens, 0 disables (default: generation_config.json's top_k, else 50)")
    .option("--min-p <p>", "drop tokens below p x the top probability, in [0, 1] (default: generation_config.json's min_p, else off)")
    .option("--repetition-penalty <r>", "penalise tokens already in the conversation, > 0, 1 disables; applies to greedy too (default: generation_config.json's, else 1)")
    .option("--seed <s>", "makes sampling reproducible: answer n of the session uses seed s + n (default: a fresh seed per answer)")
    .option("--threads <n>", "native threads (0: all cores)", "0")
    .addHelpText("after", CHAT_HELP)
    .action(async (o: ChatOptions) => {
      const isTTY = !!process.stdin.isTTY && !!process.stdout.isTTY;
      await runChat(o, { input: process.stdin, output: process.stdout, isTTY, processSignals: true });
    });
}
