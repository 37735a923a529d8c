// A small self-contained SVG chart renderer for run reports: line charts (nice axis ticks, gridlines, a title, a
// legend, several series, train solid, eval dashed with point markers, gaps where a value is missing) and
// grouped bar charts (one bar per series in each group, e.g. MT-Bench scores per category and model).
// Not a plotting library: two chart kinds, fixed styling, text widths estimated (no font metrics), and no
// knowledge of metric names (charts.ts decides what to draw).

export type Point = readonly [x: number, y: number];   // y NaN (or missing) = a gap in the line

export interface LineSeries {
  name: string;                 // shown in the legend; also data-series on the path
  points: readonly Point[];
  style: "train" | "eval";
  color: string;
}

export interface LineChart {
  title: string;
  xLabel: string;
  series: readonly LineSeries[];
  width: number;
  height: number;
  yInclude?: readonly number[]; // values the y axis must cover (e.g. [0, 1] for accuracies)
  integerX?: boolean;           // x is a step count: no fractional ticks
  xFromZero?: boolean;          // start the x axis at 0 when the data starts close to it
}

export interface Axis { domain: [number, number]; ticks: number[]; step: number }

const FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif";
const TICK_FONT = 11, TITLE_FONT = 14, LEGEND_FONT = 11;

/** Cleans float noise from k·step sums (0.30000000000000004 -> 0.3). */
const clean = (v: number) => Number(v.toPrecision(12));

/** Values are kept inside ±MAX_VALUE: an axis around ±1e308 must not reach Infinity. */
const MAX = Number.MAX_VALUE;
const clamp = (v: number) => Math.max(-MAX, Math.min(MAX, v));
/** More ticks than this means the step collapsed (float precision at huge magnitudes): fall back. */
const MAX_TICKS = 64;

/** A 1, 2, 2.5 or 5 × 10^k step giving about `count` intervals over [lo, hi]. */
export function niceStep(lo: number, hi: number, count: number): number {
  let rough = (hi - lo) / Math.max(1, count);
  if (!Number.isFinite(rough)) rough = hi / Math.max(1, count) - lo / Math.max(1, count);
  if (!(rough > 0) || !Number.isFinite(rough)) return 1;
  const mag = 10 ** Math.floor(Math.log10(rough));
  if (!(mag > 0) || !Number.isFinite(mag)) return rough;
  const f = rough / mag - 1e-9;   // 5e-6 / 5 is 1.0000000000000002e-6 in floats: still a step of 1
  const step = clean((f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag);
  return Number.isFinite(step) && step > 0 ? step : rough;
}

/** Widens an empty or degenerate range so a flat series still gets an axis. */
function spread(lo: number, hi: number): [number, number] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [0, 1];
  if (hi > lo) return [lo, hi];
  const d = lo === 0 ? 1 : Math.abs(lo) * 0.1;
  return [clamp(lo - d), clamp(hi + d)];
}

/** Ticks k·step for k in [a, b], or null when there would be too many or they are not distinct finite values. */
function tickRange(a: number, b: number, step: number): number[] | null {
  if (!Number.isFinite(a) || !Number.isFinite(b) || b < a || b - a > MAX_TICKS) return null;
  const ticks: number[] = [];
  for (let i = 0; i <= b - a; i++) {
    const t = clean(clamp((a + i) * step));
    if (!Number.isFinite(t) || (ticks.length && t <= ticks[ticks.length - 1])) return null;
    ticks.push(t);
  }
  return ticks.length ? ticks : null;
}

/** Value axis: the domain is widened to whole ticks so the data never touches the frame. */
export function niceAxis(lo: number, hi: number, count: number): Axis {
  [lo, hi] = spread(lo, hi);
  const step = niceStep(lo, hi, count);
  const ticks = tickRange(Math.floor(lo / step + 1e-9), Math.ceil(hi / step - 1e-9), step) ?? [lo, hi];
  return { domain: [ticks[0], ticks[ticks.length - 1]], ticks, step };
}

/** Step axis: the domain is the data's extent (no wasted width), ticks are the nice values inside it. */
export function extentAxis(lo: number, hi: number, count: number, integer: boolean): Axis {
  if (lo === hi && Number.isFinite(lo)) [lo, hi] = integer ? [clamp(lo - 1), clamp(hi + 1)] : spread(lo, hi);
  [lo, hi] = spread(lo, hi);
  let step = niceStep(lo, hi, count);
  if (integer && step < 1) step = 1;
  const a = Math.ceil(lo / step - 1e-9);
  let n = 0;   // ticks after the first that still fit
  while (n < MAX_TICKS && (a + n + 1) * step <= hi + step * 1e-9) n++;
  const ticks = (a * step <= hi + step * 1e-9 ? tickRange(a, a + n, step) : []) ?? [lo, hi];
  return { domain: [lo, hi], ticks, step };
}

