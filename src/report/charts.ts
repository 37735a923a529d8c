// Which charts a run report draws from its log lines: the main ones (loss, chosen vs rejected rewards,
// margins, preference accuracy, learning rate, gradient norm), then one small chart per other numeric
// metric, each pairing the train key with its eval_ twin. Metric names are TRL's, as written to metrics.jsonl.
// Also the MT-Bench bar chart (per-category scores, one series per model) when an eval folder is given.
// Not the drawing (svg.ts) and not the HTML page (report.ts).
import type { MtBenchScores } from "../eval/mtbench.ts";
import type { LogLine } from "./runlog.ts";
import { renderBarChart, renderLineChart, type BarChart, type LineChart, type LineSeries, type Point } from "./svg.ts";

export interface ReportChart {
  name: string;                 // file name stem under plots/
  group: "main" | "other";
  keys: string[];               // metric keys drawn, train before eval
  chart: LineChart;
  svg: string;
}

/** Keys that are coordinates, not metrics. */
export const AXIS_KEYS = new Set(["step", "epoch"]);
/** The end-of-training summary line (HF Trainer's train() output): single numbers, shown as a table instead. */
export const RUN_TOTAL_KEYS = new Set(["train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos", "train_loss"]);

const COLORS = {
  blue: "#2563eb", green: "#16a34a", red: "#dc2626", amber: "#d97706", violet: "#7c3aed",
  teal: "#0d9488", pink: "#db2777", slate: "#475569", cyan: "#0891b2", brown: "#92400e",
};
const CYCLE = [COLORS.blue, COLORS.amber, COLORS.violet, COLORS.teal, COLORS.pink, COLORS.cyan, COLORS.brown, COLORS.slate, COLORS.green, COLORS.red];

interface MainChart { name: string; title: string; series: [key: string, color: string][]; yInclude?: number[] }

const MAIN: MainChart[] = [
  { name: "loss", title: "Loss", series: [["loss", COLORS.blue], ["eval_loss", COLORS.blue]] },
  {
    name: "rewards", title: "Rewards: chosen vs rejected",
    series: [["rewards/chosen", COLORS.green], ["rewards/rejected", COLORS.red], ["eval_rewards/chosen", COLORS.green], ["eval_rewards/rejected", COLORS.red]],
  },
  { name: "rewards_margins", title: "Reward margin (chosen − rejected)", series: [["rewards/margins", COLORS.amber], ["eval_rewards/margins", COLORS.amber]] },
  { name: "rewards_accuracies", title: "Preference accuracy (chosen reward > rejected)", series: [["rewards/accuracies", COLORS.violet], ["eval_rewards/accuracies", COLORS.violet]], yInclude: [0, 1] },
  { name: "learning_rate", title: "Learning rate", series: [["learning_rate", COLORS.slate]] },
  { name: "grad_norm", title: "Gradient norm (before clipping)", series: [["grad_norm", COLORS.pink]] },
];

export const MAIN_SIZE = { width: 560, height: 300 };
export const SMALL_SIZE = { width: 370, height: 230 };

/** (step, value) of every line holding `key`, in log order. */
export function metricPoints(lines: readonly LogLine[], key: string): Point[] {
  return lines.filter((l) => key in l).map((l) => [l.step, l[key]] as const);
}

/** Metric keys in order of first appearance, without the axis and run-total keys. */
export function metricKeys(lines: readonly LogLine[]): string[] {
  const seen = new Set<string>();
  for (const l of lines) for (const k of Object.keys(l)) if (!AXIS_KEYS.has(k) && !RUN_TOTAL_KEYS.has(k)) seen.add(k);
  return [...seen];
}

/** A metric key as a file name stem: rewards/chosen -> rewards_chosen. */
export function fileStem(key: string): string {
  return key.replace(/[^A-Za-z0-9_.-]+/g, "_").replace(/^[._]+|_+$/g, "") || "metric";
}

const isEval = (k: string) => k.startsWith("eval_");

