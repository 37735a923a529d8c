// What the parity tests share around their fixture files: a checkpoint loaded into the native core, a
// fixture.safetensors reader (tensors and token batches), generate.json, the masked NLL, one training step in
// the HF Trainer's order, and the log-prob / loss / every-gradient, AdamW-trajectory and greedy-decoding checks.
// Not the fixtures' expected values: those are in the files.
import assert from "node:assert/strict";
import type { TestContext } from "node:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { AdamW, NativeModel, type Optimizer, type Trainable } from "../../src/core/native.ts";
import type { DecoderConfig, TokenBatch } from "../../src/core/types.ts";
import { greedyIds } from "../../src/generate/greedy.ts";
import { loadWeightsInto, readModelDir } from "../../src/models/checkpoint.ts";
import { neoxQkvToStacked } from "../../src/models/neox.ts";
import { readHeader, readTensor, type SafetensorsHeader } from "../../src/models/safetensors.ts";
import { maxAbs, relErr } from "./compare.ts";

/** A checkpoint folder (config.json + model.safetensors) in a NativeModel; override edits the config first. */
export function loadCheckpoint(dir: string, override?: (c: DecoderConfig) => DecoderConfig): { config: DecoderConfig; model: NativeModel } {
  const { config } = readModelDir(dir);
  const model = new NativeModel(override ? override(config) : config);
  loadWeightsInto(dir, model.table, model.params);
  return { config, model };
}

/** A fixture file: its header, get(name) as float32, and batchOf(prefix) from `${prefix}input_ids` (B, T) and `${prefix}lengths` (B). */
export function readFixture(file: string) {
  const fx = readHeader(file);
  const get = (k: string) => readTensor(fx, k);
  const batchOf = (prefix = ""): TokenBatch => {
    const [B, T] = fx.tensors.get(`${prefix}input_ids`)!.shape;
    return { ids: Int32Array.from(get(`${prefix}input_ids`)), lengths: Int32Array.from(get(`${prefix}lengths`)), B, T };
  };
  return { fx, get, batchOf };
}

/** The reference gradient names (grad.<name>) a fixture holds. */
export const gradKeys = (fx: SafetensorsHeader) => [...fx.tensors.keys()].filter((k) => k.startsWith("grad."));

export interface GenerateFixture { prompt: number[]; new_ids: number[]; margins: number[]; min_margin_required: number }

/** generate.json of a fixture folder, after checking every step's logit margin is above its requirement. */
export function readGenerateFixture(dir: string): GenerateFixture {
  const g = JSON.parse(readFileSync(join(dir, "generate.json"), "utf8")) as GenerateFixture;
  assert.ok(Math.min(...g.margins) > g.min_margin_required, "every step's logit margin is above the requirement");
  return g;
}

/** loss = -sum(logps * mask) / sum(mask), and its gradient with respect to logps. */
export function nll(logps: Float32Array, mask: Float32Array): { loss: number; dlogps: Float32Array } {
  let s = 0, n = 0;
  for (let i = 0; i < mask.length; i++) { s -= logps[i] * mask[i]; n += mask[i]; }
  return { loss: s / n, dlogps: mask.map((m) => -m / n) };
}

/** One step in the HF Trainer's order on the masked NLL: forward, zero the trained set's gradients, backward,
 * clip (the pre-clip norm is returned), optimizer update. */
export function nllTrainStep(model: NativeModel, batch: TokenBatch, mask: Float32Array, trained: Trainable, opt: Optimizer, maxGradNorm: number): { loss: number; norm: number } {
  const { loss, dlogps } = nll(model.forward(batch, { train: true }).logps, mask);
  trained.zeroGrad();
  model.backward(dlogps);
  const norm = trained.clipGradNorm(maxGradNorm);
  opt.update();
  return { loss, norm };
}

/** How checkGrads compares: tol, the relative error allowed (default 1e-4); reference(name), the fixture's
 * gradient in the core's layout (default: grad.<name> as stored); zero, gradients that are 0 in exact arithmetic,
 * whose stored value is rounding noise: each entry must be within zeroAbs (default 1e-6) of 0 instead. */
export interface GradCheck { tol?: number; reference?: (name: string) => Float32Array; zero?: RegExp; zeroAbs?: number }

const NEOX_QKV = /\.attention\.query_key_value\.(weight|bias|lora_B\.weight)$/;  // GPT-NeoX's fused rows (a lora_B's too)

/** The family fixtures' gradients in the core's layout (GPT-NeoX's query_key_value rows, per head [q_h | k_h | v_h] in
 * the files, q|k|v-stacked as the loader permutes the weights), and the ones that are 0 in exact arithmetic (the
 * fixture's zero_grads regex: OPT's key biases). */
export function familyGradCheck(model: NativeModel, get: (k: string) => Float32Array, zeroGrads = ""): GradCheck {
  const { numHeads, headDim } = model.config;
  return {
    reference: (n) => (NEOX_QKV.test(n) ? neoxQkvToStacked(get(`grad.${n}`), numHeads, headDim) : get(`grad.${n}`)),
    zero: zeroGrads ? new RegExp(zeroGrads) : undefined,
  };
}

/** Every gradient of a parameter set (a model or its adapter) against the fixture's grad.<name> (relative error
 * <= tol, or |g| <= zeroAbs where `zero` matches), and no reference gradient left unchecked. Returns the worst
 * relative error and how many were checked. */
