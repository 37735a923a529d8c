// Where MPI cannot be loaded (hidden here through PREFTUNE_MPI_LIB), a run that the launcher's environment makes
// one of several ranks is refused before anything is written, with a message naming what to install; a single
// process needs no MPI. Runs everywhere (no mpirun needed).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeTinyModel, randomPairs, scratch } from "../helpers/tiny-model.ts";

const WORKER = join(import.meta.dirname, "worker.ts");
let tmp: ReturnType<typeof scratch>;
let job: string;
before(() => {
  tmp = scratch("preftune-nompi-");
  const model = makeTinyModel(join(tmp.dir, "model"), { vocab: 96, hidden: 32, layers: 1, seed: 3 });
  job = join(tmp.dir, "job.json");
  writeFileSync(job, JSON.stringify({
    config: { method: "dpo", model_name_or_path: model, dataset: "(pre-tokenized rows)", output_dir: join(tmp.dir, "out"), threads: 1, max_steps: 1, per_device_train_batch_size: 2, save_strategy: "no" },
    rows: randomPairs(4, { vocab: 96 }),
  }));
});
after(() => tmp.cleanup());

const run = (env: Record<string, string>) => spawnSync(process.execPath, ["--import", "tsx", WORKER, job], { encoding: "utf8", env: { ...process.env, ...env } });

test("a rank of a 2-process job without a loadable MPI library is refused, naming what to install", () => {
  for (const env of [{ OMPI_COMM_WORLD_SIZE: "2", OMPI_COMM_WORLD_RANK: "0" }, { PMI_SIZE: "2", PMI_RANK: "1" }] as Record<string, string>[]) {
    const r = run({ ...env, PREFTUNE_MPI_LIB: join(tmp.dir, "no-such-dir", "libmpi.so.40") });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /one of 2 ranks, which needs MPI/);
    assert.match(r.stderr, /cannot load the MPI library/);
    assert.match(r.stderr, /apt-get install openmpi-bin libopenmpi-dev/);
    assert.ok(!existsSync(join(tmp.dir, "out")), "nothing may be written before the refusal");
  }
});

test("a single process trains without MPI (the library hidden)", () => {
  const r = run({ PREFTUNE_MPI_LIB: join(tmp.dir, "no-such-dir", "libmpi.so.40"), OMPI_COMM_WORLD_SIZE: "1" });
  assert.equal(r.status, 0, r.stderr);
  assert.ok(existsSync(join(tmp.dir, "out", "model.safetensors")));
});
