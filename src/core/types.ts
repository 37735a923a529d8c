// The TypeScript face of the native decoder core: plain data types shared by the binding and its users.
// Not the binding itself (src/core/native.ts) and no math: everything numeric happens in native/.

/** A Llama-family decoder, as read from a Hugging Face config.json (see src/models/config.ts). */
export interface DecoderConfig {
  architecture: string;         // "LlamaForCausalLM" | "MistralForCausalLM" | "Qwen2ForCausalLM" | "Qwen3ForCausalLM"
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
  /** (L) per layer: false for no rotary embeddings (SmolLM3's no_rope_layers = 0); absent: all true */
  layerRope?: boolean[];
}

/**
 * transformers' rope_parameters / rope_scaling with every default resolved (src/models/config.ts), as the
 * native core takes it (native/src/rope.h). Fields a type does not use hold their neutral values.
 */
export interface RopeScaling {
  type: "linear" | "dynamic" | "yarn" | "llama3";
  factor: number;
  /** llama3, yarn: original_max_position_embeddings; dynamic: max_position_embeddings (its threshold); linear: unused */
  originalMaxPositionEmbeddings: number;
  lowFreqFactor: number;        // llama3 (else 0)
  highFreqFactor: number;       // llama3 (else 0)
  betaFast: number;             // yarn (else 32)
  betaSlow: number;             // yarn (else 1)
  truncate: boolean;            // yarn (else true)
  attentionFactor: number;      // yarn: cos and sin are multiplied by it; 1 for the others
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

/** The seven Llama projections a LoRA adapter can target (PEFT's target_modules names). */
export type LoraTarget = "q_proj" | "k_proj" | "v_proj" | "o_proj" | "gate_proj" | "up_proj" | "down_proj";

/**
 * A LoRA adapter set on every layer of a decoder (PEFT's LoraConfig, the parts the core runs):
 * y = W x + s · B A x with s = loraAlpha / r, or loraAlpha / √r when useRslora.
 */
export interface LoraConfig {
  r: number;                    // rank
  loraAlpha: number;            // lora_alpha
  useRslora: boolean;           // use_rslora
  targetModules: LoraTarget[];  // target_modules, resolved to projection names
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
