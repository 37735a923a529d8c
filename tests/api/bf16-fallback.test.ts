// bf16: true through the trainer where bf16 compute is unavailable (forced with PREFTUNE_NO_BF16, as tests/bf16
// does): chooseCompute's one note is printed and the run trains in fp32, logging exactly the numbers of the same
// run without bf16. Also under LoRA (where bf16 compute would hold the frozen base in bf16).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { train } from "../../src/train/loop.ts";
import { resolveConfig } from "../../src/train/config.ts";
import { makeTinyModel, randomPairs, scratch } from "../helpers/tiny-model.ts";

const tmp = scratch("preftune-bf16-");
after(() => tmp.cleanup());
const TIMING = /runtime|per_second/;

for (const peft of [false, true]) {
  test(`bf16: true with no bf16 compute here${peft ? " (LoRA)" : ""}: the fallback note, and fp32 training`, async () => {
    const saved = process.env.PREFTUNE_NO_BF16;
    process.env.PREFTUNE_NO_BF16 = "1";
    try {
      const model = makeTinyModel(join(tmp.dir, `m${peft}`), { seed: 4 });
      const rows = randomPairs(8, { seed: 2 });
      const run = async (bf16: boolean) => {
        const lines: string[] = [];
        const { config, notes } = resolveConfig({ method: "orpo", model_name_or_path: model, dataset_name: "unused", output_dir: join(tmp.dir, `out-${peft}-${bf16}`), max_steps: 2, per_device_train_batch_size: 2, logging_steps: 1, learning_rate: 1e-3, save_strategy: "no", bf16, use_peft: peft, lora_r: 2, lora_dropout: 0 });
        const r = await train(config, { rows, notes, print: (l) => lines.push(l), handleSignals: false });
        return { lines, log: r.logHistory.map((e) => Object.fromEntries(Object.entries(e).filter(([k]) => !TIMING.test(k)))) };
      };
      const on = await run(true), off = await run(false);
      const isNote = (l: string) => l.startsWith("note: bf16");
      const notes = on.lines.filter(isNote);
      assert.equal(notes.length, 1, on.lines.join("\n"));
      assert.match(notes[0], /^note: bf16: true: no bf16 compute here .*training in fp32/);
      assert.ok(!off.lines.some(isNote));
      assert.deepEqual(on.log, off.log);
    } finally {
      if (saved === undefined) delete process.env.PREFTUNE_NO_BF16; else process.env.PREFTUNE_NO_BF16 = saved;
    }
  });
}
