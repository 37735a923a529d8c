// The charts of a sweep report: the study's figure (a chosen metric against β, or another numeric grid axis, one
// line per method or other-axis combination, with each line's best value marked), training curves of every cell
// overlaid per method, and a bar chart when no axis is numeric. Rows come from src/sweep/table.ts; drawing is svg.ts.
// Not the HTML page (sweep-report.ts) and not a single run's charts (charts.ts).
import type { LogLine } from "./runlog.ts";
import { betterDirection } from "./report.ts";
import { renderBarChart, renderLineChart, type LineChart, type LineSeries, type Point } from "./svg.ts";
import type { Row } from "../sweep/table.ts";

export interface SweepChart { name: string; title: string; svg: string; group: "study" | "curves" }
export interface Best { group: string; x: number | string; value: number; cell: string }

const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#92400e", "#475569", "#0d9488"];
export const STUDY_SIZE = { width: 620, height: 340 };
export const CURVE_SIZE = { width: 460, height: 280 };

/** The metric the study figure compares, in order of preference among those the rows hold. */
const METRIC_PREFERENCE = ["mt_bench_score", "pairwise:rewards/accuracies", "eval_rewards/accuracies", "eval_loss", "train_loss"];

export function chooseMetric(rows: readonly Row[], wanted: string | null): string | null {
  if (wanted) return wanted;
  return METRIC_PREFERENCE.find((k) => rows.some((r) => typeof r[k] === "number" && Number.isFinite(r[k]))) ?? null;
}

/** Which way is better for a sweep column: MT-Bench higher; pairwise:X and eval_X as their TRL metric. */
export function metricDirection(key: string): "min" | "max" | null {
  if (key.startsWith("mt_bench")) return "max";
  return betterDirection(key.startsWith("pairwise:") ? `eval_${key.slice(9)}` : key);
}

export interface Layout { x: string | null; groupKeys: string[] }

/** The x axis of the study figure: beta when it is an axis, else the first axis whose values are all numbers. */
export function studyLayout(axes: readonly { key: string; values: unknown[] }[]): Layout {
  const numeric = axes.filter((a) => a.values.every((v) => typeof v === "number"));
  const x = numeric.find((a) => a.key === "beta")?.key ?? numeric[0]?.key ?? null;
  return { x, groupKeys: axes.map((a) => a.key).filter((k) => k !== x) };
}

/** A row's group label: the values of the non-x axes ("dpo", or "dpo, lr 1e-6" style key=value pairs for several). */
export function groupOf(row: Row, groupKeys: readonly string[]): string {
  if (groupKeys.length === 0) return "all";
  if (groupKeys.length === 1) return String(row[groupKeys[0]]);
  return groupKeys.map((k) => `${k}=${row[k]}`).join(", ");
}

const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : NaN);

/** The best row per group for `metric` (null direction: no best). */
export function bestPerGroup(rows: readonly Row[], layout: Layout, metric: string): Best[] {
  const dir = metricDirection(metric);
  if (!dir) return [];
  const out = new Map<string, Best>();
  for (const r of rows) {
    const v = num(r[metric]);
    if (!Number.isFinite(v)) continue;
    const g = groupOf(r, layout.groupKeys);
    const cur = out.get(g);
    if (!cur || (dir === "max" ? v > cur.value : v < cur.value)) out.set(g, { group: g, x: layout.x ? (r[layout.x] as number) : String(r.cell), value: v, cell: String(r.cell) });
  }
  return [...out.values()];
}

/** The study figure: `metric` against the x axis, one line per group, the best point of each filled. */
export function studyChart(rows: readonly Row[], layout: Layout, metric: string): SweepChart {
  const groups = [...new Set(rows.map((r) => groupOf(r, layout.groupKeys)))];
  const best = bestPerGroup(rows, layout, metric);
  const title = `${metric} by ${layout.x ?? "cell"}${layout.groupKeys.length ? ` per ${layout.groupKeys.join(", ")}` : ""}`;
  if (!layout.x) {
    const svg = renderBarChart({
      title, groups: rows.map((r) => String(r.cell)), width: Math.max(STUDY_SIZE.width, 80 * rows.length), height: STUDY_SIZE.height, yLabel: metric,
      series: [{ name: metric, color: PALETTE[0], values: rows.map((r) => (Number.isFinite(num(r[metric])) ? num(r[metric]) : null)) }],
    }, "study");
    return { name: "study", title, svg, group: "study" };
  }
  const x = layout.x;
  const series: LineSeries[] = groups.map((g, i) => ({
    name: g, color: PALETTE[i % PALETTE.length], style: "eval" as const,
    points: rows.filter((r) => groupOf(r, layout.groupKeys) === g).map((r) => [num(r[x]), num(r[metric])] as Point),
  }));
  if (best.length) {
    // one marker series: the best points, each its own segment (a gap between them), drawn as filled dots
    const pts = best.map((b) => [b.x as number, b.value] as Point).sort((a, b) => a[0] - b[0]);
    const gapped: Point[] = pts.flatMap((p, i) => (i ? [[(pts[i - 1][0] + p[0]) / 2, NaN] as Point, p] : [p]));
    series.push({ name: `best ${x} per ${layout.groupKeys.join(", ") || "sweep"} (filled)`, color: "#111827", style: "train", points: gapped });
  }
  const chart: LineChart = { title, xLabel: x, series, ...STUDY_SIZE, integerX: false, xFromZero: false, yInclude: /accuracies/.test(metric) ? [0, 1] : undefined };
  return { name: "study", title, svg: renderLineChart(chart, "study"), group: "study" };
}

/**
 * Training curves overlaid per group: for each group one chart of `key` against step, one line per cell
 * (labelled by its x value). `logs` maps a cell name to its log lines.
 */
export function curveCharts(rows: readonly Row[], layout: Layout, logs: ReadonlyMap<string, readonly LogLine[]>, key: string): SweepChart[] {
  const groups = [...new Set(rows.map((r) => groupOf(r, layout.groupKeys)))];
  const out: SweepChart[] = [];
  groups.forEach((g, gi) => {
    const members = rows.filter((r) => groupOf(r, layout.groupKeys) === g);
    const series: LineSeries[] = members.map((r, i) => ({
      name: layout.x ? `${layout.x} ${r[layout.x]}` : String(r.cell), color: PALETTE[i % PALETTE.length], style: key.startsWith("eval_") ? "eval" as const : "train" as const,
      points: (logs.get(String(r.cell)) ?? []).filter((l) => key in l).map((l) => [l.step, l[key]] as Point),
    })).filter((s) => s.points.length > 0);
    if (!series.length) return;
    const title = `${key}${layout.groupKeys.length ? ` · ${g}` : ""}`;
    const name = `curves-${gi + 1}-${key.replace(/[^A-Za-z0-9_.-]+/g, "_")}`;
    out.push({ name, title, group: "curves", svg: renderLineChart({ title, xLabel: "step", series, ...CURVE_SIZE, integerX: true, xFromZero: true }, name) });
  });
  return out;
}
