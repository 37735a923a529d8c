// The grid of a sweep: `--grid KEY=V1,V2,...` axes (and a base config's `grid:` mapping) checked against the
// train config schema (src/train/config.ts), their cartesian product as cells, and each cell's folder name.
// Not the running of cells (run.ts) and not the comparison table (table.ts).
import { ConfigError, SCHEMA, unknownKeyMessage, type ConfigKey } from "../train/config.ts";

/** One axis: a config key and its values (typed as the schema reads them), with the text of each for folder names. */
export interface GridAxis { key: ConfigKey; values: unknown[]; labels: string[] }

/** One run of the sweep: its folder name under cells/ and the config values it sets. */
export interface Cell { name: string; values: Record<string, unknown> }

/** Keys the sweep sets itself for every cell. */
const SWEEP_OWNED = new Set(["output_dir", "resume_from_checkpoint"]);

const isKey = (k: string): k is ConfigKey => Object.hasOwn(SCHEMA, k);
type SchemaField = { type: string; check(v: unknown): unknown; cli(s: string): unknown };
const fieldOf = (k: ConfigKey) => (SCHEMA as unknown as Record<string, SchemaField>)[k];

/** "beta=0.01,0.1" → key and the value texts; a JSON list after = (`key=[...]`) gives values holding commas. */
export function splitGridArg(arg: string): { key: string; raw: unknown[]; fromText: boolean } {
  const eq = arg.indexOf("=");
  if (eq <= 0) throw new ConfigError(`--grid ${JSON.stringify(arg)}: write KEY=V1,V2,... (e.g. --grid beta=0.01,0.1,0.3)`);
  const key = arg.slice(0, eq).trim().toLowerCase().replace(/-/g, "_");
  const rest = arg.slice(eq + 1).trim();
  if (rest.startsWith("[")) {
    let list: unknown;
    try { list = JSON.parse(rest); } catch (e) { throw new ConfigError(`--grid ${key}: ${JSON.stringify(rest)} is not a JSON list (${(e as Error).message})`); }
    if (!Array.isArray(list)) throw new ConfigError(`--grid ${key}: give a JSON list of values`);
    return { key, raw: list, fromText: false };
  }
  return { key, raw: rest === "" ? [] : rest.split(",").map((s) => s.trim()), fromText: true };
}

/** A value as text for a folder name: no path separators, no commas or = (they separate keys), nothing odd. */
export function valueLabel(v: unknown): string {
  const s = typeof v === "string" ? v : JSON.stringify(v);
  return s.replace(/[^A-Za-z0-9._+-]+/g, "_").replace(/^_+|_+$/g, "").slice(0, 60) || "_";
}

/**
 * Checks one axis: a known config key the sweep does not set itself, at least one value, each value of the
 * key's type (command-line text is read as `preftune train --key value` reads it), no value twice.
 * `where` names the source in messages ("--grid", or the config file).
 */
export function checkAxis(key: string, raw: readonly unknown[], fromText: boolean, where: string): GridAxis {
  const at = `${where} ${key}`;
  if (!isKey(key)) throw new ConfigError(`${at}: ${unknownKeyMessage(key)}`);
  if (SWEEP_OWNED.has(key)) throw new ConfigError(`${at}: the sweep sets ${key} for each cell itself (output_dir/cells/<cell>/); it cannot be a grid axis`);
  if (raw.length === 0) throw new ConfigError(`${at}: no values; give at least one, e.g. ${key}=V1,V2`);
  const f = fieldOf(key);
  const values = raw.map((r) => {
    const v = fromText && typeof r === "string" ? f.cli(r) : r;
    try { return f.check(v); } catch (e) {
      throw new ConfigError(`${at}: ${JSON.stringify(r)} is not a valid ${key}: ${key} takes ${f.type} (${(e as Error).message})`);
    }
  });
  const labels = values.map(valueLabel);
  const dup = labels.find((l, i) => labels.indexOf(l) !== i);
  if (dup !== undefined) throw new ConfigError(`${at}: the value ${dup} is given twice (or two values share the folder name ${dup}); list each value once`);
  return { key, values, labels };
}

/** Axes from the base config's `grid:` mapping, then the command line's --grid axes (which replace a file axis of the same key). */
export function gridAxes(fileGrid: unknown, args: readonly string[], file: string | null): GridAxis[] {
  const axes: GridAxis[] = [];
  if (fileGrid !== undefined && fileGrid !== null) {
    if (typeof fileGrid !== "object" || Array.isArray(fileGrid)) throw new ConfigError(`${file ?? "config"}: grid must be a mapping of key: [values]`);
    for (const [k, v] of Object.entries(fileGrid as Record<string, unknown>)) {
      axes.push(checkAxis(k, Array.isArray(v) ? v : [v], false, `${file ?? "config"}: grid:`));
    }
  }
  const seen = new Set<string>();
  for (const a of args) {
    const { key, raw, fromText } = splitGridArg(a);
    if (seen.has(key)) throw new ConfigError(`--grid ${key} is given twice; list all its values in one --grid ${key}=V1,V2,...`);
    seen.add(key);
    const axis = checkAxis(key, raw, fromText, "--grid");
    const i = axes.findIndex((x) => x.key === axis.key);
    if (i >= 0) axes[i] = axis; else axes.push(axis);
  }
  if (axes.length === 0) throw new ConfigError("no grid: give at least one --grid KEY=V1,V2,... (or a grid: mapping in the config file)");
  return axes;
}

/** Every combination of the axes' values, the first axis outermost; names are key=value joined with commas. */
export function gridCells(axes: readonly GridAxis[]): Cell[] {
  let cells: Cell[] = [{ name: "", values: {} }];
  for (const a of axes) {
    cells = cells.flatMap((c) => a.values.map((v, i) => ({
      name: c.name ? `${c.name},${a.key}=${a.labels[i]}` : `${a.key}=${a.labels[i]}`,
      values: { ...c.values, [a.key]: v },
    })));
  }
  return cells;
}
