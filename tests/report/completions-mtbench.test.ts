// The run report's generate_during_eval completions (latest eval first, escaped, long text folded) and the
// MT-Bench section given --eval folders: scores files written in the format src/eval/mtbench.ts writes (its own
// showResult over judgment records), one bar series per model, bars at the scores the y axis says, well-formed
// SVG, turn 1 / turn 2 / average tables; and the errors for bad completions lines and eval folders.
import { test } from "node:test";
import assert from "node:assert/strict";
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { registerReportCommand } from "../../src/cli/report.ts";
import { showResult, type JudgmentRecord } from "../../src/eval/mtbench.ts";
import { writeReport } from "../../src/report/report.ts";
import { writeSyntheticRun } from "./synthetic-run.ts";
import { pixelOf, ticks } from "./svg-read.ts";

const tmp = mkdtempSync(join(tmpdir(), "preftune-report-extra-"));
process.on("exit", () => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const runDir = () => { const d = join(tmp, `run${n++}`); mkdirSync(d); writeSyntheticRun(d); return d; };

/**
 * A small XML well-formedness check: every tag is closed in order, attributes are quoted, and text and attribute
 * values hold no raw < or bare &. Returns the root element's name.
 */
function checkWellFormed(xml: string): string {
  const body = xml.replace(/^<\?xml [^?]*\?>\s*/, "").trim();
  const stack: string[] = [];
  let root = "", i = 0;
  const checkText = (t: string, where: number) => {
    assert.doesNotMatch(t, /</, `raw < at ${where}`);
    assert.doesNotMatch(t, /&(?!(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/, `bare & at ${where}: ${t.slice(0, 60)}`);
  };
  while (i < body.length) {
    const lt = body.indexOf("<", i);
    if (lt < 0) { checkText(body.slice(i), i); break; }
    checkText(body.slice(i, lt), i);
    const m = /^<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+="[^"]*")*)\s*(\/?)>/.exec(body.slice(lt));
    assert.ok(m, `malformed tag at ${lt}: ${body.slice(lt, lt + 80)}`);
    for (const a of m[3].matchAll(/="([^"]*)"/g)) checkText(a[1], lt);
    if (m[1]) assert.equal(stack.pop(), m[2], `</${m[2]}> closes the wrong element at ${lt}`);
    else {
      if (!root) root = m[2];
      else assert.ok(stack.length > 0, `a second root element <${m[2]}> at ${lt}`);
      if (!m[4]) stack.push(m[2]);
    }
    i = lt + m[0].length;
  }
  assert.deepEqual(stack, [], "unclosed elements");
  return root;
}

test("the well-formedness check itself rejects broken XML", () => {
  assert.equal(checkWellFormed(`<?xml version="1.0"?>\n<svg a="1"><g><text>a &amp; b</text></g><rect/></svg>`), "svg");
  for (const bad of ["<svg><g></svg>", "<svg><text>a < b</text></svg>", "<svg><text>a & b</text></svg>", "<svg a=1></svg>", "<svg></svg><svg></svg>"]) {
    assert.throws(() => checkWellFormed(bad), bad);
  }
});

test("completions: one table per eval step, latest first, escaped, long text folded, Ref Model only where logged", () => {
  const dir = runDir();
  const long = "word ".repeat(150) + "THE-END";
  const lines = [
    { step: 0, prompt: "Say <b>hi</b> & \"bye\"", policy: "<script>alert('x')</script>", ref: "<script>alert('x')</script>" },
    { step: 0, prompt: "Second prompt", policy: "", ref: "ref text zero" },
    { step: 50, prompt: "Say <b>hi</b> & \"bye\"", policy: "policy at fifty", ref: "<script>alert('x')</script>" },
    { step: 50, prompt: "Second prompt", policy: long, ref: "ref text zero" },
    { step: 100, prompt: "Say <b>hi</b> & \"bye\"", policy: "policy at one hundred" },
  ];
  writeFileSync(join(dir, "completions.jsonl"), lines.map((l) => JSON.stringify(l) + "\n").join("") + '{"step": 150, "prompt": "cut');
  const html = readFileSync(writeReport(dir), "utf8");
  assert.match(html, /<h2>Eval completions<\/h2>/);
  assert.doesNotMatch(html, /<script>|<b>hi/);
  assert.match(html, /&lt;script&gt;alert\(&#39;x&#39;\)&lt;\/script&gt;/);
  assert.match(html, /Say &lt;b&gt;hi&lt;\/b&gt; &amp; &quot;bye&quot;/);
  const at = (s: string) => html.indexOf(s);
  const summaries = [...html.matchAll(/<summary>step (\d+) · (\d+) prompts?<\/summary>/g)].map((m) => [Number(m[1]), Number(m[2])]);
  assert.deepEqual(summaries, [[100, 1], [50, 2], [0, 2]], "latest first; the cut-short last line is skipped");
  assert.ok(at("policy at one hundred") < at("policy at fifty"));
  assert.match(html, /<details class="evalstep" open><summary>step 100 /);
  assert.doesNotMatch(html, /<details class="evalstep" open><summary>step 50 /);
  // step 100 has no reference column, the others do
  const block = (step: number) => html.slice(at(`<summary>step ${step} `), html.indexOf("</details>", at(`<summary>step ${step} `)) + 200);
  assert.doesNotMatch(html.slice(at("<summary>step 100 "), at("<summary>step 50 ")), /Ref Model/);
  assert.match(html.slice(at("<summary>step 50 "), at("<summary>step 0 ")), /<th>Prompt<\/th><th>Policy<\/th><th>Ref Model<\/th>/);
  // the long completion is folded: its start in the summary, all of it inside the <details>
  assert.match(block(50), /<details class="fold"><summary><span class="text">word word/);
  assert.match(html, /word THE-END<\/div><\/details>/);
  assert.match(html, /\(empty\)/);
});

test("completions: a malformed line in the middle is an error naming it; no file means no section", () => {
  const dir = runDir();
  assert.doesNotMatch(readFileSync(writeReport(dir), "utf8"), /Eval completions/);
  writeFileSync(join(dir, "completions.jsonl"), '{"step": 0, "prompt": "a", "policy": "b"}\nnot json\n{"step": 2, "prompt": "a", "policy": "c"}\n');
  assert.throws(() => writeReport(dir), /completions\.jsonl:2: not valid JSON.*fix or delete line 2/);
  writeFileSync(join(dir, "completions.jsonl"), '{"step": 0, "prompt": "a"}\n');
  assert.throws(() => writeReport(dir), /completions\.jsonl:1: not a completion line/);
});

const QUESTIONS: [number, string][] = [[81, "writing"], [82, "writing"], [91, "roleplay"], [101, "reasoning"], [111, "math"], [121, "coding"], [131, "extraction"], [141, "stem"], [151, "humanities"]];
const categoryOf = new Map(QUESTIONS);

/** A judgment log and its scores file, as preftune eval --task mt-bench leaves them in its output folder. */
function writeMtBench(dir: string, model: string, score: (qid: number, turn: number) => number, skip: Set<string> = new Set()): ReturnType<typeof showResult> {
  mkdirSync(join(dir, "model_judgment"), { recursive: true });
  const records: JudgmentRecord[] = [];
  for (const [qid, cat] of QUESTIONS) {
    if (skip.has(cat)) continue;
    for (const turn of [1, 2]) {
      records.push({ question_id: qid, model, judge: ["gpt-4", turn === 1 ? "single-v1" : "single-v1-multi-turn"], user_prompt: "...", judgment: "Rating: [[x]]", score: score(qid, turn), turn, tstamp: 1 });
    }
  }
  writeFileSync(join(dir, "model_judgment", "gpt-4_single.jsonl"), records.map((r) => JSON.stringify(r) + "\n").join(""));
  const scores = showResult(records, model, "gpt-4", categoryOf);
  writeFileSync(join(dir, `mt_bench_scores_${model}.json`), JSON.stringify(scores, null, 2) + "\n");
  return scores;
}

test("--eval: an MT-Bench bar chart per category, one series per model, bars at their scores, with tables", async () => {
  const dir = runDir();
  const evalDir = join(tmp, "eval-a");
  const base = writeMtBench(join(evalDir, "base"), "base", (q, t) => 3 + (q % 5) + (t === 2 ? -1 : 0));
  const orpo = writeMtBench(join(evalDir, "orpo"), "orpo-<v2>", (q, t) => (q === 111 && t === 2 ? -1 : 5 + (q % 4)), new Set(["coding"]));
  assert.equal(orpo.dropped, 1);

  const program = new Command().exitOverride();
  registerReportCommand(program);
  const write = process.stdout.write;
  let printed = "";
  process.stdout.write = ((s: string) => { printed += s; return true; }) as typeof process.stdout.write;
  try {
    await program.parseAsync(["report", dir, "--eval", evalDir], { from: "user" });
  } finally {
    process.stdout.write = write;
  }
  assert.equal(printed.trim(), join(dir, "report.html"));
  const html = readFileSync(join(dir, "report.html"), "utf8");
  const svgFile = join(dir, "plots", "mt_bench.svg");
  assert.ok(existsSync(svgFile));
  const svg = readFileSync(svgFile, "utf8");
  assert.equal(checkWellFormed(svg), "svg");
  assert.ok(html.includes(svg.replace(/^<\?xml[^>]*>\n/, "").trim()), "the chart is inline in the page too");

  // legend and bars: base has all 8 categories, orpo 7 (no coding); category order is FastChat's
  assert.deepEqual([...svg.matchAll(/<g class="legend-item" data-series="([^"]*)"/g)].map((m) => m[1]), ["base", "orpo-&lt;v2&gt;"]);
  const bars = [...svg.matchAll(/<rect class="bar" data-series="([^"]*)" data-group="([^"]*)" data-value="([^"]*)" x="([^"]*)" y="([^"]*)" width="([^"]*)" height="([^"]*)"/g)]
    .map((m) => ({ series: m[1], group: m[2], value: Number(m[3]), x: Number(m[4]), y: Number(m[5]), h: Number(m[7]) }));
  assert.equal(bars.length, 8 + 7);
  assert.deepEqual([...new Set(bars.map((b) => b.group))], ["writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"]);
  assert.ok(!bars.some((b) => b.series !== "base" && b.group === "coding"));
  const yt = ticks(svg, "y");
  assert.ok(yt[0].value <= 0 && yt[yt.length - 1].value >= 10, "the axis covers 0-10");
  for (const b of bars) {
    const want = (b.series === "base" ? base : orpo).categories[b.group].average.score!;
    assert.ok(Math.abs(b.value - want) < 1e-12, `${b.series} ${b.group}: ${b.value} vs ${want}`);
    assert.ok(Math.abs(b.y - pixelOf(yt, want)) < 0.02, `${b.series} ${b.group}: top at ${b.y}, the axis puts ${want} at ${pixelOf(yt, want)}`);
    assert.ok(Math.abs(b.y + b.h - pixelOf(yt, 0)) < 0.02, "bars start at 0");
  }
  // within a category the models' bars sit side by side, base first
  const writing = bars.filter((b) => b.group === "writing");
  assert.ok(writing[0].series === "base" && writing[1].x > writing[0].x);

  // tables: overall turn 1 / turn 2 / average per model, and per category
  assert.match(html, /<h2>MT-Bench<\/h2>/);
  const cell = (v: number | null) => (v === null ? "—" : String(Number(v.toPrecision(4))));
  assert.ok(html.includes(`<tr><th>base</th><td>gpt-4</td><td>${cell(base.turn1.score)} <span class="step">(9)</span></td><td>${cell(base.turn2.score)} <span class="step">(9)</span></td><td>${cell(base.average.score)} <span class="step">(18)</span></td><td class="num">0</td></tr>`), "overall row of base");
  assert.ok(html.includes(`<tr><th>math</th><td>orpo-&lt;v2&gt;</td><td>${cell(orpo.categories.math.turn1.score)} <span class="step">(1)</span></td><td>—</td>`), "orpo's math turn 2 was dropped");
  assert.ok(html.includes(`<tr><th>coding</th><td>orpo-&lt;v2&gt;</td><td>—</td><td>—</td><td>—</td></tr>`));
});

test("--eval: several folders, one model twice gets its folder named; bad folders are clear errors", () => {
  const dir = runDir();
  const a = join(tmp, "eval-b"), b = join(tmp, "eval-c");
  writeMtBench(a, "same", () => 6);
  writeMtBench(b, "same", () => 8);
  writeReport(dir, { evalDirs: [a, b] });
  const svg = readFileSync(join(dir, "plots", "mt_bench.svg"), "utf8");
  checkWellFormed(svg);
  assert.deepEqual([...svg.matchAll(/<g class="legend-item" data-series="([^"]*)"/g)].map((m) => m[1]), ["same [eval-b]", "same [eval-c]"]);

  assert.throws(() => writeReport(dir, { evalDirs: [join(tmp, "nope")] }), /--eval .*nope: no such folder/);
  const empty = join(tmp, "eval-empty");
  mkdirSync(join(empty, "model_answer"), { recursive: true });
  assert.throws(() => writeReport(dir, { evalDirs: [empty] }), /no mt_bench_scores_MODEL\.json in it or its subfolders \(model_answer\).*--judge-url and --judge-model/);
  const broken = join(tmp, "eval-broken");
  mkdirSync(broken);
  writeFileSync(join(broken, "mt_bench_scores_x.json"), JSON.stringify({ model: "x", judge: "gpt-4", turn1: { score: 1 } }));
  assert.throws(() => writeReport(dir, { evalDirs: [broken] }), /mt_bench_scores_x\.json: not an MT-Bench scores file/);
  appendFileSync(join(broken, "mt_bench_scores_x.json"), "garbage");
  assert.throws(() => writeReport(dir, { evalDirs: [broken] }), /cannot read the MT-Bench scores/);
});
