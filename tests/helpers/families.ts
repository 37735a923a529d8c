// Test helper for the model families beyond the Llama shape: tiny configs of each family.
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
