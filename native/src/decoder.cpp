// The decoder of every family (pt_config's family fields; one layer sequence, layer_body): parameter layout, forward
// to per-token log-probs and backward into the flat gradient buffer, over right-padded batches packed into their real
// tokens (padding costs nothing). Per layer, Llama's shape:
//             h = norm(x); qkv = h Wqkv^T (+b); [q/k norm]; rope; a = attn(qkv);
//             x' = x + a Wo^T (+b);  h = norm(x'); gu = h Wgu^T (+b); x'' = x' + act(gu) Wd^T (+b)
// with Gemma's post-norms, Phi-2's and GPT-NeoX's parallel branches, plain MLPs and learned positions as variants.
// With a LoRA adapter attached (pt_lora_*), each targeted projection also runs its low-rank path (lora.h; with
// dropout in training, or DoRA, one member at a time: dora.h) and the backward skips every base weight gradient. In bf16 compute mode (pt_set_compute) the linear layers' and
// the head's GEMMs take bf16 operands (bf16.h), weights converted per call from the fp32 masters. Decoding
// (pt_decode, always fp32) runs the same layer sequence over only the new tokens of each row, against a KV
// cache. With gradient checkpointing a training forward keeps only each layer's input and the backward
// recomputes the layer (layer_forward) before its own backward. The op math lives in the headers beside this
// file (AdamW in optim.h); this file only sequences it and owns memory.
#include <algorithm>
#include <array>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>
#include <omp.h>
#include <sys/mman.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <xmmintrin.h>
#include "preftune.h"
#include "attention.h"
#include "bf16.h"
#include "common.h"
#include "dora.h"
#include "head.h"
#include "linear.h"
#include "lora.h"
#include "mlp_act.h"
#include "norm.h"
#include "optim.h"
#include "quant4.h"
#include "rope.h"

using namespace pt;

namespace {
thread_local std::string g_error;

// Opt-in per-phase wall time (PREFTUNE_PROFILE=1): printed to stderr after each backward.
struct Profile {
  bool on = std::getenv("PREFTUNE_PROFILE") != nullptr;
  double t[16] = {0};
  double last = 0;
  static double now() { return omp_get_wtime(); }
  void start() { if (on) last = now(); }
  void lap(int k) { if (on) { double n = now(); t[k] += n - last; last = n; } }
  void discard() { for (double& x : t) x = 0; }
  void print() {
    if (!on) return;
    static const char* names[] = {"embed", "norm", "qkv", "rope", "attn", "o_proj", "mlp_up", "swiglu", "mlp_down",
                                  "head", "residual", "recompute", "", "", "", ""};
    std::fprintf(stderr, "[preftune profile]");
    for (int k = 0; k < 12; k++) std::fprintf(stderr, " %s=%.2fs", names[k], t[k]);
    std::fprintf(stderr, "\n");
    for (double& x : t) x = 0;
  }
};
Profile g_prof;

// Flush denormals to zero on every compute thread (MXCSR is per thread). Tiny gradients otherwise hit
// denormal arithmetic, which is ~100x slower; values below 1e-38 carry nothing a loss can see.
void flush_denormals() {
#pragma omp parallel
  _mm_setcsr(_mm_getcsr() | 0x8040);  // FTZ | DAZ
}
enum { P_EMBED, P_NORM, P_QKV, P_ROPE, P_ATTN, P_OPROJ, P_UP, P_SWIGLU, P_DOWN, P_HEAD, P_RESID, P_RECOMPUTE };
pt_status fail(pt_status s, const std::string& msg) { g_error = msg; return s; }
}  // namespace
// The message pt_last_error returns, for the other translation units of the core (mpi.cpp).
pt_status pt::set_error(pt_status s, const std::string& msg) { return fail(s, msg); }
namespace {

struct Layer {  // pointers into the parameter buffer or, for G, the gradient buffer
  float *ln1 = nullptr, *wqkv = nullptr, *bqkv = nullptr, *qn = nullptr, *kn = nullptr, *wo = nullptr,
        *bo = nullptr, *ln2 = nullptr, *wgu = nullptr, *wd = nullptr, *bgu = nullptr, *bd = nullptr;
  // LayerNorm biases of ln1 / ln2; Gemma's post-norms of the attention and MLP outputs (null where absent).
  float *ln1b = nullptr, *ln2b = nullptr, *lna = nullptr, *lnm = nullptr;
  // A bf16-held base (PT_MODEL_BF16_BASE): the matrices live here only and the float ones above are null.
  const uint16_t *hqkv = nullptr, *ho = nullptr, *hgu = nullptr, *hd = nullptr;
  // A 4-bit base (PT_MODEL_NF4_BASE / PT_MODEL_FP4_BASE): the matrices live here only (float and bf16 ones null).
  Q4Matrix qqkv, qo, qgu, qd;
};

// The model-level tensors besides embed, normf and head: LayerNorm's final bias, the head bias, learned positions.
struct Extras {
  float *normfb = nullptr, *headb = nullptr, *positions = nullptr;
  float *proj_in = nullptr, *proj_out = nullptr;  // (C, W) and (W, C), or null
};

// The module names of an arch (preftune.h lists them): the one place they are written. A name left empty does not
// exist in that arch; qkv / gate_up are set when the arch fuses those projections into one weight.
struct Names {
  std::string embed, positions, normf, head;   // model-level modules
  std::string layer_prefix;                    // + layer index + "."
  std::string ln1, ln2, ln_attn_out, ln_mlp_out;  // ln2: the MLP's input norm; the last two: Gemma's post-norms
  std::string q, k, v, qkv, qn, kn, o, gate, up, gate_up, down;
  std::string project_in, project_out;         // OPT's projections between embed_dim and hidden_size
};

// The four linear GEMMs of a layer, in the order an adapter's groups are laid out. An adapter on OPT's projections
// holds them in a slot after the last layer's, as groups G_PROJ_IN and G_PROJ_OUT.
enum { G_QKV, G_O, G_GU, G_DOWN, NGROUPS };
enum { G_PROJ_IN = 0, G_PROJ_OUT = 1 };

// A LoRA adapter set: a second parameter set (own table with PEFT names, flat params and grads) and, per
// layer, views of it grouped like the base GEMMs they ride on.
struct Adapter {
  pt_lora_config cfg{};
  double scaling = 0;
  std::vector<pt_param> table;
  float* params = nullptr;
  float* grads = nullptr;
  int64_t nfloats = 0;
  std::vector<std::array<LoraGroup<float>, NGROUPS>> P;  // (L) per-layer groups, (L + 1) with OPT's projections
  int ucol[NGROUPS] = {0, 0, 0, 0};  // first column of group k's u = x A^T inside a token's row of u
  int uwidth = 0;                    // columns of u per token per layer: sum of members * r
  int max_group = 0;                 // widest group's members * r
  int max_in = 0, max_out = 0;       // widest member input and output
  bool dora = false;
  std::vector<float> norms;          // DoRA: every member's row norms ||W + s B A|| of the last forward
  // Dropout stream: base from pt_lora_set_dropout_seed, training forwards since, and the last one's key.
  uint64_t drop_base = 0, drop_count = 0, drop_key = 0;
  ~Adapter() {
    std::free(params);
    std::free(grads);
  }
};
}  // namespace

struct pt_model {
  pt_config cfg;
  int32_t flags = 0;                    // PT_MODEL_* bits
  uint16_t* params16 = nullptr;         // PT_MODEL_BF16_BASE: every parameter in bf16 (same offsets)
  size_t params_mapped = 0;             // bytes of params when it is an anonymous mapping (bf16 or 4-bit base)
  size_t params16_mapped = 0;           // bytes of params16 when it is an anonymous mapping (bf16 + 4-bit base)
  bool storage_external = false;        // params (fp32) or params16 (bf16 base) is the caller's (pt_model_create_in)
  const uint16_t *embed16 = nullptr, *head16 = nullptr;
  int C, I, V, L, NH, NKV, HS, QKV, AO;  // AO = NH * HS, the attention output width
  int GU = 0;                           // width of the up projection: 2I gated (gate|up), I plain (fc1)
  int W = 0;                            // width of the embeddings and the head: C, or OPT's embed_dim
  int R = 0;                            // rotary dims of each head (partial rotary: < HS)
  Names names;                          // the arch's module names
  Norm<float> norm;                     // RMSNorm (Gemma's 1 + w) or LayerNorm, every norm of the model
  AttnScore score;                      // attention scale and soft-cap
  std::vector<pt_param> table;
  float* params = nullptr;
  float* grads = nullptr;
  int64_t nfloats = 0;
  std::vector<Layer> P, G;
  float *embed, *normf, *head, *gembed, *gnormf, *ghead;
  Extras ex, gex;                       // final-norm bias, head bias, position table (params, grads)
  const uint16_t* pos16 = nullptr;      // the position table of a bf16-held base
  const uint16_t *proj_in16 = nullptr, *proj_out16 = nullptr;  // OPT's projections in a bf16-held base
  std::vector<int32_t> window, use_rope;  // (L) pt_config's layer_window and layer_rope, resolved (0 / 1 by default)
  RopeState rope, rope_local;           // the frequencies in use (rope.h; dynamic RoPE changes them per run); the
                                        // local base's (layer_rope 2), unscaled
  std::vector<float> cosv, sinv;        // (positions, R/2) built from rope.inv
  std::vector<float> cosl, sinl;        // the same from rope_local.inv
  std::unique_ptr<Adapter> lora;  // null: the base model trains
  int32_t compute = PT_COMPUTE_FP32;
  bool checkpoint = false;  // gradient checkpointing: a training forward keeps only each layer's input

  // Packed batch of the last forward.
  bool saved = false;
  int B = 0, T = 0;
  int64_t N = 0;
  std::vector<SeqSpan> seqs;
  std::vector<int32_t> tok, pos, labels;  // (N)
  std::vector<int64_t> out_index;         // (N) index into (B, T) outputs of the label row n predicts
  // Activations, (L, ...) when training, one slot otherwise.
  Buf<float> xin, rstd1, qkv, qkvpre, qkrstd, att, lse, xmid, rstd2, gu, hf, rstdf, headlse;
  Buf<float> aout, rstda, mout, rstdm;  // Gemma: the attention and MLP outputs before their post-norms, and rstds
                                        // (OPT's norm_after: the sums before its norms)
  Buf<float> xe, hn;                    // embed_dim: the embeddings (N, W); the final hidden (N, C) before project_out
  Buf<float> h, h2, act, tmp, dx, dh, dh2, dact, dgu, datt, dqkv, headwork;
  Buf<float> r_logp, r_mean, r_ent;
  Buf<float> xscratch;  // (N, C) the discarded output of a layer recomputed in the backward
  Buf<float> lora_u, lora_du, lora_sink;  // (L, N, uwidth) or one slot; (N, max_group); (max(C, HS))
  Buf<float> lora_top;                    // (2, N, r): u of an adapter on OPT's project_in and project_out
  // The member-wise path (dora.h): x~ (N, max_in), t and w (N, max_out), du (N, r), dx~ (N, max_in), one row per
  // thread for the norms, and one member's base rows widened from a bf16-held base (max_out, max_in).
  Buf<float> dora_xd, dora_t, dora_w, dora_du, dora_dX, dora_row, dora_W;
  Buf<uint8_t> r_correct;
  // bf16 mode: operand scratch, one linear weight and the head (each converted right before its GEMMs).
  Bf16Scratch bs;
  Buf<bf16> wb, headwb;
  Buf<float> wtile;  // a bf16-held weight widened for an fp32 GEMM (one layer's matrix or a block of head rows)
  // 4-bit base: one Q4Tensor per table entry (size 0 for the tensors that stay unquantized); absmax values of the
  // tensor being loaded, kept in fp32 until its last chunk when double quantization compresses them.
  std::vector<Q4Tensor> q4;
  Buf<float> q4absmax;
};

// The most tokens per row one pass of decoding appends when the cache has sliding-window rings: longer appends
// (prefill) run in chunks of it, in order, so a ring always holds its window plus the pass's new tokens.
constexpr int kDecodeChunk = 128;

struct pt_kv_cache {
  int B = 0, Tmax = 0, L = 0, NKV = 0, HS = 0;
  std::vector<int32_t> held;     // (B) tokens each row holds
  // Layer l holds (B, NKV, cap[l], HS) at offset[l]: cap Tmax, or for a sliding-window layer w a ring of
  // w - 1 + kDecodeChunk positions (position s in slot s % cap), when that is shorter.
  std::vector<int32_t> cap;
  std::vector<size_t> offset;
  float* k = nullptr;
  float* v = nullptr;
  // Scratch of one pt_decode over N new tokens of n rows.
  std::vector<SeqSpan> seqs;     // (n)
  std::vector<int32_t> tok, pos, past;
  Buf<float> x, xm, h, h2, rstd, rstd2, qkv, qkvpre, att, ao, mo, gu, act, lu, hf, xe, hn;
  Buf<float> dn;                 // DoRA: one member's row norms
  ~pt_kv_cache() {
    std::free(k);
    std::free(v);
  }
};

