// The process group of a data-parallel run: which rank this process is, how many there are (in the world and on
// this machine), sums and means over every rank in place, a barrier, and ending the whole job when one rank
// fails. Backed by Open MPI, loaded at run time by the native core (native/src/mpi.cpp), so nothing here needs
// MPI unless the process was started by mpirun with more than one rank. Not here: which rows a rank reads and
// what the trainer reduces when (shard.ts).
import { availableParallelism, cpus } from "node:os";
import { native } from "../core/native.ts";

/** What to install where MPI is missing: named once, for every message that needs it. */
export const MPI_INSTALL = "Open MPI (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev; Homebrew: brew install open-mpi; the run needs libmpi.so.40 and mpirun)";

/** Environment variable naming the MPI library to load (default: Open MPI 4/5's, found through the loader's path). */
export const MPI_LIB_ENV = "PREFTUNE_MPI_LIB";
const DEFAULT_MPI_LIB = process.platform === "darwin" ? "libmpi.40.dylib" : "libmpi.so.40";

/**
 * Floats per all-reduce call on gradients: 16 Mi floats (64 MiB). Large enough that the per-call latency is
 * negligible, small enough that Open MPI's pipelined ring keeps its buffers in memory it already holds.
 */
export const GRAD_BUCKET = 1 << 24;

export interface ProcessGroup {
  readonly rank: number;           // 0 … worldSize−1 (MPI_COMM_WORLD)
  readonly worldSize: number;
  readonly localRank: number;      // rank among the processes on this machine
  readonly localSize: number;      // processes of the job on this machine
  readonly isMainProcess: boolean; // rank 0: the one that writes files and logs
  /** Σ over ranks, in place (a Float32Array goes in buckets of GRAD_BUCKET floats). */
  allReduceSum(buf: Float32Array | Float64Array): void;
  /** Mean over ranks, in place. */
  allReduceMean(buf: Float32Array | Float64Array): void;
  /**
   * The gradient sum overlapped with the next backward: begin arms it over `grads`, whose layer l lies at
   * [layerRanges[2l], layerRanges[2l+1]); the backward starts each layer's sum as soon as that layer is done;
   * end waits for them and sums the `rest` ranges (start, end pairs) that no layer covers, and returns how many
   * layers the backward started. Same result as allReduceSum(grads). Between the two, other collectives may
   * run, in the same order on every rank.
   */
  overlapBegin(grads: Float32Array, layerRanges: Float64Array): void;
  overlapEnd(rest: Float64Array): number;
  barrier(): void;
  /**
   * Says every rank has finished its run (after a last barrier): from then on a non-zero exit (a stop by
   * signal) no longer aborts the job, which would kill ranks still finishing.
   */
  settle(): void;
  /** Prints `message` (prefixed with this rank) and ends every rank of the job with `code`. Does not return. */
  abort(message: string, code?: number): never;
}

/** The launcher's view of the job, read from the environment mpirun (Open MPI) or a PMI launcher sets. */
export interface LaunchEnv { worldSize: number; rank: number; localRank: number; localSize: number; launcher: string | null }

function intVar(env: NodeJS.ProcessEnv, ...names: string[]): number | null {
  for (const n of names) {
    const v = env[n];
    if (v !== undefined && /^\d+$/.test(v.trim())) return Number(v);
  }
  return null;
}

