// The judge's pieces without a model: FastChat's rating parse and show_result averaging (the MT-Bench test
// vectors), one-pass template filling, URL forms, and the HTTP client's retry rules against a local server.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { chatCompletion, chatCompletionsUrl, fillTemplate, judgeRating, parseRating, backoffMs, type JudgeOptions } from "../../src/eval/judge.ts";
import { showResult, type JudgmentRecord } from "../../src/eval/mtbench.ts";
import { startJudgeServer, type Reply } from "./judge-server.ts";

test("parseRating: [[x]] first, then [x], else -1 (FastChat's patterns)", () => {
  const cases: [string, number][] = [
    ["Rating: [[7]]", 7], ["[[8.5]]", 8.5], ["score [9] overall", 9], ["see [2]. Rating: [[6]]", 6],
    ["[[8/10]]", -1], ["Rating: [[ 7 ]]", -1], ["[[10.]]", 10], ["no rating here", -1], ["[[3]] and later [[9]]", 3],
  ];
  for (const [text, want] of cases) assert.equal(parseRating(text), want, text);
});

function row(turn: number, score: number, qid = 81): JudgmentRecord {
  return { question_id: qid, model: "m", judge: ["gpt-4", "single-v1"], user_prompt: "", judgment: "", score, turn, tstamp: 0 };
}

test("showResult: -1 dropped; turn means; Average pools both turns (6.6, not 6.25)", () => {
  const recs = [...[8, 6, -1, 10].map((s, i) => row(1, s, 81 + i)), ...[4, -1, -1, 5].map((s, i) => row(2, s, 81 + i))];
  recs.push({ ...row(1, 1), model: "other" }, { ...row(1, 1), judge: ["gpt-3.5", "single-v1"] });  // other model / judge: ignored
  const s = showResult(recs, "m", "gpt-4", new Map([[81, "writing"], [82, "writing"], [83, "math"], [84, "math"]]));
  assert.equal(s.turn1.score, 8);
  assert.equal(s.turn2.score, 4.5);
  assert.ok(Math.abs(s.average.score! - 6.6) < 1e-12, String(s.average.score));
  assert.deepEqual([s.turn1.n, s.turn2.n, s.average.n, s.dropped], [3, 2, 5, 3]);
  assert.deepEqual(s.categories.writing, { turn1: { score: 7, n: 2 }, turn2: { score: 4, n: 1 }, average: { score: 6, n: 3 } });
  assert.deepEqual(s.categories.math, { turn1: { score: 10, n: 1 }, turn2: { score: 5, n: 1 }, average: { score: 7.5, n: 2 } });
});

test("fillTemplate fills in one pass: braces inside values are not expanded", () => {
  const t = "Q: {question}\nA: {answer}\nliteral {{answer}}";
  const out = fillTemplate(t, { question: "What is {answer}?", answer: "use {question} and }{ and {{x}}" }, "t");
  assert.equal(out, "Q: What is {answer}?\nA: use {question} and }{ and {{x}}\nliteral {answer}");
  assert.throws(() => fillTemplate("{missing}", { a: "1" }, "prompt x"), /prompt x: the template needs \{missing\}/);
  assert.throws(() => fillTemplate("a } b", {}, "p"), /single "}"/);
  assert.throws(() => fillTemplate("{0}", {}, "p"), /unsupported placeholder/);
});

test("judge URL with or without /v1", () => {
  assert.equal(chatCompletionsUrl("http://127.0.0.1:8000"), "http://127.0.0.1:8000/v1/chat/completions");
  assert.equal(chatCompletionsUrl("http://127.0.0.1:8000/v1/"), "http://127.0.0.1:8000/v1/chat/completions");
  assert.equal(chatCompletionsUrl("https://h/api/v1/chat/completions"), "https://h/api/v1/chat/completions");
  assert.equal(chatCompletionsUrl("https://h/proxy"), "https://h/proxy/v1/chat/completions");
  assert.throws(() => chatCompletionsUrl("localhost:8000"), /must be http/);
});

test("backoff doubles from the base, capped, with jitter in [0.75, 1]", () => {
  assert.equal(backoffMs(1, 100, 1000, () => 1), 100);
  assert.equal(backoffMs(3, 100, 1000, () => 1), 400);
  assert.equal(backoffMs(6, 100, 1000, () => 0), 750);
});

// ------------------------------------------------------------------------------------------ HTTP client

