// Run outputs while training: TRL-style metric averaging over a logging interval, output_dir/metrics.jsonl
// (one JSON object per log, the same objects as trainer_state.json's log_history) and the console progress
// (a cli-progress bar with ETA on a TTY, plain lines otherwise, nothing when quiet).
// Not the loop's control flow and not checkpoint files.
import { join } from "node:path";
import cliProgress from "cli-progress";
import { writeFileAtomic } from "../util/durable.ts";
import { appendRecords } from "../util/records.ts";

export const METRICS_FILE = "metrics.jsonl";

export type LogEntry = Record<string, number>;

/**
 * TRL's _metrics[mode][key]: every micro-batch appends its values; a log reports the mean of each key
 * since the previous log, then clears. Sums and counts are kept (not lists) so the state is a few numbers
 * that a checkpoint can carry: a resumed run continues an interval with the same float operations.
 */
export interface MetricSums { sum: Record<string, number>; count: Record<string, number> }

export function emptySums(): MetricSums {
  return { sum: {}, count: {} };
}

export function addMetrics(acc: MetricSums, m: Record<string, number>): void {
  for (const [k, v] of Object.entries(m)) {
    acc.sum[k] = (acc.sum[k] ?? 0) + v;
    acc.count[k] = (acc.count[k] ?? 0) + 1;
  }
}

export function meanMetrics(acc: MetricSums, prefix = ""): LogEntry {
  const out: LogEntry = {};
  for (const k of Object.keys(acc.sum)) out[prefix + k] = acc.sum[k] / acc.count[k];
  return out;
}

/** Rewrites metrics.jsonl to exactly these entries (resume: the checkpoint's log_history), atomically. */
export function rewriteMetricsFile(outputDir: string, entries: readonly LogEntry[]): void {
  writeFileAtomic(join(outputDir, METRICS_FILE), entries.map((e) => JSON.stringify(e) + "\n").join(""));
}

/** Appends one entry to metrics.jsonl (fsynced; never through a link). */
export function appendMetrics(outputDir: string, entry: LogEntry): void {
  appendRecords(join(outputDir, METRICS_FILE), [entry]);
}

export function formatSeconds(s: number): string {
  if (!Number.isFinite(s) || s < 0) return "?";
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m` : m > 0 ? `${m}m${String(sec).padStart(2, "0")}s` : `${sec}s`;
}

function fmt(v: number): string {
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(3) : v.toFixed(4);
}

/** A log entry as one short console line: step, loss or eval_loss first, then the rest. */
export function formatEntry(e: LogEntry): string {
  const first = ["step", "epoch", "loss", "eval_loss", "train_loss", "grad_norm", "learning_rate"];
  const keys = [...first.filter((k) => k in e), ...Object.keys(e).filter((k) => !first.includes(k))];
  return keys.map((k) => `${k}=${fmt(e[k])}`).join(" ");
}

/** Console progress: a bar with ETA on a TTY (log lines printed above it), plain lines otherwise. */
export class Progress {
  private bar: cliProgress.MultiBar | null = null;
  private single: cliProgress.SingleBar | null = null;
  private t0 = 0;
  private startStep = 0;
  private total = 0;
  constructor(private readonly quiet: boolean, private readonly noBar: boolean, private readonly print: (line: string) => void = (l) => process.stderr.write(l + "\n")) {}

  start(total: number, step: number): void {
    this.total = total;
    this.startStep = step;
    this.t0 = performance.now();
    if (this.quiet || this.noBar || !process.stderr.isTTY) return;
    this.bar = new cliProgress.MultiBar({
      format: "train {bar} {value}/{total} steps | {eta_formatted} left | loss {loss}",
      hideCursor: true, stream: process.stderr, etaBuffer: 50, clearOnComplete: false,
    }, cliProgress.Presets.shades_classic);
    this.single = this.bar.create(total, step, { loss: "-" });
  }

  /** Called after each optimizer step. */
  update(step: number, loss?: number): void {
    this.single?.update(step, loss === undefined ? {} : { loss: loss.toFixed(4) });
  }

  /** A log entry: above the bar on a TTY, else a plain line with the ETA. */
  log(entry: LogEntry): void {
    if (this.quiet) return;
    const line = formatEntry(entry);
    if (this.bar) { this.bar.log(line + "\n"); return; }
    const step = entry.step ?? 0;
    const done = step - this.startStep;
    const secs = (performance.now() - this.t0) / 1000;
    const eta = done > 0 ? ((this.total - step) * secs) / done : NaN;
    this.print(`[${step}/${this.total} ${((100 * step) / Math.max(1, this.total)).toFixed(0)}% eta ${formatSeconds(eta)}] ${line}`);
  }

  note(line: string): void {
    if (this.quiet) return;
    if (this.bar) this.bar.log(line + "\n");
    else this.print(line);
  }

  stop(): void {
    this.bar?.stop();
    this.bar = null;
    this.single = null;
  }
}
