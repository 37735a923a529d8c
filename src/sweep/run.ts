// `preftune sweep`: plans a grid of training runs over a base config (every cell's config checked before anything
// runs), then runs each cell as a `preftune train` child process into output_dir/cells/<cell>/ (one after another,
// or N at a time with the threads split), evaluates each finished cell the same way (its logged eval metrics, and
// optionally `preftune eval` pairwise and MT-Bench on its final model), and keeps sweep.jsonl, sweep.csv and
// report.html current after every cell. A finished cell (sweep_result.json) is never run again; an interrupted one
// resumes from its latest checkpoint. Not the grid parsing (grid.ts), the table (table.ts) or the HTML report.
import { spawn, type ChildProcess } from "node:child_process";
import { availableParallelism } from "node:os";
import { createWriteStream, existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigError, parseArgs, readConfigFile, resolveConfig } from "../train/config.ts";
import { latestCheckpoint } from "../train/checkpoint.ts";
import { ensureDir, removeFile, writeFileAtomic } from "../util/durable.ts";
import { acquireRunLock } from "../util/lock.ts";
import { gridAxes, gridCells, type Cell, type GridAxis } from "./grid.ts";
import { buildRow, cellDir, cellStatus, sweepRows, trainingFinished, writeTables, SWEEP_FILES, type SweepManifest } from "./table.ts";

const BIN = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "bin", "preftune.js");

export const SWEEP_EVAL_TASKS = ["pairwise", "mt-bench"] as const;
export type SweepEvalTask = (typeof SWEEP_EVAL_TASKS)[number];

export interface SweepEvalOptions {
  tasks: SweepEvalTask[];
  dataset?: string | null;         // pairwise: preference data (default: the base config's eval_dataset, else its dataset_name)
  judgeUrl?: string | null;        // mt-bench: the judge's OpenAI-compatible API (no judging without it)
  judgeModel?: string | null;
  judgeApiKeyEnv?: string | null;
  questions?: number | null;       // mt-bench: only the first n questions
  maxNewTokens?: number | null;    // mt-bench: new tokens per answer
}

export interface SweepOptions {
  configFile: string | null;
  overrides?: readonly string[];   // --key value for the base config, as `preftune train` reads them
  grid?: readonly string[];        // --grid KEY=V1,V2,...
  parallel?: number;               // cells at once (default 1)
  eval?: SweepEvalOptions;
  metric?: string | null;          // the study figure's metric (default: MT-Bench score, else pairwise accuracy, else eval_rewards/accuracies, ...)
  print?: (line: string) => void;  // progress lines (default stderr)
  cellOutput?: "inherit" | "log";  // a cell's child output: on this terminal (default with parallel 1) or in cells/<cell>/sweep.log
  onCellStart?: (cell: Cell, child: ChildProcess) => void;   // tests: the child of each training attempt
}

export interface SweepPlan {
  dir: string;
  base: Record<string, unknown>;
  axes: GridAxis[];
  cells: Cell[];
  configs: Map<string, Record<string, unknown>>;   // cell name -> its train config (raw keys, as written to sweep_config.json)
  manifest: SweepManifest;
}

const show = (v: unknown) => JSON.stringify(v);

