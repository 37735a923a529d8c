// `preftune bench`: full fine-tuning steps of a randomly initialised model given by a config.json, on random
// token ids, timed; prints one JSON line (tokens_per_second, seconds_per_step median, gflops, peak_rss_mb).
// bench/compare.ts runs it beside the PyTorch peer (bench/peer_torch.py) and prints the ratios.
// Not a training run: no data, no checkpoints; the loss is the mean next-token NLL over every token.
import { readFileSync } from "node:fs";
import { resourceUsage } from "node:process";
import type { Command } from "commander";
import { AdamW, NativeModel, getNumThreads, setNumThreads } from "../core/native.ts";
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
    .action((o: BenchOptions) => {
      console.log(JSON.stringify(runBench(o)));
    });
}
