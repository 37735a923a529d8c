// The OpenAI-compatible server end to end: a tiny random Llama-shaped model with the real Llama-2 tokenizer is
// written to a scratch folder, loaded through the real engine and served on a free port; every check goes
// through plain fetch. Greedy answers must not depend on streaming or on which requests share a batch.
// Not sampling quality (the model is random) and not the engine's processors (tests/generate).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { Generator, loadGenerationModel, type LoadedModel } from "../../src/generate/engine.ts";
import { requestConfig, startServer, type RunningServer } from "../../src/serve/server.ts";
import { makeTinyModel, scratch } from "../helpers/tiny-model.ts";

const tmp = scratch("preftune-serve-");
let loaded: LoadedModel;
let generator: Generator;
let server: RunningServer;
let base: string;
const logLines: string[] = [];
const MODEL = "tiny-llama";

before(async () => {
  const dir = makeTinyModel(join(tmp.dir, MODEL), { tokenizer: "llama2", hidden: 64, layers: 2, maxPositions: 256 });
  loaded = await loadGenerationModel(dir, { threads: 2 });
  generator = new Generator(loaded);
  server = await startServer({ generator, loaded, port: 0, maxBatch: 8, log: (l) => logLines.push(l) });
  base = `${server.url}/v1`;
});

after(async () => {
  await server?.close();
  loaded?.dispose();
  tmp.cleanup();
});