namespace {

void add_to(std::vector<pt_param>& table, const std::string& name, int64_t d0, int64_t d1, bool decay,
            int64_t& off, bool quant4 = false) {
  pt_param p{};
  std::snprintf(p.name, sizeof p.name, "%s", name.c_str());
  p.ndim = d1 > 0 ? 2 : 1;
  p.shape[0] = d0;
  p.shape[1] = d1 > 0 ? d1 : 0;
  p.size = d0 * (d1 > 0 ? d1 : 1);
  p.offset = off;
  p.decay = decay;
  p.quant4 = quant4;
  table.push_back(p);
  off += p.size;
}

// Tensors that must be contiguous (q|k|v, gate|up) are laid out back to back; every other tensor
// starts on a 64-byte boundary.
void align(int64_t& off) { off = (off + 15) / 16 * 16; }

Names names_of(const pt_config& c) {
  Names n;
  switch (c.arch) {
    case PT_ARCH_PHI:
      n = {"model.embed_tokens", "", "model.final_layernorm", "lm_head", "model.layers.", "input_layernorm", "", "", "",
           "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "", "", "", "self_attn.dense", "", "mlp.fc1", "",
           "mlp.fc2", "", ""};
      break;
    case PT_ARCH_GPT_NEOX:
      n = {"gpt_neox.embed_in", "", "gpt_neox.final_layer_norm", "embed_out", "gpt_neox.layers.", "input_layernorm",
           "post_attention_layernorm", "", "", "", "", "", "attention.query_key_value", "", "", "attention.dense", "",
           "mlp.dense_h_to_4h", "", "mlp.dense_4h_to_h", "", ""};
      break;
    case PT_ARCH_OPT:
      n = {"model.decoder.embed_tokens", "model.decoder.embed_positions", "model.decoder.final_layer_norm", "lm_head",
           "model.decoder.layers.", "self_attn_layer_norm", "final_layer_norm", "", "", "self_attn.q_proj",
           "self_attn.k_proj", "self_attn.v_proj", "", "", "", "self_attn.out_proj", "", "fc1", "", "fc2",
           "model.decoder.project_in", "model.decoder.project_out"};
      break;
    default:  // PT_ARCH_LLAMA, PT_ARCH_PHI3
      n = {"model.embed_tokens", "", "model.norm", "lm_head", "model.layers.", "input_layernorm",
           c.sandwich_norms ? "pre_feedforward_layernorm" : "post_attention_layernorm",
           c.sandwich_norms ? "post_attention_layernorm" : "", c.sandwich_norms ? "post_feedforward_layernorm" : "",
           "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "", "self_attn.q_norm", "self_attn.k_norm",
           "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "", "mlp.down_proj", "", ""};
      if (c.arch == PT_ARCH_PHI3) {
        n.q = n.k = n.v = n.gate = n.up = "";
        n.qkv = "self_attn.qkv_proj";
        n.gate_up = "mlp.gate_up_proj";
      }
  }
  return n;
}

// The parameter layout of a config, appended to `table`; returns the buffer length in floats. The one definition
// of the layout: models are built on it and pt_param_layout hands it out before any buffer exists. Projection
// weights of the layers are marked quant4 (bitsandbytes' Linear4bit replaces every nn.Linear but the head).
int64_t build_layout(const pt_config& cfg, std::vector<pt_param>& table) {
  int64_t off = 0;
  const int64_t C = cfg.hidden_size, I = cfg.intermediate_size, V = cfg.vocab_size, NH = cfg.num_heads,
                NKV = cfg.num_kv_heads, HS = cfg.head_dim, GU = cfg.mlp_plain ? I : 2 * I;
  const Names nm = names_of(cfg);
  const bool ln = cfg.norm_type == PT_NORM_LAYER;
  auto add = [&](const std::string& name, int64_t d0, int64_t d1, bool decay, bool q4 = false) {
    add_to(table, name, d0, d1, decay, off, q4);
  };
  auto norm = [&](const std::string& name, int64_t D) {
    align(off); add(name + ".weight", D, 0, false);
    if (ln) { align(off); add(name + ".bias", D, 0, false); }
  };
  // One stacked matrix (rows of each member back to back) and, with bias, its stacked bias.
  auto stacked = [&](const std::string& p, std::initializer_list<std::pair<const std::string*, int64_t>> members, int64_t in,
                     bool bias) {
    align(off);
    for (const auto& [name, rows] : members) if (!name->empty()) add(p + *name + ".weight", rows, in, true, true);
    if (!bias) return;
    align(off);
    for (const auto& [name, rows] : members) if (!name->empty()) add(p + *name + ".bias", rows, 0, false);
  };
  const int64_t W = cfg.embed_dim > 0 ? cfg.embed_dim : C;  // the embeddings' and the head's width
  add(nm.embed + ".weight", V, W, true);
  if (cfg.position_rows > 0) { align(off); add(nm.positions + ".weight", cfg.position_rows, C, true); }
  if (cfg.embed_dim > 0) {
    align(off); add(nm.project_out + ".weight", W, C, true);
    align(off); add(nm.project_in + ".weight", C, W, true);
  }
  for (int l = 0; l < cfg.num_layers; l++) {
    const std::string p = nm.layer_prefix + std::to_string(l) + ".";
    norm(p + nm.ln1, C);
    if (!nm.qkv.empty()) stacked(p, {{&nm.qkv, (NH + 2 * NKV) * HS}}, C, cfg.qkv_bias);
    else stacked(p, {{&nm.q, NH * HS}, {&nm.k, NKV * HS}, {&nm.v, NKV * HS}}, C, cfg.qkv_bias);
    if (cfg.qk_norm) {
      align(off); add(p + nm.qn + ".weight", HS, 0, false);
      align(off); add(p + nm.kn + ".weight", HS, 0, false);
    }
    stacked(p, {{&nm.o, C}}, NH * HS, cfg.o_bias);
    if (!nm.ln_attn_out.empty()) norm(p + nm.ln_attn_out, C);
    if (!nm.ln2.empty()) norm(p + nm.ln2, C);
    if (!nm.gate_up.empty()) stacked(p, {{&nm.gate_up, GU}}, C, cfg.mlp_bias);
    else if (cfg.mlp_plain) stacked(p, {{&nm.up, I}}, C, cfg.mlp_bias);
    else stacked(p, {{&nm.gate, I}, {&nm.up, I}}, C, cfg.mlp_bias);
    stacked(p, {{&nm.down, C}}, I, cfg.mlp_bias);
    if (!nm.ln_mlp_out.empty()) norm(p + nm.ln_mlp_out, C);
  }
  if (!cfg.no_final_norm) norm(nm.normf, C);
  if (!cfg.tie_word_embeddings) { align(off); add(nm.head + ".weight", V, W, true); }
  if (cfg.head_bias) { align(off); add(nm.head + ".bias", V, 0, false); }
  align(off);
  return off;
}

// "" when the family fields of a config are consistent, else what is wrong.
std::string family_check(const pt_config& c) {
  auto in = [](int32_t v, int32_t lo, int32_t hi) { return v >= lo && v <= hi; };
  auto nonneg = [](float v) { return std::isfinite(v) && v >= 0; };
  if (!in(c.arch, PT_ARCH_LLAMA, PT_ARCH_OPT)) return "unknown arch " + std::to_string(c.arch);
  if (!in(c.norm_type, PT_NORM_RMS, PT_NORM_LAYER)) return "unknown norm_type " + std::to_string(c.norm_type);
  if (!in(c.mlp_act, PT_ACT_SILU, PT_ACT_RELU)) return "unknown mlp_act " + std::to_string(c.mlp_act);
  if (!in(c.parallel_residual, 0, 2)) return "parallel_residual must be 0, 1 or 2";
  for (int32_t f : {c.norm_unit_offset, c.sandwich_norms, c.mlp_plain, c.head_bias})
    if (!in(f, 0, 1)) return "norm_unit_offset, sandwich_norms, mlp_plain and head_bias are 0 or 1";
  if (c.rotary_dim < 0 || c.rotary_dim > c.head_dim || c.rotary_dim % 2 != 0)
    return "rotary_dim = " + std::to_string(c.rotary_dim) + " must be even and at most head_dim (0: all of it)";
  if (c.position_rows < 0 || c.position_offset < 0) return "position_rows and position_offset must not be negative";
  if (c.position_rows > 0 && (int64_t)c.max_position_embeddings + c.position_offset > c.position_rows)
    return "the position table (" + std::to_string(c.position_rows) + " rows) must cover max_position_embeddings + position_offset";
  if (!nonneg(c.embed_scale) || !nonneg(c.attn_scale) || !nonneg(c.attn_softcap) || !nonneg(c.final_softcap) || !nonneg(c.rope_local_theta))
    return "embed_scale, attn_scale, attn_softcap, final_softcap and rope_local_theta must be finite and not negative";
  // What each arch's names can express.
  const bool plain_arch = c.arch == PT_ARCH_PHI || c.arch == PT_ARCH_GPT_NEOX || c.arch == PT_ARCH_OPT;
  if (plain_arch != (c.mlp_plain != 0)) return "this arch's MLP is " + std::string(plain_arch ? "plain (fc1, fc2): set mlp_plain" : "gated: mlp_plain must be 0");
  if ((c.arch == PT_ARCH_PHI) != (c.parallel_residual == 1)) return "parallel_residual 1 (one shared norm) is Phi-2's layout and only it";
  if (c.parallel_residual == 2 && c.arch != PT_ARCH_GPT_NEOX) return "parallel_residual 2 is GPT-NeoX's layout";
  if (c.sandwich_norms && (c.arch != PT_ARCH_LLAMA || c.parallel_residual)) return "sandwich_norms needs arch PT_ARCH_LLAMA, sequential";
  if (c.qk_norm && (c.arch != PT_ARCH_LLAMA || c.norm_type != PT_NORM_RMS)) return "qk_norm is an RMSNorm of the PT_ARCH_LLAMA names";
  if (c.position_rows > 0 && c.arch != PT_ARCH_OPT) return "learned positions are OPT's (arch PT_ARCH_OPT)";
  if (c.norm_unit_offset && c.norm_type != PT_NORM_RMS) return "norm_unit_offset applies to RMSNorm";
  for (int32_t f : {c.norm_after, c.no_final_norm})
    if (!in(f, 0, 1)) return "norm_after and no_final_norm are 0 or 1";
  if (c.embed_dim < 0) return "embed_dim must not be negative";
  if ((c.norm_after || c.no_final_norm || c.embed_dim > 0) && c.arch != PT_ARCH_OPT)
    return "norm_after, no_final_norm and embed_dim are OPT's (arch PT_ARCH_OPT)";
  return "";
}

// The checks every config passes before a layout or a model is made of it.
pt_status check_config(const pt_config* cfg) {
  if (cfg->vocab_size <= 0 || cfg->hidden_size <= 0 || cfg->intermediate_size <= 0 || cfg->num_layers <= 0 ||
      cfg->num_heads <= 0 || cfg->num_kv_heads <= 0 || cfg->head_dim <= 0 || cfg->max_position_embeddings <= 0)
    return fail(PT_ERR_ARGUMENT, "every model dimension must be positive");
  if (cfg->num_heads % cfg->num_kv_heads != 0)
    return fail(PT_ERR_ARGUMENT, "num_attention_heads (" + std::to_string(cfg->num_heads) +
                                     ") must be a multiple of num_key_value_heads (" +
                                     std::to_string(cfg->num_kv_heads) + ")");
  if (cfg->head_dim % 2 != 0) return fail(PT_ERR_ARGUMENT, "head_dim must be even for rotary embeddings");
  const std::string rope_error = rope_check(rope_scaling_of(*cfg), cfg->rotary_dim > 0 ? cfg->rotary_dim : cfg->head_dim);
  if (!rope_error.empty()) return fail(PT_ERR_ARGUMENT, rope_error);
  for (int l = 0; l < cfg->num_layers; l++) {
    if (cfg->layer_window && cfg->layer_window[l] < 0)
      return fail(PT_ERR_ARGUMENT, "layer_window[" + std::to_string(l) + "] = " + std::to_string(cfg->layer_window[l]) + " must be 0 (full attention) or a positive sliding window");
    if (cfg->layer_rope && (cfg->layer_rope[l] < 0 || cfg->layer_rope[l] > 2))
      return fail(PT_ERR_ARGUMENT, "layer_rope[" + std::to_string(l) + "] = " + std::to_string(cfg->layer_rope[l]) + " must be 1 (RoPE), 2 (RoPE with the local base) or 0 (no RoPE)");
    if (cfg->layer_rope && cfg->layer_rope[l] == 2 && !(cfg->rope_local_theta > 0))
      return fail(PT_ERR_ARGUMENT, "layer_rope[" + std::to_string(l) + "] = 2 needs a positive rope_local_theta");
  }
  const std::string family = family_check(*cfg);
  if (!family.empty()) return fail(PT_ERR_ARGUMENT, family);
  const int64_t qkv = ((int64_t)cfg->num_heads + 2 * (int64_t)cfg->num_kv_heads) * cfg->head_dim;
  if (qkv > INT32_MAX || 2 * (int64_t)cfg->intermediate_size > INT32_MAX)
    return fail(PT_ERR_ARGUMENT, "the attention or MLP width of this config does not fit 32-bit indexing");
  return PT_OK;
}

float* find(pt_model* m, float* base, const std::string& name) {
  for (auto& p : m->table) if (name == p.name) return base + p.offset;
  return nullptr;
}

void bind_views(pt_model* m, float* base, std::vector<Layer>& Ls, float*& embed, float*& normf, float*& head, Extras& ex) {
  const Names& n = m->names;
  // name.weight or name.bias of a module (null: absent, or no such module in this arch)
  auto get = [&](const std::string& p, const std::string& mod, const char* what) {
    return mod.empty() ? nullptr : find(m, base, p + mod + what);
  };
  Ls.assign(m->L, Layer{});
  for (int l = 0; l < m->L; l++) {
    const std::string p = n.layer_prefix + std::to_string(l) + ".";
    Layer& y = Ls[l];
    y.ln1 = get(p, n.ln1, ".weight");
    y.ln1b = get(p, n.ln1, ".bias");
    y.wqkv = get(p, n.qkv.empty() ? n.q : n.qkv, ".weight");
    y.bqkv = get(p, n.qkv.empty() ? n.q : n.qkv, ".bias");
    y.qn = get(p, n.qn, ".weight");
    y.kn = get(p, n.kn, ".weight");
    y.wo = get(p, n.o, ".weight");
    y.bo = get(p, n.o, ".bias");
    y.lna = get(p, n.ln_attn_out, ".weight");
    // the MLP's input norm: its own, or (Phi-2) the shared ln1
    y.ln2 = n.ln2.empty() ? y.ln1 : get(p, n.ln2, ".weight");
    y.ln2b = n.ln2.empty() ? y.ln1b : get(p, n.ln2, ".bias");
    const std::string& up = !n.gate_up.empty() ? n.gate_up : m->cfg.mlp_plain ? n.up : n.gate;
    y.wgu = get(p, up, ".weight");
    y.bgu = get(p, up, ".bias");
    y.wd = get(p, n.down, ".weight");
    y.bd = get(p, n.down, ".bias");
    y.lnm = get(p, n.ln_mlp_out, ".weight");
  }
  embed = find(m, base, n.embed + ".weight");
  normf = find(m, base, n.normf + ".weight");
  head = m->cfg.tie_word_embeddings ? embed : find(m, base, n.head + ".weight");
  ex.normfb = find(m, base, n.normf + ".bias");
  ex.headb = find(m, base, n.head + ".bias");
  ex.positions = n.positions.empty() ? nullptr : find(m, base, n.positions + ".weight");
  ex.proj_in = m->cfg.embed_dim > 0 ? find(m, base, n.project_in + ".weight") : nullptr;
  ex.proj_out = m->cfg.embed_dim > 0 ? find(m, base, n.project_out + ".weight") : nullptr;
}


// The adapter's table and views (layout documented in preftune.h). Allocates zeroed buffers.
bool build_adapter(const pt_model* m, Adapter& a) {
  struct Member { std::string name; int bit, col, out; };
  const int AO = m->AO, KV = m->NKV * m->HS, C = m->C, I = m->I, r = a.cfg.r;
  const Names& nm = m->names;
  const int in[NGROUPS] = {C, AO, C, I};
  // A fused weight is one member that any of its parts' bits selects (PEFT adapts the module as it is).
  const int QKV_BITS = PT_LORA_Q_PROJ | PT_LORA_K_PROJ | PT_LORA_V_PROJ, GU_BITS = PT_LORA_GATE_PROJ | PT_LORA_UP_PROJ;
  std::vector<Member> spec[NGROUPS];
  if (!nm.qkv.empty()) spec[G_QKV] = {{nm.qkv, QKV_BITS, 0, m->QKV}};
  else spec[G_QKV] = {{nm.q, PT_LORA_Q_PROJ, 0, AO}, {nm.k, PT_LORA_K_PROJ, AO, KV}, {nm.v, PT_LORA_V_PROJ, AO + KV, KV}};
  spec[G_O] = {{nm.o, PT_LORA_O_PROJ, 0, C}};
  if (!nm.gate_up.empty()) spec[G_GU] = {{nm.gate_up, GU_BITS, 0, m->GU}};
  else if (m->cfg.mlp_plain) spec[G_GU] = {{nm.up, PT_LORA_UP_PROJ, 0, I}};
  else spec[G_GU] = {{nm.gate, PT_LORA_GATE_PROJ, 0, I}, {nm.up, PT_LORA_UP_PROJ, I, I}};
  spec[G_DOWN] = {{nm.down, PT_LORA_DOWN_PROJ, 0, C}};
  // OPT's project_in / project_out: groups G_PROJ_IN and G_PROJ_OUT of a slot after the layers (index L)
  std::vector<Member> top[NGROUPS];
  const int W = m->W, top_in[NGROUPS] = {W, C, 0, 0};
  if (m->cfg.embed_dim > 0) {
    top[G_PROJ_IN] = {{nm.project_in, PT_LORA_PROJECT_IN, 0, C}};
    top[G_PROJ_OUT] = {{nm.project_out, PT_LORA_PROJECT_OUT, 0, W}};
  }
  const int slots = m->L + (m->cfg.embed_dim > 0 ? 1 : 0);
  struct Offsets { int64_t A = 0, B[3] = {0, 0, 0}, M[3] = {0, 0, 0}; };
  std::vector<std::array<Offsets, NGROUPS>> offs(slots);
  a.P.assign(slots, {});
  int64_t off = 0;
  for (int l = 0; l < slots; l++) {
    const bool layer = l < m->L;
    const std::string p = "base_model.model." + (layer ? nm.layer_prefix + std::to_string(l) + "." : std::string());
    for (int k = 0; k < NGROUPS; k++) {
      LoraGroup<float>& g = a.P[l][k];
      std::vector<Member> on;
      for (const Member& x : layer ? spec[k] : top[k]) if (a.cfg.targets & x.bit) on.push_back(x);
      g.members = (int)on.size();
      g.in = layer ? in[k] : top_in[k];
      g.r = r;
      if (on.empty()) continue;
      align(off);
      offs[l][k].A = off;
      for (const Member& x : on) add_to(a.table, p + x.name + ".lora_A.weight", r, g.in, true, off);
      for (int j = 0; j < g.members; j++) {
        align(off);
        offs[l][k].B[j] = off;
        add_to(a.table, p + on[j].name + ".lora_B.weight", on[j].out, r, true, off);
        g.col[j] = on[j].col;
        g.out[j] = on[j].out;
      }
      for (int j = 0; j < g.members && a.dora; j++) {
        align(off);
        offs[l][k].M[j] = off;
        add_to(a.table, p + on[j].name + ".lora_magnitude_vector", on[j].out, 0, true, off);
      }
    }
  }
  align(off);
  a.nfloats = off;
  size_t nnorm = 0;
  for (int l = 0; l < slots; l++)
    for (int k = 0; k < NGROUPS; k++)
      for (int j = 0; j < a.P[l][k].members; j++) {
        nnorm += a.dora ? a.P[l][k].out[j] : 0;
        a.max_in = std::max(a.max_in, a.P[l][k].in);
        a.max_out = std::max(a.max_out, a.P[l][k].out[j]);
      }
  a.norms.assign(nnorm, 0.0f);
  a.uwidth = 0;
  for (int k = 0; k < NGROUPS; k++) {
    a.ucol[k] = a.uwidth;
    a.uwidth += a.P[0][k].members * r;
    a.max_group = std::max(a.max_group, a.P[0][k].members * r);
  }
  if (slots > m->L) a.max_group = std::max(a.max_group, r);  // the projections' single members
  const size_t bytes = ((size_t)a.nfloats * sizeof(float) + 63) / 64 * 64;
  a.params = static_cast<float*>(std::aligned_alloc(64, bytes));
  a.grads = static_cast<float*>(std::aligned_alloc(64, bytes));
  if (!a.params || !a.grads) return false;
  std::memset(a.params, 0, bytes);
  std::memset(a.grads, 0, bytes);
  for (int l = 0; l < slots; l++) {
    for (int k = 0; k < NGROUPS; k++) {
      LoraGroup<float>& g = a.P[l][k];
      if (!g.members) continue;
      g.A = a.params + offs[l][k].A;
      g.dA = a.grads + offs[l][k].A;
      for (int j = 0; j < g.members; j++) {
        g.B[j] = a.params + offs[l][k].B[j];
        g.dB[j] = a.grads + offs[l][k].B[j];
      }
    }
  }
  float* nb = a.norms.data();
  for (int l = 0; l < slots && a.dora; l++)
    for (int k = 0; k < NGROUPS; k++) {
      LoraGroup<float>& g = a.P[l][k];
      for (int j = 0; j < g.members; j++) {
        g.mag[j] = a.params + offs[l][k].M[j];
        g.dmag[j] = a.grads + offs[l][k].M[j];
        g.norm[j] = nb;
        nb += g.out[j];
      }
    }
  return true;
}

// RoPE tables for a run whose positions reach positions - 1: the longest row, where transformers takes
// max(position_ids) + 1 (the padded width when no position_ids are passed; the same when rows are padded to the
// longest, as TRL's collators pad), which is what dynamic RoPE's frequencies depend on. They cover
// the positions used so far (grown by doubling up to max_position_embeddings), so a config with a huge
// max_position_embeddings costs nothing until such lengths are run; dynamic RoPE may first change the
// frequencies (rope_update), which rebuilds them and drops a saved training forward. Throws std::bad_alloc.
void ensure_rope(pt_model* m, int64_t positions) {
  const size_t half = m->R / 2;
  const int64_t have = (int64_t)(m->cosv.size() / half);
  const bool changed = rope_update(m->rope, positions);
  if (changed) m->saved = false;
  if (!changed && have >= positions) return;
  const int64_t grown = std::max<int64_t>(positions, std::min<int64_t>(2 * have + 64, m->cfg.max_position_embeddings));
  rope_tables(m->cosv, m->sinv, (int)grown, m->rope.inv, m->rope.scale);
  if (std::find(m->use_rope.begin(), m->use_rope.end(), 2) != m->use_rope.end())
    rope_tables(m->cosl, m->sinl, (int)grown, m->rope_local.inv, m->rope_local.scale);
}

double l2norm(const float* g, int64_t n) {
  double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static)
  for (int64_t i = 0; i < n; i++) s += (double)g[i] * g[i];
  return std::sqrt(s);
}

void scale(float* g, int64_t n, float s) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) g[i] *= s;
}

