// Run guards: a non-finite loss or gradient norm stops training before the optimizer can spread it into
// the weights, with a message naming the step and the last good checkpoint; SIGINT/SIGTERM ask the loop to
// save a checkpoint and stop at the next step boundary (a second signal quits at once).
// Not recovery: nothing here skips batches or lowers the learning rate.

export class TrainingDivergedError extends Error {
  constructor(readonly step: number, readonly what: string, readonly value: number, readonly lastCheckpoint: string | null, detail?: string) {
    const where = lastCheckpoint
      ? `the last good checkpoint is ${lastCheckpoint} (resume with resume_from_checkpoint: ${lastCheckpoint}, perhaps with a lower learning_rate)`
      : "no checkpoint was saved before it (lower learning_rate, or check the data and the model)";
    super(`training stopped: ${what} is ${value} at step ${step}; ${where}${detail ? ` [${detail}]` : ""}`);
    this.name = "TrainingDivergedError";
  }
}

/** Throws TrainingDivergedError unless v is finite. `step` is the 1-based optimizer step being computed. */
export function checkFinite(what: string, v: number, step: number, lastCheckpoint: string | null): void {
  if (!Number.isFinite(v)) throw new TrainingDivergedError(step, what, v, lastCheckpoint);
}

/**
 * The losses refuse non-finite per-sequence inputs with an error of their own; when that happens during a
 * step (or the weights themselves went non-finite) it is the same divergence, reported the same way.
 */
export function asDivergence(e: unknown, step: number, lastCheckpoint: string | null, weights: Float32Array): unknown {
  if (e instanceof TrainingDivergedError || !(e instanceof Error)) return e;
  for (let i = 0; i < weights.length; i++) {
    if (!Number.isFinite(weights[i])) return new TrainingDivergedError(step, "a model weight", weights[i], lastCheckpoint, e.message);
  }
  if (/\bNaN\b|Infinity|\binf\b|not finite|must be finite/.test(e.message)) return new TrainingDivergedError(step, "a log-prob", Number.NaN, lastCheckpoint, e.message);
  return e;
}

/** Exit code of a process stopped by a signal, as shells report it (SIGINT 130, SIGTERM 143). */
export const SIGNAL_EXIT_CODES: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGUSR2: 140 };

export interface StopRequest {
  /** The signal that asked to stop, or null. */
  readonly signal: NodeJS.Signals | null;
  dispose(): void;
}

/**
 * Installs SIGINT, SIGTERM and SIGUSR2 handlers for the duration of a run (SIGUSR2: what Open MPI's mpirun
 * passes on to every rank, so `kill -USR2 <mpirun's pid>` stops a multi-process run with a checkpoint; mpirun
 * itself answers SIGINT and SIGTERM by ending the ranks). The first signal only records the
 * request (the loop checks it after each optimizer step, saves a checkpoint and returns); a second one
 * exits immediately with the signal's exit code. The loop must yield to the event loop between steps for
 * the handler to run.
 */
export function watchStopSignals(onFirst: (signal: NodeJS.Signals) => void): StopRequest {
  const state = { signal: null as NodeJS.Signals | null };
  const handler = (sig: NodeJS.Signals) => {
    if (state.signal) {
      process.stderr.write(`\n${sig} again: quitting without saving\n`);
      process.exit(SIGNAL_EXIT_CODES[sig] ?? 1);
    }
    state.signal = sig;
    onFirst(sig);
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
  process.on("SIGUSR2", handler);
  return {
    get signal() { return state.signal; },
    dispose() {
      process.off("SIGINT", handler);
      process.off("SIGTERM", handler);
      process.off("SIGUSR2", handler);
    },
  };
}
