// preftune against TRL's own ORPOTrainer (bench/peer_trl.py; LoRA through PEFT), full fine-tuning and LoRA, each
// side in several configurations (fp32 or bf16, gradient checkpointing, a bf16 frozen base), one after the other
// in this process tree on the same model shape, tokens per step, optimizer and threads. Per variant (full, lora)
// each side's best configuration by tokens/s counts, and the ratios are printed. Also measures the machine's
// fp32 and bf16 GEMM throughput on the step's own GEMM shapes (bench/gemm_probe.cpp, built with g++ here) and
// reports each run's GFLOP/s as a share of both.
//   node --import tsx bench/compare_trl.ts [--steps 3] [--warmup 1] [--pairs 2 --seq 512 --threads 2]
//        [--variants full,lora] [--only preftune|trl] [--no-probe]
// Needs a python with torch, transformers, trl and peft for the peer (PREFTUNE_PYTHON chooses it, else
// the first python3 that has them; bench/common.ts). Not a test; prints a table per variant and one JSON line.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { findPython, MODEL_OPTIONS, STEP_OPTIONS, repo } from "./common.ts";

interface Result {
  tokens_per_second: number;
  seconds_per_step: number;
  gflops: number;
  peak_rss_mb: number;
  [key: string]: unknown;
}
interface Run { side: "preftune" | "trl"; variant: string; label: string; result: Result | null; error: string | null }
interface Probe { sgemm_gflops: number; bf16_gflops: number; bf16_cvt_gflops: number; bf16_impl: string }

const { values: opts } = parseArgs({
  options: {
    ...MODEL_OPTIONS,
    ...STEP_OPTIONS,
    pairs: { type: "string", default: "2" },
    "lora-r": { type: "string", default: "16" },
    variants: { type: "string", default: "full,lora" },
    only: { type: "string" },
    "no-probe": { type: "boolean", default: false },
  },
});
for (const key of ["steps", "warmup", "pairs", "seq", "threads", "lora-r"] as const) {
  if (!/^\d+$/.test(opts[key] ?? "")) {
    console.error(`bench/compare_trl.ts: --${key} must be a whole number, got ${JSON.stringify(opts[key])}`);
    process.exit(2);
  }
}
const variants = opts.variants!.split(",");
if (!variants.every((v) => v === "full" || v === "lora") || (opts.only && opts.only !== "preftune" && opts.only !== "trl")) {
  console.error("bench/compare_trl.ts: --variants takes full and/or lora; --only preftune or trl");
  process.exit(2);
}
const batch = String(2 * Number(opts.pairs));
const common = ["--config", resolve(repo, opts.config!), "--seq", opts.seq!, "--steps", opts.steps!, "--warmup", opts.warmup!, "--threads", opts.threads!];

function lastJson(stdout: string): Result | null {
  for (const line of stdout.trim().split("\n").reverse()) {
    if (!line.trim().startsWith("{")) continue;
    try {
      const o = JSON.parse(line) as Result;
      if (typeof o.tokens_per_second === "number" && typeof o.peak_rss_mb === "number") return o;
    } catch { /* not the result line */ }
  }
  return null;
}

function run(side: Run["side"], variant: string, label: string, cmd: string, args: string[]): Run {
  console.error(`[compare_trl] ${label}: ${cmd} ${args.join(" ")}`);
  const r = spawnSync(cmd, args, { cwd: repo, env: process.env, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], maxBuffer: 64 << 20 });
  if (r.error) return { side, variant, label, result: null, error: `${cmd} could not start: ${r.error.message}` };
  const result = lastJson(r.stdout ?? "");
  if (r.status !== 0 || result === null) {
    return { side, variant, label, result: null, error: `exit ${r.status}: ${(r.stdout ?? "").trim().split("\n").slice(-2).join(" | ")}` };
  }
  console.error(`[compare_trl] ${label}: ${JSON.stringify(result)}`);
  return { side, variant, label, result, error: null };
}

