// Where and whether `preftune train` writes, through the real CLI: links already in output_dir are replaced, never
// written through; an output_dir that is (or is inside) the model folder is refused before anything is written;
// a second run into a folder another run holds is refused naming the holder, and a dead run's lock is taken
// over; a read-only file system is named as such; a config.json that does not match its weights, or a model too
// large for this machine, is refused before any buffer exists.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, symlinkSync, writeFileSync, writeSync, ftruncateSync } from "node:fs";
import { hostname, totalmem } from "node:os";
import { join } from "node:path";
import { parseConfig } from "../../src/models/config.ts";
import { buildParamTable } from "../../src/models/params.ts";
import { scratch } from "../helpers/tiny-model.ts";
import { loadModelWeights, makeFixture, runCli, sha, startCli, waitFor, type Fixture } from "./writes-fixture.ts";

let tmp: ReturnType<typeof scratch>;
let fx: Fixture;
const quick = ["--max_steps", "2", "--save_steps", "2"];

before(() => {
  tmp = scratch("preftune-writes-");
  fx = makeFixture(tmp.dir);
});
after(() => tmp.cleanup());

/** Peak resident memory of the CLI run, reported by the child itself at exit (NODE_OPTIONS --require). */
function rssProbe(): { env: Record<string, string>; peakMiB: () => number } {
  const out = join(tmp.dir, `rss-${Math.random().toString(16).slice(2)}.txt`);
  const hook = join(tmp.dir, "rss-hook.cjs");
  writeFileSync(hook, `process.on("exit", () => require("fs").writeFileSync(process.env.RSS_OUT, String(process.resourceUsage().maxRSS)));\n`);
  return { env: { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --require ${hook}`.trim(), RSS_OUT: out }, peakMiB: () => Number(readFileSync(out, "utf8")) / 1024 };
}

test("links in output_dir (README.md, tokenizer.json, trainer_state.json, training_args.json, ...) are replaced, their targets untouched", async () => {
  const out = join(tmp.dir, "linked"), victims = join(tmp.dir, "victims");
  mkdirSync(out);
  mkdirSync(victims);
  const names = ["README.md", "tokenizer.json", "trainer_state.json", "training_args.json", "metrics.jsonl", "config.json", "model.safetensors", "tokenizer_config.json"];
  for (const n of names) {
    writeFileSync(join(victims, n), `precious ${n}\n`);
    symlinkSync(join(victims, n), join(out, n));
  }
  const r = await runCli(["train", fx.cfg, "--output_dir", out, ...quick]);
  assert.equal(r.code, 0, r.out);
  for (const n of names) {
    assert.equal(readFileSync(join(victims, n), "utf8"), `precious ${n}\n`, `${n}: the link's target was written through`);
    assert.ok(lstatSync(join(out, n)).isFile(), `${n} is still a link`);
  }
  loadModelWeights(out);
  assert.equal(JSON.parse(readFileSync(join(out, "trainer_state.json"), "utf8")).global_step, 2);
});

test("output_dir equal to the model folder, inside it, or a link to it is refused before anything is written", async () => {
  const before = Object.fromEntries(readdirSync(fx.model).map((n) => [n, sha(join(fx.model, n))]));
  const link = join(tmp.dir, "model-link");
  symlinkSync(fx.model, link);
  const [same, inside, viaLink] = await Promise.all([fx.model, join(fx.model, "run"), link].map((d) => runCli(["train", fx.cfg, "--output_dir", d])));
  assert.equal(same.code, 1, same.out);
  assert.match(same.out, /output_dir .* is the model folder \(model_name_or_path: .*\); the final save would overwrite the weights/);
  assert.equal(inside.code, 1, inside.out);
  assert.match(inside.out, /lies inside the model folder/);
  assert.equal(viaLink.code, 1, viaLink.out);
  assert.match(viaLink.out, /is the model folder/);
  assert.deepEqual(Object.fromEntries(readdirSync(fx.model).map((n) => [n, sha(join(fx.model, n))])), before, "the model folder changed");
});

test("a second run into an output_dir another run holds is refused naming it; a dead run's lock is taken over", async () => {
  const out = join(tmp.dir, "locked");
  // run A stops (test hook) once it holds the lock, before it trains
  const a = startCli(["train", fx.cfg, "--output_dir", out], { env: { PREFTUNE_FAULT: "train:start=wait" } });
  await waitFor(() => a.output().includes("waiting at train:start"), "run A to hold the lock");
  const args = readFileSync(join(out, "training_args.json"), "utf8");
  const b = await runCli(["train", fx.cfg, "--output_dir", out]);
  assert.equal(b.code, 1, b.out);
  assert.match(b.out, new RegExp(`another preftune run is writing into this output_dir \\(pid ${a.child.pid} on ${hostname()}`));
  assert.match(b.out, /\.preftune\.lock/);
  assert.equal(readFileSync(join(out, "training_args.json"), "utf8"), args, "the refused run wrote into the folder");
  a.child.kill("SIGTERM");
  const ra = await a.done;
  assert.equal(ra.code, 143, ra.out);
  assert.match(ra.out, /stopped by SIGTERM while starting: nothing was trained/);
  assert.ok(!existsSync(join(out, ".preftune.lock")), "run A left its lock");

  // a lock whose holder is gone (this host, a pid that is no longer running)
  const dead = spawnSync(process.execPath, ["-e", "console.log(process.pid)"], { encoding: "utf8" });
  writeFileSync(join(out, ".preftune.lock"), JSON.stringify({ pid: Number(dead.stdout.trim()), host: hostname(), started: "2020-01-01T00:00:00.000Z", command: "train old.yaml", token: "0" }) + "\n");
  const c = await runCli(["train", fx.cfg, "--output_dir", out, ...quick]);
  assert.equal(c.code, 0, c.out);
  assert.match(c.out, new RegExp(`took over the lock of .* from pid ${dead.stdout.trim()} on ${hostname()}.*which is no longer running`));
  assert.ok(!existsSync(join(out, ".preftune.lock")));
});

