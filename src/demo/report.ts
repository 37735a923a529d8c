// The demo's table (printed) and page (OUT/report.html with plots/*.svg): held-out chosen and rejected log-probs of
// the SFT and ORPO runs before and after, their margin, greedy accuracy, and the log-prob curves of both runs.
// Not the experiment (orpo-demo.ts); the charts are drawn by src/report/svg.ts.
import { join } from "node:path";
import { existsSync } from "node:fs";
import { formatValue } from "../report/report.ts";
import { escapeXml, renderLineChart, type LineSeries } from "../report/svg.ts";
import { ensureDir, writeFileAtomic } from "../util/durable.ts";
import type { DemoResult, DemoRun, Measure } from "./orpo-demo.ts";

const NAMES = { sft: "SFT", orpo: "ORPO" } as const;
const f2 = (v: number) => (v >= 0 ? " " : "") + v.toFixed(2);
const pct = (v: number) => `${(100 * v).toFixed(0)}%`;
const arrow = (a: number, b: number) => (b > a ? "↑" : b < a ? "↓" : "=");

export interface DemoVerdict { sftRaisesRejected: boolean; orpoLowersRejected: boolean }

export function verdict(r: DemoResult): DemoVerdict {
  const last = (run: DemoRun) => run.curve[run.curve.length - 1];
  const [sft, orpo] = r.runs;
  return { sftRaisesRejected: last(sft).rejected > r.before.rejected, orpoLowersRejected: last(orpo).rejected < r.before.rejected };
}

/** The table as text lines. */
export function demoTable(r: DemoResult): string[] {
  const b = r.before;
  const row = (name: string, a: Measure, acc0: number, acc1: number) =>
    `${name.padEnd(6)} ${f2(b.chosen).padStart(7)} → ${f2(a.chosen).padStart(7)} ${arrow(b.chosen, a.chosen)}   ${f2(b.rejected).padStart(7)} → ${f2(a.rejected).padStart(7)} ${arrow(b.rejected, a.rejected)}   ${f2(b.margin).padStart(6)} → ${f2(a.margin).padStart(6)}   ${pct(b.pairAccuracy).padStart(4)} → ${pct(a.pairAccuracy).padStart(4)}   ${pct(acc0).padStart(4)} → ${pct(acc1).padStart(4)}`;
  return [
    `held-out: ${r.heldOut} problems never trained on; log-probs are summed over the answer tokens (2 digits + EOS), in nats, averaged over problems`,
    `       chosen (the larger)     rejected (the smaller)    margin              ranked right  greedy answer right`,
    ...r.runs.map((run) => row(NAMES[run.method], run.curve[run.curve.length - 1], r.beforeAccuracy, run.accuracy)),
  ];
}

function chart(r: DemoResult, title: string, pick: (m: Measure) => number, name: string): string {
  const colors = { sft: "#2563eb", orpo: "#dc2626" };
  const series: LineSeries[] = r.runs.map((run) => ({ name: NAMES[run.method], color: colors[run.method], style: "eval", points: run.curve.map((m) => [m.step, pick(m)] as const) }));
  return renderLineChart({ title, xLabel: "step", series, width: 520, height: 300, integerX: true, xFromZero: true }, name);
}

