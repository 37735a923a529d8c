// Test helpers: the tiny model builder (src/models/tiny.ts), random pre-tokenized preference rows, a small text
// preference dataset folder, a scratch-folder maker, and LoRA training configs over a tiny model. Not fixtures of expected values: tests compute.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { seededRandom } from "../../src/data/sampler.ts";
import type { TokenizedPair, TokenizedUnpaired } from "../../src/data/tokenize.ts";
import { makeTinyModel } from "../../src/models/tiny.ts";
import { resolveConfig, type TrainConfig } from "../../src/train/config.ts";

export { makeTinyModel, TINY_CHAT_TEMPLATE, type TinyModelOptions } from "../../src/models/tiny.ts";

function ids(rand: () => number, n: number, vocab: number): number[] {
  return Array.from({ length: n }, () => 3 + Math.floor(rand() * (vocab - 3)));
}

/** Random pairs with lengths in the given ranges (token ids 3..vocab-1). */
export function randomPairs(n: number, o: { vocab?: number; seed?: number; prompt?: [number, number]; completion?: [number, number] } = {}): TokenizedPair[] {
  const rand = seededRandom(o.seed ?? 7);
  const V = o.vocab ?? 128;
  const [p0, p1] = o.prompt ?? [3, 8];
  const [c0, c1] = o.completion ?? [2, 6];
  const len = (a: number, b: number) => a + Math.floor(rand() * (b - a + 1));
  return Array.from({ length: n }, () => ({ prompt_ids: ids(rand, len(p0, p1), V), chosen_ids: ids(rand, len(c0, c1), V), rejected_ids: ids(rand, len(c0, c1), V) }));
}

/** Random unpaired rows with alternating labels. */
export function randomUnpaired(n: number, o: { vocab?: number; seed?: number } = {}): TokenizedUnpaired[] {
  return randomPairs(n, o).map((p, i) => ({ prompt_ids: p.prompt_ids, completion_ids: i % 2 ? p.rejected_ids : p.chosen_ids, label: i % 2 === 0 }));
}

/** A fresh scratch folder and its cleanup. */
export function scratch(prefix = "preftune-test-"): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A text preference dataset folder (prompt / chosen / rejected rows) with `train` and `test` JSONL splits. */
export function writeWordPairs(dir: string, train: number, test: number): void {
  const words = ["red", "green", "blue", "cat", "dog", "sun", "rain", "tree", "river", "stone"];
  const rows = (n: number, off: number) => Array.from({ length: n }, (_, i) => {
    const a = words[(i + off) % 10], b = words[(3 * i + off + 1) % 10];
    return JSON.stringify({ prompt: `Name something like a ${a} and a ${b}.`, chosen: ` A ${a} ${b} is nice.`, rejected: ` No ${b}s here, ever, ${a}.` });
  });
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "train.jsonl"), rows(train, 0).join("\n") + "\n");
  writeFileSync(join(dir, "test.jsonl"), rows(test, 4).join("\n") + "\n");
}

/**
 * Training configs for use_peft runs on pre-tokenized rows over one tiny model (vocab 96, hidden 32, 2 layers, seeded):
 * DPO, LoRA r 4 on all-linear, learning rate 1e-2, batch 2, one thread, no saves, each run in its own output folder;
 * `defaults` then `over` on top. Call cleanup() when done.
 */
export function loraRuns(seed: number, defaults: Record<string, unknown> = {}) {
  const runs = scratch();
  const model = makeTinyModel(join(runs.dir, "model"), { vocab: 96, hidden: 32, layers: 2, seed });
  let runNo = 0;
  const cfg = (over: Record<string, unknown>): TrainConfig => resolveConfig({
    method: "dpo", model_name_or_path: model, dataset: "(pre-tokenized rows)", output_dir: join(runs.dir, `run-${++runNo}`),
    threads: 1, logging_steps: 1, learning_rate: 1e-2, per_device_train_batch_size: 2, save_strategy: "no",
    use_peft: true, lora_r: 4, lora_alpha: 8, lora_target_modules: "all-linear", ...defaults, ...over,
  }).config;
  return { model, cfg, cleanup: runs.cleanup };
}
