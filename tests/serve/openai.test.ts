// The OpenAI wire format without a model: request validation (what becomes which HF override, which field each
// 400 names), the model and context checks, finish-reason mapping, and the exact shape of responses and SSE
// chunks. End-to-end behaviour over HTTP with a real model is server.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { GenerateResult } from "../../src/generate/types.ts";
import {
  chatCompletionResponse, checkModel, completionBudget, completionResponse, COMPLETIONS_DEFAULT_MAX_TOKENS, finishReason,
  modelList, newResponseMeta, OpenAIError, parseChatRequest, parseCompletionRequest, SSE_DONE, streamShaper,
} from "../../src/serve/openai.ts";

const chat = (extra: Record<string, unknown> = {}) => ({ model: "m", messages: [{ role: "user", content: "hi" }], ...extra });
const completion = (extra: Record<string, unknown> = {}) => ({ model: "m", prompt: "Once", ...extra });

function refused(fn: () => unknown, status: number, param: string | null, code: string | null = null): OpenAIError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof OpenAIError, `expected an OpenAIError, got ${e}`);
    assert.equal(e.status, status, e.message);
    assert.equal(e.param, param, e.message);
    assert.equal(e.code, code, e.message);
    const body = e.body();
    assert.deepEqual(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
    assert.equal(body.error.type, status >= 500 ? "server_error" : "invalid_request_error");
    return e;
  }
  assert.fail("expected the request to be refused");
}

function result(o: Partial<GenerateResult> = {}): GenerateResult {
  return {
    completion: "Hello there", completionIds: [10, 11, 2], finishReason: "eos", promptTokens: 7, completionTokens: 3,
    timeToFirstTokenMs: 1, seconds: 0.1, tokensPerSecond: 20, ...o,
  };
}

test("chat: the minimal body keeps every model default", () => {
  const r = parseChatRequest(chat());
  assert.equal(r.kind, "chat");
  assert.equal(r.model, "m");
  assert.deepEqual(r.messages, [{ role: "user", content: "hi" }]);
  assert.equal(r.maxTokens, null);
  assert.deepEqual(r.overrides, {});
  assert.equal(r.stream, false);
  assert.equal(r.includeUsage, false);
});

test("chat: text parts are joined, developer becomes system, assistant content may be null", () => {
  const r = parseChatRequest(chat({
    messages: [
      { role: "developer", content: "Be brief." },
      { role: "user", content: [{ type: "text", text: "Hello, " }, { type: "text", text: "world" }], name: "ann" },
      { role: "assistant", content: null },
      { role: "tool", content: "42", tool_call_id: "x" },
      { role: "user", content: "again" },
    ],
  }));
  assert.deepEqual(r.messages, [
    { role: "system", content: "Be brief." }, { role: "user", content: "Hello, world" }, { role: "assistant", content: "" },
    { role: "tool", content: "42" }, { role: "user", content: "again" },
  ]);
});

test("sampling fields become HF overrides", () => {
  assert.deepEqual(parseChatRequest(chat({ temperature: 0 })).overrides, { do_sample: false });
  assert.deepEqual(parseChatRequest(chat({ temperature: 0.7, top_p: 0.9 })).overrides, { do_sample: true, temperature: 0.7, top_p: 0.9 });
  assert.deepEqual(parseChatRequest(chat({ stop: "###" })).overrides, { stop_strings: ["###"] });
  assert.deepEqual(parseChatRequest(chat({ stop: ["a", "b"], seed: 3 })).overrides, { stop_strings: ["a", "b"], seed: 3 });
  assert.deepEqual(parseChatRequest(chat({ top_k: 20, min_p: 0.05, repetition_penalty: 1.1 })).overrides, { top_k: 20, min_p: 0.05, repetition_penalty: 1.1 });
  assert.deepEqual(parseChatRequest(chat({ min_p: 0 })).overrides, { min_p: 0 });
  // nulls, zero penalties, n: 1, empty logit_bias and ignored fields change nothing
  assert.deepEqual(parseChatRequest(chat({
    temperature: null, top_p: null, stop: null, n: 1, presence_penalty: 0, frequency_penalty: 0, logit_bias: {}, user: "u",
    logprobs: false, tool_choice: "none", response_format: { type: "text" },
  })).overrides, {});
});

