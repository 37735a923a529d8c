// MT-Bench judging against a scripted local judge, with answers already on disk (no model is loaded): the right
// FastChat prompt per category and turn, retries of 500s and timeouts, unparseable and failed turns recorded as
// -1 with an error, every (question, turn) judged exactly once across re-runs, and show_result's scores.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MT_BENCH_DATA, readJudgePrompts, readQuestions, readReferenceAnswers, runMtBench, type JudgmentRecord, type MtBenchOptions } from "../../src/eval/mtbench.ts";
import { fillTemplate } from "../../src/eval/judge.ts";
import { scratch } from "../helpers/tiny-model.ts";
import { startJudgeServer, type JudgeRequest, type Reply } from "./judge-server.ts";

const work = scratch("preftune-mtjudge-");
after(work.cleanup);
const questions = new Map(readQuestions(join(MT_BENCH_DATA, "question.jsonl")).map((q) => [q.question_id, q]));
const prompts = readJudgePrompts(join(MT_BENCH_DATA, "judge_prompts.jsonl"));
const refs = readReferenceAnswers(join(MT_BENCH_DATA, "reference_answer", "gpt-4.jsonl"));
const IDS = [81, 82, 101, 111];

// answers with braces that str.format-style chained replacement would wrongly expand
const answers: Record<number, [string, string]> = {
  81: ["Aloha! Write {answer} and {question} literally.", "Second {answer_1} turn {{x}}"],
  82: ["Dear supervisor, ...", "It is concise."],
  101: ["You are in second place.", "You are second to last."],
  111: ["The area is 3.", "The circle has radius sqrt(10)."],
};
const out = join(work.dir, "out");
mkdirSync(join(out, "model_answer"), { recursive: true });
writeFileSync(join(out, "model_answer", "m1.jsonl"), IDS.map((id) => JSON.stringify({ question_id: id, answer_id: "x".repeat(22), model_id: "m1", choices: [{ index: 0, turns: answers[id] }], tstamp: 1 }) + "\n").join(""));

/** Which (question, turn) a judge request is about, from the prompts FastChat builds. */
function matchOf(r: JudgeRequest): string {
  const turn = /second (user )?question/.test(r.system) ? 2 : 1;
  const qid = IDS.find((id) => r.user.includes(questions.get(id)!.turns[0]))!;
  return `${qid}/${turn}`;
}

const seen = new Map<string, number>();
let script: (key: string, n: number) => Reply;
const server = await startJudgeServer((r) => {
  const key = matchOf(r);
  seen.set(key, (seen.get(key) ?? 0) + 1);
  return script(key, seen.get(key)!);
});
after(() => server.close());

const firstScript = (key: string, n: number): Reply => {
  switch (key) {
    case "81/1": return n === 1 ? { status: 500 } : { text: "Good. Rating: [[8]]" };
    case "81/2": return { text: "Rating: [[6]]" };
    case "82/1": return { text: "I would rate this highly." };          // never parseable
    case "82/2": return n === 1 ? { text: "[[1]]", delayMs: 900 } : { text: "Rating: [[4]]" };   // first reply too slow
    case "101/1": return { text: "Correct. Rating: [[10]]" };
    case "101/2": return { status: 500 };                                // always failing
    case "111/1": return { text: "Rating: [[7]]" };
    default: return { text: "overall [9]" };                             // 111/2: the backup [x] pattern
  }
};

const options = (o: Partial<MtBenchOptions> = {}): MtBenchOptions => ({
  model: join(work.dir, "no-model-needed"), modelId: "m1", output: out, questionIds: IDS, log: () => {},
  loadModel: () => { throw new Error("the model must not be loaded when every answer is on disk"); },
  judge: { url: `${server.url}/v1`, model: "judge-x", timeoutMs: 300, attempts: 3, backoffMs: 5, maxBackoffMs: 20, apiKeyEnv: "PREFTUNE_TEST_UNSET_KEY" },
  ...o,
});
const judgmentFile = join(out, "model_judgment", "judge-x_single.jsonl");
const readJudgments = (): JudgmentRecord[] => readFileSync(judgmentFile, "utf8").trim().split("\n").map((l) => JSON.parse(l));

