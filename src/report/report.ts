// The run report: one self-contained HTML file (inline CSS and SVG charts, nothing fetched) with the run's
// config, first/last/best values of the main metrics, eval before vs after, the charts, the generate_during_eval
// completions per eval step and, given eval folders, MT-Bench scores (a per-category bar chart and tables); each
// chart is also written as plots/<name>.svg beside it. Every file is written under a temporary name, then renamed.
// Not the chart drawing (svg.ts, charts.ts) and not the reading of run files (runlog.ts).
import { mkdirSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import type { ScoreCell } from "../eval/mtbench.ts";
import { buildCharts, buildMtBenchChart, RUN_TOTAL_KEYS, type MtBenchChart, type ReportChart } from "./charts.ts";
import {
  readCompletions, readModelConfig, readMtBenchScores, readRunConfig, readRunLog, readTrainerState,
  type CompletionLine, type LogLine, type MtBenchScoresFile, type RunConfig,
} from "./runlog.ts";
import { escapeXml as esc, maxOf } from "./svg.ts";
import { writeFileAtomic } from "../util/durable.ts";
import { formatSeconds } from "../train/metrics.ts";

export interface ReportOptions {
  out?: string;                 // HTML path (default RUN_DIR/report.html); plots/ goes in the same folder
  evalDirs?: string[];          // folders of `preftune eval --task mt-bench` output (mt_bench_scores_MODEL.json)
}

export interface MetricSummary {
  key: string;
  first: [step: number, value: number];
  last: [step: number, value: number];
  best: [step: number, value: number] | null;   // null when neither direction is better
  better: "min" | "max" | null;
  count: number;                                // finite values
  missing: number;                              // logged as NaN / null / ±Infinity
}

/** The metrics summarised at the top, in this order, when logged. */
export const SUMMARY_KEYS = [
  "loss", "eval_loss", "rewards/accuracies", "eval_rewards/accuracies", "rewards/margins", "eval_rewards/margins",
  "rewards/chosen", "eval_rewards/chosen", "rewards/rejected", "eval_rewards/rejected", "nll_loss", "eval_nll_loss",
  "log_odds_ratio", "log_odds_chosen", "kl", "mean_token_accuracy", "eval_mean_token_accuracy", "entropy", "grad_norm", "learning_rate",
];

/** Which way is better for a metric: lower losses, higher accuracies and margins; others have no "best". */
export function betterDirection(key: string): "min" | "max" | null {
  const base = key.replace(/^eval_/, "");
  if (base === "loss" || base.endsWith("_loss")) return "min";
  if (["rewards/accuracies", "rewards/margins", "mean_token_accuracy", "log_odds_ratio", "log_odds_chosen"].includes(base)) return "max";
  return null;
}

/** First, last and best finite value of one metric over the log, or null if it never had a finite value. */
export function summarize(lines: readonly LogLine[], key: string): MetricSummary | null {
  const pts = lines.filter((l) => key in l).map((l) => [l.step, l[key]] as [number, number]);
  const ok = pts.filter((p) => Number.isFinite(p[1]));
  if (!ok.length) return null;
  const better = betterDirection(key);
  let best: [number, number] | null = null;
  if (better) for (const p of ok) if (!best || (better === "min" ? p[1] < best[1] : p[1] > best[1])) best = p;
  return { key, first: ok[0], last: ok[ok.length - 1], best, better, count: ok.length, missing: pts.length - ok.length };
}

/** A number for a table: integers whole, others to 4 significant digits, tiny or huge ones with exponents. */
export function formatValue(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v) && Math.abs(v) < 1e15) return Math.abs(v) >= 1e4 ? v.toLocaleString("en-US") : String(v);
  const a = Math.abs(v);
  if (a < 1e-3 || a >= 1e6) return v.toExponential(3);
  return String(Number(v.toPrecision(4)));
}

