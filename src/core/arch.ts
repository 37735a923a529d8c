// The native core's per-arch naming facts that TypeScript needs beside the parameter table the core reports
// (native/include/preftune.h: PT_ARCH_*, PT_ACT_*, PT_LORA_*): the codes of pt_config's arch and mlp_act, each arch's
// LoRA modules (PEFT's module names, where they sit in a layer, the PT_LORA_* bits that select them, their shapes),
// and the names of the token embedding and the output head. Not the tensor table itself (pt_param_layout is its one
// definition) and no I/O.
import type { Activation, DecoderArch, DecoderConfig, LoraTarget, ParamInfo } from "./types.ts";

export const ARCH_CODE: Readonly<Record<DecoderArch, number>> = { llama: 0, phi3: 1, phi: 2, gpt_neox: 3, opt: 4 };  // PT_ARCH_*
export const ACT_CODE: Readonly<Record<Activation, number>> = { silu: 0, gelu_tanh: 1, gelu: 2, relu: 3 };        // PT_ACT_*

// PT_LORA_* bits
const Q = 1, K = 2, V = 4, O = 8, GATE = 16, UP = 32, DOWN = 64, PROJECT_IN = 128, PROJECT_OUT = 256;

/** One linear module that a LoRA adapter can target: of each decoder layer, or (top) one of the whole model. */
export interface LoraModule {
  name: LoraTarget;                                  // PEFT's target_modules name
  path: string;                                      // where it sits in a layer, e.g. "self_attn.q_proj"; top: in the model
  bits: number;                                      // the PT_LORA_* bits that select it (a fused module: several)
  dims: (c: DecoderConfig) => [inF: number, outF: number];
  top?: boolean;                                     // once per model, not per layer (OPT's project_in / project_out)
}

type Dims = LoraModule["dims"];
const C_: Dims = (c) => [c.hiddenSize, c.numHeads * c.headDim];
const Q_IN: Dims = (c) => [c.numHeads * c.headDim, c.hiddenSize];
const KV: Dims = (c) => [c.hiddenSize, c.numKvHeads * c.headDim];
const QKV: Dims = (c) => [c.hiddenSize, (c.numHeads + 2 * c.numKvHeads) * c.headDim];
const UP_: Dims = (c) => [c.hiddenSize, c.intermediateSize];
const DOWN_: Dims = (c) => [c.intermediateSize, c.hiddenSize];
const m = (name: LoraTarget, path: string, bits: number, dims: Dims): LoraModule => ({ name, path, bits, dims });

// Per arch, in the order of the core's table (attention first, then the MLP).
const MODULES: Readonly<Record<DecoderArch, readonly LoraModule[]>> = {
  llama: [m("q_proj", "self_attn.q_proj", Q, C_), m("k_proj", "self_attn.k_proj", K, KV), m("v_proj", "self_attn.v_proj", V, KV),
    m("o_proj", "self_attn.o_proj", O, Q_IN), m("gate_proj", "mlp.gate_proj", GATE, UP_), m("up_proj", "mlp.up_proj", UP, UP_),
    m("down_proj", "mlp.down_proj", DOWN, DOWN_)],
  phi3: [m("qkv_proj", "self_attn.qkv_proj", Q | K | V, QKV), m("o_proj", "self_attn.o_proj", O, Q_IN),
    m("gate_up_proj", "mlp.gate_up_proj", GATE | UP, (c) => [c.hiddenSize, 2 * c.intermediateSize]), m("down_proj", "mlp.down_proj", DOWN, DOWN_)],
  phi: [m("q_proj", "self_attn.q_proj", Q, C_), m("k_proj", "self_attn.k_proj", K, KV), m("v_proj", "self_attn.v_proj", V, KV),
    m("dense", "self_attn.dense", O, Q_IN), m("fc1", "mlp.fc1", UP, UP_), m("fc2", "mlp.fc2", DOWN, DOWN_)],
  gpt_neox: [m("query_key_value", "attention.query_key_value", Q | K | V, QKV), m("dense", "attention.dense", O, Q_IN),
    m("dense_h_to_4h", "mlp.dense_h_to_4h", UP, UP_), m("dense_4h_to_h", "mlp.dense_4h_to_h", DOWN, DOWN_)],
  opt: [m("q_proj", "self_attn.q_proj", Q, C_), m("k_proj", "self_attn.k_proj", K, KV), m("v_proj", "self_attn.v_proj", V, KV),
    m("out_proj", "self_attn.out_proj", O, Q_IN), m("fc1", "fc1", UP, UP_), m("fc2", "fc2", DOWN, DOWN_)],
};

