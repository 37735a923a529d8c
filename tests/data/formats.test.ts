// TRL formats: extract_prompt (incl. the space rule), unpair order, every shipped dataset in its stated
// format, and bad input: each kind of bad row is an error naming file, line, field and fix, or is skipped
// and counted with skip_bad_rows. No tokenizer here.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DataError, extractPrompt, loadExamples, unpairExamples, type PairExample } from "../../src/data/index.ts";

const tmp = mkdtempSync(join(tmpdir(), "preftune-formats-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
const dataDir = (name: string) => new URL(`../../data/${name}`, import.meta.url).pathname;

test("extract_prompt: per character with the space going to the completions, per message for conversations", () => {
  assert.deepEqual(extractPrompt("Q: sky? A: blue", "Q: sky? A: green"), { prompt: "Q: sky? A:", chosen: " blue", rejected: " green" });
  assert.deepEqual(extractPrompt("The sky is blue", "The sky is bright"), { prompt: "The sky is b", chosen: "lue", rejected: "right" });
  // neither differs within the shorter: TRL's loop leaves the split at the shorter one's last element
  assert.deepEqual(extractPrompt("abc", "abcd"), { prompt: "ab", chosen: "c", rejected: "cd" });
  const u = { role: "user", content: "What color is the sky?" };
  const c = { role: "assistant", content: "It is blue." };
  const r = { role: "assistant", content: "It is green." };
  assert.deepEqual(extractPrompt([u, c], [u, r]), { prompt: [u], chosen: [c], rejected: [r] });
});

test("unpair: per block of 1000 pairs, all chosen (true) rows then all rejected (false) rows, as TRL's batched map", () => {
  const ref = { file: "f", row: 1, unit: "line" as const };
  const pairs: PairExample[] = Array.from({ length: 1002 }, (_, i) => ({ ref: { ...ref, row: i + 1 }, prompt: `p${i}`, chosen: `c${i}`, rejected: `r${i}` }));
  const u = unpairExamples(pairs);
  assert.equal(u.length, 2004);
  assert.deepEqual(u.slice(0, 2).map((x) => [x.prompt, x.completion, x.label]), [["p0", "c0", true], ["p1", "c1", true]]);
  assert.deepEqual([u[999].completion, u[1000].completion, u[1999].completion], ["c999", "r0", "r999"]);
  assert.deepEqual(u.slice(2000).map((x) => [x.completion, x.label]), [["c1000", true], ["c1001", true], ["r1000", false], ["r1001", false]]);
});

test("every dataset in data/ loads in its stated format", async () => {
  const cases = [
    { path: dataDir("hh-rlhf-harmless-sample"), split: "train", kind: "paired", conv: true, implicit: false, n: 1599 },
    { path: dataDir("hh-rlhf-harmless-sample"), split: "test", kind: "paired", conv: true, implicit: false, n: 200 },
    { path: dataDir("hh-rlhf-harmless-sample/raw-test.jsonl"), kind: "paired", conv: false, implicit: true, n: 200 },
    { path: dataDir("hh-rlhf-kto-unpaired"), split: "train", kind: "unpaired", conv: true, implicit: false, n: 3198 },
    { path: dataDir("hh-rlhf-kto-unpaired"), split: "test", kind: "unpaired", conv: true, implicit: false, n: 400 },
    { path: dataDir("llamafactory-dpo-en-demo"), kind: "paired", conv: true, implicit: false, n: 299 },
    { path: dataDir("llamafactory-kto-en-demo/train.jsonl"), kind: "unpaired", conv: true, implicit: false, n: 300 },
  ] as const;
  for (const c of cases) {
    const d = await loadExamples(c.path, { split: "split" in c ? c.split : undefined });
    const what = `${c.path} ${"split" in c ? c.split : ""}`;
    assert.equal(d.kind, c.kind, what);
    assert.equal(d.conversational, c.conv, what);
    assert.equal(d.implicitPrompt, c.implicit, what);
    assert.equal(d.paired.length + d.unpaired.length, c.n, what);
    assert.equal(d.badRows, 0, what);
  }
  const raw = await loadExamples(dataDir("hh-rlhf-harmless-sample/raw-test.jsonl"));
  const conv = await loadExamples(dataDir("hh-rlhf-harmless-sample"), { split: "test" });
  const rawLines = readFileSync(dataDir("hh-rlhf-harmless-sample/raw-test.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  let atAssistant = 0;
  raw.paired.forEach((p, i) => {
    assert.equal((p.prompt as string) + (p.chosen as string), rawLines[i].chosen);
    assert.equal((p.prompt as string) + (p.rejected as string), rawLines[i].rejected);
    // extract_prompt is per character: when both answers differ from their first letter, the prompt ends at
    // "Assistant:" and the space goes to the answers, which are then the explicit set's answers
    if ((p.prompt as string).endsWith("\n\nAssistant:")) {
      atAssistant++;
      assert.match(p.chosen as string, /^ /);
      assert.equal((p.chosen as string).trim(), (conv.paired[i].chosen as { content: string }[])[0].content);
    }
  });
  assert.ok(atAssistant > 150, `${atAssistant} prompts end at "Assistant:"`);
  // mt-bench holds questions only: not a preference set, and the error says which columns it found
  await assert.rejects(loadExamples(dataDir("mt-bench/question.jsonl")), /question\.jsonl, line 1: found columns \["question_id","category","turns".*but none of "chosen"/);
  const kto = await loadExamples(dataDir("llamafactory-kto-en-demo"));
  assert.deepEqual([kto.unpaired.filter((u) => u.label).length, kto.unpaired.filter((u) => !u.label).length], [150, 150]);
  const lf = await loadExamples(dataDir("llamafactory-dpo-en-demo"));
  assert.equal(lf.paired.filter((p) => (p.prompt as { role: string }[])[0].role === "system").length, 80);
});

const good = { prompt: [{ role: "user", content: "Hi" }], chosen: [{ role: "assistant", content: "Hello" }], rejected: [{ role: "assistant", content: "Go" }] };
const badRows: { name: string; line: string; field: RegExp | null; problem: RegExp }[] = [
  { name: "missing column", line: JSON.stringify({ prompt: good.prompt, chosen: good.chosen }), field: /field "rejected"/, problem: /missing column/ },
  { name: "wrong type", line: JSON.stringify({ ...good, chosen: 42 }), field: /field "chosen"/, problem: /expected a list of \{role, content\} messages.*got a number/ },
  { name: "empty text", line: JSON.stringify({ ...good, rejected: [{ role: "assistant", content: "  " }] }), field: /field "rejected\[0\]\.content"/, problem: /empty text/ },
  { name: "roles out of order", line: JSON.stringify({ ...good, prompt: [{ role: "user", content: "a" }, { role: "system", content: "b" }, { role: "user", content: "c" }] }), field: /field "prompt\[1\]\.role"/, problem: /roles out of order: a system message is only allowed first/ },
  { name: "two user turns", line: JSON.stringify({ ...good, prompt: [{ role: "user", content: "a" }, { role: "user", content: "c" }] }), field: /field "prompt\[1\]\.role"/, problem: /two user messages in a row/ },
  { name: "completion from the user", line: JSON.stringify({ ...good, chosen: [{ role: "user", content: "x" }] }), field: /field "chosen\[0\]\.role"/, problem: /must start with an assistant message/ },
  { name: "unknown role", line: JSON.stringify({ ...good, prompt: [{ role: "human", content: "a" }] }), field: /field "prompt\[0\]\.role"/, problem: /unknown role "human".*human→user/ },
  { name: "not JSON", line: "{\"prompt\": [", field: null, problem: /not valid JSON/ },
  { name: "not an object", line: "[1, 2]", field: null, problem: /expected a JSON object, got a list/ },
];

test("bad paired rows: an error with file, 1-based line, field and what to do; skip_bad_rows skips and counts them", async () => {
  for (const b of badRows) {
    const f = join(tmp, "bad.jsonl");
    writeFileSync(f, [JSON.stringify(good), JSON.stringify(good), b.line, JSON.stringify(good)].join("\n") + "\n");
    await assert.rejects(loadExamples(f), (e: unknown) => {
      assert.ok(e instanceof DataError, b.name);
      assert.match(e.message, /bad\.jsonl, line 3/, b.name);
      if (b.field) assert.match(e.message, b.field, b.name);
      assert.match(e.message, b.problem, b.name);
      assert.match(e.message, /\. [A-Z].*\(or set skip_bad_rows to skip such rows\)$/, `${b.name}: a fix`);
      assert.equal(e.row, 3);
      return true;
    });
    const skipped = await loadExamples(f, { skip_bad_rows: true });
    assert.equal(skipped.paired.length, 3, b.name);
    assert.equal(skipped.badRows, 1, b.name);
    assert.match(skipped.badRowMessages[0], /line 3/);
  }
});

test("bad unpaired rows: a label that is not a boolean, a standard row in a conversational file, a missing label", async () => {
  const ok = { prompt: "Q", completion: "A", label: true };
  const cases = [
    { line: JSON.stringify({ ...ok, label: "true" }), re: /line 2, field "label": expected true or false, got a string "true"\. Write the label as a JSON boolean/ },
    { line: JSON.stringify({ ...ok, label: 1 }), re: /line 2, field "label": expected true or false, got a number 1/ },
    { line: JSON.stringify({ prompt: "Q", completion: "A" }), re: /line 2, field "label": missing column/ },
    { line: JSON.stringify({ ...ok, completion: [{ role: "assistant", content: "A" }] }), re: /line 2, field "completion": expected a string like the first row, got a list/ },
    { line: JSON.stringify({ ...ok, prompt: "" }), re: /line 2, field "prompt": empty text/ },
  ];
  for (const c of cases) {
    const f = join(tmp, "bad-unpaired.jsonl");
    writeFileSync(f, [JSON.stringify(ok), c.line].join("\n"));
    await assert.rejects(loadExamples(f), c.re);
    const s = await loadExamples(f, { skip_bad_rows: true });
    assert.deepEqual([s.unpaired.length, s.badRows], [1, 1]);
  }
});

test("dataset-level problems: unknown columns, custom column names, an empty file, implicit rows sharing nothing", async () => {
  const f = join(tmp, "cols.jsonl");
  writeFileSync(f, JSON.stringify({ question: "Q", good: "A", bad: "B" }) + "\n");
  await assert.rejects(loadExamples(f), /cols\.jsonl, line 1: found columns \["question","good","bad"\].*pass chosen_column/);
  const d = await loadExamples(f, { prompt_column: "question", chosen_column: "good", rejected_column: "bad" });
  assert.deepEqual([d.paired[0].prompt, d.paired[0].chosen, d.paired[0].rejected], ["Q", "A", "B"]);
  const e = join(tmp, "empty.jsonl");
  writeFileSync(e, "\n\n");
  await assert.rejects(loadExamples(e), /empty\.jsonl: the dataset is empty/);
  const i = join(tmp, "implicit.jsonl");
  writeFileSync(i, JSON.stringify({ chosen: "yes", rejected: "no" }) + "\n");
  await assert.rejects(loadExamples(i), /line 1, field "chosen": chosen and rejected share no prefix.*Add a "prompt" column/);
});

test("UltraFeedback-binarized rows (a string prompt beside full conversations): the prompt is extracted from chosen and rejected, as TRL's maybe_extract_prompt does", async () => {
  const f = join(tmp, "ultrafeedback.jsonl");
  const row = (q: string, good: string, bad: string) => ({
    prompt: q, prompt_id: "x", score_chosen: 8, score_rejected: 3,
    chosen: [{ role: "user", content: q }, { role: "assistant", content: good }],
    rejected: [{ role: "user", content: q }, { role: "assistant", content: bad }],
  });
  writeFileSync(f, [row("What is 2+2?", "4", "5"), row("Capital of France?", "Paris", "Lyon")].map((r) => JSON.stringify(r)).join("\n") + "\n");
  const d = await loadExamples(f);
  assert.equal(d.implicitPrompt, true);
  assert.equal(d.conversational, true);
  // what trl 1.13's maybe_extract_prompt returns for the first row
  assert.deepEqual([d.paired[0].prompt, d.paired[0].chosen, d.paired[0].rejected], [
    [{ role: "user", content: "What is 2+2?" }], [{ role: "assistant", content: "4" }], [{ role: "assistant", content: "5" }],
  ]);
  // a later row whose prompt is already a conversation (chosen's format) does not fit the first row's reading
  const g = join(tmp, "mixed.jsonl");
  const second = { ...row("Q2", "a", "b"), prompt: [{ role: "user", content: "Q2" }] };
  writeFileSync(g, [row("Q1", "a", "b"), second].map((r) => JSON.stringify(r)).join("\n") + "\n");
  await assert.rejects(loadExamples(g), /line 2, field "prompt": this row's prompt is in chosen's format, but the first row's was missing or in another format/);
});
