// Reading a run folder for the report: the log (metrics.jsonl, else trainer_state.json's log_history, as a
// transformers/TRL output_dir has), the run's config (training_args.json, in output_dir or its newest
// checkpoint-N/), trainer_state.json and the generate_during_eval completions (completions.jsonl); and the
// MT-Bench scores files of an eval folder (mt_bench_scores_MODEL.json). Errors name the file, the line and the fix.
// Not the writer of these files (src/train/metrics.ts, checkpoint.ts, samples.ts, src/eval/mtbench.ts) and not
// the report's layout.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import type { MtBenchScores, ScoreCell } from "../eval/mtbench.ts";

export const METRICS_FILE = "metrics.jsonl";
export const TRAINER_STATE_FILE = "trainer_state.json";
const CONFIG_FILES = ["training_args.json", "preftune_config.json"];

/** One log line: numeric fields only (null and Python's NaN/Infinity read as NaN; strings dropped). */
export type LogLine = Record<string, number>;

export interface RunLog {
  file: string;                 // where the lines came from
  lines: LogLine[];
}

export interface RunConfig {
  file: string;
  values: Record<string, unknown>;
}

/** Python's json.dumps writes bare NaN/Infinity; JSON.parse does not take them, so quote them first. */
function parseLenient(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    const fixed = text.replace(/([:,[]\s*)(-?Infinity|NaN)(?=\s*[,}\]])/g, '$1"__$2__"');
    if (fixed === text) throw e;
    return JSON.parse(fixed);
  }
}

function toNumber(v: unknown): number | undefined {
  if (typeof v === "number") return v;
  if (v === null || v === "__NaN__") return NaN;
  if (v === "__Infinity__") return Infinity;
  if (v === "__-Infinity__") return -Infinity;
  return undefined;
}

/** Checks one parsed log object and keeps its numeric fields; `where` is "file:line" for messages. */
function toLogLine(obj: unknown, where: string): LogLine {
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    throw new Error(`${where}: expected a JSON object per line, got ${Array.isArray(obj) ? "an array" : JSON.stringify(obj)}; each line must look like {"step": 10, "loss": 0.69, ...} — fix or delete that line`);
  }
  const out: LogLine = {};
  for (const [k, v] of Object.entries(obj as Record<string, unknown>)) {
    const n = toNumber(v);
    if (n !== undefined) out[k] = n;
  }
  if (!Number.isFinite(out.step)) {
    throw new Error(`${where}: the log line has no numeric "step" field (${JSON.stringify(obj).slice(0, 120)}); every log line needs the optimizer step it was written at — fix or delete that line`);
  }
  return out;
}

/** A text file's contents; a folder (or link loop, or unreadable file) in its place is an error naming the path. */
function readText(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EISDIR") throw new Error(`${file} is a folder, not a file; remove or rename it (the run writes this file itself)`);
    if (code === "ELOOP") throw new Error(`${file} is a symbolic link loop; point it at the real file or remove it`);
    throw new Error(`${file}: cannot read (${(e as Error).message})`);
  }
}

/** Parses a metrics.jsonl file; blank lines are skipped, anything else malformed is an error naming its line. */
export function readMetricsFile(file: string): LogLine[] {
  const text = readText(file);
  const lines: LogLine[] = [];
  const rows = text.split("\n");
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i].trim();
    if (row === "") continue;
    let obj: unknown;
    try {
      obj = parseLenient(row);
    } catch (e) {
      const cut = i === rows.length - 1 ? " (the last line has no newline: a run killed while writing can leave it cut short)" : "";
      throw new Error(`${file}:${i + 1}: not valid JSON (${(e as Error).message})${cut}; each line must be one JSON object — fix or delete line ${i + 1}`);
    }
    lines.push(toLogLine(obj, `${file}:${i + 1}`));
  }
  if (!lines.length) {
    throw new Error(`${file} holds no log lines yet; the training loop appends one every logging_steps optimizer steps — wait for the first log (or train with a smaller logging_steps / logging_first_step: true) and run the report again`);
  }
  return lines;
}

