// `preftune chat` end to end: a tiny random Llama-shaped model with the real Llama-2 tokenizer is written to a
// scratch folder and runChat is driven through PassThrough streams. What the engine got is checked against the
// history rendered here with the tokenizer's own chat template, and every greedy answer against a separate
// Generator on those ids. The command line itself is spawned once with piped stdin.
// Not answer quality (the model is random) and not the sampler (tests/generate).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join, resolve } from "node:path";
import { PassThrough } from "node:stream";
import { fileURLToPath } from "node:url";
import { runChat, type ChatOptions, type ChatSummary, type ChatTurn } from "../../src/cli/chat.ts";
import type { Message } from "../../src/data/formats.ts";
import { resolveGenerationConfig } from "../../src/generate/config.ts";
import { Generator, loadGenerationModel, type LoadedModel } from "../../src/generate/engine.ts";
import { makeTinyModel, scratch } from "../helpers/tiny-model.ts";

const tmp = scratch("preftune-chat-");
const MAX_NEW = 24;
const POSITIONS = 256;
let dir: string;
let ref: LoadedModel;
let refGen: Generator;

before(async () => {
  dir = makeTinyModel(join(tmp.dir, "tiny-llama"), { tokenizer: "llama2", hidden: 64, layers: 2, maxPositions: POSITIONS });
  ref = await loadGenerationModel(dir, { threads: 1 });
  refGen = new Generator(ref);
});

after(() => {
  ref?.dispose();
  tmp.cleanup();
});

const user = (content: string): Message => ({ role: "user", content });
const assistant = (content: string): Message => ({ role: "assistant", content });
const system = (content: string): Message => ({ role: "system", content });

/** The prompt ids for a history, rendered here straight from the tokenizer (not through Generator.chatPromptIds). */
function rendered(messages: Message[]): number[] {
  return ref.tokenizer.encode(ref.tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true }), false);
}

/** The greedy answer a separate Generator gives for these prompt ids. */
async function greedy(promptIds: number[], maxNew = MAX_NEW): Promise<{ completion: string; completionTokens: number }> {
  const config = resolveGenerationConfig({ overrides: { ...ref.generationDefaults, do_sample: false, max_new_tokens: maxNew, max_length: null } });
  const [r] = await refGen.generate([{ promptIds, config }]);
  return r;
}

interface Session {
  input: PassThrough;
  out: () => string;
  turns: ChatTurn[];
  done: Promise<ChatSummary>;
}

function start(opts: Partial<ChatOptions> = {}, isTTY = false): Session {
  const input = new PassThrough();
  const output = new PassThrough();
  let text = "";
  output.on("data", (c: Buffer) => { text += c.toString("utf8"); });
  const turns: ChatTurn[] = [];
  const done = runChat({ model: dir, temperature: "0", maxNewTokens: String(MAX_NEW), threads: "1", ...opts },
    { input, output, isTTY, onTurn: (t) => turns.push(t) });
  return { input, out: () => text, turns, done };
}

/** Sends lines (without ending the input) and waits for the session to end by itself. */
async function converse(lines: string[], opts: Partial<ChatOptions> = {}): Promise<{ summary: ChatSummary; out: string; turns: ChatTurn[] }> {
  const s = start(opts);
  s.input.write(lines.map((l) => `${l}\n`).join(""));
  const summary = await s.done;
  return { summary, out: s.out(), turns: s.turns };
}

