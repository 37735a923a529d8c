// The only TypeScript that touches the native addon: a NativeModel handle owning native memory
// (free it explicitly), the LoRA adapter set it may carry, KV caches for decoding, the Optimizer interface and
// AdamW with fp32 state over flat arrays (8-bit state: adamw8bit.ts), thread control, gradient checkpointing,
// and the choice of compute precision (fp32, or bf16 mixed precision).
// Not here: file formats (src/models, PEFT files in src/models/peft.ts), losses, the training loop (src/train).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { ACT_CODE, ARCH_CODE, loraModules } from "./arch.ts";
import type { AdamWConfig, Bf16Support, ComputeChoice, ComputeDtype, DecoderConfig, LoraConfig, LoraTarget, ParamInfo, RopeScaling, TokenBatch, TokenStats } from "./types.ts";

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
  loraAttach(cfg: { r: number; lora_alpha: number; use_rslora: number; targets: number; lora_dropout: number; use_dora: number }): void;
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
  loraSetDropoutSeed(seed: number, step: number, micro: number): void;
  loraDoraInit(): void;
  decode(cache: AddonKvCache, rows: Int32Array, ids: Int32Array, lengths: Int32Array, T: number, flags: number, logits: Float32Array): void;
  setCompute(mode: number): void;
  getCompute(): number;
  paramsBf16(): Uint16Array;
  setGradientCheckpointing(on: boolean): void;
  getGradientCheckpointing(): boolean;
  quantize4bit(param: number, values: Float32Array, start: number): void;
  dequantize(param: number, out: Float32Array): void;
  writeTensor(param: number, values: Float32Array, start: number): void;
  weightBytes(): number;
}
interface AddonKvCache {
  length(row: number): number;
  reset(row: number): void;
  free(): void;
}
interface Addon {
  Model: new (cfg: Record<string, number | number[]>, flags?: number) => AddonModel;
  KvCache: new (model: AddonModel, rows: number, maxPositions: number) => AddonKvCache;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  gradcheck(op: string, seed: number): number;
  bf16Support(): number;
  paramLayout(cfg: Record<string, number | number[]>): { table: ParamInfo[]; numFloats: number };
  bf16Describe(): string;
  abiVersion: number;
  blasCore: string;
  dynamicMap(signed: boolean): Float32Array;
  quantizeBlockwise(x: Float32Array, signed: boolean, codes: Uint8Array, absmax: Float32Array): void;
  dequantizeBlockwise(codes: Uint8Array, absmax: Float32Array, signed: boolean, out: Float32Array): void;
  adamwTensor(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, step: number, lr: number, b1: number, b2: number, eps: number, wd: number): void;
  adamw8bitTensor(p: Float32Array, g: Float32Array, s1: Uint8Array, s2: Uint8Array, a1: Float32Array, a2: Float32Array, step: number, lr: number, b1: number, b2: number, eps: number, wd: number): void;
  quantize4bit(x: Float32Array, type: number): { packed: Uint8Array; absmax: Float32Array };
  dequantize4bit(packed: Uint8Array, absmax: Float32Array, n: number, type: number): Float32Array;
  quantizeAbsmax(absmax: Float32Array): { q: Uint8Array; absmax2: Float32Array; offset: number; dequantized: Float32Array };
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
const ABI_VERSION = 13;

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

/** The core's pt_config of a decoder config. */
function coreConfig(config: DecoderConfig): Record<string, number | number[]> {
  return {
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
    ...ropeFields(config.ropeScaling),
    ...(config.layerWindows ? { layer_window: config.layerWindows } : {}),
    ...(config.layerRope ? { layer_rope: config.layerRope.map((r) => (r === "local" ? 2 : r ? 1 : 0)) } : {}),
    // the family features: 0 is the Llama shape
    arch: ARCH_CODE[config.arch ?? "llama"],
    norm_type: config.normType === "layernorm" ? 1 : 0,
    norm_unit_offset: config.normUnitOffset ? 1 : 0,
    sandwich_norms: config.sandwichNorms ? 1 : 0,
    parallel_residual: config.parallelResidual ?? 0,
    mlp_plain: config.mlpPlain ? 1 : 0,
    mlp_act: ACT_CODE[config.mlpAct ?? "silu"],
    rotary_dim: config.rotaryDim ?? 0,
    head_bias: config.headBias ? 1 : 0,
    position_rows: config.positionRows ?? 0,
    position_offset: config.positionOffset ?? 0,
    embed_scale: config.embedScale ?? 0,
    attn_scale: config.attnScale ?? 0,
    attn_softcap: config.attnSoftcap ?? 0,
    final_softcap: config.finalSoftcap ?? 0,
    rope_local_theta: config.ropeLocalTheta ?? 0,
    norm_after: config.normAfter ? 1 : 0,
    no_final_norm: config.noFinalNorm ? 1 : 0,
    embed_dim: config.embedDim ?? 0,
  };
}

/**
 * The parameter layout a model of `config` has, straight from the core (pt_param_layout), without creating a model
 * or any buffer: names, shapes, offsets and decay of each tensor, and the buffer length in floats.
 */
export function paramLayout(config: DecoderConfig): { table: ParamInfo[]; numFloats: number } {
  return native().paramLayout(coreConfig(config));
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

/** A Llama's seven LoRA targets, in PEFT's module names ("all-linear" on a Llama); other archs: loraModules (src/core/arch.ts). */
export const LORA_TARGETS: LoraTarget[] = loraModules({}).map((x) => x.name);

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

  /** @internal created by NativeModel.attachLora; modelConfig: the config of the model it adapts */
  constructor(private readonly h: AddonModel, readonly config: LoraConfig, readonly modelConfig: DecoderConfig) {
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
  /**
   * The LoRA dropout masks of the training forwards that follow: a pure function of (seed, step, micro) and the
   * count of training forwards since this call, so a resumed run that calls it with the same values draws the
   * same masks. Eval forwards and decoding never drop. Without lora_dropout it changes nothing.
   */
  setDropoutSeed(seed: number, step: number, micro: number): void {
    for (const [k, v] of [["seed", seed], ["step", step], ["micro", micro]] as const) {
      if (!Number.isSafeInteger(v) || v < 0 || (k === "micro" && v > 0x7fffffff)) throw new Error(`LoRA dropout ${k} must be a non-negative integer, got ${v}`);
    }
    this.handle().loraSetDropoutSeed(seed, step, micro);
  }
  /** DoRA: every lora_magnitude_vector = ‖W + s·B·A‖ per output row from the current weights (PEFT's initialisation). */
  initDoraMagnitude(): void {
    if (!this.config.useDora) throw new Error("initDoraMagnitude: this adapter is not a DoRA adapter (use_dora: false)");
    this.handle().loraDoraInit();
  }
}

/** bitsandbytes' 4-bit formats (BitsAndBytesConfig bnb_4bit_quant_type). */
export type Quant4Type = "nf4" | "fp4";
const QUANT_CODE: Readonly<Record<Quant4Type, number>> = { nf4: 0, fp4: 1 };   // PT_QUANT_*

/** A frozen base in bitsandbytes' 4-bit format (load_in_4bit): the code book and double quantization. */
export interface Quant4Config {
  quantType: Quant4Type;
  /** bnb_4bit_use_double_quant / TRL's use_bnb_nested_quant: the block absmax values 8-bit quantized too. */
  doubleQuant: boolean;
}

/**
 * bitsandbytes' quantize_4bit on a plain array (blocks of 64): packed nibbles (first element high) and one absmax
 * per block. For tests and tools; a 4-bit model quantizes its own weights (NativeModel.quantize4bit).
 */
export function quantize4bit(x: Float32Array, type: Quant4Type): { packed: Uint8Array; absmax: Float32Array } {
  return native().quantize4bit(x, QUANT_CODE[type]);
}
/** The inverse: code[nibble] · absmax[block], n values. */
export function dequantize4bit(packed: Uint8Array, absmax: Float32Array, n: number, type: Quant4Type): Float32Array {
  return native().dequantize4bit(packed, absmax, n, QUANT_CODE[type]);
}
/** bitsandbytes' double quantization of absmax values (mean offset, signed dynamic map, blocks of 256), and its read-back. */
export function quantizeAbsmax(absmax: Float32Array): { q: Uint8Array; absmax2: Float32Array; offset: number; dequantized: Float32Array } {
  return native().quantizeAbsmax(absmax);
}
/** bitsandbytes' dynamic 8-bit map (256 values, ascending): signed (double quantization, exp_avg) or unsigned (exp_avg_sq). */
export function dynamicMap(signed = true): Float32Array {
  return native().dynamicMap(signed);
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
  /**
   * Hold the projection weights of every layer in bitsandbytes' 4-bit format (QLoRA's load_in_4bit): a frozen base,
   * trained only through a LoRA adapter. Write those weights with quantize4bit (chunk by chunk, as the loader streams
   * them) and the others through params (baseDtype "fp32") or paramsBf16 (baseDtype "bf16"), which then hold only the
   * embeddings, norms, biases and head (the matrix regions are unused).
   */
  quantization?: Quant4Config;
}
// PT_MODEL_* flags
const MODEL_BF16_BASE = 1, MODEL_NF4_BASE = 2, MODEL_FP4_BASE = 4, MODEL_DOUBLE_QUANT = 8;
const ROPE_TYPES: Record<RopeScaling["type"], number> = { linear: 1, dynamic: 2, yarn: 3, llama3: 4, longrope: 5 };  // PT_ROPE_*

/** pt_config's rope_* fields; none for plain RoPE. */
function ropeFields(r: RopeScaling | null): Record<string, number | number[]> {
  if (!r) return {};
  return {
    rope_type: ROPE_TYPES[r.type], rope_factor: r.factor, rope_original_max_position_embeddings: r.originalMaxPositionEmbeddings,
    rope_low_freq_factor: r.lowFreqFactor, rope_high_freq_factor: r.highFreqFactor, rope_beta_fast: r.betaFast,
    rope_beta_slow: r.betaSlow, rope_truncate: r.truncate ? 1 : 0, rope_attention_factor: r.attentionFactor,
    ...(r.shortFactor && r.longFactor ? { rope_short_factor: r.shortFactor, rope_long_factor: r.longFactor } : {}),
  };
}

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
    const q = opts.quantization;
    if (q && QUANT_CODE[q.quantType] === undefined) throw new Error(`bnb_4bit_quant_type must be "nf4" or "fp4", got ${JSON.stringify(q.quantType)}`);
    const flags = (bf16Base ? MODEL_BF16_BASE : 0) | (q ? (q.quantType === "fp4" ? MODEL_FP4_BASE : MODEL_NF4_BASE) | (q.doubleQuant ? MODEL_DOUBLE_QUANT : 0) : 0);
    const handle = new (native().Model)(coreConfig(config), flags);
    // a frozen (bf16 or 4-bit) base's buffer is viewed only on demand: it may be past JavaScript's 2^32-value limit
    super(handle.table(), bf16Base || q ? () => handle.params() : handle.params(), () => this.h().grads(), "parameter");
    this.config = config;
    this.handle = handle;
    this.baseDtype = bf16Base ? "bf16" : "fp32";
    this.quantization = q ? { quantType: q.quantType, doubleQuant: !!q.doubleQuant } : null;
    if (opts.compute) this.setCompute(opts.compute);
  }