bool bf16_base(const pt_model* m) { return m->flags & PT_MODEL_BF16_BASE; }
bool q4_base(const pt_model* m) { return m->flags & (PT_MODEL_NF4_BASE | PT_MODEL_FP4_BASE); }
bool frozen_base(const pt_model* m) { return bf16_base(m) || q4_base(m); }


// Storage of every quantized tensor (zeroed: an unloaded tensor reads as 0) and the layers' 4-bit views.
bool build_q4(pt_model* m) {
  const bool nested = m->flags & PT_MODEL_DOUBLE_QUANT;
  m->q4.assign(m->table.size(), Q4Tensor{});
  for (size_t i = 0; i < m->table.size(); i++) {
    const pt_param& p = m->table[i];
    if (!p.quant4) continue;
    Q4Tensor& t = m->q4[i];
    t.size = p.size;
    const int64_t nb = t.nblocks();
    t.packed = static_cast<uint8_t*>(std::calloc((size_t)(p.size + 1) / 2, 1));
    if (nested) {
      t.qabs = static_cast<uint8_t*>(std::calloc((size_t)nb, 1));
      t.absmax2 = static_cast<float*>(std::calloc((size_t)(nb + kQ4Block2 - 1) / kQ4Block2, sizeof(float)));
      if (!t.qabs || !t.absmax2) return false;
    } else {
      t.absmax = static_cast<float*>(std::calloc((size_t)nb, sizeof(float)));
      if (!t.absmax) return false;
    }
    if (!t.packed) return false;
  }
  const float* code = q4_code(m->flags & PT_MODEL_FP4_BASE ? Q4_FP4 : Q4_NF4);
  auto tensor = [&](const std::string& name) -> const Q4Tensor* {
    for (size_t i = 0; i < m->table.size(); i++) if (name == m->table[i].name) return &m->q4[i];
    return nullptr;
  };
  const Names& nm = m->names;
  const int KV = m->NKV * m->HS;
  for (int l = 0; l < m->L; l++) {
    const std::string p = nm.layer_prefix + std::to_string(l) + ".";
    auto mat = [&](Q4Matrix& q, std::initializer_list<std::pair<const std::string*, int>> members, int cols) {
      q.cols = cols;
      q.code = code;
      for (const auto& [name, rows] : members) {
        if (name->empty()) continue;
        q.t[q.n] = tensor(p + *name + ".weight");
        q.rows[q.n++] = rows;
      }
    };
    Layer& y = m->P[l];
    if (!nm.qkv.empty()) mat(y.qqkv, {{&nm.qkv, m->QKV}}, m->C);
    else mat(y.qqkv, {{&nm.q, m->AO}, {&nm.k, KV}, {&nm.v, KV}}, m->C);
    mat(y.qo, {{&nm.o, m->C}}, m->AO);
    if (!nm.gate_up.empty()) mat(y.qgu, {{&nm.gate_up, m->GU}}, m->C);
    else if (m->cfg.mlp_plain) mat(y.qgu, {{&nm.up, m->I}}, m->C);
    else mat(y.qgu, {{&nm.gate, m->I}, {&nm.up, m->I}}, m->C);
    mat(y.qd, {{&nm.down, m->C}}, m->I);
    y.wqkv = y.wo = y.wgu = y.wd = nullptr;
    y.hqkv = y.ho = y.hgu = y.hd = nullptr;
  }
  return true;
}

// The base gradient buffer, allocated zeroed on first need (pt_model_grads documents when). False when that fails.
bool ensure_grads(pt_model* m) {
  if (m->grads) return true;
  if (frozen_base(m)) return false;  // a bf16-held or 4-bit base is frozen
  const size_t bytes = ((size_t)m->nfloats * sizeof(float) + 63) / 64 * 64;
  m->grads = static_cast<float*>(std::aligned_alloc(64, bytes));
  if (!m->grads) return false;
  std::memset(m->grads, 0, bytes);
  try {
    bind_views(m, m->grads, m->G, m->gembed, m->gnormf, m->ghead, m->gex);
  } catch (const std::bad_alloc&) {
    std::free(m->grads);
    m->grads = nullptr;
    return false;
  }
  return true;
}

// A weight (rows, cols) rounded to bf16 into buf, for the GEMMs of the bf16 mode.
const bf16* bf16_weight(Buf<bf16>& buf, const float* W, int64_t rows, int64_t cols) {
  bf16* w = buf.need((size_t)(rows * cols));
  to_bf16(w, W, rows * cols);
  return w;
}

// A bf16-held base keeps its 1-D tensors (norm weights, biases) widened in the fp32 buffer, whose other pages are
// never touched (so never resident). Refreshed at each forward and decode: a few floats per layer.
void refresh_small(pt_model* m) {
  if (!bf16_base(m)) return;
  for (const pt_param& p : m->table)
    if (p.ndim == 1) from_bf16(m->params + p.offset, m->params16 + p.offset, p.size);
}

// y (N, out) = x W^T + b for a base weight held in fp32 (W), only in bf16 (Wh) or in 4 bits (Q): bf16 operands when
// mixed, else fp32 math (a bf16-held weight widened, or read directly by few rows). A 4-bit weight always runs fp32
// math over tiles it dequantizes (bitsandbytes' compute dtype float32).
void base_linear(pt_model* m, bool mixed, float* y, const float* x, const float* W, const uint16_t* Wh, const Q4Matrix& Q,
                 const float* b, int N, int in, int out) {
  if (Q.n) return linear_forward_q4(y, x, Q, b, N, in, out, m->wtile);
  if (mixed) return linear_forward_bf16(y, x, Wh ? Wh : bf16_weight(m->wb, W, out, in), b, N, in, out, m->bs);
  if (Wh) return linear_forward_widen(y, x, Wh, b, N, in, out, m->wtile);
  linear_forward(y, x, W, b, N, in, out);
}

// The head weight's bf16 form for this pass, or null (fp32 weight and fp32 compute).
const HeadBf16* head_bf16(pt_model* m, bool mixed, HeadBf16& hw) {
  if (!mixed && !m->head16) return nullptr;
  hw.W = m->head16 ? m->head16 : bf16_weight(m->headwb, m->head, m->V, m->W);
  hw.widen = !mixed;
  hw.s = &m->bs;
  hw.tile = &m->wtile;
  return &hw;
}

// torch.optim.AdamW over one parameter set (base or adapter), tensor by tensor (optim.h): decoupled weight decay
// only where the table says so.
void adamw(const std::vector<pt_param>& table, float* params, const float* grads, float* exp_avg,
           float* exp_avg_sq, int64_t step, float lr, float beta1, float beta2, float eps, float weight_decay) {
  const AdamWStep decay(step, lr, beta1, beta2, eps, weight_decay), plain(step, lr, beta1, beta2, eps, 0.0f);
  for (const pt_param& p : table)
    adamw_tensor(params + p.offset, grads + p.offset, exp_avg + p.offset, exp_avg_sq + p.offset, p.size,
                 p.decay ? decay : plain);
}

// ---- The member-wise adapter path (dora.h): LoRA dropout in training forwards, and DoRA ----

// Whether group terms run member by member: DoRA always, dropout in training forwards (else lora.h's fused path).
bool member_path(const Adapter& a, bool train) { return a.dora || (train && a.cfg.lora_dropout > 0.0f); }

// Member j of group k in layer l: its dropout in this forward (off outside training).
Dropout member_dropout(const Adapter& a, bool train, int l, int k, int j) {
  Dropout d;
  if (train && a.cfg.lora_dropout > 0.0f) {
    d.p = a.cfg.lora_dropout;
    d.key = mix64(a.drop_key ^ mix64(((uint64_t)l * NGROUPS + k) * 4 + j + 1));
  }
  return d;
}

// The base matrix adapter group k of slot l rides on: fp32 (W) or held in bf16 only (Wh, W then null), and its
// rows. Slot L holds OPT's projections (G_PROJ_IN, G_PROJ_OUT).
struct GroupMatrix {
  float* W;
  const uint16_t* Wh;
  int64_t rows;
};
GroupMatrix group_matrix(pt_model* m, int l, int k) {
  if (l == m->L) return k == G_PROJ_IN ? GroupMatrix{m->ex.proj_in, m->proj_in16, m->C} : GroupMatrix{m->ex.proj_out, m->proj_out16, m->W};
  const Layer& P = m->P[l];
  switch (k) {
    case G_QKV: return {P.wqkv, P.hqkv, m->QKV};
    case G_O: return {P.wo, P.ho, m->C};
    case G_GU: return {P.wgu, P.hgu, m->GU};
    default: return {P.wd, P.hd, m->C};
  }
}

// Rows [row0, row0 + rows) of group k's base matrix in slot l, as fp32: the matrix itself, or (a bf16-held base)
// widened into m->dora_W.
const float* group_rows(pt_model* m, int l, int k, int row0, int rows, int in) {
  const GroupMatrix g = group_matrix(m, l, k);
  if (g.W) return g.W + (size_t)row0 * in;
  float* t = m->dora_W.need((size_t)rows * in);
  from_bf16(t, g.Wh + (size_t)row0 * in, (int64_t)rows * in);
  return t;
}
const float* group_bias(const pt_model* m, int l, int k) {
  if (l == m->L) return nullptr;  // OPT's projections have no bias
  const Layer& P = m->P[l];
  const float* b[NGROUPS] = {P.bqkv, P.bo, P.bgu, P.bd};
  return b[k];
}

// The member's DoRA views (magnitude, norms, base rows, bias); norm_to: where this forward's norms go (null: the
// adapter's own, kept for the backward), compute: recompute them (a forward) or read the last forward's (backward).
void dora_views(pt_model* m, const Adapter& a, int l, int k, int j, LoraMember<float>& mem, float* norm_to, bool compute) {
  const LoraGroup<float>& g = a.P[l][k];
  mem.mag = g.mag[j];
  mem.dmag = g.dmag[j];
  mem.W = group_rows(m, l, k, mem.col, mem.out, g.in);
  const float* b = group_bias(m, l, k);
  mem.bias = b ? b + mem.col : nullptr;
  float* n = norm_to ? norm_to : g.norm[j];
  if (compute)
    dora_norms(n, mem.W, mem.A, mem.B, mem.out, g.in, g.r, (float)a.scaling,
               m->dora_row.need((size_t)omp_get_max_threads() * g.in));
  mem.norm = n;
}

