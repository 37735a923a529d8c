// What the bench runners share: the repository root, the command-line options they have in common (model shape
// file, threads, and for the training runners steps, warmup and sequence length), and which Python interpreter the
// peers run: $PREFTUNE_PYTHON when set, else the first of python3, /usr/bin/python3 and python that can import what
// the peer needs. Not a test helper: tests never need Python.
import { spawnSync } from "node:child_process";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** parseArgs options of every runner: the model shape (a config.json) and the thread count of both sides. */
export const MODEL_OPTIONS = {
  config: { type: "string", default: "bench/configs/smollm2-135m.json" },
  threads: { type: "string", default: "2" },
} as const;

/** parseArgs options of the training runners: timed and warm-up steps, and the sequence length. */
export const STEP_OPTIONS = {
  steps: { type: "string", default: "3" },
  warmup: { type: "string", default: "1" },
  seq: { type: "string", default: "512" },
} as const;

/** Older names of PREFTUNE_PYTHON, still read (one runner each used its own). */
const OLD_NAMES = ["PREFTUNE_PY", "PREFTUNE_TORCH_PYTHON", "PREFTUNE_TRL_PYTHON"];

/**
 * The interpreter that imports every module of `modules`, or null with the reason (what was tried, what to set).
 * A PREFTUNE_PYTHON that cannot import them is reported, not silently passed over.
 */
export function findPython(modules: readonly string[]): { python: string | null; why: string } {
  const chosen = process.env.PREFTUNE_PYTHON || OLD_NAMES.map((n) => process.env[n]).find((v) => !!v);
  const candidates = chosen ? [chosen] : ["python3", "/usr/bin/python3", "python"];
  const probe = `import ${modules.join(", ")}`;
  for (const c of candidates) {
    if (spawnSync(c, ["-c", probe], { stdio: "ignore" }).status === 0) return { python: c, why: "" };
  }
  return {
    python: null,
    why: `no python that can \`${probe}\` (tried ${candidates.join(", ")}); set PREFTUNE_PYTHON to an interpreter that has ${modules.join(", ")}`,
  };
}
