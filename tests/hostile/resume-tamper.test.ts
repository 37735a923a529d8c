// Resuming from a checkpoint someone edited (or a disk damaged), through the real CLI: every state file is checked
// against its schema and against the others before any weight is read, and the refusal names the file, the field,
// what it must be and what to do; nothing is trained or written over. A string global_step once made the loop spin
// at 100% CPU ignoring SIGINT and SIGTERM: it is refused now, in time. A signal during the resume's loading stops
// the run (exit 130) without saving.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { scratch } from "../helpers/tiny-model.ts";
import { leftovers, makeFixture, pool, runCli, sha, startCli, waitFor, type Fixture } from "./writes-fixture.ts";

let tmp: ReturnType<typeof scratch>;
let fx: Fixture;
let done: string;    // a finished 8-step run: checkpoint-4, checkpoint-8 and the final model

before(async () => {
  tmp = scratch("preftune-resume-");
  fx = makeFixture(tmp.dir);
  done = join(tmp.dir, "done");
  const r = await runCli(["train", fx.cfg, "--output_dir", done]);
  assert.equal(r.code, 0, r.out);
});
after(() => tmp.cleanup());

const edit = (file: string, change: (j: Record<string, unknown>) => unknown) => writeFileSync(file, JSON.stringify(change(JSON.parse(readFileSync(file, "utf8")))));

interface Case { name: string; tamper: (ck: string) => void; expect: RegExp; args?: string[]; checkpoint?: string }

const CASES: Case[] = [
  { name: "global_step a string", tamper: (ck) => edit(join(ck, "trainer_state.json"), (j) => ({ ...j, global_step: "4" })), expect: /checkpoint-4\/trainer_state\.json: global_step must be a whole number ≥ 0, got "4"/ },
  // the one that used to spin: comparisons with NaN are all false, so the loop neither stepped nor ended
  { name: "global_step not a number", tamper: (ck) => edit(join(ck, "trainer_state.json"), (j) => ({ ...j, global_step: "four" })), expect: /checkpoint-4\/trainer_state\.json: global_step must be a whole number ≥ 0, got "four"/ },
  { name: "global_step negative", tamper: (ck) => edit(join(ck, "trainer_state.json"), (j) => ({ ...j, global_step: -4 })), expect: /checkpoint-4\/trainer_state\.json: global_step must be a whole number ≥ 0, got -4/ },
  { name: "global_step far ahead", tamper: (ck) => edit(join(ck, "trainer_state.json"), (j) => ({ ...j, global_step: 1000 })), expect: /checkpoint-4\/trainer_state\.json: global_step is 1000 but the folder is checkpoint-4/ },
  { name: "trainer_state.json = {}", tamper: (ck) => writeFileSync(join(ck, "trainer_state.json"), "{}"), expect: /checkpoint-4\/trainer_state\.json: has none of the fields it must hold \(global_step, epoch, max_steps, log_history, …\), got \{\}/ },
  { name: "trainer_state.json a folder", tamper: (ck) => { rmSync(join(ck, "trainer_state.json")); mkdirSync(join(ck, "trainer_state.json")); }, expect: /checkpoint-4\/trainer_state\.json: cannot read the checkpoint file: it is a folder, not a file \(EISDIR\)/ },
  { name: "rng_state position moved", tamper: (ck) => edit(join(ck, "rng_state.json"), (j) => ({ ...j, position: 6 })), expect: /checkpoint-4\/rng_state\.json: epoch 0, position 6 .* is step 6, but global_step in trainer_state\.json is 4/ },
  { name: "rng_state fields wrong", tamper: (ck) => edit(join(ck, "rng_state.json"), (j) => ({ ...j, epoch: -1, shuffle: "yes" })), expect: /checkpoint-4\/rng_state\.json: epoch must be a whole number ≥ 0, got -1\n.*checkpoint-4\/rng_state\.json: shuffle must be true or false, got "yes"/ },
  { name: "scheduler out of step", tamper: (ck) => edit(join(ck, "scheduler.json"), (j) => ({ ...j, last_epoch: 2 })), expect: /checkpoint-4\/scheduler\.json: last_epoch is 2 but global_step in trainer_state\.json is 4/ },
  // an intact checkpoint beyond this run's max_steps would "finish" without training
  { name: "global_step beyond max_steps", tamper: () => {}, checkpoint: "checkpoint-8", args: ["--max_steps", "4"], expect: /checkpoint-8\/trainer_state\.json: global_step 8 is beyond this run's 4 steps/ },
];

test("tampered checkpoint state files are refused naming the file and field, quickly, and nothing is written over", async () => {
  const results = await pool(2, CASES.map((c, i) => async () => {
    const dir = join(tmp.dir, `case-${i}`);
    cpSync(done, dir, { recursive: true });
    const ck = join(dir, c.checkpoint ?? "checkpoint-4");
    c.tamper(ck);
    const model = sha(join(dir, "model.safetensors")), metrics = sha(join(dir, "metrics.jsonl"));
    const r = await runCli(["train", fx.cfg, "--output_dir", dir, "--resume_from_checkpoint", ck, ...(c.args ?? [])], { timeoutMs: 20_000 });
    assert.equal(r.code, 1, `${c.name}: ${r.out}`);
    assert.match(r.out, c.expect, c.name);
    if (!c.checkpoint) assert.match(r.out, /The checkpoint is damaged: resume from another checkpoint \(resume_from_checkpoint: .*checkpoint-8\) or start over/, c.name);
    assert.equal(sha(join(dir, "model.safetensors")), model, `${c.name}: the final model was written over`);
    assert.equal(sha(join(dir, "metrics.jsonl")), metrics, `${c.name}: metrics.jsonl was written over`);
    assert.deepEqual(leftovers(dir), [], c.name);
    return r.ms;
  }));
  assert.ok(Math.max(...results) < 20_000);
});

test("SIGINT while a resume loads stops the run with exit code 130 and saves nothing", async () => {
  const dir = join(tmp.dir, "interrupted");
  cpSync(done, dir, { recursive: true });
  const model = sha(join(dir, "model.safetensors"));
  // the test hook holds the run after the checkpoint's state files are read, before its weights are
  const run = startCli(["train", fx.cfg, "--output_dir", dir, "--resume_from_checkpoint", join(dir, "checkpoint-4")], { env: { PREFTUNE_FAULT: "train:resume=wait" }, timeoutMs: 30_000 });
  await waitFor(() => run.output().includes("waiting at train:resume"), "the run to reach the resume");
  const t0 = Date.now();
  run.child.kill("SIGINT");
  const r = await run.done;
  assert.equal(r.code, 130, r.out);
  assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms to stop`);
  assert.match(r.out, /SIGINT: stopping before training starts/);
  assert.match(r.out, /stopped by SIGINT while resuming from .*checkpoint-4: nothing was trained and nothing was saved/);
  assert.equal(sha(join(dir, "model.safetensors")), model);
  assert.deepEqual(leftovers(dir), []);
});