test("max_completion_tokens wins over max_tokens; stream flags", () => {
  assert.equal(parseChatRequest(chat({ max_tokens: 5 })).maxTokens, 5);
  assert.equal(parseChatRequest(chat({ max_tokens: 5, max_completion_tokens: 9 })).maxTokens, 9);
  const s = parseChatRequest(chat({ stream: true, stream_options: { include_usage: true } }));
  assert.equal(s.stream, true);
  assert.equal(s.includeUsage, true);
  assert.equal(parseChatRequest(chat({ stream: false, stream_options: { include_usage: true } })).includeUsage, false);
});

test("chat: each bad field is a 400 naming it", () => {
  refused(() => parseChatRequest([]), 400, "body");
  refused(() => parseChatRequest({ messages: [{ role: "user", content: "x" }] }), 400, "model");
  refused(() => parseChatRequest(chat({ messages: [] })), 400, "messages");
  refused(() => parseChatRequest(chat({ messages: [{ role: "robot", content: "x" }] })), 400, "messages[0].role");
  refused(() => parseChatRequest(chat({ messages: [{ role: "user", content: 5 }] })), 400, "messages[0].content");
  refused(() => parseChatRequest(chat({ messages: [{ role: "user", content: [{ type: "image_url", image_url: {} }] }] })), 400, "messages[0].content[0].type");
  refused(() => parseChatRequest(chat({ messages: [{ role: "assistant", content: null, tool_calls: [{ id: "1" }] }] })), 400, "messages[0].tool_calls");
  refused(() => parseChatRequest(chat({ temperature: 3 })), 400, "temperature");
  refused(() => parseChatRequest(chat({ temperature: "hot" })), 400, "temperature");
  refused(() => parseChatRequest(chat({ top_p: 1.5 })), 400, "top_p");
  refused(() => parseChatRequest(chat({ max_tokens: -1 })), 400, "max_tokens");
  refused(() => parseChatRequest(chat({ max_tokens: 2.5 })), 400, "max_tokens");
  refused(() => parseChatRequest(chat({ max_completion_tokens: 0 })), 400, "max_completion_tokens");
  refused(() => parseChatRequest(chat({ stop: ["a", "b", "c", "d", "e"] })), 400, "stop");
  refused(() => parseChatRequest(chat({ stop: [""] })), 400, "stop");
  refused(() => parseChatRequest(chat({ seed: 1.5 })), 400, "seed");
  refused(() => parseChatRequest(chat({ seed: -1 })), 400, "seed");
  refused(() => parseChatRequest(chat({ stream: "yes" })), 400, "stream");
  refused(() => parseChatRequest(chat({ stream: true, stream_options: { include_usage: 1 } })), 400, "stream_options.include_usage");
  refused(() => parseChatRequest(chat({ top_k: -1 })), 400, "top_k");
  refused(() => parseChatRequest(chat({ repetition_penalty: 0 })), 400, "repetition_penalty");
  refused(() => parseChatRequest(chat({ logit_bias: { "50256": -100 } })), 400, "logit_bias");
  refused(() => parseChatRequest(chat({ logprobs: true })), 400, "logprobs");
  refused(() => parseChatRequest(chat({ tools: [{ type: "function" }] })), 400, "tools");
  refused(() => parseChatRequest(chat({ response_format: { type: "json_object" } })), 400, "response_format");
  refused(() => parseChatRequest(chat({ frobnicate: true })), 400, "frobnicate");
});

