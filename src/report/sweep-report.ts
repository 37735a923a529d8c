// The HTML report of a sweep folder: the grid and progress, the study figure (chosen metric against β per method,
// best marked), the best cell per method, the comparison table (sweep.jsonl's rows) and training curves overlaid per
// method; charts also go to plots/<name>.svg. Works at any time, also mid-sweep. Self-contained: no network needed.
// Not the run report of one cell (report.ts; each finished cell gets its own, linked from the table).
import { existsSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { ensureDir, writeFileAtomic } from "../util/durable.ts";
import { cellDir, cellLog, columns, readManifest, sweepRows, SWEEP_FILES, TIMING_KEY, type Row } from "../sweep/table.ts";
import { formatValue } from "./report.ts";
import type { LogLine } from "./runlog.ts";
import { bestPerGroup, chooseMetric, curveCharts, metricDirection, studyChart, studyLayout, type SweepChart } from "./sweep-charts.ts";

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

const CSS = `
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:#111827;margin:24px auto;max-width:1240px;padding:0 16px;line-height:1.4}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e5e7eb;padding-bottom:4px}
table{border-collapse:collapse;font-size:12px}th,td{padding:3px 8px;border-bottom:1px solid #f3f4f6;text-align:left;vertical-align:top;white-space:nowrap}
thead th{color:#6b7280;font-weight:500;border-bottom:1px solid #d1d5db}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.best td{background:#fef9c3}.note{color:#6b7280;font-size:12px;margin:4px 0}.scroll{overflow-x:auto}
.grid{display:grid;gap:12px;grid-template-columns:repeat(auto-fill,minmax(440px,1fr))}
figure{margin:0;border:1px solid #e5e7eb;border-radius:6px;padding:4px;background:#fff}svg.chart{display:block;max-width:100%;height:auto}
figcaption{font-size:11px;color:#9ca3af;padding:0 8px 2px}footer{margin-top:32px;color:#9ca3af;font-size:11px}
.status-done{color:#15803d}.status-failed{color:#b91c1c}.status-training,.status-interrupted{color:#b45309}.status-pending{color:#9ca3af}
`;

function cellText(v: Row[string] | undefined): string {
  if (v === null || v === undefined) return "";
  return typeof v === "number" ? formatValue(v) : esc(String(v));
}

function table(rows: readonly Row[], dir: string, bestCells: ReadonlySet<string>, metric: string | null): string {
  const cols = columns(rows);
  const head = cols.map((c) => `<th>${c === metric ? `<b>${esc(c)}</b>` : esc(c)}</th>`).join("");
  const body = rows.map((r) => {
    const name = String(r.cell);
    const link = existsSync(join(cellDir(dir, name), "report.html")) ? `<a href="${esc(`${SWEEP_FILES.cells}/${encodeURIComponent(name)}/report.html`)}">${esc(name)}</a>` : esc(name);
    const tds = cols.map((c) => c === "cell" ? `<td>${link}</td>` : c === "status" ? `<td class="status-${esc(String(r.status))}">${esc(String(r.status))}</td>` : `<td class="${typeof r[c] === "number" ? "num" : ""}">${cellText(r[c])}</td>`).join("");
    return `<tr${bestCells.has(name) ? ` class="best"` : ""}>${tds}</tr>`;
  }).join("");
  return `<div class="scroll"><table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table></div>`;
}

/**
 * Writes `dir`/report.html (and plots/*.svg) for the sweep in `dir` and returns the HTML file's path. `metric`
 * overrides the manifest's choice of the study figure's metric.
 */
export function writeSweepReport(dir: string, opts: { metric?: string | null; out?: string } = {}): string {
  const manifest = readManifest(dir);
  const rows = sweepRows(dir, manifest);
  const logs = new Map<string, LogLine[]>(manifest.cells.map((c) => [c.name, cellLog(cellDir(dir, c.name))]));
  const metric = chooseMetric(rows, opts.metric ?? manifest.metric);
  const layout = studyLayout(manifest.grid);
  const charts: SweepChart[] = [];
  const best = metric ? bestPerGroup(rows, layout, metric) : [];
  if (metric && rows.some((r) => typeof r[metric] === "number")) charts.push(studyChart(rows, layout, metric));
  const curveKeys = ["loss", ...(metric?.startsWith("eval_") ? [metric] : ["eval_loss"])];
  for (const k of curveKeys) charts.push(...curveCharts(rows, layout, logs, k));

  const out = resolve(opts.out ?? join(dir, SWEEP_FILES.report));
  const plots = join(resolve(out, ".."), "plots");
  ensureDir(plots, "plots folder");
  for (const c of charts) writeFileAtomic(join(plots, `${c.name}.svg`), `<?xml version="1.0" encoding="UTF-8"?>\n${c.svg}\n`);

  const counts = new Map<string, number>();
  for (const r of rows) counts.set(String(r.status), (counts.get(String(r.status)) ?? 0) + 1);
  const fig = (c: SweepChart) => `<figure>${c.svg}<figcaption>plots/${esc(c.name)}.svg</figcaption></figure>`;
  const study = charts.filter((c) => c.group === "study"), curves = charts.filter((c) => c.group === "curves");
  const dirn = metric ? metricDirection(metric) : null;
  const bestList = best.length
    ? `<ul>${best.map((b) => `<li><b>${esc(b.group)}</b>: ${esc(layout.x ?? "cell")} ${esc(String(b.x))} — ${esc(metric!)} ${formatValue(b.value)}</li>`).join("")}</ul>`
    : `<p class="note">${metric ? (dirn ? "No finished values of the metric yet." : `${esc(metric)} has no better direction; no best is marked.`) : "No metric to compare yet."}</p>`;
  const timing = columns(rows).filter((c) => TIMING_KEY.test(c));
  const html = [
    `<!DOCTYPE html>`, `<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">`,
    `<title>${esc(basename(resolve(dir)))} — preftune sweep report</title><style>${CSS}</style></head><body>`,
    `<h1>${esc(basename(resolve(dir)))}</h1><p class="note">preftune sweep report · ${rows.length} cells: ${[...counts].map(([s, n]) => `${n} ${esc(s)}`).join(", ")}</p>`,
    `<section><h2>Grid</h2><ul>${manifest.grid.map((a) => `<li><b>${esc(a.key)}</b>: ${a.values.map((v) => esc(typeof v === "string" ? v : JSON.stringify(v))).join(", ")}</li>`).join("")}</ul>` +
      `<p class="note">Base config: ${esc(manifest.config_file ?? "command line")}; each cell trains into ${esc(SWEEP_FILES.cells)}/&lt;cell&gt;/ with the base config and its grid values.` +
      `${manifest.eval.tasks.length ? ` Every finished cell is also evaluated with preftune eval --task ${esc(manifest.eval.tasks.join(", "))}${manifest.eval.dataset ? ` (pairwise on ${esc(manifest.eval.dataset)}, summed completion log-probs against the cell's starting model)` : ""}.` : ""}</p></section>`,
    `<section><h2>Study</h2>${metric ? `<p class="note">Metric: <b>${esc(metric)}</b>${dirn ? ` (${dirn === "max" ? "higher" : "lower"} is better)` : ""}, the final value of each cell; open circles are cells, filled dots the best ${esc(layout.x ?? "cell")} of each line. Unfinished cells show their latest value.</p>` : ""}` +
      `${study.length ? `<div class="grid">${study.map(fig).join("")}</div>` : ""}<h3>Best ${esc(layout.x ?? "cell")} per ${esc(layout.groupKeys.join(", ") || "sweep")}</h3>${bestList}</section>`,
    `<section><h2>Table</h2><p class="note">${esc(SWEEP_FILES.jsonl)} / ${esc(SWEEP_FILES.csv)}: one row per cell; final train log line, final evaluation, pairwise: <code>preftune eval --task pairwise</code>, mt_bench_*: MT-Bench when judged. Highlighted: the best cell of each line of the study figure. ${timing.length ? `Timing columns (${esc(timing.join(", "))}) differ between runs of the same sweep.` : ""}</p>` +
      table(rows, dir, new Set(best.map((b) => b.cell)), metric) + `</section>`,
    curves.length ? `<section><h2>Training curves</h2><p class="note">One chart per ${esc(layout.groupKeys.join(", ") || "sweep")}, one line per cell.</p><div class="grid">${curves.map(fig).join("")}</div></section>` : "",
    `<footer>Generated ${esc(new Date().toISOString())} from ${esc(resolve(dir))}.</footer>`,
    `</body></html>`, "",
  ].join("\n");
  writeFileAtomic(out, html);
  return out;
}
