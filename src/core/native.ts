// The only TypeScript that touches the native addon: a NativeModel handle owning native memory
// (free it explicitly), the LoRA adapter set it may carry, KV caches for decoding, an AdamW state over flat
// arrays, thread control, and the choice of compute precision (fp32, or bf16 mixed precision).
// Not here: file formats (src/models, PEFT files in src/models/peft.ts), losses, the training loop (src/train).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import type { AdamWConfig, Bf16Support, ComputeChoice, ComputeDtype, DecoderConfig, LoraConfig, LoraTarget, ParamInfo, TokenBatch, TokenStats } from "./types.ts";

interface AddonModel {
  params(): Float32Array;
  grads(): Float32Array;
  table(): ParamInfo[];
  forward(ids: Int32Array, lengths: Int32Array, B: number, T: number, flags: number,
    logps?: Float32Array, logitsMean?: Float32Array, entropy?: Float32Array, correct?: Uint8Array): void;
  backward(dlogps: Float32Array): void;
  zeroGrad(): void;
  gradNorm(): number;
  scaleGrads(s: number): void;
  adamwStep(m: Float32Array, v: Float32Array, step: number, lr: number, b1: number, b2: number, eps: number, wd: number): void;
  free(): void;
  loraAttach(cfg: { r: number; lora_alpha: number; use_rslora: number; targets: number; lora_dropout: number }): void;
  loraDetach(): void;
  loraMerge(): void;
  loraScaling(): number;
  loraParams(): Float32Array;
  loraGrads(): Float32Array;
  loraTable(): ParamInfo[];
  loraZeroGrad(): void;
  loraGradNorm(): number;
  loraScaleGrads(s: number): void;
  loraAdamwStep(m: Float32Array, v: Float32Array, step: number, lr: number, b1: number, b2: number, eps: number, wd: number): void;
  decode(cache: AddonKvCache, rows: Int32Array, ids: Int32Array, lengths: Int32Array, T: number, flags: number, logits: Float32Array): void;
  setCompute(mode: number): void;
  getCompute(): number;
  paramsBf16(): Uint16Array;
}
interface AddonKvCache {
  length(row: number): number;
  reset(row: number): void;
  free(): void;
}
interface Addon {
  Model: new (cfg: Record<string, number>, flags?: number) => AddonModel;
  KvCache: new (model: AddonModel, rows: number, maxPositions: number) => AddonKvCache;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  gradcheck(op: string, seed: number): number;
  bf16Support(): number;
  bf16Describe(): string;
  abiVersion: number;
  blasCore: string;
  // data parallel over MPI (native/src/mpi.cpp; used by src/parallel/group.ts only)
  mpiInit(libPath: string): { rank: number; size: number };
  mpiAllreduceSum(buf: Float32Array | Float64Array, bucket?: number): void;
  mpiOverlapBegin(grads: Float32Array, ranges: Float64Array): void;
  mpiOverlapEnd(rest: Float64Array, bucket?: number): number;
  mpiBarrier(): void;
  mpiAbort(code: number): void;
  mpiFinalize(): void;
}

let addon: Addon | null = null;
/** The compiled addon (built by `npm ci` through node-gyp into build/Release). */
export function native(): Addon {
  if (addon) return addon;
  chooseBlasKernels();
  const require = createRequire(import.meta.url);
  try {
    addon = require("../../build/Release/preftune.node") as Addon;
  } catch (e) {
    throw new Error(
      `preftune's native core is not built (${(e as Error).message.split("\n")[0]}). ` +
        "Run `npm ci` (or `npm run build:native`) in the preftune folder; it needs g++, make and libopenblas-openmp-dev " +
        "(and libdnnl-dev for bf16 compute).",
    );
  }
  if (addon.abiVersion !== ABI_VERSION) {
    const found = addon.abiVersion;
    addon = null;
    throw new Error(`preftune's native core is stale (ABI ${found}, this code needs ${ABI_VERSION}): run \`npm run build:native\` in the preftune folder`);
  }
  return addon;
}

/** PT_ABI_VERSION of native/include/preftune.h that this file is written against. */
const ABI_VERSION = 5;

/**
 * OpenBLAS picks its kernels from the CPU model at load time, and a release older than the CPU falls back to
 * its generic SSE3 kernels ("Prescott"): Debian's 0.3.21 does so on Xeons of 2023 and later, measured 4.5x
 * slower (65 against 290 GFLOP/s on 2 cores). Every Intel CPU with AVX-512 F/BW/DQ/VL runs the SkylakeX
 * kernels, so name them unless the user chose (OPENBLAS_CORETYPE set). Must run before the addon loads.
 */
