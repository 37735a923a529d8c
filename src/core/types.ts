// The TypeScript face of the native decoder core: plain data types shared by the binding and its users.
// Not the binding itself (src/core/native.ts) and no math: everything numeric happens in native/.

/** The tensor-name families of the native core (PT_ARCH_*): which names a checkpoint uses and which weights are fused. */
export type DecoderArch = "llama" | "phi3" | "phi" | "gpt_neox" | "opt";
/** MLP activations of the native core (PT_ACT_*): silu, GELU with the tanh approximation, exact GELU, ReLU. */
export type Activation = "silu" | "gelu_tanh" | "gelu" | "relu";

/**
 * A decoder as read from a Hugging Face config.json (see src/models/config.ts), mirroring the core's pt_config.
 * The optional fields are the family features (Gemma, Phi, GPT-NeoX, OPT); absent, each is the Llama shape.
 */
export interface DecoderConfig {
  architecture: string;         // the config.json class: "LlamaForCausalLM", "Gemma2ForCausalLM", "GPTNeoXForCausalLM", ...
  vocabSize: number;            // V
  hiddenSize: number;           // C
  intermediateSize: number;     // I
  numLayers: number;            // L
  numHeads: number;             // NH
  numKvHeads: number;           // NKV
  headDim: number;              // HS
  rmsNormEps: number;
  ropeTheta: number;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  qkvBias: boolean;             // Qwen2 (always), Llama with attention_bias
  oBias: boolean;               // Llama with attention_bias
  mlpBias: boolean;             // Llama with mlp_bias
  qkNorm: boolean;              // Qwen3: RMSNorm over head_dim on q and k before RoPE
  ropeScaling: RopeScaling | null;  // null: plain RoPE (rope_type "default")
  /** (L) per layer: 0 full causal attention, w > 0 a sliding window (query t sees keys t - w < s <= t); absent: all 0 */
  layerWindows?: number[];
  /**
   * (L) per layer: true for rotary embeddings with ropeTheta (and ropeScaling), false for none (SmolLM3's
   * no_rope_layers = 0, every OPT layer), "local" for the unscaled local base ropeLocalTheta (Gemma 3's sliding
   * layers); absent: all true
   */
  layerRope?: (boolean | "local")[];
  // ---- family features (pt_config's arch ... rope_local_theta); absent: the Llama shape --------------------------
  arch?: DecoderArch;           // tensor names and fused weights; absent: "llama" (also Mistral, Qwen, SmolLM3, Gemma)
  normType?: "rmsnorm" | "layernorm";  // layernorm: LayerNorm with a bias, rmsNormEps its eps (Phi-2, GPT-NeoX, OPT)
  normUnitOffset?: boolean;     // RMSNorm weights (q/k norms too) apply as (1 + w) (Gemma)
  sandwichNorms?: boolean;      // Gemma: post-attention, pre- and post-feedforward norms
  parallelResidual?: 0 | 1 | 2; // 1: x + attn(n1(x)) + mlp(n1(x)) (Phi-2); 2: x + attn(n1(x)) + mlp(n2(x)) (GPT-NeoX)
  mlpPlain?: boolean;           // fc1 -> act -> fc2 without a gate (Phi-2, GPT-NeoX, OPT)
  mlpAct?: Activation;          // on the gate, or on fc1's output; absent: silu
  rotaryDim?: number;           // RoPE on the first rotaryDim of each head (Phi, Phi-3, GPT-NeoX); absent or 0: all of it
  headBias?: boolean;           // lm_head.bias (Phi-2)
  positionRows?: number;        // learned absolute positions (OPT): rows of the table; absent or 0: none
  positionOffset?: number;      // position t reads row t + positionOffset (OPT's 2)
  embedScale?: number;          // token embeddings times it (Gemma: sqrt(hidden_size) as a float32); absent or 0: 1
  attnScale?: number;           // attention score scale (Gemma: query_pre_attn_scalar^-0.5); absent or 0: 1/sqrt(head_dim)
  attnSoftcap?: number;         // scores -> c tanh(s / c) (Gemma 2's attn_logit_softcapping); absent or 0: none
  finalSoftcap?: number;        // logits -> c tanh(z / c) (Gemma 2's final_logit_softcapping); absent or 0: none
  ropeLocalTheta?: number;      // the base of the layers whose layerRope is "local" (Gemma 3's rope_local_base_freq)
  normAfter?: boolean;          // OPT's do_layer_norm_before false: each block's LayerNorm after its residual add
  noFinalNorm?: boolean;        // no norm before the head (OPT with do_layer_norm_before false or _remove_final_layer_norm)
  embedDim?: number;            // OPT's word_embed_proj_dim when it is not hidden_size: project_in / project_out; absent or 0: none
}