/** Writes OUT/report.html and OUT/plots/*.svg; returns the HTML path. */
export function writeDemoReport(r: DemoResult): string {
  const charts = [
    { name: "rejected_logps", svg: chart(r, "Held-out rejected (the smaller number) log-prob", (m) => m.rejected, "rejected_logps") },
    { name: "chosen_logps", svg: chart(r, "Held-out chosen (the larger number) log-prob", (m) => m.chosen, "chosen_logps") },
    { name: "margin", svg: chart(r, "Held-out margin (chosen − rejected)", (m) => m.margin, "margin") },
  ];
  const plots = join(r.out, "plots");
  ensureDir(plots, "plots folder");
  for (const c of charts) writeFileAtomic(join(plots, `${c.name}.svg`), `<?xml version="1.0" encoding="UTF-8"?>\n${c.svg}\n`);
  const v = verdict(r);
  const s = r.settings;
  const last = (run: DemoRun) => run.curve[run.curve.length - 1];
  const tr = r.runs.map((run) => {
    const a = last(run);
    return `<tr><th>${NAMES[run.method]}</th><td>${formatValue(r.before.chosen)} → <b>${formatValue(a.chosen)}</b></td><td>${formatValue(r.before.rejected)} → <b>${formatValue(a.rejected)}</b> ${arrow(r.before.rejected, a.rejected)}</td>` +
      `<td>${formatValue(r.before.margin)} → <b>${formatValue(a.margin)}</b></td><td>${pct(r.before.pairAccuracy)} → ${pct(a.pairAccuracy)}</td><td>${pct(r.beforeAccuracy)} → <b>${pct(run.accuracy)}</b></td>` +
      `<td>${existsSync(join(run.dir, "report.html")) ? `<a href="${escapeXml(run.method)}/report.html">run report</a>` : ""}</td></tr>`;
  }).join("");
  const finding = v.sftRaisesRejected && v.orpoLowersRejected
    ? "SFT raised the held-out rejected log-probs along with the chosen ones; ORPO lowered them while raising the chosen ones."
    : `This run did not show the expected pattern: SFT ${v.sftRaisesRejected ? "raised" : "did not raise"} the held-out rejected log-probs, ORPO ${v.orpoLowersRejected ? "lowered" : "did not lower"} them.`;
  const html = [
    `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>preftune demo: SFT vs ORPO</title>`,
    `<style>body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:#111827;margin:24px auto;max-width:1180px;padding:0 16px;line-height:1.45}`,
    `table{border-collapse:collapse;font-size:13px}th,td{padding:4px 10px;border-bottom:1px solid #f3f4f6;text-align:left}thead th{color:#6b7280;font-weight:500}`,
    `.note{color:#6b7280;font-size:13px}.grid{display:grid;gap:12px;grid-template-columns:repeat(auto-fill,minmax(500px,1fr))}figure{margin:0;border:1px solid #e5e7eb;border-radius:6px;padding:4px}svg.chart{display:block;max-width:100%;height:auto}figcaption{font-size:11px;color:#9ca3af}</style></head><body>`,
    `<h1>SFT raises the rejected answers too; ORPO pushes them down</h1>`,
    `<p>${escapeXml(finding)}</p>`,
    `<p class="note">Task: max(a,b)= for two-digit a, b (${s.operands.min}–${s.operands.max}, different tens digits); chosen = the larger number, rejected = the smaller one. ` +
      `A tiny Llama-shaped model (hidden ${s.model.hidden}, ${s.model.layers} layers, the Llama-2 tokenizer) starts from random weights and gets ${s.warmupSteps} warm-up steps on random answers (a brief pretraining on the format); ` +
      `from that model, SFT (on the correct answers) and ORPO (λ = beta = ${s.beta}) each train ${s.steps} steps of ${s.batch} problems with the same learning rate ${s.lr}, cosine schedule and order. ` +
      `Measured on ${r.heldOut} held-out problems: log-probs summed over the answer tokens (two digits and EOS), in nats; greedy answers decoded up to 3 tokens. Wall time ${r.seconds.toFixed(0)} s.</p>`,
    `<table><thead><tr><th></th><th>chosen log-prob</th><th>rejected log-prob</th><th>margin</th><th>ranked right</th><th>greedy answer right</th><th></th></tr></thead><tbody>${tr}</tbody></table>`,
    `<h2>Held-out log-probs during training</h2><p class="note">Step 0 is the warm-up model both runs start from; then a checkpoint every ${s.measureEvery} steps.</p>`,
    `<div class="grid">${charts.map((c) => `<figure>${c.svg}<figcaption>plots/${c.name}.svg</figcaption></figure>`).join("")}</div>`,
    `<p class="note">Models: ${r.runs.map((run) => `${NAMES[run.method]} ${escapeXml(run.dir)}`).join(", ")}; the warm-up model ${escapeXml(r.warmupDir)}.</p>`,
    `</body></html>`, "",
  ].join("\n");
  const file = join(r.out, "report.html");
  writeFileAtomic(file, html);
  return file;
}