function chooseBlasKernels(): void {
  if (process.env.OPENBLAS_CORETYPE) return;
  let info = "";
  try { info = readFileSync("/proc/cpuinfo", "utf8"); } catch { return; }
  const flags = new Set((/^flags\s*:(.*)$/m.exec(info)?.[1] ?? "").trim().split(/\s+/));
  const intel = /^vendor_id\s*:\s*GenuineIntel/m.test(info);
  if (intel && ["avx512f", "avx512bw", "avx512dq", "avx512vl"].every((f) => flags.has(f))) process.env.OPENBLAS_CORETYPE = "SkylakeX";
}

/** The BLAS kernel family in use (OpenBLAS' core name), for benchmarks and notes. */
export function blasCore(): string {
  return native().blasCore;
}

export function setNumThreads(n: number): void {
  native().setNumThreads(Math.max(1, Math.floor(n)));
}
export function getNumThreads(): number {
  return native().getNumThreads();
}

// PT_COMPUTE_* and PT_BF16_* (native/include/preftune.h)
const COMPUTE_CODE: Readonly<Record<ComputeDtype, number>> = { fp32: 0, bf16: 1 };
const BF16_AVX512 = 1, BF16_AMX = 2, BF16_FAST = 4;

/**
 * What this CPU and build offer for bf16 compute, checked at run time (CPUID and the OS state, oneDNN in the
 * build). Reads PREFTUNE_NO_BF16 on every call: set it (to anything but "" or "0") to force the fp32 fallback.
 */
export function bf16Support(): Bf16Support {
  const bits = native().bf16Support();
  return { available: (bits & BF16_AVX512) !== 0, amx: (bits & BF16_AMX) !== 0, fast: (bits & BF16_FAST) !== 0, cpu: native().bf16Describe() };
}

/**
 * The compute precision for a run's `bf16` / `fp16` flags (transformers' TrainingArguments names), with the
 * notes to print once. bf16 runs where the CPU can and is expected to gain from it: AMX, or AVX512-BF16 on AMD
 * (Zen 4 and later). An Intel CPU with AVX512-BF16 but no AMX (or a VM hiding it) runs bf16 GEMMs at about half
 * its fp32 rate (bench/README.md), so there fp32 is chosen with a note, unless allowSlow (or the environment
 * variable PREFTUNE_BF16=force) asks for bf16 anyway. fp16 has no CPU path: fp32 with a note.
 */
export function chooseCompute(flags: { bf16?: boolean; fp16?: boolean }, opts: { allowSlow?: boolean } = {}): ComputeChoice {
  const notes: string[] = [];
  if (flags.fp16) notes.push("fp16: true: the native CPU core has no fp16 mixed precision (no fp16 GEMMs with fp32 accumulation on CPUs); training in fp32. Use bf16: true on a CPU with bf16 instructions.");
  if (!flags.bf16) return { compute: "fp32", notes };
  const s = bf16Support();
  const allowSlow = opts.allowSlow ?? process.env.PREFTUNE_BF16 === "force";
  if (!s.available) {
    notes.push(`bf16: true: no bf16 compute here (${s.cpu}); training in fp32, which gives the same results up to bf16 rounding.`);
    return { compute: "fp32", notes };
  }
  if (!s.fast && !allowSlow) {
    notes.push(`bf16: true: this CPU (${s.cpu}) runs bf16 matrix products slower than fp32 ones (its AVX512-BF16 dot product issues at half the fp32 FMA rate and it has no AMX); training in fp32. Set PREFTUNE_BF16=force to use bf16 anyway.`);
    return { compute: "fp32", notes };
  }
  return { compute: "bf16", notes };
}

// pt_forward flags (native/include/preftune.h)
const FORWARD_TRAIN = 1;
const FORWARD_NO_ADAPTERS = 2;

/** The LoRA target bits of the native core, in PEFT's module names; "all-linear" on a Llama = all seven. */
export const LORA_TARGET_BITS: Readonly<Record<LoraTarget, number>> = {
  q_proj: 1, k_proj: 2, v_proj: 4, o_proj: 8, gate_proj: 16, up_proj: 32, down_proj: 64,
};
export const LORA_TARGETS = Object.keys(LORA_TARGET_BITS) as LoraTarget[];

export interface ForwardOptions {
  train: boolean;
  /** false runs the base model alone, as if no adapter were attached (the LoRA reference). Default true. */
  adapters?: boolean;
}