test("a new output_dir on a read-only file system: the message says so and names the path", async (t) => {
  const src = join(tmp.dir, "ro-src"), mnt = join(tmp.dir, "ro-mnt");
  mkdirSync(src);
  mkdirSync(mnt);
  const bind = spawnSync("mount", ["--bind", src, mnt], { encoding: "utf8" });
  if (bind.status !== 0) { t.skip(`a read-only bind mount needs mount permission here (${(bind.stderr || bind.error?.message || "").trim()})`); return; }
  try {
    const ro = spawnSync("mount", ["-o", "remount,bind,ro", mnt], { encoding: "utf8" });
    if (ro.status !== 0) { t.skip(`cannot remount read-only here (${ro.stderr.trim()})`); return; }
    const [fresh, existing] = await Promise.all([runCli(["train", fx.cfg, "--output_dir", join(mnt, "runs", "dpo")]), runCli(["train", fx.cfg, "--output_dir", mnt])]);
    assert.equal(fresh.code, 1, fresh.out);
    assert.match(fresh.out, new RegExp(`${join(mnt, "runs")}: cannot create the output_dir .*read-only file system \\(EROFS\\)`));
    assert.equal(existing.code, 1, existing.out);
    assert.match(existing.out, new RegExp(`${mnt}: cannot .*read-only file system \\(EROFS\\)`));
  } finally {
    spawnSync("umount", [mnt]);
  }
});

test("config.json claiming 2 billion parameters next to a 2 MB weights file is refused before anything is allocated", async () => {
  const big = join(tmp.dir, "big-config");
  mkdirSync(big);
  for (const f of ["model.safetensors", "tokenizer.json", "tokenizer_config.json"]) writeFileSync(join(big, f), readFileSync(join(fx.model, f)));
  const cfg = JSON.parse(readFileSync(join(fx.model, "config.json"), "utf8"));
  writeFileSync(join(big, "config.json"), JSON.stringify({ ...cfg, hidden_size: 2560, intermediate_size: 6912, num_hidden_layers: 24, num_attention_heads: 20, num_key_value_heads: 20 }));
  const probe = rssProbe();
  const r = await runCli(["train", fx.cfg, "--model_name_or_path", big, "--output_dir", join(tmp.dir, "big-out")], { env: probe.env });
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /checkpoint does not match the model config \(\d+ problems\); config\.json implies 1,985,\d{3},\d{3} parameters, the weight files hold 514,352/);
  assert.ok(probe.peakMiB() < 400, `peak RSS ${probe.peakMiB().toFixed(0)} MiB`);
  assert.ok(!existsSync(join(tmp.dir, "big-out")), "output_dir was created for a model that cannot load");
});

test("a model whose weights, gradients and optimizer state exceed this machine's memory is refused with the numbers", async () => {
  // a consistent model folder (config.json and headers agree) whose bf16 weights are a sparse file
  const dir = join(tmp.dir, "huge");
  mkdirSync(dir);
  const cj: Record<string, unknown> = JSON.parse(readFileSync(join(fx.model, "config.json"), "utf8"));
  let layers = 1;
  const table = () => buildParamTable(parseConfig({ ...cj, hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: layers, num_attention_heads: 32, num_key_value_heads: 32, torch_dtype: "bfloat16" }, "test"));
  while (16 * table().reduce((n, p) => n + p.size, 0) < 1.5 * totalmem()) layers++;
  writeFileSync(join(dir, "config.json"), JSON.stringify({ ...cj, hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: layers, num_attention_heads: 32, num_key_value_heads: 32, torch_dtype: "bfloat16" }));
  const header: Record<string, unknown> = {};
  let off = 0;
  for (const p of table()) { header[p.name] = { dtype: "BF16", shape: p.shape, data_offsets: [off, off + 2 * p.size] }; off += 2 * p.size; }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const fd = openSync(join(dir, "model.safetensors"), "w");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeSync(fd, len);
  writeSync(fd, json);
  ftruncateSync(fd, 8 + json.length + off);   // sparse: no blocks behind the tensor data
  closeSync(fd);
  const probe = rssProbe();
  const r = await runCli(["train", fx.cfg, "--model_name_or_path", dir, "--output_dir", join(tmp.dir, "huge-out")], { env: probe.env });
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /parameters needs [\d.]+ GiB for parameters, gradients and optimizer state \(and 1 more copy of the weights for the reference model\), before activations; this machine has [\d.]+ GiB/);
  assert.ok(probe.peakMiB() < 400, `peak RSS ${probe.peakMiB().toFixed(0)} MiB`);
});
