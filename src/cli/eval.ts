// `preftune eval --task pairwise|mt-bench|alpaca-eval --model DIR ...`: option parsing, checks and printing only.
// The evaluations are src/eval/pairwise.ts, mtbench.ts (with the judge client judge.ts) and alpaca.ts.
// Errors are thrown with their message (main.ts prints them and sets the exit code).
import { join } from "node:path";
import type { Command } from "commander";
import type { Method } from "../data/tokenize.ts";
import { ALPACA_OUTPUTS_FILE, runAlpacaEval } from "../eval/alpaca.ts";
import { defaultModelId, formatScores, runMtBench } from "../eval/mtbench.ts";
import { pairwiseEval } from "../eval/pairwise.ts";

export const EVAL_TASKS = ["pairwise", "mt-bench", "alpaca-eval"] as const;
type Task = (typeof EVAL_TASKS)[number];

const EVAL_HELP = `
Tasks:
  pairwise     Preference accuracy on held-out chosen/rejected pairs (--dataset). With a reference model
               (--ref-model DIR, or for --adapter the base model with the adapter disabled) it reports TRL's
               DPO eval metrics: eval_rewards/chosen, eval_rewards/rejected, eval_rewards/accuracies,
               eval_rewards/margins (rewards = beta * (policy - reference) completion log-probs) and
               eval_logps/chosen, eval_logps/rejected. Without one, pairs are ranked by mean per-token
               log-prob (the note in the output says so). Writes OUTPUT/pairwise.jsonl (one line per pair)
               and OUTPUT/pairwise_metrics.json.
  mt-bench     FastChat's MT-Bench: two-turn answers to the 80 questions in data/mt-bench, decoded with the
               model's own chat template (not FastChat's per-model templates) at FastChat's per-category
               temperatures (0 = greedy), appended to OUTPUT/model_answer/MODEL_ID.jsonl in FastChat's format.
               With --judge-url and --judge-model, each answer turn is rated 1-10 by an OpenAI-compatible judge
               with FastChat's single-answer prompts (reference answers for math, reasoning and coding),
               appended to OUTPUT/model_judgment/JUDGE_single.jsonl; scores as FastChat's show_result
               (turn 1, turn 2, and Average over both turns pooled; unparsed ratings dropped) go to
               OUTPUT/mt_bench_scores_MODEL_ID.json. A judge is not required: without one only answers are made.
  alpaca-eval  AlpacaEval 2.0 outputs: OUTPUT/model_outputs.json, a JSON list of {instruction, output,
               generator, dataset} in the input's order, for \`alpaca_eval --model_outputs\` (which needs its
               own API judge). Defaults follow the ORPO authors' AlpacaEval settings: sampling, temperature 0.7,
               up to 2048 new tokens.

A judge reply without a [[rating]] is asked for again (3 requests in all); a turn that still has none, or whose
requests kept failing, is recorded with score -1 and an "error" field (show_result drops it; re-judge it later
with --retry-failed-judgments). HTTP 401, 403 and 404 from the judge stop the run: they mean a wrong key, model
or URL.

Interrupted runs resume: mt-bench skips questions already answered and turns already judged; alpaca-eval keeps
finished rows in OUTPUT/model_outputs.partial.jsonl. Run one eval per OUTPUT folder at a time.
The judge's API key is read from the environment variable named by --judge-api-key-env (sent as a Bearer
token when set); it is never written to any file.

Examples:
  preftune eval --task pairwise --model runs/dpo --ref-model ./SmolLM2-135M-Instruct --dataset data/hh-rlhf-harmless-sample
  preftune eval --task mt-bench --model runs/orpo --questions 8
  OPENAI_API_KEY=... preftune eval --task mt-bench --model runs/orpo --judge-url https://api.openai.com/v1 --judge-model gpt-4
  preftune eval --task alpaca-eval --model runs/orpo --instructions alpaca_eval.jsonl --output eval/orpo
`;

