// GPT-NeoX's fused attention.query_key_value row order and the core's: a checkpoint (and a PEFT lora_B on it) holds
// the rows per head, [q_0 | k_0 | v_0 | q_1 | k_1 | v_1 | ...], each block head_size rows (transformers views the
// output as (.., heads, 3 * head_size) and chunks it in three); the native core holds them q|k|v-stacked,
// [q_0 .. q_{NH-1} | k_0 .. | v_0 ..], as every other arch does. These permute whole rows, of any width (a weight
// (3·NH·HS, C), a bias (3·NH·HS), a lora_B (3·NH·HS, r)).
// Not the loader or the saver (they call these) and not the attention math.

/** Row index maps of the two layouts: stacked row (j·NH + h)·HS + d holds checkpoint row (h·3 + j)·HS + d. */
function permuteRows(data: Float32Array, numHeads: number, headSize: number, toStacked: boolean): Float32Array {
  const rows = 3 * numHeads * headSize;
  if (data.length % rows !== 0) throw new Error(`query_key_value: ${data.length} values are not rows of 3 × ${numHeads} heads × ${headSize}`);
  const cols = data.length / rows;
  const out = new Float32Array(data.length);
  for (let h = 0; h < numHeads; h++) {
    for (let j = 0; j < 3; j++) {
      const neox = (h * 3 + j) * headSize * cols, stacked = (j * numHeads + h) * headSize * cols;
      const [from, to] = toStacked ? [neox, stacked] : [stacked, neox];
      out.set(data.subarray(from, from + headSize * cols), to);
    }
  }
  return out;
}

/** Checkpoint (per-head interleaved) rows of query_key_value (3·NH·HS rows of any width) → q|k|v-stacked rows. */
export const neoxQkvToStacked = (data: Float32Array, numHeads: number, headSize: number): Float32Array =>
  permuteRows(data, numHeads, headSize, true);

/** q|k|v-stacked rows → the checkpoint's per-head interleaved rows of query_key_value. */
export const stackedToNeoxQkv = (data: Float32Array, numHeads: number, headSize: number): Float32Array =>
  permuteRows(data, numHeads, headSize, false);
