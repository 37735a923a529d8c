// The flat parameter layout shared with the native core, and seeded random initialisation of it.
// Not I/O (checkpoint.ts) and not math: the native core reads this table, it does not build its own.
//
// Layout (every offset in floats, rounded up to a multiple of 16 floats = 64 bytes for SIMD; the gaps are 0):
//   model.embed_tokens.weight                     (V, C)
//   for each layer i, prefix model.layers.{i}.:
//     input_layernorm.weight                      (C)
//     self_attn.q_proj.weight                     (NH*HS, C)   \
//     self_attn.k_proj.weight                     (NKV*HS, C)   | contiguous: one stacked (NH+2*NKV)*HS x C matrix
//     self_attn.v_proj.weight                     (NKV*HS, C)  /
//     self_attn.{q,k,v}_proj.bias                 (NH*HS), (NKV*HS), (NKV*HS)  contiguous, when qkvBias
//     self_attn.q_norm.weight, k_norm.weight      (HS), (HS)   when qkNorm
//     self_attn.o_proj.weight                     (C, NH*HS)
//     self_attn.o_proj.bias                       (C)          when oBias
//     post_attention_layernorm.weight             (C)
//     mlp.gate_proj.weight, mlp.up_proj.weight    (I, C), (I, C) contiguous: one stacked 2I x C matrix
//     mlp.down_proj.weight                        (C, I)
//     mlp.gate_proj.bias, up_proj.bias            (I), (I) contiguous, then mlp.down_proj.bias (C)  when mlpBias
//   model.norm.weight                             (C)
//   lm_head.weight                                (V, C)       only when not tieWordEmbeddings
// "Contiguous" groups are packed with no alignment gap between members (so they can be used as one matrix);
// each group as a whole starts aligned. Every member size is a multiple of C or HS, so this only matters
// when those are not multiples of 16.
// decay: true for 2-D weights (embeddings and projections), false for biases and norm weights, as HF Trainer.
import type { DecoderConfig, ParamInfo } from "../core/types.ts";
import { mulberry32 } from "../util/random.ts";

const ALIGN = 16;

const alignUp = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

export function buildParamTable(cfg: DecoderConfig): ParamInfo[] {
  const { vocabSize: V, hiddenSize: C, intermediateSize: I, numLayers: L, numHeads: NH, numKvHeads: NKV, headDim: HS } = cfg;
  const table: ParamInfo[] = [];
  let offset = 0;
  // Each call adds one group; members of a group sit back to back.
  const group = (...members: [string, number[]][]) => {
    offset = alignUp(offset);
    for (const [name, shape] of members) {
      const size = shape.reduce((a, b) => a * b, 1);
      table.push({ name, shape, offset, size, decay: shape.length === 2 });
      offset += size;
    }
  };
  group(["model.embed_tokens.weight", [V, C]]);
  for (let i = 0; i < L; i++) {
    const p = `model.layers.${i}.`;
    group([`${p}input_layernorm.weight`, [C]]);
    group([`${p}self_attn.q_proj.weight`, [NH * HS, C]], [`${p}self_attn.k_proj.weight`, [NKV * HS, C]], [`${p}self_attn.v_proj.weight`, [NKV * HS, C]]);
    if (cfg.qkvBias) group([`${p}self_attn.q_proj.bias`, [NH * HS]], [`${p}self_attn.k_proj.bias`, [NKV * HS]], [`${p}self_attn.v_proj.bias`, [NKV * HS]]);
    if (cfg.qkNorm) {
      group([`${p}self_attn.q_norm.weight`, [HS]]);
      group([`${p}self_attn.k_norm.weight`, [HS]]);
    }
    group([`${p}self_attn.o_proj.weight`, [C, NH * HS]]);
    if (cfg.oBias) group([`${p}self_attn.o_proj.bias`, [C]]);
    group([`${p}post_attention_layernorm.weight`, [C]]);
    group([`${p}mlp.gate_proj.weight`, [I, C]], [`${p}mlp.up_proj.weight`, [I, C]]);
    group([`${p}mlp.down_proj.weight`, [C, I]]);
    if (cfg.mlpBias) {
      group([`${p}mlp.gate_proj.bias`, [I]], [`${p}mlp.up_proj.bias`, [I]]);
      group([`${p}mlp.down_proj.bias`, [C]]);
    }
  }
  group(["model.norm.weight", [C]]);
  if (!cfg.tieWordEmbeddings) group(["lm_head.weight", [V, C]]);
  return table;
}

/** Floats needed for a buffer holding the whole table (end of the last tensor, rounded up to 16). */
export function paramBufferSize(table: readonly ParamInfo[]): number {
  let end = 0;
  for (const p of table) end = Math.max(end, p.offset + p.size);
  return alignUp(end);
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