function readJson(file: string, what: string): unknown {
  try {
    return parseLenient(readText(file));
  } catch (e) {
    throw new Error(`${file}: cannot read ${what} (${(e as Error).message}); the file is damaged — fix or delete it`);
  }
}

/** The newest checkpoint-N folder of a run, or null. */
function newestCheckpoint(runDir: string): string | null {
  let best: { n: number; dir: string } | null = null;
  for (const name of readdirSync(runDir)) {
    const m = /^checkpoint-(\d+)$/.exec(name);
    if (m && (!best || Number(m[1]) > best.n) && statSync(join(runDir, name)).isDirectory()) best = { n: Number(m[1]), dir: join(runDir, name) };
  }
  return best?.dir ?? null;
}

/** Throws a clear error unless `runDir` is an existing folder. */
export function checkRunDir(runDir: string): void {
  if (!existsSync(runDir)) throw new Error(`${runDir}: no such folder; pass a training run's output_dir (the folder holding ${METRICS_FILE})`);
  if (!statSync(runDir).isDirectory()) throw new Error(`${runDir} is a file, not a folder; pass a training run's output_dir (the folder holding ${METRICS_FILE})`);
}

/**
 * The run's log lines: metrics.jsonl when present (written as training goes), else the log_history of
 * trainer_state.json in the folder or its newest checkpoint (a Hugging Face Trainer run folder).
 */
export function readRunLog(runDir: string): RunLog {
  checkRunDir(runDir);
  const file = join(runDir, METRICS_FILE);
  if (existsSync(file)) return { file, lines: readMetricsFile(file) };
  const ck = newestCheckpoint(runDir);
  for (const f of [join(runDir, TRAINER_STATE_FILE), ...(ck ? [join(ck, TRAINER_STATE_FILE)] : [])]) {
    if (!existsSync(f)) continue;
    const state = readJson(f, "the trainer state") as { log_history?: unknown };
    if (!Array.isArray(state?.log_history)) throw new Error(`${f}: no log_history list; it is not a trainer_state.json written by a Trainer — pass a run folder holding ${METRICS_FILE}`);
    const lines = state.log_history.map((e, i) => toLogLine(e, `${f} log_history[${i}]`));
    if (!lines.length) throw new Error(`${f}: log_history is empty; the run has not logged yet — run the report after the first log`);
    return { file: f, lines };
  }
  throw new Error(`${runDir} has no ${METRICS_FILE} (nor a ${TRAINER_STATE_FILE} with a log_history); is it a training run's output_dir? ${METRICS_FILE} appears there with the run's first log`);
}

/** The run's settings, from the first config file found in the run folder or its newest checkpoint; null if none. */
export function readRunConfig(runDir: string): RunConfig | null {
  const ck = newestCheckpoint(runDir);
  const dirs = [runDir, ...(ck ? [ck] : [])];
  for (const d of dirs) {
    for (const name of CONFIG_FILES) {
      const f = join(d, name);
      if (!existsSync(f)) continue;
      const v = readJson(f, "the run's config");
      if (v && typeof v === "object" && !Array.isArray(v)) return { file: f, values: v as Record<string, unknown> };
    }
  }
  return null;
}

/** trainer_state.json of the run folder (else its newest checkpoint), or null. */
export function readTrainerState(runDir: string): Record<string, unknown> | null {
  const ck = newestCheckpoint(runDir);
  for (const f of [join(runDir, TRAINER_STATE_FILE), ...(ck ? [join(ck, TRAINER_STATE_FILE)] : [])]) {
    if (!existsSync(f)) continue;
    const v = readJson(f, "the trainer state");
    if (v && typeof v === "object" && !Array.isArray(v)) return v as Record<string, unknown>;
  }
  return null;
}

/** The model's config.json (architecture) in the run folder, when the final model was saved there. */
export function readModelConfig(runDir: string): Record<string, unknown> | null {
  const f = join(runDir, "config.json");
  if (!existsSync(f)) return null;
  const v = readJson(f, "the model config");
  return v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
}

export const COMPLETIONS_FILE = "completions.jsonl";

/** One generate_during_eval line: TRL's game_log row (Prompt, Policy, Ref Model) at an eval step. */
export interface CompletionLine { step: number; prompt: string; policy: string; ref?: string }