/** Reads the base config (file + command line) and the grid, and checks every cell's config; all problems at once. */
export function planSweep(o: SweepOptions): SweepPlan {
  const p = parseArgs(o.overrides ?? []);
  const problems = [...p.problems];
  if (o.configFile && p.configFile) problems.push(`--config ${p.configFile} and the config file ${o.configFile} are both given; pass one`);
  const file = o.configFile ?? p.configFile;
  const raw = { ...(file ? readConfigFile(file) : {}), ...p.values };
  const fileGrid = raw.grid;
  delete raw.grid;
  if (problems.length) throw new ConfigError(`command line: ${problems.length} problem${problems.length > 1 ? "s" : ""}:\n${problems.map((x) => `  - ${x}`).join("\n")}`);
  const axes = gridAxes(fileGrid, o.grid ?? [], file);
  if (typeof raw.output_dir !== "string" || raw.output_dir === "") throw new ConfigError(`${file ?? "command line"}: set output_dir (the sweep's folder: sweep.jsonl, sweep.csv, report.html and cells/<cell>/ go there), e.g. --output_dir runs/sweep`);
  if (raw.resume_from_checkpoint != null && raw.resume_from_checkpoint !== false) throw new ConfigError("resume_from_checkpoint: the sweep resumes each interrupted cell from its latest checkpoint by itself; remove it from the base config");
  const dir = resolve(raw.output_dir);
  const cells = gridCells(axes);
  const parallel = Math.max(1, o.parallel ?? 1);
  const threadsAxis = axes.some((a) => a.key === "threads");
  const totalThreads = typeof raw.threads === "number" && raw.threads > 0 ? raw.threads : availableParallelism();
  const configs = new Map<string, Record<string, unknown>>();
  const cellProblems: string[] = [];
  for (const c of cells) {
    const cfg: Record<string, unknown> = { ...raw, ...c.values, output_dir: cellDir(dir, c.name) };
    if (parallel > 1 && !threadsAxis) cfg.threads = Math.max(1, Math.floor(totalThreads / parallel));
    try { resolveConfig(cfg, `cell ${c.name}`); } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      cellProblems.push(e.message);
      continue;
    }
    configs.set(c.name, cfg);
    // a cell already in the folder must have been started with this same config (threads aside)
    const prev = readJsonFile(join(cellDir(dir, c.name), SWEEP_FILES.cellConfig));
    if (prev) {
      const keys = [...new Set([...Object.keys(prev), ...Object.keys(cfg)])].filter((k) => k !== "threads" && show(prev[k]) !== show(cfg[k]));
      if (keys.length) cellProblems.push(`${cellDir(dir, c.name)} was started with another config (${keys.map((k) => `${k}: ${show(prev[k])} there, ${show(cfg[k])} now`).join("; ")}): a finished cell is never re-run, so its results would not match; use another output_dir or remove that cell's folder`);
    }
  }
  if (cellProblems.length) throw new ConfigError(`${cellProblems.length} of ${cells.length} cells cannot run:\n${cellProblems.map((x) => x.split("\n").map((l) => `  ${l}`).join("\n")).join("\n")}`);
  const ev = o.eval ?? { tasks: [] };
  const evalDataset = ev.tasks.includes("pairwise") ? pairwiseDataset(ev, raw) : null;
  if (ev.tasks.includes("mt-bench") && (ev.judgeUrl == null) !== (ev.judgeModel == null)) throw new ConfigError("MT-Bench judging needs both --judge-url and --judge-model (or neither, to only write answers)");
  const manifest: SweepManifest = {
    version: 1, config_file: file, base: raw, grid: axes.map((a) => ({ key: a.key, values: a.values, labels: a.labels })), cells,
    eval: { tasks: ev.tasks, dataset: evalDataset, judge_model: ev.judgeModel ?? null, questions: ev.questions ?? null },
    metric: o.metric ?? null,
  };
  return { dir, base: raw, axes, cells, configs, manifest };
}

function pairwiseDataset(ev: SweepEvalOptions, raw: Record<string, unknown>): string {
  const d = ev.dataset ?? raw.eval_dataset ?? raw.dataset_name ?? raw.dataset;
  if (typeof d !== "string") throw new ConfigError("--eval pairwise needs preference data: --eval-dataset PATH (or a base config with dataset_name / eval_dataset)");
  return d;
}

function readJsonFile(file: string): Record<string, unknown> | null {
  if (!existsSync(file)) return null;
  try { return JSON.parse(readFileSync(file, "utf8")); } catch { return null; }
}

export interface SweepSummary {
  dir: string;
  cells: number;
  ran: string[];        // cells trained (or resumed) by this invocation
  skipped: string[];    // finished before this invocation
  failed: string[];
  stoppedBy: NodeJS.Signals | null;
  exitCode: number;
  jsonl: string;
  csv: string;
  report: string | null;
}

interface Attempt { code: number; tail: string }

/**
 * Runs `preftune ARGS` as a child. Its output goes to `logFile`, or else to this process's stderr: straight through
 * on a terminal (the cell's progress bars), otherwise relayed, keeping the last lines for a failure record.
 */
function child(args: string[], logFile: string | null, onStart?: (c: ChildProcess) => void): { proc: ChildProcess; done: Promise<Attempt> } {
  const stdio = logFile ? ["ignore", "pipe", "pipe"] : process.stderr.isTTY ? ["ignore", "inherit", "inherit"] : ["ignore", "inherit", "pipe"];
  const proc = spawn(process.execPath, [BIN, ...args], { stdio: stdio as ("ignore" | "pipe" | "inherit")[] });
  onStart?.(proc);
  let tail = "";
  const log = logFile ? createWriteStream(logFile, { flags: "a" }) : null;
  const keep = (d: Buffer) => { tail = (tail + d.toString()).slice(-4000); log?.write(d); if (!log) process.stderr.write(d); };
  proc.stdout?.on("data", keep);
  proc.stderr?.on("data", keep);
  const done = new Promise<Attempt>((res) => proc.on("close", (code, signal) => {
    log?.end();
    res({ code: code ?? (signal === "SIGINT" ? 130 : signal === "SIGTERM" ? 143 : 137), tail });
  }));
  return { proc, done };
}

