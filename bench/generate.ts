// Decoding speed of preftune (`preftune bench --generate`) against transformers' generate() on PyTorch
// (bench/peer_generate.py), measured one after the other in this process tree on the same model shape, batch
// sizes and thread count, plus the machine's memory read bandwidth (bench/membw.py), which bounds batch-1
// decoding: every step reads every weight once.
//   node --import tsx bench/generate.ts [--config bench/configs/smollm2-135m.json] [--threads 2] [--repeats 3]
// Not a test and not part of the library: the peer needs a python3 with torch 2.x and transformers 5.x
// (PREFTUNE_PYTHON chooses it). Prints a table and one JSON line with the ratios.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { findPython, MODEL_OPTIONS, repo } from "./common.ts";

type Line = Record<string, unknown> & { impl: string; measure: string; dtype: string; batch: number };

const { values: o } = parseArgs({
  options: {
    ...MODEL_OPTIONS,
    repeats: { type: "string", default: "3" },
    "new-tokens": { type: "string", default: "128" },
    dtypes: { type: "string", default: "float32,bfloat16" },
  },
});
const common = ["--config", resolve(repo, o.config!), "--threads", o.threads!, "--repeats", o.repeats!, "--new-tokens", o["new-tokens"]!, "--batches", "1,8", "--ttft-prompt-tokens", "512"];

function jsonLines(label: string, cmd: string, args: string[]): Line[] {
  console.error(`[generate] ${label}: ${cmd} ${args.join(" ")}`);
  const r = spawnSync(cmd, args, { cwd: repo, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], maxBuffer: 64 << 20 });
  const lines = (r.stdout ?? "").split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Line);
  if (r.status !== 0 || lines.length === 0) console.error(`[generate] ${label} failed (exit ${r.status}${r.error ? `, ${r.error.message}` : ""})`);
  for (const l of lines) console.error(`[generate] ${label}: ${JSON.stringify(l)}`);
  return lines;
}


const mine = jsonLines("preftune", process.execPath, ["bin/preftune.js", "bench", "--generate", ...common]);
const { python, why } = findPython(["torch", "transformers"]);
const peer = python ? jsonLines("transformers", python, ["bench/peer_generate.py", ...common, "--dtype", o.dtypes!.includes(",") ? "both" : o.dtypes!]) : [];
if (!python) console.error(`[generate] ${why}; peer skipped`);
const bw = python ? jsonLines("membw", python, ["bench/membw.py", "--threads", o.threads!]) : [];
const readGBs = Number(bw[0]?.gb_per_s ?? NaN);

// fp32 weight bytes one decoding step reads: every parameter (a tied embedding is read once, as the head).
const cfg = JSON.parse(readFileSync(resolve(repo, o.config!), "utf8"));
const params = Number(mine[0]?.params ?? NaN);
const weightBytes = params * 4;
const boundTokS = (readGBs * 1e9) / weightBytes;

const get = (ls: Line[], measure: string, batch: number, dtype = "float32") => ls.find((l) => l.measure === measure && l.batch === batch && l.dtype === dtype);
const num = (x: unknown) => (typeof x === "number" ? x : NaN);
const rows: string[][] = [["measure", "preftune fp32", "peer fp32", "peer bf16", "ratio vs fp32 peer"]];
const result: Record<string, unknown> = { config: o.config, threads: Number(o.threads), read_gb_per_s: readGBs, weight_bytes: weightBytes, batch1_bound_tokens_per_second: boundTokS };
for (const b of [1, 8]) {
  const m = num(get(mine, "decode", b)?.decode_tokens_per_second), p = num(get(peer, "decode", b)?.decode_tokens_per_second);
  const pb = num(get(peer, "decode", b, "bfloat16")?.decode_tokens_per_second);
  rows.push([`decode tok/s, batch ${b}`, m.toFixed(1), p.toFixed(1), pb.toFixed(1), (m / p).toFixed(2)]);
  result[`decode_batch${b}`] = { preftune: m, peer_fp32: p, peer_bf16: pb, ratio_fp32: m / p };
}
const tm = num(get(mine, "ttft", 1)?.ttft_ms), tp = num(get(peer, "ttft", 1)?.ttft_ms), tpb = num(get(peer, "ttft", 1, "bfloat16")?.ttft_ms);
rows.push(["time to first token, 512-token prompt (ms)", tm.toFixed(0), tp.toFixed(0), tpb.toFixed(0), (tp / tm).toFixed(2) + "x faster"]);
result.ttft_512 = { preftune_ms: tm, peer_fp32_ms: tp, peer_bf16_ms: tpb };
const b1 = num(get(mine, "decode", 1)?.decode_tokens_per_second);
result.batch1_bandwidth_share = b1 / boundTokS;

const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
console.log(`${cfg.architectures?.[0] ?? "model"} shape from ${o.config}, ${o.threads} threads, ${o["new-tokens"]} new tokens per row, BLAS ${mine[0]?.blas ?? "?"}`);
for (const r of rows) console.log(r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join("  "));
console.log(`memory read bandwidth ${readGBs.toFixed(1)} GB/s; fp32 weights ${(weightBytes / 1e6).toFixed(0)} MB per step -> batch-1 bound ${boundTokS.toFixed(1)} tok/s; preftune reaches ${(100 * b1 / boundTokS).toFixed(0)}%`);
console.log(JSON.stringify(result));
process.exit(mine.length && peer.length ? 0 : 1);
