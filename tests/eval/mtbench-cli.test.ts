// `preftune eval --task mt-bench` end to end as a child process, with a real tiny model through the real engine
// and a stand-in judge: SIGKILLed once while answering and once while judging (with torn last lines added as a
// kill mid-write leaves them), then re-run: every answer and every judgment is on disk exactly once.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { makeTinyModel, scratch } from "../helpers/tiny-model.ts";
import { startJudgeServer, type Reply } from "./judge-server.ts";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const work = scratch("preftune-mtcli-");
after(work.cleanup);
const model = makeTinyModel(join(work.dir, "tiny-chat"), { tokenizer: "llama2", hidden: 64, layers: 2, maxPositions: 512 });
const out = join(work.dir, "eval");
const answerFile = join(out, "model_answer", "tiny-chat.jsonl");
const judgmentFile = join(out, "model_judgment", "judge-x_single.jsonl");

let allow = 0;            // judge requests answered right away; later ones are held (never answered)
let failFirst = false;    // the next request gets an HTTP 500 first
const server = await startJudgeServer((): Reply => {
  if (failFirst) { failFirst = false; return { status: 500 }; }
  if (allow <= 0) return { hold: true };
  allow--;
  return { text: `Rating: [[${1 + (server.requests.length % 10)}]]` };
});
after(() => server.close());

function start(): { child: ChildProcess; done: Promise<{ code: number | null; signal: string | null; out: string }> } {
  const args = [join(repo, "bin", "preftune.js"), "eval", "--task", "mt-bench", "--model", model, "--output", out,
    "--questions", "4", "--max-new-tokens", "24", "--batch-size", "1", "--threads", "1",
    "--judge-url", server.url, "--judge-model", "judge-x", "--judge-backoff", "0.01", "--judge-timeout", "30"];
  const child = spawn(process.execPath, args, { cwd: repo, stdio: ["ignore", "pipe", "pipe"] });
  let text = "";
  child.stdout!.on("data", (d) => { text += d; });
  child.stderr!.on("data", (d) => { text += d; });
  const done = new Promise<{ code: number | null; signal: string | null; out: string }>((r) => child.on("close", (code, signal) => r({ code, signal, out: text })));
  return { child, done };
}

/** Whole lines in a record log (a torn last line does not count). */
function lines(file: string): string[] {
  if (!existsSync(file)) return [];
  const t = readFileSync(file, "utf8");
  return t.slice(0, t.lastIndexOf("\n") + 1).split("\n").filter(Boolean);
}

async function killWhen(run: ReturnType<typeof start>, ready: () => boolean, what: string): Promise<void> {
  const t0 = Date.now();
  while (!ready()) {
    if (run.child.exitCode !== null) assert.fail(`the run ended before ${what}: ${(await run.done).out}`);
    if (Date.now() - t0 > 30_000) { run.child.kill("SIGKILL"); assert.fail(`timed out waiting for ${what}: ${(await run.done).out}`); }
    await new Promise((r) => setTimeout(r, 5));
  }
  run.child.kill("SIGKILL");
  const r = await run.done;
  assert.equal(r.signal, "SIGKILL", r.out);
}

test("killed while answering and while judging, then re-run: each answer and judgment exactly once", async () => {
  // 1. killed as soon as the first answer is on disk (the judge holds every request, so judging cannot finish)
  const run1 = start();
  await killWhen(run1, () => lines(answerFile).length >= 1, "the first answer");
  const firstAnswers = lines(answerFile).map((l) => JSON.parse(l));
  assert.ok(firstAnswers.length >= 1 && firstAnswers.length <= 4);
  server.release();
  appendFileSync(answerFile, '{"question_id": 84, "answer_id": "torn');   // what a kill mid-write leaves

  // 2. re-run: the missing answers are made; killed after three judgments are on disk
  allow = 3;
  const run2 = start();
  await killWhen(run2, () => lines(judgmentFile).length >= 3, "three judgments");
  server.release();
  const answers = lines(answerFile).map((l) => JSON.parse(l));
  assert.deepEqual(answers.map((a) => a.question_id).sort(), [81, 82, 83, 84]);
  assert.deepEqual(answers.slice(0, firstAnswers.length), firstAnswers, "answers from the killed run are kept, not redone");
  const firstJudgments = lines(judgmentFile);
  assert.equal(firstJudgments.length, 3);
  appendFileSync(judgmentFile, '{"question_id": 84, "model": "tiny-chat", "judge": ["judge-x", "sin');

  // 3. re-run to the end (one HTTP 500 on the way is retried)
  allow = Infinity;
  failFirst = true;
  const run3 = await start().done;
  assert.equal(run3.code, 0, run3.out);
  assert.match(run3.out, /answers: 0 written, 4 already there/);
  assert.match(run3.out, /removed an unfinished last line|judged 5 turn/);
  assert.match(run3.out, /judgments: 5 made \(0 with score -1\)/);
  assert.match(run3.out, /retry 1 of 5/);
  assert.match(run3.out, /all\s+\d+\.\d{4} \(4\)\s+\d+\.\d{4} \(4\)\s+\d+\.\d{4} \(8\)/);

  const finalAnswers = lines(answerFile).map((l) => JSON.parse(l));
  assert.deepEqual(finalAnswers, answers);
  assert.ok(readFileSync(answerFile, "utf8").endsWith("}\n"), "the torn answer line is gone");
  for (const a of finalAnswers) {
    assert.deepEqual(Object.keys(a), ["question_id", "answer_id", "model_id", "choices", "tstamp"]);
    assert.match(a.answer_id, /^[2-9A-HJ-NP-Za-km-z]{22}$/);
    assert.equal(a.model_id, "tiny-chat");
    assert.equal(a.choices.length, 1);
    assert.equal(a.choices[0].index, 0);
    assert.ok(a.choices[0].turns.length === 2 && a.choices[0].turns.every((t: unknown) => typeof t === "string"));
  }
  const judgments = lines(judgmentFile);
  assert.deepEqual(judgments.slice(0, 3), firstJudgments, "judgments from the killed run are kept");
  const keys = judgments.map((l) => { const j = JSON.parse(l); return `${j.question_id}/${j.turn}`; });
  assert.deepEqual(keys.sort(), ["81/1", "81/2", "82/1", "82/2", "83/1", "83/2", "84/1", "84/2"]);
  assert.ok(JSON.parse(readFileSync(join(out, "mt_bench_scores_tiny-chat.json"), "utf8")).average.n === 8);
});