/** Which task each task-specific option belongs to; giving one to another task is an error. */
const OPTION_TASKS: Record<string, Task[]> = {
  dataset: ["pairwise"], split: ["pairwise"], method: ["pairwise"], maxLength: ["pairwise"], beta: ["pairwise"], refModel: ["pairwise"], reference: ["pairwise"],
  maxNewTokens: ["mt-bench", "alpaca-eval"], seed: ["mt-bench", "alpaca-eval"],
  questions: ["mt-bench"], questionIds: ["mt-bench"], questionFile: ["mt-bench"], judgeUrl: ["mt-bench"], judgeModel: ["mt-bench"],
  judgeApiKeyEnv: ["mt-bench"], judgePrompts: ["mt-bench"], refAnswers: ["mt-bench"], judgeParallel: ["mt-bench"],
  judgeTimeout: ["mt-bench"], judgeRetries: ["mt-bench"], judgeBackoff: ["mt-bench"], retryFailedJudgments: ["mt-bench"],
  instructions: ["alpaca-eval"], limit: ["alpaca-eval"], temperature: ["alpaca-eval"], promptTemplate: ["alpaca-eval"],
};

type Opts = Record<string, string | boolean | undefined>;

function flag(name: string): string {
  return "--" + name.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
}

function int(name: string, v: string | boolean | undefined, min = 0): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== "string" || !Number.isInteger(n) || n < min) throw new Error(`${flag(name)} must be a whole number ≥ ${min}, got ${JSON.stringify(v)}`);
  return n;
}

function num(name: string, v: string | boolean | undefined, min = 0): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== "string" || v.trim() === "" || !Number.isFinite(n) || n < min) throw new Error(`${flag(name)} must be a number ≥ ${min}, got ${JSON.stringify(v)}`);
  return n;
}

/** "81,82,90-95" → [81, 82, 90, 91, 92, 93, 94, 95]. */
export function parseIdList(v: string): number[] {
  const out: number[] = [];
  for (const part of v.split(",").map((s) => s.trim()).filter(Boolean)) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m || (m[2] !== undefined && Number(m[2]) < Number(m[1]))) throw new Error(`--question-ids: ${JSON.stringify(part)} is not an id or a range like 81-90`);
    for (let i = Number(m[1]); i <= Number(m[2] ?? m[1]); i++) out.push(i);
  }
  if (out.length === 0) throw new Error("--question-ids: give at least one id, e.g. 81,82 or 81-90");
  return out;
}

function checkApplicable(task: Task, cmd: Command): void {
  for (const [name, tasks] of Object.entries(OPTION_TASKS)) {
    if (cmd.getOptionValueSource(name) === "cli" && !tasks.includes(task)) {
      throw new Error(`${name === "reference" ? "--no-reference" : flag(name)} applies to --task ${tasks.join(" or ")}, not ${task}`);
    }
  }
}

const log = (line: string) => process.stderr.write(line + "\n");

async function runPairwise(o: Opts, output: string): Promise<void> {
  if (typeof o.dataset !== "string") throw new Error("--task pairwise needs --dataset (a preference file or folder; the test split is used when there is one)");
  const r = await pairwiseEval({
    model: o.model as string, adapter: (o.adapter as string) ?? null, refModel: (o.refModel as string) ?? null, noReference: o.reference === false,
    dataset: o.dataset, output, split: o.split as string | undefined, method: (o.method as Method) ?? "dpo", beta: num("beta", o.beta),
    maxLength: o.maxLength === "null" ? null : int("maxLength", o.maxLength), batchSize: int("batchSize", o.batchSize ?? "8", 1), threads: int("threads", o.threads),
  });
  console.log(`${r.pairs} pairs, ranking: ${r.ranking}\n${r.note}`);
  for (const [k, v] of Object.entries(r.metrics)) console.log(`  ${k.padEnd(26)} ${v.toFixed(6)}`);
  console.log(`per pair -> ${r.output}\nmetrics  -> ${r.metricsFile}`);
}

