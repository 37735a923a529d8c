// Data-parallel scaling on one machine: the all-reduce of a SmolLM2-135M-sized gradient (134.5 M floats) between
// 2 local ranks, and a full fine-tuning step at 1 rank and at 2 ranks on the same total cores (the global batch
// split in two, the gradient summed over the ranks in place as training does: during the backward, and again
// after it with PREFTUNE_MPI_OVERLAP=0), with the share of the step spent waiting for the sum after the backward.
// Prints one JSON line per measurement and a summary with the projection for several machines.
// Run as: node --import tsx bench/data_parallel.ts [--steps 3] [--batch 4 --seq 512 --threads 2] [--reps 5]
// (it starts its own ranks through mpirun; as root it passes --allow-run-as-root). Not a test: nothing is checked.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { AdamW, NativeModel, setNumThreads } from "../src/core/native.ts";
import { randomInit } from "../src/models/params.ts";
import { readBenchConfig } from "../src/cli/bench.ts";
import { launchEnv, processGroup } from "../src/parallel/group.ts";
import { DataParallel } from "../src/parallel/shard.ts";

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : dflt; };
const config = opt("config", "bench/configs/smollm2-135m.json");
const steps = Number(opt("steps", "3")), reps = Number(opt("reps", "5"));
const batch = Number(opt("batch", "4")), seq = Number(opt("seq", "512")), threads = Number(opt("threads", "2"));
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };

/** In a rank: `allreduce` times the in-place sum of a 134.5 M-float buffer; `step` times full training steps. */
function worker(mode: string): void {
  const g = processGroup();
  if (mode === "allreduce") {
    const n = Number(opt("floats", "134515008"));   // SmolLM2-135M's parameter count
    const buf = new Float32Array(n).fill(1);
    const times: number[] = [];
    for (let r = 0; r < reps + 1; r++) {
      g.barrier();
      const t0 = performance.now();
      g.allReduceSum(buf);
      const dt = (performance.now() - t0) / 1000;
      if (r > 0) times.push(dt);
    }
    if (g.isMainProcess) console.log(JSON.stringify({ mode, ranks: g.worldSize, floats: n, bytes: 4 * n, seconds: median(times), all: times, gbytes_per_second_bus: (2 * (g.worldSize - 1) / g.worldSize) * 4 * n / median(times) / 1e9 }));
    return;
  }
  // step: per-rank batch = batch / world, threads = threads / world
  const cfg = readBenchConfig(config);
  const B = batch / g.worldSize, T = seq;
  if (!Number.isInteger(B)) throw new Error(`--batch ${batch} does not split into ${g.worldSize} ranks`);
  setNumThreads(Math.max(1, Math.floor(threads / g.worldSize)));
  const model = new NativeModel(cfg);
  randomInit(model.table, model.params, 1);
  const ids = new Int32Array(B * T);
  let s = (g.rank + 1) * 2654435761;
  for (let i = 0; i < ids.length; i++) { s = (s * 1664525 + 1013904223) >>> 0; ids[i] = s % cfg.vocabSize; }
  const tb = { ids, lengths: new Int32Array(B).fill(T), B, T };
  const dlogps = new Float32Array(B * T);
  for (let b = 0; b < B; b++) for (let t = 1; t < T; t++) dlogps[b * T + t] = -1 / (batch * (T - 1));
  const adam = new AdamW(model, { lr: 1e-5, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 });
  const dp = new DataParallel(g);
  const total: number[] = [], reduce: number[] = [];
  let overlapped = 0;
  for (let k = 0; k < steps + 1; k++) {
    g.barrier();
    const t0 = performance.now();
    model.zeroGrad();
    model.forward(tb, { train: true });
    dp.startGradientSum(model, Array.from({ length: batch }, (_, i) => i));
    model.backward(dlogps);
    const t1 = performance.now();
    dp.reduceGradients(model);   // what is left of the sum after the backward
    overlapped = dp.layersOverlapped;
    const t2 = performance.now();
    model.clipGradNorm(1);
    adam.update();
    const t3 = performance.now();
    if (k > 0) { total.push((t3 - t0) / 1000); reduce.push((t2 - t1) / 1000); }
  }
  if (g.isMainProcess) console.log(JSON.stringify({ mode, ranks: g.worldSize, threads_per_rank: Math.max(1, Math.floor(threads / g.worldSize)), batch_per_rank: B, seq: T, overlap_layers: overlapped, seconds_per_step: median(total), allreduce_seconds: median(reduce), allreduce_share: median(reduce) / median(total), all: total }));
  model.free();
}

function mpirun(np: number, mode: string, env: Record<string, string> = {}): Record<string, number> {
  const root = process.getuid?.() === 0 ? ["--allow-run-as-root"] : [];
  const self = fileURLToPath(import.meta.url);
  const r = spawnSync("mpirun", [...root, "-np", String(np), "--oversubscribe", "--bind-to", "none", process.execPath, "--import", "tsx", self, "--worker", mode, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ...env } });
  if (r.error) throw new Error(`mpirun: ${r.error.message} (install openmpi-bin)`);
  if (r.status !== 0) throw new Error(`mpirun -np ${np} ${mode} exited with ${r.status}`);
  const line = r.stdout.trim().split("\n").pop()!;
  console.log(line);
  return JSON.parse(line);
}

if (args.includes("--worker") || launchEnv().worldSize > 1) {
  worker(opt("worker", "step"));
} else {
  const ar = mpirun(2, "allreduce");
  const one = mpirun(1, "step"), two = mpirun(2, "step"), twoAfter = mpirun(2, "step", { PREFTUNE_MPI_OVERLAP: "0" });
  const bytes = ar.bytes;
  // ring all-reduce: each rank sends and receives 2(N−1)/N × bytes; t_step(N) = t_compute + 2(N−1)/N · bytes / bandwidth
  const compute = one.seconds_per_step - one.allreduce_seconds;
  const proj: Record<string, Record<string, number>> = {};
  for (const gbit of [1, 10, 100]) {
    proj[`${gbit}Gbit/s`] = {};
    for (const n of [2, 4, 8, 16]) {
      const comm = (2 * (n - 1) / n) * bytes / (gbit * 1e9 / 8);
      proj[`${gbit}Gbit/s`][`N=${n}`] = +(compute + comm).toFixed(3);
    }
  }
  console.log(JSON.stringify({
    summary: true, allreduce_2_local_ranks_s: ar.seconds, step_1_rank_s: one.seconds_per_step, step_2_ranks_s: two.seconds_per_step,
    allreduce_share_2_ranks: two.allreduce_share, speedup_2_ranks: one.seconds_per_step / two.seconds_per_step,
    step_2_ranks_sum_after_backward_s: twoAfter.seconds_per_step, allreduce_share_2_ranks_sum_after_backward: twoAfter.allreduce_share,
    projected_step_s_per_rank_batch_fixed: proj, compute_s: compute,
  }));
}
