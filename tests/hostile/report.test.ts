// Hostile run logs for `preftune report`: metric values of ±1e308 (the chart scale used to ask for
// Infinity-wide axes and endless tick loops, aborting V8), steps of ±1e308, values a few ulps apart at huge
// magnitudes, and a folder where metrics.jsonl should be. The report is written, or refused naming the path.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { extentAxis, niceAxis, renderLineChart } from "../../src/report/svg.ts";
import { assertNoCrash, assertRefused, cli, jsonl, scratch } from "./helpers.ts";

const tmp = scratch("preftune-hostile-report-");
after(() => tmp.cleanup());

test("report on metric values and steps of ±1e308 writes finite charts (CLI)", () => {
  const run = join(tmp.dir, "run");
  mkdirSync(run);
  writeFileSync(join(run, "metrics.jsonl"), jsonl([
    { step: 1, loss: 1e308, grad_norm: 1.7976931348623157e308, learning_rate: 5e-324 },
    { step: 2, loss: -1e308, grad_norm: -1.7976931348623157e308, learning_rate: 0 },
    { step: 3, loss: 0.5, eval_loss: 1e308 },
  ]) + '{"step": 1e308, "rewards/margins": -1e308}\n{"step": -1e308, "rewards/margins": 1e308}\n');
  const r = cli(["report", run], { timeoutMs: 30_000 });
  assertNoCrash(r);
  assert.equal(r.code, 0, r.stderr);
  const html = readFileSync(join(run, "report.html"), "utf8");
  for (const name of ["loss", "grad_norm", "rewards_margins"]) {
    const svg = readFileSync(join(run, "plots", `${name}.svg`), "utf8");
    assert.doesNotMatch(svg, /NaN|Infinity/, name);
    assert.ok(svg.length < 200_000, `${name}: ${svg.length} characters`);
  }
  assert.match(html, /1\.000e\+308|1e308/);
});

test("axes of extreme ranges finish with a few finite ticks", () => {
  const extremes = [0, 1, -1, 1e308, -1e308, Number.MAX_VALUE, -Number.MAX_VALUE, 5e-324, 1e-300, 1e20, 1e20 + 16384, 2 ** 53, 2 ** 53 + 2, 1e15, -1e-320];
  const t0 = performance.now();
  for (const lo of extremes) for (const hi of extremes) for (const count of [2, 5, 9]) {
    for (const axis of [niceAxis(Math.min(lo, hi), Math.max(lo, hi), count), extentAxis(Math.min(lo, hi), Math.max(lo, hi), count, true), extentAxis(Math.min(lo, hi), Math.max(lo, hi), count, false)]) {
      assert.ok(axis.ticks.length >= 1 && axis.ticks.length <= 66, `${lo}..${hi}: ${axis.ticks.length} ticks`);
      assert.ok(axis.ticks.every(Number.isFinite) && axis.domain.every(Number.isFinite), `${lo}..${hi}: ${axis.ticks}`);
    }
    const svg = renderLineChart({
      title: "t", xLabel: "step", width: 400, height: 240, integerX: true,
      series: [{ name: "s", style: "train", color: "#000", points: [[lo, hi], [hi, lo], [1, 2]] }],
    });
    assert.doesNotMatch(svg, /NaN|Infinity/, `${lo}..${hi}`);
  }
  assert.ok(performance.now() - t0 < 10_000);
});

test("a folder where metrics.jsonl should be is refused naming it (CLI)", () => {
  const run = join(tmp.dir, "dir-run");
  mkdirSync(join(run, "metrics.jsonl"), { recursive: true });
  assertRefused(cli(["report", run]), new RegExp(`${join(run, "metrics.jsonl").replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")} is a folder, not a file`));
});
