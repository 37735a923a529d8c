// The demo's core at a reduced size (the full demo is minutes): the max(a,b) task's rows, and one small SFT vs ORPO
// run from a random model through the warm-up, both fine-tunings, the held-out measurements, greedy answers and the
// page. At this size the effect is not the claim; the test checks what is measured and that it is measured right.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { isCorrect, largerTask } from "../../src/demo/task.ts";
import { DEMO_SETTINGS, runOrpoDemo } from "../../src/demo/orpo-demo.ts";
import { demoTable, writeDemoReport } from "../../src/demo/report.ts";
import { scratch } from "../helpers/tiny-model.ts";

const tmp = scratch();
after(() => tmp.cleanup());

test("max task: chosen is the larger number, rejected the smaller, tens digits differ, held-out never trained on", () => {
  const t = largerTask({ min: 10, max: 99, heldOut: 100, seed: 7 });
  assert.equal(t.train.length + t.heldOut.length, 90 * 90 - 9 * 10 * 10);
  const trainPrompts = new Set(t.train.map((p) => p.prompt));
  for (const p of [...t.train, ...t.heldOut]) {
    const [a, b] = /^max\((\d+),(\d+)\)=$/.exec(p.prompt)!.slice(1).map(Number);
    assert.notEqual(Math.floor(a / 10), Math.floor(b / 10));
    assert.deepEqual([p.answer, p.wrong], [String(Math.max(a, b)), String(Math.min(a, b))]);
    assert.ok(Number(p.noise) >= 10 && Number(p.noise) <= 99);
  }
  for (const p of t.heldOut) assert.ok(!trainPrompts.has(p.prompt), p.prompt);
  assert.deepEqual(largerTask({ min: 10, max: 99, heldOut: 100, seed: 7 }), t, "seeded");
  assert.ok(isCorrect(t.heldOut[0], ` ${t.heldOut[0].answer} `) && !isCorrect(t.heldOut[0], t.heldOut[0].wrong));
  assert.throws(() => largerTask({ min: 5, max: 60, heldOut: 1, seed: 1 }), /two-digit/);
});

test("a reduced SFT vs ORPO demo: same start, curves every few steps, greedy accuracy, table and page", async () => {
  const s = {
    ...DEMO_SETTINGS, operands: { min: 10, max: 39 }, heldOut: 40,
    model: { ...DEMO_SETTINGS.model, hidden: 32, layers: 1, heads: 2, kvHeads: 1, intermediate: 64 },
    warmupSteps: 12, steps: 24, batch: 8, measureEvery: 8, threads: 1,
  };
  const r = await runOrpoDemo(tmp.dir, s, { quiet: true });
  assert.deepEqual(r.runs.map((x) => x.method), ["sft", "orpo"]);
  for (const run of r.runs) {
    assert.deepEqual(run.curve.map((m) => m.step), [0, 8, 16, 24]);
    assert.deepEqual(run.curve[0], r.before, "both runs start from the warm-up model");
    for (const m of run.curve) {
      for (const v of [m.chosen, m.rejected]) assert.ok(Number.isFinite(v) && v < 0, `${run.method} step ${m.step}: ${v}`);
      assert.ok(Math.abs(m.margin - (m.chosen - m.rejected)) < 1e-9);
    }
    assert.ok(run.accuracy >= 0 && run.accuracy <= 1);
    assert.ok(existsSync(join(run.dir, "model.safetensors")), `${run.method}: final model`);
    assert.ok(!existsSync(join(run.dir, "checkpoint-8")), "measurement checkpoints are rotated away");
  }
  // the warm-up model has seen only random answers: chosen and rejected are about equally likely to it
  assert.ok(Math.abs(r.before.margin) < 1.5, `margin before ${r.before.margin}`);
  // the odds-ratio term: ORPO ends with the rejected answers less likely than SFT leaves them
  assert.ok(r.runs[1].curve.at(-1)!.rejected < r.runs[0].curve.at(-1)!.rejected, JSON.stringify(r.runs.map((x) => x.curve.at(-1))));
  const table = demoTable(r).join("\n");
  assert.match(table, /^SFT /m);
  assert.match(table, /^ORPO /m);
  const page = writeDemoReport(r);
  const html = readFileSync(page, "utf8");
  for (const name of ["rejected_logps", "chosen_logps", "margin"]) {
    const file = join(tmp.dir, "plots", `${name}.svg`);
    const svg = readFileSync(file, "utf8");
    assert.equal((svg.match(/<path class="series eval" data-series="(SFT|ORPO)"/g) ?? []).length, 2, name);
    assert.ok(html.includes(`data-chart="${name}"`));
    const png = spawnSync("rsvg-convert", [file, "-o", `${file}.png`]);
    if (!png.error) assert.equal(png.status, 0, String(png.stderr));
  }
});
