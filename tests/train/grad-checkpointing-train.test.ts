// gradient_checkpointing: true through the config and the training loop: the same log and the same final
// weights, bit for bit, as the run without it (full fine-tuning and LoRA).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { resolveConfig, type TrainConfig } from "../../src/train/config.ts";
import { train } from "../../src/train/loop.ts";
import type { LogEntry } from "../../src/train/metrics.ts";
import { makeTinyModel, randomPairs, scratch } from "../helpers/tiny-model.ts";
import { AutoModelForCausalLM } from "../../src/index.ts";

let tmp: ReturnType<typeof scratch>;
let model: string;
before(() => {
  tmp = scratch();
  model = makeTinyModel(join(tmp.dir, "model"), { vocab: 96, hidden: 32, layers: 3, seed: 4 });
});
after(() => tmp.cleanup());

let runNo = 0;
function cfg(over: Record<string, unknown>): { config: TrainConfig; notes: string[] } {
  return resolveConfig({
    method: "dpo", model_name_or_path: model, dataset: "(pre-tokenized rows)", output_dir: join(tmp.dir, `run-${++runNo}`),
    threads: 1, logging_steps: 1, learning_rate: 1e-3, per_device_train_batch_size: 2, save_strategy: "no", max_steps: 6, ...over,
  });
}
const strip = (e: LogEntry) => Object.fromEntries(Object.entries(e).filter(([k]) => !/runtime|per_second/.test(k)));
const readLog = (dir: string) => readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => strip(JSON.parse(l)));
const rows = randomPairs(12, { vocab: 96, seed: 5 });

for (const [what, over, file] of [["full fine-tuning", {}, "model.safetensors"], ["LoRA", { use_peft: true, lora_target_modules: "all-linear", lora_dropout: 0 }, "adapter_model.safetensors"]] as const) {
  test(`gradient_checkpointing: true gives the same log and weights, bit for bit (${what})`, async () => {
    const a = cfg(over), b = cfg({ ...over, gradient_checkpointing: true });
    assert.equal(b.config.gradient_checkpointing, true);
    assert.ok(!b.notes.some((n) => n.startsWith("gradient_checkpointing")), "honoured, so no note");
    await train(a.config, { quiet: true, rows: [...rows] });
    await train(b.config, { quiet: true, rows: [...rows] });
    assert.deepEqual(readLog(b.config.output_dir!), readLog(a.config.output_dir!));
    assert.deepEqual(readFileSync(join(b.config.output_dir!, file)), readFileSync(join(a.config.output_dir!, file)));
  });
}

test("the library's PreTrainedModel: gradient_checkpointing_enable / _disable / is_gradient_checkpointing (transformers' names)", async () => {
  const m = await AutoModelForCausalLM.from_pretrained(model, { print: null });
  try {
    assert.equal(m.is_gradient_checkpointing, false);
    m.gradient_checkpointing_enable();
    assert.equal(m.is_gradient_checkpointing, true);
    assert.equal(m.native.gradientCheckpointing, true);
    m.gradient_checkpointing_disable();
    assert.equal(m.is_gradient_checkpointing, false);
  } finally {
    m.dispose();
  }
});
