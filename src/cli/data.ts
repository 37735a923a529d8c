// `preftune data inspect` and `preftune data tokenize`: look at a dataset the way training will see it, and
// write its token ids. Argument handling and printing only; the pipeline is src/data/.
import { createWriteStream } from "node:fs";
import { Command, InvalidArgumentError, Option } from "commander";
import pc from "picocolors";
import {
  loadTokenizer, METHODS, prepareDataset, truncatePair, usesOrpoRules, truncateUnpaired, truncationOptions,
  type DataOptions, type Method, type PrepStats, type TokenizedPair, type TokenizedUnpaired, type Tokenizer,
} from "../data/index.ts";

interface CommonFlags {
  model: string;
  dataset: string;
  split?: string;
  datasetConfig?: string;
  method: Method;
  maxLength: number | null;
  maxPromptLength?: number | null;
  maxCompletionLength?: number | null;
  truncationMode: "keep_start" | "keep_end";
  chatTemplate?: string;
  skipBadRows?: boolean;
  cache: boolean;
  cacheDir?: string;
  promptColumn?: string;
  chosenColumn?: string;
  rejectedColumn?: string;
  completionColumn?: string;
  labelColumn?: string;
  datasetTextField?: string;
  assistantOnlyLoss?: boolean;
  completionOnlyLoss?: boolean;
  progress: boolean;
  maxRowBytes?: number;
}