const CONFIG_CORE = [
  "method", "model_name_or_path", "dataset", "eval_dataset", "learning_rate", "lr_scheduler_type", "warmup_ratio", "warmup_steps",
  "beta", "loss_type", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs", "max_steps",
  "max_length", "max_prompt_length", "max_completion_length", "weight_decay", "max_grad_norm", "seed",
];
const MODEL_KEYS = ["model_type", "architectures", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size", "max_position_embeddings", "tie_word_embeddings", "torch_dtype"];

/** A setting as written (5e-6, not 5.000e-6): config values are exact, unlike logged metrics. */
function formatSetting(v: number): string {
  return v !== 0 && Math.abs(v) < 1e-4 ? v.toExponential().replace("e+", "e") : String(v);
}

function cell(v: unknown, exact = false): string {
  if (typeof v === "number") return esc(exact ? formatSetting(v) : formatValue(v));
  if (typeof v === "string") return esc(v);
  return `<code>${esc(JSON.stringify(v))}</code>`;
}

function kvTable(rows: [string, unknown][], exact = false): string {
  return `<table class="kv">${rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${cell(v, exact)}</td></tr>`).join("")}</table>`;
}

function configSection(cfg: RunConfig | null, model: Record<string, unknown> | null): string {
  const parts: string[] = [`<section><h2>Configuration</h2>`];
  if (!cfg) {
    parts.push(`<p class="note">No config file found (looked for training_args.json and preftune_config.json in the run folder and its newest checkpoint-N/).</p>`);
  } else {
    const v = cfg.values;
    const core = CONFIG_CORE.filter((k) => k in v && v[k] !== null).map((k) => [k, v[k]] as [string, unknown]);
    const rest = Object.keys(v).filter((k) => !CONFIG_CORE.includes(k)).sort().map((k) => [k, v[k]] as [string, unknown]);
    parts.push(`<p class="note">From ${esc(cfg.file)}</p>`, kvTable(core, true));
    if (rest.length) parts.push(`<details><summary>All ${rest.length} other settings</summary>${kvTable(rest, true)}</details>`);
  }
  if (model) {
    const rows = MODEL_KEYS.filter((k) => k in model).map((k) => [k, model[k]] as [string, unknown]);
    if (rows.length) parts.push(`<h3>Model (config.json)</h3>`, kvTable(rows, true));
  }
  parts.push(`</section>`);
  return parts.join("\n");
}

function overviewSection(runDir: string, source: string, lines: readonly LogLine[], state: Record<string, unknown> | null, cfg: RunConfig | null): string {
  const train = lines.filter((l) => "loss" in l), evals = lines.filter((l) => Object.keys(l).some((k) => k.startsWith("eval_")));
  const totals = [...lines].reverse().find((l) => "train_runtime" in l);
  const lastStep = maxOf(lines.map((l) => l.step));
  const epochs = lines.map((l) => l.epoch).filter(Number.isFinite);
  const maxSteps = [state?.max_steps, cfg?.values.max_steps].find((v) => typeof v === "number" && v > 0) as number | undefined;
  const tokens = [...lines].reverse().find((l) => Number.isFinite(l.num_tokens))?.num_tokens;
  const tps = train.map((l) => l.tokens_per_second).filter(Number.isFinite);
  const rows: [string, unknown][] = [
    ["run folder", runDir],
    ["log", `${source} (${lines.length} lines: ${train.length} train, ${evals.length} eval)`],
    ["steps", maxSteps ? `${lastStep} of ${maxSteps}` : lastStep],
  ];
  if (epochs.length) rows.push(["epochs", maxOf(epochs)]);
  if (tokens !== undefined) rows.push(["tokens seen (num_tokens)", tokens]);
  if (tps.length) rows.push(["mean tokens_per_second", tps.reduce((a, b) => a + b, 0) / tps.length]);
  if (totals) {
    rows.push(["train_runtime", formatSeconds(totals.train_runtime)]);
    for (const k of RUN_TOTAL_KEYS) if (k !== "train_runtime" && k !== "total_flos" && k in totals) rows.push([k, totals[k]]);
  } else {
    rows.push(["status", "no end-of-training line (train_runtime): the run is still going, was stopped, or failed"]);
  }
  return `<section><h2>Run</h2>${kvTable(rows)}</section>`;
}

const STEP = (p: [number, number]) => `<span class="step">step ${p[0]}</span>`;

/** "Before vs after" on the eval split: the first and last evaluation of the headline eval metrics. */
function evalSection(lines: readonly LogLine[]): string {
  const keys = ["eval_rewards/accuracies", "eval_rewards/margins", "eval_loss"];
  const items: string[] = [];
  for (const k of keys) {
    const s = summarize(lines, k);
    if (!s) continue;
    if (s.count === 1) { items.push(`<li><b>${esc(k)}</b>: ${formatValue(s.first[1])} (one evaluation, ${STEP(s.first)})</li>`); continue; }
    const d = s.last[1] - s.first[1];
    const delta = k === "eval_rewards/accuracies" ? `${d >= 0 ? "+" : "−"}${(Math.abs(d) * 100).toFixed(1)} points` : `${d >= 0 ? "+" : "−"}${formatValue(Math.abs(d))}`;
    items.push(`<li><b>${esc(k)}</b>: ${formatValue(s.first[1])} ${STEP(s.first)} → ${formatValue(s.last[1])} ${STEP(s.last)} <span class="delta">(${delta})</span></li>`);
  }
  if (!items.length) return "";
  const first = lines.find((l) => Object.keys(l).some((k) => k.startsWith("eval_")));
  const note = first && first.step > 0 ? `<p class="note">The first evaluation ran at step ${first.step}, after training had started; eval_on_start: true also measures the model before any update.</p>` : "";
  return `<section><h2>Eval before vs after</h2><ul class="ba">${items.join("")}</ul>${note}</section>`;
}

function summaryTable(lines: readonly LogLine[]): string {
  const rows = SUMMARY_KEYS.map((k) => summarize(lines, k)).filter((s): s is MetricSummary => s !== null);
  if (!rows.length) return "";
  const tr = rows.map((s) => `<tr><th>${esc(s.key)}</th><td>${formatValue(s.first[1])} ${STEP(s.first)}</td><td>${formatValue(s.last[1])} ${STEP(s.last)}</td>` +
    `<td>${s.best ? `${formatValue(s.best[1])} ${STEP(s.best)} <span class="dir">(${s.better})</span>` : "—"}</td>` +
    `<td class="num">${s.count}${s.missing ? ` <span class="warn">+${s.missing} NaN</span>` : ""}</td></tr>`);
  return `<section><h2>Metrics</h2><table class="metrics"><thead><tr><th>metric</th><th>first</th><th>last</th><th>best</th><th>logs</th></tr></thead><tbody>${tr.join("")}</tbody></table></section>`;
}

function chartsSection(charts: readonly ReportChart[]): string {
  const fig = (c: ReportChart) => `<figure>${c.svg}<figcaption>plots/${esc(c.name)}.svg</figcaption></figure>`;
  const main = charts.filter((c) => c.group === "main"), other = charts.filter((c) => c.group === "other");
  return [
    main.length ? `<section><h2>Charts</h2><p class="note">Solid lines: training logs (averaged over each logging interval). Dashed lines with circles: evaluations.</p><div class="grid main">${main.map(fig).join("")}</div></section>` : "",
    other.length ? `<section><h2>Other metrics</h2><div class="grid small">${other.map(fig).join("")}</div></section>` : "",
  ].join("\n");
}

/** Text in a cell, pre-wrapped; long text shows its start and folds the rest into <details>. */
function foldText(text: string): string {
  if (text === "") return `<span class="note">(empty)</span>`;
  const lines = text.split("\n");
  if (text.length <= 320 && lines.length <= 8) return `<div class="text">${esc(text)}</div>`;
  const head = lines.slice(0, 3).join("\n").slice(0, 200);
  return `<details class="fold"><summary><span class="text">${esc(head)}</span> … <span class="more">(${text.length} characters)</span></summary><div class="text">${esc(text)}</div></details>`;
}

/** generate_during_eval's completions, one table per eval step, latest first (the latest open). */
function completionsSection(c: { file: string; lines: readonly CompletionLine[] } | null): string {
  if (!c || !c.lines.length) return "";
  const steps = [...new Set(c.lines.map((l) => l.step))].sort((a, b) => b - a);
  const tables = steps.map((step, i) => {
    const rows = c.lines.filter((l) => l.step === step);
    const withRef = rows.some((r) => r.ref !== undefined);
    const body = rows.map((r) => `<tr><td>${foldText(r.prompt)}</td><td>${foldText(r.policy)}</td>${withRef ? `<td>${r.ref === undefined ? "—" : foldText(r.ref)}</td>` : ""}</tr>`).join("");
    return `<details class="evalstep"${i === 0 ? " open" : ""}><summary>step ${step} · ${rows.length} prompt${rows.length === 1 ? "" : "s"}</summary>` +
      `<table class="completions"><thead><tr><th>Prompt</th><th>Policy</th>${withRef ? "<th>Ref Model</th>" : ""}</tr></thead><tbody>${body}</tbody></table></details>`;
  });
  return `<section><h2>Eval completions</h2><p class="note">Greedy completions of the first eval prompts at each evaluation (generate_during_eval), latest first, from ${esc(basename(c.file))}. ` +
    `Policy: the model being trained; Ref Model: the frozen reference of DPO/IPO/KTO (the same as the policy at step 0).</p>${tables.join("\n")}</section>`;
}

/** Legend labels for score sets: the model id, plus the judge and then the folder where two would read the same. */
function mtBenchLabels(files: readonly MtBenchScoresFile[], evalDirs: readonly string[]): string[] {
  const folder = (file: string) => {
    const base = evalDirs.find((d) => !relative(d, file).startsWith("..")) ?? dirname(file);
    return relative(dirname(base), dirname(file));
  };
  return files.map(({ file, scores: s }) => {
    const same = files.filter((g) => g.scores.model === s.model);
    const sameJudge = same.filter((g) => g.scores.judge === s.judge);
    return [s.model, ...(sameJudge.length < same.length ? [`(${s.judge})`] : []), ...(sameJudge.length > 1 ? [`[${folder(file)}]`] : [])].join(" ");
  });
}

function mtBenchSection(files: readonly MtBenchScoresFile[], labels: readonly string[], chart: MtBenchChart | null): string {
  if (!files.length || !chart) return "";
  const f = (c: ScoreCell | undefined) => (c && c.score !== null ? `${formatValue(c.score)} <span class="step">(${c.n})</span>` : "—");
  const overall = files.map((x, i) => `<tr><th>${esc(labels[i])}</th><td>${esc(x.scores.judge)}</td><td>${f(x.scores.turn1)}</td><td>${f(x.scores.turn2)}</td><td>${f(x.scores.average)}</td><td class="num">${x.scores.dropped}</td></tr>`);
  const perCat = chart.categories.flatMap((cat) => files.map((x, i) => {
    const c = x.scores.categories[cat];
    return `<tr><th>${esc(cat)}</th><td>${esc(labels[i])}</td><td>${f(c?.turn1)}</td><td>${f(c?.turn2)}</td><td>${f(c?.average)}</td></tr>`;
  }));
  return `<section><h2>MT-Bench</h2><p class="note">Mean judge score (1-10) from ${files.map((x) => esc(x.file)).join(", ")}; judgments counted in parentheses. ` +
    `Average pools both turns' judgments (FastChat's show_result); unparsed judgments (score −1) are dropped.</p>` +
    `<figure>${chart.svg}<figcaption>plots/${esc(chart.name)}.svg</figcaption></figure>` +
    `<table class="metrics"><thead><tr><th>model</th><th>judge</th><th>turn 1</th><th>turn 2</th><th>average</th><th>dropped</th></tr></thead><tbody>${overall.join("")}</tbody></table>` +
    `<details open><summary>Per category: turn 1, turn 2, average</summary><table class="metrics"><thead><tr><th>category</th><th>model</th><th>turn 1</th><th>turn 2</th><th>average</th></tr></thead><tbody>${perCat.join("")}</tbody></table></details></section>`;
}

const CSS = `
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:#111827;margin:24px auto;max-width:1180px;padding:0 16px;line-height:1.4}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e5e7eb;padding-bottom:4px}h3{font-size:14px;margin:16px 0 6px}
table{border-collapse:collapse;font-size:13px}th,td{padding:3px 10px;border-bottom:1px solid #f3f4f6;text-align:left;vertical-align:top}
table.kv th{font-weight:500;color:#374151;white-space:nowrap}table.metrics thead th{color:#6b7280;font-weight:500;border-bottom:1px solid #d1d5db}
td.num{text-align:right}.step{color:#6b7280;font-size:11px}.dir{color:#9ca3af;font-size:11px}.warn{color:#b45309}.delta{color:#374151}
code{font-size:12px}.note{color:#6b7280;font-size:12px;margin:4px 0}ul.ba{font-size:14px;padding-left:20px}
details{margin-top:8px;font-size:13px}summary{cursor:pointer;color:#374151}
.grid{display:grid;gap:12px}.grid.main{grid-template-columns:repeat(auto-fill,minmax(540px,1fr))}.grid.small{grid-template-columns:repeat(auto-fill,minmax(360px,1fr))}
figure{margin:0;border:1px solid #e5e7eb;border-radius:6px;padding:4px;background:#fff}svg.chart{display:block;max-width:100%;height:auto}
figcaption{font-size:11px;color:#9ca3af;padding:0 8px 2px}footer{margin-top:32px;color:#9ca3af;font-size:11px}
table.completions{width:100%;table-layout:fixed;margin-top:6px}table.completions th{color:#6b7280;font-weight:500;border-bottom:1px solid #d1d5db}
.text{white-space:pre-wrap;overflow-wrap:anywhere;font-size:12px}details.fold summary .text{display:inline}.more{color:#9ca3af;font-size:11px}
details.evalstep>summary{font-weight:500}details.fold[open]>summary>.text{display:none}
`;

/**
 * Writes the report of the run in `runDir`: report.html (or `out`) plus plots/<name>.svg beside it.
 * Returns the HTML file's path. Throws a clear error for a missing folder or a missing, empty or malformed log.
 */
export function writeReport(runDir: string, opts: ReportOptions = {}): string {
  const log = readRunLog(runDir);
  const cfg = readRunConfig(runDir);
  const state = readTrainerState(runDir);
  const model = readModelConfig(runDir);
  const charts = buildCharts(log.lines);
  const completions = readCompletions(runDir);
  const evalDirs = (opts.evalDirs ?? []).map((d) => resolve(d));
  const mtFiles = evalDirs.flatMap((d) => readMtBenchScores(d)).filter((f, i, all) => all.findIndex((g) => g.file === f.file) === i);
  const mtLabels = mtBenchLabels(mtFiles, evalDirs);
  const mtChart = mtFiles.length ? buildMtBenchChart(mtFiles.map((f) => f.scores), mtLabels) : null;
  const out = resolve(opts.out ?? join(runDir, "report.html"));
  const plots = join(dirname(out), "plots");
  mkdirSync(plots, { recursive: true });
  for (const c of [...charts, ...(mtChart ? [mtChart] : [])]) writeFileAtomic(join(plots, `${c.name}.svg`), `<?xml version="1.0" encoding="UTF-8"?>\n${c.svg}\n`);

  const method = typeof cfg?.values.method === "string" ? ` · ${cfg.values.method.toUpperCase()}` : "";
  const html = [
    `<!DOCTYPE html>`, `<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">`,
    `<title>${esc(basename(resolve(runDir)))} — preftune run report</title><style>${CSS}</style></head><body>`,
    `<h1>${esc(basename(resolve(runDir)))}${esc(method)}</h1><p class="note">preftune run report</p>`,
    overviewSection(runDir, basename(log.file), log.lines, state, cfg),
    evalSection(log.lines),
    mtBenchSection(mtFiles, mtLabels, mtChart),
    summaryTable(log.lines),
    chartsSection(charts),
    completionsSection(completions),
    configSection(cfg, model),
    `<footer>Generated ${esc(new Date().toISOString())} from ${esc(log.file)}.</footer>`,
    `</body></html>`, "",
  ].join("\n");
  writeFileAtomic(out, html);
  return out;
}
