// `preftune sweep` end to end on a tiny model: a 2-method × 2-β sweep completes with pairwise eval; the same sweep
// killed in the middle (the whole process group, SIGKILL, while a cell is training) and re-run skips the finished
// cells, resumes the killed one from its checkpoint and ends with the same table as the uninterrupted sweep (timing
// columns aside); the report renders (rsvg-convert when installed, else a well-formedness check); grid errors.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { checkAxis, gridCells, splitGridArg } from "../../src/sweep/grid.ts";
import { planSweep, runSweep } from "../../src/sweep/run.ts";
import { startJudgeServer } from "../eval/judge-server.ts";
import { TIMING_KEY } from "../../src/sweep/table.ts";
import { writeSweepReport } from "../../src/report/sweep-report.ts";
import { drawnSeries } from "../report/svg-read.ts";
import { makeTinyModel, scratch, writeWordPairs } from "../helpers/tiny-model.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
let tmp: ReturnType<typeof scratch>;
let base: string;

before(() => {
  tmp = scratch();
  makeTinyModel(join(tmp.dir, "model"), { tokenizer: "llama2", hidden: 16, intermediate: 32, seed: 5 });
  writeWordPairs(join(tmp.dir, "data"), 16, 6);
  base = join(tmp.dir, "base.yaml");
  writeFileSync(base, [
    `model_name_or_path: ${join(tmp.dir, "model")}`, `dataset_name: ${join(tmp.dir, "data")}`, `dataset_cache_dir: ${join(tmp.dir, "cache")}`,
    "max_length: 64", "per_device_train_batch_size: 2", "learning_rate: 1.0e-3", "logging_steps: 2", "max_steps: 40",
    "save_steps: 4", "save_total_limit: 2", "eval_strategy: steps", "eval_steps: 20", "threads: 1", "",
  ].join("\n"));
});
after(() => tmp.cleanup());

const GRID = ["--grid", "method=dpo,kto", "--grid", "beta=0.1,0.5", "--eval", "pairwise"];

function sweep(out: string, extra: string[] = [], opts: { detached?: boolean } = {}) {
  const child = spawn(process.execPath, [join(ROOT, "bin", "preftune.js"), "sweep", base, ...GRID, "--output_dir", out, ...extra], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], detached: opts.detached });
  let text = "";
  child.stdout!.on("data", (d) => (text += d));
  child.stderr!.on("data", (d) => (text += d));
  const done = new Promise<{ code: number | null; signal: string | null; out: string }>((res) => child.on("close", (code, signal) => res({ code, signal, out: text })));
  return { child, done };
}