// y (N, ldy) += the adapter terms of group k, member by member; u (N, members * r) receives x~ A^T. norm_to: as
// in dora_views (decoding passes its own scratch so it never touches what a backward reads).
void members_forward(pt_model* m, const Adapter& a, bool train, int l, int k, float* y, int ldy, float* u,
                     const float* x, int N, float* norm_to) {
  const LoraGroup<float>& g = a.P[l][k];
  for (int j = 0; j < g.members; j++) {
    LoraMember<float> mem = member_of(g, j);
    const Dropout d = member_dropout(a, train, l, k, j);
    MemberScratch<float> S;
    if (d.on()) S.xd = m->dora_xd.need((size_t)N * g.in);
    if (g.mag[j]) {
      dora_views(m, a, l, k, j, mem, norm_to, true);
      S.t = m->dora_t.need((size_t)N * mem.out);
      if (d.on()) S.w = m->dora_w.need((size_t)N * mem.out);
    }
    member_forward(y, ldy, u + j * g.r, g.members * g.r, x, mem, N, (float)a.scaling, d, S);
  }
}

// The backward of members_forward after a training forward: dx (N, in) += input gradients, dA, dB, dm accumulate.
void members_backward(pt_model* m, const Adapter& a, int l, int k, float* dx, const float* dy, int ldy, const float* x,
                      const float* u, int N) {
  const LoraGroup<float>& g = a.P[l][k];
  for (int j = 0; j < g.members; j++) {
    LoraMember<float> mem = member_of(g, j);
    const Dropout d = member_dropout(a, true, l, k, j);
    MemberScratch<float> S;
    S.du = m->dora_du.need((size_t)N * g.r);
    if (d.on()) {
      S.xd = m->dora_xd.need((size_t)N * g.in);
      S.dX = m->dora_dX.need((size_t)N * g.in);
    }
    if (g.mag[j]) {
      dora_views(m, a, l, k, j, mem, nullptr, false);
      S.t = m->dora_t.need((size_t)N * mem.out);
      S.w = m->dora_w.need((size_t)N * mem.out);
    }
    member_backward(dx, dy, ldy, x, u + j * g.r, g.members * g.r, mem, N, (float)a.scaling, d, S);
  }
}

void release_member_scratch(pt_model* m) {
  for (Buf<float>* b : {&m->dora_xd, &m->dora_t, &m->dora_w, &m->dora_du, &m->dora_dX, &m->dora_row, &m->dora_W})
    b->release();
}

// Where one layer's forward writes, each sized for its N rows: an activation slot of a training forward, or the
// scratch of a decoding step.
struct LayerIO {
  float *h, *h2;             // (N, C) the normed input of attention, and of the MLP when it has its own norm
  float *rstd1, *rstd2;      // (N) their rstd
  float *qkv, *qkvpre, *qkr; // (N, QKV) after RoPE; q/k norms: (N, QKV) before them, (N, NH + NKV) their rstd
  float* att;                // (N, AO)
  float* xm;                 // (N, C) x + the attention branch
  float *ao, *rstda;         // Gemma: (N, C) the attention output before post_attention_layernorm, (N) its rstd
  float *mo, *rstdm;         // Gemma: (N, C) the MLP output before post_feedforward_layernorm, (N) its rstd
  float *gu, *act;           // (N, GU), (N, I)
};

// The RoPE tables of layer l: (positions, R/2) cos and sin of its base, or null for a layer without RoPE.
std::pair<const float*, const float*> rope_of(const pt_model* m, int l) {
  if (m->use_rope[l] == 0) return {nullptr, nullptr};
  if (m->use_rope[l] == 2) return {m->cosl.data(), m->sinl.data()};
  return {m->cosv.data(), m->sinv.data()};
}

// One decoder layer, x (N, C) -> xnext (N, C), for every family (xnext may be x: x is not read after the MLP's
// input is formed). The layout is the config's:
//   sequential  xm = x + post_a(attn(n1(x)));  xnext = xm + post_m(mlp(n2(xm)))   (post_*: Gemma's norms, else none)
//   parallel 1  xm = x + attn(n1(x));          xnext = xm + mlp(n1(x))            (Phi-2)
//   parallel 2  xm = x + attn(n1(x));          xnext = xm + mlp(n2(x))            (GPT-NeoX)
//   norm_after  xm = n1(x + attn(x));          xnext = n2(xm + mlp(xm))           (OPT-350m; ao, mo: the sums)
// adapt(k, y, ldy, in) adds the adapter terms of GEMM group k; attend(qkv, att) runs attention over the rows.
template <class Adapt, class Attend>
void layer_body(pt_model* m, int l, const LayerIO& io, const float* x, float* xnext, int64_t N, const int32_t* pos,
                bool mixed, const Adapt& adapt, const Attend& attend) {
  const int C = m->C, I = m->I, NH = m->NH, NKV = m->NKV, HS = m->HS, QKV = m->QKV, AO = m->AO, GU = m->GU;
  const int nN = (int)N;
  const Layer& P = m->P[l];
  const Norm<float>& nm = m->norm;
  const bool after = m->cfg.norm_after;
  auto lin = [&](float* y, const float* in, const float* W, const uint16_t* Wh, const Q4Matrix& Q, const float* b, int nin,
                 int nout) { base_linear(m, mixed, y, in, W, Wh, Q, b, nN, nin, nout); };
  auto add = [&](float* y, const float* r) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N * C; i++) y[i] += r[i];
  };
  const float* ain = x;  // attention's input: n1(x), or x itself under norm_after
  if (!after) {
    nm.forward(io.h, io.rstd1, x, P.ln1, P.ln1b, N, 1, C, C);
    ain = io.h;
  }
  g_prof.lap(P_NORM);
  if (m->cfg.qk_norm) {
    lin(io.qkvpre, ain, P.wqkv, P.hqkv, P.qqkv, P.bqkv, C, QKV);
    adapt(G_QKV, io.qkvpre, QKV, ain);
    std::memcpy(io.qkv, io.qkvpre, sizeof(float) * N * QKV);
    nm.forward(io.qkv, io.qkr, io.qkvpre, P.qn, nullptr, N, NH, HS, QKV);
    nm.forward(io.qkv + AO, io.qkr + N * NH, io.qkvpre + AO, P.kn, nullptr, N, NKV, HS, QKV);
  } else {
    lin(io.qkv, ain, P.wqkv, P.hqkv, P.qqkv, P.bqkv, C, QKV);
    adapt(G_QKV, io.qkv, QKV, ain);
  }
  g_prof.lap(P_QKV);
  const auto [cs, sn] = rope_of(m, l);
  if (cs) rope_forward(io.qkv, pos, cs, sn, N, 0, NH + NKV, HS, QKV, m->R);
  g_prof.lap(P_ROPE);
  attend(io.qkv, io.att);
  g_prof.lap(P_ATTN);
  float* o = io.ao ? io.ao : io.xm;
  lin(o, io.att, P.wo, P.ho, P.qo, P.bo, AO, C);
  adapt(G_O, o, C, io.att);
  g_prof.lap(P_OPROJ);
  if (after) {
    add(io.ao, x);
    nm.forward(io.xm, io.rstd1, io.ao, P.ln1, P.ln1b, N, 1, C, C);
  } else {
    if (io.ao) nm.forward(io.xm, io.rstda, io.ao, P.lna, nullptr, N, 1, C, C);
    add(io.xm, x);
  }
  g_prof.lap(P_RESID);
  const float* hin = io.h;  // parallel 1: the MLP reads n1(x) too
  if (after) hin = io.xm;
  else if (m->cfg.parallel_residual != 1) {
    nm.forward(io.h2, io.rstd2, m->cfg.parallel_residual == 2 ? x : io.xm, P.ln2, P.ln2b, N, 1, C, C);
    hin = io.h2;
  }
  g_prof.lap(P_NORM);
  lin(io.gu, hin, P.wgu, P.hgu, P.qgu, P.bgu, C, GU);
  adapt(G_GU, io.gu, GU, hin);
  g_prof.lap(P_UP);
  mlp_act_forward(io.act, io.gu, N, I, !m->cfg.mlp_plain, m->cfg.mlp_act);
  g_prof.lap(P_SWIGLU);
  float* d = io.mo ? io.mo : xnext;
  lin(d, io.act, P.wd, P.hd, P.qd, P.bd, I, C);
  adapt(G_DOWN, d, C, io.act);
  g_prof.lap(P_DOWN);
  if (after) {
    add(io.mo, io.xm);
    nm.forward(xnext, io.rstd2, io.mo, P.ln2, P.ln2b, N, 1, C, C);
  } else {
    if (io.mo) nm.forward(xnext, io.rstdm, io.mo, P.lnm, nullptr, N, 1, C, C);
    add(xnext, io.xm);
  }
  g_prof.lap(P_RESID);
}

// Activation slot s of a training or eval forward over m->N rows (h, h2 and act single-slot scratch; gu one slot
// for a 4-bit base, whose backward recomputes it).
LayerIO slot_io(pt_model* m, int s) {
  const size_t N = (size_t)m->N;
  const bool sandwich = m->cfg.sandwich_norms || m->cfg.norm_after;  // the outputs kept before a norm
  LayerIO io{};
  io.h = m->h.p;
  io.h2 = m->h2.p;
  io.rstd1 = m->rstd1.p + s * N;
  io.rstd2 = m->rstd2.p + s * N;
  io.qkv = m->qkv.p + s * N * m->QKV;
  if (m->cfg.qk_norm) {
    io.qkvpre = m->qkvpre.p + s * N * m->QKV;
    io.qkr = m->qkrstd.p + s * N * (m->NH + m->NKV);
  }
  io.att = m->att.p + s * N * m->AO;
  io.xm = m->xmid.p + s * N * m->C;
  if (sandwich) {
    io.ao = m->aout.p + s * N * m->C;
    io.rstda = m->rstda.p + s * N;
    io.mo = m->mout.p + s * N * m->C;
    io.rstdm = m->rstdm.p + s * N;
  }
  io.gu = m->gu.p + (q4_base(m) ? 0 : s) * N * m->GU;
  io.act = m->act.p;
  return io;
}

// One decoder layer of a training or eval forward: x (N, C) -> xnext (N, C), keeping this layer's activations in
// activation slot s of the model's buffers (and its LoRA u = x A^T in slot s of lora_u). The backward calls it
// again, into slot 0, to recompute a checkpointed layer: the same code on the same input gives the same
// activations bit for bit.
void layer_forward(pt_model* m, int l, int s, const float* x, float* xnext, const Adapter* lo, bool mixed, bool train) {
  const int64_t N = m->N;
  const int nN = (int)N;
  // LoRA: after each adapted base GEMM, y += s (x~ A^T) B^T, keeping u = x~ A^T for the backward; member by
  // member for DoRA or dropout (whose masks depend only on this training forward's key, so a recompute draws the
  // same ones), else lora.h's fused path.
  const bool members = lo && member_path(*lo, train);
  auto adapt = [&](int k, float* y, int ldy, const float* in) {
    if (!lo || !lo->P[l][k].members) return;
    float* u = m->lora_u.p + (size_t)s * N * lo->uwidth + (size_t)N * lo->ucol[k];
    if (members) members_forward(m, *lo, train, l, k, y, ldy, u, in, nN, nullptr);
    else lora_forward(y, ldy, u, in, lo->P[l][k], nN, (float)lo->scaling);
  };
  float* lse = m->lse.p + (size_t)s * N * m->NH;
  auto attend = [&](const float* qkv, float* att) {
    attention_forward(att, lse, qkv, m->seqs.data(), m->B, m->NH, m->NKV, m->HS, m->window[l], m->score);
  };
  layer_body(m, l, slot_io(m, s), x, xnext, N, m->pos.data(), mixed, adapt, attend);
}

// Whether the adapter has a member on OPT's projection group k (G_PROJ_IN, G_PROJ_OUT).
bool adapts_top(const pt_model* m, const Adapter* lo, int k) {
  return lo && (int)lo->P.size() > m->L && lo->P[m->L][k].members > 0;
}

// y (N, ldy) += the adapter terms of OPT's projection group k, u (N, r) receiving x~ A^T; norm_to as in
// members_forward (decoding's own scratch for DoRA's norms).
void adapt_top(pt_model* m, const Adapter* lo, bool train, int k, float* y, int ldy, const float* x, int N, float* u,
               float* norm_to = nullptr) {
  if (!adapts_top(m, lo, k)) return;
  if (member_path(*lo, train)) members_forward(m, *lo, train, m->L, k, y, ldy, u, x, N, norm_to);
  else lora_forward(y, ldy, u, x, lo->P[m->L][k], N, (float)lo->scaling);
}

// Where an adapter (any) is, what a pass needs to run OPT's projections with it: train or not, and u (N, r) of each.
struct TopAdapt {
  const Adapter* lo = nullptr;
  bool train = false;
  float *u_in = nullptr, *u_out = nullptr, *norm_to = nullptr;
};

// x (N, C) = the token embeddings (times embed_scale; through project_in when embed_dim is set, e (N, W) then
// keeping them) plus, with learned positions, row pos + position_offset of the position table.
void embed_tokens(pt_model* m, float* x, float* e, const int32_t* tok, const int32_t* pos, int64_t N, bool mixed,
                  const TopAdapt& ta = {}) {
  const int C = m->C, W = m->W;
  float* t = m->cfg.embed_dim > 0 ? e : x;
  if (m->embed16) embedding_forward_bf16(t, tok, m->embed16, N, W);
  else embedding_forward(t, tok, m->embed, N, W);
  if (t != x) {
    base_linear(m, mixed, x, e, m->ex.proj_in, m->proj_in16, Q4Matrix{}, nullptr, (int)N, W, C);
    adapt_top(m, ta.lo, ta.train, G_PROJ_IN, x, C, e, (int)N, ta.u_in, ta.norm_to);
  }
  const float sc = m->cfg.embed_scale;
  const int off = m->cfg.position_offset;
  const float* P = m->ex.positions;
  const uint16_t* P16 = m->pos16;
  if ((sc <= 0 || sc == 1.0f) && !P && !P16) return;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    float* xr = x + n * C;
    if (sc > 0 && sc != 1.0f)
      for (int i = 0; i < C; i++) xr[i] *= sc;
    const size_t row = (size_t)(pos[n] + off) * C;
    if (P)
      for (int i = 0; i < C; i++) xr[i] += P[row + i];
    else if (P16)
      for (int i = 0; i < C; i++) xr[i] += bf16_to_f32(P16[row + i]);
  }
}

// The backward of embed_tokens' positions and scale: the position table's gradient, then dx (N, C) scaled in place
// by embed_scale (the gradient at the token embeddings, or at project_in's output).
void embed_positions_backward(pt_model* m, float* dx, int64_t N) {
  const int C = m->C;
  if (m->gex.positions) {
    const int off = m->cfg.position_offset;
    for (int64_t n = 0; n < N; n++) {
      float* g = m->gex.positions + (size_t)(m->pos[n] + off) * C;
      const float* d = dx + n * C;
      for (int i = 0; i < C; i++) g[i] += d[i];
    }
  }
  const float sc = m->cfg.embed_scale;
  if (sc > 0 && sc != 1.0f) scale(dx, N * C, sc);
}

