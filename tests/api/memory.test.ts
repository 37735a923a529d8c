// Native memory of the library's models: loading and disposing 20 models in a row leaves the resident set flat
// (dispose frees the native buffers; FinalizationRegistry covers a model dropped without dispose).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { AutoModelForCausalLM } from "../../src/index.ts";
import { makeTinyModel, scratch } from "../helpers/tiny-model.ts";

const tmp = scratch("preftune-mem-");
after(() => tmp.cleanup());
const MiB = 1024 * 1024;

test("20 models created and disposed in a loop leave RSS flat", async () => {
  // a few million parameters: a leak of one model per iteration would show at once
  const dir = makeTinyModel(join(tmp.dir, "m"), { vocab: 4096, hidden: 256, layers: 4, heads: 4, kvHeads: 2, intermediate: 512, seed: 1 });
  const rss: number[] = [];
  let params = 0;
  for (let i = 0; i < 20; i++) {
    const m = await AutoModelForCausalLM.from_pretrained(dir, { print: null });
    params = m.num_parameters();
    await m.generate([1, 2, 3], { max_new_tokens: 2 });   // touches the weights and a KV cache
    m.dispose();
    assert.ok(m.disposed);
    m.dispose();   // idempotent
    assert.throws(() => m.native, /disposed/);
    rss.push(process.memoryUsage().rss / MiB);
  }
  const growth = rss[19] - rss[4];
  const modelMiB = (params * 4) / MiB;
  console.log(`# RSS MiB after models 1, 5, 10, 20: ${[0, 4, 9, 19].map((i) => rss[i].toFixed(1)).join(", ")}; growth 5→20: ${growth.toFixed(1)} MiB; one model's fp32 weights: ${modelMiB.toFixed(1)} MiB`);
  assert.ok(growth < modelMiB, `RSS grew by ${growth.toFixed(1)} MiB over 15 models (a leak of one model each would be about ${(15 * modelMiB).toFixed(0)} MiB)`);
});

test("a model dropped without dispose() is freed by the FinalizationRegistry once collected", async () => {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  let freed = 0;
  const load = async () => {
    const m = await AutoModelForCausalLM.from_pretrained(join(tmp.dir, "m"), { print: null });
    const native = m.native;
    const free = native.free.bind(native);
    native.free = () => { freed++; free(); };
    return native;   // the model object itself becomes unreachable here; its native model stays referenced
  };
  const natives = [await load(), await load()];
  for (let k = 0; k < 10 && freed < 2; k++) { gc(); await new Promise((r) => setTimeout(r, 10)); }
  assert.equal(freed, 2, "both native models were freed through the registry");
  assert.throws(() => natives[0].kvCache(1, 1), /after free/);
});
