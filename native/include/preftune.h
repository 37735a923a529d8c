// preftune native core: the whole C ABI between the decoder math and everything else.
// One decoder for every family pt_config describes (Llama, Mistral, Qwen2/3, SmolLM2/3, Gemma 2/3, Phi-2, Phi-3/4,
// GPT-NeoX, OPT) in fp32 over a BLAS:
// forward to per-token log-probs, backward into flat gradients, AdamW over flat arrays, and decoding with a
// KV cache (one call per step for the whole batch, logits of the last position only).
// Optionally bf16 mixed precision (pt_set_compute): the GEMMs of the linear layers and the LM head take bf16
// operands with fp32 accumulation, everything else stays fp32; and a frozen base held in bf16 only
// (pt_model_create_ex with PT_MODEL_BF16_BASE), trained through a LoRA adapter.
// Optionally a LoRA adapter set (PEFT's LoRA) attached to the model: a second parameter set with its own
// table, buffers and optimizer entry points (pt_lora_*), the base weights then frozen.
// Not here: tokenization, data, losses, file formats (all TypeScript); no per-element calls.
//
// Dims legend used in every shape comment of native/:
//   B  batch rows            T  padded sequence length     N  packed tokens = sum of row lengths
//   C  hidden size           I  intermediate size          V  vocabulary size
//   L  layers                NH query heads                NKV key/value heads     HS head dim
//   QKV = (NH + 2*NKV) * HS  (q, k and v projections are one stacked matrix)
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PT_ABI_VERSION 13   // 2: pt_forward takes PT_FORWARD_* flags; pt_lora_*. 3: pt_kv_*, pt_decode.
                           // 4: pt_set_compute, pt_bf16_support (bf16 mixed precision); pt_model_create_ex with
                           // PT_MODEL_BF16_BASE (a frozen base held in bf16); the gradient buffer is allocated on
                           // first use (a LoRA model never allocates one)
                           // 5: LoRA dropout (pt_lora_config.lora_dropout, pt_lora_set_dropout_seed); DoRA
                           // (pt_lora_config.use_dora, lora_magnitude_vector entries, pt_lora_dora_init)
                           // 6: pt_param_layout (the parameter table without a model)
                           // 7: pt_config's rope_* scaling fields (linear, dynamic, yarn, llama3)
                           // 8: a 4-bit base (PT_MODEL_NF4_BASE / PT_MODEL_FP4_BASE / PT_MODEL_DOUBLE_QUANT,
                           // pt_model_quantize_4bit, pt_model_dequantize) and the bitsandbytes format functions
                           // 9: per-tensor AdamW with 8-bit state (pt_adamw8bit_tensor, pt_adamw_tensor,
                           // pt_*quantize_blockwise; pt_dynamic_map takes is_signed); pt_set_gradient_checkpointing
                           // 10: pt_mpi_* (data parallel)
                           // 11: pt_config's per-layer pattern (layer_window: sliding-window attention; layer_rope:
                           // layers without RoPE, SmolLM3's no_rope_layers)
                           // 12: pt_param.quant4 (which tensors a 4-bit base quantizes)
                           // 13: pt_config's family features (arch, LayerNorm, Gemma's norms and soft-caps, plain
                           // MLPs and their activations, partial rotary, parallel residual, learned positions, biases
                           // on the head); layer_rope 2 (the local RoPE base); pt_model_create_in

typedef enum {
  PT_OK = 0,
  PT_ERR_ARGUMENT = 1,     // a dimension, length or id out of range
  PT_ERR_STATE = 2,        // e.g. backward without a training forward before it
  PT_ERR_MEMORY = 3,       // allocation failed
} pt_status;

