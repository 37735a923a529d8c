// The sweep's comparison table: one row per cell read back from the cell's folder (its grid values, status, final
// train and eval log lines, `preftune eval` results, wall time), written as sweep.jsonl and sweep.csv. Reading
// works at any time, also mid-sweep (unfinished cells show their latest logged values). Also the sweep folder's
// layout and its manifest (sweep.json). Not the running of cells (run.ts) and not the HTML (report/sweep-report.ts).
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { readMetricsFile, type LogLine } from "../report/runlog.ts";
import { writeFileAtomic } from "../util/durable.ts";
import { lockHeld } from "../util/lock.ts";

/** Names of the files a sweep writes; one place for the layout. */
export const SWEEP_FILES = {
  manifest: "sweep.json",           // in output_dir: the grid, the base config, the eval settings
  jsonl: "sweep.jsonl",
  csv: "sweep.csv",
  report: "report.html",
  cells: "cells",                   // output_dir/cells/<cell>/ is each cell's training output_dir
  cellConfig: "sweep_config.json",  // the cell's train config (base + its values), what `preftune train` is given
  cellResult: "sweep_result.json",  // the cell's finished row: written last, so present = finished
  cellState: "sweep_state.json",    // wall time and attempts so far
  cellFailure: "sweep_failure.json",// the last attempt's failure (exit code and output tail)
  evalDir: "eval",                  // cells/<cell>/eval/pairwise/, eval/mt-bench/
} as const;

export interface SweepManifest {
  version: 1;
  config_file: string | null;
  base: Record<string, unknown>;                 // the base config as given (file + command line), without grid
  grid: { key: string; values: unknown[]; labels: string[] }[];
  cells: { name: string; values: Record<string, unknown> }[];
  eval: { tasks: string[]; dataset: string | null; judge_model: string | null; questions: number | null };
  metric: string | null;                         // the metric of the study figure (null: chosen from what was logged)
}

export type CellStatus = "done" | "failed" | "training" | "interrupted" | "pending";
export type Row = Record<string, string | number | boolean | null>;

/** Columns that measure time, not results: they differ between two runs of the same sweep. */
export const TIMING_KEY = /runtime|per_second|wall_seconds/;

export function readManifest(dir: string): SweepManifest {
  const file = join(dir, SWEEP_FILES.manifest);
  if (!existsSync(file)) throw new Error(`${dir}: no ${SWEEP_FILES.manifest}; not a sweep folder (preftune sweep writes it into output_dir)`);
  try { return JSON.parse(readFileSync(file, "utf8")) as SweepManifest; } catch (e) { throw new Error(`${file}: not valid JSON (${(e as Error).message}); re-run preftune sweep to rewrite it`); }
}

export const isSweepDir = (dir: string) => existsSync(join(dir, SWEEP_FILES.manifest));
export const cellDir = (dir: string, name: string) => join(dir, SWEEP_FILES.cells, name);

function readJson(file: string): Record<string, unknown> | null {
  if (!existsSync(file)) return null;
  try { return JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>; } catch { return null; }
}

/** A cell's log lines (empty when it has not logged yet, or its log cannot be read). */
export function cellLog(dir: string): LogLine[] {
  const f = join(dir, "metrics.jsonl");
  if (!existsSync(f) || statSync(f).size === 0) return [];
  try { return readMetricsFile(f); } catch { return []; }
}

/** Whether the cell's training finished: the end-of-training line is logged and the model card (written with the final model) is there. */
export function trainingFinished(dir: string): boolean {
  return existsSync(join(dir, "README.md")) && cellLog(dir).some((l) => "train_runtime" in l);
}

function hasCheckpoint(dir: string): boolean {
  return existsSync(dir) && readdirSync(dir).some((n) => /^checkpoint-\d+$/.test(n));
}

export function cellStatus(dir: string): CellStatus {
  if (existsSync(join(dir, SWEEP_FILES.cellResult))) return "done";
  if (existsSync(dir) && lockHeld(dir)) return "training";
  if (existsSync(join(dir, SWEEP_FILES.cellFailure))) return "failed";
  if (hasCheckpoint(dir) || existsSync(join(dir, "metrics.jsonl"))) return "interrupted";
  return "pending";
}

/** The last value of each key among lines that hold `marker` (the final train log, the final eval). */
function lastOf(lines: readonly LogLine[], marker: string, keep: (k: string) => boolean): Row {
  const line = [...lines].reverse().find((l) => marker in l);
  if (!line) return {};
  return Object.fromEntries(Object.entries(line).filter(([k]) => keep(k)));
}

