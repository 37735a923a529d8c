// What the parity tests share around their fixture files: a checkpoint loaded into the native core, a
// fixture.safetensors reader (tensors and token batches), generate.json, the masked NLL, one training step in
// the HF Trainer's order, and the log-prob / loss / every-gradient and greedy-decoding checks.
// Not the fixtures' expected values: those are in the files.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { NativeModel, type Optimizer, type Trainable } from "../../src/core/native.ts";
import type { DecoderConfig, TokenBatch } from "../../src/core/types.ts";
import { greedyIds } from "../../src/generate/greedy.ts";
import { loadWeightsInto, readModelDir } from "../../src/models/checkpoint.ts";
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

/** Every parameter's gradient against the fixture's grad.<name> (relative error <= tol), and no reference
 * gradient left unchecked. Returns the worst relative error and how many were checked. */
export function checkGrads(model: NativeModel, fx: SafetensorsHeader, get: (k: string) => Float32Array, tol = 1e-4): { worst: number; checked: number } {
  let worst = 0, checked = 0;
  for (const p of model.table) {
    const err = relErr(model.grad(p.name), get(`grad.${p.name}`));
    assert.ok(err <= tol, `grad ${p.name}: relative error ${err}`);
    worst = Math.max(worst, err);
    checked++;
  }
  assert.equal(checked, gradKeys(fx).length, "every reference gradient checked");
  return { worst, checked };
}

/** The fixture's gradient run: a training forward on batch with log-probs within 1e-5 of `logps`, the masked NLL
 * (`loss_mask`) within 1e-6 relative of `loss`, then backward and checkGrads. Returns the log-prob max abs diff too. */
export function checkLogpsLossGrads(model: NativeModel, batch: TokenBatch, fx: SafetensorsHeader, get: (k: string) => Float32Array): { d: number; worst: number; checked: number } {
  const stats = model.forward(batch, { train: true });
  const d = maxAbs(stats.logps, get("logps"));
  assert.ok(d <= 1e-5, `logps max abs diff ${d}`);
  const { loss, dlogps } = nll(stats.logps, get("loss_mask"));
  const ref = get("loss")[0];
  assert.ok(Math.abs(loss - ref) / Math.abs(ref) <= 1e-6, `loss ${loss} vs ${ref}`);
  model.zeroGrad();
  model.backward(dlogps);
  return { d, ...checkGrads(model, fx, get) };
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