typedef struct {
  int32_t vocab_size, hidden_size, intermediate_size, num_layers;
  int32_t num_heads, num_kv_heads, head_dim, max_position_embeddings;
  float rms_norm_eps, rope_theta;
  int32_t tie_word_embeddings, qkv_bias, o_bias, mlp_bias, qk_norm;  // 0 or 1
  // RoPE scaling, transformers' rope_parameters (rope_scaling) resolved to numbers; see native/src/rope.h.
  int32_t rope_type;           // PT_ROPE_*; 0 (PT_ROPE_DEFAULT) ignores every field below
  int32_t rope_original_max_position_embeddings;  // llama3, yarn, longrope: original_max_position_embeddings;
                                                   // dynamic: max_position_embeddings (its threshold)
  int32_t rope_truncate;       // yarn: round the correction range outward (transformers' default 1)
  double rope_factor;          // linear, dynamic, llama3, yarn (> 0)
  double rope_low_freq_factor, rope_high_freq_factor;  // llama3
  double rope_beta_fast, rope_beta_slow;               // yarn
  double rope_attention_factor;  // yarn, longrope: cos and sin are multiplied by it (1 for every other type)
  // Per-layer attention pattern, num_layers entries each, read (copied) when a model is created; NULL: the default.
  const int32_t* layer_window;  // 0: full causal attention; w > 0: query t sees keys t - w < s <= t (NULL: all 0)
  const int32_t* layer_rope;    // 1: rotary embeddings on q and k; 0: none (SmolLM3's NoPE layers); 2: with the
                                // local base rope_local_theta, unscaled (Gemma 3's sliding layers) (NULL: all 1)
  // The family (src/models/family.ts describes each family with these); 0 in every field is the Llama shape.
  int32_t arch;                // PT_ARCH_*: the tensor names and which weights are fused
  int32_t norm_type;           // PT_NORM_RMS, or PT_NORM_LAYER: LayerNorm with a bias (rms_norm_eps is its eps)
  int32_t norm_unit_offset;    // RMSNorm weights apply as (1 + w), the q/k norms too (Gemma)
  int32_t sandwich_norms;      // Gemma: post_attention_layernorm normalizes the attention output before its residual
                               // add, pre_feedforward_layernorm feeds the MLP, post_feedforward_layernorm normalizes
                               // the MLP output before its residual add
  int32_t parallel_residual;   // 0: sequential; 1: x + attn(n1(x)) + mlp(n1(x)) (Phi-2); 2: x + attn(n1(x)) +
                               // mlp(n2(x)) (GPT-NeoX's use_parallel_residual)
  int32_t mlp_plain;           // 1: fc1 -> act -> fc2, no gate (the up projection is (I, C)); 0: act(gate) * up
  int32_t mlp_act;             // PT_ACT_*: on the gate (gated MLP) or on fc1's output (plain)
  int32_t rotary_dim;          // rotary embeddings on the first rotary_dim of each head only (0: all head_dim); even
  int32_t head_bias;           // lm_head.bias (Phi-2)
  int32_t position_rows;       // learned absolute positions (OPT): rows of the position table (0: none); position t
  int32_t position_offset;     // reads row t + position_offset (OPT's 2)
  float embed_scale;           // token embeddings multiplied by it (Gemma: sqrt(hidden_size) as a float); 0: 1
  float attn_scale;            // the attention score scale (Gemma: query_pre_attn_scalar^-0.5); 0: 1/sqrt(head_dim)
  float attn_softcap;          // scores -> c tanh(s / c) before the mask (Gemma 2's attn_logit_softcapping); 0: none
  float final_softcap;         // logits -> c tanh(z / c) (Gemma 2's final_logit_softcapping); 0: none
  float rope_local_theta;      // the base of the layers whose layer_rope is 2
  int32_t norm_after;          // OPT's do_layer_norm_before false: x' = n1(x + attn(x)), x'' = n2(x' + mlp(x'))
  int32_t no_final_norm;       // no norm before the head (OPT with do_layer_norm_before false)
  int32_t embed_dim;           // OPT's word_embed_proj_dim when it differs from hidden_size (0: none): embeddings and
                               // the head are (V, embed_dim), with project_in (C, embed_dim) after the embedding and
                               // project_out (embed_dim, C) before the head, both without bias
  // longrope (Phi-3 128k, Phi-3.5, Phi-4-mini): per-frequency divisors, rotary_dim / 2 each (read when a model is
  // created); the long ones apply while a run's positions reach past rope_original_max_position_embeddings
  const float* rope_short_factor;
  const float* rope_long_factor;
} pt_config;