async function runMt(o: Opts, output: string, modelId: string): Promise<void> {
  if ((o.judgeUrl === undefined) !== (o.judgeModel === undefined)) throw new Error("judging needs both --judge-url and --judge-model (or neither, to only generate answers)");
  if (o.questions !== undefined && o.questionIds !== undefined) throw new Error("give --questions or --question-ids, not both");
  const retries = int("judgeRetries", o.judgeRetries ?? "5");
  const r = await runMtBench({
    model: o.model as string, adapter: (o.adapter as string) ?? null, modelId, output, questionFile: o.questionFile as string | undefined,
    questions: int("questions", o.questions, 1) ?? null, questionIds: typeof o.questionIds === "string" ? parseIdList(o.questionIds) : null,
    maxNewTokens: int("maxNewTokens", o.maxNewTokens ?? "1024", 1), batchSize: int("batchSize", o.batchSize ?? "4", 1),
    seed: o.seed === "null" ? null : int("seed", o.seed ?? "0"), threads: int("threads", o.threads),
    judge: typeof o.judgeUrl === "string" ? {
      url: o.judgeUrl, model: o.judgeModel as string, apiKeyEnv: (o.judgeApiKeyEnv as string) ?? "OPENAI_API_KEY",
      timeoutMs: 1000 * num("judgeTimeout", o.judgeTimeout ?? "120")!, attempts: retries! + 1, backoffMs: 1000 * num("judgeBackoff", o.judgeBackoff ?? "1")!,
    } : null,
    judgePrompts: o.judgePrompts as string | undefined, refAnswers: o.refAnswers as string | undefined,
    judgeParallel: int("judgeParallel", o.judgeParallel ?? "1", 1), retryFailedJudgments: o.retryFailedJudgments === true, log,
  });
  console.log(`answers: ${r.answersWritten} written, ${r.answersFound} already there -> ${r.answerFile}`);
  if (r.judgmentFile) console.log(`judgments: ${r.judged} made (${r.judgeFailures} with score -1) -> ${r.judgmentFile}`);
  if (r.scores) console.log(formatScores(r.scores) + `\nscores -> ${r.scoresFile}`);
}

async function runAlpaca(o: Opts, output: string, modelId: string): Promise<void> {
  if (o.instructions === undefined) log("no --instructions: using the 20-row sample in data/alpaca-eval-sample (AlpacaEval has 805; pass the full file for a real run)");
  const r = await runAlpacaEval({
    model: o.model as string, adapter: (o.adapter as string) ?? null, generator: modelId, instructions: o.instructions as string | undefined, output,
    limit: int("limit", o.limit, 1) ?? null, temperature: num("temperature", o.temperature ?? "0.7"), maxNewTokens: int("maxNewTokens", o.maxNewTokens ?? "2048", 1),
    seed: o.seed === "null" ? null : int("seed", o.seed ?? "0"), batchSize: int("batchSize", o.batchSize ?? "4", 1),
    promptTemplate: (o.promptTemplate as string) ?? null, threads: int("threads", o.threads), log,
  });
  console.log(`${r.rows} outputs (${r.generated} generated, ${r.reused} from an earlier run) -> ${r.outputFile}`);
}

