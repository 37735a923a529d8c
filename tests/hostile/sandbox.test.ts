// Hostile tokenizers and chat templates: a template with a huge loop, one that would render gigabytes, a
// range(1e9), and a catastrophically backtracking regex in tokenizer.json hit by a 40-character input. Each
// ends as an error naming the template's source or tokenizer.json and the budget it exceeded, within seconds,
// and the tokenizer keeps working afterwards (the sandbox worker is replaced). Small time budgets
// (timeoutMs / PREFTUNE_TOKENIZER_TIMEOUT_MS) keep the suite fast.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadTokenizer, prepareDataset, TokenizerBudgetError } from "../../src/data/index.ts";
import { assertRefused, cli, jsonl, scratch, tokenizerFolder } from "./helpers.ts";

const tmp = scratch("preftune-hostile-sandbox-");
after(() => tmp.cleanup());

const conv = (i: number) => ({
  prompt: [{ role: "user", content: `Question ${i}?` }],
  chosen: [{ role: "assistant", content: `Good answer ${i}.` }],
  rejected: [{ role: "assistant", content: `Bad answer ${i}.` }],
});
const LOOP = "{% for i in range(1000000) %}{% for j in range(1000000) %}{% endfor %}{% endfor %}{{ messages[0]['content'] }}";
// a 4096-character string by doubling, printed a million times: 4 GB of output
const HUGE = "{% set ns = namespace(s='x') %}{% for i in range(12) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{% for i in range(1000000) %}{{ ns.s }}{% endfor %}";
const RANGE = "{% for i in range(1000000000) %}{% endfor %}";

test("a chat template with a huge loop stops at its time budget, naming the template and the budget", async () => {
  const dir = tokenizerFolder(join(tmp.dir, "loop"), { chatTemplate: LOOP });
  for (const sandbox of [true, false]) {
    const tok = await loadTokenizer(dir, { sandbox, timeoutMs: 500 });
    const t0 = performance.now();
    assert.throws(() => tok.applyChatTemplate([{ role: "user", content: "hi" }], { addGenerationPrompt: true }), (e: unknown) => {
      assert.ok(e instanceof TokenizerBudgetError, String(e));
      assert.match(e.message, /the chat template \(.*loop\/tokenizer_config\.json "chat_template"\) did not finish within its 0\.5 s time budget/);
      return true;
    });
    assert.ok(performance.now() - t0 < 8000, `${sandbox ? "sandbox" : "in thread"}: ${(performance.now() - t0).toFixed(0)} ms`);
  }
});

test("a template that would render gigabytes stops at its output budget; range(1e9) is refused", async () => {
  const huge = await loadTokenizer(tokenizerFolder(join(tmp.dir, "huge"), { chatTemplate: HUGE }), { timeoutMs: 20_000 });
  const t0 = performance.now();
  assert.throws(() => huge.applyChatTemplate([{ role: "user", content: "hi" }]), /the chat template \(.*huge\/tokenizer_config\.json "chat_template"\) produced more than its budget of \d+ characters for \d+ characters of input/);
  assert.ok(performance.now() - t0 < 10_000);
  const range = await loadTokenizer(tokenizerFolder(join(tmp.dir, "range"), { chatTemplate: RANGE }));
  assert.throws(() => range.applyChatTemplate([{ role: "user", content: "hi" }]), /range\(0, 1000000000, 1\) would build 1000000000 items \(the limit is 1000000\)/);
});

test("a backtracking regex in tokenizer.json on a 40-character input ends at the time budget naming tokenizer.json; the next call works", async () => {
  const dir = tokenizerFolder(join(tmp.dir, "regex"), {
    edit: (tj) => { tj.pre_tokenizer = { type: "Split", pattern: { Regex: "(a+)+$" }, behavior: "Isolated", invert: false }; },
  });
  const tok = await loadTokenizer(dir, { timeoutMs: 1500 });
  assert.ok(tok.encode("hello world", false).length > 0);
  const t0 = performance.now();
  assert.throws(() => tok.encode("a".repeat(40) + "!", false), (e: unknown) => {
    assert.ok(e instanceof TokenizerBudgetError, String(e));
    assert.ok(e.message.includes(join(dir, "tokenizer.json")));
    assert.match(e.message, /tokenizing 41 characters took longer than the 1\.5 s time budget: a regular expression .* may backtrack without end/);
    return true;
  });
  assert.ok(performance.now() - t0 < 10_000, `${(performance.now() - t0).toFixed(0)} ms`);
  assert.deepEqual(tok.encode("hello world", false), tok.encode("hello world", false));   // a fresh worker answers
});

test("the data pipeline names the row and the budget; skip_bad_rows steps over it (CLI)", async () => {
  const dir = tokenizerFolder(join(tmp.dir, "rowloop"), {
    chatTemplate: "{% for m in messages %}{% if m['content'] == 'Question 2?' %}{% for i in range(1000000) %}{% for j in range(1000000) %}{% endfor %}{% endfor %}{% endif %}{{ m['content'] }}{% endfor %}",
  });
  const f = join(tmp.dir, "rows.jsonl");
  writeFileSync(f, jsonl([conv(1), conv(2), conv(3)]));
  const args = ["data", "tokenize", "--model", dir, "--dataset", f, "--output", join(tmp.dir, "out.jsonl"), "--no-cache", "--no-progress"];
  assertRefused(cli(args, { env: { PREFTUNE_TOKENIZER_TIMEOUT_MS: "500" } }),
    /rows\.jsonl, line 2: the chat template \(.*rowloop\/tokenizer_config\.json "chat_template"\) did not finish within its 0\.5 s time budget .*raise PREFTUNE_TOKENIZER_TIMEOUT_MS/);
  const tok = await loadTokenizer(dir, { timeoutMs: 500 });
  const d = await prepareDataset(f, tok, { method: "dpo", cacheDir: null, skip_bad_rows: true });
  assert.equal(d.rows.length, 2);
  assert.equal(d.stats.badRowsSkipped, 1);
  assert.match(d.stats.badRowMessages[0], /line 2: the chat template .* time budget/);
});