// Tensor names per arch (HF names of the family's checkpoint; PEFT's module names are these without ".weight"):
//   PT_ARCH_LLAMA    model.embed_tokens, model.layers.{i}.{input_layernorm, self_attn.{q,k,v,o}_proj,
//                    self_attn.{q,k}_norm, post_attention_layernorm, [pre,post]_feedforward_layernorm,
//                    mlp.{gate,up,down}_proj}, model.norm, lm_head: Llama, Mistral, Qwen2/3, SmolLM3, Gemma 2/3
//   PT_ARCH_PHI3     the same with self_attn.qkv_proj (q|k|v rows) and mlp.gate_up_proj (gate|up rows) fused
//   PT_ARCH_PHI      model.layers.{i}.{input_layernorm, self_attn.{q,k,v}_proj, self_attn.dense, mlp.fc1, mlp.fc2},
//                    model.final_layernorm, lm_head (+ bias)
//   PT_ARCH_GPT_NEOX gpt_neox.embed_in, gpt_neox.layers.{i}.{input_layernorm, post_attention_layernorm,
//                    attention.query_key_value, attention.dense, mlp.dense_h_to_4h, mlp.dense_4h_to_h},
//                    gpt_neox.final_layer_norm, embed_out. query_key_value is held in q|k|v row order (the stacked
//                    layout every arch has); the checkpoint's per-head [q_h | k_h | v_h] rows are permuted by the
//                    loader and back by the saver (and so its LoRA B rows)
//   PT_ARCH_OPT      model.decoder.{embed_tokens, embed_positions}, model.decoder.layers.{i}.{self_attn.{q,k,v}_proj,
//                    self_attn.out_proj, self_attn_layer_norm, fc1, fc2, final_layer_norm}, model.decoder.final_layer_norm,
//                    model.decoder.project_in, model.decoder.project_out
enum { PT_ARCH_LLAMA = 0, PT_ARCH_PHI3 = 1, PT_ARCH_PHI = 2, PT_ARCH_GPT_NEOX = 3, PT_ARCH_OPT = 4 };
enum { PT_NORM_RMS = 0, PT_NORM_LAYER = 1 };
// silu; GELU with the tanh approximation (gelu_pytorch_tanh, gelu_new); exact GELU (erf); relu
enum { PT_ACT_SILU = 0, PT_ACT_GELU_TANH = 1, PT_ACT_GELU = 2, PT_ACT_RELU = 3 };

enum { PT_ROPE_DEFAULT = 0, PT_ROPE_LINEAR = 1, PT_ROPE_DYNAMIC = 2, PT_ROPE_YARN = 3, PT_ROPE_LLAMA3 = 4, PT_ROPE_LONGROPE = 5 };

typedef struct {
  char name[96];           // Hugging Face weight name
  int32_t ndim;
  int64_t shape[2];
  int64_t offset;          // in elements into the parameter (and gradient) buffer: floats, or bf16 values for a
                           // PT_MODEL_BF16_BASE model
  int64_t size;
  int32_t decay;           // weight_decay applies (not to biases and norm weights)
  int32_t quant4;          // a 4-bit base (PT_MODEL_NF4_BASE / PT_MODEL_FP4_BASE) holds it quantized: the layers'
                           // projection weights (bitsandbytes' Linear4bit), never embeddings, norms, biases or the head
} pt_param;

typedef struct pt_model pt_model;

// Per-token outputs, label-aligned: entry (b, t) is about ids[b, t] predicted from ids[b, <t].
// Column 0 and padding positions (t >= lengths[b]) are written as 0. Any pointer may be NULL.
typedef struct {
  float* logps;            // (B, T)
  float* logits_mean;      // (B, T) mean over V of the logits that predict token t
  float* entropy;          // (B, T)
  uint8_t* correct;        // (B, T) argmax == ids[b, t]
} pt_token_stats;

const char* pt_last_error(void);
int pt_abi_version(void);

// The parameter layout a model of `cfg` has (names, shapes, offsets, decay; the one definition of it), without
// creating a model or any parameter buffer: for checks before allocating (weight files against the config, memory).
// Writes min(capacity, count) entries to out (out may be NULL), the entry count to *num_params and the buffer length
// in floats to *num_floats (either may be NULL). The config is checked as pt_model_create checks it.
pt_status pt_param_layout(const pt_config* cfg, pt_param* out, int32_t capacity, int32_t* num_params,
                          int64_t* num_floats);