/** MT-Bench scores of a cell, when judged (`preftune eval --task mt-bench` with a judge). */
function mtBenchColumns(dir: string): Row {
  const d = join(dir, SWEEP_FILES.evalDir, "mt-bench");
  if (!existsSync(d)) return {};
  const f = readdirSync(d).find((n) => /^mt_bench_scores_.+\.json$/.test(n));
  const s = f ? readJson(join(d, f)) : null;
  if (!s) return {};
  const score = (k: string) => ((s[k] as { score?: number | null } | undefined)?.score ?? null);
  return { mt_bench_score: score("average"), mt_bench_turn1: score("turn1"), mt_bench_turn2: score("turn2") };
}

/** `preftune eval --task pairwise` metrics of a cell, as pairwise:<TRL name without eval_>. */
function pairwiseColumns(dir: string): Row {
  const m = readJson(join(dir, SWEEP_FILES.evalDir, "pairwise", "pairwise_metrics.json"));
  if (!m) return {};
  return Object.fromEntries(Object.entries(m).filter(([k, v]) => k.startsWith("eval_") && typeof v === "number").map(([k, v]) => [`pairwise:${k.slice(5)}`, v as number]));
}

/**
 * A cell's row from its folder: grid values, status, the final train log line's metrics, the final eval line's,
 * the end-of-training totals, pairwise and MT-Bench results, wall time. A finished cell's row is its
 * sweep_result.json (what was recorded when it finished).
 */
export function cellRow(sweepDir: string, cell: { name: string; values: Record<string, unknown> }): Row {
  const dir = cellDir(sweepDir, cell.name);
  const done = readJson(join(dir, SWEEP_FILES.cellResult));
  if (done) return done as Row;
  return buildRow(dir, cell, cellStatus(dir));
}

const AXIS = new Set(["step", "epoch"]);

export function buildRow(dir: string, cell: { name: string; values: Record<string, unknown> }, status: CellStatus): Row {
  const lines = cellLog(dir);
  const gridValues = Object.fromEntries(Object.entries(cell.values).map(([k, v]) => [k, typeof v === "object" && v !== null ? JSON.stringify(v) : v as Row[string]]));
  const last = lines[lines.length - 1];
  const state = readJson(join(dir, SWEEP_FILES.cellState));
  return {
    cell: cell.name, status, ...gridValues,
    step: last?.step ?? null, epoch: last?.epoch ?? null,
    ...lastOf(lines, "train_loss", (k) => k === "train_loss" || k === "train_runtime"),
    ...lastOf(lines, "loss", (k) => !AXIS.has(k)),
    ...lastOf(lines, "eval_loss", (k) => !AXIS.has(k)),
    ...pairwiseColumns(dir),
    ...mtBenchColumns(dir),
    wall_seconds: typeof state?.wall_seconds === "number" ? state.wall_seconds : null,
  };
}

/** Rows of every cell of the manifest, in grid order. */
export function sweepRows(sweepDir: string, manifest: SweepManifest): Row[] {
  return manifest.cells.map((c) => cellRow(sweepDir, c));
}

/** Column order: the first row's keys in order, then keys only later rows have. */
export function columns(rows: readonly Row[]): string[] {
  const seen: string[] = [];
  for (const r of rows) for (const k of Object.keys(r)) if (!seen.includes(k)) seen.push(k);
  return seen;
}

function csvField(v: Row[string] | undefined): string {
  if (v === null || v === undefined) return "";
  const s = String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function toCsv(rows: readonly Row[]): string {
  const cols = columns(rows);
  return [cols.map(csvField).join(","), ...rows.map((r) => cols.map((c) => csvField(r[c])).join(","))].join("\n") + "\n";
}

/** Writes sweep.jsonl and sweep.csv (each replaced whole, atomically). */
export function writeTables(sweepDir: string, rows: readonly Row[]): { jsonl: string; csv: string } {
  const jsonl = join(sweepDir, SWEEP_FILES.jsonl), csv = join(sweepDir, SWEEP_FILES.csv);
  writeFileAtomic(jsonl, rows.map((r) => JSON.stringify(r)).join("\n") + (rows.length ? "\n" : ""));
  writeFileAtomic(csv, toCsv(rows));
  return { jsonl, csv };
}
