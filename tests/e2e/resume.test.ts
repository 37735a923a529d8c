// The real CLI in child processes: `preftune train` killed with SIGKILL after it wrote a checkpoint, then
// resumed with --resume_from_checkpoint true, must log exactly what an uninterrupted run logs and end with
// the same weights; a SIGINT during the resumed run must save a checkpoint and exit with 130; score writes one line per pair.
// Tiny random model with the real Llama-2 tokenizer, a small standard-format data set written here.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { score } from "../../src/cli/train.ts";
import { latestCheckpoint } from "../../src/train/checkpoint.ts";
import { makeTinyModel, scratch, writeWordPairs } from "../helpers/tiny-model.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const TIMING = /runtime|per_second/;
let tmp: ReturnType<typeof scratch>;
let cfgFile: string;

before(() => {
  tmp = scratch();
  makeTinyModel(join(tmp.dir, "model"), { tokenizer: "llama2", hidden: 16, intermediate: 32, seed: 5 });
  writeWordPairs(join(tmp.dir, "data"), 24, 6);
  cfgFile = join(tmp.dir, "dpo.yaml");
  writeFileSync(cfgFile, [
    "method: dpo", `model_name_or_path: ${join(tmp.dir, "model")}`, `dataset: ${join(tmp.dir, "data")}`,
    `dataset_cache_dir: ${join(tmp.dir, "cache")}`, "max_length: 64", "per_device_train_batch_size: 2",
    "learning_rate: 1.0e-3", "lr_scheduler_type: cosine", "warmup_ratio: 0.1", "logging_steps: 1", "max_steps: 60",
    "save_steps: 4", "eval_strategy: steps", "eval_steps: 24", "threads: 1", "bf16: true", "",
  ].join("\n"));
});
after(() => tmp.cleanup());

function start(args: string[]): { child: ChildProcess; output: () => string; done: Promise<{ code: number | null; signal: string | null; out: string }> } {
  const child = spawn(process.execPath, [join(ROOT, "bin", "preftune.js"), ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  const done = new Promise<{ code: number | null; signal: string | null; out: string }>((res) => child.on("close", (code, signal) => res({ code, signal, out })));
  return { child, done, output: () => out };
}

async function waitFor(cond: () => boolean, what: string, ms = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const readLog = (dir: string) => readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n")
  .map((l) => Object.fromEntries(Object.entries(JSON.parse(l)).filter(([k]) => !TIMING.test(k))));

test("SIGKILL mid-run, resume, SIGINT (exit 130), resume again: the log and weights equal the uninterrupted run", async () => {
  const full = join(tmp.dir, "full"), broken = join(tmp.dir, "broken");
  const a = await start(["train", cfgFile, "--output_dir", full]).done;
  assert.equal(a.code, 0, a.out);
  for (const f of ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md", "trainer_state.json"]) assert.ok(existsSync(join(full, f)), f);

  // 1. SIGKILL once checkpoint-4 exists: whatever was being written is left half done
  const k = start(["train", cfgFile, "--output_dir", broken]);
  await waitFor(() => existsSync(join(broken, "checkpoint-4", "trainer_state.json")), "checkpoint-4");
  k.child.kill("SIGKILL");
  assert.equal((await k.done).signal, "SIGKILL");
  assert.ok(!existsSync(join(broken, "README.md")), "the run finished before it could be killed; the test needs a longer run");
  const killedAt = latestCheckpoint(broken)!;
  assert.ok(killedAt, "no complete checkpoint after the kill");

  // 2. resume, then SIGINT a few steps later: a checkpoint at that step, exit code 130
  const stepOf = (dir: string) => Number(/checkpoint-(\d+)$/.exec(dir)![1]);
  const logged = () => readLog(broken).filter((e) => "loss" in e).map((e) => e.step as number);
  const i = start(["train", cfgFile, "--output_dir", broken, "--resume_from_checkpoint", "true", "--save_steps", "1000"]);
  // (metrics.jsonl still holds the killed run's lines until the resumed run rewrites it from the checkpoint)
  await waitFor(() => /resumed from/.test(i.output()) && Math.max(0, ...logged()) >= stepOf(killedAt) + 3, "steps after the resume");
  i.child.kill("SIGINT");
  const ir = await i.done;
  assert.equal(ir.code, 130, ir.out);
  assert.match(ir.out, new RegExp(`resumed from .*checkpoint-${stepOf(killedAt)} at step ${stepOf(killedAt)}`));
  const m = /stopped by SIGINT after step (\d+); saved .*checkpoint-(\d+)/.exec(ir.out);
  assert.ok(m && m[1] === m[2], ir.out);
  assert.equal(latestCheckpoint(broken), join(broken, `checkpoint-${m![1]}`));
  assert.ok(!existsSync(join(broken, "README.md")));

  // 3. resume to the end
  const r = await start(["train", cfgFile, "--output_dir", broken, "--resume_from_checkpoint", "true"]).done;
  assert.equal(r.code, 0, r.out);
  assert.deepEqual(readLog(broken), readLog(full));
  assert.deepEqual(readFileSync(join(broken, "model.safetensors")), readFileSync(join(full, "model.safetensors")));
  assert.ok(readdirSync(broken).every((n) => !n.includes(".tmp-")), "temporaries left behind");
});

test("score: summed completion log-probs per pair and the preference accuracy", async () => {
  const out = join(tmp.dir, "scores.jsonl");
  const s = await score({ model: join(tmp.dir, "full"), dataset: join(tmp.dir, "data"), output: out, maxLength: 64, threads: 1, quiet: true });
  const lines = readFileSync(out, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(lines.length, 6);   // the folder's test split
  assert.equal(s.pairs, 6);
  let wins = 0;
  for (const l of lines) {
    assert.ok(l.chosen_logps < 0 && l.rejected_logps < 0 && l.chosen_tokens > 0 && l.rejected_tokens > 0, JSON.stringify(l));
    if (l.chosen_logps > l.rejected_logps) wins++;
  }
  assert.equal(s.accuracy, wins / 6);
  // the trained model prefers the chosen style on held-out pairs (DPO ran 24 steps on the same templates)
  assert.ok(s.accuracy > 0.5, `accuracy ${s.accuracy}`);
});