pt_status pt_model_create(const pt_config* cfg, pt_model** out);  // = pt_model_create_ex(cfg, 0, out)
// PT_MODEL_BF16_BASE: the base parameter set is held in bf16 only (pt_model_params_bf16: the same layout and
// offsets as the fp32 buffer, in 16-bit units), half the memory, written by the loader straight from BF16
// safetensors (F16/F32 rounded per tensor, never a full fp32 copy). Such a base is frozen: it trains only through
// a LoRA adapter (a backward without one is PT_ERR_STATE), pt_model_params and pt_model_grads return NULL and
// pt_adamw_step does nothing. In fp32 compute its matrices are widened right before each GEMM (one layer's matrix,
// or 2048 rows of the head, at a time; decoding reads the bf16 weights directly); in bf16 compute they are the
// operands as they are. pt_lora_merge merges in fp32 and rounds the result back to bf16.
enum { PT_MODEL_BF16_BASE = 1 };
// PT_MODEL_NF4_BASE / PT_MODEL_FP4_BASE: a frozen base whose projection weights (q, k, v, o, gate, up, down of every
// layer: what bitsandbytes' Linear4bit replaces) are held in bitsandbytes' 4-bit format: the NF4 or FP4 code book,
// blocks of 64 elements per tensor with an fp32 absmax each, two nibbles a byte (first element high). With
// PT_MODEL_DOUBLE_QUANT the absmax values are themselves quantized as bitsandbytes' compress_statistics does (their
// mean subtracted, 8-bit codes of the signed dynamic map, one fp32 scale per 256). Embeddings, norms, biases and
// the LM head stay unquantized: in fp32 (pt_model_params, whose matrix regions are unused and never become memory),
// or in bf16 with PT_MODEL_BF16_BASE also set (pt_model_params_bf16, the same way). Each projection weight is
// written with pt_model_quantize_4bit chunk by chunk as the loader streams it (the whole tensor is never needed in
// fp32). The GEMMs (forward x W^T, and dx = dy W in the backward; no weight gradient) dequantize W a tile of rows at
// a time into fp32 scratch and run fp32 math, in either compute mode. Like the bf16 base it is frozen: it trains
// only through a LoRA adapter, and pt_lora_merge refuses (merge into a full-precision copy: pt_model_dequantize).
enum { PT_MODEL_NF4_BASE = 2, PT_MODEL_FP4_BASE = 4, PT_MODEL_DOUBLE_QUANT = 8 };
pt_status pt_model_create_ex(const pt_config* cfg, int32_t flags, pt_model** out);
// pt_model_create_ex with the parameter buffer in caller-owned memory: `storage` (zero-filled, `bytes` at least the
// buffer's size: pt_param_layout's num_floats times 4, or times 2 for a PT_MODEL_BF16_BASE model; 16-byte aligned)
// holds the fp32 parameters, or the bf16 ones of a bf16-held base; not for a 4-bit base. It must outlive the
// model, which never frees it. For bindings that can only view memory their own allocator owns (N-API's views of
// external memory stop at 4 GiB).
pt_status pt_model_create_in(const pt_config* cfg, int32_t flags, void* storage, size_t bytes, pt_model** out);
// Quantizes elements [start, start + n) of projection weight `param` (table index; its flat (out, in) order) into
// the 4-bit store. Chunks of one tensor come in order from element 0, each a multiple of 64 elements except the
// last; the last chunk also double-quantizes the tensor's absmax values (PT_MODEL_DOUBLE_QUANT).
pt_status pt_model_quantize_4bit(pt_model* m, int32_t param, const float* values, int64_t start, int64_t n);
// Writes elements [start, start + n) of an unquantized tensor from fp32 values (rounded to bf16, nearest even, for a
// PT_MODEL_BF16_BASE model): how a loader fills a large model without a view of its whole buffer.
pt_status pt_model_write_tensor(pt_model* m, int32_t param, const float* values, int64_t start, int64_t n);
// Tensor `param` in fp32 into out (size floats): a 4-bit tensor dequantized (code * absmax, as bitsandbytes), a bf16
// one widened, an fp32 one copied.
pt_status pt_model_dequantize(const pt_model* m, int32_t param, float* out);
// Bytes the model's weights occupy in memory (4-bit storage and scales, bf16 or fp32 tensors), without padding.
int64_t pt_model_weight_bytes(const pt_model* m);
int32_t pt_model_flags(const pt_model* m);
uint16_t* pt_model_params_bf16(pt_model* m);               // NULL unless created with PT_MODEL_BF16_BASE
void pt_model_free(pt_model* m);
int64_t pt_model_num_floats(const pt_model* m);            // length of params and grads buffers
float* pt_model_params(pt_model* m);                       // NULL for a PT_MODEL_BF16_BASE model
// The gradient buffer (zeroed) is allocated on first need: this call, a backward without an adapter, or an
// AdamW step; NULL when that allocation fails. pt_zero_grad, pt_grad_norm and pt_scale_grads do not allocate
// it (without one the gradient is 0). So a model that only ever trains a LoRA adapter holds no base gradients.
float* pt_model_grads(pt_model* m);
int32_t pt_model_num_params(const pt_model* m);            // entries in the parameter table
const pt_param* pt_model_param(const pt_model* m, int32_t i);