/** Decimal places that show every multiple of `step` exactly. */
function decimalsOf(step: number): number {
  for (let d = 0; d < 12; d++) if (Math.abs(Math.round(step * 10 ** d) - step * 10 ** d) < 1e-6) return d;
  return 12;
}

/**
 * Tick label: plain decimals, k/M/G for large values (token counts), exponents for tiny ones (learning
 * rates). `top` is the axis's largest |tick| so one axis uses one notation (5k and 10k, not 5000 and 10k).
 */
export function formatTick(v: number, step: number, top = Math.max(Math.abs(v), step)): string {
  if (v === 0) return "0";
  if (step < 1e-3 && top < 1) return v.toExponential().replace("e+", "e");
  if (!Number.isFinite(v)) return String(v);
  if (top >= 1e15) return v.toExponential(2).replace(/\.?0+e/, "e").replace("e+", "e");   // 1e308, 5e307, 1.5e16
  if (top >= 1e4) {
    const [unit, suffix] = top >= 1e9 ? [1e9, "G"] : top >= 1e6 ? [1e6, "M"] : [1e3, "k"];
    return (v / unit).toFixed(Math.min(3, decimalsOf(clean(step / unit)))) + suffix;
  }
  return v.toFixed(decimalsOf(step));
}

/** A value's pixel position on an axis mapped linearly onto [r0, r1]. */
export function scale(axis: Axis, r0: number, r1: number): (v: number) => number {
  const [d0, d1] = axis.domain;
  const w = d1 - d0;
  const pos = (f: number) => r0 + Math.max(-1, Math.min(2, f)) * (r1 - r0);   // never far outside the drawing
  if (Number.isFinite(w)) return w > 0 ? (v) => pos((v - d0) / w) : () => (r0 + r1) / 2;
  // a domain wider than the largest double (±1e308 data): halves keep every difference finite
  const half = d1 / 2 - d0 / 2;
  return (v) => pos((v / 2 - d0 / 2) / half);
}

/** Estimated text width: 0.6 em per character is wide enough for digits and most lowercase in common sans fonts. */
export const textWidth = (s: string, size: number, em = 0.6) => s.length * size * em;

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

// Loops, not Math.min(...v): a long run's log can hold more values than a call's argument limit.
export const minOf = (v: readonly number[]) => (v.length ? v.reduce((a, b) => (b < a ? b : a)) : NaN);
export const maxOf = (v: readonly number[]) => (v.length ? v.reduce((a, b) => (b > a ? b : a)) : NaN);

const px = (v: number) => String(Math.round(v * 100) / 100);

/** Points sorted by x, finite x only; runs of finite y become separate polylines (NaN = gap). */
export function segments(points: readonly Point[]): Point[][] {
  const sorted = points.filter((p) => Number.isFinite(p[0])).sort((a, b) => a[0] - b[0]);
  const out: Point[][] = [];
  let cur: Point[] = [];
  for (const p of sorted) {
    if (Number.isFinite(p[1])) cur.push(p);
    else if (cur.length) { out.push(cur); cur = []; }
  }
  if (cur.length) out.push(cur);
  return out;
}

/** Beyond this many markers a series is drawn as a plain line (circles would merge into a smear). */
const MAX_MARKERS = 300;

/**
 * Thins a polyline (pixel coordinates, x ascending) that has more points than `max`: per pixel column it
 * keeps the first, lowest, highest and last point, so spikes and the envelope survive while a 200k-step log
 * does not become a 10 MB path. Shorter polylines come back unchanged.
 */
export function thin(seg: readonly Point[], max: number): readonly Point[] {
  if (seg.length <= max) return seg;
  const out: Point[] = [];
  for (let i = 0; i < seg.length;) {
    const col = Math.floor(seg[i][0]);
    let j = i, lo = i, hi = i;
    for (; j < seg.length && Math.floor(seg[j][0]) === col; j++) {
      if (seg[j][1] < seg[lo][1]) lo = j;
      if (seg[j][1] > seg[hi][1]) hi = j;
    }
    for (const k of [...new Set([i, lo, hi, j - 1])].sort((a, b) => a - b)) out.push(seg[k]);
    i = j;
  }
  return out;
}

interface LegendItem<S> { s: S; x: number; y: number }

