// Speed and memory of preftune's training step against the PyTorch peer (bench/peer_torch.py), measured
// one after the other in this process tree on the same model shape, batch and thread count.
//   node --import tsx bench/compare.ts [--steps 3] [--config bench/configs/smollm2-135m.json] [--only preftune|peer]
// Not a test and not part of the library: it needs a python3 with torch for the peer (PREFTUNE_PYTHON
// overrides the search) and prints a table plus one JSON line with speed_ratio and rss_ratio.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { findPython, MODEL_OPTIONS, STEP_OPTIONS, repo } from "./common.ts";

/** The JSON line both `preftune bench` and peer_torch.py print (extra keys are kept but not needed). */
interface BenchResult {
  impl: string;
  tokens_per_second: number;
  seconds_per_step: number;
  gflops: number;
  peak_rss_mb: number;
  threads: number;
  openblas_threads: number | string | null;
  [key: string]: unknown;
}

interface Run {
  label: string;
  result: BenchResult | null;
  error: string | null;
}

// fp32 FMA peak of the cores used: threads x clock x 2 FMA units x (2 flops x lanes); lanes = 16 with
// AVX-512, 8 with AVX2. Read from /proc/cpuinfo (the clock is the current one, so it is approximate).
function fmaPeakGflops(threads: number): number {
  let info = "";
  try { info = readFileSync("/proc/cpuinfo", "utf8"); } catch { return NaN; }
  const flags = /^flags\s*:(.*)$/m.exec(info)?.[1] ?? "";
  const mhz = Number(/^cpu MHz\s*:\s*([\d.]+)/m.exec(info)?.[1] ?? NaN);
  const lanes = / avx512f( |$)/.test(flags) ? 16 : / avx2( |$)/.test(flags) && / fma( |$)/.test(flags) ? 8 : 4;
  return (threads * mhz * 2 * 2 * lanes) / 1000;
}
const { values: opts } = parseArgs({
  options: {
    ...MODEL_OPTIONS,
    ...STEP_OPTIONS,
    batch: { type: "string", default: "4" },
    only: { type: "string" },
  },
});
for (const key of ["steps", "warmup", "batch", "seq", "threads"] as const) {
  if (!/^\d+$/.test(opts[key] ?? "")) {
    console.error(`bench/compare.ts: --${key} must be a whole number, got ${JSON.stringify(opts[key])}`);
    process.exit(2);
  }
}
if (opts.only !== undefined && opts.only !== "preftune" && opts.only !== "peer") {
  console.error(`bench/compare.ts: --only must be "preftune" or "peer", got ${JSON.stringify(opts.only)}`);
  process.exit(2);
}
const shape = ["--config", resolve(repo, opts.config!), "--batch", opts.batch!, "--seq", opts.seq!, "--steps", opts.steps!];

function parseResult(stdout: string): BenchResult | null {
  const lines = stdout.trim().split("\n").reverse();
  for (const line of lines) {
    if (!line.trim().startsWith("{")) continue;
    try {
      const obj = JSON.parse(line) as BenchResult;
      if (typeof obj.tokens_per_second === "number" && typeof obj.peak_rss_mb === "number") return obj;
    } catch {
      // not the result line; keep looking
    }
  }
  return null;
}

function run(label: string, cmd: string, args: string[], env: NodeJS.ProcessEnv): Run {
  console.error(`[compare] ${label}: ${cmd} ${args.join(" ")}`);
  const r = spawnSync(cmd, args, { cwd: repo, env, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], maxBuffer: 64 << 20 });
  if (r.error) return { label, result: null, error: `${cmd} could not start: ${r.error.message}` };
  const result = parseResult(r.stdout ?? "");
  if (r.status !== 0 || result === null) {
    const tail = (r.stdout ?? "").trim().split("\n").slice(-3).join(" | ");
    return { label, result: null, error: `exit ${r.status}${result === null ? ", no result JSON line" : ""}: ${tail}` };
  }
  console.error(`[compare] ${label}: ${JSON.stringify(result)}`);  // kept in the log even if a later run fails
  return { label, result, error: null };
}

const runs: Run[] = [];
let preftune: Run | null = null;
if (opts.only !== "peer") {
  preftune = run("preftune", process.execPath, ["bin/preftune.js", "bench", ...shape, "--threads", opts.threads!], process.env);
  runs.push(preftune);
}

const peers: Run[] = [];
if (opts.only !== "preftune") {
  const { python, why } = findPython(["torch"]);
  if (python === null) {
    peers.push({ label: "pytorch", result: null, error: `${why} (Debian: python3-torch)` });
  } else {
    const peerArgs = ["bench/peer_torch.py", ...shape, "--warmup", opts.warmup!, "--threads", opts.threads!];
    // OpenBLAS's own pthreads compete with torch's OpenMP threads, so the peer runs both ways and keeps its best.
    const unset = { ...process.env };
    delete unset.OPENBLAS_NUM_THREADS;
    peers.push(run(`pytorch (torch threads ${opts.threads}, OPENBLAS_NUM_THREADS unset)`, python, peerArgs, unset));
    peers.push(run(`pytorch (torch threads ${opts.threads}, OPENBLAS_NUM_THREADS=1)`, python, peerArgs,
      { ...process.env, OPENBLAS_NUM_THREADS: "1" }));
  }
  runs.push(...peers);
}

const FMA_PEAK_GFLOPS = fmaPeakGflops(Number(opts.threads));
const fmt = (x: number, digits: number) => x.toFixed(digits);
const header = ["run", "tokens/s", "s/step", "GFLOP/s", `% of ${FMA_PEAK_GFLOPS.toFixed(0)} peak`, "peak RSS MB"];
const rows = runs.map((r) =>
  r.result === null
    ? [r.label, "failed", "", "", "", ""]
    : [r.label, fmt(r.result.tokens_per_second, 1), fmt(r.result.seconds_per_step, 2), fmt(r.result.gflops, 1),
      fmt((100 * r.result.gflops) / FMA_PEAK_GFLOPS, 1), fmt(r.result.peak_rss_mb, 0)],
);
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
console.log(`config ${opts.config}, batch ${opts.batch}, seq ${opts.seq}, ${opts.steps} timed steps, ${opts.threads} threads`);
console.log(line(header));
for (const row of rows) console.log(line(row));
for (const r of runs) if (r.error !== null) console.log(`! ${r.label}: ${r.error}`);

const okPeers = peers.filter((p): p is Run & { result: BenchResult } => p.result !== null);
const best = okPeers.reduce<(Run & { result: BenchResult }) | null>(
  (a, p) => (a === null || p.result.tokens_per_second > a.result.tokens_per_second ? p : a), null);
const mine = preftune?.result ?? null;
const share = (r: BenchResult | null) => (r === null ? null : r.gflops / FMA_PEAK_GFLOPS);
console.log(JSON.stringify({
  config: opts.config,
  batch: Number(opts.batch),
  seq: Number(opts.seq),
  steps: Number(opts.steps),
  threads: Number(opts.threads),
  speed_ratio: mine && best ? mine.tokens_per_second / best.result.tokens_per_second : null,
  rss_ratio: mine && best ? mine.peak_rss_mb / best.result.peak_rss_mb : null,
  fma_peak_gflops: FMA_PEAK_GFLOPS,
  preftune_peak_share: share(mine),
  peer_peak_share: share(best?.result ?? null),
  peer_best: best?.label ?? null,
  preftune: mine,
  peers: peers.map((p) => ({ label: p.label, result: p.result, error: p.error })),
}));
const failed = runs.some((r) => r.result === null);
process.exit(failed ? 1 : 0);