// The head's input (N, W) from the last hidden x (N, C): the final norm (rstd (N) kept) or x itself, then
// project_out when embed_dim is set (hn (N, C) keeps the normed rows for its backward).
const float* head_input(pt_model* m, float* hf, float* hn, float* rstd, const float* x, int64_t N, bool mixed,
                        const TopAdapt& ta = {}) {
  const int C = m->C;
  float* normed = m->cfg.embed_dim > 0 ? hn : hf;
  if (m->cfg.no_final_norm) std::memcpy(normed, x, sizeof(float) * N * C);
  else m->norm.forward(normed, rstd, x, m->normf, m->ex.normfb, N, 1, C, C);
  if (m->cfg.embed_dim > 0) {
    base_linear(m, mixed, hf, hn, m->ex.proj_out, m->proj_out16, Q4Matrix{}, nullptr, (int)N, C, m->W);
    adapt_top(m, ta.lo, ta.train, G_PROJ_OUT, hf, m->W, hn, (int)N, ta.u_out, ta.norm_to);
  }
  return hf;
}

// The head's bias and soft-cap (and, in a backward of a trained base, where the bias gradient goes).
HeadPost<float> head_post(const pt_model* m, bool grads) {
  HeadPost<float> p;
  p.bias = m->ex.headb;
  p.dbias = grads ? m->gex.headb : nullptr;
  p.softcap = m->cfg.final_softcap;
  return p;
}

}  // namespace

extern "C" {

const char* pt_last_error(void) { return g_error.c_str(); }
int pt_abi_version(void) { return PT_ABI_VERSION; }

pt_status pt_param_layout(const pt_config* cfg, pt_param* out, int32_t capacity, int32_t* num_params,
                          int64_t* num_floats) {
  if (pt_status st = check_config(cfg); st != PT_OK) return st;
  std::vector<pt_param> table;
  int64_t n = 0;
  try {
    n = build_layout(*cfg, table);
  } catch (const std::bad_alloc&) {
    return fail(PT_ERR_MEMORY, "out of memory for the parameter table of " + std::to_string(cfg->num_layers) + " layers");
  }
  if (table.size() > (size_t)INT32_MAX) return fail(PT_ERR_ARGUMENT, "the parameter table of this config has more than 2^31 entries");
  if (num_params) *num_params = (int32_t)table.size();
  if (num_floats) *num_floats = n;
  if (out) std::memcpy(out, table.data(), sizeof(pt_param) * std::min(table.size(), (size_t)std::max(capacity, 0)));
  return PT_OK;
}

pt_status pt_model_create(const pt_config* cfg, pt_model** out) { return pt_model_create_ex(cfg, 0, out); }
pt_status pt_model_create_ex(const pt_config* cfg, int32_t flags, pt_model** out) {
  return pt_model_create_in(cfg, flags, nullptr, 0, out);
}

pt_status pt_model_create_in(const pt_config* cfg, int32_t flags, void* storage, size_t storage_bytes, pt_model** out) {
  *out = nullptr;
  if (storage && (flags & (PT_MODEL_NF4_BASE | PT_MODEL_FP4_BASE)))
    return fail(PT_ERR_ARGUMENT, "caller-owned parameter storage is not for a 4-bit base");
  if (storage && (uintptr_t)storage % 16 != 0) return fail(PT_ERR_ARGUMENT, "the parameter storage must be 16-byte aligned");
  if (flags & ~(PT_MODEL_BF16_BASE | PT_MODEL_NF4_BASE | PT_MODEL_FP4_BASE | PT_MODEL_DOUBLE_QUANT))
    return fail(PT_ERR_ARGUMENT, "unknown pt_model_create_ex flags " + std::to_string(flags));
  if ((flags & PT_MODEL_NF4_BASE) && (flags & PT_MODEL_FP4_BASE))
    return fail(PT_ERR_ARGUMENT, "PT_MODEL_NF4_BASE and PT_MODEL_FP4_BASE are exclusive: one 4-bit code book");
  if ((flags & PT_MODEL_DOUBLE_QUANT) && !(flags & (PT_MODEL_NF4_BASE | PT_MODEL_FP4_BASE)))
    return fail(PT_ERR_ARGUMENT, "PT_MODEL_DOUBLE_QUANT needs PT_MODEL_NF4_BASE or PT_MODEL_FP4_BASE");
  if (pt_status st = check_config(cfg); st != PT_OK) return st;
  const int64_t qkv = ((int64_t)cfg->num_heads + 2 * (int64_t)cfg->num_kv_heads) * cfg->head_dim;
  auto* m = new (std::nothrow) pt_model();
  if (!m) return fail(PT_ERR_MEMORY, "out of memory");
  m->cfg = *cfg;
  m->flags = flags;
  m->C = cfg->hidden_size; m->I = cfg->intermediate_size; m->V = cfg->vocab_size; m->L = cfg->num_layers;
  m->NH = cfg->num_heads; m->NKV = cfg->num_kv_heads; m->HS = cfg->head_dim;
  m->QKV = (int)qkv;
  m->AO = m->NH * m->HS;
  m->GU = cfg->mlp_plain ? m->I : 2 * m->I;
  m->W = cfg->embed_dim > 0 ? cfg->embed_dim : m->C;
  m->R = cfg->rotary_dim > 0 ? cfg->rotary_dim : m->HS;
  m->norm.layer = cfg->norm_type == PT_NORM_LAYER;
  m->norm.eps = cfg->rms_norm_eps;
  m->norm.off = cfg->norm_unit_offset ? 1.0f : 0.0f;
  m->score.scale = cfg->attn_scale;
  m->score.softcap = cfg->attn_softcap;
  try {
    m->names = names_of(*cfg);
    m->nfloats = build_layout(m->cfg, m->table);
    rope_init(m->rope, rope_scaling_of(*cfg), m->R);
    RopeScaling local;
    local.theta = cfg->rope_local_theta > 0 ? cfg->rope_local_theta : cfg->rope_theta;
    rope_init(m->rope_local, local, m->R);
    m->window.assign(m->L, 0);
    m->use_rope.assign(m->L, 1);
    if (cfg->layer_window) m->window.assign(cfg->layer_window, cfg->layer_window + m->L);
    if (cfg->layer_rope) m->use_rope.assign(cfg->layer_rope, cfg->layer_rope + m->L);
    m->cfg.layer_window = m->window.data();  // the caller's arrays may not outlive this call
    m->cfg.layer_rope = m->use_rope.data();
    m->cfg.rope_short_factor = m->cfg.rope_long_factor = nullptr;  // copied into m->rope
    bind_views(m, m->params, m->P, m->embed, m->normf, m->head, m->ex);  // the layer views only (null buffers yet)
  } catch (const std::bad_alloc&) {
    pt_model_free(m);
    return fail(PT_ERR_MEMORY, "out of memory for the parameter table of " + std::to_string(cfg->num_layers) + " layers");
  }
  const size_t bytes = (size_t)m->nfloats * sizeof(float);
  // A mapping of which only the pages ever written become memory (the matrices of a 4-bit base never are).
  auto reserve = [](size_t n) -> void* {
    void* p = mmap(nullptr, n ? n : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
  };
  if (q4_base(m) && !bf16_base(m)) {
    // fp32 store for the unquantized tensors (embeddings, norms, biases, head) at their usual offsets.
    m->params = static_cast<float*>(reserve(bytes));
    if (m->params) m->params_mapped = bytes ? bytes : 1;
    if (!m->params) {
      pt_model_free(m);
      return fail(PT_ERR_MEMORY, "cannot map " + std::to_string(bytes >> 20) + " MiB of address space for the parameters");
    }
  } else if (bf16_base(m)) {
    // bf16 store, plus an fp32 mapping of which only the 1-D tensors' pages are ever written (refresh_small).
    // With a 4-bit base the bf16 store is a mapping too: its matrix pages are never written.
    const size_t half = ((size_t)m->nfloats * sizeof(uint16_t) + 63) / 64 * 64;
    if (storage) {
      if (storage_bytes < (size_t)m->nfloats * sizeof(uint16_t)) {
        pt_model_free(m);
        return fail(PT_ERR_ARGUMENT, "the parameter storage is smaller than the model's bf16 parameters");
      }
      m->params16 = static_cast<uint16_t*>(storage);
      m->storage_external = true;
    } else if (q4_base(m)) {
      m->params16 = static_cast<uint16_t*>(reserve(half));
      m->params16_mapped = half;
    } else {
      m->params16 = static_cast<uint16_t*>(std::aligned_alloc(64, half));
    }
    void* p = mmap(nullptr, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p != MAP_FAILED) {
      m->params = static_cast<float*>(p);
      m->params_mapped = bytes ? bytes : 1;
    }
    if (!m->params16 || !m->params) {
      pt_model_free(m);
      return fail(PT_ERR_MEMORY, "cannot allocate " + std::to_string(half >> 20) + " MiB for " +
                                     std::to_string(m->nfloats) + " bf16 parameters");
    }
    if (!q4_base(m) && !m->storage_external) std::memset(m->params16, 0, half);
  } else if (storage) {
    if (storage_bytes < bytes) {
      pt_model_free(m);
      return fail(PT_ERR_ARGUMENT, "the parameter storage is smaller than the model's parameters");
    }
    m->params = static_cast<float*>(storage);
    m->storage_external = true;
  } else {
    m->params = static_cast<float*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64));
    if (!m->params) {
      pt_model_free(m);
      return fail(PT_ERR_MEMORY, "cannot allocate " + std::to_string(bytes >> 20) + " MiB for " +
                                     std::to_string(m->nfloats) + " parameters");
    }
    std::memset(m->params, 0, bytes);
  }
  bind_views(m, m->params, m->P, m->embed, m->normf, m->head, m->ex);
  if (bf16_base(m)) {  // the matrices: bf16 views only
    const uint16_t* b = m->params16;
    auto at = [&](const float* f) { return b + (f - m->params); };
    for (Layer& y : m->P) {
      y.hqkv = at(y.wqkv); y.ho = at(y.wo); y.hgu = at(y.wgu); y.hd = at(y.wd);
      y.wqkv = y.wo = y.wgu = y.wd = nullptr;
    }
    m->embed16 = at(m->embed);
    m->head16 = at(m->head);
    m->embed = m->head = nullptr;
    if (m->ex.positions) m->pos16 = at(m->ex.positions);
    if (m->ex.proj_in) m->proj_in16 = at(m->ex.proj_in);
    if (m->ex.proj_out) m->proj_out16 = at(m->ex.proj_out);
    m->ex.positions = m->ex.proj_in = m->ex.proj_out = nullptr;
  }
  bool q4_ok = true;
  try {
    if (q4_base(m)) q4_ok = build_q4(m);
  } catch (const std::bad_alloc&) {
    q4_ok = false;
  }
  if (!q4_ok) {
    pt_model_free(m);
    return fail(PT_ERR_MEMORY, "cannot allocate the 4-bit storage of the base weights");
  }
  m->G.assign(m->L, Layer{});  // gradient views stay null until the buffer exists (ensure_grads)
  m->gembed = m->gnormf = m->ghead = nullptr;
  m->gex = Extras{};
  *out = m;
  return PT_OK;
}

void pt_model_free(pt_model* m) {
  if (!m) return;
  const bool own16 = !(m->storage_external && bf16_base(m)), own32 = !(m->storage_external && !bf16_base(m));
  if (m->params_mapped) munmap(m->params, m->params_mapped);
  else if (own32) std::free(m->params);
  if (m->params16_mapped) munmap(m->params16, m->params16_mapped);
  else if (own16) std::free(m->params16);
  for (Q4Tensor& t : m->q4) {
    std::free(t.packed);
    std::free(t.absmax);
    std::free(t.qabs);
    std::free(t.absmax2);
  }
  std::free(m->grads);
  delete m;
#if defined(__GLIBC__)
  // glibc raises its mmap threshold after the first large free, so later model-sized buffers come from the heap and
  // their freed pages stay resident; hand them back, so a freed model leaves the resident set where it was.
  malloc_trim(0);
#endif
}

int64_t pt_model_num_floats(const pt_model* m) { return m->nfloats; }
float* pt_model_params(pt_model* m) { return bf16_base(m) ? nullptr : m->params; }
uint16_t* pt_model_params_bf16(pt_model* m) { return m->params16; }
int32_t pt_model_flags(const pt_model* m) { return m->flags; }
float* pt_model_grads(pt_model* m) { return ensure_grads(m) ? m->grads : nullptr; }
int32_t pt_model_num_params(const pt_model* m) { return (int32_t)m->table.size(); }
const pt_param* pt_model_param(const pt_model* m, int32_t i) {
  return i >= 0 && i < (int32_t)m->table.size() ? &m->table[i] : nullptr;
}

pt_status pt_model_quantize_4bit(pt_model* m, int32_t param, const float* values, int64_t start, int64_t n) {
  if (!q4_base(m)) return fail(PT_ERR_STATE, "this model's base is not 4-bit (create it with PT_MODEL_NF4_BASE or PT_MODEL_FP4_BASE)");
  if (param < 0 || param >= (int32_t)m->table.size()) return fail(PT_ERR_ARGUMENT, "no parameter " + std::to_string(param));
  Q4Tensor& t = m->q4[param];
  const std::string name = m->table[param].name;
  if (!t.size) return fail(PT_ERR_ARGUMENT, name + " is not a quantized tensor (only the layers' projection weights are)");
  if (start != t.loaded)
    return fail(PT_ERR_ARGUMENT, name + ": chunks must come in order; expected the one starting at element " +
                                     std::to_string(t.loaded) + ", got " + std::to_string(start));
  if (n <= 0 || start + n > t.size || (start + n < t.size && n % kQ4Block != 0))
    return fail(PT_ERR_ARGUMENT, name + ": a chunk must be a positive multiple of " + std::to_string(kQ4Block) +
                                     " elements inside the tensor (only the last may be shorter)");
  try {
    const int64_t b0 = start / kQ4Block;
    const int type = m->flags & PT_MODEL_FP4_BASE ? Q4_FP4 : Q4_NF4;
    if (!t.qabs) {
      quantize4(values, n, type, t.packed + start / 2, t.absmax + b0);
    } else {
      float* am = m->q4absmax.need((size_t)t.nblocks());
      quantize4(values, n, type, t.packed + start / 2, am + b0);
      if (start + n == t.size) {
        quantize_absmax8(am, t.nblocks(), t.qabs, t.absmax2, &t.offset);
        m->q4absmax.release();
      }
    }
  } catch (const std::bad_alloc&) {
    return fail(PT_ERR_MEMORY, "out of memory quantizing " + name);
  }
  t.loaded = start + n;
  m->saved = false;
  return PT_OK;
}

pt_status pt_model_write_tensor(pt_model* m, int32_t param, const float* values, int64_t start, int64_t n) {
  if (param < 0 || param >= (int32_t)m->table.size()) return fail(PT_ERR_ARGUMENT, "no parameter " + std::to_string(param));
  const pt_param& p = m->table[param];
  if (q4_base(m) && m->q4[param].size)
    return fail(PT_ERR_ARGUMENT, std::string(p.name) + " is held in 4 bits: write it with pt_model_quantize_4bit");
  if (start < 0 || n < 0 || start + n > p.size)
    return fail(PT_ERR_ARGUMENT, std::string(p.name) + ": elements [" + std::to_string(start) + ", " +
                                     std::to_string(start + n) + ") lie outside its " + std::to_string(p.size));
  if (bf16_base(m)) to_bf16(m->params16 + p.offset + start, values, n);
  else std::memcpy(m->params + p.offset + start, values, sizeof(float) * n);
  m->saved = false;
  return PT_OK;
}

pt_status pt_model_dequantize(const pt_model* m, int32_t param, float* out) {
  if (param < 0 || param >= (int32_t)m->table.size()) return fail(PT_ERR_ARGUMENT, "no parameter " + std::to_string(param));
  const pt_param& p = m->table[param];
  if (q4_base(m) && m->q4[param].size) {
    dequant4(m->q4[param], q4_code(m->flags & PT_MODEL_FP4_BASE ? Q4_FP4 : Q4_NF4), 0, p.size, out);
  } else if (bf16_base(m)) {
    from_bf16(out, m->params16 + p.offset, p.size);
  } else {
    std::memcpy(out, m->params + p.offset, sizeof(float) * p.size);
  }
  return PT_OK;
}

