// SFT and the dataset keys end to end on a tiny Llama-shaped model with the real Llama-2 tokenizer: TRL's
// language-modelling formats (text, messages with and without assistant_only_loss), packing (the packed run's
// first step has the unpacked run's loss and gradient norm when the batch holds the same rows; a packed epoch
// has one step per packed sequence), dataset_name read from a fixture Hugging Face cache, a dataset_mixture
// of a local folder and a cached dataset, chat_template_path, the max_length limit under its old name
// max_seq_length, and `preftune data tokenize` writing completion_mask.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Command } from "commander";
import { registerDataCommands } from "../../src/cli/data.ts";
import { packRows } from "../../src/data/packing.ts";
import { prepareDataset } from "../../src/data/prepare.ts";
import { loadTokenizer, type Tokenizer } from "../../src/data/tokenizer.ts";
import type { TokenizedUnpaired } from "../../src/data/tokenize.ts";
import { resolveConfig } from "../../src/train/config.ts";
import { train, type TrainResult } from "../../src/train/loop.ts";
import { samplePrompts } from "../../src/train/samples.ts";
import { makeTinyModel, scratch } from "../helpers/tiny-model.ts";

const WORDS = ["river", "stone", "lamp", "quiet", "orange", "window", "bread", "north", "silver", "garden", "paper", "cloud"];
const sentence = (i: number, n: number) => `Note ${i}: ` + Array.from({ length: n }, (_, k) => WORDS[(i * 7 + k * 5) % WORDS.length]).join(" ") + ".";
const textRow = (i: number) => ({ text: sentence(i, 4 + ((i * 11) % 23)) });
const chatRow = (i: number) => ({
  messages: [
    { role: "user", content: `What goes with ${WORDS[i % WORDS.length]}?` },
    { role: "assistant", content: sentence(i, 3 + (i % 5)) },
    { role: "user", content: "And then?" },
    { role: "assistant", content: sentence(i + 50, 2 + (i % 4)) },
  ],
});
const jsonl = (rows: object[]) => rows.map((r) => JSON.stringify(r)).join("\n") + "\n";
const HUB_REV = "5".repeat(40);

let tmp: ReturnType<typeof scratch>;
let model: string, textDir: string, chatDir: string, tok: Tokenizer;
const savedHub = process.env.HF_HUB_CACHE;

before(async () => {
  tmp = scratch();
  model = makeTinyModel(join(tmp.dir, "model"), { tokenizer: "llama2", hidden: 16, heads: 2, kvHeads: 1, intermediate: 32, layers: 1, maxPositions: 256, seed: 4, std: 0.1 });
  textDir = join(tmp.dir, "text");
  mkdirSync(textDir);
  writeFileSync(join(textDir, "train.jsonl"), jsonl(Array.from({ length: 12 }, (_, i) => textRow(i))));
  writeFileSync(join(textDir, "test.jsonl"), jsonl(Array.from({ length: 4 }, (_, i) => textRow(100 + i))));
  chatDir = join(tmp.dir, "chat");
  mkdirSync(chatDir);
  writeFileSync(join(chatDir, "train.jsonl"), jsonl(Array.from({ length: 8 }, (_, i) => chatRow(i))));
  // a Hugging Face cache with one dataset repo: refs/main names the snapshot that holds the splits
  const hub = join(tmp.dir, "hub");
  const repo = join(hub, "datasets--tiny-org--sft-notes");
  const snap = join(repo, "snapshots", HUB_REV);
  mkdirSync(join(snap, "data"), { recursive: true });
  mkdirSync(join(repo, "refs"));
  writeFileSync(join(repo, "refs", "main"), HUB_REV);
  writeFileSync(join(snap, "data", "train-00000-of-00001.jsonl"), jsonl(Array.from({ length: 10 }, (_, i) => textRow(200 + i))));
  writeFileSync(join(snap, "data", "test-00000-of-00001.jsonl"), jsonl(Array.from({ length: 3 }, (_, i) => textRow(300 + i))));
  process.env.HF_HUB_CACHE = hub;
  tok = await loadTokenizer(model);
});
after(() => {
  if (savedHub === undefined) delete process.env.HF_HUB_CACHE;
  else process.env.HF_HUB_CACHE = savedHub;
  tmp.cleanup();
});

let runNo = 0;
async function run(over: Record<string, unknown>): Promise<{ r: TrainResult; lines: string[]; out: string }> {
  const out = join(tmp.dir, `run-${++runNo}`);
  const { config, notes } = resolveConfig({
    method: "sft", model_name_or_path: model, output_dir: out, dataset_cache_dir: null, threads: 1, max_length: 64,
    learning_rate: 1e-3, per_device_train_batch_size: 4, max_steps: 1, logging_steps: 1, save_strategy: "no",
    train_sampling_strategy: "sequential", disable_tqdm: true, ...over,
  });
  const lines: string[] = [];
  const r = await train(config, { notes, handleSignals: false, print: (l) => lines.push(l) });
  return { r, lines, out };
}
const first = (r: TrainResult) => r.logHistory.find((e) => e.step === 1 && "loss" in e)!;
const line = (lines: string[], re: RegExp) => lines.find((l) => re.test(l)) ?? assert.fail(`no line matching ${re} in:\n${lines.join("\n")}`);

