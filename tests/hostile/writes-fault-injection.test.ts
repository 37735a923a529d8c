// Fault injection of the final save and of checkpoint writes, through the real CLI: PREFTUNE_FAULT=POINT kills
// `preftune train` with SIGKILL at a named step of the write sequence (src/util/durable.ts). The runs are chained:
// each run starts from what the previous kill left, must clean it up and get further, and is killed at the next
// step. After every kill the folder must hold a complete, loadable model (the old one or the new one, bit for
// bit) and a complete, readable checkpoint, and only the last killed process's temporaries; the last run must
// end with exactly the uninterrupted run's model and nothing left over.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { cpSync, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { latestCheckpoint, readCheckpoint } from "../../src/train/checkpoint.ts";
import { scratch } from "../helpers/tiny-model.ts";
import { leftovers, loadModelWeights, makeFixture, runCli, sha, type CliRun, type Fixture } from "./writes-fixture.ts";

let tmp: ReturnType<typeof scratch>;
let fx: Fixture;
let base: string;          // a finished 4-step run: final model at step 4, checkpoint-4
let reference: string;     // base resumed to step 8 without interruption
let points: string[];      // the write sequence of that resume
let models: Record<string, string>;

before(async () => {
  tmp = scratch("preftune-faults-");
  fx = makeFixture(tmp.dir);
  base = join(tmp.dir, "base");
  const b = await runCli(["train", fx.cfg, "--output_dir", base, "--max_steps", "4"]);
  assert.equal(b.code, 0, b.out);
  reference = join(tmp.dir, "reference");
  cpSync(base, reference, { recursive: true });
  const trace = join(tmp.dir, "trace.txt");
  const r = await runCli(["train", fx.cfg, "--output_dir", reference, "--resume_from_checkpoint", "true", "--save_total_limit", "1"], { env: { PREFTUNE_FAULT_TRACE: trace } });
  assert.equal(r.code, 0, r.out);
  points = readFileSync(trace, "utf8").trim().split("\n");
  models = { "step 4": sha(join(base, "model.safetensors")), "step 8": sha(join(reference, "model.safetensors")) };
});
after(() => tmp.cleanup());

/** The model in the folder's root is whole and is the step-4 or the step-8 model, bit for bit; returns which. */
function rootModel(dir: string): string {
  loadModelWeights(dir);   // throws unless config.json and the weights form a complete model
  const h = sha(join(dir, "model.safetensors"));
  const which = Object.entries(models).find(([, v]) => v === h)?.[0];
  assert.ok(which, `${dir}/model.safetensors is neither the old nor the new model`);
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) assert.equal(sha(join(dir, f)), sha(join(fx.model, f)), `${f} damaged`);
  return which!;
}

/** After a kill: a complete checkpoint, and every temporary (and the lock) is the killed process's own. */
function checkAfterKill(dir: string, k: CliRun, point: string): void {
  assert.equal(k.signal, "SIGKILL", `${point}: the run was not killed there:\n${k.out}`);
  const ck = latestCheckpoint(dir);
  assert.ok(ck, `${point}: no complete checkpoint left`);
  readCheckpoint(ck!);          // every state file valid and consistent
  loadModelWeights(ck!);        // and its model complete
  for (const n of leftovers(dir)) {
    const owner = n === ".preftune.lock" ? JSON.parse(readFileSync(join(dir, n), "utf8")).pid : Number(/-(\d+)-[0-9a-f]{8}$/.exec(n)?.[1]);
    assert.equal(owner, k.pid, `${point}: ${n} was left by an earlier run and not cleaned up`);
  }
}

