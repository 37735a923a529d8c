// `preftune bench`: full fine-tuning steps of a randomly initialised model given by a config.json, on random
// token ids, timed; prints one JSON line (tokens_per_second, seconds_per_step median, gflops, peak_rss_mb).
// `preftune bench --generate`: greedy decoding through the generation engine instead (decode tokens/s per batch
// size, time to first token), one JSON line per measurement in the schema of bench/peer_generate.py.
// bench/compare.ts and bench/generate.ts run them beside their PyTorch peers and print the ratios.
// Not a training run: no data, no checkpoints; the loss is the mean next-token NLL over every token.
import { readFileSync } from "node:fs";
import { resourceUsage } from "node:process";
import type { Command } from "commander";
import { AdamW, NativeModel, blasCore, getNumThreads, setNumThreads } from "../core/native.ts";
import { Generator, type LoadedModel } from "../generate/engine.ts";
import { defaultGenerationConfig } from "../generate/config.ts";
import type { Tokenizer } from "../data/tokenizer.ts";
import type { DecoderConfig } from "../core/types.ts";
import { parseConfig } from "../models/config.ts";
import { randomInit } from "../models/params.ts";

export interface BenchOptions { config: string; batch: number; seq: number; steps: number; warmup: number; threads: number; seed: number }

/** Model FLOPs of one training step; the same formula as bench/peer_torch.py (see there for the terms). */
export function flopsPerStep(cfg: DecoderConfig, numParams: number, B: number, T: number): number {
  const matmulParams = numParams - (cfg.tieWordEmbeddings ? 0 : cfg.vocabSize * cfg.hiddenSize);
  return 6 * matmulParams * B * T + 6 * cfg.numLayers * B * T * T * cfg.numHeads * cfg.headDim;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

export function runBench(o: BenchOptions): Record<string, unknown> {
  setNumThreads(o.threads);
  const cfg = parseConfig(JSON.parse(readFileSync(o.config, "utf8")), o.config);
  const model = new NativeModel(cfg);
  randomInit(model.table, model.params, o.seed);
  const { seq: T, batch: B } = o;
  const ids = new Int32Array(B * T);
  let s = o.seed * 2654435761 + 1;
  for (let i = 0; i < ids.length; i++) { s = (s * 1664525 + 1013904223) >>> 0; ids[i] = s % cfg.vocabSize; }
  const batch = { ids, lengths: new Int32Array(B).fill(T), B, T };
  const dlogps = new Float32Array(B * T);
  for (let b = 0; b < B; b++) for (let t = 1; t < T; t++) dlogps[b * T + t] = -1 / (B * (T - 1));
  const opt = new AdamW(model, { lr: 1e-5, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 });
  const times: number[] = [];
  let loss = NaN;
  for (let step = 0; step < o.warmup + o.steps; step++) {
    const t0 = performance.now();
    model.zeroGrad();
    const stats = model.forward(batch, { train: true });
    model.backward(dlogps);
    model.clipGradNorm(1.0);
    opt.update();
    const dt = (performance.now() - t0) / 1000;
    loss = 0;
    for (let i = 0; i < dlogps.length; i++) loss += dlogps[i] * stats.logps[i];
    if (step >= o.warmup) times.push(dt);
  }
  const sps = median(times);
  const flops = flopsPerStep(cfg, model.numParameters, B, T);
  const out = {
    impl: "preftune",
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
  setNumThreads(o.threads);
  const cfg = parseConfig(JSON.parse(readFileSync(o.config, "utf8")), o.config);
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
    .option("--batch <n>", "rows per step", (v) => parseInt(v, 10), 4)
    .option("--seq <n>", "tokens per row", (v) => parseInt(v, 10), 512)
    .option("--steps <n>", "timed steps (the median is reported)", (v) => parseInt(v, 10), 3)
    .option("--warmup <n>", "untimed steps first", (v) => parseInt(v, 10), 1)
    .option("--threads <n>", "native threads (OpenMP and OpenBLAS)", (v) => parseInt(v, 10), 2)
    .option("--seed <n>", "weights and token ids seed", (v) => parseInt(v, 10), 0)
    .option("--generate", "time greedy decoding instead of training: decode tokens/s at each --batches size and time to first token")
    .option("--batches <list>", "with --generate: batch sizes of the decode measurement", "1,8")
    .option("--prompt-tokens <n>", "with --generate: prompt length of the decode measurement", (v) => parseInt(v, 10), 16)
    .option("--new-tokens <n>", "with --generate: new tokens per row", (v) => parseInt(v, 10), 128)
    .option("--ttft-prompt-tokens <n>", "with --generate: prompt of the time-to-first-token measurement (0 skips it)", (v) => parseInt(v, 10), 512)
    .option("--repeats <n>", "with --generate: timed runs per measurement (the median is reported)", (v) => parseInt(v, 10), 1)
    .action(async (o: BenchOptions & { generate?: boolean; batches: string; promptTokens: number; newTokens: number; ttftPromptTokens: number; repeats: number }) => {
      if (!o.generate) return console.log(JSON.stringify(runBench(o)));
      const batches = o.batches.split(",").map(Number);
      const whole = (v: number, min: number) => Number.isInteger(v) && v >= min;
      if (!batches.every((b) => whole(b, 1)) || !whole(o.promptTokens, 1) || !whole(o.newTokens, 2) || !whole(o.ttftPromptTokens, 0) || !whole(o.repeats, 1) || !whole(o.threads, 1))
        throw new Error("--batches, --prompt-tokens, --repeats and --threads take whole numbers >= 1, --new-tokens >= 2, --ttft-prompt-tokens >= 0");
      for (const line of await runGenerateBench({ ...o, batches })) console.log(JSON.stringify(line));
    });
}
