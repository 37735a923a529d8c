// `preftune bench`: full fine-tuning steps of a randomly initialised model given by a config.json, on random
// token ids, timed; prints one JSON line (tokens_per_second, seconds_per_step median, gflops, peak_rss_mb).
// --bf16 picks the GEMM precision as `bf16: true` does in training (chooseCompute; --compute forces one);
// --lora trains a LoRA adapter (PEFT init, rank --lora-r) on every linear layer (PEFT's all-linear) with the base frozen;
// --base-bf16 holds that frozen base in bf16 only (`torch_dtype: bfloat16` under LoRA); --gradient-checkpointing
// recomputes each layer in the backward; --optim adamw_8bit keeps bitsandbytes' 8-bit AdamW state.
// `preftune bench --generate`: greedy decoding through the generation engine instead (decode tokens/s per batch
// size, time to first token), one JSON line per measurement in the schema of bench/peer_generate.py.
// bench/compare.ts and bench/generate.ts run them beside their PyTorch peers and print the ratios.
// Not a training run: no data, no checkpoints; the loss is the mean next-token NLL over every token.
import { readFileSync } from "node:fs";
import { totalmem } from "node:os";
import { resourceUsage } from "node:process";
import { InvalidArgumentError, type Command } from "commander";
import { createOptimizer } from "../core/adamw8bit.ts";
import { NativeModel, bf16Support, blasCore, chooseCompute, getNumThreads, setNumThreads } from "../core/native.ts";
import { Generator, type LoadedModel } from "../generate/engine.ts";
import { defaultGenerationConfig } from "../generate/config.ts";
import type { Tokenizer } from "../data/tokenizer.ts";
import type { ComputeDtype, DecoderConfig } from "../core/types.ts";
import { parseConfig } from "../models/config.ts";
import { randomInit } from "../models/params.ts";
import { checkSeed } from "../util/random.ts";
import { initLora, resolveTargetModules } from "../models/peft.ts";
import { f32ToBf16 } from "../models/dtype.ts";

export interface BenchOptions {
  config: string; batch: number; seq: number; steps: number; warmup: number; threads: number; seed: number;
  /** As `bf16: true` in a training config: bf16 GEMMs where chooseCompute picks them. */
  bf16?: boolean;
  /** Forces the GEMM precision (overrides bf16). */
  compute?: ComputeDtype;
  /** Train a LoRA adapter of rank loraR (alpha loraAlpha, default 2r) on all seven projections instead. */
  lora?: boolean; loraR?: number; loraAlpha?: number;
  /** With lora: hold the frozen base in bf16 only. */
  baseBf16?: boolean;
  /** gradient_checkpointing: true. */
  gradientCheckpointing?: boolean;
  /** A transformers optim name that runs AdamW (default adamw_torch; adamw_8bit for 8-bit state). */
  optim?: string;
}

/**
 * randomInit's distribution written into a bf16-held base, a block of at most 2^20 values at a time so no fp32
 * copy of a whole tensor exists (the peak RSS is the measurement). Not randomInit's exact bits.
 */
function randomInitBf16(model: NativeModel, seed: number): void {
  const dst = model.paramsBf16;
  model.table.forEach((p, i) => {
    const cols = p.shape.length === 2 ? p.shape[1] : p.size;
    const rows = Math.max(1, Math.floor((1 << 20) / cols));
    for (let r0 = 0, k = 0; r0 * cols < p.size; r0 += rows, k++) {
      const n = Math.min(rows * cols, p.size - r0 * cols);
      const block = new Float32Array(n);
      const part = { ...p, offset: 0, size: n, shape: p.shape.length === 2 ? [n / cols, cols] : [n] };
      randomInit([part], block, seed + 7919 * i + k);
      dst.set(f32ToBf16(block), p.offset + r0 * cols);
    }
  });
}

/**
 * Model FLOPs of one training step; the same formula as bench/peer_torch.py (see there for the terms). With a
 * LoRA adapter (loraParams > 0) the frozen base needs no weight-gradient GEMMs, so its matmuls count 4 (forward
 * and input gradient) instead of 6, and the adapter's 6 per parameter are added.
 */
