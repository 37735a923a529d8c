// The packed package, installed offline into an empty folder outside the repo: its contents (dist/ with .d.ts,
// no tests, fixtures, bench or non-commercial data), the ORPO example trained from there on the tiny model
// without any TypeScript loader, `preftune --help` start-up, and a strict type-check of code using the API in
// which a misspelled config key and a wrong-typed value must not compile (with skipLibCheck, as applications
// set it: a dependency's own .d.ts does not check under NodeNext). Dependencies come from this checkout's
// node_modules (copied in, so npm resolves them offline); the native addon is this checkout's build (the
// install script's node-gyp build is the same compile; it is skipped here for time).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { makeTinyModel, scratch } from "../helpers/tiny-model.ts";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
let tmp: ReturnType<typeof scratch>;
let app: string, pkg: string, tarball: string, modelDir: string;
const npm = process.platform === "win32" ? "npm.cmd" : "npm";

before(() => {
  tmp = scratch("preftune-pack-");
  const out = execFileSync(npm, ["pack", "--silent", "--pack-destination", tmp.dir], { cwd: repo, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  tarball = join(tmp.dir, out.trim().split("\n").pop()!);
  app = join(tmp.dir, "app");
  mkdirSync(join(app, "node_modules"), { recursive: true });
  // the runtime dependencies (the lockfile's non-dev top-level packages) copied in, so the install needs no network
  const lock = JSON.parse(readFileSync(join(repo, "package-lock.json"), "utf8")) as { packages: Record<string, { version?: string; dev?: boolean; optional?: boolean; devOptional?: boolean }> };
  const deps: Record<string, string> = {};
  for (const [key, p] of Object.entries(lock.packages)) {
    if (!key.startsWith("node_modules/") || p.dev || p.optional || p.devOptional) continue;
    const name = key.slice("node_modules/".length);
    if (name.includes("node_modules/")) continue;
    deps[name] = p.version!;
    cpSync(realpathSync(join(repo, "node_modules", name)), join(app, "node_modules", name), { recursive: true });
  }
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module", dependencies: deps }, null, 2));
  execFileSync(npm, ["install", "--offline", "--no-audit", "--no-fund", "--ignore-scripts", tarball], { cwd: app, stdio: ["ignore", "pipe", "pipe"] });
  pkg = join(app, "node_modules", "preftune");
  // the native addon: this checkout's build (the install script's node-gyp build is the same compile)
  mkdirSync(join(pkg, "build", "Release"), { recursive: true });
  copyFileSync(join(repo, "build", "Release", "preftune.node"), join(pkg, "build", "Release", "preftune.node"));
  modelDir = makeTinyModel(join(tmp.dir, "tiny"), { tokenizer: "llama2", hidden: 32, layers: 1, heads: 2, kvHeads: 1, intermediate: 64, maxPositions: 512, seed: 5 });
});
after(() => tmp?.cleanup());

test("the tarball ships dist/ with types and what a user needs, not tests, fixtures, bench or non-commercial data", () => {
  const list = execFileSync("tar", ["-tzf", tarball], { encoding: "utf8" }).split("\n");
  for (const f of ["package/dist/index.js", "package/dist/index.d.ts", "package/bin/preftune.js", "package/binding.gyp", "package/scripts/install-check.js", "package/examples/orpo-full.mjs", "package/docs/api.md"]) assert.ok(list.includes(f), `${f} is in the tarball`);
  for (const bad of ["package/tests/", "package/bench/", "package/src/", "package/data/alpaca-eval-sample/", "package/tools/"]) assert.ok(!list.some((f) => f.startsWith(bad)), `nothing under ${bad}`);
  const manifest = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8"));
  assert.equal(manifest.exports["."].types, "./dist/index.d.ts");
  assert.ok(!existsSync(join(app, "node_modules", "tsx")), "no TypeScript loader is installed");
});

test("from the installed package: the ORPO example trains on the tiny model, and preftune --help starts without a loader", () => {
  const run = spawnSync(process.execPath, [join(pkg, "examples", "orpo-full.mjs"), modelDir, join(tmp.dir, "orpo"), "3"], { cwd: app, encoding: "utf8" });
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, /trained 3 steps, train_loss \d/);
  const metrics = readFileSync(join(tmp.dir, "orpo", "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.ok(metrics.some((m) => Number.isFinite(m.train_loss)));
  assert.ok(existsSync(join(tmp.dir, "orpo", "model.safetensors")));
  const t0 = performance.now();
  const help = spawnSync(process.execPath, [join(app, "node_modules", ".bin", "preftune"), "--help"], { cwd: app, encoding: "utf8" });
  const ms = performance.now() - t0;
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /Usage: preftune/);
  console.log(`# preftune --help from the installed package: ${ms.toFixed(0)} ms`);
  assert.ok(ms < 5000, `start-up ${ms} ms`);   // < 1 s on a quiet machine; loose here for a loaded one
});

test("from the installed package: the DPO-with-LoRA, KTO and scoring examples run", () => {
  // scoring: 16 pairs of the shipped sample, to keep the test short
  const pairs = join(tmp.dir, "pairs.jsonl");
  writeFileSync(pairs, readFileSync(join(pkg, "data", "hh-rlhf-harmless-sample", "test.jsonl"), "utf8").split("\n").slice(0, 16).join("\n") + "\n");
  const runs: [string, string[], RegExp][] = [
    ["dpo-lora.mjs", [modelDir, join(tmp.dir, "dpo"), "2"], /"step":2/],
    ["kto-unpaired.mjs", [modelDir, join(tmp.dir, "kto"), "2"], /KTO: 2 steps, train_loss \d/],
    ["score.mjs", [modelDir, join(tmp.dir, "scores.jsonl"), pairs], /^1[0-6] pairs: preference accuracy \d/],
  ];
  for (const [file, args, expect] of runs) {
    const r = spawnSync(process.execPath, [join(pkg, "examples", file), ...args], { cwd: app, encoding: "utf8" });
    assert.equal(r.status, 0, `${file}: ${r.stderr}`);
    assert.match(r.stdout, expect, file);
  }
  assert.ok(existsSync(join(tmp.dir, "dpo", "adapter", "adapter_model.safetensors")));
  assert.ok(existsSync(join(tmp.dir, "dpo", "adapter", "tokenizer.json")));
});

test("code using the API type-checks under strict, and a misspelled key or a wrong-typed value does not compile", () => {
  writeFileSync(join(app, "usage.ts"), `import { ORPOConfig, DPOConfig, LoraConfig, ORPOTrainer, AutoModelForCausalLM, load_dataset, ConfigError, DataError, ModelLoadError, type LogEntry } from "preftune";
export async function run(dir: string): Promise<number> {
  const args = new ORPOConfig({ output_dir: "out", beta: 0.2, max_steps: 2, lr_scheduler_type: "cosine", bf16: true });
  const beta: number = args.beta;
  const model = await AutoModelForCausalLM.from_pretrained(dir, { dtype: "bfloat16" });
  const train_dataset = (await load_dataset("data.jsonl", { split: "train" })).filter((r) => typeof r.prompt === "string");
  const trainer = new ORPOTrainer({ model, args, train_dataset, peft_config: new LoraConfig({ r: 8, target_modules: ["q_proj", "v_proj"] }), callbacks: [{ on_log: (l: LogEntry) => void l.loss }] });
  try { await trainer.train(); } catch (e) { if (e instanceof DataError) return e.row ?? -1; if (e instanceof ConfigError || e instanceof ModelLoadError) return -2; throw e; }
  model.dispose();
  // @ts-expect-error: a misspelled key ("learning_rat") is not a config key
  new ORPOConfig({ learning_rat: 1e-5 });
  // @ts-expect-error: beta is a number, not a string
  new DPOConfig({ beta: "0.1" });
  // @ts-expect-error: lr_scheduler_type is one of transformers' names
  new ORPOConfig({ lr_scheduler_type: "cosine_annealing" });
  // @ts-expect-error: LoraConfig's r is a number
  new LoraConfig({ r: "8" });
  return beta;
}
`);
  writeFileSync(join(app, "tsconfig.json"), JSON.stringify({
    compilerOptions: { strict: true, noEmit: true, target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", skipLibCheck: true, types: ["node"], typeRoots: [join(repo, "node_modules", "@types")] },
    files: ["usage.ts"],
  }));
  const tsc = spawnSync(process.execPath, [join(repo, "node_modules", "typescript", "bin", "tsc"), "-p", app], { cwd: app, encoding: "utf8" });
  assert.equal(tsc.status, 0, tsc.stdout + tsc.stderr);
});
