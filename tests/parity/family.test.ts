// Parity of the native decoder with transformers' own Gemma 2, Gemma 3 text, Phi-2, Phi-3, a Phi-4-mini-like Phi3,
// GPT-NeoX (parallel and sequential residual) and OPT, and with PEFT's LoRA on each family's "all-linear" modules
// (tests/fixtures/family, written by tools/reference/family_fixtures.py): per-token log-probs, the masked NLL, every
// gradient, 10 AdamW steps, greedy decoding with the KV cache, and the adapter's log-probs and gradients. GPT-NeoX's
// query_key_value rows are per head [q_h | k_h | v_h] in the files and q|k|v-stacked in the core, so its reference
// gradients are permuted the way the loader permutes the weights. Nothing here needs torch.
import { test } from "node:test";
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { setNumThreads } from "../../src/core/native.ts";
import { loadAdapter, loadAdapterWeights, resolveTargetModules } from "../../src/models/peft.ts";
import { maxAbs } from "../helpers/compare.ts";
import {
  checkFullForwardArgmax, checkGrads, checkGreedy, checkLogpsLossGrads, familyGradCheck as gradCheck, loadCheckpoint, nll,
  readFixture, readGenerateFixture, trajectoryTest,
} from "../helpers/parity.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "family");
const CASES = ["gemma2", "gemma3", "phi2", "phi3", "phi4mini", "phi4mini-longrope", "phi3-longrope-short", "neox", "neox-seq", "opt", "opt-350m"];
const ADAPTER = "lora-adapter";

function load(name: string) {
  const dir = join(root, name);
  const fixture = readFixture(join(dir, "fixture.safetensors"));
  return { dir, ...loadCheckpoint(dir), ...fixture, batch: fixture.batchOf() };
}

/** The module paths an adapter table covers: base_model.model.<path>.lora_A.weight → <path>. */
const adaptedModules = (names: string[]) =>
  names.filter((n) => n.endsWith(".lora_A.weight")).map((n) => n.slice("base_model.model.".length, -".lora_A.weight".length)).sort();

setNumThreads(2);

for (const name of CASES) {
  test(`${name}: log-probs, loss and every gradient match transformers`, (t) => {
    const { model, get, batch, fx } = load(name);
    try {
      const { d, worst, checked } = checkLogpsLossGrads(model, batch, fx, get, gradCheck(model, get, fx.metadata?.zero_grads));
      t.diagnostic(`logps max abs diff ${d.toExponential(2)}; worst of ${checked} gradient relative errors ${worst.toExponential(2)}; ` +
        `the fixture's features move the log-probs by ${fx.metadata?.feature_effects}`);
    } finally {
      model.free();
    }
  });

  test(`${name}: 10 AdamW steps with clipping follow the PyTorch trajectory`, trajectoryTest(() => load(name)));

  test(`${name}: greedy decoding with the KV cache matches transformers' generate()`, (t) => {
    const { dir, model } = load(name);
    const g = readGenerateFixture(dir);
    try {
      checkFullForwardArgmax(model, g.prompt, checkGreedy(model, g));
    } finally {
      model.free();
    }
    t.diagnostic(`${g.prompt.length}-token prompt + ${g.new_ids.length} new tokens; smallest logit margin ${Math.min(...g.margins)}`);
  });

  test(`${name}: LoRA on "all-linear" adapts PEFT's modules; log-probs and every adapter gradient match PEFT`, (t) => {
    const { dir, model, get: baseGet } = load(name);
    const { fx, get, batchOf } = readFixture(join(dir, "lora.safetensors"));
    const md = fx.metadata!;
    try {
      const adapter = model.attachLora({ r: Number(md.r), loraAlpha: Number(md.lora_alpha), useRslora: false, targetModules: resolveTargetModules("all-linear", "target_modules", model.config), loraDropout: 0 });
      assert.deepEqual(adaptedModules(adapter.table.map((p) => p.name)), JSON.parse(md.adapted_modules), "the modules PEFT's all-linear targets");
      assert.equal(adapter.scaling, Number(md.scaling));
      loadAdapterWeights(join(dir, ADAPTER), adapter);
      const batch = batchOf();
      const stats = model.forward(batch, { train: true });
      const d = maxAbs(stats.logps, get("logps"));
      assert.ok(d <= 1e-5, `logps max abs diff ${d}`);
      assert.ok(maxAbs(stats.logps, baseGet("logps")) > 1e-3, "the adapter changes the model (non-zero B in the fixture)");
      const { loss, dlogps } = nll(stats.logps, get("loss_mask"));
      assert.ok(Math.abs(loss - get("loss")[0]) / get("loss")[0] <= 1e-6, `loss ${loss} vs ${get("loss")[0]}`);
      model.zeroGrad();
      adapter.zeroGrad();
      model.backward(dlogps);
      const { worst, checked } = checkGrads(adapter, fx, get, gradCheck(model, get));
      assert.ok(model.grads.every((g) => g === 0), "the frozen base gets no gradient at all");
      t.diagnostic(`PEFT target_modules ${md.target_module_names}; logps max abs diff ${d.toExponential(2)}; worst of ${checked} adapter gradient relative errors ${worst.toExponential(2)}`);
    } finally {
      model.free();
    }
  });

  test(`${name}: PEFT's adapter folder (its adapter_config.json as written) loads and gives PEFT's log-probs`, () => {
    const { dir, model } = load(name);
    const { get, batchOf } = readFixture(join(dir, "lora.safetensors"));
    try {
      loadAdapter(join(dir, ADAPTER), model);
      const d = maxAbs(model.forward(batchOf(), { train: false }).logps, get("logps"));
      assert.ok(d <= 1e-5, `logps max abs diff ${d}`);
    } finally {
      model.free();
    }
  });
}
