// The launcher's environment as the process group reads it (no MPI needed): Open MPI's OMPI_COMM_WORLD_*, a PMI
// launcher's PMI_*, and none (one process).
import { test } from "node:test";
import assert from "node:assert/strict";
import { launchEnv } from "../../src/parallel/group.ts";

test("rank, world and local sizes from mpirun's or a PMI launcher's environment; one process without either", () => {
  assert.deepEqual(launchEnv({ OMPI_COMM_WORLD_SIZE: "4", OMPI_COMM_WORLD_RANK: "3", OMPI_COMM_WORLD_LOCAL_RANK: "1", OMPI_COMM_WORLD_LOCAL_SIZE: "2" }),
    { worldSize: 4, rank: 3, localRank: 1, localSize: 2, launcher: "mpirun (Open MPI)" });
  assert.deepEqual(launchEnv({ PMI_SIZE: "2", PMI_RANK: "1" }), { worldSize: 2, rank: 1, localRank: 0, localSize: 1, launcher: "a PMI launcher" });
  assert.deepEqual(launchEnv({}), { worldSize: 1, rank: 0, localRank: 0, localSize: 1, launcher: null });
  assert.equal(launchEnv({ OMPI_COMM_WORLD_SIZE: "two" }).worldSize, 1, "a value that is not a whole number is ignored");
});