// pt_forward flags (1 and 0 keep their ABI-1 meaning of train = true / false).
enum {
  PT_FORWARD_TRAIN = 1,        // keep the activations for pt_backward
  PT_FORWARD_NO_ADAPTERS = 2,  // run the base model only, as if no adapter were attached (the LoRA reference)
};

// ids (B, T) right-padded; lengths (B,); flags: PT_FORWARD_* bits. With an adapter attached, a training
// forward must keep the adapters on (with them off nothing would train): PT_ERR_ARGUMENT otherwise.
pt_status pt_forward(pt_model* m, const int32_t* ids, const int32_t* lengths, int32_t B, int32_t T,
                     int32_t flags, pt_token_stats* out);
// dlogps (B, T) label-aligned: d loss / d logps. Accumulates into the gradient buffer, then drops
// the saved activations. With an adapter attached it accumulates into the adapter's gradient buffer only:
// the base weight gradients (every dW GEMM, the head's included) are skipped and the base buffer is untouched.
pt_status pt_backward(pt_model* m, const float* dlogps);
// Gradient checkpointing (transformers' gradient_checkpointing, one decoder layer per checkpoint): a training
// forward keeps only each layer's input (L + 1 of (N, C)) and one layer's activations; the backward recomputes
// each layer from its input, by the same code, just before that layer's backward, so losses and gradients are
// bit for bit those without it. Changing it drops saved activations. Off by default.
void pt_set_gradient_checkpointing(pt_model* m, int32_t on);
int32_t pt_get_gradient_checkpointing(const pt_model* m);
void pt_release_activations(pt_model* m);

void pt_zero_grad(pt_model* m);
double pt_grad_norm(const pt_model* m);                    // global L2 norm over every gradient
void pt_scale_grads(pt_model* m, float s);
// One torch.optim.AdamW step (decoupled decay on params whose table entry has decay = 1).
// exp_avg, exp_avg_sq: same length as params. step: the 1-based step number after this update.
void pt_adamw_step(pt_model* m, float* exp_avg, float* exp_avg_sq, int64_t step, float lr,
                   float beta1, float beta2, float eps, float weight_decay);

// ---- Per-tensor AdamW, fp32 or with bitsandbytes' 8-bit state ------------------------------------------
// bitsandbytes' dynamic quantization map (create_dynamic_map, 8 bits, 7 exponent bits), 256 fp32 values in
// ascending order: signed (is_signed = 1: exp_avg; -0.99296874 ... 0 ... 1) or unsigned (exp_avg_sq; 0 ... 1).
#define PT_QBLOCK 256    // elements per absmax block of 8-bit state
void pt_dynamic_map(int32_t is_signed, float* out256);
// codes (n), absmax (ceil(n / PT_QBLOCK)): each block divided by its largest |x|, rounded to the nearest code of
// the map (a value exactly between two codes takes the lower one); an all-zero block has absmax 0.
void pt_quantize_blockwise(const float* x, int64_t n, int32_t is_signed, uint8_t* codes, float* absmax);
void pt_dequantize_blockwise(const uint8_t* codes, const float* absmax, int64_t n, int32_t is_signed, float* out);
// pt_adamw_step's update over one tensor of n elements (pass weight_decay 0 for a tensor without decay).
void pt_adamw_tensor(float* p, const float* g, float* exp_avg, float* exp_avg_sq, int64_t n, int64_t step, float lr,
                     float beta1, float beta2, float eps, float weight_decay);
// The same update with the moments held as 8-bit codes: state1 (n) exp_avg in the signed map, state2 (n)
// exp_avg_sq in the unsigned map, absmax1 / absmax2 (ceil(n / PT_QBLOCK)) their block scales, all zero before
// the first step. The math is fp32: dequantize, update the moments, step the weight with them, requantize.
void pt_adamw8bit_tensor(float* p, const float* g, uint8_t* state1, uint8_t* state2, float* absmax1, float* absmax2,
                         int64_t n, int64_t step, float lr, float beta1, float beta2, float eps, float weight_decay);