  /** How the base weights are held: "fp32" (trainable) or "bf16" (frozen, half the memory). */
  readonly baseDtype: ComputeDtype;
  /** The 4-bit format of the projection weights (a frozen QLoRA base), or null. */
  readonly quantization: Quant4Config | null;
  /** Quantizes elements [start, start + values.length) of projection weight `name` (chunks in order, multiples of 64 but the last). */
  quantize4bit(name: string, values: Float32Array, start: number): void {
    this.h().quantize4bit(this.tableIndex(name), values, start);
  }
  /**
   * Writes elements [start, start + values.length) of an unquantized tensor (rounded to bf16 on a bf16-held base).
   * Needs no view of the whole buffer, which JavaScript cannot make past 2^32 values (a 7B model).
   */
  writeTensor(name: string, values: Float32Array, start: number): void {
    this.h().writeTensor(this.tableIndex(name), values, start);
  }
  /** Tensor `name` in fp32: dequantized (4-bit), widened (bf16) or copied. */
  dequantize(name: string): Float32Array {
    const out = new Float32Array(this.info(name).size);
    this.h().dequantize(this.tableIndex(name), out);
    return out;
  }
  /** Bytes the weights occupy in native memory (4-bit data and scales, or 2 / 4 bytes a value). */
  get weightBytes(): number {
    return this.h().weightBytes();
  }
  private indexByName: Map<string, number> | null = null;
  private tableIndex(name: string): number {
    this.indexByName ??= new Map(this.table.map((p, i) => [p.name, i]));
    const i = this.indexByName.get(name);
    if (i === undefined) throw new Error(`no parameter named ${name}`);
    return i;
  }
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