int64_t pt_model_weight_bytes(const pt_model* m) {
  int64_t bytes = 0;
  for (size_t i = 0; i < m->table.size(); i++) {
    const int64_t n = m->table[i].size;
    if (q4_base(m) && m->q4[i].size) {
      const Q4Tensor& t = m->q4[i];
      bytes += (n + 1) / 2 + (t.qabs ? t.nblocks() + 4 * ((t.nblocks() + kQ4Block2 - 1) / kQ4Block2) + 4 : 4 * t.nblocks());
    } else {
      bytes += n * (bf16_base(m) ? 2 : 4);
    }
  }
  return bytes;
}

void pt_quantize_4bit(const float* x, int64_t n, int32_t type, uint8_t* packed, float* absmax) {
  quantize4(x, n, type == PT_QUANT_FP4 ? Q4_FP4 : Q4_NF4, packed, absmax);
}
void pt_dequantize_4bit(const uint8_t* packed, const float* absmax, int64_t n, int32_t type, float* out) {
  Q4Tensor t;
  t.size = n;
  t.packed = const_cast<uint8_t*>(packed);
  t.absmax = const_cast<float*>(absmax);
  dequant4(t, q4_code(type == PT_QUANT_FP4 ? Q4_FP4 : Q4_NF4), 0, n, out);
}
void pt_quantize_absmax(const float* absmax, int64_t nblocks, uint8_t* q, float* absmax2, float* offset) {
  quantize_absmax8(absmax, nblocks, q, absmax2, offset);
}
void pt_dequantize_absmax(const uint8_t* q, const float* absmax2, float offset, int64_t nblocks, float* out) {
  Q4Tensor t;
  t.qabs = const_cast<uint8_t*>(q);
  t.absmax2 = const_cast<float*>(absmax2);
  t.offset = offset;
  for (int64_t b = 0; b < nblocks; b++) out[b] = t.scale(b);
}

pt_status pt_forward(pt_model* m, const int32_t* ids, const int32_t* lengths, int32_t B, int32_t T,
                     int32_t flags, pt_token_stats* out) {
  m->saved = false;
  if (B <= 0 || T <= 0) return fail(PT_ERR_ARGUMENT, "batch and sequence length must be positive");
  if (flags & ~(PT_FORWARD_TRAIN | PT_FORWARD_NO_ADAPTERS))
    return fail(PT_ERR_ARGUMENT, "unknown pt_forward flags " + std::to_string(flags));
  const bool train = flags & PT_FORWARD_TRAIN;
  if (train && m->lora && (flags & PT_FORWARD_NO_ADAPTERS))
    return fail(PT_ERR_ARGUMENT, "a training forward with the adapters disabled trains nothing: the base weights "
                                 "are frozen while a LoRA adapter is attached");
  flush_denormals();
  refresh_small(m);
  if (train && m->lora && m->lora->cfg.lora_dropout > 0.0f) {  // this training forward's dropout key
    Adapter& a = *m->lora;
    a.drop_key = mix64(a.drop_base ^ mix64(++a.drop_count));
  }
  // Pack the real tokens of every row.
  m->B = B; m->T = T;
  m->seqs.resize(B);
  int64_t N = 0;
  for (int b = 0; b < B; b++) {
    int len = lengths[b];
    if (len < 0 || len > T)
      return fail(PT_ERR_ARGUMENT, "row " + std::to_string(b) + " has length " + std::to_string(len) +
                                       " outside [0, " + std::to_string(T) + "]");
    if (len > m->cfg.max_position_embeddings)
      return fail(PT_ERR_ARGUMENT, "row " + std::to_string(b) + " has " + std::to_string(len) +
                                       " tokens but the model's max_position_embeddings is " +
                                       std::to_string(m->cfg.max_position_embeddings) + "; lower max_length");
    m->seqs[b] = {N, len};
    N += len;
  }
  m->N = N;
  m->tok.resize(N); m->pos.resize(N); m->labels.resize(N); m->out_index.resize(N);
  for (int b = 0; b < B; b++) {
    for (int t = 0; t < m->seqs[b].len; t++) {
      int id = ids[(int64_t)b * T + t];
      if (id < 0 || id >= m->V)
        return fail(PT_ERR_ARGUMENT, "token id " + std::to_string(id) + " at row " + std::to_string(b) +
                                         ", position " + std::to_string(t) + " is outside [0, vocab_size = " +
                                         std::to_string(m->V) + ")");
      int64_t n = m->seqs[b].start + t;
      m->tok[n] = id;
      m->pos[n] = t;
      bool has_next = t + 1 < m->seqs[b].len;
      m->labels[n] = has_next ? ids[(int64_t)b * T + t + 1] : -1;
      m->out_index[n] = has_next ? (int64_t)b * T + t + 1 : -1;
    }
  }
  const int C = m->C, I = m->I, L = m->L, NH = m->NH, NKV = m->NKV, QKV = m->QKV, AO = m->AO;
  // Activation slots: one per layer when training, one otherwise. Gradient checkpointing keeps one slot and only
  // each layer's input x (xin holds L + 1 of them either way when training); the backward recomputes the rest.
  const int S = train && !m->checkpoint ? L : 1;
  try {
    int longest = 0;
    for (int b = 0; b < B; b++) longest = std::max(longest, m->seqs[b].len);
    ensure_rope(m, longest);
    float* xin = m->xin.need((size_t)(train ? L + 1 : 2) * N * C);
    m->rstd1.need((size_t)S * N);
    m->qkv.need((size_t)S * N * QKV);
    if (m->cfg.qk_norm) {
      m->qkvpre.need((size_t)S * N * QKV);
      m->qkrstd.need((size_t)S * N * (NH + NKV));
    }
    m->att.need((size_t)S * N * AO);
    m->lse.need((size_t)S * N * NH);
    m->xmid.need((size_t)S * N * C);
    m->rstd2.need((size_t)S * N);
    if (m->cfg.sandwich_norms || m->cfg.norm_after) {
      m->aout.need((size_t)S * N * C);
      m->rstda.need((size_t)S * N);
      m->mout.need((size_t)S * N * C);
      m->rstdm.need((size_t)S * N);
    }
    // A 4-bit base keeps one gate|up slot: the backward recomputes it (gu is the widest activation; QLoRA trades
    // one more dequantized GEMM per layer for (L - 1) N GU floats).
    m->gu.need((size_t)(q4_base(m) ? 1 : S) * N * m->GU);
    m->h.need((size_t)N * C);
    m->h2.need((size_t)N * C);
    m->act.need((size_t)N * I);
    float* hf = m->hf.need((size_t)N * m->W);
    float* rstdf = m->rstdf.need((size_t)N);
    float* xe = m->cfg.embed_dim > 0 ? m->xe.need((size_t)N * m->W) : nullptr;
    float* hn = m->cfg.embed_dim > 0 ? m->hn.need((size_t)N * C) : nullptr;
    float* headlse = m->headlse.need((size_t)N);
    const Adapter* lo = m->lora && !(flags & PT_FORWARD_NO_ADAPTERS) ? m->lora.get() : nullptr;
    if (lo) m->lora_u.need((size_t)S * N * lo->uwidth);
    const bool mixed = m->compute == PT_COMPUTE_BF16;
    TopAdapt ta{lo, train};
    if (adapts_top(m, lo, G_PROJ_IN) || adapts_top(m, lo, G_PROJ_OUT)) {
      ta.u_in = m->lora_top.need((size_t)2 * N * lo->cfg.r);
      ta.u_out = ta.u_in + (size_t)N * lo->cfg.r;
    }

    g_prof.start();
    embed_tokens(m, xin, xe, m->tok.data(), m->pos.data(), N, mixed, ta);
    g_prof.lap(P_EMBED);
    for (int l = 0; l < L; l++) {
      const float* x = xin + (size_t)(train ? l : (l & 1)) * N * C;
      float* xnext = xin + (size_t)(train ? l + 1 : ((l + 1) & 1)) * N * C;
      layer_forward(m, l, S == L ? l : 0, x, xnext, lo, mixed, train);
    }
    const float* xL = xin + (size_t)(train ? L : (L & 1)) * N * C;
    head_input(m, hf, hn, rstdf, xL, N, mixed, ta);
    float* r_logp = m->r_logp.need(N);
    float* r_mean = m->r_mean.need(N);
    float* r_ent = m->r_ent.need(N);
    uint8_t* r_correct = m->r_correct.need(N);
    HeadBf16 hw;
    head_forward(r_logp, headlse, r_mean, r_ent, r_correct, hf, m->labels.data(), m->head, N, m->W, m->V,
                 m->headwork, head_bf16(m, mixed, hw), head_post(m, false));
    g_prof.lap(P_HEAD);
    const size_t BT = (size_t)B * T;
    if (out->logps) std::memset(out->logps, 0, BT * sizeof(float));
    if (out->logits_mean) std::memset(out->logits_mean, 0, BT * sizeof(float));
    if (out->entropy) std::memset(out->entropy, 0, BT * sizeof(float));
    if (out->correct) std::memset(out->correct, 0, BT);
    for (int64_t n = 0; n < N; n++) {
      int64_t o = m->out_index[n];
      if (o < 0) continue;
      if (out->logps) out->logps[o] = r_logp[n];
      if (out->logits_mean) out->logits_mean[o] = r_mean[n];
      if (out->entropy) out->entropy[o] = r_ent[n];
      if (out->correct) out->correct[o] = r_correct[n];
    }
  } catch (const std::bad_alloc&) {
    pt_release_activations(m);
    return fail(PT_ERR_MEMORY, "out of memory for activations of " + std::to_string(N) + " tokens");
  } catch (const std::runtime_error& e) {
    pt_release_activations(m);
    return fail(PT_ERR_STATE, e.what());
  }
  m->saved = train;
  if (!train) g_prof.discard();  // eval and reference forwards are not part of the next backward's step
  return PT_OK;
}

