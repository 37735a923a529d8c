// GPT-NeoX's fused attention.query_key_value in two row orders: the checkpoint's (transformers views the output as
// (heads, 3 · head_size) and chunks q, k, v per head: rows [q_0 | k_0 | v_0 | q_1 | k_1 | v_1 | ...], each block
// head_size rows) and the native core's q | k | v stack (every head's q rows, then every k, then every v), which every
// arch shares. The permutation both ways for anything with those rows: the weight (3·NH·HS, C), its bias (3·NH·HS), a
// LoRA B (3·NH·HS, r) and a DoRA magnitude (3·NH·HS); which tensors of a model or an adapter it applies to; and the
// heads it needs, from a config. Not the file I/O (checkpoint.ts and peft.ts call these at their boundaries).
import type { DecoderConfig } from "../core/types.ts";
import { describeModel } from "./family.ts";

type Rows = Float32Array | Uint16Array;

/** data (3·H·S rows of equal length, row-major) with its rows in the other order; a new array of the same type. */
function permuteRows<T extends Rows>(data: T, numHeads: number, headSize: number, toStacked: boolean): T {
  const H = numHeads, S = headSize, R = 3 * H * S;
  if (!(Number.isInteger(H) && H > 0 && Number.isInteger(S) && S > 0)) throw new Error(`query_key_value rows: numHeads ${H} and headSize ${S} must be positive integers`);
  const cols = data.length / R;
  if (!Number.isInteger(cols) || cols < 1) throw new Error(`query_key_value rows: ${data.length} values are not 3 × ${H} heads × ${S} rows of equal length`);
  const out = new (data.constructor as new (n: number) => T)(data.length);
  for (let h = 0; h < H; h++) {
    for (let part = 0; part < 3; part++) {
      const neox = (h * 3 + part) * S, stacked = (part * H + h) * S;   // first row of this block in each order
      const from = (toStacked ? neox : stacked) * cols, to = (toStacked ? stacked : neox) * cols;
      out.set(data.subarray(from, from + S * cols), to);
    }
  }
  return out;
}

/**
 * Rows of query_key_value (weight (3·NH·HS, C), bias (3·NH·HS), LoRA B (3·NH·HS, r), DoRA magnitude (3·NH·HS)) from
 * the checkpoint's per-head order [q_0 | k_0 | v_0 | q_1 | ...] to the core's q | k | v stack; a new array.
 */
export function neoxQkvToStacked<T extends Rows>(rows: T, numHeads: number, headSize: number): T {
  return permuteRows(rows, numHeads, headSize, true);
}

/** The inverse of neoxQkvToStacked: the core's q | k | v stack back to the checkpoint's per-head order; a new array. */
export function stackedToNeoxQkv<T extends Rows>(rows: T, numHeads: number, headSize: number): T {
  return permuteRows(rows, numHeads, headSize, false);
}

/** A model's tensors the checkpoint holds per head: every layer's query_key_value weight and bias. */
export const isNeoxQkv = (name: string) => /^gpt_neox\.layers\.\d+\.attention\.query_key_value\.(weight|bias)$/.test(name);

/** An adapter's tensors with query_key_value's rows: its lora_B and DoRA magnitude (lora_A's rows are the rank). */
export const isNeoxQkvAdapter = (name: string) => /^base_model\.model\.gpt_neox\.layers\.\d+\.attention\.query_key_value\.(lora_B\.weight|lora_magnitude_vector)$/.test(name);

/** The heads a GPT-NeoX config.json's query_key_value has (its file names only messages); null for another family. */
export function neoxHeadsOfJson(configJson: unknown, file: string): { numHeads: number; headSize: number } | null {
  const d = describeModel(configJson, file);
  return d.family === "gpt_neox" ? { numHeads: d.numHeads, headSize: d.headDim } : null;
}

/** The heads of a GPT-NeoX DecoderConfig's query_key_value; null for another arch. */
export function neoxHeadsOf(c: DecoderConfig): { numHeads: number; headSize: number } | null {
  return c.arch === "gpt_neox" ? { numHeads: c.numHeads, headSize: c.headDim } : null;
}