  /**
   * Gradient checkpointing (transformers' gradient_checkpointing): a training forward keeps only each decoder
   * layer's input and the backward recomputes the layer, so activation memory stops growing with the layer
   * count; losses and gradients are the same bit for bit. Off by default.
   */
  get gradientCheckpointing(): boolean {
    return this.h().getGradientCheckpointing();
  }
  set gradientCheckpointing(on: boolean) {
    this.h().setGradientCheckpointing(on);
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
    const modules = loraModules(this.config);
    let targets = 0;
    for (const t of config.targetModules) {
      const mod = modules.find((x) => x.name === t);
      if (!mod) throw new Error(`LoRA target_modules: "${t}" is not a module of this ${this.config.architecture}; use ${modules.map((x) => x.name).join(", ")} or "all-linear"`);
      targets |= mod.bits;
    }
    h.loraAttach({ r: config.r, lora_alpha: config.loraAlpha, use_rslora: config.useRslora ? 1 : 0, targets, lora_dropout: config.loraDropout, use_dora: config.useDora ? 1 : 0 });
    const targetModules = modules.filter((x) => (x.bits & targets) !== 0).map((x) => x.name);
    this.adapter = new LoraAdapter(h, { ...config, useDora: config.useDora === true, targetModules }, this.config);
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
  /** Folds the adapter into the base weights (W += s·B·A, PEFT's merge; DoRA: then each row scaled to m / ‖row‖) and detaches it. */
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

/** One piece of an optimizer's state for one parameter tensor, as a checkpoint stores it (a view: writing restores it). */
export interface OptimizerStateTensor {
  suffix: string;                  // the tensor is saved as `${param name}.${suffix}`
  dtype: "F32" | "U8";
  shape: number[];
  data: Float32Array | Uint8Array;
}

/** An optimizer over a Trainable, as the loop and checkpoints see it: AdamW with fp32 state, or with 8-bit state. */
export interface Optimizer {
  readonly model: Trainable;
  readonly config: AdamWConfig;
  /** The optimizer.safetensors format name: "preftune.adamw" or "preftune.adamw_8bit". */
  readonly format: string;
  /** Optimizer steps taken. */
  step: number;
  /** One update with learning rate lr (defaults to config.lr). */
  update(lr?: number): void;
  /** The state held for one tensor of model.table. */
  stateOf(p: ParamInfo): OptimizerStateTensor[];
  /** State that belongs to no tensor (saved under its own name), e.g. the quantization maps. */
  sharedState(): { name: string; dtype: "F32"; shape: number[]; data: Float32Array }[];
  /** Bytes of optimizer state held. */
  readonly stateBytes: number;
}

/** torch.optim.AdamW state over a parameter set's flat buffers (decay only where its table says so). */
export class AdamW implements Optimizer {
  readonly format = "preftune.adamw";
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
  stateOf(p: ParamInfo): OptimizerStateTensor[] {
    const at = (a: Float32Array) => a.subarray(p.offset, p.offset + p.size);
    return [{ suffix: "exp_avg", dtype: "F32", shape: p.shape, data: at(this.expAvg) }, { suffix: "exp_avg_sq", dtype: "F32", shape: p.shape, data: at(this.expAvgSq) }];
  }
  sharedState(): { name: string; dtype: "F32"; shape: number[]; data: Float32Array }[] {
    return [];
  }
  get stateBytes(): number {
    return this.expAvg.byteLength + this.expAvgSq.byteLength;
  }
}
