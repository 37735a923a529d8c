// writeReport and `preftune report` on a synthetic run folder: the HTML and plots/*.svg are written, the
// series and their point counts match metrics.jsonl, values sit where the axis labels say, eval series and
// the before/after summary appear, and bad run folders give errors naming the file, line and fix.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { writeReport } from "../../src/report/report.ts";
import { registerReportCommand } from "../../src/cli/report.ts";
import { syntheticLines, writeSyntheticRun } from "./synthetic-run.ts";
import { drawnSeries, pixelOf, pointsOf, ticks } from "./svg-read.ts";

const tmp = mkdtempSync(join(tmpdir(), "preftune-report-"));
process.on("exit", () => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const runDir = () => { const d = join(tmp, `run${n++}`); mkdirSync(d); return d; };

test("writes report.html and one SVG per chart, all series with the logged number of points", () => {
  const dir = runDir();
  const run = writeSyntheticRun(dir, syntheticLines({ nanAt: 100 }));
  const file = writeReport(dir);
  assert.equal(file, join(dir, "report.html"));
  const html = readFileSync(file, "utf8");
  const plots = readdirSync(join(dir, "plots")).sort();
  for (const name of ["loss", "rewards", "rewards_margins", "rewards_accuracies", "learning_rate", "grad_norm", "nll_loss", "logps_chosen", "logps_rejected", "logits_chosen", "log_odds_ratio", "num_tokens", "eval_runtime"]) {
    assert.ok(plots.includes(`${name}.svg`), `plots/${name}.svg missing: ${plots.join(", ")}`);
  }
  // The run totals line and the axis keys are not charts.
  for (const name of ["train_runtime", "train_loss", "total_flos", "step", "epoch"]) assert.ok(!plots.includes(`${name}.svg`), name);
  // Every chart is also inline in the page, and nothing is fetched from elsewhere.
  assert.equal([...html.matchAll(/<svg xmlns/g)].length, plots.length);
  assert.doesNotMatch(html, /\s(src|href)=/);
  assert.deepEqual(html.match(/https?:\/\/[^"'\s<]+/g)?.filter((u) => u !== "http://www.w3.org/2000/svg") ?? [], []);
  // No temporary files left behind.
  assert.deepEqual([...readdirSync(dir), ...plots].filter((f) => f.includes(".tmp-")), []);

  const T = run.trainSteps.length, E = run.evalSteps.length;
  const counts = (svgName: string) => Object.fromEntries(drawnSeries(readFileSync(join(dir, "plots", svgName), "utf8")).map((s) => [s.name, s.subpaths.flat().length]));
  assert.deepEqual(counts("loss.svg"), { loss: T, eval_loss: E });
  assert.deepEqual(counts("rewards.svg"), { "rewards/chosen": T, "rewards/rejected": T, "eval_rewards/chosen": E, "eval_rewards/rejected": E });
  assert.deepEqual(counts("rewards_accuracies.svg"), { "rewards/accuracies": T, "eval_rewards/accuracies": E });
  assert.deepEqual(counts("nll_loss.svg"), { nll_loss: T, eval_nll_loss: E });
  assert.deepEqual(counts("learning_rate.svg"), { learning_rate: T });
  // grad_norm was logged as null at step 100: one point fewer and the line split there.
  const gn = drawnSeries(readFileSync(join(dir, "plots", "grad_norm.svg"), "utf8"))[0];
  assert.deepEqual(gn.subpaths.map((p) => p.length), [run.trainSteps.indexOf(100), T - run.trainSteps.indexOf(100) - 1]);
});

test("each chart's points sit at the logged values on the chart's own axes", () => {
  const dir = runDir();
  const run = writeSyntheticRun(dir);
  writeReport(dir);
  const check = (svgName: string, key: string) => {
    const svg = readFileSync(join(dir, "plots", svgName), "utf8");
    const xt = ticks(svg, "x"), yt = ticks(svg, "y");
    const want = run.lines.filter((l) => key in l).map((l) => [l.step!, l[key]!] as const);
    const got = pointsOf(svg, key);
    assert.equal(got.length, want.length, key);
    want.forEach(([x, y], i) => {
      assert.ok(Math.abs(got[i][0] - pixelOf(xt, x)) < 0.02, `${key} step ${x}: x ${got[i][0]} vs ${pixelOf(xt, x)}`);
      assert.ok(Math.abs(got[i][1] - pixelOf(yt, y)) < 0.02, `${key} step ${x}: y ${got[i][1]} vs ${pixelOf(yt, y)} (value ${y})`);
    });
  };
  check("loss.svg", "loss");
  check("loss.svg", "eval_loss");
  check("rewards.svg", "rewards/rejected");
  check("rewards_margins.svg", "eval_rewards/margins");
  check("logps_rejected.svg", "logps/rejected");
  check("num_tokens.svg", "num_tokens");   // labels 0, 200k, ... read as a reader reads them
  // The learning-rate labels are exponents (1e-6 ...): parsed the same way a reader reads them.
  check("learning_rate.svg", "learning_rate");
});

test("the page holds the config, first/last/best values and eval accuracy before vs after", () => {
  const dir = runDir();
  writeSyntheticRun(dir);
  const html = readFileSync(writeReport(dir), "utf8");
  assert.match(html, /Eval before vs after/);
  // eval_rewards/accuracies goes 0.5 (step 0) -> 0.8 (step 200) in the synthetic run.
  assert.match(html, /<b>eval_rewards\/accuracies<\/b>: 0\.5 <span class="step">step 0<\/span> → 0\.8 <span class="step">step 200<\/span> <span class="delta">\(\+30\.0 points\)/);
  assert.match(html, /<tr><th>loss<\/th><td>1\.159 <span class="step">step 10<\/span>/);
  assert.match(html, /<tr><th>learning_rate<\/th><td>5e-6<\/td><\/tr>/);
  assert.match(html, /<tr><th>method<\/th><td>orpo<\/td><\/tr>/);
  assert.match(html, /<tr><th>steps<\/th><td>200 of 200<\/td><\/tr>/);
  assert.match(html, /<tr><th>train_runtime<\/th><td>13m32s<\/td><\/tr>/);
});

test("--out puts the page and its plots/ elsewhere; a run without config, eval or totals still reports", () => {
  const dir = runDir();
  writeFileSync(join(dir, "metrics.jsonl"), [1, 2, 3].map((s) => JSON.stringify({ step: s, epoch: s / 3, loss: 1 / s, grad_norm: 1, learning_rate: 1e-5 })).join("\n"));
  const out = join(tmp, "elsewhere", "r.html");
  assert.equal(writeReport(dir, { out }), out);
  assert.ok(existsSync(join(tmp, "elsewhere", "plots", "loss.svg")));
  assert.ok(!existsSync(join(dir, "report.html")));
  const html = readFileSync(out, "utf8");
  assert.match(html, /No config file found/);
  assert.match(html, /no end-of-training line/);
  assert.doesNotMatch(html, /Eval before vs after/);
  assert.equal(pointsOf(readFileSync(join(tmp, "elsewhere", "plots", "loss.svg"), "utf8"), "loss").length, 3);
});

test("Python-style NaN/Infinity lines and a trainer_state.json log_history are read", () => {
  const dir = runDir();
  writeFileSync(join(dir, "metrics.jsonl"), '{"step": 1, "loss": NaN}\n{"step": 2, "loss": 0.5, "grad_norm": Infinity}\n{"step": 3, "loss": 0.25}\n');
  writeReport(dir);
  const s = drawnSeries(readFileSync(join(dir, "plots", "loss.svg"), "utf8"))[0];
  assert.deepEqual(s.subpaths.map((p) => p.length), [2]);

  const hf = runDir();
  writeFileSync(join(hf, "trainer_state.json"), JSON.stringify({ global_step: 2, max_steps: 4, log_history: [{ step: 1, loss: 0.7, "rewards/accuracies": 0.5 }, { step: 2, loss: 0.6, "rewards/accuracies": 0.75 }] }));
  const html = readFileSync(writeReport(hf), "utf8");
  assert.match(html, /trainer_state\.json \(2 lines/);
  assert.match(html, /2 of 4/);
});

test("errors: missing folder, no log, empty log, malformed line, line without step", () => {
  assert.throws(() => writeReport(join(tmp, "nope")), /nope: no such folder; pass a training run's output_dir/);
  const empty = runDir();
  assert.throws(() => writeReport(empty), /has no metrics\.jsonl .*output_dir/);
  writeFileSync(join(empty, "metrics.jsonl"), "\n\n");
  assert.throws(() => writeReport(empty), /metrics\.jsonl holds no log lines yet; .*logging_steps/);

  const bad = runDir();
  const lines = syntheticLines().lines.slice(0, 4).map((l) => JSON.stringify(l));
  lines[2] = lines[2].slice(0, 40);   // a cut line in the middle of the file
  writeFileSync(join(bad, "metrics.jsonl"), lines.join("\n") + "\n");
  assert.throws(() => writeReport(bad), (e: Error) => /metrics\.jsonl:3: not valid JSON/.test(e.message) && /fix or delete line 3/.test(e.message));
  assert.ok(!existsSync(join(bad, "report.html")), "no report is written from a bad log");

  writeFileSync(join(bad, "metrics.jsonl"), '{"step": 1, "loss": 1}\n[1, 2]\n');
  assert.throws(() => writeReport(bad), /metrics\.jsonl:2: expected a JSON object per line, got an array/);
  writeFileSync(join(bad, "metrics.jsonl"), '{"step": 1, "loss": 1}\n{"loss": 2}\n');
  assert.throws(() => writeReport(bad), /metrics\.jsonl:2: the log line has no numeric "step" field/);
});

test("preftune report RUN_DIR prints the path written; errors reach the caller", async () => {
  const dir = runDir();
  writeSyntheticRun(dir);
  const program = new Command().exitOverride();
  registerReportCommand(program);
  const printed: string[] = [];
  const write = process.stdout.write;
  process.stdout.write = ((s: string) => { printed.push(String(s)); return true; }) as typeof process.stdout.write;
  try {
    await program.parseAsync(["report", dir], { from: "user" });
  } finally {
    process.stdout.write = write;
  }
  assert.deepEqual(printed, [join(dir, "report.html") + "\n"]);
  assert.ok(existsSync(join(dir, "plots", "loss.svg")));
  await assert.rejects(program.parseAsync(["report", join(tmp, "missing")], { from: "user" }), /no such folder/);
});