/** Plans, then runs every unfinished cell; returns what happened. Throws ConfigError before anything runs. */
export async function runSweep(o: SweepOptions): Promise<SweepSummary> {
  const plan = planSweep(o);
  const print = o.print ?? ((l: string) => process.stderr.write(l + "\n"));
  const parallel = Math.max(1, o.parallel ?? 1);
  const output = o.cellOutput ?? (parallel > 1 ? "log" : "inherit");
  ensureDir(plan.dir, "output_dir");
  const lock = acquireRunLock(plan.dir, "sweep output_dir");
  const running = new Set<ChildProcess>();
  let stoppedBy: NodeJS.Signals | null = null;
  const onSignal = (sig: NodeJS.Signals) => {
    if (!stoppedBy) print(`${sig}: stopping after the running cell${parallel > 1 ? "s" : ""} save a checkpoint (re-run the same command to continue)`);
    stoppedBy ??= sig;
    // SIGINT from a terminal reaches the cells' processes too (one process group); SIGTERM is sent to one process
    if (sig === "SIGTERM") for (const c of running) c.kill("SIGTERM");
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const summary: SweepSummary = { dir: plan.dir, cells: plan.cells.length, ran: [], skipped: [], failed: [], stoppedBy: null, exitCode: 0, jsonl: "", csv: "", report: null };
  const refresh = async () => {
    const rows = sweepRows(plan.dir, plan.manifest);
    const t = writeTables(plan.dir, rows);
    summary.jsonl = t.jsonl; summary.csv = t.csv;
    const { writeSweepReport } = await import("../report/sweep-report.ts");
    summary.report = writeSweepReport(plan.dir);
  };
  try {
    writeFileAtomic(join(plan.dir, SWEEP_FILES.manifest), JSON.stringify(plan.manifest, null, 2) + "\n");
    const todo = plan.cells.filter((c) => {
      if (cellStatus(cellDir(plan.dir, c.name)) !== "done") return true;
      summary.skipped.push(c.name);
      return false;
    });
    print(`sweep: ${plan.cells.length} cells (${plan.axes.map((a) => `${a.key} × ${a.values.length}`).join(", ")}) in ${plan.dir}; ${summary.skipped.length} finished already, ${todo.length} to run${parallel > 1 ? `, ${parallel} at a time` : ""}`);
    await refresh();
    let next = 0, started = 0;
    const worker = async () => {
      while (next < todo.length && !stoppedBy) {
        const cell = todo[next++];
        const n = plan.cells.indexOf(cell) + 1;
        started++;
        const ok = await runCell(plan, cell, { print, output, running, eval: o.eval ?? { tasks: [] }, label: `[${n}/${plan.cells.length}] ${cell.name}`, onStart: o.onCellStart, stopped: () => stoppedBy });
        if (ok === "ran") summary.ran.push(cell.name);
        else if (ok === "failed") summary.failed.push(cell.name);
        await refresh();
      }
    };
    await Promise.all(Array.from({ length: Math.min(parallel, Math.max(1, todo.length)) }, worker));
    summary.stoppedBy = stoppedBy;
    summary.exitCode = stoppedBy ? (stoppedBy === "SIGINT" ? 130 : 143) : summary.failed.length ? 1 : 0;
    const left = plan.cells.filter((c) => cellStatus(cellDir(plan.dir, c.name)) !== "done").length;
    print(`sweep: ${started} cell${started === 1 ? "" : "s"} run now, ${summary.skipped.length} skipped (finished before), ${summary.failed.length} failed${summary.failed.length ? ` (${summary.failed.join("; ")})` : ""}, ${left} not finished`);
    print(`table: ${summary.jsonl} and ${summary.csv}\nreport: ${summary.report}`);
    return summary;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    lock.release();
  }
}

interface CellContext {
  print: (l: string) => void;
  output: "inherit" | "log";
  running: Set<ChildProcess>;
  eval: SweepEvalOptions;
  label: string;
  onStart?: (cell: Cell, child: ChildProcess) => void;
  stopped: () => NodeJS.Signals | null;
}

/** Trains (or resumes) one cell, evaluates it and records its row; "ran", "failed" or "stopped". */
async function runCell(plan: SweepPlan, cell: Cell, x: CellContext): Promise<"ran" | "failed" | "stopped"> {
  const dir = cellDir(plan.dir, cell.name);
  const cfg = plan.configs.get(cell.name)!;
  ensureDir(dir, "cell folder");
  const cfgFile = join(dir, SWEEP_FILES.cellConfig);
  writeFileAtomic(cfgFile, JSON.stringify(cfg, null, 2) + "\n");
  const state = readJsonFile(join(dir, SWEEP_FILES.cellState)) ?? {};
  let wall = typeof state.wall_seconds === "number" ? state.wall_seconds : 0;
  let attempts = typeof state.attempts === "number" ? state.attempts : 0;
  const saveState = () => writeFileAtomic(join(dir, SWEEP_FILES.cellState), JSON.stringify({ wall_seconds: wall, attempts }, null, 2) + "\n");
  const logFile = x.output === "log" ? join(dir, "sweep.log") : null;
  const run = async (args: string[]): Promise<Attempt> => {
    const t0 = performance.now();
    const c = child(args, logFile, (p) => x.onStart?.(cell, p));
    x.running.add(c.proc);
    try {
      return await c.done;
    } finally {
      x.running.delete(c.proc);
      wall += (performance.now() - t0) / 1000;
      saveState();
    }
  };
  const fail = (what: string, r: Attempt): "failed" | "stopped" => {
    if (r.code === 130 || r.code === 143 || x.stopped()) {
      x.print(`${x.label}: stopped during ${what}; the next sweep resumes it`);
      return "stopped";
    }
    writeFileAtomic(join(dir, SWEEP_FILES.cellFailure), JSON.stringify({ during: what, exit_code: r.code, output_tail: r.tail }, null, 2) + "\n");
    x.print(`${x.label}: ${what} failed (exit code ${r.code}); the next sweep tries it again.${r.tail ? ` Last output:\n${r.tail.split("\n").slice(-8).join("\n")}` : " Its output is above."}`);
    return "failed";
  };

  if (!trainingFinished(dir)) {
    const resume = latestCheckpoint(dir);
    attempts++;
    x.print(`${x.label}: ${resume ? `resuming from ${resume}` : "training"}${logFile ? ` (output in ${logFile})` : ""}`);
    const r = await run(["train", cfgFile, ...(resume ? ["--resume_from_checkpoint", "true"] : [])]);
    if (r.code !== 0 || !trainingFinished(dir)) return fail("training", r.code === 0 ? { ...r, code: 1 } : r);
  }
  if (x.stopped()) return "stopped";
  for (const task of x.eval.tasks) {
    x.print(`${x.label}: preftune eval --task ${task}`);
    const r = await run(evalArgs(task, plan, cell, cfg, dir, x.eval));
    if (r.code !== 0) return fail(`eval ${task}`, r);
    if (x.stopped()) return "stopped";
  }
  writeFileAtomic(join(dir, SWEEP_FILES.cellResult), JSON.stringify(buildRow(dir, cell, "done"), null, 2) + "\n");
  if (existsSync(join(dir, SWEEP_FILES.cellFailure))) removeFile(join(dir, SWEEP_FILES.cellFailure));
  try {
    const { writeReport } = await import("../report/report.ts");
    writeReport(dir);
  } catch (e) {
    x.print(`${x.label}: note: its run report was not written (${(e as Error).message})`);
  }
  x.print(`${x.label}: done`);
  return "ran";
}

/** `preftune eval` arguments for a finished cell: every cell of a sweep is evaluated with the same settings. */
function evalArgs(task: SweepEvalTask, plan: SweepPlan, cell: Cell, cfg: Record<string, unknown>, dir: string, ev: SweepEvalOptions): string[] {
  const base = String(cfg.model_name_or_path);
  const peft = cfg.use_peft === true;
  const model = peft ? ["--model", base, "--adapter", dir] : ["--model", dir];
  const threads = typeof cfg.threads === "number" && cfg.threads > 0 ? ["--threads", String(cfg.threads)] : [];
  const out = join(dir, SWEEP_FILES.evalDir, task);
  if (task === "pairwise") {
    // the same ranking for every method: summed completion log-probs against the cell's starting model
    const beta = typeof cfg.beta === "number" ? ["--beta", String(cfg.beta)] : [];
    const maxLen = typeof cfg.max_length === "number" ? ["--max-length", String(cfg.max_length)] : [];
    return ["eval", "--task", "pairwise", ...model, ...(peft ? [] : ["--ref-model", base]), "--dataset", plan.manifest.eval.dataset!, "--method", "dpo", ...beta, ...maxLen, ...threads, "--output", out];
  }
  const judge = ev.judgeUrl ? ["--judge-url", ev.judgeUrl, "--judge-model", ev.judgeModel!, ...(ev.judgeApiKeyEnv ? ["--judge-api-key-env", ev.judgeApiKeyEnv] : [])] : [];
  const q = ev.questions ? ["--questions", String(ev.questions)] : [];
  const mnt = ev.maxNewTokens ? ["--max-new-tokens", String(ev.maxNewTokens)] : [];
  return ["eval", "--task", "mt-bench", ...model, "--model-id", cell.name.replace(/[^A-Za-z0-9._+=,-]/g, "_"), ...q, ...mnt, ...judge, ...threads, "--output", out];
}