function positiveInt(name: string) {
  return (v: string): number | null => {
    if (v === "none" || v === "null") return null;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer (or "none"), got "${v}"`);
    return n;
  };
}

function addCommonOptions(cmd: Command): Command {
  return cmd
    .requiredOption("--model <dir>", "model folder with tokenizer.json and tokenizer_config.json")
    .requiredOption("--dataset <path>", "a .jsonl/.json/.parquet file, a folder with train/test files, or a Hugging Face dataset id in the local cache")
    .option("--split <name>", "split to read from a folder or cached dataset (default: train)")
    .option("--dataset-config <name>", "configuration (subset) of a cached dataset or a folder of configs")
    .addOption(new Option("--method <method>", "decides the BOS/EOS rules and the row kind").choices([...METHODS]).default("dpo"))
    .option("--max-length <n>", "max prompt+completion tokens, or none", positiveInt("--max-length"), 1024)
    .option("--max-prompt-length <n>", "prompt keeps its last n tokens", positiveInt("--max-prompt-length"))
    .option("--max-completion-length <n>", "each completion keeps its first n tokens", positiveInt("--max-completion-length"))
    .addOption(new Option("--truncation-mode <mode>", "what --max-length keeps").choices(["keep_start", "keep_end"]).default("keep_start"))
    .option("--chat-template <text-or-name>", "a chat template, or the name of one of the model's named templates")
    .option("--skip-bad-rows", "skip and count bad rows instead of stopping at the first")
    .option("--no-cache", "tokenize again instead of reading the tokenized-dataset cache")
    .option("--cache-dir <dir>", "cache folder (default .cache/preftune)")
    .option("--prompt-column <name>").option("--chosen-column <name>").option("--rejected-column <name>")
    .option("--completion-column <name>").option("--label-column <name>")
    .option("--dataset-text-field <name>", "sft: the column of plain text rows (default text)")
    .option("--assistant-only-loss", "sft: on conversational rows, train only the assistant turns (writes completion_mask)")
    .option("--completion-only-loss <bool>", "sft: on prompt/completion rows, train only the completion: true (default) or false", (v: string) => {
      if (v === "true" || v === "false") return v === "true";
      throw new InvalidArgumentError(`--completion-only-loss must be true or false, got "${v}"`);
    })
    .option("--max-row-bytes <n>", "longest JSONL line read, in bytes; longer rows are bad rows (default 16 MiB, or PREFTUNE_MAX_ROW_BYTES)", (v: string) => {
      const n = Number(v);
      if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`--max-row-bytes must be a positive whole number of bytes, got "${v}"`);
      return n;
    })
    .option("--no-progress", "no progress bar");
}

function dataOptions(f: CommonFlags, overrides: Partial<DataOptions> = {}): DataOptions {
  return {
    method: f.method, split: f.split, max_length: f.maxLength, max_prompt_length: f.maxPromptLength ?? null,
    max_completion_length: f.maxCompletionLength ?? null, truncation_mode: f.truncationMode, skip_bad_rows: !!f.skipBadRows,
    cacheDir: f.cache ? (f.cacheDir ?? undefined) : null, progress: f.progress, max_row_bytes: f.maxRowBytes ?? null,
    prompt_column: f.promptColumn, chosen_column: f.chosenColumn, rejected_column: f.rejectedColumn,
    completion_column: f.completionColumn, label_column: f.labelColumn, dataset_config: f.datasetConfig ?? null,
    dataset_text_field: f.datasetTextField, assistant_only_loss: !!f.assistantOnlyLoss, completion_only_loss: f.completionOnlyLoss ?? null, ...overrides,
  };
}

function dropSummary(s: PrepStats): string {
  const parts = [
    [s.badRowsSkipped, "bad rows skipped"], [s.droppedPromptTooLong, "prompt ≥ max_length"],
    [s.droppedCompletionTooLong, "completion ≥ max_length (keep_end)"], [s.droppedEmptyCompletion, "empty completion"],
    [s.droppedUndesirable, "label=false (sft)"], [s.droppedNoTargets, "no token to train on (sft)"],
  ].filter(([n]) => (n as number) > 0).map(([n, what]) => `${n} ${what}`);
  return parts.length ? parts.join(", ") : "none";
}

/** Fixed-width ASCII histogram of sequence lengths, with the max_length line marked. */
export function lengthHistogram(lengths: number[], maxLength: number | null, bins = 12, width = 40): string[] {
  if (lengths.length === 0) return ["(no rows)"];
  const hi = Math.max(...lengths), lo = Math.min(...lengths);
  const step = Math.max(1, Math.ceil((hi - lo + 1) / bins));
  const counts = new Array(Math.ceil((hi - lo + 1) / step)).fill(0);
  for (const l of lengths) counts[Math.floor((l - lo) / step)]++;
  const top = Math.max(...counts);
  const pad = String(hi).length;
  return counts.map((n, i) => {
    const a = lo + i * step, b = a + step - 1;
    const over = maxLength != null && b >= maxLength ? " >max_length" : "";
    return `${String(a).padStart(pad)}–${String(b).padEnd(pad)} ${"█".repeat(Math.round((n / top) * width)).padEnd(width)} ${n}${over}`;
  });
}

async function inspect(f: CommonFlags & { rows: number; color: string }, out: (s: string) => void) {
  const c = pc.createColors(f.color === "always" ? true : f.color === "never" ? false : pc.isColorSupported);
  const tok = await loadTokenizer(f.model, { chat_template: f.chatTemplate });
  // Tokenize once without max_length (cached), then apply the requested truncation here, so the report can
  // say what truncation does; prepareDataset applies the same functions after tokenizing.
  const full = await prepareDataset(f.dataset, tok, dataOptions(f, { max_length: null, max_prompt_length: null, max_completion_length: null }));
  const trunc = truncationOptions({ max_length: f.maxLength, max_prompt_length: f.maxPromptLength ?? null, max_completion_length: f.maxCompletionLength ?? null, truncation_mode: f.truncationMode });
  const s = full.stats;
  const drops = { prompt_too_long: 0, completion_too_long: 0, empty_completion: 0 };
  let truncated = 0;
  const kept: (TokenizedPair | TokenizedUnpaired)[] = [];
  for (const r of full.rows) {
    const t = full.kind === "paired" ? truncatePair(r as TokenizedPair, trunc) : truncateUnpaired(r as TokenizedUnpaired, trunc);
    if (t.drop) drops[t.drop]++;
    else { kept.push(t.row); if (t.truncated) truncated++; }
  }

  out(c.bold(`dataset ${s.files.join(", ")}`));
  out(`  ${s.rowsRead} rows read: ${s.sourceKind}, ${s.conversational ? "conversational" : "standard (plain text)"}, ${s.implicitPrompt ? "implicit prompt (extracted)" : "explicit prompt"}${s.unpairedFromPairs ? ", unpaired for kto" : ""}`);
  out(`  tokenizer ${tok.dir}: bos ${tok.bosToken ?? "none"} (${tok.bosTokenId}), eos ${tok.eosToken ?? "none"} (${tok.eosTokenId}), pad id ${tok.padTokenId}; template ${tok.chatTemplateSource}`);
  out(`  method ${f.method}: ${usesOrpoRules(f.method) ? "ORPO/CPO BOS/EOS rules" : "DPO/KTO rules (joint tokenization)"}${s.fromCache ? "; tokenized rows from cache" : ""}`);
  if (s.boundaryMerges) out(`  ${s.boundaryMerges} rows had a token merge across the prompt/completion boundary`);
  if (s.templatePromptResets) out(`  ${s.templatePromptResets} rows: generation prompt cut back to the common prefix`);
  for (const m of s.badRowMessages.slice(0, 3)) out(c.yellow(`  skipped: ${m}`));

  const shown = kept.slice(0, f.rows);
  shown.forEach((r, i) => {
    out("");
    out(c.bold(`── row ${i + 1} ──`));
    const prompt = tok.decode(r.prompt_ids);
    if ("chosen_ids" in r) {
      out(`${c.dim(`[prompt ${r.prompt_ids.length} tokens]`)}\n${prompt}${c.green(tok.decode(r.chosen_ids))}`);
      out(c.dim(`[chosen ${r.chosen_ids.length} tokens, green] [rejected ${r.rejected_ids.length} tokens, red:]`));
      out(`${c.dim("…prompt…")}${c.red(tok.decode(r.rejected_ids))}`);
    } else {
      const paint = r.label ? c.green : c.red;
      out(`${c.dim(`[prompt ${r.prompt_ids.length} tokens]`)}\n${prompt}${paint(tok.decode(r.completion_ids))}`);
      out(c.dim(`[completion ${r.completion_ids.length} tokens, label ${r.label}]`));
    }
  });

  const seqLen = (r: TokenizedPair | TokenizedUnpaired) => r.prompt_ids.length + ("chosen_ids" in r ? Math.max(r.chosen_ids.length, r.rejected_ids.length) : r.completion_ids.length);
  const lengths = full.rows.map(seqLen);
  const mean = (a: number[]) => (a.length ? a.reduce((x, y) => x + y, 0) / a.length : 0);
  out("");
  out(c.bold("lengths (prompt + longest completion, before truncation)"));
  out(`  mean ${mean(lengths).toFixed(1)}, max ${Math.max(0, ...lengths)}, prompt mean ${mean(full.rows.map((r) => r.prompt_ids.length)).toFixed(1)}`);
  for (const line of lengthHistogram(lengths, f.maxLength)) out(`  ${line}`);
  out("");
  out(c.bold(`truncation (max_length ${f.maxLength ?? "none"}, ${f.truncationMode}${f.maxPromptLength ? `, max_prompt_length ${f.maxPromptLength}` : ""}${f.maxCompletionLength ? `, max_completion_length ${f.maxCompletionLength}` : ""})`));
  out(`  ${kept.length} rows kept, ${truncated} truncated; dropped: ${drops.prompt_too_long} prompt ≥ max_length, ${drops.completion_too_long} completion ≥ max_length, ${drops.empty_completion} empty completion`);
  out(`  before tokenizing: ${dropSummary(s)}`);
}

async function tokenize(f: CommonFlags & { output: string }, out: (s: string) => void) {
  const tok: Tokenizer = await loadTokenizer(f.model, { chat_template: f.chatTemplate });
  const r = await prepareDataset(f.dataset, tok, dataOptions(f));
  const stream = createWriteStream(f.output);
  const done = new Promise<void>((res, rej) => { stream.on("finish", res); stream.on("error", rej); });
  for (const row of r.rows) {
    const u = row as TokenizedUnpaired;
    // completion_mask (sft): which completion tokens are trained on, when not all of them are
    const line = r.kind === "paired"
      ? { prompt_ids: row.prompt_ids, chosen_ids: (row as TokenizedPair).chosen_ids, rejected_ids: (row as TokenizedPair).rejected_ids }
      : { prompt_ids: u.prompt_ids, completion_ids: u.completion_ids, label: u.label, ...(u.completion_mask ? { completion_mask: u.completion_mask } : {}) };
    if (!stream.write(JSON.stringify(line) + "\n")) await new Promise<void>((res) => stream.once("drain", () => res()));
  }
  stream.end();
  await done;
  const s = r.stats;
  out(`wrote ${s.rows} ${r.kind} rows to ${f.output} (${s.promptTokens} prompt + ${s.completionTokens} completion tokens; ${s.truncatedRows} truncated; dropped: ${dropSummary(s)})${s.fromCache ? " from cache" : ""}`);
}

/** Adds `data inspect` and `data tokenize` to the program. `out` receives each output line (stdout by default). */
export function registerDataCommands(program: Command, out: (line: string) => void = (l) => process.stdout.write(l + "\n")): void {
  const data = program.command("data").description("look at and tokenize preference datasets");
  addCommonOptions(data.command("inspect").description("show rows as training sees them, token counts, a length histogram and what truncation drops"))
    .option("--rows <n>", "how many rows to show", positiveInt("--rows"), 3)
    .addOption(new Option("--color <when>", "highlight completions").choices(["auto", "always", "never"]).default("auto"))
    .action(async (flags) => inspect(flags, out));
  addCommonOptions(data.command("tokenize").description("write prompt_ids/chosen_ids/rejected_ids (or completion_ids/label, and completion_mask for sft rows not trained whole) per row, exactly as training uses them"))
    .requiredOption("--output <file.jsonl>", "where to write the rows")
    .action(async (flags) => tokenize(flags, out));
}