/** Anything that yields per-token statistics: a model, or a model seen with its adapters disabled. */
export interface LogpModel {
  forward(batch: TokenBatch, opts: { train: boolean }): TokenStats;
}

/**
 * A set of trainable parameters with gradients and an AdamW entry point: the whole model (full fine-tuning)
 * or its LoRA adapter. The loop, clipping and AdamW only ever see this.
 */
export interface Trainable {
  readonly table: ParamInfo[];
  readonly params: Float32Array;
  readonly grads: Float32Array;
  zeroGrad(): void;
  gradNorm(): number;
  scaleGrads(s: number): void;
  clipGradNorm(maxNorm: number): number;
  /** @internal used by AdamW */
  adamw(m: Float32Array, v: Float32Array, step: number, c: AdamWConfig, lr: number): void;
}

/** torch.nn.utils.clip_grad_norm_ over one parameter set: returns the norm before clipping. */
function clip(t: Trainable, maxNorm: number): number {
  const norm = t.gradNorm();
  const coef = maxNorm / (norm + 1e-6);
  if (coef < 1) t.scaleGrads(coef);
  return norm;
}

/**
 * Named views into one parameter set: a table (HF or PEFT tensor names) over a flat params buffer and a grads
 * buffer of the same layout. Shared by the model and its LoRA adapter.
 */
type Lazy = Float32Array | (() => Float32Array);
class NamedParams {
  private byName: Map<string, ParamInfo>;
  private paramView: Float32Array | null = null;
  private gradView: Float32Array | null = null;
  /**
   * params, grads: the buffers, or functions that give them on first use (the model's gradients are allocated
   * then, so a LoRA run never holds them; a bf16-held base has no fp32 buffer and its function throws).
   */
  constructor(readonly table: ParamInfo[], private readonly paramSource: Lazy, private readonly gradSource: Lazy, private readonly noun: string) {
    this.byName = new Map(table.map((p) => [p.name, p]));
  }
  get params(): Float32Array {
    this.paramView ??= typeof this.paramSource === "function" ? this.paramSource() : this.paramSource;
    return this.paramView;
  }
  get grads(): Float32Array {
    this.gradView ??= typeof this.gradSource === "function" ? this.gradSource() : this.gradSource;
    return this.gradView;
  }
  /** Number of trainable scalars (the flat buffers also hold alignment padding). */
  get numParameters(): number {
    return this.table.reduce((s, p) => s + p.size, 0);
  }
  info(name: string): ParamInfo {
    const p = this.byName.get(name);
    if (!p) throw new Error(`no ${this.noun} named ${name}`);
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
}

/**
 * The LoRA adapter attached to a NativeModel: its own table (PEFT tensor names, e.g.
 * base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight), flat params and grads in native memory.
 * Owned by the model: invalid (and its views dangling) after detachLora(), mergeLora() or free().
 */
export class LoraAdapter extends NamedParams implements Trainable {
  /** s = lora_alpha / r (or / √r with use_rslora), as the core computes it. */
  readonly scaling: number;
  /** @internal */ alive = true;

  /** @internal created by NativeModel.attachLora */
  constructor(private readonly h: AddonModel, readonly config: LoraConfig) {
    super(h.loraTable(), h.loraParams(), h.loraGrads(), "adapter tensor");
    this.scaling = h.loraScaling();
  }
  private handle(): AddonModel {
    if (!this.alive) throw new Error("LoRA adapter used after it was detached, merged or its model freed");
    return this.h;
  }
  zeroGrad(): void {
    this.handle().loraZeroGrad();
  }
  /** Global L2 norm over the adapter's gradients only (the base is frozen). */
  gradNorm(): number {
    return this.handle().loraGradNorm();
  }
  scaleGrads(s: number): void {
    this.handle().loraScaleGrads(s);
  }
  clipGradNorm(maxNorm: number): number {
    return clip(this, maxNorm);
  }
  /** @internal used by AdamW */
  adamw(m: Float32Array, v: Float32Array, step: number, c: AdamWConfig, lr: number): void {
    this.handle().loraAdamwStep(m, v, step, lr, c.beta1, c.beta2, c.eps, c.weightDecay);
  }
}

/** Options of a NativeModel. */
export interface NativeModelOptions {
  /** Precision of the GEMMs (default fp32, the exact path); "bf16" needs bf16Support().available (see chooseCompute). */
  compute?: ComputeDtype;
  /**
   * "bf16": hold the base weights in bf16 only (half the memory; `torch_dtype: bfloat16` for a frozen base under
   * LoRA). Such a model is frozen: write its weights through paramsBf16 / paramBf16(name), train it only through a
   * LoRA adapter; params, grads and AdamW on it throw. Default "fp32".
   */
  baseDtype?: ComputeDtype;
}
const MODEL_BF16_BASE = 1;  // PT_MODEL_BF16_BASE

/** A decoder with its fp32 parameters and gradients in native memory, laid out as `table` says. */
export class NativeModel extends NamedParams implements Trainable {
  readonly config: DecoderConfig;
  private handle: AddonModel | null;
  private adapter: LoraAdapter | null = null;