/**
 * The run's completions.jsonl, or null when it has none (generate_during_eval was off). A cut-short last line
 * (a run killed while writing) is skipped; any other malformed line is an error naming it.
 */
export function readCompletions(runDir: string): { file: string; lines: CompletionLine[] } | null {
  const file = join(runDir, COMPLETIONS_FILE);
  if (!existsSync(file)) return null;
  const rows = readText(file).split("\n");
  const lines: CompletionLine[] = [];
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i].trim();
    if (row === "") continue;
    let v: Record<string, unknown>;
    try {
      v = JSON.parse(row);
    } catch (e) {
      if (i === rows.length - 1) continue;   // no newline after it: cut short by a kill, as the next run drops it
      throw new Error(`${file}:${i + 1}: not valid JSON (${(e as Error).message}); each line must be one JSON object {step, prompt, policy, ref} — fix or delete line ${i + 1}`);
    }
    const ok = v && typeof v === "object" && Number.isFinite(v.step) && typeof v.prompt === "string" && typeof v.policy === "string" && (v.ref === undefined || typeof v.ref === "string");
    if (!ok) throw new Error(`${file}:${i + 1}: not a completion line (${row.slice(0, 120)}); each line must look like {"step": 10, "prompt": "...", "policy": "...", "ref": "..."} — fix or delete line ${i + 1}`);
    lines.push({ step: v.step as number, prompt: v.prompt as string, policy: v.policy as string, ...(v.ref !== undefined ? { ref: v.ref as string } : {}) });
  }
  return { file, lines };
}

export const MT_BENCH_SCORES_FILE = /^mt_bench_scores_(.+)\.json$/;

export interface MtBenchScoresFile { file: string; scores: MtBenchScores }

function checkCell(c: unknown): c is ScoreCell {
  const x = c as ScoreCell | null;
  return !!x && typeof x === "object" && (x.score === null || typeof x.score === "number") && typeof x.n === "number";
}

function readScoresFile(file: string): MtBenchScores {
  const v = readJson(file, "the MT-Bench scores") as MtBenchScores;
  const cells = (o: MtBenchScores["categories"][string] | MtBenchScores) => checkCell(o?.turn1) && checkCell(o?.turn2) && checkCell(o?.average);
  const ok = v && typeof v === "object" && typeof v.model === "string" && typeof v.judge === "string" && cells(v)
    && v.categories && typeof v.categories === "object" && Object.values(v.categories).every(cells);
  if (!ok) throw new Error(`${file}: not an MT-Bench scores file ({model, judge, turn1, turn2, average, categories} with {score, n} cells, as preftune eval --task mt-bench writes it); fix it or remove it from the folder`);
  return v;
}

/**
 * Every mt_bench_scores_MODEL.json in `evalDir` and in its direct subfolders (preftune eval's default output is
 * eval/MODEL_ID, so eval/ holds one folder per model), sorted by path. Throws when there is none.
 */
export function readMtBenchScores(evalDir: string): MtBenchScoresFile[] {
  if (!existsSync(evalDir) || !statSync(evalDir).isDirectory()) throw new Error(`--eval ${evalDir}: no such folder; pass the --output folder of preftune eval --task mt-bench (or the folder above several of them)`);
  const dirs = [evalDir, ...readdirSync(evalDir).sort().map((n) => join(evalDir, n)).filter((d) => statSync(d).isDirectory())];
  const out: MtBenchScoresFile[] = [];
  for (const d of dirs) {
    for (const name of readdirSync(d).sort()) {
      const f = join(d, name);
      if (MT_BENCH_SCORES_FILE.test(name) && statSync(f).isFile()) out.push({ file: f, scores: readScoresFile(f) });
    }
  }
  if (!out.length) {
    throw new Error(`--eval ${evalDir}: no mt_bench_scores_MODEL.json in it or its subfolders (${dirs.slice(1).map((d) => relative(evalDir, d)).join(", ") || "none"}); preftune eval --task mt-bench writes that file into its --output folder once the answers are judged (--judge-url and --judge-model)`);
  }
  return out;
}
