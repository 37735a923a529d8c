// The only TypeScript that touches the native addon: a NativeModel handle owning native memory
// (free it explicitly), an AdamW state over flat arrays, and thread control.
// Not here: file formats (src/models), losses (src/losses), the training loop (src/train).
import { createRequire } from "node:module";
import type { AdamWConfig, DecoderConfig, ParamInfo, TokenBatch, TokenStats } from "./types.ts";

interface AddonModel {
  params(): Float32Array;
  grads(): Float32Array;
  table(): ParamInfo[];
  forward(ids: Int32Array, lengths: Int32Array, B: number, T: number, train: boolean,
    logps?: Float32Array, logitsMean?: Float32Array, entropy?: Float32Array, correct?: Uint8Array): void;
  backward(dlogps: Float32Array): void;
  releaseActivations(): void;
  zeroGrad(): void;
  gradNorm(): number;
  scaleGrads(s: number): void;
  adamwStep(m: Float32Array, v: Float32Array, step: number, lr: number, b1: number, b2: number, eps: number, wd: number): void;
  free(): void;
}
interface Addon {
  Model: new (cfg: Record<string, number>) => AddonModel;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  gradcheck(op: string, seed: number): number;
  abiVersion: number;
}

let addon: Addon | null = null;
/** The compiled addon (built by `npm ci` through node-gyp into build/Release). */
export function native(): Addon {
  if (addon) return addon;
  const require = createRequire(import.meta.url);
  try {
    addon = require("../../build/Release/preftune.node") as Addon;
  } catch (e) {
    throw new Error(
      `preftune's native core is not built (${(e as Error).message.split("\n")[0]}). ` +
        "Run `npm ci` (or `npm run build:native`) in the preftune folder; it needs g++, make and libopenblas-openmp-dev.",
    );
  }
  return addon;
}

export function setNumThreads(n: number): void {
  native().setNumThreads(Math.max(1, Math.floor(n)));
}
export function getNumThreads(): number {
  return native().getNumThreads();
}

/** A decoder with its fp32 parameters and gradients in native memory, laid out as `table` says. */
export class NativeModel {
  readonly config: DecoderConfig;
  readonly table: ParamInfo[];
  /** Every parameter, flat; zero-copy view of native memory, invalid after free(). */
  readonly params: Float32Array;
  /** Same layout as params. */
  readonly grads: Float32Array;
  private handle: AddonModel | null;
  private byName: Map<string, ParamInfo>;

  constructor(config: DecoderConfig) {
    this.config = config;
    this.handle = new (native().Model)({
      vocab_size: config.vocabSize,
      hidden_size: config.hiddenSize,
      intermediate_size: config.intermediateSize,
      num_layers: config.numLayers,
      num_heads: config.numHeads,
      num_kv_heads: config.numKvHeads,
      head_dim: config.headDim,
      max_position_embeddings: config.maxPositionEmbeddings,
      rms_norm_eps: config.rmsNormEps,
      rope_theta: config.ropeTheta,
      tie_word_embeddings: config.tieWordEmbeddings ? 1 : 0,
      qkv_bias: config.qkvBias ? 1 : 0,
      o_bias: config.oBias ? 1 : 0,
      mlp_bias: config.mlpBias ? 1 : 0,
      qk_norm: config.qkNorm ? 1 : 0,
    });
    this.table = this.handle.table();
    this.params = this.handle.params();
    this.grads = this.handle.grads();
    this.byName = new Map(this.table.map((p) => [p.name, p]));
  }

  private h(): AddonModel {
    if (!this.handle) throw new Error("NativeModel used after free()");
    return this.handle;
  }

  /** Number of trainable scalars (the flat buffers also hold alignment padding). */
  get numParameters(): number {
    return this.table.reduce((s, p) => s + p.size, 0);
  }

  info(name: string): ParamInfo {
    const p = this.byName.get(name);
    if (!p) throw new Error(`no parameter named ${name}`);
    return p;
  }
  param(name: string): Float32Array {
    const p = this.info(name);
    return this.params.subarray(p.offset, p.offset + p.size);
  }
  grad(name: string): Float32Array {
    const p = this.info(name);
    return this.grads.subarray(p.offset, p.offset + p.size);
  }

  /** Per-token statistics of a right-padded batch; train keeps activations for backward(). */
  forward(batch: TokenBatch, opts: { train: boolean }): TokenStats {
    const { B, T } = batch;
    const max = this.config.maxPositionEmbeddings;
    for (let b = 0; b < B; b++) {
      if (batch.lengths[b] > max)
        throw new Error(`row ${b} has ${batch.lengths[b]} tokens but the model's max_position_embeddings is ${max}; lower max_length`);
    }
    const out: TokenStats = {
      logps: new Float32Array(B * T),
      logitsMean: new Float32Array(B * T),
      entropy: new Float32Array(B * T),
      correct: new Uint8Array(B * T),
    };
    this.h().forward(batch.ids, batch.lengths, B, T, opts.train, out.logps, out.logitsMean, out.entropy, out.correct);
    return out;
  }

  /** Accumulates d loss / d params from dlogps (B, T), label-aligned like TokenStats.logps. */
  backward(dlogps: Float32Array): void {
    this.h().backward(dlogps);
  }
  releaseActivations(): void {
    this.h().releaseActivations();
  }
  zeroGrad(): void {
    this.h().zeroGrad();
  }
  gradNorm(): number {
    return this.h().gradNorm();
  }
  scaleGrads(s: number): void {
    this.h().scaleGrads(s);
  }
  /** torch.nn.utils.clip_grad_norm_: returns the norm before clipping. */
  clipGradNorm(maxNorm: number): number {
    const norm = this.gradNorm();
    const coef = maxNorm / (norm + 1e-6);
    if (coef < 1) this.scaleGrads(coef);
    return norm;
  }
  free(): void {
    this.handle?.free();
    this.handle = null;
  }
  /** @internal used by AdamW */
  adamw(m: Float32Array, v: Float32Array, step: number, c: AdamWConfig, lr: number): void {
    this.h().adamwStep(m, v, step, lr, c.beta1, c.beta2, c.eps, c.weightDecay);
  }
}

/** torch.optim.AdamW state over the model's flat parameters (decay only where table says so). */
export class AdamW {
  readonly expAvg: Float32Array;
  readonly expAvgSq: Float32Array;
  step = 0;
  constructor(readonly model: NativeModel, readonly config: AdamWConfig) {
    this.expAvg = new Float32Array(model.params.length);
    this.expAvgSq = new Float32Array(model.params.length);
  }
  /** One update with learning rate lr (defaults to config.lr). */
  update(lr = this.config.lr): void {
    this.step += 1;
    this.model.adamw(this.expAvg, this.expAvgSq, this.step, this.config, lr);
  }
}