async function waitFor(cond: () => boolean, what: string, ms = 120_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const rowsOf = (dir: string) => readFileSync(join(dir, "sweep.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
const withoutTiming = (rows: Record<string, unknown>[]) => rows.map((r) => Object.fromEntries(Object.entries(r).filter(([k]) => !TIMING_KEY.test(k))));
const CELLS = ["method=dpo,beta=0.1", "method=dpo,beta=0.5", "method=kto,beta=0.1", "method=kto,beta=0.5"];

test("a 2-method × 2-beta sweep completes; killed mid-cell and re-run it skips finished cells and ends with the same table", async () => {
  const full = join(tmp.dir, "full");
  const a = await sweep(full).done;
  assert.equal(a.code, 0, a.out);
  const rows = rowsOf(full);
  assert.deepEqual(rows.map((r) => r.cell), CELLS);
  for (const r of rows) {
    assert.equal(r.status, "done");
    assert.equal(r.step, 40);
    for (const k of ["train_loss", "eval_loss", "pairwise:rewards/accuracies", "wall_seconds"]) assert.equal(typeof r[k], "number", `${r.cell} ${k}`);
  }
  assert.deepEqual(rows.map((r) => [r.method, r.beta]), [["dpo", 0.1], ["dpo", 0.5], ["kto", 0.1], ["kto", 0.5]]);
  // KTO on paired data: TRL's unpairing, 16 pairs -> 32 rows, 2 per step -> 16 steps an epoch
  assert.equal(rows[2].epoch, 40 / 16);
  assert.equal(rows[0].epoch, 40 / 8);
  const csv = readFileSync(join(full, "sweep.csv"), "utf8").trim().split("\n");
  assert.equal(csv.length, 5);
  assert.ok(csv[0].startsWith("cell,status,method,beta,"), csv[0]);

  // the same sweep, its whole process group killed while the third cell trains (after a checkpoint)
  const broken = join(tmp.dir, "broken");
  const k = sweep(broken, [], { detached: true });
  const third = join(broken, "cells", CELLS[2]);
  await waitFor(() => existsSync(join(third, "checkpoint-8", "trainer_state.json")), "the third cell's checkpoint-8");
  process.kill(-k.child.pid!, "SIGKILL");
  assert.equal((await k.done).signal, "SIGKILL");
  assert.ok(!existsSync(join(third, "README.md")), "the cell finished before it could be killed; the test needs a longer run");
  assert.ok(existsSync(join(broken, "cells", CELLS[1], "sweep_result.json")));

  // mid-sweep report: re-rendered from what is there
  const mid = writeSweepReport(broken);
  const midHtml = readFileSync(mid, "utf8");
  assert.match(midHtml, /2 done/);
  assert.match(midHtml, /class="status-interrupted">interrupted</);

  const b = await sweep(broken).done;
  assert.equal(b.code, 0, b.out);
  assert.match(b.out, /2 finished already, 2 to run/);
  assert.match(b.out, new RegExp(`${CELLS[2].replace(/[.]/g, "\\.")}: resuming from .*checkpoint-\\d+`));
  assert.doesNotMatch(b.out, new RegExp(`${CELLS[0].replace(/[.]/g, "\\.")}: training`));
  assert.deepEqual(withoutTiming(rowsOf(broken)).map((r) => ({ ...r })), withoutTiming(rows));

  // a third run has nothing to do
  const c = await sweep(broken).done;
  assert.equal(c.code, 0, c.out);
  assert.match(c.out, /4 finished already, 0 to run/);

  // the report: one study chart (a line per method, 2 betas each, the best marked), curves per method
  const html = readFileSync(join(full, "report.html"), "utf8");
  const plots = readdirSync(join(full, "plots")).filter((f) => f.endsWith(".svg")).sort();
  assert.ok(plots.includes("study.svg") && plots.filter((p) => p.startsWith("curves-")).length >= 2, plots.join(", "));
  for (const p of plots) {
    const svg = readFileSync(join(full, "plots", p), "utf8");
    assert.ok(html.includes(svg.slice(svg.indexOf("<svg"), svg.indexOf("<svg") + 120)), `${p} is inlined in report.html`);
    checkSvg(join(full, "plots", p), svg);
  }
  const study = readFileSync(join(full, "plots", "study.svg"), "utf8");
  const series = drawnSeries(study);
  assert.deepEqual(series.filter((s) => s.style === "eval").map((s) => [s.name, s.subpaths.flat().length]), [["dpo", 2], ["kto", 2]]);
  const best = series.find((s) => s.name.startsWith("best beta"))!;
  assert.equal(best.subpaths.length, 2, "one best point per method");
  assert.equal((html.match(/<tr class="best">/g) ?? []).length, 2);
  for (const cell of CELLS) assert.ok(existsSync(join(full, "cells", cell, "report.html")), `${cell}: its own run report`);
});

/** Renders with rsvg-convert when installed (exit 0, a non-empty PNG); otherwise checks the XML is balanced. */
function checkSvg(file: string, svg: string): void {
  assert.ok(svg.length > 500 && /<path class="series/.test(svg), `${file}: no series drawn`);
  const r = spawnSync("rsvg-convert", [file, "-o", `${file}.png`]);
  if (!r.error) {
    assert.equal(r.status, 0, `${file}: rsvg-convert failed: ${r.stderr}`);
    assert.ok(readFileSync(`${file}.png`).length > 1000, `${file}: empty render`);
    return;
  }
  const stack: string[] = [];
  for (const m of svg.replace(/<\?xml[^>]*\?>/, "").matchAll(/<(\/?)([A-Za-z][\w:-]*)[^>]*?(\/?)>/g)) {
    if (m[3]) continue;
    if (m[1]) assert.equal(stack.pop(), m[2], `${file}: </${m[2]}> closes the wrong element`);
    else stack.push(m[2]);
  }
  assert.deepEqual(stack, [], `${file}: unclosed elements`);
}

test("grid axes: an unknown key names the closest one; a wrong-typed value names the key and its type", () => {
  assert.throws(() => checkAxis("bta", ["0.1"], true, "--grid"), /--grid bta: unknown key "bta"; did you mean "beta"\?/);
  assert.throws(() => checkAxis("learning_rat", ["1e-6"], true, "--grid"), /did you mean "learning_rate"/);
  assert.throws(() => checkAxis("beta", ["0.1", "abc"], true, "--grid"), /--grid beta: "abc" is not a valid beta: beta takes float \(must be a number\)/);
  assert.throws(() => checkAxis("max_steps", ["1.5"], true, "--grid"), /max_steps takes int \(must be a whole number\)/);
  assert.throws(() => checkAxis("method", ["dpo", "dpx"], true, "--grid"), /method takes orpo \| dpo \| ipo \| kto \| simpo \| cpo \| sft/);
  assert.throws(() => checkAxis("output_dir", ["a", "b"], true, "--grid"), /cannot be a grid axis/);
  assert.throws(() => checkAxis("beta", ["0.1", "0.10"], true, "--grid"), /given twice/);
  assert.throws(() => splitGridArg("beta"), /KEY=V1,V2/);
  // typed as the command line reads them; JSON lists for values with commas
  assert.deepEqual(checkAxis("beta", ["0.01", "0.1"], true, "--grid").values, [0.01, 0.1]);
  const lists = splitGridArg('lora_target_modules=[["q_proj","v_proj"],"all-linear"]');
  assert.deepEqual(checkAxis(lists.key, lists.raw, lists.fromText, "--grid").labels, ["q_proj_v_proj", "all-linear"]);
  assert.deepEqual(gridCells([checkAxis("method", ["dpo", "ipo"], true, "g"), checkAxis("beta", ["0.1", "0.3"], true, "g")]).map((c) => c.name),
    ["method=dpo,beta=0.1", "method=dpo,beta=0.3", "method=ipo,beta=0.1", "method=ipo,beta=0.3"]);
});

test("every cell's config is checked before anything runs; a cell folder started with another config is refused", () => {
  const out = join(tmp.dir, "plan");
  // beta does not apply to sft: the cell names the problem
  assert.throws(() => planSweep({ configFile: base, overrides: ["--output_dir", out], grid: ["method=sft,dpo", "beta=0.2"] }),
    /1 of 2 cells cannot run:[\s\S]*cell method=sft,beta=0\.2[\s\S]*beta does not apply to method sft/);
  assert.throws(() => planSweep({ configFile: base, overrides: [], grid: ["beta=0.2"] }), /set output_dir/);
  const plan = planSweep({ configFile: base, overrides: ["--output_dir", out, "--method", "dpo"], grid: ["beta=0.2,0.4"], parallel: 2 });
  assert.equal(plan.cells.length, 2);
  assert.equal(plan.configs.get("beta=0.2")!.threads, 1, "the base threads (1) split between 2 cells, at least 1 each");
  assert.equal(plan.configs.get("beta=0.4")!.output_dir, join(out, "cells", "beta=0.4"));
  mkdirSync(join(out, "cells", "beta=0.2"), { recursive: true });
  writeFileSync(join(out, "cells", "beta=0.2", "sweep_config.json"), JSON.stringify({ ...plan.configs.get("beta=0.2"), learning_rate: 5e-7 }));
  assert.throws(() => planSweep({ configFile: base, overrides: ["--output_dir", out, "--method", "dpo"], grid: ["beta=0.2,0.4"] }),
    /cells\/beta=0\.2 was started with another config \(learning_rate: 5e-7 there, 0\.001 now\)/);
});

test("preftune sweep: --help explains every option with its default; a bad grid fails before anything runs", () => {
  const help = spawnSync(process.execPath, [join(ROOT, "bin", "preftune.js"), "sweep", "--help"], { cwd: ROOT, encoding: "utf8" });
  assert.equal(help.status, 0);
  for (const o of ["--grid", "--parallel", "--eval ", "--eval-dataset", "--metric", "--judge-url", "--judge-model", "--judge-api-key-env", "--questions", "--max-new-tokens"]) assert.ok(help.stdout.includes(o), o);
  assert.match(help.stdout, /\(default: 1\)/);
  const out = join(tmp.dir, "bad");
  const r = spawnSync(process.execPath, [join(ROOT, "bin", "preftune.js"), "sweep", base, "--grid", "bta=0.1", "--output_dir", out], { cwd: ROOT, encoding: "utf8" });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /did you mean "beta"/);
  assert.ok(!existsSync(out), "nothing written");
});

test("--eval mt-bench with a judge: every cell's answers are judged, mt_bench_score becomes the study's metric", async () => {
  const judge = await startJudgeServer(() => ({ text: "The answer is short. Rating: [[6]]" }));
  try {
    const out = join(tmp.dir, "mt");
    const lines: string[] = [];
    const r = await runSweep({
      configFile: base, overrides: ["--output_dir", out, "--method", "dpo", "--max_steps", "2", "--eval_strategy", "no"], grid: ["beta=0.1,0.3"],
      eval: { tasks: ["mt-bench"], judgeUrl: judge.url, judgeModel: "judge-1", questions: 1, maxNewTokens: 2 }, print: (l) => lines.push(l), cellOutput: "log",
    });
    assert.equal(r.exitCode, 0, lines.join("\n"));
    const rows = rowsOf(out);
    assert.deepEqual(rows.map((x) => [x.cell, x.mt_bench_score, x.mt_bench_turn1, x.mt_bench_turn2]), [["beta=0.1", 6, 6, 6], ["beta=0.3", 6, 6, 6]]);
    assert.equal(judge.requests.length, 4, "2 cells × 1 question × 2 turns");
    assert.match(readFileSync(join(out, "report.html"), "utf8"), /Metric: <b>mt_bench_score<\/b> \(higher is better\)/);
  } finally {
    await judge.close();
  }
});

test("a cell that fails is recorded (status failed, its output tail), the others still run, and the sweep exits 1", async () => {
  const out = join(tmp.dir, "failing");
  const lines: string[] = [];
  const opts = {
    configFile: base, overrides: ["--output_dir", out, "--method", "orpo", "--max_steps", "2", "--eval_strategy", "no"], grid: ["max_length=32,4096"],
    print: (l: string) => lines.push(l), cellOutput: "log" as const,
  };
  const r = await runSweep(opts);
  assert.equal(r.exitCode, 1);
  assert.deepEqual(r.failed, ["max_length=4096"]);
  const rows = rowsOf(out);
  assert.deepEqual(rows.map((x) => [x.cell, x.status]), [["max_length=32", "done"], ["max_length=4096", "failed"]]);
  const failure = JSON.parse(readFileSync(join(out, "cells", "max_length=4096", "sweep_failure.json"), "utf8"));
  assert.equal(failure.during, "training");
  assert.match(failure.output_tail, /max_length 4096 is more than .*max_position_embeddings/);
  assert.match(lines.join("\n"), /max_length=4096: training failed \(exit code 1\)/);
  // run again: the finished cell is skipped, the failed one tried again (and fails again)
  const again = await runSweep({ ...opts, print: (l: string) => lines.push(l) });
  assert.deepEqual([again.skipped, again.failed], [["max_length=32"], ["max_length=4096"]]);
});