pt_status pt_backward(pt_model* m, const float* dlogps) {
  if (!m->saved) return fail(PT_ERR_STATE, "backward needs a forward with train = true just before it");
  m->saved = false;
  flush_denormals();
  const int C = m->C, I = m->I, L = m->L, NH = m->NH, NKV = m->NKV, HS = m->HS, QKV = m->QKV, AO = m->AO;
  const int64_t N = m->N;
  const int nN = (int)N;
  if (!m->lora && frozen_base(m)) {
    pt_release_activations(m);
    return fail(PT_ERR_STATE, std::string("the base weights are held ") + (q4_base(m) ? "in 4 bits" : "in bf16 only") +
                                  " (frozen): attach a LoRA adapter to train");
  }
  if (!m->lora && !ensure_grads(m)) {
    pt_release_activations(m);
    return fail(PT_ERR_MEMORY, "cannot allocate " + std::to_string(m->nfloats * sizeof(float) >> 20) +
                                   " MiB for the gradients of " + std::to_string(m->nfloats) + " parameters");
  }
  try {
    float* dx = m->dx.need((size_t)N * C);
    float* dh = m->dh.need((size_t)N * std::max(C, m->W));
    // the MLP's input gradient when it is not dh's (parallel layouts), or Gemma's post-norm input gradients
    float* dh2 = m->dh2.need((size_t)N * C);
    float* act = m->act.need((size_t)N * I);
    float* dact = m->dact.need((size_t)N * I);
    float* dgu = m->dgu.need((size_t)N * m->GU);
    float* datt = m->datt.need((size_t)N * AO);
    float* dqkv = m->dqkv.need((size_t)N * QKV);
    float* dlogp_r = m->r_logp.need(N);  // reuse: per packed row d loss / d logp
    for (int64_t n = 0; n < N; n++) dlogp_r[n] = m->out_index[n] >= 0 ? dlogps[m->out_index[n]] : 0.0f;
    const Norm<float>& nm = m->norm;
    const int par = m->cfg.parallel_residual;
    const bool after = m->cfg.norm_after;
    // With an adapter the base is frozen: input gradients only, plus the adapter's dA, dB. Norm-weight
    // gradients (a few floats) go to a sink instead of branching inside the norm kernel.
    const Adapter* lo = m->lora.get();
    float* du = lo ? m->lora_du.need((size_t)N * lo->max_group) : nullptr;
    float* sink = nullptr;
    if (lo) {
      sink = m->lora_sink.need((size_t)2 * std::max(C, HS));
      std::memset(sink, 0, sizeof(float) * 2 * std::max(C, HS));
    }
    auto gw = [&](float* w) { return lo ? sink : w; };
    auto gb = [&](float* b) { return lo ? sink + std::max(C, HS) : b; };
    const bool mixed = m->compute == PT_COMPUTE_BF16;
    auto base_back = [&](float* dxo, float* dW, float* db, const float* dy, const float* x, const float* W,
                         const uint16_t* Wh, const Q4Matrix& Q, int in, int out) {
      if (Q.n) return linear_backward_q4(dxo, dy, Q, nN, in, out, false, m->wtile);  // frozen: dx only
      if (mixed) {
        const bf16* w = dxo ? (Wh ? Wh : bf16_weight(m->wb, W, out, in)) : nullptr;
        return linear_backward_bf16(dxo, dW, db, dy, x, w, nN, in, out, false, m->bs);
      }
      if (Wh) return linear_backward_widen(dxo, dy, Wh, nN, in, out, false, m->wtile);  // frozen: dx only
      linear_backward(dxo, dW, db, dy, x, W, nN, in, out, false);
    };
    // Gradient checkpointing: each layer is recomputed from its saved input into activation slot 0 first.
    const bool recompute = m->checkpoint;
    auto slot = [&](int l) { return recompute ? 0 : l; };
    float* xscratch = recompute ? m->xscratch.need((size_t)N * C) : nullptr;
    auto lin_back = [&](int l, int k, float* dxo, float* dW, float* db, const float* dy, const float* x,
                        const float* W, const uint16_t* Wh, const Q4Matrix& Q, int in, int out) {
      if (!lo) return base_back(dxo, dW, db, dy, x, W, Wh, Q, in, out);
      base_back(dxo, nullptr, nullptr, dy, x, W, Wh, Q, in, out);  // frozen base: dx only
      if (!lo->P[l][k].members) return;
      const float* u = m->lora_u.p + (size_t)slot(l) * N * lo->uwidth + (size_t)N * lo->ucol[k];
      if (member_path(*lo, true)) members_backward(m, *lo, l, k, dxo, dy, out, x, u, nN);
      else lora_backward(dxo, du, dy, out, x, u, lo->P[l][k], nN, (float)lo->scaling);
    };

    g_prof.start();
    HeadBf16 hw;
    head_backward(dh, lo ? nullptr : m->ghead, dlogp_r, m->hf.p, m->labels.data(), m->headlse.p, m->head, N, m->W,
                  m->V, m->headwork, head_bf16(m, mixed, hw), head_post(m, !lo));  // a frozen head under LoRA: no (V, W) weight gradient
    g_prof.lap(P_HEAD);
    if (m->cfg.embed_dim > 0) {  // project_out: dh (N, W) -> (N, C) in dh2, then the rest reads it from dh
      base_back(dh2, lo ? nullptr : m->gex.proj_out, nullptr, dh, m->hn.p, m->ex.proj_out, m->proj_out16, Q4Matrix{}, C, m->W);
      if (adapts_top(m, lo, G_PROJ_OUT)) {
        const float* u = m->lora_top.p + (size_t)N * lo->cfg.r;
        if (member_path(*lo, true)) members_backward(m, *lo, L, G_PROJ_OUT, dh2, dh, m->W, m->hn.p, u, nN);
        else lora_backward(dh2, du, dh, m->W, m->hn.p, u, lo->P[L][G_PROJ_OUT], nN, (float)lo->scaling);
      }
      std::memcpy(dh, dh2, sizeof(float) * N * C);
    }
    const float* xL = m->xin.p + (size_t)L * N * C;
    if (m->cfg.no_final_norm) std::memcpy(dx, dh, sizeof(float) * N * C);
    else nm.backward(dx, gw(m->gnormf), gb(m->gex.normfb), dh, xL, m->normf, m->rstdf.p, N, 1, C, C, false);
    float* tmp_rstd = m->tmp.need(N);
    for (int l = L - 1; l >= 0; l--) {
      const Layer& P = m->P[l];
      const Layer& G = m->G[l];
      const float* x = m->xin.p + (size_t)l * N * C;
      if (recompute) {
        layer_forward(m, l, 0, x, xscratch, lo, mixed, true);  // a training forward always runs with the adapters on
        g_prof.lap(P_RECOMPUTE);
      }
      const LayerIO io = slot_io(m, slot(l));
      // MLP branch: xnext = xm + post_m(down(act(up(hin)))); hin = n2(xm), n1(x) (parallel 1) or n2(x) (parallel 2);
      // under norm_after xnext = n2(mo), mo = xm + down(...), hin = xm
      const float* dmlp = dx;
      if (after) {
        nm.backward(dh2, gw(G.ln2), gb(G.ln2b), dx, io.mo, P.ln2, io.rstd2, N, 1, C, C, false);  // d mo
        dmlp = dh2;
      } else if (io.mo) {
        nm.backward(dh2, gw(G.lnm), nullptr, dx, io.mo, P.lnm, io.rstdm, N, 1, C, C, false);
        dmlp = dh2;
      }
      // recomputed: n2(xm), or n2(x) in parallel (Phi-2's ln2 is its shared ln1); norm_after reads xm itself
      float* hin = after ? io.xm : par == 1 ? m->h.p : m->h2.p;
      if (!after) nm.forward(hin, tmp_rstd, par ? x : io.xm, P.ln2, P.ln2b, N, 1, C, C);
      g_prof.lap(P_NORM);
      // up = hin Wgu^T (+b) + LoRA, as the forward computed it (u rewritten with the same values); a checkpointed
      // layer was just recomputed whole
      if (q4_base(m) && !recompute) {
        base_linear(m, mixed, io.gu, hin, P.wgu, P.hgu, P.qgu, P.bgu, nN, C, m->GU);
        if (lo && lo->P[l][G_GU].members) {  // the forward's adapter path: dropout masks and DoRA as it drew them
          float* u = m->lora_u.p + (size_t)l * N * lo->uwidth + (size_t)N * lo->ucol[G_GU];
          if (member_path(*lo, true)) members_forward(m, *lo, true, l, G_GU, io.gu, m->GU, u, hin, nN, nullptr);
          else lora_forward(io.gu, m->GU, u, hin, lo->P[l][G_GU], nN, (float)lo->scaling);
        }
        g_prof.lap(P_UP);
      }
      mlp_act_forward(act, io.gu, N, I, !m->cfg.mlp_plain, m->cfg.mlp_act);
      g_prof.lap(P_SWIGLU);
      lin_back(l, G_DOWN, dact, G.wd, G.bd, dmlp, act, P.wd, P.hd, P.qd, I, C);
      g_prof.lap(P_DOWN);
      mlp_act_backward(dgu, dact, io.gu, N, I, !m->cfg.mlp_plain, m->cfg.mlp_act);
      g_prof.lap(P_SWIGLU);
      float* dhin = par ? dh2 : dh;
      lin_back(l, G_GU, dhin, G.wgu, G.bgu, dgu, hin, P.wgu, P.hgu, P.qgu, C, m->GU);
      g_prof.lap(P_UP);
      if (after) {  // d xm = d mo (residual) + the MLP's; xm = n1(ao), ao = x + attn(x): dx = d ao
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < N * C; i++) dh[i] += dh2[i];
        nm.backward(dx, gw(G.ln1), gb(G.ln1b), dh, io.ao, P.ln1, io.rstd1, N, 1, C, C, false);
      } else if (!par) {
        nm.backward(dx, gw(G.ln2), gb(G.ln2b), dh, io.xm, P.ln2, io.rstd2, N, 1, C, C, true);  // dx = d xm
      }
      // Attention branch: xm = x + post_a(attn(n1(x)) Wo^T)
      const float* dao = dx;
      if (io.ao && !after) {
        nm.backward(dh2, gw(G.lna), nullptr, dx, io.ao, P.lna, io.rstda, N, 1, C, C, false);
        dao = dh2;
      }
      const float* h = after ? x : m->h.p;  // attention's input
      if (!after && par != 1) nm.forward(m->h.p, tmp_rstd, x, P.ln1, P.ln1b, N, 1, C, C);
      g_prof.lap(P_NORM);
      lin_back(l, G_O, datt, G.wo, G.bo, dao, io.att, P.wo, P.ho, P.qo, AO, C);
      g_prof.lap(P_OPROJ);
      attention_backward(dqkv, datt, io.att, m->lse.p + (size_t)slot(l) * N * NH, io.qkv, m->seqs.data(), m->B, NH, NKV, HS,
                         m->window[l], m->score);
      g_prof.lap(P_ATTN);
      const auto [cs, sn] = rope_of(m, l);
      if (cs) rope_backward(dqkv, m->pos.data(), cs, sn, N, 0, NH + NKV, HS, QKV, m->R);
      g_prof.lap(P_ROPE);
      if (m->cfg.qk_norm) {
        nm.backward(dqkv, gw(G.qn), nullptr, dqkv, io.qkvpre, P.qn, io.qkr, N, NH, HS, QKV, false);
        nm.backward(dqkv + AO, gw(G.kn), nullptr, dqkv + AO, io.qkvpre + AO, P.kn, io.qkr + N * NH, N, NKV, HS, QKV, false);
      }
      lin_back(l, G_QKV, dh, G.wqkv, G.bqkv, dqkv, h, P.wqkv, P.hqkv, P.qqkv, C, QKV);
      g_prof.lap(P_QKV);
      if (par == 1) {  // one shared norm: its output feeds both branches
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < N * C; i++) dh[i] += dh2[i];
      }
      if (after) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < N * C; i++) dx[i] += dh[i];
      } else {
        nm.backward(dx, gw(G.ln1), gb(G.ln1b), dh, x, P.ln1, io.rstd1, N, 1, C, C, true);
      }
      if (par == 2) nm.backward(dx, gw(G.ln2), gb(G.ln2b), dh2, x, P.ln2, io.rstd2, N, 1, C, C, true);
      g_prof.lap(P_NORM);
      layer_grads_ready(l);
    }
    if (!lo) {
      embed_positions_backward(m, dx, N);
      float* demb = dx;
      if (m->cfg.embed_dim > 0) {  // through project_in: the embeddings' gradient (N, W)
        demb = m->hn.need((size_t)N * m->W);
        base_back(demb, m->gex.proj_in, nullptr, dx, m->xe.p, m->ex.proj_in, m->proj_in16, Q4Matrix{}, m->W, C);
      }
      embedding_backward(m->gembed, demb, m->tok.data(), N, m->W);
    }
    if (adapts_top(m, lo, G_PROJ_IN)) {  // the adapter on project_in: dA, dB (the frozen embeddings need no gradient)
      float* de = m->hn.need((size_t)N * m->W);  // a discarded input gradient
      if (member_path(*lo, true)) members_backward(m, *lo, L, G_PROJ_IN, de, dx, C, m->xe.p, m->lora_top.p, nN);
      else lora_backward(de, du, dx, C, m->xe.p, m->lora_top.p, lo->P[L][G_PROJ_IN], nN, (float)lo->scaling);
    }
    g_prof.lap(P_EMBED);
    g_prof.print();
  } catch (const std::bad_alloc&) {
    pt_release_activations(m);
    return fail(PT_ERR_MEMORY, "out of memory in backward for " + std::to_string(N) + " tokens");
  } catch (const std::runtime_error& e) {
    pt_release_activations(m);
    return fail(PT_ERR_STATE, e.what());
  }
  return PT_OK;
}

void pt_release_activations(pt_model* m) {
  m->saved = false;
  for (Buf<float>* b : {&m->xin, &m->rstd1, &m->qkv, &m->qkvpre, &m->qkrstd, &m->att, &m->lse, &m->xmid,
                        &m->rstd2, &m->aout, &m->rstda, &m->mout, &m->rstdm, &m->gu, &m->hf, &m->rstdf, &m->headlse,
                        &m->h, &m->h2, &m->act, &m->tmp, &m->dx, &m->dh, &m->dh2, &m->dact, &m->dgu, &m->datt,
                        &m->dqkv, &m->headwork, &m->lora_u, &m->lora_du, &m->lora_sink, &m->lora_top, &m->xscratch,
                        &m->xe, &m->hn})
    b->release();
  release_member_scratch(m);
  for (Buf<bf16>* b : {&m->bs.a, &m->bs.g, &m->wb, &m->headwb}) b->release();
  m->wtile.release();
}

// Without a gradient buffer the gradient is 0: nothing to zero, scale or measure.
void pt_zero_grad(pt_model* m) {
  if (m->grads) std::memset(m->grads, 0, sizeof(float) * m->nfloats);
}
double pt_grad_norm(const pt_model* m) { return m->grads ? l2norm(m->grads, m->nfloats) : 0.0; }
void pt_scale_grads(pt_model* m, float s) {
  if (m->grads) scale(m->grads, m->nfloats, s);
}
void pt_adamw_step(pt_model* m, float* exp_avg, float* exp_avg_sq, int64_t step, float lr, float beta1,
                   float beta2, float eps, float weight_decay) {
  if (!ensure_grads(m)) return;  // a bf16-held (frozen) base, or memory ran out: pt_model_grads says NULL
  adamw(m->table, m->params, m->grads, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay);
}

pt_status pt_lora_attach(pt_model* m, const pt_lora_config* cfg) {
  if (m->lora) return fail(PT_ERR_STATE, "a LoRA adapter is already attached; detach (or merge) it first");
  if (cfg->r < 1) return fail(PT_ERR_ARGUMENT, "LoRA rank r must be at least 1, got " + std::to_string(cfg->r));
  if (!std::isfinite(cfg->lora_alpha))
    return fail(PT_ERR_ARGUMENT, "lora_alpha must be a finite number, got " + std::to_string(cfg->lora_alpha));
  if (cfg->use_rslora != 0 && cfg->use_rslora != 1) return fail(PT_ERR_ARGUMENT, "use_rslora must be 0 or 1");
  if (cfg->targets <= 0 || (cfg->targets & ~PT_LORA_ALL_LINEAR))
    return fail(PT_ERR_ARGUMENT, "LoRA targets must be a non-empty set of PT_LORA_* bits, got " +
                                     std::to_string(cfg->targets));
  if (!(cfg->lora_dropout >= 0.0f && cfg->lora_dropout < 1.0f))
    return fail(PT_ERR_ARGUMENT, "lora_dropout must be in [0, 1), got " + std::to_string(cfg->lora_dropout));
  if (cfg->use_dora != 0 && cfg->use_dora != 1) return fail(PT_ERR_ARGUMENT, "use_dora must be 0 or 1");
  auto a = std::unique_ptr<Adapter>(new (std::nothrow) Adapter());
  if (!a) return fail(PT_ERR_MEMORY, "out of memory");
  a->cfg = *cfg;
  a->dora = cfg->use_dora == 1;
  a->scaling = (double)cfg->lora_alpha / (cfg->use_rslora ? std::sqrt((double)cfg->r) : (double)cfg->r);
  try {
    if (!build_adapter(m, *a)) return fail(PT_ERR_MEMORY, "cannot allocate the LoRA adapter");
  } catch (const std::bad_alloc&) {
    return fail(PT_ERR_MEMORY, "cannot allocate the LoRA adapter");
  }
  m->lora = std::move(a);
  m->saved = false;
  return PT_OK;
}

void pt_lora_detach(pt_model* m) {
  m->lora.reset();
  m->saved = false;
  for (Buf<float>* b : {&m->lora_u, &m->lora_du, &m->lora_sink, &m->lora_top}) b->release();
  release_member_scratch(m);
}

void pt_lora_set_dropout_seed(pt_model* m, uint64_t seed, int64_t step, int32_t micro) {
  if (!m->lora) return;
  m->lora->drop_base = mix64(mix64(mix64(seed + 1) ^ (uint64_t)step) ^ (uint64_t)(uint32_t)micro);
  m->lora->drop_count = 0;
}

pt_status pt_lora_dora_init(pt_model* m) {
  if (!m->lora || !m->lora->dora) return fail(PT_ERR_STATE, "no DoRA adapter is attached");
  const Adapter& a = *m->lora;
  try {
    for (int l = 0; l < m->L; l++)
      for (int k = 0; k < NGROUPS; k++)
        for (int j = 0; j < a.P[l][k].members; j++) {
          LoraMember<float> mem = member_of(a.P[l][k], j);
          dora_views(m, a, l, k, j, mem, nullptr, true);
          std::memcpy(const_cast<float*>(mem.mag), mem.norm, sizeof(float) * mem.out);
        }
  } catch (const std::bad_alloc&) {
    return fail(PT_ERR_MEMORY, "out of memory initialising the DoRA magnitudes");
  }
  release_member_scratch(m);
  return PT_OK;
}

int32_t pt_lora_attached(const pt_model* m) { return m->lora ? 1 : 0; }
double pt_lora_scaling(const pt_model* m) { return m->lora ? m->lora->scaling : 0.0; }
int64_t pt_lora_num_floats(const pt_model* m) { return m->lora ? m->lora->nfloats : 0; }
float* pt_lora_params(pt_model* m) { return m->lora ? m->lora->params : nullptr; }
float* pt_lora_grads(pt_model* m) { return m->lora ? m->lora->grads : nullptr; }
int32_t pt_lora_num_params(const pt_model* m) { return m->lora ? (int32_t)m->lora->table.size() : 0; }
const pt_param* pt_lora_param(const pt_model* m, int32_t i) {
  return m->lora && i >= 0 && i < (int32_t)m->lora->table.size() ? &m->lora->table[i] : nullptr;
}
void pt_lora_zero_grad(pt_model* m) {
  if (m->lora) std::memset(m->lora->grads, 0, sizeof(float) * m->lora->nfloats);
}
double pt_lora_grad_norm(const pt_model* m) { return m->lora ? l2norm(m->lora->grads, m->lora->nfloats) : 0.0; }
void pt_lora_scale_grads(pt_model* m, float s) {
  if (m->lora) scale(m->lora->grads, m->lora->nfloats, s);
}
void pt_lora_adamw_step(pt_model* m, float* exp_avg, float* exp_avg_sq, int64_t step, float lr, float beta1,
                        float beta2, float eps, float weight_decay) {
  if (!m->lora) return;
  Adapter& a = *m->lora;
  adamw(a.table, a.params, a.grads, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay);
}