test("n > 1 and non-zero penalties are refused with a message that says what to send", () => {
  const n = refused(() => parseChatRequest(chat({ n: 2 })), 400, "n");
  assert.match(n.message, /n: 1/);
  const p = refused(() => parseChatRequest(chat({ presence_penalty: 0.5 })), 400, "presence_penalty");
  assert.match(p.message, /Send 0/);
  assert.match(p.message, /repetition_penalty/);
  refused(() => parseChatRequest(chat({ frequency_penalty: -0.1 })), 400, "frequency_penalty");
  refused(() => parseChatRequest(chat({ frequency_penalty: 3 })), 400, "frequency_penalty");
});

test("completions: prompt forms, the default of 16 tokens, and refusals", () => {
  const r = parseCompletionRequest(completion());
  assert.equal(r.kind, "completion");
  assert.equal(r.prompt, "Once");
  assert.equal(r.maxTokens, COMPLETIONS_DEFAULT_MAX_TOKENS);
  assert.equal(COMPLETIONS_DEFAULT_MAX_TOKENS, 16);
  assert.equal(parseCompletionRequest(completion({ prompt: ["Twice"], max_tokens: 4, echo: false })).prompt, "Twice");
  assert.equal(parseCompletionRequest(completion({ max_tokens: null })).maxTokens, 16);
  assert.deepEqual(parseCompletionRequest(completion({ temperature: 0, stop: "\n" })).overrides, { do_sample: false, stop_strings: ["\n"] });
  refused(() => parseCompletionRequest(completion({ prompt: ["a", "b"] })), 400, "prompt");
  refused(() => parseCompletionRequest(completion({ prompt: [1, 2, 3] })), 400, "prompt");
  refused(() => parseCompletionRequest(completion({ prompt: undefined })), 400, "prompt");
  refused(() => parseCompletionRequest(completion({ echo: true })), 400, "echo");
  refused(() => parseCompletionRequest(completion({ suffix: "end" })), 400, "suffix");
  refused(() => parseCompletionRequest(completion({ logprobs: 2 })), 400, "logprobs");
  refused(() => parseCompletionRequest(completion({ best_of: 3 })), 400, "best_of");
  refused(() => parseCompletionRequest(completion({ max_tokens: -1 })), 400, "max_tokens");
  refused(() => parseCompletionRequest(completion({ messages: [] })), 400, "messages");
});

test("unknown model is a 404 model_not_found", () => {
  checkModel("m", "m");
  const e = refused(() => checkModel("gpt-4", "m"), 404, "model", "model_not_found");
  assert.match(e.message, /"m"/);
});

test("completion budget: the request's cap, else what the context leaves; overflow is context_length_exceeded", () => {
  const c = parseChatRequest(chat({ max_tokens: 10 }));
  assert.equal(completionBudget(c, 100, 256), 10);
  assert.equal(completionBudget(c, 246, 256), 10);
  refused(() => completionBudget(c, 247, 256), 400, "messages", "context_length_exceeded");
  assert.equal(completionBudget(parseChatRequest(chat()), 100, 256), 156);
  refused(() => completionBudget(parseChatRequest(chat()), 256, 256), 400, "messages", "context_length_exceeded");
  const p = parseCompletionRequest(completion());
  assert.equal(completionBudget(p, 10, 256), 16);
  const e = refused(() => completionBudget(p, 250, 256), 400, "prompt", "context_length_exceeded");
  assert.match(e.message, /256/);
  assert.match(e.message, /250/);
});

test("finish reasons: eos and stop are stop, the cap is length", () => {
  assert.equal(finishReason("eos"), "stop");
  assert.equal(finishReason("stop"), "stop");
  assert.equal(finishReason("length"), "length");
});