/** Where layer i's tensors are named, per arch. */
const LAYERS: Readonly<Record<DecoderArch, string>> = {
  llama: "model.layers", phi3: "model.layers", phi: "model.layers", gpt_neox: "gpt_neox.layers", opt: "model.decoder.layers",
};
export const ARCHS = Object.keys(ARCH_CODE) as DecoderArch[];

/** The arch of a config (absent: "llama"). */
export const archOf = (c: Pick<DecoderConfig, "arch">): DecoderArch => c.arch ?? "llama";

// OPT's projections between word_embed_proj_dim (W) and hidden_size, when it has them: PEFT's all-linear adapts them.
const W_: (c: DecoderConfig) => number = (c) => c.embedDim || c.hiddenSize;
const TOP: readonly LoraModule[] = [
  { name: "project_in", path: "model.decoder.project_in", bits: PROJECT_IN, dims: (c) => [W_(c), c.hiddenSize], top: true },
  { name: "project_out", path: "model.decoder.project_out", bits: PROJECT_OUT, dims: (c) => [c.hiddenSize, W_(c)], top: true },
];

/** The LoRA modules of a model of `c`, in table order: each layer's, then the model's own ("all-linear" is all of
 * them; never the head). */
export function loraModules(c: Pick<DecoderConfig, "arch" | "mlpPlain" | "embedDim">): readonly LoraModule[] {
  const all = MODULES[archOf(c)];
  // a plain MLP on the Llama names has no gate: up_proj is fc1 and down_proj fc2
  if (archOf(c) === "llama" && c.mlpPlain) return all.filter((x) => x.name !== "gate_proj");
  return archOf(c) === "opt" && (c.embedDim ?? 0) > 0 ? [...all, ...TOP] : all;
}

/** Every module name any arch has, each once (for checking target_modules before the model is known). */
export const ALL_LORA_MODULE_NAMES: readonly LoraTarget[] = [...new Set([...ARCHS.flatMap((a) => MODULES[a].map((x) => x.name)), ...TOP.map((x) => x.name)])];

/**
 * For adapter file names (base_model.model.<layers prefix>.{i}.<module path>...): the first arch whose layers hold
 * every (layers prefix, module path) pair, and those modules' names in its order; null when no arch does.
 */
export function loraModulesAt(pairs: readonly { prefix: string; path: string }[]): { arch: DecoderArch; names: LoraTarget[] } | null {
  for (const a of ARCHS) {
    const mods = a === "opt" ? [...MODULES[a], ...TOP] : MODULES[a];
    const holds = (x: { prefix: string; path: string }) => mods.some((mod) => mod.path === x.path && (mod.top ? x.prefix === "" : x.prefix === LAYERS[a]));
    if (!pairs.every(holds)) continue;
    return { arch: a, names: mods.filter((mod) => pairs.some((x) => x.path === mod.path)).map((mod) => mod.name) };
  }
  return null;
}

/** The name prefix of layer i's tensors (model.layers.3, gpt_neox.layers.3, model.decoder.layers.3). */
export const layerPrefix = (c: Pick<DecoderConfig, "arch">, i: number) => `${LAYERS[archOf(c)]}.${i}`;

/** The token embedding's and the output head's tensor names of each arch. */
const EMBEDDING: Readonly<Record<DecoderArch, string>> = {
  llama: "model.embed_tokens.weight", phi3: "model.embed_tokens.weight", phi: "model.embed_tokens.weight",
  gpt_neox: "gpt_neox.embed_in.weight", opt: "model.decoder.embed_tokens.weight",
};
const HEAD: Readonly<Record<DecoderArch, string>> = {
  llama: "lm_head.weight", phi3: "lm_head.weight", phi: "lm_head.weight", gpt_neox: "embed_out.weight", opt: "lm_head.weight",
};
export const embeddingName = (c: Pick<DecoderConfig, "arch">) => EMBEDDING[archOf(c)];
export const headName = (c: Pick<DecoderConfig, "arch">) => HEAD[archOf(c)];

/**
 * The token embedding entry of a parameter table and the name its untied head has (lm_head.weight, or GPT-NeoX's
 * embed_out.weight), read from the table's names; null for a table without a known embedding.
 */
export function embeddingOf(table: readonly ParamInfo[]): { embed: ParamInfo; head: string } | null {
  for (const a of ARCHS) {
    const embed = table.find((p) => p.name === EMBEDDING[a]);
    if (embed) return { embed, head: HEAD[a] };
  }
  return null;
}

/** Whether a tensor is an embedding table (tokens, or OPT's learned positions): what transformers' num_parameters(exclude_embeddings) leaves out. */
export const isEmbeddingTensor = (name: string) => /^(model\.embed_tokens|model\.decoder\.embed_tokens|model\.decoder\.embed_positions|gpt_neox\.embed_in)\.weight$/.test(name);