export function flopsPerStep(cfg: DecoderConfig, numParams: number, B: number, T: number, loraParams = 0): number {
  const matmulParams = numParams - (cfg.tieWordEmbeddings ? 0 : cfg.vocabSize * cfg.hiddenSize);
  const attention = 6 * cfg.numLayers * B * T * T * cfg.numHeads * cfg.headDim;
  if (loraParams > 0) return 4 * matmulParams * B * T + 6 * loraParams * B * T + attention;
  return 6 * matmulParams * B * T + attention;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** A whole-number flag value (1e6 and 1000000 both fine); commander reports the error with the flag's name. */
function wholeArg(v: string): number {
  const n = Number(v);
  if (v.trim() === "" || !Number.isSafeInteger(n)) throw new InvalidArgumentError(`expected a whole number, got "${v}"`);
  return n;
}

/** The config.json at `file`, parsed; errors name the file. */
export function readBenchConfig(file: string): DecoderConfig {
  let text: string;
  try { text = readFileSync(file, "utf8"); } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(`--config ${file}: ${code === "EISDIR" ? "is a folder; pass the config.json file inside it" : code === "ENOENT" ? "no such file" : (e as Error).message}`);
  }
  let json: unknown;
  try { json = JSON.parse(text); } catch (e) { throw new Error(`--config ${file}: not valid JSON (${(e as Error).message})`); }
  return parseConfig(json, file);
}

/**
 * Refuses sizes the machine cannot hold before anything is allocated: sequences within the model's
 * positions, and a step whose activations (at least the logits and a few vectors per layer and token, in
 * fp32) fit in this machine's memory.
 */
export function checkBenchSizes(cfg: DecoderConfig, file: string, rows: number, tokens: number, what: string): void {
  if (tokens > cfg.maxPositionEmbeddings) {
    throw new Error(`${what}: ${tokens} tokens per row is more than the model's max_position_embeddings (${cfg.maxPositionEmbeddings}, ${file}); use at most ${cfg.maxPositionEmbeddings}`);
  }
  const perToken = 4 * (cfg.vocabSize + 8 * cfg.numLayers * Math.max(cfg.hiddenSize, cfg.intermediateSize));
  const need = rows * tokens * perToken;
  const have = totalmem();
  if (!(need <= have)) {
    const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;
    throw new Error(`${what}: ${rows} rows × ${tokens} tokens need at least ${gib(need)} for activations, more than this machine's ${gib(have)}; lower the batch or the sequence length`);
  }
}

/** The training bench's flags, checked: whole numbers in range, the seed in Hugging Face's range. */
export function checkBenchOptions(o: BenchOptions): void {
  const whole = (name: string, v: number, min: number) => {
    if (!Number.isSafeInteger(v) || v < min) throw new Error(`--${name} must be a whole number ≥ ${min}, got ${v}`);
  };
  whole("batch", o.batch, 1);
  whole("seq", o.seq, 2);
  whole("steps", o.steps, 1);
  whole("warmup", o.warmup, 0);
  whole("threads", o.threads, 1);
  checkSeed(o.seed, "--seed");
}

export function runBench(o: BenchOptions): Record<string, unknown> {
  checkBenchOptions(o);
  const cfg = readBenchConfig(o.config);
  checkBenchSizes(cfg, o.config, o.batch, o.seq, `--batch ${o.batch} --seq ${o.seq}`);
  setNumThreads(o.threads);
  if (o.compute !== undefined && o.compute !== "fp32" && o.compute !== "bf16") throw new Error(`--compute must be fp32 or bf16, got ${JSON.stringify(o.compute)}`);
  const choice = o.compute ? { compute: o.compute, notes: [] as string[] } : chooseCompute({ bf16: o.bf16 });
  for (const n of choice.notes) console.error(`note: ${n}`);
  if (o.baseBf16 && !o.lora) throw new Error("--base-bf16 holds a frozen base: use it with --lora");
  if (o.optim !== undefined && !["adamw_torch", "adamw_8bit"].includes(o.optim)) throw new Error(`--optim must be adamw_torch or adamw_8bit, got ${JSON.stringify(o.optim)}`);
  const model = new NativeModel(cfg, { compute: choice.compute, baseDtype: o.baseBf16 ? "bf16" : "fp32" });
  if (o.baseBf16) randomInitBf16(model, o.seed);
  else randomInit(model.table, model.params, o.seed);
  const r = o.loraR ?? 16;
  if (o.lora && !(Number.isInteger(r) && r >= 1)) throw new Error(`--lora-r must be a whole number >= 1, got ${o.loraR}`);
  const lora = o.lora ? model.attachLora({ r, loraAlpha: o.loraAlpha ?? 2 * r, useRslora: false, targetModules: resolveTargetModules("all-linear", "--lora", cfg), loraDropout: 0 }) : null;
  if (lora) initLora(lora, o.seed + 1);
  const trainable = lora ?? model;
  model.gradientCheckpointing = o.gradientCheckpointing === true;
  const { seq: T, batch: B } = o;
  const ids = new Int32Array(B * T);
  let s = o.seed * 2654435761 + 1;
  for (let i = 0; i < ids.length; i++) { s = (s * 1664525 + 1013904223) >>> 0; ids[i] = s % cfg.vocabSize; }
  const batch = { ids, lengths: new Int32Array(B).fill(T), B, T };
  const dlogps = new Float32Array(B * T);
  for (let b = 0; b < B; b++) for (let t = 1; t < T; t++) dlogps[b * T + t] = -1 / (B * (T - 1));
  const opt = createOptimizer(o.optim ?? "adamw_torch", trainable, { lr: 1e-5, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 });
  const times: number[] = [];
  let loss = NaN;
  for (let step = 0; step < o.warmup + o.steps; step++) {
    const t0 = performance.now();
    trainable.zeroGrad();
    const stats = model.forward(batch, { train: true });
    model.backward(dlogps);
    trainable.clipGradNorm(1.0);
    opt.update();
    const dt = (performance.now() - t0) / 1000;
    loss = 0;
    for (let i = 0; i < dlogps.length; i++) loss += dlogps[i] * stats.logps[i];
    if (step >= o.warmup) times.push(dt);
  }
  const sps = median(times);
  const flops = flopsPerStep(cfg, model.numParameters, B, T, lora ? lora.numParameters : 0);
  const support = bf16Support();
  const out = {
    impl: "preftune",
    compute: model.compute,
    base_dtype: model.baseDtype,
    bf16_requested: o.bf16 === true || o.compute === "bf16",
    bf16_cpu: support.cpu,
    notes: choice.notes,
    gradient_checkpointing: model.gradientCheckpointing,
    optimizer: opt.format,
    optimizer_state_mb: opt.stateBytes / 2 ** 20,
    lora: lora ? { r, lora_alpha: lora.config.loraAlpha, targets: lora.config.targetModules, trainable_params: lora.numParameters } : null,
    tokens_per_second: (B * T) / sps,
    seconds_per_step: sps,
    gflops: flops / sps / 1e9,
    peak_rss_mb: resourceUsage().maxRSS / 1024,
    threads: getNumThreads(),
    batch: B, seq: T, steps: o.steps, warmup: o.warmup,
    step_seconds: times,
    params: model.numParameters,
    flops_per_step: flops,
    loss_last: loss,
  };
  model.free();
  return out;
}

