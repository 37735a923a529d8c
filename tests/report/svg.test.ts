// The SVG line-chart renderer: nice ticks and labels worked out by hand, points landing where the axis
// labels say they should, NaN gaps splitting a line, eval series dashed with markers, escaping.
import { test } from "node:test";
import assert from "node:assert/strict";
import { extentAxis, formatTick, niceAxis, renderLineChart, type LineChart } from "../../src/report/svg.ts";
import { drawnSeries, pixelOf, pointsOf, ticks } from "./svg-read.ts";

test("niceAxis: 1/2/2.5/5 steps, domain widened to whole ticks", () => {
  assert.deepEqual(niceAxis(0.03, 0.97, 5).ticks, [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceAxis(-0.37, 0.02, 4).ticks, [-0.4, -0.3, -0.2, -0.1, 0, 0.1]);
  assert.deepEqual(niceAxis(0, 5e-6, 5).ticks, [0, 1e-6, 2e-6, 3e-6, 4e-6, 5e-6]);
  assert.deepEqual(niceAxis(1.1, 3.4, 5).ticks, [1, 1.5, 2, 2.5, 3, 3.5]);
  const flat = niceAxis(3.5, 3.5, 4);   // a constant series still gets a readable range around it
  assert.ok(flat.domain[0] < 3.5 && flat.domain[1] > 3.5, JSON.stringify(flat));
  assert.deepEqual(niceAxis(NaN, NaN, 4).domain, [0, 1]);
});

test("extentAxis: step axis keeps the data extent, whole steps only", () => {
  const a = extentAxis(10, 200, 6, true);
  assert.deepEqual(a.domain, [10, 200]);
  assert.deepEqual(a.ticks, [50, 100, 150, 200]);
  assert.deepEqual(extentAxis(1, 3, 8, true).ticks, [1, 2, 3]);   // not 1, 1.5, 2, ...
  assert.deepEqual(extentAxis(5, 5, 4, true).ticks, [4, 5, 6]);
});

test("formatTick: decimals from the step, exponents for learning rates, k/M for token counts", () => {
  assert.equal(formatTick(0.25, 0.05), "0.25");
  assert.equal(formatTick(0.2, 0.05), "0.20");
  assert.equal(formatTick(-0.1, 0.1), "-0.1");
  assert.equal(formatTick(2.5, 2.5), "2.5");
  assert.equal(formatTick(150, 50), "150");
  assert.equal(formatTick(2.5e-6, 5e-7), "2.5e-6");
  assert.equal(formatTick(0, 5e-7), "0");
  assert.equal(formatTick(1_500_000, 500_000), "1.5M");
  assert.equal(formatTick(200_000, 100_000), "200k");
  assert.equal(formatTick(5000, 5000, 10_000), "5k");   // one notation per axis: 0, 5k, 10k
  assert.equal(formatTick(5000, 5000), "5000");
});

const chart = (over: Partial<LineChart> = {}): LineChart => ({
  title: "Loss", xLabel: "step", width: 560, height: 300, integerX: true,
  series: [
    { name: "loss", style: "train", color: "#2563eb", points: [[10, 0.9], [20, 0.8], [30, NaN], [40, 0.61], [50, 0.55], [60, null as unknown as number], [70, 0.4]] },
    { name: "eval_loss", style: "eval", color: "#2563eb", points: [[0, 1.0], [35, 0.7], [70, 0.45]] },
  ],
  ...over,
});

test("points land where the axis labels put their values", () => {
  const svg = renderLineChart(chart());
  const xt = ticks(svg, "x"), yt = ticks(svg, "y");
  assert.ok(xt.length >= 3 && yt.length >= 3, `ticks x ${xt.length}, y ${yt.length}`);
  // Every tick sits on one straight line through the first and last (the scale is linear).
  for (const t of [...xt, ...yt]) assert.ok(Number.isFinite(t.value), JSON.stringify(t));
  for (const t of yt) assert.ok(Math.abs(pixelOf(yt, t.value) - t.pos) < 0.02, `y tick ${t.value}`);
  for (const t of xt) assert.ok(Math.abs(pixelOf(xt, t.value) - t.pos) < 0.02, `x tick ${t.value}`);
  // Larger values are drawn higher (smaller SVG y).
  assert.ok(yt[0].pos > yt[yt.length - 1].pos && yt[0].value < yt[yt.length - 1].value);

  const drawn = pointsOf(svg, "loss");
  const finite: [number, number][] = [[10, 0.9], [20, 0.8], [40, 0.61], [50, 0.55], [70, 0.4]];
  assert.equal(drawn.length, finite.length);
  finite.forEach(([x, y], i) => {
    assert.ok(Math.abs(drawn[i][0] - pixelOf(xt, x)) < 0.02, `loss x of step ${x}: ${drawn[i][0]} vs ${pixelOf(xt, x)}`);
    assert.ok(Math.abs(drawn[i][1] - pixelOf(yt, y)) < 0.02, `loss y of ${y}: ${drawn[i][1]} vs ${pixelOf(yt, y)}`);
  });
  const ev = pointsOf(svg, "eval_loss");
  assert.ok(Math.abs(ev[1][0] - pixelOf(xt, 35)) < 0.02 && Math.abs(ev[1][1] - pixelOf(yt, 0.7)) < 0.02);
});

test("NaN and null values break the line into subpaths; a lone point gets a marker", () => {
  const svg = renderLineChart(chart());
  const loss = drawnSeries(svg).find((s) => s.name === "loss")!;
  assert.deepEqual(loss.subpaths.map((p) => p.length), [2, 2, 1]);
  const lone = [...svg.matchAll(/<circle class="marker" data-series="loss"/g)];
  assert.equal(lone.length, 1, "the isolated train point at step 70 needs a marker to be visible");
});

test("eval series are dashed with a marker per point, train series solid", () => {
  const svg = renderLineChart(chart());
  const evalPath = /<path class="series eval" data-series="eval_loss"[^>]*>/.exec(svg)![0];
  const trainPath = /<path class="series train" data-series="loss"[^>]*>/.exec(svg)![0];
  assert.match(evalPath, /stroke-dasharray/);
  assert.doesNotMatch(trainPath, /stroke-dasharray/);
  assert.equal([...svg.matchAll(/<circle class="marker" data-series="eval_loss"/g)].length, 3);
  assert.match(svg, /<g class="legend-item" data-series="loss">/);
  assert.match(svg, /<g class="legend-item" data-series="eval_loss">/);
});

test("yInclude widens the axis; names are escaped; an empty chart still renders", () => {
  const acc = renderLineChart(chart({ yInclude: [0, 1], series: [{ name: "a<&b", style: "train", color: "#000", points: [[1, 0.5], [2, 0.6]] }] }));
  const yt = ticks(acc, "y");
  assert.equal(yt[0].value, 0);
  assert.equal(yt[yt.length - 1].value, 1);
  assert.match(acc, /data-series="a&lt;&amp;b"/);
  assert.doesNotMatch(acc, /a<&b/);
  const empty = renderLineChart(chart({ series: [] }));
  assert.match(empty, /no values/);
  assert.match(empty, /<\/svg>$/);
});

test("a very long series is thinned per pixel column, keeping its ends and its spikes", () => {
  const n = 20_000;
  const pts: [number, number][] = Array.from({ length: n }, (_, i) => [i + 1, 1 + 0.1 * Math.sin(i)]);
  pts[12_345][1] = 9;   // a loss spike must stay visible
  const svg = renderLineChart(chart({ series: [{ name: "loss", style: "train", color: "#000", points: pts }] }));
  const drawn = pointsOf(svg, "loss");
  assert.ok(drawn.length < 4 * 560 && drawn.length > 100, `drawn ${drawn.length} of ${n}`);
  const xt = ticks(svg, "x"), yt = ticks(svg, "y");
  assert.ok(Math.abs(drawn[0][0] - pixelOf(xt, 1)) < 0.02 && Math.abs(drawn[drawn.length - 1][0] - pixelOf(xt, n)) < 0.02);
  const top = Math.min(...drawn.map((p) => p[1]));
  assert.ok(Math.abs(top - pixelOf(yt, 9)) < 0.02, `spike drawn at ${top}, axis puts 9 at ${pixelOf(yt, 9)}`);
  for (let i = 1; i < drawn.length; i++) assert.ok(drawn[i][0] >= drawn[i - 1][0], "x stays in order");
});