/** The machine's GEMM throughput on the step's shapes: builds and runs bench/gemm_probe.cpp. */
function probe(): Probe | null {
  const dir = mkdtempSync(join(tmpdir(), "gemm_probe_"));
  try {
    const exe = join(dir, "gemm_probe");
    const blas = "/usr/lib/x86_64-linux-gnu/openblas-openmp";
    const b = spawnSync("g++", ["-O3", "-march=native", "-fopenmp", "-std=c++17", join(repo, "bench/gemm_probe.cpp"), "-o", exe,
      `-L${blas}`, `-Wl,-rpath,${blas}`, "-lopenblas", "-ldnnl"], { stdio: ["ignore", "ignore", "inherit"] });
    if (b.status !== 0) { console.error("[compare_trl] gemm probe did not build (needs g++, libopenblas-openmp-dev, libdnnl-dev)"); return null; }
    const env = { ...process.env, OMP_NUM_THREADS: opts.threads!, OPENBLAS_CORETYPE: process.env.OPENBLAS_CORETYPE ?? coreType() };
    const r = spawnSync(exe, ["3"], { env, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
    console.error(r.stdout);
    const line = (r.stdout ?? "").trim().split("\n").reverse().find((l) => l.startsWith("{"));
    return line ? (JSON.parse(line) as Probe) : null;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
/** The OpenBLAS kernels the addon picks (src/core/native.ts sets SkylakeX on AVX-512 Intel CPUs). */
function coreType(): string {
  const r = spawnSync(process.execPath, ["--import", "tsx", "-e", "import('./src/core/native.ts').then((n) => console.log(n.blasCore()))"],
    { cwd: repo, encoding: "utf8" });
  return (r.stdout ?? "").trim();
}

const { python: found, why } = opts.only === "preftune" ? { python: null, why: "" } : findPython(["torch", "transformers", "trl", "peft"]);
if (opts.only !== "preftune" && found === null) console.error(`[compare_trl] ${why}; the TRL peer runs will fail`);
const python = found ?? "python3";
const runs: Run[] = [];
const gemm = opts["no-probe"] ? null : probe();
for (const variant of variants) {
  const lora = variant === "lora" ? ["--lora", "--lora-r", opts["lora-r"]!] : [];
  if (opts.only !== "trl") {
    const ours = ["bin/preftune.js", "bench", ...common, "--batch", batch, ...lora];
    // Under LoRA `bf16: true` comes with `torch_dtype: bfloat16`: the frozen base held in bf16.
    const base = variant === "lora" ? ["--base-bf16"] : [];
    const baseNote = variant === "lora" ? " + bf16 base" : "";
    runs.push(run("preftune", variant, `preftune ${variant} fp32`, process.execPath, [...ours, "--compute", "fp32"]));
    runs.push(run("preftune", variant, `preftune ${variant} bf16: true${baseNote} (compute chosen by the CPU check)`, process.execPath, [...ours, "--bf16", ...base]));
    runs.push(run("preftune", variant, `preftune ${variant} bf16 compute forced${baseNote}`, process.execPath, [...ours, "--compute", "bf16", ...base]));
  }
  if (opts.only !== "preftune") {
    const peer = ["bench/peer_trl.py", ...common, "--pairs", opts.pairs!, ...lora];
    const configs: [string, string[]][] = [
      ["fp32", ["--precision", "fp32"]],
      ["bf16 autocast", ["--precision", "bf16"]],
      ["bf16 autocast + gradient checkpointing (ORPOConfig defaults)", ["--precision", "bf16", "--gradient-checkpointing"]],
    ];
    if (variant === "lora") configs.push(["bf16 base + bf16 autocast", ["--precision", "bf16", "--base-dtype", "bf16"]]);
    for (const [name, extra] of configs) runs.push(run("trl", variant, `TRL ${variant} ${name}`, python, [...peer, ...extra]));
  }
}

const fmt = (x: number, d: number) => x.toFixed(d);
const pct = (x: number, of: number | undefined) => (of ? `${fmt((100 * x) / of, 0)}%` : "");
console.log(`config ${opts.config}, ${batch} x ${opts.seq} tokens per step, ${opts.steps} timed steps (median), ${opts.threads} threads`);
if (gemm) console.log(`GEMM throughput on the step's shapes: fp32 sgemm ${fmt(gemm.sgemm_gflops, 1)} GFLOP/s, bf16 ${fmt(gemm.bf16_gflops, 1)} (${gemm.bf16_impl}), bf16 incl. conversion ${fmt(gemm.bf16_cvt_gflops, 1)}`);
const header = ["run", "tokens/s", "s/step", "GFLOP/s", "of fp32 GEMM", "of bf16 GEMM", "peak RSS MB"];
const summary: Record<string, unknown> = {};
for (const variant of variants) {
  const vr = runs.filter((r) => r.variant === variant);
  const rows = vr.map((r) => r.result === null ? [r.label, "failed", "", "", "", "", ""] : [r.label, fmt(r.result.tokens_per_second, 1), fmt(r.result.seconds_per_step, 2),
    fmt(r.result.gflops, 1), pct(r.result.gflops, gemm?.sgemm_gflops), pct(r.result.gflops, gemm?.bf16_gflops), fmt(r.result.peak_rss_mb, 0)]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  console.log(`\n${variant === "full" ? "full fine-tuning" : `LoRA r=${opts["lora-r"]}, all seven projections`}`);
  console.log(line(header));
  for (const row of rows) console.log(line(row));
  for (const r of vr) if (r.error) console.log(`! ${r.label}: ${r.error}`);
  const best = (side: Run["side"]) => vr.filter((r) => r.side === side && r.result).reduce<Run | null>((a, r) => (!a || r.result!.tokens_per_second > a.result!.tokens_per_second ? r : a), null);
  const ours = vr.find((r) => r.side === "preftune" && r.label.includes("bf16: true"))?.result ?? null;
  const trl = best("trl");
  const speed = ours && trl ? ours.tokens_per_second / trl.result!.tokens_per_second : null;
  const rss = ours && trl ? ours.peak_rss_mb / trl.result!.peak_rss_mb : null;
  if (speed !== null) console.log(`preftune (bf16: true) / TRL best (${trl!.label}): speed ${fmt(speed, 2)}x, peak RSS ${fmt(rss!, 2)}x`);
  summary[variant] = { speed_ratio: speed, rss_ratio: rss, trl_best: trl?.label ?? null, preftune_best: best("preftune")?.label ?? null };
}
console.log(JSON.stringify({ config: opts.config, batch: Number(batch), seq: Number(opts.seq), threads: Number(opts.threads), gemm, summary, runs }));
process.exit(runs.some((r) => r.result === null) ? 1 : 0);