// ---- LoRA ------------------------------------------------------------------------------------------
// y = x W^T (+b) + s * (x A^T) B^T on each targeted projection, A = lora_A (r, in), B = lora_B (out, r),
// s = lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora (PEFT's scaling). Every layer gets the same
// targets and rank. The adapter set is a second parameter set of the model, laid out and described exactly
// like the base one (pt_param entries, decay = 1 for every adapter matrix as HF Trainer does) and with the
// same optimizer entry points, so one AdamW state over pt_lora_num_floats floats steps it.
// Table names are the PEFT file names: base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight.
// Layout per layer: the A matrices of the targeted q|k|v members back to back (one GEMM), then each B;
// o_proj A, B; gate|up A's back to back, then each B; down_proj A, B (each group 64-byte aligned).
// The forward keeps u = x~ A^T (N, r) per targeted projection for the backward (recomputed with its layer under
// gradient checkpointing).
// lora_dropout p in [0, 1): a training forward feeds the adapter x~ = dropout(x) (PEFT: the base still sees x),
// each projection its own mask, kept elements scaled by 1 / (1 - p); eval forwards and decoding never drop.
// Masks are a pure function of (the seed set by pt_lora_set_dropout_seed, the number of training forwards since,
// layer, projection, token, column): nothing is stored, and the backward draws the same masks again.
// use_dora = 1: PEFT's DoRA. Each adapted projection also has a magnitude m (out), table entry
// base_model.model.model.layers.{i}.<module>.<proj>.lora_magnitude_vector (1-D, decay = 1), placed after the
// group's B matrices; y = c * (x W^T + s (x A^T) B^T) + b with c = m / ||W + s B A||_row, the norm recomputed every
// forward and a constant in the backward (PEFT detaches it); with dropout active
// y = x W^T + b + (c - 1) * (x~ W^T) + c * s (x~ A^T) B^T, as PEFT's DoRA variant.
// Attaching or detaching drops saved activations.
enum {
  PT_LORA_Q_PROJ = 1, PT_LORA_K_PROJ = 2, PT_LORA_V_PROJ = 4, PT_LORA_O_PROJ = 8,
  PT_LORA_GATE_PROJ = 16, PT_LORA_UP_PROJ = 32, PT_LORA_DOWN_PROJ = 64,
  PT_LORA_PROJECT_IN = 128, PT_LORA_PROJECT_OUT = 256,  // OPT's project_in / project_out (embed_dim set)
  PT_LORA_ALL_LINEAR = 511,    // PEFT's "all-linear": every linear layer but the head (a bit naming a module the
                               // model lacks selects nothing)
};
// Fused weights carry one adapter each (PEFT adapts the module as it is): on PT_ARCH_PHI3 any of the q/k/v bits
// selects qkv_proj and gate/up select gate_up_proj; on PT_ARCH_GPT_NEOX q/k/v select query_key_value. A plain MLP
// (mlp_plain) has no gate: its fc1 is the up bit and fc2 the down bit. Module names follow the arch's tensor names:
// base_model.model.<layer prefix>.{i}.<module>, and OPT's base_model.model.model.decoder.project_{in,out}.

typedef struct {
  int32_t r;                   // rank, >= 1
  float lora_alpha;
  int32_t use_rslora;          // 0 or 1
  int32_t targets;             // PT_LORA_* bits, at least one
  float lora_dropout;          // in [0, 1)
  int32_t use_dora;            // 0 or 1
} pt_lora_config;

// Allocates the adapter with every value 0 (initialise A from TypeScript, as PEFT: B = 0, A kaiming-uniform).
pt_status pt_lora_attach(pt_model* m, const pt_lora_config* cfg);
void pt_lora_detach(pt_model* m);                          // frees it; the base model trains again
int32_t pt_lora_attached(const pt_model* m);
double pt_lora_scaling(const pt_model* m);                 // s, or 0 without an adapter
int64_t pt_lora_num_floats(const pt_model* m);             // 0 without an adapter
float* pt_lora_params(pt_model* m);
float* pt_lora_grads(pt_model* m);
int32_t pt_lora_num_params(const pt_model* m);
const pt_param* pt_lora_param(const pt_model* m, int32_t i);
void pt_lora_zero_grad(pt_model* m);
double pt_lora_grad_norm(const pt_model* m);               // L2 norm over the adapter's gradients only
void pt_lora_scale_grads(pt_model* m, float s);
// pt_adamw_step's math over the adapter set; exp_avg, exp_avg_sq: pt_lora_num_floats entries each.
void pt_lora_adamw_step(pt_model* m, float* exp_avg, float* exp_avg_sq, int64_t step, float lr, float beta1,
                        float beta2, float eps, float weight_decay);