export function launchEnv(env: NodeJS.ProcessEnv = process.env): LaunchEnv {
  const worldSize = intVar(env, "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE") ?? 1;
  const rank = intVar(env, "OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK") ?? 0;
  const localRank = intVar(env, "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PMI_LOCAL_RANK") ?? 0;
  const localSize = intVar(env, "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "PMI_LOCAL_SIZE") ?? 1;
  const launcher = env.OMPI_COMM_WORLD_SIZE !== undefined ? "mpirun (Open MPI)" : env.PMI_SIZE !== undefined || env.PMIX_SIZE !== undefined ? "a PMI launcher" : null;
  return { worldSize, rank, localRank, localSize, launcher };
}

/** One process: every collective is the identity. */
class SingleProcess implements ProcessGroup {
  readonly rank = 0; readonly worldSize = 1; readonly localRank = 0; readonly localSize = 1; readonly isMainProcess = true;
  allReduceSum(): void {}
  allReduceMean(): void {}
  overlapBegin(): void {}
  overlapEnd(): number { return 0; }
  barrier(): void {}
  settle(): void {}
  abort(message: string, code = 1): never {
    process.stderr.write(message + "\n");
    process.exit(code);
  }
}

class MpiGroup implements ProcessGroup {
  readonly isMainProcess: boolean;
  settled = false;
  constructor(readonly rank: number, readonly worldSize: number, readonly localRank: number, readonly localSize: number) {
    this.isMainProcess = rank === 0;
  }
  allReduceSum(buf: Float32Array | Float64Array): void {
    native().mpiAllreduceSum(buf, GRAD_BUCKET);
  }
  allReduceMean(buf: Float32Array | Float64Array): void {
    native().mpiAllreduceSum(buf, GRAD_BUCKET);
    const s = 1 / this.worldSize;
    for (let i = 0; i < buf.length; i++) buf[i] *= s;
  }
  overlapBegin(grads: Float32Array, layerRanges: Float64Array): void {
    native().mpiOverlapBegin(grads, layerRanges);
  }
  overlapEnd(rest: Float64Array): number {
    return native().mpiOverlapEnd(rest, GRAD_BUCKET);
  }
  barrier(): void {
    native().mpiBarrier();
  }
  settle(): void {
    this.settled = true;
  }
  abort(message: string, code = 1): never {
    process.stderr.write(`[rank ${this.rank}/${this.worldSize}] ${message}\n[rank ${this.rank}/${this.worldSize}] ending every rank of the job (MPI_Abort)\n`);
    native().mpiAbort(code);
    process.exit(code);   // not reached: MPI_Abort ends the process
  }
}

let group: ProcessGroup | null = null;

/**
 * The process group of this process, created on first use: one process unless the launcher's environment says
 * the job has more than one rank (mpirun -np N, or PMI_SIZE), in which case MPI is initialized (its library
 * loaded from PREFTUNE_MPI_LIB, else Open MPI's libmpi) and the run is refused, naming what to install, when that
 * fails.
 */
export function processGroup(): ProcessGroup {
  if (group) return group;
  const env = process.env;
  const launch = launchEnv(env);
  if (launch.worldSize <= 1) return (group = new SingleProcess());
  const lib = env[MPI_LIB_ENV] || DEFAULT_MPI_LIB;
  let info: { rank: number; size: number };
  try {
    info = native().mpiInit(lib);
  } catch (e) {
    throw new Error(`this process was started by ${launch.launcher} as one of ${launch.worldSize} ranks, which needs MPI, and MPI cannot be used here: ${(e as Error).message}. Install ${MPI_INSTALL} on every machine of the job${env[MPI_LIB_ENV] ? ` (or fix ${MPI_LIB_ENV}=${env[MPI_LIB_ENV]})` : ""}, or run a single process without mpirun`);
  }
  const mpi = new MpiGroup(info.rank, info.size, launch.localRank, launch.localSize);
  if (info.size !== launch.worldSize) {
    const msg = `MPI reports ${info.size} rank(s) but ${launch.launcher} announced ${launch.worldSize}: the MPI library (${lib}) is not the one mpirun belongs to`;
    if (info.size > 1) mpi.abort(msg);
    throw new Error(msg);
  }
  endWithTheJob(mpi);
  return (group = mpi);
}

/**
 * Ties this process's end to the job's: a normal exit finalizes MPI (Open MPI counts a rank that exits
 * without MPI_Finalize as failed), an exception or a non-zero exit aborts every rank at once so no peer waits
 * forever in a collective for a rank that is gone.
 */
function endWithTheJob(g: MpiGroup): void {
  process.on("uncaughtException", (e) => g.abort(`error: ${e instanceof Error ? e.stack ?? e.message : String(e)}`, 1));
  process.on("unhandledRejection", (e) => g.abort(`error: ${e instanceof Error ? e.stack ?? e.message : String(e)}`, 1));
  process.on("exit", (code) => {
    if (code !== 0 && !g.settled) g.abort(`exiting with code ${code}`, code);
    try { native().mpiFinalize(); } catch { /* already gone: nothing left to tell the peers */ }
  });
}

/**
 * Native threads per rank when the config leaves `threads` at 0: the cores the launcher bound this process to
 * when it bound it to fewer than the machine has (mpirun --map-by …:PE=n), else the machine's cores ÷ the ranks
 * on it, so `mpirun -np 2` on a 2-core machine runs one thread per rank instead of oversubscribing.
 */
export function defaultThreads(g: Pick<ProcessGroup, "localSize">): number {
  const machine = cpus().length, mine = availableParallelism();
  if (mine < machine) return Math.max(1, mine);
  return Math.max(1, Math.floor(machine / Math.max(1, g.localSize)));
}

/**
 * A note when the launcher bound this rank to fewer cores than its share of the machine (Open MPI binds each
 * rank to one core when it starts 2 or fewer), else null.
 */
export function bindingNote(g: Pick<ProcessGroup, "localSize">): string | null {
  const machine = cpus().length, mine = availableParallelism(), share = Math.floor(machine / Math.max(1, g.localSize));
  if (mine >= share) return null;
  return `mpirun bound each rank to ${mine} core(s) of this machine's ${machine} (${g.localSize} rank(s) here could use ${share} each): start with \`mpirun --bind-to none\` or \`--map-by ppr:${g.localSize}:node:PE=${share}\``;
}