function makeChart(name: string, group: ReportChart["group"], title: string, series: LineSeries[], size: { width: number; height: number }, yInclude?: number[]): ReportChart {
  const chart: LineChart = { title, xLabel: "step", series, ...size, yInclude, integerX: true, xFromZero: true };
  return { name, group, keys: series.map((s) => s.name), chart, svg: renderLineChart(chart, name) };
}

/** Every chart of the report, main charts first; a chart is drawn when at least one of its keys was logged. */
export function buildCharts(lines: readonly LogLine[]): ReportChart[] {
  const keys = metricKeys(lines);
  const present = new Set(keys);
  const used = new Set<string>();
  const out: ReportChart[] = [];
  for (const m of MAIN) {
    const series: LineSeries[] = m.series.filter(([k]) => present.has(k)).map(([k, color]) => ({
      name: k, color, style: isEval(k) ? "eval" : "train", points: metricPoints(lines, k),
    }));
    if (!series.length) continue;
    for (const s of series) used.add(s.name);
    out.push(makeChart(m.name, "main", m.title, series, MAIN_SIZE, m.yInclude));
  }

  // The rest, grouped by name without the eval_ prefix so train and eval of one metric share a chart.
  const groups = new Map<string, string[]>();
  for (const k of keys) {
    if (used.has(k)) continue;
    const base = isEval(k) && present.has(k.slice(5)) ? k.slice(5) : k;
    if (!groups.has(base)) groups.set(base, []);
    groups.get(base)!.push(k);
  }
  const names = new Set(out.map((c) => c.name));
  let i = 0;
  for (const [base, ks] of groups) {
    const color = CYCLE[i++ % CYCLE.length];
    ks.sort((a, b) => Number(isEval(a)) - Number(isEval(b)));
    const series: LineSeries[] = ks.map((k) => ({ name: k, color, style: isEval(k) ? "eval" : "train", points: metricPoints(lines, k) }));
    let name = fileStem(base);
    for (let n = 2; names.has(name); n++) name = `${fileStem(base)}-${n}`;
    names.add(name);
    out.push(makeChart(name, "other", base, series, SMALL_SIZE));
  }
  return out;
}

/** MT-Bench's eight categories in FastChat's order; any other category follows, sorted. */
export const MT_BENCH_CATEGORIES = ["writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"];

export interface MtBenchChart { name: string; categories: string[]; chart: BarChart; svg: string }

/** The categories of a set of scores: FastChat's order first, then the rest sorted. */
export function mtBenchCategories(sets: readonly MtBenchScores[]): string[] {
  const seen = new Set(sets.flatMap((s) => Object.keys(s.categories)));
  return [...MT_BENCH_CATEGORIES.filter((c) => seen.has(c)), ...[...seen].filter((c) => !MT_BENCH_CATEGORIES.includes(c)).sort()];
}

/**
 * A bar chart of MT-Bench per-category scores (both turns pooled, FastChat's "Average"), one series per model;
 * `labels` names each set in the legend (default its model id).
 */
export function buildMtBenchChart(sets: readonly MtBenchScores[], labels: readonly string[] = sets.map((s) => s.model)): MtBenchChart {
  const categories = mtBenchCategories(sets);
  const width = Math.max(MAIN_SIZE.width, 90 + categories.length * Math.max(80, 24 * sets.length));
  const chart: BarChart = {
    title: "MT-Bench score per category (1-10, both turns)", groups: categories, width, height: 330, yInclude: [0, 10], yLabel: "score",
    series: sets.map((s, i) => ({
      name: labels[i], color: CYCLE[i % CYCLE.length],
      values: categories.map((c) => s.categories[c]?.average.score ?? null),
      notes: categories.map((c) => (s.categories[c] ? `${s.categories[c].average.n} judgments` : null)),
    })),
  };
  return { name: "mt_bench", categories, chart, svg: renderBarChart(chart, "mt_bench") };
}