let script: (n: number) => Reply = () => ({ text: "Rating: [[5]]" });
const server = await startJudgeServer((_r, n) => script(n));
after(() => server.close());
const opts = (o: Partial<JudgeOptions> = {}): JudgeOptions => ({ url: server.url, model: "judge-x", backoffMs: 2, maxBackoffMs: 10, timeoutMs: 2000, attempts: 4, apiKeyEnv: "PREFTUNE_TEST_JUDGE_KEY", ...o });
const msgs = [{ role: "system" as const, content: "sys" }, { role: "user" as const, content: "rate this" }];

test("request: model, messages, temperature 0, max_tokens 2048; Bearer key only when the variable is set", async () => {
  script = () => ({ text: "Rating: [[7]]" });
  const n0 = server.requests.length;
  delete process.env.PREFTUNE_TEST_JUDGE_KEY;
  assert.equal(await chatCompletion(opts(), msgs), "Rating: [[7]]");
  process.env.PREFTUNE_TEST_JUDGE_KEY = "sk-test";
  await chatCompletion(opts({ url: `${server.url}/v1` }), msgs);
  delete process.env.PREFTUNE_TEST_JUDGE_KEY;
  const [a, b] = server.requests.slice(n0);
  assert.equal(a.path, "/v1/chat/completions");
  assert.deepEqual(a.body, { model: "judge-x", messages: msgs, temperature: 0, max_tokens: 2048, n: 1 });
  assert.equal(a.headers.authorization, undefined);
  assert.equal(b.headers.authorization, "Bearer sk-test");
});

test("retries 500, 429 (honouring retry-after-ms), 408 and timeouts; then succeeds", async () => {
  const plan: Reply[] = [{ status: 500 }, { status: 429, headers: { "retry-after-ms": "5" } }, { status: 408 }, { text: "late", delayMs: 400 }, { text: "[[9]]" }];
  const n0 = server.requests.length;
  script = (n) => plan[n - n0 - 1] ?? { text: "unexpected" };
  const logs: string[] = [];
  assert.equal(await chatCompletion(opts({ timeoutMs: 150, attempts: 5, log: (l) => logs.push(l) }), msgs), "[[9]]");
  assert.equal(server.requests.length - n0, 5);
  assert.match(logs.join("\n"), /HTTP 500.*retry 1 of 4[\s\S]*HTTP 429[\s\S]*HTTP 408[\s\S]*no complete answer within 150 ms/);
});

test("gives up after the attempts; 400 is not retried; 401 is fatal", async () => {
  let n0 = server.requests.length;
  script = () => ({ status: 503 });
  await assert.rejects(chatCompletion(opts({ attempts: 3 }), msgs), (e: any) => e.retryable && !e.fatal && /HTTP 503.*attempt 3 of 3/.test(e.message));
  assert.equal(server.requests.length - n0, 3);
  n0 = server.requests.length;
  script = () => ({ status: 400, body: JSON.stringify({ error: { message: "context_length_exceeded", type: "invalid_request_error", param: "messages", code: null } }) });
  await assert.rejects(chatCompletion(opts(), msgs), /HTTP 400 context_length_exceeded \(attempt 1 of 4\)/);
  assert.equal(server.requests.length - n0, 1);
  script = () => ({ status: 401 });
  await assert.rejects(judgeRating(opts(), msgs), (e: any) => e.fatal && /HTTP 401.*API key was refused/.test(e.message));
});

test("judgeRating: unparseable replies are asked again, then recorded as -1 with an error; HTTP failures likewise", async () => {
  let n0 = server.requests.length;
  script = (n) => (n - n0 < 3 ? { text: "I think it is fine." } : { text: "Rating: [[4]]" });
  assert.deepEqual(await judgeRating(opts(), msgs), { judgment: "Rating: [[4]]", score: 4, requests: 3 });
  n0 = server.requests.length;
  script = () => ({ text: "eight out of ten" });
  const j = await judgeRating(opts({ parseAttempts: 2 }), msgs);
  assert.deepEqual(j, { judgment: "eight out of ten", score: -1, error: "no [[rating]] found in 2 replies", requests: 2 });
  script = () => ({ status: 502 });
  const k = await judgeRating(opts({ attempts: 2 }), msgs);
  assert.equal(k.score, -1);
  assert.equal(k.judgment, "$ERROR$");
  assert.match(k.error!, /HTTP 502/);
});

test("a server that is not there is a retryable network error naming the URL", async () => {
  await assert.rejects(chatCompletion(opts({ url: "http://127.0.0.1:9", attempts: 2 }), msgs), /cannot reach http:\/\/127\.0\.0\.1:9\/v1\/chat\/completions.*attempt 2 of 2/);
});
