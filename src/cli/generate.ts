// `preftune generate`: continue one prompt (streamed to the terminal) or a JSONL file of prompts (batched) with a
// model folder and an optional PEFT adapter; writes one JSON line per prompt. Argument handling and printing
// only: decoding is src/generate/engine.ts, the HF generation keys and their checks src/generate/config.ts.
import { statSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { DataError } from "../data/errors.ts";
import type { Message } from "../data/formats.ts";
import { Generator, loadGenerationModel } from "../generate/engine.ts";
import { GENERATION_OPTIONS, GENERATION_OPTION_KEYS } from "../generate/config.ts";
import type { GenerateResult } from "../generate/types.ts";
import { commitFile, readTextFile, removeFile } from "../util/durable.ts";
import { appendRecords } from "../util/records.ts";

const GENERATE_HELP = `
Prompts: --prompt TEXT (one prompt; the answer streams to the terminal as it decodes) or --prompts FILE.jsonl
(one JSON object per line with "prompt" (a string) or "messages" (a list of {role, content}); other fields are
copied to the output row). The model's chat template (tokenizer_config.json) turns a prompt into a user turn
and appends the assistant header; --no-chat-template tokenizes the text as it is, with the tokenizer's own
special tokens (BOS for Llama), as a base model expects. "messages" rows always use the template.

Output (--output FILE.jsonl, required with --prompts): per prompt {index, prompt or messages, completion,
completion_ids, finish_reason ("eos": an EOS id, "stop": a stop string, "length": max_new_tokens),
prompt_tokens, completion_tokens, tokens_per_second, time_to_first_token_ms}. Rows are written as each batch
finishes to FILE.partial, renamed to FILE at the end.

Generation follows Hugging Face generate(): defaults come from the model folder's generation_config.json,
then HF's own (greedy, 20 new tokens unless max_new_tokens or max_length says otherwise); every key below
overrides them under its HF name (--max-new-tokens 256 --do-sample true --temperature 0.7 ...). The EOS
ids are generation_config.json's plus the tokenizer's eos_token (a chat model's end of turn).

Examples:
  preftune generate --model runs/orpo --prompt "Write a haiku about autumn." --max-new-tokens 64
  preftune generate --model ./SmolLM2-135M --adapter runs/dpo-lora --prompts prompts.jsonl --output out.jsonl --do-sample true --temperature 0.7 --seed 1
`;

interface PromptRow { prompt?: unknown; messages?: unknown; [k: string]: unknown }

/** Reads a prompts file: every line a JSON object with a string "prompt" or a "messages" list. */
function readPrompts(file: string): PromptRow[] {
  const rows: PromptRow[] = [];
  readTextFile(file, "prompts file").split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    let row: unknown;
    try { row = JSON.parse(line); } catch (e) {
      throw new DataError(`not valid JSON (${(e as Error).message})`, { file, row: i + 1, fix: "Write one JSON object per line" });
    }
    const r = row as PromptRow;
    const ok = r && typeof r === "object" && !Array.isArray(r) &&
      (typeof r.prompt === "string" || (Array.isArray(r.messages) && r.messages.every((m) => m && typeof m.role === "string" && typeof m.content === "string")));
    if (!ok) throw new DataError(`needs "prompt" (a string) or "messages" (a list of {role, content})`, { file, row: i + 1, fix: `e.g. {"prompt": "Hello"}` });
    rows.push(r);
  });
  if (rows.length === 0) throw new DataError("holds no prompts", { file, fix: `Write one JSON object per line, e.g. {"prompt": "Hello"}` });
  return rows;
}

const isFolder = (p: string) => { try { return statSync(p).isDirectory(); } catch { return false; } };
const flagName = (key: string) => key.replace(/_/g, "-");
const camel = (key: string) => key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

