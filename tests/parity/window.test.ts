// Parity of the native decoder's per-layer attention pattern with transformers' own modelling code
// (tests/fixtures/window, written by tools/reference/window_fixtures.py): Mistral's sliding_window on every layer,
// Qwen2's use_sliding_window from max_window_layers on, SmolLM3's NoPE layers (no_rope_layers) with and without its
// sliding window, over sequences longer than the window: per-token log-probs, every gradient, 10 AdamW steps, and
// greedy decoding with the KV cache past the window. Each fixture is also shown to depend on the pattern (without it the
// log-probs are far off). Nothing here needs torch.
import { test } from "node:test";
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { NativeModel, setNumThreads } from "../../src/core/native.ts";
import type { DecoderConfig } from "../../src/core/types.ts";
import {
  checkFullForwardArgmax, checkGreedy, checkLogpsLossGrads, loadCheckpoint, logpsDiff, readFixture, readGenerateFixture,
  trajectoryTest,
} from "../helpers/parity.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "window");
// The pattern each checkpoint's config.json must resolve to (windows per layer, 0 = full; RoPE per layer).
const MODELS: Record<string, { windows?: number[]; rope?: boolean[] }> = {
  "mistral-window": { windows: [8, 8] },
  "qwen2-window": { windows: [0, 6, 6] },
  "smollm3-nope": { windows: [0, 7, 0, 7], rope: [true, false, true, false] },
  "smollm3-nope-full": { rope: [false, true, true, false] },
};

function load(name: string, override?: (c: DecoderConfig) => DecoderConfig) {
  const dir = join(root, name);
  const fixture = readFixture(join(dir, "fixture.safetensors"));
  return { ...loadCheckpoint(dir, override), ...fixture, batch: fixture.batchOf() };
}

setNumThreads(2);

for (const [name, want] of Object.entries(MODELS)) {
  test(`${name}: config.json resolves to the per-layer pattern transformers builds`, () => {
    const { config, model, fx } = load(name);
    model.free();
    assert.deepEqual(config.layerWindows, want.windows);
    assert.deepEqual(config.layerRope, want.rope);
    const types = JSON.parse(fx.metadata?.layer_types ?? "null") as string[] | null;
    if (types) assert.deepEqual(types.map((t) => t === "sliding_attention"), (config.layerWindows ?? types.map(() => 0)).map((w) => w > 0));
    assert.equal(config.maxPositionEmbeddings, 256, "the length is not capped at the window");
  });

  test(`${name}: log-probs, loss and every gradient match transformers past the window`, (t) => {
    const { model, get, batch, fx } = load(name);
    try {
      const { d, worst, checked } = checkLogpsLossGrads(model, batch, fx, get);
      t.diagnostic(`logps max abs diff ${d.toExponential(2)}; worst of ${checked} gradient relative errors ${worst.toExponential(2)}`);
    } finally {
      model.free();
    }
  });

  test(`${name}: 10 AdamW steps with clipping follow the PyTorch trajectory`, trajectoryTest(() => load(name)));

  if (want.windows) {
    test(`${name}: the fixture depends on the window (full attention is far off)`, () => {
      const { model, get, batch } = load(name, (c) => ({ ...c, layerWindows: undefined }));
      try {
        const d = logpsDiff(model, batch, get);
        assert.ok(d > 1e-4, `full attention differs from the windowed fixture by only ${d}`);
      } finally {
        model.free();
      }
    });
  }
  if (want.rope) {
    test(`${name}: the fixture depends on the NoPE layers (RoPE everywhere is far off)`, () => {
      const { model, get, batch } = load(name, (c) => ({ ...c, layerRope: undefined }));
      try {
        const d = logpsDiff(model, batch, get);
        assert.ok(d > 1e-4, `RoPE on every layer differs from the fixture by only ${d}`);
      } finally {
        model.free();
      }
    });
  }

  test(`${name}: greedy decoding with the KV cache matches transformers' generate() past the window`, (t) => {
    const fx = readGenerateFixture(join(root, name));
    const { model } = load(name);
    try {
      checkFullForwardArgmax(model, fx.prompt, checkGreedy(model, fx));
    } finally {
      model.free();
    }
    t.diagnostic(`${fx.prompt.length}-token prompt + ${fx.new_ids.length} new tokens; smallest logit margin ${Math.min(...fx.margins)}`);
  });
}

test("the native core refuses a negative window or a RoPE flag other than 0/1, naming the layer", () => {
  const { config, model } = load("qwen2-window");
  model.free();
  assert.throws(() => new NativeModel({ ...config, layerWindows: [0, -1, 6] }).free(), /layer_window\[1\] = -1 must be 0 \(full attention\) or a positive sliding window/);
  assert.throws(() => new NativeModel({ ...config, layerWindows: [0, 6] }).free(), /layer_window must be an array of num_layers \(3\) numbers/);
});