export interface GenerateBenchOptions { config: string; batches: number[]; promptTokens: number; newTokens: number; ttftPromptTokens: number; repeats: number; threads: number; seed: number }

/**
 * Greedy decoding of a random model through Generator.generate (prefill, one native call per step, the
 * per-row token choice and stop checks), every row running to newTokens. A random model has no tokenizer, so
 * the text of each token is not decoded (the streaming detokenizer costs microseconds per token).
 */
export async function runGenerateBench(o: GenerateBenchOptions): Promise<Record<string, unknown>[]> {
  checkSeed(o.seed, "--seed");
  const cfg = readBenchConfig(o.config);
  for (const b of o.batches) checkBenchSizes(cfg, o.config, b, o.promptTokens + o.newTokens, `--batches ${b} with --prompt-tokens ${o.promptTokens} + --new-tokens ${o.newTokens}`);
  if (o.ttftPromptTokens > 0) checkBenchSizes(cfg, o.config, 1, o.ttftPromptTokens + 1, `--ttft-prompt-tokens ${o.ttftPromptTokens}`);
  setNumThreads(o.threads);
  const model = new NativeModel(cfg);
  randomInit(model.table, model.params, o.seed);
  const noText = { decode: () => "" } as unknown as Tokenizer;
  const loaded: LoadedModel = {
    dir: o.config, name: "bench", model, tokenizer: noText, configJson: {}, generationDefaults: defaultGenerationConfig(),
    maxPositions: cfg.maxPositionEmbeddings, adapterDir: null, dispose: () => model.free(),
  };
  const gen = new Generator(loaded);
  let s = o.seed * 2654435761 + 7;
  const rand = () => { s = (s * 1664525 + 1013904223) >>> 0; return 1 + (s % (cfg.vocabSize - 1)); };
  const run = (batch: number, prompt: number, fresh: number) => {
    const config = { ...loaded.generationDefaults, eos_token_id: [], max_new_tokens: fresh, min_new_tokens: fresh };
    return gen.generate(Array.from({ length: batch }, () => ({ promptIds: Array.from({ length: prompt }, rand), config })));
  };
  const base = { impl: "preftune", dtype: "float32", threads: getNumThreads(), blas: blasCore(), repeats: o.repeats, params: model.numParameters };
  const lines: Record<string, unknown>[] = [];
  try {
    for (const batch of o.batches) {
      await run(batch, o.promptTokens, 4);  // warm-up
      const rates: number[] = [], ttfts: number[] = [];
      for (let r = 0; r < o.repeats; r++) {
        const res = await run(batch, o.promptTokens, o.newTokens);
        const after = Math.max(...res.map((x) => x.seconds - x.timeToFirstTokenMs / 1000));
        rates.push((batch * (o.newTokens - 1)) / after);
        ttfts.push(res[0].timeToFirstTokenMs);
      }
      const rate = median(rates);
      lines.push({ ...base, measure: "decode", batch, prompt_tokens: o.promptTokens, new_tokens: o.newTokens, decode_tokens_per_second: rate,
        decode_tokens_per_second_per_row: rate / batch, decode_runs_tokens_per_second: rates, ttft_ms: median(ttfts), peak_rss_mb: resourceUsage().maxRSS / 1024 });
    }
    if (o.ttftPromptTokens > 0) {
      await run(1, o.ttftPromptTokens, 1);
      const ttfts: number[] = [];
      for (let r = 0; r < o.repeats; r++) ttfts.push((await run(1, o.ttftPromptTokens, 1))[0].timeToFirstTokenMs);
      const ttft = median(ttfts);
      lines.push({ ...base, measure: "ttft", batch: 1, prompt_tokens: o.ttftPromptTokens, new_tokens: 1, ttft_ms: ttft, ttft_runs_ms: ttfts,
        prefill_tokens_per_second: o.ttftPromptTokens / (ttft / 1000), peak_rss_mb: resourceUsage().maxRSS / 1024 });
    }
  } finally {
    model.free();
  }
  return lines;
}