/**
 * Legend entries left to right. When they do not fit on one row, the eval entries start a new row (train
 * and eval of the same metrics then line up), and any row still too wide wraps.
 */
function layoutLegend<S extends { name: string; style?: string }>(series: readonly S[], left: number, maxRight: number, top: number): { items: LegendItem<S>[]; height: number } {
  const width = (s: S) => 22 + textWidth(s.name, LEGEND_FONT, 0.56) + 12;
  const oneRow = series.reduce((a, s) => a + width(s), 0) <= maxRight - left;
  const items: LegendItem<S>[] = [];
  let x = left, y = top;
  series.forEach((s, i) => {
    const w = width(s);
    const styleBreak = !oneRow && i > 0 && s.style !== series[i - 1].style;
    if (x > left && (styleBreak || x + w > maxRight)) { x = left; y += 16; }
    items.push({ s, x, y });
    x += w;
  });
  return { items, height: series.length ? y - top + 16 : 0 };
}

/** The largest |tick| of an axis (at least its step): one notation for every label of it (formatTick's `top`). */
const axisTop = (a: Axis) => Math.max(a.step, ...a.ticks.map(Math.abs));

/** What both chart kinds lay out the same way: the y axis over `ys` and its labels, the legend, and the plot's top, left and right. */
function chartFrame<S extends { name: string; style?: string }>(ys: readonly number[], W: number, H: number, series: readonly S[], leftExtra = 0) {
  const yAxis = niceAxis(minOf(ys), maxOf(ys), Math.max(2, Math.round((H - 110) / 40)));
  const yLabels = yAxis.ticks.map((t) => formatTick(t, yAxis.step, axisTop(yAxis)));
  const legend = layoutLegend(series, 12, W - 12, 34);
  const top = 34 + legend.height + 8;
  const left = 14 + Math.max(...yLabels.map((l) => textWidth(l, TICK_FONT))) + leftExtra;
  return { yAxis, yLabels, legend, top, left, right: W - 18 };
}

