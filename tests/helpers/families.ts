// Test helpers for the model families beyond the Llama shape: whether the native core lays them out (the ABI 13
// decoder), to skip (with the reason) the tests that need it on a core that does not, and tiny configs of each family.
import { paramLayout } from "../../src/core/native.ts";
import type { DecoderConfig } from "../../src/core/types.ts";
import { parseConfig } from "../../src/models/config.ts";

/** A tiny config.json of each family (random-weight sized), as the family's config class reads it. */
export const TINY_FAMILY_JSON: Record<string, Record<string, unknown>> = {
  gemma2: { architectures: ["Gemma2ForCausalLM"], vocab_size: 64, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 8, query_pre_attn_scalar: 6, sliding_window: 4, max_position_embeddings: 64 },
  gemma3: { architectures: ["Gemma3ForCausalLM"], vocab_size: 64, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 3, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 8, sliding_window: 4, sliding_window_pattern: 3, rope_local_base_freq: 100, rope_theta: 1e4, max_position_embeddings: 64 },
  phi: { architectures: ["PhiForCausalLM"], vocab_size: 64, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 2, partial_rotary_factor: 0.5, max_position_embeddings: 64 },
  phi3: { architectures: ["Phi3ForCausalLM"], vocab_size: 64, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1, partial_rotary_factor: 0.5, max_position_embeddings: 64 },
  gpt_neox: { architectures: ["GPTNeoXForCausalLM"], vocab_size: 64, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 2, rotary_pct: 0.5, max_position_embeddings: 64 },
  opt: { architectures: ["OPTForCausalLM"], vocab_size: 64, hidden_size: 16, ffn_dim: 24, num_hidden_layers: 2, num_attention_heads: 2, max_position_embeddings: 64 },
};
export const tinyFamily = (name: keyof typeof TINY_FAMILY_JSON): DecoderConfig => parseConfig(TINY_FAMILY_JSON[name], `tiny ${name}`);

let known: boolean | null = null;
/** Whether the native core lays out the family features of ABI 13 (an OPT config gets OPT's tensor names). */
export function coreHasFamilies(): boolean {
  if (known === null) {
    try {
      known = paramLayout(tinyFamily("opt")).table.some((p) => p.name === "model.decoder.embed_positions.weight");
    } catch {
      known = false;
    }
  }
  return known;
}

/** For a test's skip option: false on a core with the families, else the reason the test waits. */
export const waitsForCore = (): false | string => !coreHasFamilies() && "waits for the native core's family layouts (pt_config's arch, ABI 13 decoder)";

/** Whether a config uses any family feature beyond the Llama shape (so its layout needs the ABI 13 decoder). */
export function usesFamilyFeatures(c: DecoderConfig): boolean {
  const keys: (keyof DecoderConfig)[] = ["arch", "normType", "normUnitOffset", "sandwichNorms", "parallelResidual", "mlpPlain", "mlpAct", "rotaryDim",
    "headBias", "positionRows", "positionOffset", "embedScale", "attnScale", "attnSoftcap", "finalSoftcap", "ropeLocalTheta"];
  return keys.some((k) => c[k] !== undefined) || (c.layerRope ?? []).some((r) => r === "local");
}
