// Parity of the native decoder's RoPE scaling (llama3, linear, dynamic, yarn) with transformers' own
// LlamaForCausalLM (tests/fixtures/rope, written by tools/reference/rope_fixtures.py): per-token log-probs,
// every gradient, the dynamic model's run-to-run state, and greedy decoding with the KV cache across the
// thresholds. Each fixture is also shown to depend on its scaling (plain RoPE gives other log-probs).
// Nothing here needs torch.
import { test } from "node:test";
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { NativeModel, setNumThreads } from "../../src/core/native.ts";
import type { DecoderConfig } from "../../src/core/types.ts";
import { greedyIds } from "../../src/generate/greedy.ts";
import { maxAbs } from "../helpers/compare.ts";
import { checkFullForwardArgmax, checkGreedy, checkLogpsLossGrads, loadCheckpoint, logpsDiff, readFixture, readGenerateFixture } from "../helpers/parity.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "rope");
const MODELS = ["llama-llama3", "llama-linear", "llama-dynamic", "llama-yarn", "llama-yarn-mscale"];

function load(name: string, override?: (c: DecoderConfig) => DecoderConfig) {
  const dir = join(root, name);
  return { ...loadCheckpoint(dir, override), ...readFixture(join(dir, "fixture.safetensors")) };
}

setNumThreads(2);

for (const name of MODELS) {
  test(`${name}: log-probs, loss and every gradient match transformers`, (t) => {
    const { model, config, get, batchOf, fx } = load(name);
    try {
      assert.ok(config.ropeScaling, "the checkpoint has RoPE scaling");
      const batch = batchOf("");
      if (config.ropeScaling.type === "dynamic") assert.ok(batch.T > config.ropeScaling.originalMaxPositionEmbeddings, "the batch runs past max_position_embeddings");
      const { d, worst, checked } = checkLogpsLossGrads(model, batch, fx, get);
      t.diagnostic(`${config.ropeScaling.type}: logps max abs diff ${d.toExponential(2)}; worst of ${checked} gradient relative errors ${worst.toExponential(2)}`);
    } finally {
      model.free();
    }
  });

  test(`${name}: the fixture depends on the scaling (plain RoPE is far off)`, () => {
    const { model, get, batchOf } = load(name, (c) => ({ ...c, ropeScaling: null }));
    try {
      const d = logpsDiff(model, batchOf(""), get);
      assert.ok(d > 1e-4, `plain RoPE differs from the scaled fixture by only ${d} (10x the parity tolerance needed)`);
    } finally {
      model.free();
    }
  });

  test(`${name}: greedy decoding with the KV cache matches transformers' generate() across the threshold`, (t) => {
    const fx = readGenerateFixture(join(root, name));
    const { model } = load(name);
    try {
      checkGreedy(model, fx);
    } finally {
      model.free();
    }
    t.diagnostic(`${fx.prompt.length}-token prompt + ${fx.new_ids.length} new tokens; smallest logit margin ${Math.min(...fx.margins)}`);
  });
}

test("llama-dynamic: frequencies follow transformers' run-to-run state (grow, keep, restore, grow)", (t) => {
  const { model, fx, get, batchOf } = load("llama-dynamic");
  const fresh = load("llama-dynamic").model;
  try {
    model.forward(batchOf(""), { train: true });  // the gradient run (length 40) comes first in the fixture
    const runs = Number(fx.metadata?.runs ?? 0);
    assert.equal(runs, 3);
    for (let k = 0; k < runs; k++) {
      const batch = batchOf(`run${k}.`);
      const d = maxAbs(model.forward(batch, { train: false }).logps, get(`run${k}.logps`));
      assert.ok(d <= 1e-5, `run ${k} (T ${batch.T}): logps max abs diff ${d}`);
      t.diagnostic(`run ${k} (T ${batch.T}): logps max abs diff ${d.toExponential(2)}`);
    }
    // Run 0 (length 32, between max_position_embeddings 24 and the previous 40) keeps the length-40 frequencies:
    // a fresh model, which recomputes them for 32, gives other log-probs.
    const d0 = maxAbs(fresh.forward(batchOf("run0."), { train: false }).logps, get("run0.logps"));
    assert.ok(d0 > 1e-4, `a fresh model matches the stateful run 0 (diff ${d0}); the state would be untested`);
  } finally {
    model.free();
    fresh.free();
  }
});

test("llama-llama3: greedy tokens are the argmax of the full forward over prompt + continuation", () => {
  const fx = readGenerateFixture(join(root, "llama-llama3"));
  const { model } = load("llama-llama3");
  try {
    checkFullForwardArgmax(model, fx.prompt, greedyIds(model, [fx.prompt], fx.new_ids.length)[0]);
  } finally {
    model.free();
  }
});

test("the native core refuses RoPE scaling it cannot compute, whatever the caller passes", () => {
  const { config, model } = load("llama-llama3");
  model.free();
  const r = config.ropeScaling!;
  const make = (over: Partial<typeof r>, c: Partial<DecoderConfig> = {}) => () => new NativeModel({ ...config, ...c, ropeScaling: { ...r, ...over } }).free();
  assert.throws(make({ lowFreqFactor: 1, highFreqFactor: 1 }), /llama3 RoPE needs low_freq_factor > 0 and high_freq_factor != low_freq_factor/);
  assert.throws(make({ factor: 0 }), /the RoPE scaling factor must be a positive number/);
  assert.throws(make({ factor: NaN }), /the RoPE scaling factor must be a positive number/);
  assert.throws(make({ type: "yarn", attentionFactor: 0 }), /yarn RoPE needs positive beta_fast, beta_slow and attention_factor/);
  assert.throws(make({ type: "dynamic" }, { headDim: 2, hiddenSize: 8, numHeads: 4, numKvHeads: 2 }), /dynamic RoPE needs head_dim > 2/);
  assert.throws(make({ type: "llama3", originalMaxPositionEmbeddings: 0 }), /needs a positive original_max_position_embeddings/);
});
