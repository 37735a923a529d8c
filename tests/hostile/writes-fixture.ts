// Shared by tests/hostile/writes-*.test.ts and resume-*.test.ts: a tiny model with the real Llama-2 tokenizer, a
// small preference data set and a DPO config (8 steps, a checkpoint every 4), and the real CLI in a child
// process with a time limit. Not a test file itself.
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildParamTable, loadWeightsInto, openModelFolder, paramBufferSize } from "../../src/models/checkpoint.ts";
import { makeTinyModel } from "../helpers/tiny-model.ts";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));

export interface Fixture { dir: string; model: string; data: string; cfg: string }

/** The model, data and config in `dir`; the config's output_dir is given on each command line. */
export function makeFixture(dir: string): Fixture {
  const model = makeTinyModel(join(dir, "model"), { tokenizer: "llama2", hidden: 16, intermediate: 32, seed: 5 });
  const words = ["red", "green", "blue", "cat", "dog", "sun", "rain", "tree", "river", "stone"];
  const rows = Array.from({ length: 16 }, (_, i) => JSON.stringify({
    prompt: `Name a ${words[i % 10]}.`, chosen: ` A ${words[(3 * i + 1) % 10]}.`, rejected: ` No ${words[(i + 2) % 10]}.`,
  }));
  const data = join(dir, "data");
  mkdirSync(data);
  writeFileSync(join(data, "train.jsonl"), rows.join("\n") + "\n");
  const cfg = join(dir, "dpo.yaml");
  writeFileSync(cfg, [
    "method: dpo", `model_name_or_path: ${model}`, `dataset: ${data}`, `dataset_cache_dir: ${join(dir, "cache")}`,
    "max_length: 32", "per_device_train_batch_size: 2", "logging_steps: 1", "max_steps: 8", "save_steps: 4", "threads: 1", "",
  ].join("\n"));
  return { dir, model, data, cfg };
}

export interface CliRun { code: number | null; signal: NodeJS.Signals | null; out: string; ms: number; pid: number }

/** `preftune ARGS` in a child process; output() is stdout + stderr so far; killed with SIGKILL after timeoutMs. */
export function startCli(args: string[], o: { env?: Record<string, string>; timeoutMs?: number } = {}): { child: ChildProcess; output: () => string; done: Promise<CliRun> } {
  const t0 = Date.now();
  const child = spawn(process.execPath, [join(ROOT, "bin", "preftune.js"), ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...o.env } });
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  const timer = setTimeout(() => { out += `\n[test: killed after ${o.timeoutMs ?? 30_000} ms]`; child.kill("SIGKILL"); }, o.timeoutMs ?? 30_000);
  const done = new Promise<CliRun>((res) => child.on("close", (code, signal) => { clearTimeout(timer); res({ code, signal, out, ms: Date.now() - t0, pid: child.pid! }); }));
  return { child, done, output: () => out };
}

export const runCli = (args: string[], o: { env?: Record<string, string>; timeoutMs?: number } = {}) => startCli(args, o).done;

export async function waitFor(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export const sha = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");

/** Names in dir that a write protocol leaves behind when it is cut short (hidden temporaries, a lock). */
export const leftovers = (dir: string) => readdirSync(dir).filter((n) => n.startsWith("."));

/**
 * Loads the model of a folder the way every command does (config.json against the weight headers, then every
 * tensor read); throws when it is not a complete, loadable model. Returns the weights.
 */
export function loadModelWeights(dir: string): Float32Array {
  const { config } = openModelFolder(dir);
  const table = buildParamTable(config);
  const params = new Float32Array(paramBufferSize(config));
  loadWeightsInto(dir, table, params);
  return params;
}

/** Runs `jobs` with at most `n` at a time. */
export async function pool<T>(n: number, jobs: (() => Promise<T>)[]): Promise<T[]> {
  const out: T[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, jobs.length) }, async () => {
    while (next < jobs.length) { const i = next++; out[i] = await jobs[i](); }
  }));
  return out;
}