async function until(cond: () => boolean, what: string, ms = 10000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

let firstAnswer = "";

test("two greedy turns: the second prompt is the rendered history with the first answer; /exit ends the session", async () => {
  const u1 = "Hello there, who are you?";
  const u2 = "What is two plus two?";
  const { summary, out, turns } = await converse([u1, u2, "/exit"]);  // the input is never ended: /exit alone ends it
  assert.match(out, /^preftune chat: model tiny-llama, adapter none \(greedy, up to 24 new tokens\)\. Commands: \/help \/reset \/system TEXT \/exit/);
  assert.equal(turns.length, 2);

  assert.deepEqual(turns[0].messages, [user(u1)]);
  assert.deepEqual(turns[0].promptIds, rendered([user(u1)]));
  const a1 = await greedy(turns[0].promptIds);
  assert.equal(turns[0].result.completion, a1.completion, "the first answer is the engine's greedy answer");
  assert.ok(a1.completion.trim().length > 0, "the random model says something");
  firstAnswer = a1.completion;

  const history2 = [user(u1), assistant(a1.completion.trim()), user(u2)];
  assert.deepEqual(turns[1].messages, history2);
  assert.deepEqual(turns[1].promptIds, rendered(history2), "the second prompt holds the first turn and its answer");
  assert.ok(turns[1].promptIds.length > turns[0].promptIds.length + a1.completionTokens - 2);
  const text2 = ref.tokenizer.decode(turns[1].promptIds, true);
  for (const part of [u1, a1.completion.trim(), u2]) assert.ok(text2.includes(part), `the second prompt contains ${JSON.stringify(part)}`);
  const a2 = await greedy(rendered(history2));
  assert.equal(turns[1].result.completion, a2.completion);
  assert.equal(turns[0].droppedTurns + turns[1].droppedTurns, 0);

  // both answers were streamed to the output, each on its own prompt line, with no escape codes (not a TTY)
  assert.ok(out.includes(`> ${a1.completion}\n> ${a2.completion}\n> `), JSON.stringify(out));
  assert.ok(!out.includes("\x1b["), "no escape codes when the output is not a terminal");
  assert.ok(!out.includes("tokens/s"), "tokens/s only on a terminal");
  assert.deepEqual(summary.history, [...history2, assistant(a2.completion.trim())]);
  assert.equal(summary.answers, 2);
});

test("/reset: the next answer is a first-turn answer again", async () => {
  const u1 = "Hello there, who are you?";
  const { out, turns, summary } = await converse([u1, "/reset", u1, "/exit"]);
  assert.equal(turns.length, 2);
  assert.deepEqual(turns[1].messages, [user(u1)]);
  assert.deepEqual(turns[1].promptIds, turns[0].promptIds);
  assert.equal(turns[1].result.completion, turns[0].result.completion);
  assert.equal(turns[1].result.completion, firstAnswer, "the same answer as the first turn of the previous session");
  assert.ok(out.includes("(conversation cleared)"));
  assert.deepEqual(summary.history, [user(u1), assistant(firstAnswer.trim())]);
});

test("--system and /system: the system message goes first through the template; /system alone removes it", async () => {
  const { out, turns, summary } = await converse(["Hi", "/system You are a pirate.", "Hi", "/system", "Hi", "/exit"], { system: "You are terse." });
  assert.equal(turns.length, 3);
  const expected = [[system("You are terse."), user("Hi")], [system("You are a pirate."), user("Hi")], [user("Hi")]];
  for (let i = 0; i < 3; i++) {
    assert.deepEqual(turns[i].messages, expected[i]);
    assert.deepEqual(turns[i].promptIds, rendered(expected[i]));
    assert.equal(turns[i].result.completion, (await greedy(rendered(expected[i]))).completion);
  }
  assert.ok(ref.tokenizer.decode(turns[1].promptIds, true).includes("You are a pirate."));
  assert.notDeepEqual(turns[0].promptIds, turns[1].promptIds);
  assert.notDeepEqual(turns[1].promptIds, turns[2].promptIds);
  assert.ok(out.includes("(system message set; conversation cleared)"));
  assert.ok(out.includes("(system message removed; conversation cleared)"));
  assert.equal(summary.history[0].role, "user", "no system message left");
});

test("end of input leaves; /help and an unknown command list the commands; //text sends a message starting with /", async () => {
  const s = start();
  s.input.end("/help\n/frobnicate now\n//slash\n");
  const summary = await s.done;
  const out = s.out();
  assert.ok(out.includes("unknown command /frobnicate; the commands are:"));
  for (const cmd of ["/reset", "/system TEXT", "/help", "/exit", "Ctrl-C"]) assert.equal(out.split(cmd).length - 1 >= 2, true, `${cmd} listed twice`);
  assert.equal(s.turns.length, 1, "the answer to the last line comes before the session ends");
  assert.deepEqual(s.turns[0].messages, [user("/slash")]);
  assert.equal(summary.answers, 1);
});

test("an overlong history drops the oldest turns with a note; a message that cannot fit is refused and the session goes on", async () => {
  const long = (i: number) => `Turn ${i}: ${"the quick brown fox jumps over the lazy dog ".repeat(7).trim()}`;
  const huge = "lorem ipsum dolor sit amet ".repeat(60).trim();
  const { out, turns } = await converse([long(1), long(2), long(3), huge, "Hi", "/exit"]);
  assert.equal(turns.length, 4, "the huge message gets no answer");
  const [t1, t2, t3, t4] = turns;
  const a = turns.map((t) => assistant(t.result.completion.trim()));

  // the assumptions of this test: two long turns fit, three do not, the huge one never does
  const three = [user(long(1)), a[0], user(long(2)), a[1], user(long(3))];
  assert.ok(rendered(three.slice(0, 3)).length + MAX_NEW <= POSITIONS);
  assert.ok(rendered(three).length + MAX_NEW > POSITIONS);
  assert.ok(rendered([user(huge)]).length + MAX_NEW > POSITIONS);

  assert.deepEqual(t1.messages, [user(long(1))]);
  assert.deepEqual(t2.messages, three.slice(0, 3));
  assert.equal(t2.droppedTurns, 0);
  assert.deepEqual(t3.messages, three.slice(2), "the oldest pair is gone");
  assert.equal(t3.droppedTurns, 1);
  assert.deepEqual(t3.promptIds, rendered(three.slice(2)));
  assert.equal(t3.result.completion, (await greedy(rendered(three.slice(2)))).completion);
  assert.match(out, /\(dropped the oldest turn to fit the model's 256 positions\)/);
  assert.match(out, /error: this message does not fit: it is \d+ tokens after the chat template, and with room for 24 new tokens that is more than the model's 256 positions/);

  // after the refusal the session goes on without the huge message, dropping whatever it must
  assert.equal(t4.messages[t4.messages.length - 1].content, "Hi");
  assert.ok(!t4.messages.some((m) => m.content === huge));
  assert.deepEqual(t4.messages.slice(-3), [user(long(3)), a[2], user("Hi")]);
  for (const t of turns) assert.ok(t.promptIds.length + MAX_NEW <= POSITIONS);
});

test("on a terminal: Ctrl-C stops a streaming answer and keeps the partial answer; Ctrl-C at an empty prompt leaves", async () => {
  const maxNew = 120;
  const story = "Tell me a long story.";
  const full = await greedy(rendered([user(story)]), maxNew);
  assert.ok(full.completionTokens > 20 && full.completion.length > 4, "a long answer to interrupt");
  const s = start({ maxNewTokens: String(maxNew) }, true);
  await until(() => s.out().includes("> "), "the first prompt");
  const before = s.out().length;
  s.input.write(`${story}\r`);
  await until(() => s.out().slice(before).includes(full.completion.slice(0, 2)), "the answer to start streaming");
  s.input.write("\x03");
  await until(() => s.turns.length === 1, "the stopped turn");
  const stopped = s.turns[0].result;
  assert.equal(stopped.finishReason, "abort");
  assert.ok(stopped.completionTokens < full.completionTokens, "stopped early");
  assert.ok(full.completion.startsWith(stopped.completion), "the partial answer is the start of the full one");
  await until(() => s.out().includes("the partial answer stays"), "the note");

  s.input.write("Go on.\r");
  await until(() => s.turns.length === 2, "the second turn");
  const history = [user(story), assistant(stopped.completion.trim()), user("Go on.")];
  assert.deepEqual(s.turns[1].messages, history);
  assert.deepEqual(s.turns[1].promptIds, rendered(history));
  await until(() => s.out().includes("tokens/s"), "the statistics line");

  s.input.write("\x03");  // at an empty prompt
  const summary = await s.done;
  assert.equal(summary.answers, 2);
  const out = s.out();
  assert.ok(out.includes("\x1b[2m"), "dim notes on a terminal");
  assert.match(out, /\(\d+ tokens, [\d.]+ tokens\/s/);
});

test("bad settings are refused before the model loads, naming the flag", async () => {
  const input = new PassThrough();
  const output = new PassThrough();
  await assert.rejects(
    runChat({ model: join(tmp.dir, "no-such-model"), temperature: "-1", topK: "1.5", seed: "x" }, { input, output, isTTY: false }),
    (e: Error) => /--temperature: temperature = -1/.test(e.message) && /--top-k: top_k = 1.5/.test(e.message) && /--seed/.test(e.message),
  );
  await assert.rejects(runChat({ model: dir, maxNewTokens: "256" }, { input, output, isTTY: false }), /--max-new-tokens 256 leaves no room .* 256 positions/);
});

test("the command line: piped stdin, banner, exit code 0; --help documents the options and commands", () => {
  const root = resolve(fileURLToPath(new URL("../..", import.meta.url)));
  const entry = join(root, "bin", "preftune.js");
  const r = spawnSync(process.execPath, [entry, "chat", "--model", dir, "--max-new-tokens", "8", "--threads", "1"],
    { cwd: root, input: "hello\n/exit\n", encoding: "utf8", timeout: 30000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^preftune chat: model tiny-llama, adapter none \(greedy, up to 8 new tokens\)/);
  assert.equal(r.stdout.split("\n> ").length, 3, "two prompts: one answered, one left with /exit");

  const h = spawnSync(process.execPath, [entry, "chat", "--help"], { cwd: root, encoding: "utf8", timeout: 30000 });
  assert.equal(h.status, 0, h.stderr);
  for (const s of ["--model", "--adapter", "--system", "--max-new-tokens", "--temperature", "--top-p", "--top-k", "--min-p",
    "--repetition-penalty", "--seed", "--threads", "/reset", "/system TEXT", "/exit", "/help", "Ctrl-C", "generation_config.json"]) {
    assert.ok(h.stdout.includes(s), `--help mentions ${s}`);
  }
});