// W += s * B A for every adapted projection (PEFT's merge), in the base parameter buffer; then detaches.
// DoRA: W = (m / ||W + s B A||_row) * (W + s B A), row by row (PEFT's DoRA merge).
pt_status pt_lora_merge(pt_model* m);
// The dropout stream of the following training forwards: a pure function of (seed, step, micro); the k-th
// training forward after this call draws the masks of (seed, step, micro, k). A resumed run that sets the same
// values draws the same masks. Before any call the stream is (0, 0, 0).
void pt_lora_set_dropout_seed(pt_model* m, uint64_t seed, int64_t step, int32_t micro);
// DoRA: every magnitude m = ||W + s B A||_row from the current weights (PEFT's initialisation); PT_ERR_STATE
// without a DoRA adapter.
pt_status pt_lora_dora_init(pt_model* m);

// ---- Decoding with a KV cache ----------------------------------------------------------------------
// A decoding session of B rows: per layer a K and a V cache (B, NKV, T_max, HS) holding each row's keys and
// values after RoPE (and q/k norm), plus the session's own scratch, so decoding never disturbs training state. A
// sliding-window layer holds only a ring of its window plus 127 positions when that is shorter than T_max (appends
// of more than 128 tokens per row then run in chunks of 128, in order).
// A row holds the tokens appended to it so far (0 at creation). The cache belongs to no model: pass the model it
// was created for (same shapes) to every pt_decode; a LoRA adapter may be attached, detached or merged between
// calls (what the cache holds was computed with whatever was attached then).
typedef struct pt_kv_cache pt_kv_cache;
// T_max: positions per row, at most the model's max_position_embeddings.
pt_status pt_kv_create(const pt_model* m, int32_t B, int32_t T_max, pt_kv_cache** out);
void pt_kv_free(pt_kv_cache* kv);
int32_t pt_kv_length(const pt_kv_cache* kv, int32_t row);  // tokens row holds; -1 for a row outside [0, B)
void pt_kv_reset(pt_kv_cache* kv, int32_t row);            // the row holds nothing again
// For each of n distinct cache rows rows[i], appends the lengths[i] >= 1 tokens ids[i, :lengths[i]] (ids (n, T)
// right-padded) at the positions after what the row holds, runs the model over those new tokens only (each
// attending causally to its row's cache), and writes logits (n, V) of each row's last new token.
// Prefill passes every row with its prompt; a decoding step passes one token per live row (finished rows are
// simply left out, so they cost nothing). flags: 0 or PT_FORWARD_NO_ADAPTERS (the base model alone).
pt_status pt_decode(pt_model* m, pt_kv_cache* kv, const int32_t* rows, const int32_t* ids, const int32_t* lengths,
                    int32_t n, int32_t T, int32_t flags, float* logits);

// ---- bf16 mixed precision --------------------------------------------------------------------------
// PT_COMPUTE_BF16: the forward GEMM of every linear layer (q|k|v, o, gate|up, down), both of its backward GEMMs
// (input gradient dx = dy W and weight gradient dW += dy^T x) and the LM head's three GEMMs (logits, dH, dW) take
// operands rounded to bf16 (nearest even, from the fp32 values at the time of the call: weights are converted per
// call, so nothing cached can go stale after an optimizer step or a write into the parameter buffer), with fp32
// accumulation and fp32 results (oneDNN matmul). Master weights, gradients and AdamW state stay fp32; norms,
// RoPE, attention, softmax, the log-prob head statistics and every loss stay fp32. The LoRA adapter's rank-r GEMMs
// stay fp32 (a few percent of the work), and pt_decode always runs fp32. PT_COMPUTE_FP32 is the exact path
// (the default).
enum { PT_COMPUTE_FP32 = 0, PT_COMPUTE_BF16 = 1 };
// pt_bf16_support bits. AVX512: bf16 compute is possible (AVX512-BF16 or AMX-BF16, enabled by the OS, and a build
// with oneDNN). AMX: AMX-BF16 tiles. FAST: bf16 GEMMs are expected to beat fp32 ones here (AMX, or AMD Zen 4 and
// later); an Intel CPU with AVX512-BF16 and no AMX runs them at about half the fp32 rate (measured, see
// bench/README.md). 0 when the environment variable PREFTUNE_NO_BF16 is set (other than to "" or "0").
enum { PT_BF16_AVX512 = 1, PT_BF16_AMX = 2, PT_BF16_FAST = 4 };
int32_t pt_bf16_support(void);
const char* pt_bf16_describe(void);                        // vendor and bf16 ISA found, for notes
// PT_ERR_ARGUMENT for an unknown mode, PT_ERR_STATE for PT_COMPUTE_BF16 where pt_bf16_support() is 0.
// Drops saved activations (a backward must run in the mode of its forward).
pt_status pt_set_compute(pt_model* m, int32_t mode);
int32_t pt_get_compute(const pt_model* m);