async function post(path: string, body: unknown): Promise<{ status: number; json: any; headers: Headers }> {
  const res = await fetch(`${base}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: typeof body === "string" ? body : JSON.stringify(body) });
  return { status: res.status, json: await res.json(), headers: res.headers };
}

/** Reads an SSE response into the payloads of its data: events (the last one is "[DONE]"). */
async function sse(path: string, body: unknown): Promise<{ status: number; contentType: string | null; events: string[] }> {
  const res = await fetch(`${base}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const text = await res.text();
  const events = text.split("\n\n").filter((e) => e.trim() !== "").map((e) => {
    assert.ok(e.startsWith("data: "), `not a data event: ${JSON.stringify(e)}`);
    return e.slice("data: ".length);
  });
  return { status: res.status, contentType: res.headers.get("content-type"), events };
}

function assertOpenAIError(r: { status: number; json: any }, status: number, param: string | null, code: string | null = null): void {
  assert.equal(r.status, status, JSON.stringify(r.json));
  assert.deepEqual(Object.keys(r.json.error).sort(), ["code", "message", "param", "type"]);
  assert.equal(r.json.error.type, "invalid_request_error");
  assert.equal(r.json.error.param, param);
  assert.equal(r.json.error.code, code);
  assert.ok(r.json.error.message.length > 10);
}

const chatBody = (content: string, extra: Record<string, unknown> = {}) => ({
  model: MODEL, messages: [{ role: "system", content: "You are terse." }, { role: "user", content }], temperature: 0, max_tokens: 8, ...extra,
});

test("chat completion: the OpenAI shape, and the same answer the engine gives directly", async () => {
  const body = chatBody("What is the capital of France?");
  const r = await post("/chat/completions", body);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  const j = r.json;
  assert.match(j.id, /^chatcmpl-/);
  assert.equal(j.object, "chat.completion");
  assert.equal(j.model, MODEL);
  assert.ok(Number.isInteger(j.created) && Math.abs(j.created - Date.now() / 1000) < 60, "created is Unix seconds");
  assert.equal(j.choices.length, 1);
  const c = j.choices[0];
  assert.equal(c.index, 0);
  assert.equal(c.message.role, "assistant");
  assert.equal(typeof c.message.content, "string");
  assert.ok(["stop", "length"].includes(c.finish_reason));
  const promptIds = generator.chatPromptIds(body.messages);
  assert.equal(j.usage.prompt_tokens, promptIds.length);
  assert.ok(j.usage.completion_tokens >= 1 && j.usage.completion_tokens <= 8);
  assert.equal(j.usage.total_tokens, j.usage.prompt_tokens + j.usage.completion_tokens);
  if (c.finish_reason === "length") assert.equal(j.usage.completion_tokens, 8);

  const [direct] = await generator.generate([{ promptIds, config: requestConfig(loaded, { do_sample: false }, 8) }]);
  assert.equal(c.message.content, direct.completion);
  assert.equal(j.usage.completion_tokens, direct.completionTokens);
});

test("streaming chat: role chunk, deltas that add up to the non-streaming answer, finish, usage, [DONE]", async () => {
  const body = chatBody("Name three colours.", { max_tokens: 12 });
  const plain = await post("/chat/completions", body);
  assert.equal(plain.status, 200);
  const s = await sse("/chat/completions", { ...body, stream: true, stream_options: { include_usage: true } });
  assert.equal(s.status, 200);
  assert.match(s.contentType ?? "", /^text\/event-stream/);
  assert.equal(s.events[s.events.length - 1], "[DONE]");
  const chunks = s.events.slice(0, -1).map((e) => JSON.parse(e));
  const ids = new Set(chunks.map((c) => c.id));
  assert.equal(ids.size, 1);
  assert.match([...ids][0], /^chatcmpl-/);
  for (const c of chunks) {
    assert.equal(c.object, "chat.completion.chunk");
    assert.equal(c.model, MODEL);
  }
  assert.deepEqual(chunks[0].choices[0].delta, { role: "assistant", content: "" });
  const usageChunk = chunks[chunks.length - 1];
  assert.deepEqual(usageChunk.choices, []);
  assert.deepEqual(usageChunk.usage, plain.json.usage);
  const finish = chunks[chunks.length - 2];
  assert.deepEqual(finish.choices[0].delta, {});
  assert.equal(finish.choices[0].finish_reason, plain.json.choices[0].finish_reason);
  const middle = chunks.slice(1, -2);
  for (const c of middle) {
    assert.equal(c.choices[0].finish_reason, null);
    assert.equal(c.usage, null);
  }
  const text = middle.map((c) => c.choices[0].delta.content).join("");
  assert.equal(text, plain.json.choices[0].message.content);
});

test("text completions, streamed and not, and the model list", async () => {
  const body = { model: MODEL, prompt: "Once upon a time", max_tokens: 6, temperature: 0 };
  const r = await post("/completions", body);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.match(r.json.id, /^cmpl-/);
  assert.equal(r.json.object, "text_completion");
  const c = r.json.choices[0];
  assert.equal(typeof c.text, "string");
  assert.equal(c.logprobs, null);
  assert.ok(["stop", "length"].includes(c.finish_reason));
  assert.equal(r.json.usage.prompt_tokens, generator.textPromptIds(body.prompt).length);
  assert.ok(r.json.usage.completion_tokens <= 6);

  const s = await sse("/completions", { ...body, prompt: [body.prompt], stream: true });
  assert.equal(s.events[s.events.length - 1], "[DONE]");
  const chunks = s.events.slice(0, -1).map((e) => JSON.parse(e));
  for (const ch of chunks) assert.equal(ch.object, "text_completion");
  assert.equal(chunks.map((ch) => ch.choices[0].text).join(""), c.text);
  assert.equal(chunks[chunks.length - 1].choices[0].finish_reason, c.finish_reason);

  const defaulted = await post("/completions", { model: MODEL, prompt: "The", temperature: 0 });
  assert.equal(defaulted.status, 200);
  assert.ok(defaulted.json.usage.completion_tokens <= 16);

  const m = await fetch(`${base}/models`);
  assert.equal(m.status, 200);
  const list = await m.json();
  assert.equal(list.object, "list");
  assert.equal(list.data.length, 1);
  assert.equal(list.data[0].id, MODEL);
  assert.equal(list.data[0].object, "model");
  assert.ok(Number.isInteger(list.data[0].created));
  const one = await fetch(`${base}/models/${MODEL}`);
  assert.equal((await one.json()).id, MODEL);
});

test("16 concurrent requests are batched and each equals its own single-request answer", async () => {
  const bodies = Array.from({ length: 16 }, (_, i) => i % 4 === 3
    ? { model: MODEL, prompt: `Item ${i}: the list goes on`, max_tokens: 3 + (i % 5), temperature: 0 }
    : chatBody(`Question number ${i}: ${"why ".repeat(i % 6)}?`, { max_tokens: 3 + (i % 6) }));
  const path = (b: object) => ("prompt" in b ? "/completions" : "/chat/completions");
  const textOf = (j: any) => j.choices[0].message?.content ?? j.choices[0].text;
  const single: string[] = [];
  for (const b of bodies) {
    const r = await post(path(b), b);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    single.push(textOf(r.json));
  }
  const start = await (await fetch(`${server.url}/health`)).json();
  const together = await Promise.all(bodies.map(async (b, i) => {
    if (i % 2 === 0) return textOf((await post(path(b), b)).json);
    const s = await sse(path(b), { ...b, stream: true });
    assert.equal(s.events[s.events.length - 1], "[DONE]");
    return s.events.slice(0, -1).map((e) => JSON.parse(e)).map((ch) => ch.choices[0]?.delta?.content ?? ch.choices[0]?.text ?? "").join("");
  }));
  const afterHealth = await (await fetch(`${server.url}/health`)).json();
  assert.deepEqual(together, single);
  assert.ok(afterHealth.largest_batch > 1, `requests were batched (largest batch ${afterHealth.largest_batch})`);
  assert.ok(afterHealth.batches - start.batches < 16, `fewer generate() calls than requests (${afterHealth.batches - start.batches})`);
  assert.equal(afterHealth.status, "ok");
});

test("bad requests get 4xx OpenAI error bodies, and the server keeps serving", async () => {
  assertOpenAIError(await post("/chat/completions", "{\"model\": "), 400, "body");
  assertOpenAIError(await post("/chat/completions", chatBody("hi", { model: "gpt-4o" })), 404, "model", "model_not_found");
  assertOpenAIError(await post("/chat/completions", chatBody("hi", { max_tokens: -1 })), 400, "max_tokens");
  assertOpenAIError(await post("/completions", { model: MODEL, prompt: "hi", max_tokens: -1 }), 400, "max_tokens");
  assertOpenAIError(await post("/chat/completions", chatBody("word ".repeat(400))), 400, "messages", "context_length_exceeded");
  assertOpenAIError(await post("/completions", { model: MODEL, prompt: "hi", max_tokens: 300 }), 400, "prompt", "context_length_exceeded");
  assertOpenAIError(await post("/chat/completions", chatBody("hi", { n: 3 })), 400, "n");
  assertOpenAIError(await post("/chat/completions", chatBody("hi", { presence_penalty: 1 })), 400, "presence_penalty");

  const big = await post("/chat/completions", JSON.stringify(chatBody("x".repeat(5 * 1024 * 1024))));
  assert.equal(big.status, 413);
  assert.equal(big.json.error.code, "request_too_large");
  const notFound = await fetch(`${base}/engines`);
  assert.equal(notFound.status, 404);
  assert.ok((await notFound.json()).error.message);
  const wrongMethod = await fetch(`${base}/chat/completions`);
  assert.equal(wrongMethod.status, 405);
  assert.equal(wrongMethod.headers.get("allow"), "POST");
  assert.ok((await wrongMethod.json()).error);

  const ok = await post("/chat/completions", chatBody("Still there?"));
  assert.equal(ok.status, 200, JSON.stringify(ok.json));
  assert.equal(ok.json.object, "chat.completion");
});

test("a client that leaves mid-stream stops its row; the next request is served", async () => {
  const ac = new AbortController();
  const res = await fetch(`${base}/chat/completions`, {
    method: "POST", headers: { "content-type": "application/json" }, signal: ac.signal,
    body: JSON.stringify(chatBody("Tell me a long story.", { max_tokens: 200, stream: true, stop: null })),
  });
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  await reader.read();                 // the role chunk
  ac.abort();
  await reader.cancel().catch(() => {});
  const ok = await post("/completions", { model: MODEL, prompt: "And then", max_tokens: 2, temperature: 0 });
  assert.equal(ok.status, 200);
  // the abandoned request is logged once it ends, with fewer tokens than it asked for
  for (let i = 0; i < 100 && !logLines.some((l) => l.includes("client disconnected")); i++) await new Promise((r) => setTimeout(r, 20));
  const line = logLines.find((l) => l.includes("client disconnected"));
  assert.ok(line, `no disconnect in the log:\n${logLines.slice(-5).join("\n")}`);
  const m = /\d+\+(\d+) tokens/.exec(line!);
  assert.ok(m && Number(m[1]) < 200, line);
  assert.ok(logLines.every((l) => /^(GET|POST) \/\S* \d{3}( \d+\+\d+ tokens)? \d+ ms/.test(l)), "one line per request: method, path, status, tokens, ms");
});

test("a full queue answers 429 with an OpenAI error body; close() ends the server", async () => {
  const small = await startServer({ generator, loaded, port: 0, maxBatch: 1, maxQueue: 1, modelId: "small" });
  try {
    const url = `${small.url}/v1/chat/completions`;
    const send = (body: object) => fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const long = await send({ ...chatBody("Keep talking.", { max_tokens: 120 }), model: "small", stream: true });
    const reader = long.body!.getReader();
    await reader.read();                                  // the role chunk: the batch is running now
    const rest = await Promise.all([0, 1, 2].map((i) => send({ ...chatBody(`Wait ${i}`, { max_tokens: 2 }), model: "small" })));
    const statuses = rest.map((r) => r.status).sort();
    assert.deepEqual(statuses, [200, 429, 429], "one waits for the next batch, the others are turned away");
    for (const r of rest) {
      const j = await r.json();
      if (r.status === 429) {
        assert.equal(j.error.code, "rate_limit_exceeded");
        assert.equal(j.error.type, "rate_limit_error");
        assert.equal(r.headers.get("retry-after"), "1");
      } else assert.equal(j.object, "chat.completion");
    }
    while (!(await reader.read()).done) { /* drain the long stream */ }
  } finally {
    await small.close();
  }
  await assert.rejects(fetch(`${small.url}/health`), "the port is closed");
});
