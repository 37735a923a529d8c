// What the parity tests share around their fixture files: a checkpoint loaded into the native core, a
// fixture.safetensors reader (tensors and token batches), generate.json, the masked NLL, one training step in
// the HF Trainer's order and the every-gradient check. Not the fixtures' expected values: those are in the files.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { NativeModel, type Optimizer, type Trainable } from "../../src/core/native.ts";
import type { DecoderConfig, TokenBatch } from "../../src/core/types.ts";
import { loadWeightsInto, readModelDir } from "../../src/models/checkpoint.ts";
import { readHeader, readTensor, type SafetensorsHeader } from "../../src/models/safetensors.ts";
import { relErr } from "./compare.ts";

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
