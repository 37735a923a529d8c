// One training run for the MPI tests, in a process of its own: `node --import tsx tests/mpi/worker.ts JOB.json`,
// alone or as every rank under mpirun. JOB.json: { config: TRL-style keys, rows, evalRows?: pre-tokenized rows, killAt?: { rank,
// step, marker } (that rank writes the time into the marker file, then SIGKILLs itself right after that optimizer
// step) }. Exits with the run's exit code.
import { readFileSync, writeFileSync } from "node:fs";
import { resolveConfig } from "../../src/train/config.ts";
import { train } from "../../src/train/loop.ts";
import { launchEnv } from "../../src/parallel/group.ts";

const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const { config } = resolveConfig(job.config);
const rank = launchEnv().rank;
const r = await train(config, {
  rows: job.rows, evalRows: job.evalRows, quiet: true,
  onStep: (step) => { if (job.killAt && job.killAt.rank === rank && job.killAt.step === step) { writeFileSync(job.killAt.marker, String(Date.now())); process.kill(process.pid, "SIGKILL"); } },
});
process.exitCode = r.exitCode;