export function registerEvalCommand(program: Command): void {
  program
    .command("eval")
    .description("evaluate a model: preference accuracy on held-out pairs, MT-Bench answers (and judging), AlpacaEval outputs")
    .requiredOption("--task <task>", `what to run: ${EVAL_TASKS.join(", ")}`)
    .requiredOption("--model <dir>", "Hugging Face model folder (the base model when --adapter is given)")
    .option("--adapter <dir>", "PEFT LoRA adapter folder to apply on --model")
    .option("--output <dir>", "folder for the results (default: eval/MODEL_ID)")
    .option("--model-id <name>", "name of the model in answer files and outputs (default: the adapter's or model's folder name)")
    .option("--threads <n>", "native threads (default 0 = all cores)")
    .option("--batch-size <n>", "pairwise: pairs per forward pass (default 8); mt-bench, alpaca-eval: prompts decoded together (default 4)")
    // pairwise
    .option("--dataset <path>", "pairwise: preference data, a file or a folder (required for pairwise)")
    .option("--split <name>", "pairwise: split of a dataset folder (default: test if present, else train)")
    .option("--method <method>", "pairwise: tokenization rules of this method: dpo, orpo, ipo, cpo or simpo (default dpo; ipo also compares per-token-mean log-probs, as TRL's IPO does)")
    .option("--max-length <n>", "pairwise: truncate prompt+completion to n tokens, or null (default: 1024 or the model's max_position_embeddings if smaller)")
    .option("--beta <x>", "pairwise: beta of the rewards beta * (policy - reference) (default 0.1, TRL's DPO default)")
    .option("--ref-model <dir>", "pairwise: reference model folder (default: for --adapter, the base with the adapter disabled; else none)")
    .option("--no-reference", "pairwise: ignore any reference and rank by mean per-token log-prob")
    // generation
    .option("--max-new-tokens <n>", "mt-bench, alpaca-eval: new tokens per answer, also capped by max_position_embeddings (default: mt-bench 1024, FastChat's; alpaca-eval 2048)")
    .option("--seed <n>", "mt-bench, alpaca-eval: base of the per-question / per-row sampling seeds, or null for fresh randomness (default 0)")
    // mt-bench
    .option("--questions <n>", "mt-bench: only the first n questions of the question file (default: all 80)")
    .option("--question-ids <list>", "mt-bench: only these question_ids, e.g. 81,82,101-105")
    .option("--question-file <file>", "mt-bench: questions in FastChat's question.jsonl format (default data/mt-bench/question.jsonl)")
    .option("--judge-url <url>", "mt-bench: OpenAI-compatible API of the judge, with or without /v1 (e.g. https://api.openai.com/v1); no judging without it")
    .option("--judge-model <name>", "mt-bench: judge model name sent to the API (FastChat uses gpt-4)")
    .option("--judge-api-key-env <var>", "mt-bench: environment variable holding the judge's API key (default OPENAI_API_KEY; no key is sent when it is unset)")
    .option("--judge-prompts <file>", "mt-bench: FastChat judge prompts (default data/mt-bench/judge_prompts.jsonl)")
    .option("--ref-answers <file>", "mt-bench: reference answers for math, reasoning and coding (default data/mt-bench/reference_answer/gpt-4.jsonl, whatever the judge)")
    .option("--judge-parallel <n>", "mt-bench: judge requests in flight at once (default 1)")
    .option("--judge-timeout <s>", "mt-bench: seconds one judge request may take before it is retried (default 120)")
    .option("--judge-retries <n>", "mt-bench: retries of a judge request after timeouts, network errors, HTTP 408/409/429/5xx (default 5; other 4xx are not retried)")
    .option("--judge-backoff <s>", "mt-bench: first wait before a retry, doubled each time up to 60 s, or the server's retry-after (default 1)")
    .option("--retry-failed-judgments", "mt-bench: judge again the turns recorded with score -1 and an error by an earlier run")
    // alpaca-eval
    .option("--instructions <file>", "alpaca-eval: instructions, JSONL / JSON list / Parquet rows with instruction (and dataset) (default: the 20-row sample in data/alpaca-eval-sample)")
    .option("--limit <n>", "alpaca-eval: only the first n instructions")
    .option("--temperature <x>", "alpaca-eval: sampling temperature; below 0.0001 decodes greedily (default 0.7)")
    .option("--prompt-template <text>", "alpaca-eval: plain-text prompt with {instruction}, tokenized with BOS, instead of the chat template (e.g. the ORPO authors' \"<|user|>\\n{instruction}</s>\\n<|assistant|>\\n\")")
    .addHelpText("after", EVAL_HELP)
    .action(async (opts: Opts, cmd: Command) => {
      const task = opts.task as Task;
      if (!EVAL_TASKS.includes(task)) throw new Error(`--task ${JSON.stringify(opts.task)}: use one of ${EVAL_TASKS.join(", ")}`);
      checkApplicable(task, cmd);
      const modelId = (opts.modelId as string) ?? defaultModelId(opts.model as string, opts.adapter as string | undefined);
      const output = (opts.output as string) ?? join("eval", modelId);
      if (task === "pairwise") await runPairwise(opts, output);
      else if (task === "mt-bench") await runMt(opts, output, modelId);
      else await runAlpaca(opts, output, modelId);
      if (task === "alpaca-eval") log(`score it with: alpaca_eval --model_outputs ${join(output, ALPACA_OUTPUTS_FILE)}`);
    });
}