export function checkGrads(set: Pick<Trainable, "table"> & { grad(name: string): Float32Array }, fx: SafetensorsHeader, get: (k: string) => Float32Array, opts: GradCheck = {}): { worst: number; checked: number } {
  const tol = opts.tol ?? 1e-4, reference = opts.reference ?? ((n: string) => get(`grad.${n}`));
  let worst = 0, checked = 0;
  for (const p of set.table) {
    if (opts.zero?.test(p.name)) {
      const m = maxAbs(set.grad(p.name), new Float32Array(p.size));
      assert.ok(m <= (opts.zeroAbs ?? 1e-6), `grad ${p.name} is 0 in exact arithmetic; largest entry ${m}`);
    } else {
      const err = relErr(set.grad(p.name), reference(p.name));
      assert.ok(err <= tol, `grad ${p.name}: relative error ${err}`);
      worst = Math.max(worst, err);
    }
    checked++;
  }
  assert.equal(checked, gradKeys(fx).length, "every reference gradient checked");
  return { worst, checked };
}

/** The fixture's gradient run: a training forward on batch with log-probs within 1e-5 of `logps`, the masked NLL
 * (`loss_mask`) within 1e-6 relative of `loss`, then backward and checkGrads. Returns the log-prob max abs diff too. */
export function checkLogpsLossGrads(model: NativeModel, batch: TokenBatch, fx: SafetensorsHeader, get: (k: string) => Float32Array, opts: GradCheck = {}): { d: number; worst: number; checked: number } {
  const stats = model.forward(batch, { train: true });
  const d = maxAbs(stats.logps, get("logps"));
  assert.ok(d <= 1e-5, `logps max abs diff ${d}`);
  const { loss, dlogps } = nll(stats.logps, get("loss_mask"));
  const ref = get("loss")[0];
  assert.ok(Math.abs(loss - ref) / Math.abs(ref) <= 1e-6, `loss ${loss} vs ${ref}`);
  model.zeroGrad();
  model.backward(dlogps);
  return { d, ...checkGrads(model, fx, get, opts) };
}

/** A test body for a fixture's AdamW trajectory: load, checkTrajectory, report the worst step, free the model. */
export function trajectoryTest(load: () => { model: NativeModel; batch: TokenBatch; fx: SafetensorsHeader; get: (k: string) => Float32Array }) {
  return (t: TestContext): void => {
    const { model, get, batch, fx } = load();
    try {
      const { worst, steps } = checkTrajectory(model, batch, fx, get);
      t.diagnostic(`worst loss relative error over ${steps} steps ${worst.toExponential(2)}`);
    } finally {
      model.free();
    }
  };
}

/** The fixture's AdamW trajectory (traj_loss, traj_grad_norm, with lr, eps, weight_decay and max_grad_norm from
 * its metadata) on batch with loss_mask: every step's loss and pre-clip norm within 1e-4 relative. Returns the
 * worst loss error and the number of steps. */
export function checkTrajectory(model: NativeModel, batch: TokenBatch, fx: SafetensorsHeader, get: (k: string) => Float32Array): { worst: number; steps: number } {
  const md = fx.metadata ?? {};
  const opt = new AdamW(model, { lr: Number(md.lr), beta1: 0.9, beta2: 0.999, eps: Number(md.eps), weightDecay: Number(md.weight_decay) });
  const refLoss = get("traj_loss"), refNorm = get("traj_grad_norm"), mask = get("loss_mask");
  assert.equal(refLoss.length, Number(md.steps));
  let worst = 0;
  for (let step = 0; step < refLoss.length; step++) {
    const { loss, norm } = nllTrainStep(model, batch, mask, model, opt, Number(md.max_grad_norm));
    const e = Math.abs(loss - refLoss[step]) / Math.abs(refLoss[step]);
    assert.ok(e <= 1e-4, `step ${step}: loss ${loss} vs ${refLoss[step]}`);
    assert.ok(Math.abs(norm - refNorm[step]) / refNorm[step] <= 1e-4, `step ${step}: grad norm ${norm} vs ${refNorm[step]}`);
    worst = Math.max(worst, e);
  }
  return { worst, steps: refLoss.length };
}

/** max |logps − the fixture's logps| of an inference forward on batch (for the tests that a fixture depends on a feature). */
export const logpsDiff = (model: NativeModel, batch: TokenBatch, get: (k: string) => Float32Array): number =>
  maxAbs(model.forward(batch, { train: false }).logps, get("logps"));

/** Greedy decoding with the KV cache from g.prompt gives exactly g.new_ids; returns them. */
export function checkGreedy(model: NativeModel, g: GenerateFixture): number[] {
  const out = greedyIds(model, [g.prompt], g.new_ids.length)[0];
  assert.deepEqual(out, g.new_ids);
  return out;
}

/** Each continuation token is the argmax of one full (training-path, no cache) forward over prompt + continuation. */
export function checkFullForwardArgmax(model: NativeModel, prompt: number[], continuation: number[]): void {
  const seq = [...prompt, ...continuation];
  const stats = model.forward({ ids: Int32Array.from(seq), lengths: Int32Array.of(seq.length), B: 1, T: seq.length }, { train: false });
  for (let i = prompt.length; i < seq.length; i++) assert.equal(stats.correct[i], 1, `token ${i} is the argmax of the full forward`);
}
