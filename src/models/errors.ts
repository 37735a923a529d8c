// ModelLoadError: a model or adapter folder that cannot be loaded (missing or malformed config.json, weights
// that do not match it, an unsupported architecture, an adapter for another base). Carries the folder; the
// message says what is wrong and what to do. Not for bad training data (src/data/errors.ts DataError).
export class ModelLoadError extends Error {
  readonly dir: string;
  constructor(dir: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ModelLoadError";
    this.dir = dir;
  }
}

/** Runs `load`; any error it throws comes out as a ModelLoadError for `dir` (one already is passes through). */
export function asModelLoadError<T>(dir: string, load: () => T): T {
  try {
    return load();
  } catch (e) {
    if (e instanceof ModelLoadError) throw e;
    throw new ModelLoadError(dir, (e as Error).message, { cause: e });
  }
}