test("a SIGKILL at every step of checkpoint and final-model writes leaves a complete model and checkpoint; each next run cleans up and completes", async () => {
  const writes = points.filter((p) => /^(folder|remove|install):/.test(p));
  // checkpoint-8 (folder swap), the rotation of checkpoint-4 (folder removal), every file of the final model
  for (const p of ["folder:checkpoint-8:filled", "remove:checkpoint-4:renamed", "install:final-model:staged", "install:final-model:ready", "install:final-model:tokenizer.json", "install:final-model:model.safetensors", "install:final-model:installed"]) {
    assert.ok(writes.includes(p), `the write sequence has no ${p}: ${points.join(", ")}`);
  }
  const args = (dir: string) => ["train", fx.cfg, "--output_dir", dir, "--resume_from_checkpoint", "true", "--save_total_limit", "1"];
  const seen: Record<string, string> = {};
  // two chains (every other step each) side by side
  await Promise.all([0, 1].map(async (chain) => {
    let dir = "";
    let runs = 0;
    const fresh = () => { dir = join(tmp.dir, `chain-${chain}-${runs}`); cpSync(base, dir, { recursive: true }); };
    fresh();
    for (const point of writes.filter((_, i) => i % 2 === chain)) {
      let k = await runCli(args(dir), { env: { PREFTUNE_FAULT: point } });
      runs++;
      if (k.code === 0) {
        // what the previous kill left makes the next run skip this step (it resumed past that save): start over
        fresh();
        k = await runCli(args(dir), { env: { PREFTUNE_FAULT: point } });
      }
      checkAfterKill(dir, k, point);
      seen[point] = rootModel(dir);
    }
    const r = await runCli(args(dir));
    assert.equal(r.code, 0, r.out);
    assert.equal(sha(join(dir, "model.safetensors")), models["step 8"], "the completed model differs from the uninterrupted run's");
    assert.equal(JSON.parse(readFileSync(join(dir, "trainer_state.json"), "utf8")).global_step, 8);
    assert.deepEqual(leftovers(dir), []);
  }));
  assert.deepEqual(Object.keys(seen).sort(), [...writes].sort());
  // killed during its very first final save (the chain reaches it from the step-4 folder), the old model stays in
  // use until the weights' rename
  assert.equal(seen["install:final-model:ready"], "step 4");
});

test("killed between the config's and the weights' rename, the folder still loads the old model; after it, the new one", async () => {
  const seen = await Promise.all(["install:final-model:config.json", "install:final-model:model.safetensors"].map(async (point, i) => {
    const dir = join(tmp.dir, `switch-${i}`);
    cpSync(base, dir, { recursive: true });
    const k = await runCli(["train", fx.cfg, "--output_dir", dir, "--resume_from_checkpoint", "true"], { env: { PREFTUNE_FAULT: point } });
    checkAfterKill(dir, k, point);
    return rootModel(dir);
  }));
  assert.deepEqual(seen, ["step 4", "step 8"]);
});

test("a SIGKILL while an existing checkpoint is replaced loses nothing; the next run puts it back", async () => {
  // resuming from checkpoint-4 in a finished 8-step run writes checkpoint-8 again over the old one
  const dir = join(tmp.dir, "replace");
  cpSync(reference, dir, { recursive: true });
  cpSync(join(base, "checkpoint-4"), join(dir, "checkpoint-4"), { recursive: true });
  const ck8 = sha(join(dir, "checkpoint-8", "optimizer.safetensors"));
  const args = ["train", fx.cfg, "--output_dir", dir, "--resume_from_checkpoint", join(dir, "checkpoint-4")];
  let last = "";
  for (const point of ["folder:checkpoint-8:filled", "folder:checkpoint-8:aside", "folder:checkpoint-8:renamed"]) {
    const k = await runCli(args, { env: { PREFTUNE_FAULT: point } });
    checkAfterKill(dir, k, point);
    rootModel(dir);
    // set aside, checkpoint-8 is missing under its name for an instant, but whole under .checkpoint-8.old-*
    if (point !== "folder:checkpoint-8:aside") assert.equal(sha(join(dir, "checkpoint-8", "optimizer.safetensors")), ck8);
    last = k.out;
  }
  assert.match(last, /restored checkpoint-8/);   // the run after the kill "aside" put the old one back first
  const r = await runCli(["train", fx.cfg, "--output_dir", dir, "--resume_from_checkpoint", "true"]);
  assert.equal(r.code, 0, r.out);
  assert.equal(sha(join(dir, "checkpoint-8", "optimizer.safetensors")), ck8);
  assert.ok(existsSync(join(dir, "checkpoint-4")));
  assert.deepEqual(leftovers(dir), []);
});