/** The opening of a standalone chart document (xmlns set, so it also works as a .svg file): root, title, background. */
function svgOpen(title: string, id: string, W: number, H: number): string[] {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="${escapeXml(id)}" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="${escapeXml(FONT)}" role="img" aria-label="${escapeXml(title)}">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text class="title" x="12" y="22" font-size="${TITLE_FONT}" font-weight="600" fill="#111827">${escapeXml(title)}</text>`,
  ];
}

/**
 * The y gridlines and tick labels, the group left open (the caller closes it). Each tick is a group translated to
 * its position, so the label's value and its pixel coordinate can be read back from the file.
 */
function yGrid(f: { yAxis: Axis; yLabels: string[]; left: number; right: number }, sy: (v: number) => number): string[] {
  return [`<g class="y-axis">`, ...f.yAxis.ticks.map((t, i) => `<g class="tick" transform="translate(0,${px(sy(t))})"><line x1="${px(f.left)}" x2="${px(f.right)}" stroke="#e5e7eb"/>` +
    `<text x="${px(f.left - 6)}" y="4" text-anchor="end" font-size="${TICK_FONT}" fill="#4b5563">${escapeXml(f.yLabels[i])}</text></g>`)];
}

/** The plot's left and bottom edges. */
const frameSvg = (left: number, top: number, bottom: number, right: number) =>
  `<path class="frame" d="M${px(left)} ${px(top)}V${px(bottom)}H${px(right)}" fill="none" stroke="#6b7280"/>`;

function dashOf(s: LineSeries): string {
  return s.style === "eval" ? ` stroke-dasharray="5 3"` : "";
}

/** Renders one chart as a standalone SVG document (xmlns set, so it also works as a .svg file). */
export function renderLineChart(c: LineChart, id = "chart"): string {
  const { width: W, height: H } = c;
  const finite = (vals: number[]) => vals.filter(Number.isFinite);
  const xs = finite(c.series.flatMap((s) => s.points.map((p) => p[0])));
  const ys = finite([...c.series.flatMap((s) => s.points.filter((p) => Number.isFinite(p[0])).map((p) => p[1])), ...(c.yInclude ?? [])]);
  const f = chartFrame(ys, W, H, c.series);
  const { yAxis, legend, top, left, right } = f;
  const bottom = H - 40;

  // Steps count from 0: a first log at step 10 of 200 still gets an axis from 0, so charts line up.
  let x0 = minOf(xs);
  const x1 = maxOf(xs);
  if (c.xFromZero && x0 > 0 && x0 <= 0.1 * x1) x0 = 0;
  const xAxis = extentAxis(x0, x1, Math.max(2, Math.round((right - left) / 70)), c.integerX ?? false);
  const sx = scale(xAxis, left, right), sy = scale(yAxis, bottom, top);

  const o: string[] = svgOpen(c.title, id, W, H);

  // Legend: a short line sample in the series' style, then its name.
  o.push(`<g class="legend">`);
  for (const { s, x, y } of legend.items) {
    o.push(`<g class="legend-item" data-series="${escapeXml(s.name)}">`);
    o.push(`<line x1="${px(x)}" y1="${px(y + 4)}" x2="${px(x + 18)}" y2="${px(y + 4)}" stroke="${s.color}" stroke-width="2"${dashOf(s)}/>`);
    if (s.style === "eval") o.push(`<circle cx="${px(x + 9)}" cy="${px(y + 4)}" r="2.5" fill="#ffffff" stroke="${s.color}" stroke-width="1.5"/>`);
    o.push(`<text x="${px(x + 22)}" y="${px(y + 8)}" font-size="${LEGEND_FONT}" fill="#374151">${escapeXml(s.name)}</text></g>`);
  }
  o.push(`</g>`);

  o.push(...yGrid(f, sy));
  o.push(`</g><g class="x-axis">`);
  for (const t of xAxis.ticks) {
    o.push(`<g class="tick" transform="translate(${px(sx(t))},0)"><line y1="${px(top)}" y2="${px(bottom)}" stroke="#f3f4f6"/>` +
      `<line y1="${px(bottom)}" y2="${px(bottom + 4)}" stroke="#6b7280"/>` +
      `<text x="0" y="${px(bottom + 17)}" text-anchor="middle" font-size="${TICK_FONT}" fill="#4b5563">${escapeXml(formatTick(t, xAxis.step, axisTop(xAxis)))}</text></g>`);
  }
  o.push(`</g>`);
  o.push(frameSvg(left, top, bottom, right));
  o.push(`<text class="x-label" x="${px((left + right) / 2)}" y="${H - 6}" text-anchor="middle" font-size="${TICK_FONT}" fill="#374151">${escapeXml(c.xLabel)}</text>`);

  if (!xs.length) {
    o.push(`<text x="${px((left + right) / 2)}" y="${px((top + bottom) / 2)}" text-anchor="middle" font-size="12" fill="#9ca3af">no values</text>`);
  }

  // Series: one path per series, a new subpath (M) after each gap. Eval points get markers because they
  // are few; a train point with gaps on both sides gets one too, or it would not show at all.
  const maxPoints = 2 * Math.ceil(right - left);
  for (const s of c.series) {
    const segs = segments(s.points);
    const d = segs.map((seg) => thin(seg.map((p) => [sx(p[0]), sy(p[1])] as const), maxPoints)
      .map((p, i) => `${i ? "L" : "M"}${px(p[0])} ${px(p[1])}`).join("")).join("");
    o.push(`<path class="series ${s.style}" data-series="${escapeXml(s.name)}" d="${d}" fill="none" stroke="${s.color}" stroke-width="${s.style === "eval" ? 1.75 : 2}" stroke-linejoin="round" stroke-linecap="round"${dashOf(s)}><title>${escapeXml(s.name)}</title></path>`);
    const marked = s.style === "eval" ? segs.flat() : segs.filter((seg) => seg.length === 1).flat();
    if (marked.length > MAX_MARKERS) continue;
    for (const p of marked) {
      o.push(`<circle class="marker" data-series="${escapeXml(s.name)}" cx="${px(sx(p[0]))}" cy="${px(sy(p[1]))}" r="${s.style === "eval" ? 3 : 2}" fill="${s.style === "eval" ? "#ffffff" : s.color}" stroke="${s.color}" stroke-width="1.5"><title>${escapeXml(`${s.name} at ${c.xLabel} ${p[0]}: ${p[1]}`)}</title></circle>`);
    }
  }
  o.push(`</svg>`);
  return o.join("\n");
}

export interface BarSeries {
  name: string;                             // shown in the legend; also data-series on its bars
  color: string;
  values: readonly (number | null)[];       // one per group; null (or not finite): no bar
  notes?: readonly (string | null)[];       // per group, added to the bar's tooltip
}

export interface BarChart {
  title: string;
  groups: readonly string[];                // x-axis categories, left to right
  series: readonly BarSeries[];
  width: number;
  height: number;
  yLabel?: string;
  yInclude?: readonly number[];             // values the y axis must cover (0 is always included: bars start there)
}

/**
 * Renders a grouped bar chart as a standalone SVG document: per group, one bar per series side by side, from 0
 * to the value, labelled with the value when the bar is wide enough. Group labels turn diagonal when they do
 * not fit under their group.
 */
