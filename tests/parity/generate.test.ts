// Parity of native greedy decoding (src/generate/greedy.ts, batched with a KV cache) with transformers'
// generate() on the three tiny checkpoints, and on llama-tiny with its PEFT adapter (tests/fixtures/generate,
// written by tools/reference/generate_fixtures.py one prompt at a time). Token for token, each prompt alone
// and all prompts as one padded batch. Every step of the fixture has a top-1/top-2 logit gap above 1e-3, so
// fp32 rounding cannot excuse a different token. Nothing here needs torch.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { NativeModel, setNumThreads } from "../../src/core/native.ts";
import { greedyIds } from "../../src/generate/greedy.ts";
import { loadWeightsInto, readModelDir } from "../../src/models/checkpoint.ts";
import { loadAdapter } from "../../src/models/peft.ts";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

interface Case { seed: number; prompt: number[]; new_ids: number[]; margins: number[] }
interface Fixture {
  model: string;
  checkpoint: string;
  vocab_size: number;
  torch: string;
  transformers: string;
  generate: { max_new_tokens: number; eos_token_id: null; batch_size: 1 };
  min_margin_required: number;
  min_margin: number;
  cases: Case[];
  lora?: { adapter: string; peft: string; scaling: number; min_margin: number; cases: Case[] };
}

function readFixture(name: string): Fixture {
  const fx = JSON.parse(readFileSync(join(repo, "tests", "fixtures", "generate", `${name}.json`), "utf8")) as Fixture;
  const n = fx.generate.max_new_tokens;
  for (const c of [...fx.cases, ...(fx.lora?.cases ?? [])]) {
    assert.equal(c.new_ids.length, n, `${name} seed ${c.seed}: ${n} new tokens in the fixture`);
    assert.ok(Math.min(...c.margins) > fx.min_margin_required, `${name} seed ${c.seed}: every logit margin above ${fx.min_margin_required}`);
    assert.ok(c.prompt.every((t) => Number.isInteger(t) && t >= 0 && t < fx.vocab_size), `${name} seed ${c.seed}: prompt ids in the vocabulary`);
  }
  return fx;
}

function load(fx: Fixture): NativeModel {
  const dir = join(repo, fx.checkpoint);
  const model = new NativeModel(readModelDir(dir).config);
  loadWeightsInto(dir, model.table, model.params);
  return model;
}

/** greedyIds on each prompt alone, on all of them as one batch, and on the batch reversed: all must match. */
function checkCases(model: NativeModel, cases: Case[], maxNew: number, what: string, opts?: { adapters?: boolean }): void {
  for (const c of cases) {
    const out = greedyIds(model, [c.prompt], maxNew, opts);
    assert.equal(out.length, 1, `${what}: one row back for one prompt`);
    assert.deepEqual(out[0], c.new_ids, `${what}, prompt of ${c.prompt.length} tokens (seed ${c.seed}) alone`);
  }
  const prompts = cases.map((c) => c.prompt);
  const batch = greedyIds(model, prompts, maxNew, opts);
  assert.equal(batch.length, cases.length, `${what}: one row per prompt`);
  cases.forEach((c, i) => assert.deepEqual(batch[i], c.new_ids, `${what}, prompt of ${c.prompt.length} tokens (seed ${c.seed}) in a batch of ${cases.length}`));
  const reversed = greedyIds(model, prompts.slice().reverse(), maxNew, opts).reverse();
  cases.forEach((c, i) => assert.deepEqual(reversed[i], c.new_ids, `${what}, prompt of ${c.prompt.length} tokens (seed ${c.seed}) in the reversed batch`));
}

setNumThreads(2);

for (const name of ["llama-tiny", "qwen2-tiny", "qwen3-tiny"]) {
  test(`${name}: greedy continuations match transformers' generate(), alone and batched`, (t) => {
    const fx = readFixture(name);
    const model = load(fx);
    try {
      checkCases(model, fx.cases, fx.generate.max_new_tokens, name);
    } finally {
      model.free();
    }
    t.diagnostic(`${fx.cases.length} prompts (lengths ${fx.cases.map((c) => c.prompt.length).join(", ")}) x ${fx.generate.max_new_tokens} tokens; smallest logit margin ${fx.min_margin}; transformers ${fx.transformers}, torch ${fx.torch}`);
  });
}

test("llama-tiny + PEFT adapter: greedy continuations match PeftModel.generate(); adapters off gives the base model's", (t) => {
  const fx = readFixture("llama-tiny");
  assert.ok(fx.lora, "the llama-tiny fixture holds the adapter case");
  const lora = fx.lora!;
  const model = load(fx);
  try {
    const { adapter } = loadAdapter(join(repo, lora.adapter), model);
    assert.equal(adapter.scaling, lora.scaling, "scaling lora_alpha / r");
    const maxNew = fx.generate.max_new_tokens;
    checkCases(model, lora.cases, maxNew, "llama-tiny + adapter", { adapters: true });
    checkCases(model, lora.cases, maxNew, "llama-tiny + adapter (default options)");
    // The same model with its adapters disabled is the base model again.
    checkCases(model, fx.cases, maxNew, "llama-tiny, adapter attached but disabled", { adapters: false });
    const base = greedyIds(model, lora.cases.map((c) => c.prompt), maxNew, { adapters: false });
    assert.ok(lora.cases.some((c, i) => base[i].join() !== c.new_ids.join()), "the adapter changes the continuations (the fixture is not the base model's)");
  } finally {
    model.free();
  }
  t.diagnostic(`${lora.cases.length} prompts with ${lora.adapter}; smallest logit margin ${lora.min_margin}; peft ${lora.peft}`);
});
