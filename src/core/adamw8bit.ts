// AdamW with bitsandbytes' blockwise 8-bit state (transformers' optim adamw_bnb_8bit, adamw_8bit,
// paged_adamw_8bit): per parameter tensor of at least 4096 elements, exp_avg as 8-bit codes of the signed
// dynamic map and exp_avg_sq of the unsigned one, with an fp32 absmax per block of 256 (state1 / state2 /
// absmax1 / absmax2, bitsandbytes' names); smaller tensors keep fp32 moments, as bitsandbytes' min_8bit_size.
// The update math is fp32 in the native core (native/src/optim.h). Also the choice of optimizer by optim name.
// Not here: the fp32 AdamW (native.ts), checkpoint files (src/train/checkpoint.ts), config notes (config.ts).
import { AdamW, dynamicMap, native, type Optimizer, type OptimizerStateTensor, type Trainable } from "./native.ts";

export { dynamicMap };
import type { AdamWConfig, ParamInfo } from "./types.ts";

/** transformers' optim names that select bitsandbytes' AdamW with 8-bit state ("8bit" in the name). */
export const ADAMW_8BIT_OPTIMS = ["adamw_bnb_8bit", "adamw_8bit", "paged_adamw_8bit"] as const;
/** Elements per absmax block (bitsandbytes' blockwise optimizers since 0.44). */
export const QBLOCK = 256;
/** bitsandbytes' min_8bit_size: a tensor with fewer elements keeps fp32 state. */
export const MIN_8BIT_SIZE = 4096;


/** Blockwise 8-bit quantization of x against a dynamic map: codes (n) and one absmax per block of 256. */
export function quantizeBlockwise(x: Float32Array, signed: boolean): { codes: Uint8Array; absmax: Float32Array } {
  const codes = new Uint8Array(x.length), absmax = new Float32Array(Math.ceil(x.length / QBLOCK));
  native().quantizeBlockwise(x, signed, codes, absmax);
  return { codes, absmax };
}

export function dequantizeBlockwise(codes: Uint8Array, absmax: Float32Array, signed: boolean): Float32Array {
  const out = new Float32Array(codes.length);
  native().dequantizeBlockwise(codes, absmax, signed, out);
  return out;
}

type TensorState =
  | { bits: 8; state1: Uint8Array; state2: Uint8Array; absmax1: Float32Array; absmax2: Float32Array }
  | { bits: 32; expAvg: Float32Array; expAvgSq: Float32Array };

/** AdamW (torch semantics, decoupled decay where the table says so) with bitsandbytes' 8-bit state. */
export class AdamW8bit implements Optimizer {
  readonly format = "preftune.adamw_8bit";
  step = 0;
  private readonly states: TensorState[];
  private maps: { qmap1: Float32Array; qmap2: Float32Array } | null = null;
  private index: Map<string, number> | null = null;

  constructor(readonly model: Trainable, readonly config: AdamWConfig) {
    this.states = model.table.map((p): TensorState => {
      if (p.size < MIN_8BIT_SIZE) return { bits: 32, expAvg: new Float32Array(p.size), expAvgSq: new Float32Array(p.size) };
      const blocks = Math.ceil(p.size / QBLOCK);
      return { bits: 8, state1: new Uint8Array(p.size), state2: new Uint8Array(p.size), absmax1: new Float32Array(blocks), absmax2: new Float32Array(blocks) };
    });
  }

  update(lr = this.config.lr): void {
    this.step += 1;
    const c = this.config, a = native();
    const params = this.model.params, grads = this.model.grads;
    this.model.table.forEach((p, i) => {
      const w = params.subarray(p.offset, p.offset + p.size), g = grads.subarray(p.offset, p.offset + p.size);
      const wd = p.decay ? c.weightDecay : 0;
      const s = this.states[i];
      if (s.bits === 8) a.adamw8bitTensor(w, g, s.state1, s.state2, s.absmax1, s.absmax2, this.step, lr, c.beta1, c.beta2, c.eps, wd);
      else a.adamwTensor(w, g, s.expAvg, s.expAvgSq, this.step, lr, c.beta1, c.beta2, c.eps, wd);
    });
  }

  stateOf(p: ParamInfo): OptimizerStateTensor[] {
    this.index ??= new Map(this.model.table.map((q, i) => [q.name, i]));
    const i = this.index.get(p.name);
    const s = i === undefined ? undefined : this.states[i];
    if (!s) throw new Error(`AdamW8bit: ${p.name} is not a tensor of this optimizer's parameter set`);
    if (s.bits === 32) return [{ suffix: "exp_avg", dtype: "F32", shape: p.shape, data: s.expAvg }, { suffix: "exp_avg_sq", dtype: "F32", shape: p.shape, data: s.expAvgSq }];
    return [
      { suffix: "state1", dtype: "U8", shape: p.shape, data: s.state1 },
      { suffix: "absmax1", dtype: "F32", shape: [s.absmax1.length], data: s.absmax1 },
      { suffix: "state2", dtype: "U8", shape: p.shape, data: s.state2 },
      { suffix: "absmax2", dtype: "F32", shape: [s.absmax2.length], data: s.absmax2 },
    ];
  }

  /** The two code books (qmap1 signed, qmap2 unsigned), saved once so that a reader can decode state1 / state2. */
  sharedState(): { name: string; dtype: "F32"; shape: number[]; data: Float32Array }[] {
    this.maps ??= { qmap1: dynamicMap(true), qmap2: dynamicMap(false) };
    return [{ name: "qmap1", dtype: "F32", shape: [256], data: this.maps.qmap1 }, { name: "qmap2", dtype: "F32", shape: [256], data: this.maps.qmap2 }];
  }

  get stateBytes(): number {
    let n = 0;
    for (const s of this.states) n += s.bits === 8 ? s.state1.byteLength + s.state2.byteLength + s.absmax1.byteLength + s.absmax2.byteLength : s.expAvg.byteLength + s.expAvgSq.byteLength;
    return n;
  }

  /** How many tensors (and elements) hold 8-bit state, and how many fall under min_8bit_size and keep fp32. */
  get split(): { tensors8: number; elements8: number; tensors32: number; elements32: number } {
    const r = { tensors8: 0, elements8: 0, tensors32: 0, elements32: 0 };
    this.model.table.forEach((p, i) => {
      if (this.states[i].bits === 8) { r.tensors8++; r.elements8 += p.size; } else { r.tensors32++; r.elements32 += p.size; }
    });
    return r;
  }
}

/** Bytes of optimizer state per trained parameter that an `optim` name implies (8-bit: 2 plus the absmax share). */
export function optimizerBytesPerParameter(optim: string): number {
  return (ADAMW_8BIT_OPTIMS as readonly string[]).includes(optim) ? 2 + 8 / QBLOCK : 8;
}

/**
 * The optimizer a transformers `optim` name asks for: bitsandbytes' 8-bit AdamW for the 8-bit names (paging is a
 * CUDA unified-memory matter: on the CPU paged_adamw_8bit is adamw_8bit), fp32 AdamW for every other AdamW name
 * (paged_adamw_32bit included). config.ts has already refused the names that are not AdamW.
 */
export function createOptimizer(optim: string, model: Trainable, config: AdamWConfig): Optimizer {
  return (ADAMW_8BIT_OPTIMS as readonly string[]).includes(optim) ? new AdamW8bit(model, config) : new AdamW(model, config);
}