/**
 * transformers' rope_parameters / rope_scaling with every default resolved (src/models/config.ts), as the
 * native core takes it (native/src/rope.h). Fields a type does not use hold their neutral values.
 */
export interface RopeScaling {
  type: "linear" | "dynamic" | "yarn" | "llama3" | "longrope";
  factor: number;
  /** llama3, yarn, longrope: original_max_position_embeddings; dynamic: max_position_embeddings (its threshold); linear: unused */
  originalMaxPositionEmbeddings: number;
  lowFreqFactor: number;        // llama3 (else 0)
  highFreqFactor: number;       // llama3 (else 0)
  betaFast: number;             // yarn (else 32)
  betaSlow: number;             // yarn (else 1)
  truncate: boolean;            // yarn (else true)
  attentionFactor: number;      // yarn, longrope: cos and sin are multiplied by it; 1 for the others
  /** longrope: the frequencies' divisors (rotary_dim / 2 each), long ones once a run's positions pass the original length */
  shortFactor?: number[];
  longFactor?: number[];
}

/** One named parameter inside the flat parameter buffer; the name is the Hugging Face weight name. */
export interface ParamInfo {
  name: string;
  shape: number[];
  offset: number;               // in floats, into NativeModel.params / .grads
  size: number;
  decay: boolean;               // HF Trainer applies weight_decay to it (not to biases or norm weights)
  quant4: boolean;              // a 4-bit base (load_in_4bit) holds it quantized: the layers' projection weights
}

/** A right-padded batch of token ids. ids has B*T entries; lengths[b] <= T real tokens in row b. */
export interface TokenBatch {
  ids: Int32Array;              // (B, T)
  lengths: Int32Array;          // (B,)
  B: number;
  T: number;
}

/**
 * Per-token outputs of a forward pass, label-aligned: entry (b, t) describes token ids[b, t] as
 * predicted from ids[b, <t]. Column t = 0 and positions t >= lengths[b] hold 0.
 */
export interface TokenStats {
  logps: Float32Array;          // (B, T) log p(ids[b,t] | ids[b,<t])
  logitsMean: Float32Array;     // (B, T) mean over the vocabulary of the logits that predict token t
  entropy: Float32Array;        // (B, T) entropy of that predictive distribution
  correct: Uint8Array;          // (B, T) 1 where argmax of the logits == ids[b, t]
}

export interface AdamWConfig {
  lr: number;
  beta1: number;                // adam_beta1, 0.9
  beta2: number;                // adam_beta2, 0.999
  eps: number;                  // adam_epsilon, 1e-8
  weightDecay: number;          // weight_decay, 0
}

/**
 * The linear modules of a decoder layer a LoRA adapter can target, by PEFT's target_modules names: Llama and Gemma's
 * seven, Phi-3's fused qkv_proj and gate_up_proj, Phi-2's dense / fc1 / fc2, GPT-NeoX's query_key_value, dense,
 * dense_h_to_4h, dense_4h_to_h, OPT's out_proj / fc1 / fc2 (src/core/arch.ts lists each family's).
 */
export type LoraTarget =
  | "q_proj" | "k_proj" | "v_proj" | "o_proj" | "gate_proj" | "up_proj" | "down_proj"
  | "qkv_proj" | "gate_up_proj" | "dense" | "fc1" | "fc2" | "query_key_value" | "dense_h_to_4h" | "dense_4h_to_h" | "out_proj"
  | "project_in" | "project_out";

/**
 * A LoRA adapter set on every layer of a decoder (PEFT's LoraConfig, the parts the core runs):
 * y = W x + s · B A x with s = loraAlpha / r, or loraAlpha / √r when useRslora.
 */
export interface LoraConfig {
  r: number;                    // rank
  loraAlpha: number;            // lora_alpha
  useRslora: boolean;           // use_rslora
  targetModules: LoraTarget[];  // target_modules, resolved to the model's module names
  loraDropout: number;          // lora_dropout, in [0, 1): dropout on the adapter input in training forwards
  useDora?: boolean;            // use_dora: PEFT's DoRA (a lora_magnitude_vector per projection); default false
}

/** Precision of the native core's GEMMs: fp32 (exact), or bf16 operands with fp32 accumulation. */
export type ComputeDtype = "fp32" | "bf16";

/** What the CPU and build offer for bf16 compute (src/core/native.ts bf16Support). */
export interface Bf16Support {
  available: boolean;           // bf16 compute can run (AVX512-BF16 or AMX-BF16, and a build with oneDNN)
  amx: boolean;                 // AMX-BF16 tiles
  fast: boolean;                // expected faster than fp32 here (AMX, or AMD Zen 4 and later)
  cpu: string;                  // vendor and ISA found, for notes
}

/** The precision chosen for a run and the notes to print once (src/core/native.ts chooseCompute). */
export interface ComputeChoice {
  compute: ComputeDtype;
  notes: string[];
}