test("judging: FastChat prompts and records, retries, errors recorded, nothing dropped", async () => {
  script = firstScript;
  const r = await runMtBench(options({ judgeParallel: 3 }));
  assert.equal(r.answersWritten, 0);
  assert.equal(r.answersFound, 4);
  assert.equal(r.judged, 8);
  assert.equal(r.judgeFailures, 2);
  const recs = readJudgments();
  assert.deepEqual(recs.map((x) => `${x.question_id}/${x.turn}`).sort(), IDS.flatMap((id) => [`${id}/1`, `${id}/2`]).sort());
  const by = new Map(recs.map((x) => [`${x.question_id}/${x.turn}`, x]));
  assert.deepEqual(Object.keys(by.get("81/1")!), ["question_id", "model", "judge", "user_prompt", "judgment", "score", "turn", "tstamp"]);
  assert.deepEqual([...by].map(([k, x]) => [k, x.score]).sort(), [["101/1", 10], ["101/2", -1], ["111/1", 7], ["111/2", 9], ["81/1", 8], ["81/2", 6], ["82/1", -1], ["82/2", 4]]);
  assert.deepEqual(by.get("81/1")!.judge, ["judge-x", "single-v1"]);
  assert.deepEqual(by.get("81/2")!.judge, ["judge-x", "single-v1-multi-turn"]);
  assert.deepEqual(by.get("101/1")!.judge, ["judge-x", "single-math-v1"]);
  assert.deepEqual(by.get("111/2")!.judge, ["judge-x", "single-math-v1-multi-turn"]);
  // one-pass filling: the answer's own braces survive verbatim
  const q81 = questions.get(81)!;
  assert.equal(by.get("81/1")!.user_prompt, fillTemplate(prompts.get("single-v1")!.prompt_template, { question: q81.turns[0], answer: answers[81][0] }, "t"));
  assert.ok(by.get("81/1")!.user_prompt.includes("Write {answer} and {question} literally."));
  assert.ok(by.get("81/2")!.user_prompt.includes("Second {answer_1} turn {{x}}"));
  // reference answers for math/reasoning, both turns for the multi-turn prompt
  assert.ok(by.get("101/1")!.user_prompt.includes(refs.get(101)![0]));
  assert.ok(by.get("111/2")!.user_prompt.includes(refs.get(111)![1]));
  // retries happened; failures carry an error and are still recorded
  assert.equal(seen.get("81/1"), 2);
  assert.equal(seen.get("82/2"), 2);
  assert.equal(seen.get("82/1"), 3);
  assert.equal(seen.get("101/2"), 3);
  assert.match(by.get("82/1")!.error!, /no \[\[rating\]\] found in 3 replies/);
  assert.equal(by.get("82/1")!.judgment, "I would rate this highly.");
  assert.match(by.get("101/2")!.error!, /HTTP 500/);
  assert.equal(by.get("101/2")!.judgment, "$ERROR$");
  assert.equal(by.get("81/1")!.error, undefined);
  // show_result: -1 dropped, Average pooled
  assert.equal(r.scores!.turn1.score, (8 + 10 + 7) / 3);
  assert.equal(r.scores!.turn2.score, (6 + 4 + 9) / 3);
  assert.equal(r.scores!.average.score, 44 / 6);
  assert.equal(r.scores!.dropped, 2);
  assert.deepEqual(r.scores!.categories.writing.average, { score: 6, n: 3 });
  assert.deepEqual(JSON.parse(readFileSync(r.scoresFile!, "utf8")), r.scores);
});

test("a re-run judges nothing again; --retry-failed-judgments redoes only the failed turns, still once each", async () => {
  const n0 = server.requests.length;
  const r = await runMtBench(options());
  assert.equal(r.judged, 0);
  assert.equal(server.requests.length, n0);
  assert.equal(readJudgments().length, 8);

  script = () => ({ text: "Rating: [[5]]" });
  const r2 = await runMtBench(options({ retryFailedJudgments: true }));
  assert.equal(r2.judged, 2);
  assert.equal(server.requests.length, n0 + 2);
  const recs = readJudgments();
  assert.equal(recs.length, 8);
  assert.equal(new Set(recs.map((x) => `${x.question_id}/${x.turn}`)).size, 8);
  assert.ok(recs.every((x) => x.error === undefined && x.score > 0));
  assert.equal(r2.scores!.average.n, 8);
});

test("a fatal judge error (401) stops the run and says how far it got", async () => {
  script = () => ({ status: 401 });
  await assert.rejects(runMtBench(options({ modelId: "m1", output: out, questionIds: IDS, judge: { ...options().judge!, model: "judge-y" } })), /judge judge-y: HTTP 401.*API key was refused.*0 judgment\(s\) were recorded/);
});