test("text rows (dataset_text_field): trained whole; a renamed text column is read through dataset_text_field", async () => {
  const { r, lines } = await run({ dataset_name: textDir, max_steps: 2 });
  assert.equal(r.globalStep, 2);
  assert.ok(Number.isFinite(first(r).loss as number) && (first(r).loss as number) > 0);
  assert.match(line(lines, /^train data:/), /^train data: 12 rows from .*train\.jsonl; dropped 0, truncated \d+, bad rows skipped 0$/);

  const body = join(tmp.dir, "body");
  mkdirSync(body);
  writeFileSync(join(body, "train.jsonl"), jsonl(Array.from({ length: 12 }, (_, i) => ({ body: textRow(i).text }))));
  const renamed = await run({ dataset_name: body, dataset_text_field: "body", max_steps: 2 });
  assert.deepEqual(renamed.r.logHistory.filter((e) => "loss" in e).map((e) => e.loss), r.logHistory.filter((e) => "loss" in e).map((e) => e.loss));
  await assert.rejects(run({ dataset_name: body }), /found columns \["body"\] but none of .*dataset_text_field/);   // no "text" column
});

test("messages: the whole conversation, or with assistant_only_loss only the assistant turns", async () => {
  const whole = await run({ dataset_name: chatDir, per_device_train_batch_size: 8 });
  const asst = await run({ dataset_name: chatDir, per_device_train_batch_size: 8, assistant_only_loss: true });
  assert.match(line(asst.lines, /^train data:/), /8 rows .*; assistant tokens found by rendering each turn$/);
  assert.notEqual(first(whole.r).loss, first(asst.r).loss);
  assert.equal(first(whole.r).num_tokens, first(asst.r).num_tokens);   // the same sequences; only the targets differ
  // the rows trained on: the user turns (and template text around them) are masked out
  const rows = (await prepareDataset(chatDir, tok, { method: "sft", max_length: 64, assistant_only_loss: true, cacheDir: null })).rows as TokenizedUnpaired[];
  for (const row of rows) {
    assert.ok(row.completion_mask, "a mask: not every completion token is trained");
    assert.ok(row.completion_mask!.includes(0) && row.completion_mask!.includes(1));
  }
  await assert.rejects(run({ dataset_name: textDir, assistant_only_loss: true }), /assistant_only_loss needs conversational data/);
});

test("packing (bfd): the same rows in one batch give the unpacked run's loss and gradient norm; an epoch is one step per packed sequence", async () => {
  const plain = await run({ dataset_name: textDir, per_device_train_batch_size: 12 });
  const packed = await run({ dataset_name: textDir, per_device_train_batch_size: 12, packing: true });
  const rows = (await prepareDataset(textDir, tok, { method: "sft", max_length: 64, cacheDir: null })).rows as TokenizedUnpaired[];
  const k = packRows(rows, { max_length: 64 }).stats.packedRows;
  assert.ok(k < 12 && k > 1, `${k} packed sequences`);
  assert.match(line(packed.lines, /^train rows: packed/), new RegExp(`^train rows: packed 12 rows \\(bfd\\) into ${k} sequences of at most 64 tokens`));
  const a = first(plain.r), b = first(packed.r);
  assert.ok(Math.abs((a.loss as number) - (b.loss as number)) <= 1e-5 * Math.abs(a.loss as number), `${a.loss} vs ${b.loss}`);
  assert.ok(Math.abs((a.grad_norm as number) - (b.grad_norm as number)) <= 1e-4 * (a.grad_norm as number), `${a.grad_norm} vs ${b.grad_norm}`);
  assert.equal(a.num_tokens, b.num_tokens);

  // one packed sequence per micro-batch for one epoch: k steps; the eval split is packed too (eval_packing: null)
  const epoch = await run({ dataset_name: textDir, packing: true, per_device_train_batch_size: 1, max_steps: -1, num_train_epochs: 1, logging_steps: 100, eval_strategy: "epoch" });
  assert.equal(epoch.r.globalStep, k);
  assert.match(line(epoch.lines, /^eval rows: packed/), /^eval rows: packed 4 rows \(bfd\) into \d+ sequences/);
  assert.ok(Number.isFinite(epoch.r.logHistory.find((e) => "eval_loss" in e)!.eval_loss as number));
  // eval_packing: false keeps the eval rows whole
  const unpackedEval = await run({ dataset_name: textDir, packing: true, eval_packing: false, eval_on_start: true, max_steps: 1 });
  assert.ok(!unpackedEval.lines.some((l) => l.startsWith("eval rows: packed")));
});