void pt_set_num_threads(int32_t n);
int32_t pt_get_num_threads(void);
const char* pt_blas_core(void);  // the BLAS kernel family in use (OpenBLAS' core name, e.g. "SkylakeX")

// ---- bitsandbytes' 4-bit format, on plain arrays (what a 4-bit base stores per tensor) ---------------------------
enum { PT_QUANT_NF4 = 0, PT_QUANT_FP4 = 1 };
// x (n) -> packed ((n + 1) / 2 bytes) and absmax (ceil(n / 64)): bitsandbytes' quantize_4bit with blocksize 64.
void pt_quantize_4bit(const float* x, int64_t n, int32_t type, uint8_t* packed, float* absmax);
void pt_dequantize_4bit(const uint8_t* packed, const float* absmax, int64_t n, int32_t type, float* out);
// Double quantization of nblocks absmax values: q (nblocks) 8-bit codes, absmax2 (ceil(nblocks / 256)), offset (the
// mean); and back: out[b] = dynamic_map[q[b]] * absmax2[b / 256] + offset.
void pt_quantize_absmax(const float* absmax, int64_t nblocks, uint8_t* q, float* absmax2, float* offset);
void pt_dequantize_absmax(const uint8_t* q, const float* absmax2, float offset, int64_t nblocks, float* out);
// (bitsandbytes' signed dynamic 8-bit map: pt_dynamic_map(1, out), with the 8-bit optimizer functions)
// ---- data parallel over MPI ----------------------------------------------------------------------------
// Open MPI is loaded at run time (dlopen of lib_path, default "libmpi.so.40"), never linked, so the core builds
// and runs without it. pt_mpi_init: MPI_Init_thread (MPI_THREAD_FUNNELED) unless MPI is already initialized, then
// this process's rank and the world size of MPI_COMM_WORLD; PT_ERR_STATE with the reason (library missing, not
// Open MPI, init failed). Every other call comes from the same thread. The all-reduces sum in place over
// MPI_COMM_WORLD; the float one in MPI calls of at most `bucket` floats (<= 0: as few as the int count allows).
// pt_mpi_abort ends every rank of the job (MPI_Abort) and does not return. pt_mpi_finalize: MPI_Finalize, once.
pt_status pt_mpi_init(const char* lib_path, int32_t* rank, int32_t* size);
pt_status pt_mpi_allreduce_sum_f32(float* buf, int64_t n, int64_t bucket);
pt_status pt_mpi_allreduce_sum_f64(double* buf, int64_t n);
// The gradient all-reduce overlapped with a backward: _begin arms it over buf with layer l's gradients at
// [ranges[2l], ranges[2l+1]); the next pt_backward (of any model, on this thread) starts layer l's sum as soon as
// that layer's gradients are final (layers L-1 … 0) and lets MPI progress it at each later layer; _end starts any
// layer not started yet, waits for all, then sums the `n_rest` ranges (start, end) of buf no layer covers
// (embeddings, final norm) in buckets; *during_backward (may be NULL) = the layers started by the backward.
// Every rank must call the pair around the same collectives.
pt_status pt_mpi_overlap_begin(float* buf, const int64_t* ranges, int32_t layers);
pt_status pt_mpi_overlap_end(const int64_t* rest, int32_t n_rest, int64_t bucket, int32_t* during_backward);
pt_status pt_mpi_barrier(void);
void pt_mpi_abort(int32_t code);
pt_status pt_mpi_finalize(void);

// Finite-difference check of one op family in float64 (the names pt_gradcheck in native/src/gradcheck.cpp lists:
// "rmsnorm", "layernorm", "rope_partial", "attention_softcap", "geglu_tanh", "head_bias_softcap", ...): returns the largest
// relative error between analytic and numerical gradients over every input, or a negative value for an
// unknown op.
double pt_gradcheck(const char* op, uint64_t seed);

#ifdef __cplusplus
}
#endif