export function renderBarChart(c: BarChart, id = "chart"): string {
  const { width: W, height: H } = c;
  const vals = c.series.flatMap((s) => s.values).filter((v): v is number => typeof v === "number" && Number.isFinite(v));
  const f = chartFrame([0, ...vals, ...(c.yInclude ?? [])], W, H, c.series, c.yLabel ? 16 : 0);
  const { yAxis, legend, top, left, right } = f;
  const G = Math.max(1, c.groups.length), S = Math.max(1, c.series.length);
  const groupW = (right - left) / G;
  const widest = Math.max(0, ...c.groups.map((g) => textWidth(g, TICK_FONT)));
  const diagonal = widest > groupW - 6;
  const bottom = H - (diagonal ? 18 + widest * 0.6 : 30);
  const sy = scale(yAxis, bottom, top);
  const base = sy(Math.min(Math.max(0, yAxis.domain[0]), yAxis.domain[1]));
  const barW = Math.min((groupW * 0.8) / S, 40);
  const pad = (groupW - barW * S) / 2;   // the group's bars are centred under its label

  const o: string[] = svgOpen(c.title, id, W, H);
  o.push(`<g class="legend">`);
  for (const { s, x, y } of legend.items) {
    o.push(`<g class="legend-item" data-series="${escapeXml(s.name)}"><rect x="${px(x + 4)}" y="${px(y - 1)}" width="10" height="10" fill="${s.color}"/>` +
      `<text x="${px(x + 22)}" y="${px(y + 8)}" font-size="${LEGEND_FONT}" fill="#374151">${escapeXml(s.name)}</text></g>`);
  }
  o.push(`</g>`);

  o.push(...yGrid(f, sy));
  o.push(`</g><g class="x-axis">`);
  c.groups.forEach((g, i) => {
    const cx = left + (i + 0.5) * groupW;
    const label = diagonal
      ? `<text x="0" y="0" transform="translate(0,${px(bottom + 12)}) rotate(-35)" text-anchor="end" font-size="${TICK_FONT}" fill="#4b5563">${escapeXml(g)}</text>`
      : `<text x="0" y="${px(bottom + 16)}" text-anchor="middle" font-size="${TICK_FONT}" fill="#4b5563">${escapeXml(g)}</text>`;
    o.push(`<g class="tick" transform="translate(${px(cx)},0)"><line y1="${px(bottom)}" y2="${px(bottom + 4)}" stroke="#6b7280"/>${label}</g>`);
  });
  o.push(`</g>`);
  o.push(frameSvg(left, top, bottom, right));
  if (c.yLabel) o.push(`<text class="y-label" transform="translate(12,${px((top + bottom) / 2)}) rotate(-90)" text-anchor="middle" font-size="${TICK_FONT}" fill="#374151">${escapeXml(c.yLabel)}</text>`);
  if (!vals.length) o.push(`<text x="${px((left + right) / 2)}" y="${px((top + bottom) / 2)}" text-anchor="middle" font-size="12" fill="#9ca3af">no values</text>`);

  c.series.forEach((s, k) => {
    o.push(`<g class="bars" data-series="${escapeXml(s.name)}">`);
    c.groups.forEach((g, i) => {
      const v = s.values[i];
      if (typeof v !== "number" || !Number.isFinite(v)) return;
      const x = left + i * groupW + pad + k * barW;
      const y = sy(v);
      const note = s.notes?.[i];
      o.push(`<rect class="bar" data-series="${escapeXml(s.name)}" data-group="${escapeXml(g)}" data-value="${v}" x="${px(x + 0.5)}" y="${px(Math.min(y, base))}" width="${px(Math.max(1, barW - 1))}" height="${px(Math.abs(base - y))}" fill="${s.color}">` +
        `<title>${escapeXml(`${s.name} · ${g}: ${formatBarValue(v)}${note ? ` (${note})` : ""}`)}</title></rect>`);
      const label = formatBarValue(v);
      if (textWidth(label, 9, 0.55) <= barW) {
        o.push(`<text class="bar-label" x="${px(x + barW / 2)}" y="${px(Math.min(y, base) - 3)}" text-anchor="middle" font-size="9" fill="#374151">${escapeXml(label)}</text>`);
      }
    });
    o.push(`</g>`);
  });
  o.push(`</svg>`);
  return o.join("\n");
}

/** A bar's value label: two decimals at most (7.25, 6.5, 8). */
export function formatBarValue(v: number): string {
  return String(Number(v.toFixed(2)));
}