export function registerGenerateCommand(program: Command): void {
  const cmd = program
    .command("generate")
    .description("generate completions with a model (and optional PEFT adapter): one streamed prompt or a JSONL file")
    .requiredOption("--model <dir>", "Hugging Face model folder (or a PEFT adapter folder whose base is local)")
    .option("--adapter <dir>", "PEFT LoRA adapter folder to apply")
    .option("--prompt <text>", "one prompt; its answer streams to the terminal")
    .option("--prompts <file>", "JSONL file of prompts (\"prompt\" or \"messages\" per line)")
    .option("--output <file>", "JSONL file for the results (required with --prompts)")
    .option("--no-chat-template", "tokenize prompts as plain text instead of a user turn of the chat template")
    .option("--system <text>", "a system message before each prompt (chat template only)")
    .option("--batch-size <n>", "prompts decoded together", "8")
    .option("--threads <n>", "compute threads (default: all cores)")
    .option("--load-in-4bit", "hold the model's layer projections in bitsandbytes' 4-bit format (QLoRA's base), quantized at load")
    .option("--bnb-4bit-quant-type <type>", "with --load-in-4bit: nf4 or fp4", "nf4")
    .option("--bnb-4bit-use-double-quant", "with --load-in-4bit: quantize the block scales too (double quantization)");
  for (const key of GENERATION_OPTION_KEYS) cmd.option(`--${flagName(key)} <value>`, `${GENERATION_OPTIONS[key].doc} (${GENERATION_OPTIONS[key].type})`);
  cmd.addHelpText("after", GENERATE_HELP).action(async (o: Record<string, string | boolean | undefined>) => {
    if (!o.prompt === !o.prompts) throw new Error("give exactly one of --prompt TEXT or --prompts FILE.jsonl");
    if (o.prompts && !o.output) throw new Error("--prompts needs --output FILE.jsonl for the results");
    if (o.output && isFolder(o.output as string)) throw new Error(`--output ${o.output} is a folder; give a file name for the JSONL results (e.g. ${join(o.output as string, "completions.jsonl")})`);
    const batchSize = Number(o.batchSize);
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`--batch-size must be a whole number of at least 1, got ${JSON.stringify(o.batchSize)}`);
    const overrides: Record<string, unknown> = {};
    for (const key of GENERATION_OPTION_KEYS) if (o[camel(key)] !== undefined) overrides[key] = o[camel(key)];
    const rows: PromptRow[] = o.prompt ? [{ prompt: o.prompt as string }] : readPrompts(o.prompts as string);
    const qt = o.bnb4bitQuantType as string;
    if (o.loadIn4bit && qt !== "nf4" && qt !== "fp4") throw new Error(`--bnb-4bit-quant-type must be nf4 or fp4, got ${JSON.stringify(qt)}`);
    const quantization = o.loadIn4bit ? { quantType: qt as "nf4" | "fp4", doubleQuant: !!o.bnb4bitUseDoubleQuant } : undefined;
    const loaded = await loadGenerationModel(o.model as string, { adapter: (o.adapter as string) ?? null, threads: o.threads ? Number(o.threads) : undefined, overrides, quantization });
    try {
      const gen = new Generator(loaded);
      const promptIds = (r: PromptRow): number[] => {
        const system: Message[] = o.system ? [{ role: "system", content: o.system as string }] : [];
        if (Array.isArray(r.messages)) return gen.chatPromptIds([...system, ...(r.messages as Message[])]);
        return o.chatTemplate === false ? gen.textPromptIds(r.prompt as string) : gen.chatPromptIds([...system, { role: "user", content: r.prompt as string }]);
      };
      const stream = rows.length === 1 && !!o.prompt;
      const partial = o.output ? `${o.output}.partial` : null;
      if (partial) removeFile(partial);
      let done = 0, tokens = 0;
      const t0 = performance.now();
      for (let s = 0; s < rows.length; s += batchSize) {
        const batch = rows.slice(s, s + batchSize);
        const results: GenerateResult[] = await gen.generate(batch.map((r) => ({
          promptIds: promptIds(r),
          config: loaded.generationDefaults,
          onText: stream ? (d: string) => process.stdout.write(d) : undefined,
        })));
        const records = batch.map((r, i) => {
          const x = results[i];
          tokens += x.completionTokens;
          return {
            index: s + i, ...r, completion: x.completion, completion_ids: x.completionIds, finish_reason: x.finishReason,
            prompt_tokens: x.promptTokens, completion_tokens: x.completionTokens,
            tokens_per_second: Number(x.tokensPerSecond.toFixed(2)), time_to_first_token_ms: Number(x.timeToFirstTokenMs.toFixed(1)),
          };
        });
        if (partial) appendRecords(partial, records);
        done += batch.length;
        if (stream) {
          const x = results[0];
          process.stdout.write("\n");
          process.stderr.write(`[${x.finishReason}] ${x.promptTokens} prompt + ${x.completionTokens} new tokens; first token ${x.timeToFirstTokenMs.toFixed(0)} ms, ${x.tokensPerSecond.toFixed(1)} tokens/s\n`);
        } else {
          process.stderr.write(`\r${done}/${rows.length} prompts, ${(tokens / ((performance.now() - t0) / 1000)).toFixed(1)} new tokens/s`);
        }
      }
      if (partial) {
        commitFile(partial, o.output as string);
        if (!stream) process.stderr.write("\n");
        process.stderr.write(`${rows.length} completion${rows.length > 1 ? "s" : ""} -> ${o.output}\n`);
      }
    } finally {
      loaded.dispose();
    }
  });
}