test("dataset_name: a Hugging Face dataset id read from the local cache (train and test splits); a missing one says how to get it", async () => {
  const { r, lines } = await run({ dataset_name: "tiny-org/sft-notes", eval_strategy: "steps", eval_steps: 1 });
  assert.equal(r.globalStep, 1);
  assert.match(line(lines, /^data:/), new RegExp(`^data: tiny-org/sft-notes\\[train, eval test\\] \\(Hugging Face cache, revision ${HUB_REV.slice(0, 12)}\\)`));
  assert.match(line(lines, /^train data:/), /^train data: 10 rows from .*snapshots.*train-00000-of-00001\.jsonl/);
  assert.match(line(lines, /^eval data:/), /^eval data: 3 rows/);
  const card = readFileSync(join(r.outputDir, "README.md"), "utf8");
  assert.match(card, /tiny-org\/sft-notes/);
  await assert.rejects(run({ dataset_name: "tiny-org/not-cached" }), /huggingface-cli download --repo-type dataset tiny-org\/not-cached/);
});

test("dataset_mixture: a local folder and a cached dataset, weighted, shuffled with seed, test_split_size rows held out for eval", async () => {
  const mix = { datasets: [{ id: textDir, split: "train", weight: 0.5 }, { id: "tiny-org/sft-notes", split: "train", columns: ["text"] }], seed: 3, test_split_size: 2 };
  const { r, lines } = await run({ dataset_mixture: mix, eval_on_start: true });
  assert.equal(r.globalStep, 1);
  assert.match(line(lines, /^data:/), new RegExp(`^data: dataset_mixture: ${textDir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\[train\\] 6/12, tiny-org/sft-notes\\[train\\] 10/10`));
  assert.match(line(lines, /^train data:/), /^train data: 14 rows/);   // 6 + 10 − 2
  assert.match(line(lines, /^eval data:/), /^eval data: 2 rows/);
  assert.ok(r.logHistory.some((e) => e.step === 0 && "eval_loss" in e));
  // the same spec and seed: the same rows in the same order, so the same first loss
  const again = await run({ dataset_mixture: mix, eval_on_start: true });
  assert.equal(first(again.r).loss, first(r).loss);
});

test("chat_template_path: a Jinja file replaces the tokenizer's template and is saved with the model; a folder is refused", async () => {
  const file = join(tmp.dir, "template.jinja");
  const template = "{% for m in messages %}{{ '<' + m['role'] + '> ' + m['content'] + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<assistant> ' }}{% endif %}";
  writeFileSync(file, template);
  const { r, out } = await run({ dataset_name: chatDir, chat_template_path: file, per_device_train_batch_size: 8 });
  const base = await run({ dataset_name: chatDir, per_device_train_batch_size: 8 });
  assert.notEqual(first(r).num_tokens, first(base.r).num_tokens);   // other text around the turns
  assert.equal(JSON.parse(readFileSync(join(out, "tokenizer_config.json"), "utf8")).chat_template, template);
  await assert.rejects(run({ dataset_name: chatDir, chat_template_path: model }), /chat_template_path: .* is a folder; TRL then clones/);
});

test("max_length above the model's positions is refused before tokenizing, also under its old name max_seq_length", async () => {
  await assert.rejects(run({ dataset_name: textDir, max_length: 1000 }), /max_length 1000 is more than .*max_position_embeddings \(256\)/);
  await assert.rejects(run({ dataset_name: textDir, max_length: null, max_seq_length: 1000 }), /max_length 1000 is more than .*max_position_embeddings \(256\)/);
});

test("generate_during_eval's prompts skip rows without a prompt (SFT text rows)", () => {
  assert.deepEqual(samplePrompts([{ prompt_ids: [] }, { prompt_ids: [5, 6] }, { prompt_ids: [] }, { prompt_ids: [5, 6] }, { prompt_ids: [7] }], 3), [[5, 6], [7]]);
});

test("preftune data tokenize writes completion_mask for SFT rows that are not trained whole", async () => {
  const outFile = join(tmp.dir, "chat-tokens.jsonl");
  const program = new Command().exitOverride();
  registerDataCommands(program, () => {});
  await program.parseAsync(["node", "preftune", "data", "tokenize", "--model", model, "--dataset", chatDir, "--method", "sft", "--assistant-only-loss",
    "--max-length", "64", "--output", outFile, "--no-progress", "--no-cache"]);
  const written = readFileSync(outFile, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  const want = (await prepareDataset(chatDir, tok, { method: "sft", max_length: 64, assistant_only_loss: true, cacheDir: null })).rows as TokenizedUnpaired[];
  assert.deepEqual(written, want.map((w) => ({ prompt_ids: w.prompt_ids, completion_ids: w.completion_ids, label: true, completion_mask: w.completion_mask })));
  // text rows are trained whole: no mask written
  await program.parseAsync(["node", "preftune", "data", "tokenize", "--model", model, "--dataset", textDir, "--method", "sft", "--output", outFile, "--no-progress", "--no-cache"]);
  assert.deepEqual(Object.keys(JSON.parse(readFileSync(outFile, "utf8").split("\n")[0])), ["prompt_ids", "completion_ids", "label"]);
});
