// The flat parameter layout as the native core defines it (read from it, before any model buffer exists), its
// checks, and seeded random initialisation of a buffer laid out by it.
// Not I/O (checkpoint.ts) and not the layout itself: native/src/decoder.cpp (build_layout) is its one definition —
// every tensor starts on a 16-float (64-byte) boundary except the members of the stacked q|k|v and gate|up matrices
// (and their biases), which sit back to back; gaps are 0. decay: true for 2-D weights, false for biases and norms.
import { paramLayout } from "../core/native.ts";
import type { DecoderConfig, ParamInfo } from "../core/types.ts";
import { mulberry32 } from "../util/random.ts";

/** The parameter table a model of `cfg` has (the core's layout; no model is created). */
export function buildParamTable(cfg: DecoderConfig): ParamInfo[] {
  return paramLayout(cfg).table;
}

/** Floats of the parameter buffer a model of `cfg` allocates (the core's layout; nothing is allocated). */
export function paramBufferSize(cfg: DecoderConfig): number {
  return paramLayout(cfg).numFloats;
}

/** Throws unless every entry's size matches its shape and lies inside a buffer of n floats. */
export function checkTable(table: readonly ParamInfo[], n: number, what: string): void {
  for (const p of table) {
    const size = p.shape.reduce((a, b) => a * b, 1);
    if (p.size !== size) throw new Error(`${what}: parameter ${p.name} has size ${p.size} but shape [${p.shape.join(", ")}]`);
    if (p.offset < 0 || p.offset + p.size > n) throw new Error(`${what}: parameter ${p.name} [${p.offset}, ${p.offset + p.size}) lies outside the ${n}-float buffer`);
  }
}

/**
 * Seeded init, HF-style: 2-D weights ~ N(0, std²), biases 0, norm weights 1, alignment gaps 0. Normals come
 * from Box–Muller on mulberry32 uniforms, both outputs used, continuing across tensors in table order (a
 * tensor of odd size hands its spare to the next). Same seed and table -> same bits on any machine.
 */
export function randomInit(table: readonly ParamInfo[], params: Float32Array, seed: number, std = 0.02): void {
  checkTable(table, params.length, "randomInit");
  params.fill(0);
  const uniform = mulberry32(seed);
  let spare = 0;
  let haveSpare = false;
  for (const p of table) {
    const v = params.subarray(p.offset, p.offset + p.size);
    if (p.name.endsWith(".bias")) continue; // already 0
    if (p.shape.length === 1) {
      v.fill(1);
      continue;
    }
    let i = 0;
    if (haveSpare && v.length > 0) {
      v[i++] = spare * std;
      haveSpare = false;
    }
    while (i < v.length) {
      const u1 = 1 - uniform(); // (0, 1]: keeps the log finite
      const u2 = uniform();
      const r = Math.sqrt(-2 * Math.log(u1));
      const a = 2 * Math.PI * u2;
      v[i++] = r * Math.cos(a) * std;
      if (i < v.length) v[i++] = r * Math.sin(a) * std;
      else {
        spare = r * Math.sin(a);
        haveSpare = true;
      }
    }
  }
}