export function registerBenchCommand(program: Command): void {
  program
    .command("bench")
    .description("time full fine-tuning steps of a random model given by a config.json; prints one JSON line")
    .requiredOption("--config <file>", "Hugging Face config.json of the model shape")
    .option("--batch <n>", "rows per step", wholeArg, 4)
    .option("--seq <n>", "tokens per row", wholeArg, 512)
    .option("--steps <n>", "timed steps (the median is reported)", wholeArg, 3)
    .option("--warmup <n>", "untimed steps first", wholeArg, 1)
    .option("--threads <n>", "native threads (OpenMP and OpenBLAS)", wholeArg, 2)
    .option("--seed <n>", "weights and token ids seed", wholeArg, 0)
    .option("--bf16", "bf16 mixed precision as `bf16: true` in training picks it (a note and fp32 where the CPU has no fast bf16)")
    .option("--compute <dtype>", "force the GEMM precision: fp32 or bf16 (bf16 needs AVX512-BF16 or AMX)")
    .option("--lora", "train a LoRA adapter on every linear layer (PEFT's all-linear: q,k,v,o,gate,up,down on a Llama) with the base frozen")
    .option("--lora-r <n>", "with --lora: the adapter rank", wholeArg, 16)
    .option("--lora-alpha <n>", "with --lora: lora_alpha (default 2 * r)", (v) => Number(v))
    .option("--base-bf16", "with --lora: hold the frozen base in bf16 only (torch_dtype: bfloat16), half its memory")
    .option("--gradient-checkpointing", "keep only each layer's input in the forward and recompute the layer in the backward")
    .option("--optim <name>", "adamw_torch (fp32 state) or adamw_8bit (bitsandbytes' 8-bit state)", "adamw_torch")
    .option("--generate", "time greedy decoding instead of training: decode tokens/s at each --batches size and time to first token")
    .option("--batches <list>", "with --generate: batch sizes of the decode measurement", "1,8")
    .option("--prompt-tokens <n>", "with --generate: prompt length of the decode measurement", wholeArg, 16)
    .option("--new-tokens <n>", "with --generate: new tokens per row", wholeArg, 128)
    .option("--ttft-prompt-tokens <n>", "with --generate: prompt of the time-to-first-token measurement (0 skips it)", wholeArg, 512)
    .option("--repeats <n>", "with --generate: timed runs per measurement (the median is reported)", wholeArg, 1)
    .action(async (o: BenchOptions & { generate?: boolean; batches: string; promptTokens: number; newTokens: number; ttftPromptTokens: number; repeats: number }) => {
      if (!o.generate) return console.log(JSON.stringify(runBench(o)));
      const batches = o.batches.split(",").map((b) => (b.trim() === "" ? NaN : Number(b)));
      const whole = (v: number, min: number) => Number.isSafeInteger(v) && v >= min;
      if (!batches.every((b) => whole(b, 1)) || !whole(o.promptTokens, 1) || !whole(o.newTokens, 2) || !whole(o.ttftPromptTokens, 0) || !whole(o.repeats, 1) || !whole(o.threads, 1))
        throw new Error("--batches, --prompt-tokens, --repeats and --threads take whole numbers >= 1, --new-tokens >= 2, --ttft-prompt-tokens >= 0");
      for (const line of await runGenerateBench({ ...o, batches })) console.log(JSON.stringify(line));
    });
}