pt_status pt_lora_merge(pt_model* m) {
  if (!m->lora) return fail(PT_ERR_STATE, "no LoRA adapter is attached: nothing to merge");
  if (q4_base(m))
    return fail(PT_ERR_STATE, "a 4-bit base cannot hold a merged weight: merge into a full-precision copy (every tensor "
                              "read with pt_model_dequantize) instead");
  const Adapter& a = *m->lora;
  try {
    for (int l = 0; l < (int)a.P.size(); l++) {  // the layers, then OPT's projections (slot L)
      for (int k = 0; k < NGROUPS; k++) {
        const LoraGroup<float>& g = a.P[l][k];
        if (!g.members) continue;
        const GroupMatrix base = group_matrix(m, l, k);
        auto merge = [&](float* w) {  // W += s B A; DoRA then scales each row to m / ||row||
          lora_merge(w, g, (float)a.scaling);
          for (int j = 0; j < g.members; j++)
            if (g.mag[j]) dora_rescale_rows(w + (size_t)g.col[j] * g.in, g.mag[j], g.out[j], g.in);
        };
        if (!base.Wh) {
          merge(base.W);
          continue;
        }
        // A bf16-held base: merge in fp32 over the widened matrix, then round it back to bf16.
        const int64_t n = base.rows * g.in;
        float* t = m->wtile.need((size_t)n);
        from_bf16(t, base.Wh, n);
        merge(t);
        to_bf16(m->params16 + (base.Wh - m->params16), t, n);
      }
    }
  } catch (const std::bad_alloc&) {
    return fail(PT_ERR_MEMORY, "out of memory merging the LoRA adapter");
  }
  m->wtile.release();
  pt_lora_detach(m);
  return PT_OK;
}

pt_status pt_kv_create(const pt_model* m, int32_t B, int32_t T_max, pt_kv_cache** out) {
  *out = nullptr;
  if (B < 1 || T_max < 1) return fail(PT_ERR_ARGUMENT, "a KV cache needs at least one row and one position");
  if (T_max > m->cfg.max_position_embeddings)
    return fail(PT_ERR_ARGUMENT, "a KV cache of " + std::to_string(T_max) + " positions is longer than the model's "
                                 "max_position_embeddings (" + std::to_string(m->cfg.max_position_embeddings) + ")");
  auto kv = std::unique_ptr<pt_kv_cache>(new (std::nothrow) pt_kv_cache());
  if (!kv) return fail(PT_ERR_MEMORY, "out of memory");
  kv->B = B; kv->Tmax = T_max; kv->L = m->L; kv->NKV = m->NKV; kv->HS = m->HS;
  kv->held.assign(B, 0);
  size_t floats = 0;
  for (int l = 0; l < m->L; l++) {
    const int w = m->window[l];
    kv->cap.push_back(w > 0 && (int64_t)w - 1 + kDecodeChunk < T_max ? w - 1 + kDecodeChunk : T_max);
    kv->offset.push_back(floats);
    floats += (size_t)B * m->NKV * kv->cap[l] * m->HS;
  }
  const size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
  kv->k = static_cast<float*>(std::aligned_alloc(64, bytes));
  kv->v = static_cast<float*>(std::aligned_alloc(64, bytes));
  if (!kv->k || !kv->v)
    return fail(PT_ERR_MEMORY, "cannot allocate a KV cache of " + std::to_string(2 * bytes >> 20) + " MiB (" +
                                   std::to_string(B) + " rows x " + std::to_string(T_max) + " positions)");
  *out = kv.release();
  return PT_OK;
}

void pt_kv_free(pt_kv_cache* kv) { delete kv; }
int32_t pt_kv_length(const pt_kv_cache* kv, int32_t row) { return row >= 0 && row < kv->B ? kv->held[row] : -1; }
void pt_kv_reset(pt_kv_cache* kv, int32_t row) {
  if (row >= 0 && row < kv->B) kv->held[row] = 0;
}

// pt_decode's arguments checked, nothing changed: PT_OK, or the error naming the row, length or token.
static pt_status check_decode(const pt_model* m, const pt_kv_cache* kv, const int32_t* rows, const int32_t* ids,
                              const int32_t* lengths, int32_t n, int32_t T, int32_t flags) {
  if (kv->L != m->L || kv->NKV != m->NKV || kv->HS != m->HS)
    return fail(PT_ERR_ARGUMENT, "this KV cache was made for a model of another shape");
  if (n < 1 || n > kv->B || T < 1)
    return fail(PT_ERR_ARGUMENT, "pt_decode needs 1 <= n <= " + std::to_string(kv->B) + " rows and T >= 1");
  if (flags & ~PT_FORWARD_NO_ADAPTERS) return fail(PT_ERR_ARGUMENT, "pt_decode takes only PT_FORWARD_NO_ADAPTERS");
  std::vector<uint8_t> seen(kv->B, 0);
  for (int i = 0; i < n; i++) {
    const int r = rows[i], len = lengths[i];
    if (r < 0 || r >= kv->B || seen[r])
      return fail(PT_ERR_ARGUMENT, "row " + std::to_string(r) + " is outside the cache or given twice");
    seen[r] = 1;
    if (len < 1 || len > T)
      return fail(PT_ERR_ARGUMENT, "row " + std::to_string(r) + " appends " + std::to_string(len) +
                                       " tokens; each row appends between 1 and T = " + std::to_string(T));
    if (kv->held[r] + len > kv->Tmax)
      return fail(PT_ERR_ARGUMENT, "row " + std::to_string(r) + " would hold " + std::to_string(kv->held[r] + len) +
                                       " tokens but the cache has " + std::to_string(kv->Tmax) + " positions");
    for (int t = 0; t < len; t++) {
      const int id = ids[(int64_t)i * T + t];
      if (id < 0 || id >= m->V)
        return fail(PT_ERR_ARGUMENT, "token id " + std::to_string(id) + " of row " + std::to_string(r) +
                                         " is outside [0, vocab_size = " + std::to_string(m->V) + ")");
    }
  }
  return PT_OK;
}

// One pass of pt_decode over checked arguments (check_decode), each row's tokens at once.
static pt_status decode_step(pt_model* m, pt_kv_cache* kv, const int32_t* rows, const int32_t* ids, const int32_t* lengths,
                             int32_t n, int32_t T, int32_t flags, float* logits) {
  kv->seqs.resize(n);
  kv->past.resize(n);
  int64_t N = 0;
  for (int i = 0; i < n; i++) {
    kv->seqs[i] = {N, lengths[i]};
    kv->past[i] = kv->held[rows[i]];
    N += lengths[i];
  }
  kv->tok.resize(N);
  kv->pos.resize(N);
  for (int i = 0; i < n; i++)
    for (int t = 0; t < lengths[i]; t++) {
      kv->tok[kv->seqs[i].start + t] = ids[(int64_t)i * T + t];
      kv->pos[kv->seqs[i].start + t] = kv->past[i] + t;
    }
  // A step of a small model is a few microseconds of work per op; waking a second thread for each of the ~10
  // parallel regions per layer costs more than that, and far more when the other core is busy (measured 60x
  // slower on a loaded 2-core machine). Below about 16M multiply-adds a step runs on the calling thread.
  const int threads = omp_get_max_threads();
  const bool alone = threads > 1 && m->nfloats * N < (int64_t)16 << 20;
  if (alone) omp_set_num_threads(1);
  struct Restore { int n; bool on; ~Restore() { if (on) omp_set_num_threads(n); } } restore{threads, alone};
  flush_denormals();
  const int C = m->C, NH = m->NH, NKV = m->NKV, HS = m->HS, QKV = m->QKV, nN = (int)N;
  const Adapter* lo = m->lora && !(flags & PT_FORWARD_NO_ADAPTERS) ? m->lora.get() : nullptr;
  try {
    int longest = 0;
    for (int i = 0; i < n; i++) longest = std::max(longest, kv->past[i] + lengths[i]);
    ensure_rope(m, longest);
    LayerIO io{};
    float* x = kv->x.need((size_t)N * C);
    io.xm = kv->xm.need((size_t)N * C);
    io.h = kv->h.need((size_t)N * C);
    io.h2 = kv->h2.need((size_t)N * C);
    io.rstd1 = kv->rstd.need((size_t)N * (NH + NKV));  // also the q/k norms' (rows are normed in place)
    io.rstd2 = kv->rstd2.need((size_t)N);
    io.qkv = kv->qkv.need((size_t)N * QKV);
    if (m->cfg.qk_norm) {
      io.qkvpre = kv->qkvpre.need((size_t)N * QKV);
      io.qkr = io.rstd1;
    }
    io.att = kv->att.need((size_t)N * m->AO);
    if (m->cfg.sandwich_norms || m->cfg.norm_after) {
      io.ao = kv->ao.need((size_t)N * C);
      io.mo = kv->mo.need((size_t)N * C);
      io.rstda = io.rstdm = io.rstd2;
    }
    io.gu = kv->gu.need((size_t)N * m->GU);
    io.act = kv->act.need((size_t)N * m->I);
    float* lu = lo ? kv->lu.need((size_t)N * lo->max_group) : nullptr;
    float* dn = lo && lo->dora ? kv->dn.need((size_t)lo->max_out) : nullptr;
    refresh_small(m);
    const TopAdapt ta{lo, false, lu, lu, dn};
    embed_tokens(m, x, m->cfg.embed_dim > 0 ? kv->xe.need((size_t)N * m->W) : nullptr, kv->tok.data(), kv->pos.data(), N, false, ta);
    for (int l = 0; l < m->L; l++) {
      auto adapt = [&](int k, float* y, int ldy, const float* in) {  // y += s (in A^T) B^T, or DoRA's terms
        if (!lo || !lo->P[l][k].members) return;
        if (lo->dora) members_forward(m, *lo, false, l, k, y, ldy, lu, in, nN, dn);
        else lora_forward(y, ldy, lu, in, lo->P[l][k], nN, (float)lo->scaling);
      };
      float* Kc = kv->k + kv->offset[l];
      float* Vc = kv->v + kv->offset[l];
      const int cap = kv->cap[l];
      auto attend = [&](const float* qkv, float* att) {  // the new keys and values into the cache, then attention
        for (int i = 0; i < n; i++)
          for (int t = 0; t < kv->seqs[i].len; t++) {
            const float* src = qkv + (kv->seqs[i].start + t) * QKV;
            for (int g = 0; g < NKV; g++) {
              const size_t at = (((size_t)rows[i] * NKV + g) * cap + (kv->past[i] + t) % cap) * HS;
              std::memcpy(Kc + at, src + (size_t)(NH + g) * HS, sizeof(float) * HS);
              std::memcpy(Vc + at, src + (size_t)(NH + NKV + g) * HS, sizeof(float) * HS);
            }
          }
        attention_cached(att, qkv, QKV, kv->seqs.data(), kv->past.data(), rows, Kc, Vc, cap, n, NH, NKV, HS,
                         m->window[l], m->score);
      };
      layer_body(m, l, io, x, x, N, kv->pos.data(), false, adapt, attend);
    }
    // Only each row's last new token reaches the head: (n, C) -> logits (n, V).
    float* last = kv->h.need((size_t)N * C);
    for (int i = 0; i < n; i++)
      std::memcpy(last + (size_t)i * C, x + (kv->seqs[i].start + kv->seqs[i].len - 1) * C, sizeof(float) * C);
    float* hf = kv->hf.need((size_t)n * m->W);
    head_input(m, hf, m->cfg.embed_dim > 0 ? kv->hn.need((size_t)n * C) : nullptr, io.rstd1, last, n, false, ta);
    if (!m->head16) {
      gemm(false, true, n, m->V, m->W, 1.0f, hf, m->W, m->head, m->W, 0.0f, logits, m->V);
    } else if (n <= kFewRows) {
      gemm_few_rows_bf16(n, m->V, m->W, hf, m->W, m->head16, m->W, logits, m->V);
    } else {
      HeadBf16 hw;
      head_logits(logits, hf, (const float*)nullptr, head_bf16(m, false, hw), nullptr, n, m->W, m->V);
    }
    const HeadPost<float> post = head_post(m, false);
    if (post.any())
      for (int i = 0; i < n; i++) post.apply(logits + (size_t)i * m->V, m->V);
  } catch (const std::bad_alloc&) {
    return fail(PT_ERR_MEMORY, "out of memory decoding " + std::to_string(N) + " tokens");
  }
  for (int i = 0; i < n; i++) kv->held[rows[i]] += lengths[i];
  return PT_OK;
}

pt_status pt_decode(pt_model* m, pt_kv_cache* kv, const int32_t* rows, const int32_t* ids, const int32_t* lengths,
                    int32_t n, int32_t T, int32_t flags, float* logits) {
  // The whole call is checked before any chunk runs, so a refused call changes nothing.
  if (pt_status st = check_decode(m, kv, rows, ids, lengths, n, T, flags); st != PT_OK) return st;
  const bool rings = std::any_of(kv->cap.begin(), kv->cap.end(), [&](int32_t c) { return c < kv->Tmax; });
  if (!rings || T <= kDecodeChunk) return decode_step(m, kv, rows, ids, lengths, n, T, flags, logits);
  // Appends longer than a chunk run chunk by chunk.
  int longest = 0;
  for (int i = 0; i < n; i++) longest = std::max(longest, lengths[i]);
  std::vector<int32_t> sub_rows, sub_len, sub_ids((size_t)n * kDecodeChunk), which;
  std::vector<float> sub_logits((size_t)n * m->V);
  for (int c0 = 0; c0 < longest; c0 += kDecodeChunk) {
    sub_rows.clear(); sub_len.clear(); which.clear();
    for (int i = 0; i < n; i++) {
      if (lengths[i] <= c0) continue;
      const int len = std::min(kDecodeChunk, lengths[i] - c0), j = (int)sub_rows.size();
      std::memcpy(sub_ids.data() + (size_t)j * kDecodeChunk, ids + (int64_t)i * T + c0, sizeof(int32_t) * len);
      sub_rows.push_back(rows[i]);
      sub_len.push_back(len);
      which.push_back(i);
    }
    const int k = (int)sub_rows.size();
    if (pt_status st = decode_step(m, kv, sub_rows.data(), sub_ids.data(), sub_len.data(), k, kDecodeChunk, flags, sub_logits.data()); st != PT_OK)
      return st;
    for (int j = 0; j < k; j++)  // a row whose last token was in this chunk: its logits
      if (lengths[which[j]] <= c0 + kDecodeChunk)
        std::memcpy(logits + (size_t)which[j] * m->V, sub_logits.data() + (size_t)j * m->V, sizeof(float) * m->V);
  }
  return PT_OK;
}

void pt_set_num_threads(int32_t n) {
  if (n < 1) n = 1;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}
int32_t pt_get_num_threads(void) { return omp_get_max_threads(); }

int32_t pt_bf16_support(void) { return bf16_support(); }
const char* pt_bf16_describe(void) { return bf16_describe(); }
pt_status pt_set_compute(pt_model* m, int32_t mode) {
  if (mode != PT_COMPUTE_FP32 && mode != PT_COMPUTE_BF16)
    return fail(PT_ERR_ARGUMENT, "unknown compute mode " + std::to_string(mode) + "; use PT_COMPUTE_FP32 or PT_COMPUTE_BF16");
  if (mode == PT_COMPUTE_BF16 && !bf16_support())
    return fail(PT_ERR_STATE, std::string("bf16 compute is not available: ") + bf16_describe());
  if (mode != m->compute) pt_release_activations(m);
  m->compute = mode;
  return PT_OK;
}
int32_t pt_get_compute(const pt_model* m) { return m->compute; }
void pt_set_gradient_checkpointing(pt_model* m, int32_t on) {
  if ((on != 0) != m->checkpoint) pt_release_activations(m);
  m->checkpoint = on != 0;
}
int32_t pt_get_gradient_checkpointing(const pt_model* m) { return m->checkpoint ? 1 : 0; }
const char* pt_blas_core(void) { return openblas_get_corename(); }

}  // extern "C"
