// `preftune train CONFIG [--key value ...]` and `preftune score`: argument handling and printing only.
// Training is the library's train() (src/train/trainer.ts, exported by src/index.ts), which the library's trainer
// classes run too; the config schema (and the --help text built from it) is src/train/config.ts.
// score's logic lives in src/eval/pairwise.ts; this file only parses its options and prints the result.
import { existsSync } from "node:fs";
import type { Command } from "commander";
import type { Method } from "../data/tokenize.ts";
import { score } from "../eval/pairwise.ts";
import { configHelp, loadConfig } from "../train/config.ts";
import { methodsWhere } from "../train/methods.ts";
import { train } from "../train/trainer.ts";

const TRAIN_HELP = `
CONFIG is a YAML or JSON file of TRL-style keys (or give it as --config FILE, as trl dpo does); every key can
also be given (or overridden) on the command line, as HfArgumentParser reads it: --key value or --key=value
(dashes or underscores), a bare --flag for true and --no_flag for false (every true/false key, the ignored ones
included), several values after a list key (--lora_target_modules q_proj v_proj) or a,b or JSON, mappings as
JSON, null as null. Every problem of the file and the command line is reported at once. Example:

  preftune train presets/smollm2-135m-orpo.yaml --model_name_or_path ./SmolLM2-135M-Instruct --output_dir runs/orpo --max_steps 100

Data: dataset_name is a .jsonl/.json/.parquet file, a folder with splits, or a Hugging Face dataset id already
in the local cache (HF_HUB_CACHE, else HF_HOME/hub); nothing is downloaded. dataset_mixture (alignment-handbook),
datasets (TRL) and the older dataset_mixer mix several.

Outputs in output_dir: metrics.jsonl (one JSON object per log), checkpoint-N/ (resume with
--resume_from_checkpoint true), and the final model (config.json, model.safetensors, tokenizer, README.md).
Ctrl-C saves a checkpoint and exits with code 130 (under mpirun, which ends
the ranks on Ctrl-C, send SIGUSR2 to mpirun instead: exit code 140; README: several processes and machines). Every file is written under a temporary name and renamed into
place (a link already in output_dir is replaced, never written through), so a crash leaves the previous or the new
model and checkpoint, never half of one; the next run into output_dir finishes or removes what a crash left. A run
holds output_dir/.preftune.lock: a second run into the same output_dir is refused while the first is running, and
output_dir may not be the model folder or lie inside it. Keys:
${configHelp()}
`;

// score moved to src/eval/pairwise.ts (shared with `preftune eval --task pairwise`); re-exported for callers here.
export { score, type ScoreOptions, type ScoreSummary } from "../eval/pairwise.ts";

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
    .option("--method <method>", `tokenization rules of this method (${methodsWhere((s) => s.data === "paired").join(", ")})`, "dpo")
    .option("--max-length <n>", "truncate prompt+completion to n tokens (default: 1024 or the model's max_position_embeddings, whichever is smaller; null: none)")
    .option("--batch-size <n>", "pairs per forward pass", "8")
    .option("--threads <n>", "native threads (0 = all cores)", "0")
    .action(async (opts: { model: string; dataset: string; output: string; split?: string; method: string; maxLength?: string; batchSize: string; threads: string }) => {
      const int = (name: string, v: string) => {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a whole number, got ${JSON.stringify(v)}`);
        return n;
      };
      const r = await score({
        model: opts.model, dataset: opts.dataset, output: opts.output, split: opts.split, method: opts.method as Method,
        maxLength: opts.maxLength === undefined ? undefined : opts.maxLength === "null" ? null : int("max-length", opts.maxLength), batchSize: Math.max(1, int("batch-size", opts.batchSize)), threads: int("threads", opts.threads),
      });
      console.log(`${r.pairs} pairs scored -> ${r.output}; preference accuracy ${(100 * r.accuracy).toFixed(2)}% (chosen logp > rejected logp), mean margin ${r.meanMargin.toFixed(4)}`);
    });
}