  /**
   * params: every parameter, flat; a zero-copy view of native memory, invalid after free(). grads: same layout,
   * allocated by the core on first access (or first full backward / AdamW step): a model that only trains a LoRA
   * adapter never holds a base gradient buffer.
   */
  constructor(config: DecoderConfig, opts: NativeModelOptions = {}) {
    if (opts.baseDtype !== undefined && opts.baseDtype !== "fp32" && opts.baseDtype !== "bf16") throw new Error(`baseDtype must be "fp32" or "bf16", got ${JSON.stringify(opts.baseDtype)}`);
    const bf16Base = opts.baseDtype === "bf16";
    const handle = new (native().Model)({
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
    }, bf16Base ? MODEL_BF16_BASE : 0);
    super(handle.table(), bf16Base ? () => handle.params() : handle.params(), () => this.h().grads(), "parameter");
    this.config = config;
    this.handle = handle;
    this.baseDtype = bf16Base ? "bf16" : "fp32";
    if (opts.compute) this.setCompute(opts.compute);
  }

  /** How the base weights are held: "fp32" (trainable) or "bf16" (frozen, half the memory). */
  readonly baseDtype: ComputeDtype;
  private bf16View: Uint16Array | null = null;
  /** A bf16-held base's weights as bf16 bits, laid out as `table` says (offsets in elements); zero-copy. */
  get paramsBf16(): Uint16Array {
    this.bf16View ??= this.h().paramsBf16();
    return this.bf16View;
  }
  /** One tensor of a bf16-held base, as bf16 bits. */
  paramBf16(name: string): Uint16Array {
    const p = this.info(name);
    return this.paramsBf16.subarray(p.offset, p.offset + p.size);
  }

  /**
   * The precision of the linear layers' and LM head's GEMMs from now on: "bf16" (bf16 operands, fp32
   * accumulation; weights, gradients and optimizer state stay fp32) or "fp32". Throws where bf16 is unavailable.
   * Decoding always runs fp32.
   */
  setCompute(c: ComputeDtype): void {
    const code = COMPUTE_CODE[c];
    if (code === undefined) throw new Error(`compute must be "fp32" or "bf16", got ${JSON.stringify(c)}`);
    this.h().setCompute(code);
  }
  get compute(): ComputeDtype {
    return this.h().getCompute() === COMPUTE_CODE.bf16 ? "bf16" : "fp32";
  }

  private h(): AddonModel {
    if (!this.handle) throw new Error("NativeModel used after free()");
    return this.handle;
  }

  /**
   * Per-token statistics of a right-padded batch; train keeps activations for backward(). With a LoRA
   * adapter attached, adapters: false runs the base model alone (not allowed together with train).
   */
  forward(batch: TokenBatch, opts: ForwardOptions): TokenStats {
    const { B, T } = batch;  // rows longer than max_position_embeddings are refused by the core, with the numbers
    const out: TokenStats = {
      logps: new Float32Array(B * T),
      logitsMean: new Float32Array(B * T),
      entropy: new Float32Array(B * T),
      correct: new Uint8Array(B * T),
    };
    const flags = (opts.train ? FORWARD_TRAIN : 0) | (opts.adapters === false ? FORWARD_NO_ADAPTERS : 0);
    this.h().forward(batch.ids, batch.lengths, B, T, flags, out.logps, out.logitsMean, out.entropy, out.correct);
    return out;
  }

