// The process group under `mpirun -np 2` (collectives-worker.ts): ranks and sizes from MPI and mpirun's
// environment, in-place means and sums (fp32 and fp64), the JSON all-gather with non-finite numbers, and the
// gradient sum overlapped with a backward: started by the backward layer by layer, equal to the sum after it.
// Skipped (with the reason) where mpirun is not installed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";

const hasMpirun = spawnSync("mpirun", ["--version"], { encoding: "utf8" }).status === 0;
const skip = hasMpirun ? false : "mpirun not found: install Open MPI (apt-get install openmpi-bin libopenmpi-dev) to run the data-parallel tests";

test("collectives over 2 ranks", { skip }, () => {
  const env = { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: "1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: "1", OMPI_MCA_rmaps_base_oversubscribe: "1" };
  const r = spawnSync("mpirun", ["-np", "2", "--bind-to", "none", process.execPath, "--import", "tsx", join(import.meta.dirname, "collectives-worker.ts")], { encoding: "utf8", env, timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  const o = JSON.parse(r.stdout.trim().split("\n").pop()!);
  assert.deepEqual([o.rank, o.world, o.localRank, o.localSize], [0, 2, 0, 2]);
  assert.deepEqual(o.mean32, [0.75, 2.25, 3.75, 5.25, 6.75]);   // ((1 + 2) / 2) · (i + 0.5), exact in fp32
  assert.deepEqual(o.sum64, [1 + 1e-17, 3 * 2 ** -40]);
  assert.equal(o.gathered.length, 2);
  assert.deepEqual(o.gathered[0], { rank: 0, loss: "0.25", text: "ünï0" });
  assert.equal(o.gathered[1].text, "ünï1");
  assert.equal(o.gathered[1].loss, "NaN", "NaN must survive the all-gather");
  assert.equal(o.overlap.layers, 3);
  assert.equal(o.overlap.layersOverlapped, 3, "the backward starts every layer's sum");
  assert.ok(o.overlap.same, "overlapped sum equals the sum after the backward");
  assert.ok(o.overlap.differsFromLocal, "the ranks' gradients differ, so the sum is not trivially the local one");
});
