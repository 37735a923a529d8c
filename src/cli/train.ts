// `preftune train CONFIG [--key value ...]` and `preftune score`: argument handling and printing only.
// Training is src/train/loop.ts; the config schema (and the --help text built from it) is src/train/config.ts.
// score is here because it is a thin pass of the model over pairs: tokenize, one forward per batch, sum.
import { existsSync, statSync } from "node:fs";
import type { Command } from "commander";
import { NativeModel, setNumThreads } from "../core/native.ts";
import { collatePairs } from "../data/collate.ts";
import { prepareDataset } from "../data/prepare.ts";
import { resolveDataFiles } from "../data/readers.ts";
import { loadTokenizer } from "../data/tokenizer.ts";
import type { Method } from "../data/tokenize.ts";
import { loadWeightsInto, readModelDir } from "../models/checkpoint.ts";
import { sequenceStats } from "../losses/aggregate.ts";
import { configHelp, loadConfig, METHODS } from "../train/config.ts";
import { train } from "../train/loop.ts";
import { writeFileAtomic } from "../util/durable.ts";

const TRAIN_HELP = `
CONFIG is a YAML or JSON file of TRL-style keys; every key can also be given (or overridden) on the command
line as --key value (dashes or underscores; lists as a,b or JSON; null as null). Example:

  preftune train presets/smollm2-135m-orpo.yaml --model_name_or_path ./SmolLM2-135M-Instruct --output_dir runs/orpo --max_steps 100

Outputs in output_dir: metrics.jsonl (one JSON object per log), checkpoint-N/ (resume with
--resume_from_checkpoint true), and the final model (config.json, model.safetensors, tokenizer, README.md).
Ctrl-C saves a checkpoint and exits with code 130. Keys:
${configHelp()}
`;

export interface ScoreOptions {
  model: string;
  dataset: string;
  output: string;
  split?: string;
  method?: Method;
  maxLength?: number | null;
  batchSize?: number;
  threads?: number;
  quiet?: boolean;
}

export interface ScoreSummary { pairs: number; accuracy: number; meanMargin: number; output: string }

/**
 * Summed completion log-probs of chosen and rejected for every pair of a dataset, one JSON line per pair
 * (chosen_logps, rejected_logps, chosen_tokens, rejected_tokens), and the preference accuracy: the fraction
 * of pairs whose chosen completion gets the higher summed log-prob.
 */
export async function score(o: ScoreOptions): Promise<ScoreSummary> {
  if (o.threads && o.threads > 0) setNumThreads(o.threads);
  const method = o.method ?? "dpo";
  if (method === "kto" || method === "sft") throw new Error(`score needs pairs; --method ${method} tokenizes unpaired rows. Use dpo (default), orpo, ipo, cpo or simpo`);
  let split = o.split;
  if (!split && statSync(o.dataset).isDirectory()) split = (await resolveDataFiles(o.dataset, "test").then(() => true, () => false)) ? "test" : "train";
  const { config } = readModelDir(o.model);
  const maxPos = config.maxPositionEmbeddings;
  if (o.maxLength != null && o.maxLength > maxPos)
    throw new Error(`--max-length ${o.maxLength} is more than ${o.model}'s max_position_embeddings (${maxPos}); use at most ${maxPos}`);
  const tok = await loadTokenizer(o.model);
  const maxLength = o.maxLength === undefined ? Math.min(1024, maxPos) : o.maxLength;
  const data = await prepareDataset(o.dataset, tok, { method, max_length: maxLength, split, cacheDir: null, progress: !o.quiet });
  if (data.kind !== "paired") throw new Error(`${o.dataset}: score needs chosen/rejected pairs`);
  const model = new NativeModel(config);
  const lines: string[] = [];
  let wins = 0, margin = 0;
  try {
    loadWeightsInto(o.model, model.table, model.params);
    const bs = o.batchSize ?? 8;
    for (let s = 0; s < data.rows.length; s += bs) {
      const rows = data.rows.slice(s, s + bs);
      const pb = collatePairs(rows, { padTokenId: tok.padTokenId });
      const { B: N, T } = pb.batch;
      const st = sequenceStats(model.forward(pb.batch, { train: false }).logps, pb.completionMask, N, T);
      const B = N / 2;
      for (let i = 0; i < B; i++) {
        const c = st.sum[i], r = st.sum[B + i];
        if (c > r) wins++;
        margin += c - r;
        lines.push(JSON.stringify({ index: s + i, chosen_logps: c, rejected_logps: r, chosen_tokens: st.count[i], rejected_tokens: st.count[B + i] }) + "\n");
      }
    }
  } finally {
    model.free();
  }
  writeFileAtomic(o.output, lines.join(""));  // all or nothing: no half-written score file
  const n = data.rows.length;
  return { pairs: n, accuracy: wins / n, meanMargin: margin / n, output: o.output };
}

export function registerTrainCommands(program: import("commander").Command): void {
  program
    .command("train")
    .description("train a model with ORPO, DPO, IPO, KTO, SimPO, CPO or SFT from a TRL-style config")
    .argument("[config]", "YAML or JSON config file (optional when every required key is given as --key value)")
    .allowUnknownOption(true)
    .allowExcessArguments(true)
    .addHelpText("after", TRAIN_HELP)
    .action(async (_config: string | undefined, _opts: unknown, cmd: Command) => {
      const args = [...cmd.args];
      const file = args.length > 0 && !args[0].startsWith("--") ? args.shift()! : null;
      if (file && !existsSync(file)) throw new Error(`${file}: no such config file`);
      const { config, notes } = loadConfig(file, args);
      const r = await train(config, { notes });
      if (r.exitCode !== 0) process.exitCode = r.exitCode;
    });

  program
    .command("score")
    .description("summed completion log-probs of chosen and rejected per pair, and the preference accuracy")
    .requiredOption("--model <dir>", "Hugging Face model folder")
    .requiredOption("--dataset <path>", "preference data: a file or a folder")
    .requiredOption("--output <file.jsonl>", "where to write one JSON line per pair")
    .option("--split <name>", "split of a dataset folder (default: test if present, else train)")
    .option("--method <method>", `tokenization rules of this method (${METHODS.filter((m) => m !== "kto" && m !== "sft").join(", ")})`, "dpo")
    .option("--max-length <n>", "truncate prompt+completion to n tokens (null: none)", "1024")
    .option("--batch-size <n>", "pairs per forward pass", "8")
    .option("--threads <n>", "native threads (0 = all cores)", "0")
    .action(async (opts: { model: string; dataset: string; output: string; split?: string; method: string; maxLength: string; batchSize: string; threads: string }) => {
      const int = (name: string, v: string) => {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a whole number, got ${JSON.stringify(v)}`);
        return n;
      };
      const r = await score({
        model: opts.model, dataset: opts.dataset, output: opts.output, split: opts.split, method: opts.method as Method,
        maxLength: opts.maxLength === "null" ? null : int("max-length", opts.maxLength), batchSize: Math.max(1, int("batch-size", opts.batchSize)), threads: int("threads", opts.threads),
      });
      console.log(`${r.pairs} pairs scored -> ${r.output}; preference accuracy ${(100 * r.accuracy).toFixed(2)}% (chosen logp > rejected logp), mean margin ${r.meanMargin.toFixed(4)}`);
    });
}
