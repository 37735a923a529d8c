// Which Python interpreter the bench peers run: $PREFTUNE_PYTHON when set, else the first of python3,
// /usr/bin/python3 and python that can import what the peer needs. The one place every bench runner asks.
// Not a test helper: tests never need Python.
import { spawnSync } from "node:child_process";

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