test("non-streaming responses have the OpenAI shape", () => {
  const before = Math.floor(Date.now() / 1000);
  const meta = newResponseMeta("chat", "m");
  assert.match(meta.id, /^chatcmpl-[0-9a-f]{24}$/);
  assert.ok(meta.created >= before && meta.created <= before + 2, "created is Unix seconds");
  assert.deepEqual(chatCompletionResponse(meta, result()), {
    id: meta.id, object: "chat.completion", created: meta.created, model: "m",
    choices: [{ index: 0, message: { role: "assistant", content: "Hello there", refusal: null }, logprobs: null, finish_reason: "stop" }],
    usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 },
  });
  const cm = newResponseMeta("completion", "m");
  assert.match(cm.id, /^cmpl-[0-9a-f]{24}$/);
  assert.deepEqual(completionResponse(cm, result({ finishReason: "length" })), {
    id: cm.id, object: "text_completion", created: cm.created, model: "m",
    choices: [{ text: "Hello there", index: 0, logprobs: null, finish_reason: "length" }],
    usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 },
  });
  assert.deepEqual(modelList("m", 5), { object: "list", data: [{ id: "m", object: "model", created: 5, owned_by: "preftune" }] });
  assert.notEqual(newResponseMeta("chat", "m").id, meta.id);
});

/** Splits SSE text into the payloads of its data: events. */
function events(sse: string): string[] {
  assert.ok(sse.endsWith("\n\n"));
  return sse.split("\n\n").filter((e) => e !== "").map((e) => {
    assert.ok(e.startsWith("data: "), e);
    return e.slice("data: ".length);
  });
}

test("chat stream: role first, content deltas, a finish chunk, the usage chunk, then [DONE]", () => {
  const req = parseChatRequest(chat({ stream: true, stream_options: { include_usage: true } }));
  const meta = newResponseMeta("chat", "m");
  const s = streamShaper(req, meta);
  const sse = s.start() + s.delta("Hello") + s.delta("") + s.delta(" there") + s.finish(result());
  const ev = events(sse);
  assert.equal(ev[ev.length - 1], "[DONE]");
  assert.ok(sse.endsWith(SSE_DONE));
  const chunks = ev.slice(0, -1).map((e) => JSON.parse(e));
  assert.equal(chunks.length, 5, "role, two deltas (the empty one is skipped), finish, usage");
  for (const c of chunks) {
    assert.equal(c.id, meta.id);
    assert.equal(c.object, "chat.completion.chunk");
    assert.equal(c.created, meta.created);
    assert.equal(c.model, "m");
  }
  assert.deepEqual(chunks[0].choices, [{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }]);
  assert.deepEqual(chunks[1].choices[0].delta, { content: "Hello" });
  assert.deepEqual(chunks[2].choices[0].delta, { content: " there" });
  assert.deepEqual(chunks[3].choices, [{ index: 0, delta: {}, logprobs: null, finish_reason: "stop" }]);
  for (const c of chunks.slice(0, 4)) assert.equal(c.usage, null);
  assert.deepEqual(chunks[4].choices, []);
  assert.deepEqual(chunks[4].usage, { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 });
});

test("streams without include_usage carry no usage; completion chunks are text_completion without a role chunk", () => {
  const req = parseCompletionRequest(completion({ stream: true }));
  const meta = newResponseMeta("completion", "m");
  const s = streamShaper(req, meta);
  assert.equal(s.start(), "");
  const ev = events(s.delta("Once") + s.finish(result({ finishReason: "length" })));
  assert.deepEqual(ev.slice(-1), ["[DONE]"]);
  const chunks = ev.slice(0, -1).map((e) => JSON.parse(e));
  assert.equal(chunks.length, 2);
  for (const c of chunks) {
    assert.equal(c.object, "text_completion");
    assert.ok(!("usage" in c));
  }
  assert.deepEqual(chunks[0].choices, [{ index: 0, text: "Once", logprobs: null, finish_reason: null }]);
  assert.deepEqual(chunks[1].choices, [{ index: 0, text: "", logprobs: null, finish_reason: "length" }]);
});

test("an error after the headers is a data: {error} event, then [DONE]", () => {
  const s = streamShaper(parseChatRequest(chat({ stream: true })), newResponseMeta("chat", "m"));
  const ev = events(s.error(new OpenAIError(500, "boom")));
  assert.deepEqual(JSON.parse(ev[0]), { error: { message: "boom", type: "server_error", param: null, code: null } });
  assert.equal(ev[1], "[DONE]");
});