  /**
   * Attaches a LoRA adapter (all values 0: initialise it with src/models/peft.ts). From then on the base
   * weights are frozen: backward() fills only the adapter's gradients, and the adapter is what trains.
   */
  attachLora(config: LoraConfig): LoraAdapter {
    const h = this.h();
    if (this.adapter) throw new Error("a LoRA adapter is already attached to this model; detach it first");
    if (!Array.isArray(config.targetModules) || config.targetModules.length === 0) throw new Error("LoRA target_modules must name at least one projection");
    let targets = 0;
    for (const t of config.targetModules) {
      const bit = LORA_TARGET_BITS[t];
      if (bit === undefined) throw new Error(`LoRA target_modules: "${t}" is not a projection of this decoder; use ${LORA_TARGETS.join(", ")} or "all-linear"`);
      targets |= bit;
    }
    h.loraAttach({ r: config.r, lora_alpha: config.loraAlpha, use_rslora: config.useRslora ? 1 : 0, targets, lora_dropout: config.loraDropout });
    this.adapter = new LoraAdapter(h, { ...config, targetModules: LORA_TARGETS.filter((t) => targets & LORA_TARGET_BITS[t]) });
    return this.adapter;
  }
  /** The attached adapter, or null. */
  get lora(): LoraAdapter | null {
    return this.adapter;
  }
  detachLora(): void {
    this.h().loraDetach();
    if (this.adapter) this.adapter.alive = false;
    this.adapter = null;
  }
  /** Folds the adapter into the base weights (W += s·B·A, PEFT's merge) and detaches it. */
  mergeLora(): void {
    this.h().loraMerge();
    if (this.adapter) this.adapter.alive = false;
    this.adapter = null;
  }
  /** This model seen with its adapters disabled: TRL's reference for a PEFT policy (no second copy). */
  withoutAdapters(): LogpModel {
    return { forward: (batch, opts) => this.forward(batch, { train: opts.train, adapters: false }) };
  }

  /** A decoding session of `rows` rows of at most maxPositions tokens each (native memory: free() it). */
  kvCache(rows: number, maxPositions: number): KvCache {
    return new KvCache(new (native().KvCache)(this.h(), rows, maxPositions), rows, maxPositions, this.config.vocabSize);
  }
  /**
   * Appends tokens to cache rows and returns the logits (n, V) of each row's last new token. ids (n, T)
   * right-padded, lengths (n) >= 1, rows (n) distinct cache rows. Prefill: the prompts; a step: one token per
   * live row. adapters: false decodes with the base model alone (a LoRA model's reference).
   */
  decode(cache: KvCache, rows: Int32Array, ids: Int32Array, lengths: Int32Array, T: number, opts: { adapters?: boolean } = {}): Float32Array {
    const logits = new Float32Array(rows.length * this.config.vocabSize);
    this.h().decode(cache.handle(), rows, ids, lengths, T, opts.adapters === false ? FORWARD_NO_ADAPTERS : 0, logits);
    return logits;
  }

  /** Accumulates d loss / d params from dlogps (B, T), label-aligned like TokenStats.logps. */
  backward(dlogps: Float32Array): void {
    this.h().backward(dlogps);
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
    return clip(this, maxNorm);
  }
  free(): void {
    if (this.adapter) this.adapter.alive = false;
    this.adapter = null;
    this.handle?.free();
    this.handle = null;
  }
  /** @internal used by AdamW */
  adamw(m: Float32Array, v: Float32Array, step: number, c: AdamWConfig, lr: number): void {
    this.h().adamwStep(m, v, step, lr, c.beta1, c.beta2, c.eps, c.weightDecay);
  }
}

/** A KV cache for decoding (NativeModel.kvCache): rows x maxPositions keys and values per layer, in native memory. */
export class KvCache {
  private h: AddonKvCache | null;
  /** @internal created by NativeModel.kvCache */
  constructor(h: AddonKvCache, readonly rows: number, readonly maxPositions: number, readonly vocabSize: number) {
    this.h = h;
  }
  /** @internal */
  handle(): AddonKvCache {
    if (!this.h) throw new Error("KvCache used after free()");
    return this.h;
  }
  /** Tokens the row holds. */
  length(row: number): number {
    return this.handle().length(row);
  }
  /** Empties a row so a new sequence can use it. */
  reset(row: number): void {
    this.handle().reset(row);
  }
  free(): void {
    this.h?.free();
    this.h = null;
  }
}

/** torch.optim.AdamW state over a parameter set's flat buffers (decay only where its table says so). */
export class AdamW {
  readonly expAvg: Float32Array;
  readonly expAvgSq: Float32Array;
  step = 0;
  constructor(readonly model: Trainable, readonly config: AdamWConfig) {
    this.expAvg = new Float32Array(model.params.length);
    this.expAvgSq = new Float32Array(model.params.length);
  }
  /** One update with learning rate lr (defaults to config.lr). */
  update(lr = this.config.lr): void {
    this.step += 1;
    this.model.adamw(this.expAvg, this.expAvgSq, this.step, this.config, lr);
  }
}
