// Hostile command lines: `bench --seq 1e9`, `--batch 1e8`, `--steps -3`, `--seed 2^32`; `score` on a model
// whose weights are all NaN; `score` on a model with 512 positions and the default --max-length. Each is a
// refusal naming the flag or the model and the fix (exit code 1, no stack trace), or the right result.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { runBench } from "../../src/cli/bench.ts";
import { score } from "../../src/eval/pairwise.ts";
import { readHeader, readTensor, writeSafetensors, type TensorToWrite } from "../../src/models/safetensors.ts";
import { makeTinyModel } from "../../src/models/tiny.ts";
import { assertNoCrash, assertRefused, cli, jsonl, scratch } from "./helpers.ts";

const tmp = scratch("preftune-hostile-cli-");
let good: string, nan: string, data: string, config: string;

before(() => {
  good = makeTinyModel(join(tmp.dir, "good"), { tokenizer: "llama2", maxPositions: 512 });
  nan = makeTinyModel(join(tmp.dir, "nan"), { tokenizer: "llama2", maxPositions: 512 });
  const file = join(nan, "model.safetensors");
  const h = readHeader(file);
  const tensors: TensorToWrite[] = [...h.tensors.keys()].map((name) => ({ name, dtype: "F32", shape: h.tensors.get(name)!.shape, data: readTensor(h, name).fill(NaN) }));
  writeSafetensors(file, tensors);
  data = join(tmp.dir, "pairs.jsonl");
  writeFileSync(data, jsonl(Array.from({ length: 4 }, (_, i) => ({ prompt: `What is ${i} + ${i}?`, chosen: ` ${2 * i}.`, rejected: ` ${2 * i + 1}.` }))));
  config = join(tmp.dir, "config.json");
  writeFileSync(config, JSON.stringify({
    architectures: ["LlamaForCausalLM"], vocab_size: 128, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1,
    num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 256, tie_word_embeddings: true,
  }));
});
after(() => tmp.cleanup());

test("bench refuses sizes it cannot run before allocating them, and steps or seeds out of range", () => {
  const bench = (...a: string[]) => cli(["bench", "--config", config, "--threads", "1", ...a]);
  assertRefused(bench("--seq", "1e9"), /--batch 4 --seq 1000000000: 1000000000 tokens per row is more than the model's max_position_embeddings \(256, .*config\.json\); use at most 256/);
  assertRefused(bench("--batch", "1e8", "--seq", "64"), /--batch 100000000 --seq 64: 100000000 rows × 64 tokens need at least [\d.]+ GiB for activations, more than this machine's [\d.]+ GiB; lower the batch or the sequence length/);
  assertRefused(bench("--steps", "-3"), /--steps must be a whole number ≥ 1, got -3/);
  const o = { config, batch: 1, seq: 8, steps: 1, warmup: 0, threads: 1, seed: 0 };
  assert.throws(() => runBench({ ...o, seed: 2 ** 32 }), /--seed must be a whole number from 0 to 4294967295/);
  assert.throws(() => runBench({ ...o, seq: NaN }), /--seq must be a whole number ≥ 2, got NaN/);
  assert.throws(() => runBench({ ...o, config: tmp.dir }), /--config .*: is a folder; pass the config\.json file inside it/);
});

test("score on a model whose weights are NaN is refused naming the model, not 'accuracy 0.00%'", () => {
  const r = cli(["score", "--model", nan, "--dataset", data, "--output", join(tmp.dir, "nan.jsonl"), "--max-length", "64", "--threads", "1"]);
  assertRefused(r, new RegExp(`${nan.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: the model's log-probs are not finite \\(NaN for pair 0; 4 of 4 pairs\\), so its weights are not finite`));
  assert.doesNotMatch(r.stdout, /accuracy/);
});

test("score's default max_length is min(1024, the model's positions) (API)", async () => {
  const s = await score({ model: good, dataset: data, output: join(tmp.dir, "api.jsonl"), threads: 1, quiet: true });
  assert.equal(s.pairs, 4);
});

test("score's default --max-length is min(1024, the model's positions) (CLI)", () => {
  const r = cli(["score", "--model", good, "--dataset", data, "--output", join(tmp.dir, "cli.jsonl"), "--threads", "1"]);
  assertNoCrash(r);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /4 pairs scored/);
});
