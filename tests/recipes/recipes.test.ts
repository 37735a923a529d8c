// Real public recipes and documented command lines (fixtures/, each citing its source), run as a new user would
// with only the model folder, the data, output_dir and the step count changed: every one goes through the real
// config loader and either resolves or fails with the documented reason; a subset trains end to end on a tiny
// model (the KTO QLoRA command line through the real CLI, where adapter_config.json must list all seven
// projections). The data is substituted with rows shaped as each recipe's columns expect: a dataset mixture
// (dataset_mixture, the older dataset_mixer, TRL's datasets) gets its sources pointed at a local folder with
// train/test splits, and a test_split_size given as a row count larger than that folder becomes 4 rows.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { loadConfig, readConfigFile, type TrainMethod } from "../../src/train/config.ts";
import { train } from "../../src/train/loop.ts";
import { makeTinyModel, scratch } from "../helpers/tiny-model.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const FIXTURES = join(ROOT, "tests", "recipes", "fixtures");
const STEPS = 2;

interface Case {
  file: string;
  method: TrainMethod;                 // the trainer the recipe is written for (the script it is launched with)
  fails?: RegExp[];                    // the documented reasons it is refused
  e2e?: boolean;                       // also train STEPS steps end to end
}
const CASES: Case[] = [
  // alignment-handbook recipes
  { file: "handbook-zephyr-7b-beta-dpo-full.yaml", method: "dpo", e2e: true },
  // this recipe still uses the handbook's 2023 data keys (dataset_mixer, dataset_splits): read, with a note
  { file: "handbook-zephyr-7b-beta-dpo-qlora.yaml", method: "dpo", e2e: true },
  { file: "handbook-zephyr-141b-orpo.yaml", method: "orpo", e2e: true },
  { file: "handbook-zephyr-7b-gemma-dpo.yaml", method: "dpo", e2e: true },
  { file: "handbook-smollm2-dpo.yaml", method: "dpo", e2e: true },
  { file: "handbook-smollm3-apo.yaml", method: "dpo", e2e: true },
  { file: "handbook-pref-align-scan-zephyr.yaml", method: "dpo" },
  { file: "handbook-constitutional-ai-dpo.yaml", method: "dpo", fails: [/optim rmsprop: preftune trains with AdamW only; rmsprop is not implemented/] },
  { file: "handbook-starchat2-dpo.yaml", method: "dpo" },
  // TRL's documented command lines
  { file: "trl-dpo-full.cmd", method: "dpo" },
  { file: "trl-dpo-lora.cmd", method: "dpo", e2e: true },
  { file: "trl-kto-full.cmd", method: "kto" },
  { file: "trl-kto-qlora.cmd", method: "kto" },   // end to end through the CLI below
  { file: "trl-orpo-full.cmd", method: "orpo" },
  { file: "trl-orpo-peft.cmd", method: "orpo", fails: [/optim rmsprop: preftune trains with AdamW only/] },
  { file: "trl-cpo-full.cmd", method: "cpo", e2e: true },
  { file: "trl-cpo-qlora.cmd", method: "cpo", fails: [/optim rmsprop: preftune trains with AdamW only/] },
  { file: "trl-peft-integration-dpo-lora.cmd", method: "dpo" },
  { file: "trl-readme-dpo.cmd", method: "dpo" },
  { file: "trl-readme-kto.cmd", method: "kto" },
  { file: "trl-clis-dpo-num-processes.cmd", method: "dpo" },
  { file: "trl-clis-dpo-config.yaml", method: "dpo" },
  { file: "trl-clis-dpo-datasets.yaml", method: "dpo", e2e: true },
  // notebooks and walkthroughs
  { file: "smol-course-orpo.yaml", method: "orpo", e2e: true },
  { file: "unsloth-orpo.yaml", method: "orpo", e2e: true },
  { file: "unsloth-orpo-peft-names.yaml", method: "orpo", fails: [/unknown key "r"; did you mean "lora_r"/, /unknown key "target_modules"; did you mean "lora_target_modules"/, /unknown key "bias": PEFT's LoraConfig bias has no TRL config key/, /unknown key "random_state"; did you mean "seed"/, /unknown key "use_gradient_checkpointing"; did you mean "gradient_checkpointing"/, /unknown key "loftq_config": LoftQ is not supported/] },
  { file: "unsloth-dpo.yaml", method: "dpo", e2e: true },
  { file: "orpo-qlora-walkthrough.yaml", method: "orpo", e2e: true },
  { file: "axolotl-orpo-mix.yaml", method: "orpo", fails: [/unknown key "rl"; did you mean "method"/, /unknown key "orpo_alpha"; did you mean "beta"\? \(TRL's ORPOConfig calls ORPO's λ \(the weight of the odds-ratio term\) beta/] },
];

let tmp: ReturnType<typeof scratch>;
let model: string, pairs: string, unpaired: string, implicitPairs: string, explicitPairs: string;
let cwd: string;
before(() => {
  tmp = scratch();
  cwd = process.cwd();
  process.chdir(tmp.dir);   // recipes' relative paths (and the default dataset cache) land in the scratch folder
  // Llama-2 tokenizer and chat template; positions enough for every recipe's max_length (RoPE only: no cost)
  model = makeTinyModel(join(tmp.dir, "model"), { tokenizer: "llama2", hidden: 16, intermediate: 32, layers: 1, heads: 2, kvHeads: 1, maxPositions: 32768, seed: 9 });
  const copy = (src: string, dst: string, n: number, m: number) => {
    mkdirSync(dst);
    const lines = (f: string, k: number) => readFileSync(join(ROOT, "data", src, f), "utf8").split("\n").filter(Boolean).slice(0, k).join("\n") + "\n";
    writeFileSync(join(dst, "train.jsonl"), lines("train.jsonl", n));
    writeFileSync(join(dst, "test.jsonl"), lines("test.jsonl", m));
    return dst;
  };
  pairs = copy("hh-rlhf-harmless-sample", join(tmp.dir, "pairs"), 16, 4);
  unpaired = copy("hh-rlhf-kto-unpaired", join(tmp.dir, "unpaired"), 16, 4);
  // the same pairs in the two shapes the mixture recipes select columns from: UltraFeedback's implicit prompt
  // (chosen and rejected are whole conversations) and SmolTalk2's explicit prompt with chat_template_kwargs
  const reshape = (dst: string, f: (r: Record<string, unknown[]>) => object) => {
    mkdirSync(dst);
    for (const split of ["train", "test"]) {
      const rows = readFileSync(join(pairs, `${split}.jsonl`), "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
      writeFileSync(join(dst, `${split}.jsonl`), rows.map((r) => JSON.stringify(f(r))).join("\n") + "\n");
    }
    return dst;
  };
  implicitPairs = reshape(join(tmp.dir, "pairs-implicit"), (r) => ({ chosen: [...r.prompt, ...r.chosen], rejected: [...r.prompt, ...r.rejected], score_chosen: 8, score_rejected: 4 }));
  explicitPairs = reshape(join(tmp.dir, "pairs-explicit"), (r) => ({ ...r, chat_template_kwargs: { enable_thinking: false } }));
});
after(() => {
  process.chdir(cwd);
  tmp.cleanup();
});

/** A documented command line as argv: comments dropped, continuations joined, the program (python x.py / trl dpo) removed. */
function commandArgv(text: string): string[] {
  const line = text.split("\n").filter((l) => !l.trimStart().startsWith("#") && !l.startsWith("```")).join("\n").replace(/\\\n/g, " ");
  const tokens = [...line.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]);
  return tokens.slice(tokens.findIndex((t) => t.startsWith("--")));
}

/** The same recipe with only the model, the data, output_dir and the step count replaced. */
function substitute(c: Case, outDir: string): { file: string | null; argv: string[] } {
  const data = c.method === "kto" ? unpaired : pairs;
  const path = join(FIXTURES, c.file);
  if (c.file.endsWith(".cmd")) {
    const argv = commandArgv(readFileSync(path, "utf8"));
    const out: string[] = ["--method", c.method];
    for (let i = 0; i < argv.length; i++) {
      const [k, inline] = argv[i].split(/=(.*)/s, 2);
      const sub = k === "--model_name_or_path" ? model : k === "--dataset_name" ? data : k === "--output_dir" ? outDir : null;
      if (sub === null) { out.push(argv[i]); continue; }
      out.push(`${k}=${sub}`);
      if (inline === undefined) i++;   // skip the replaced value
    }
    return { file: null, argv: [...out, "--output_dir", outDir, "--max_steps", String(STEPS)] };
  }
  const raw = readConfigFile(path);
  raw.method ??= c.method;
  raw.model_name_or_path = model;
  const split = (s: unknown) => (String(s).includes("test") ? "test" : "train");
  if ("dataset_name" in raw) raw.dataset_name = data;
  else if (raw.dataset_mixture && typeof raw.dataset_mixture === "object") {
    const mix = raw.dataset_mixture as { datasets?: Record<string, unknown>[]; test_split_size?: number };
    const ids = (d: Record<string, unknown>) => (Array.isArray(d.columns) && !d.columns.includes("prompt") ? implicitPairs : explicitPairs);
    raw.dataset_mixture = {
      ...mix, datasets: (mix.datasets ?? []).map((d) => ({ ...d, id: ids(d), config: null, split: split(d.split) })),
      ...(mix.test_split_size != null && mix.test_split_size >= 1 ? { test_split_size: 4 } : {}),
    };
  } else if (Array.isArray(raw.datasets)) raw.datasets = raw.datasets.map((d: Record<string, unknown>) => ({ ...d, path: data }));
  else if (raw.dataset_mixer) {
    raw.dataset_mixer = { [implicitPairs]: 1.0 };
    if (Array.isArray(raw.dataset_splits)) raw.dataset_splits = raw.dataset_splits.map(split);
  } else raw.dataset = data;
  raw.output_dir = outDir;
  raw.max_steps = STEPS;
  const file = join(tmp.dir, `sub-${c.file.replace(/\.\w+$/, "")}.yaml`);
  writeFileSync(file, stringify(raw));
  return { file, argv: [] };
}

test("the corpus: at least 20 recipes and command lines, each citing its source", () => {
  const files = readdirSync(FIXTURES).sort();
  assert.ok(files.length >= 20, `${files.length} fixtures`);
  assert.deepEqual(files, CASES.map((c) => c.file).sort(), "every fixture has a case and every case a fixture");
  for (const f of files) assert.match(readFileSync(join(FIXTURES, f), "utf8"), /^# Source: \S+/m, `${f} cites no source`);
});

for (const c of CASES) {
  test(`${c.file}: ${c.fails ? "refused with the documented reason" : "resolves"} through the real config loader`, () => {
    const { file, argv } = substitute(c, join(tmp.dir, "runs", c.file));
    if (c.fails) {
      assert.throws(() => loadConfig(file, argv), (e: Error) => {
        for (const p of c.fails!) assert.match(e.message, p);
        return true;
      });
      return;
    }
    const { config } = loadConfig(file, argv);
    assert.equal(config.method, c.method);
    assert.equal(config.max_steps, STEPS);
    assert.equal(config.model_name_or_path, model);
  });
}

for (const c of CASES.filter((x) => x.e2e)) {
  test(`${c.file}: trains ${STEPS} steps end to end`, async () => {
    const outDir = join(tmp.dir, "runs", `e2e-${c.file}`);
    const { file, argv } = substitute(c, outDir);
    const { config, notes } = loadConfig(file, argv);
    const r = await train(config, { quiet: true, notes, handleSignals: false });
    assert.equal(r.exitCode, 0);
    assert.equal(r.globalStep, STEPS);
    const state = JSON.parse(readFileSync(join(outDir, "trainer_state.json"), "utf8"));
    assert.equal(state.global_step, STEPS);
    assert.ok(state.total_flos > 0);
    assert.ok(existsSync(join(outDir, config.use_peft ? "adapter_model.safetensors" : "model.safetensors")));
    const args = JSON.parse(readFileSync(join(outDir, "training_args.json"), "utf8"));
    assert.deepEqual(args.preftune_notes, notes);
  });
}

test("TRL's KTO QLoRA command line through the real CLI trains an adapter on all seven projections", () => {
  const c = CASES.find((x) => x.file === "trl-kto-qlora.cmd")!;
  const outDir = join(tmp.dir, "runs", "cli-kto-qlora");
  const { argv } = substitute(c, outDir);
  const r = spawnSync(process.execPath, [join(ROOT, "bin", "preftune.js"), "train", ...argv, "--disable_tqdm"], { cwd: tmp.dir, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const adapter = JSON.parse(readFileSync(join(outDir, "adapter_config.json"), "utf8"));
  assert.deepEqual(adapter.target_modules, ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]);
  assert.equal(adapter.r, 16);
  assert.equal(adapter.lora_alpha, 16);
  assert.ok(!existsSync(join(outDir, "model.safetensors")), "an adapter, not the full model");
  // the notes say what has no effect here, once each
  assert.match(r.stderr, /load_in_4bit: base projections held in nf4 \(blocks of 64\), embeddings, norms and lm_head in fp32/);
  assert.match(r.stderr, /note: lora_dropout: 0.05 \(TRL's default with use_peft\) has no effect: disable_dropout is true \(TRL's default for kto\)/);
  assert.doesNotMatch(r.stderr, /note: load_in_4bit/);
  const log = readFileSync(join(outDir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(log[0].step, 1);   // --logging_first_step
});
