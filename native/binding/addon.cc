// Node-API glue for the native core: unwraps typed arrays, checks their lengths, maps pt_status to
// JavaScript errors. No math here; everything numeric is behind native/include/preftune.h.
#include <napi.h>
#include <sys/sysinfo.h>
#include <cmath>
#include <functional>
#include <string>
#include <utility>
#include <vector>
#include "preftune.h"

namespace {

bool throw_if(Napi::Env env, bool bad, const std::string& msg) {
  if (bad) Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
  return bad;
}

bool check_status(Napi::Env env, pt_status s) {
  if (s == PT_OK) return false;
  Napi::Error::New(env, pt_last_error()).ThrowAsJavaScriptException();
  return true;
}

// A whole number in [lo, 2^31 - 1], or a JavaScript TypeError naming the key and value (no silent int32 wrap).
bool get_int(Napi::Env env, const Napi::Object& o, const char* key, int32_t& out, double lo = 0,
             bool optional = false) {
  Napi::Value v = o.Get(key);
  if (optional && v.IsUndefined()) return true;  // out keeps its (zero) value
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
  if (!(d >= lo && d <= 2147483647.0 && d == std::floor(d))) {
    throw_if(env, true, std::string(key) + " = " + (v.IsNumber() ? std::to_string(d) : "(not a number)") +
                            " must be a whole number in [" + std::to_string((long long)lo) + ", 2147483647]");
    return false;
  }
  out = (int32_t)d;
  return true;
}

// A pt_config from the JavaScript object native.ts builds (snake_case keys); false after throwing. The optional
// per-layer arrays layer_window and layer_rope (0 none, 1 RoPE, 2 the local base) are held in `layers`
// (2 x num_layers), and longrope's rope_short_factor and rope_long_factor in `factors`; both must outlive c's use.
bool read_config(Napi::Env env, const Napi::Object& o, pt_config& c, std::vector<int32_t>& layers, std::vector<float>& factors) {
  const std::pair<const char*, int32_t*> dims[] = {
      {"vocab_size", &c.vocab_size}, {"hidden_size", &c.hidden_size}, {"intermediate_size", &c.intermediate_size},
      {"num_layers", &c.num_layers}, {"num_heads", &c.num_heads}, {"num_kv_heads", &c.num_kv_heads},
      {"head_dim", &c.head_dim}, {"max_position_embeddings", &c.max_position_embeddings}};
  for (const auto& [key, dst] : dims) if (!get_int(env, o, key, *dst, 1)) return false;
  const std::pair<const char*, int32_t*> flags[] = {
      {"tie_word_embeddings", &c.tie_word_embeddings}, {"qkv_bias", &c.qkv_bias}, {"o_bias", &c.o_bias},
      {"mlp_bias", &c.mlp_bias}, {"qk_norm", &c.qk_norm}};
  for (const auto& [key, dst] : flags) if (!get_int(env, o, key, *dst)) return false;
  c.rms_norm_eps = o.Get("rms_norm_eps").As<Napi::Number>().FloatValue();
  c.rope_theta = o.Get("rope_theta").As<Napi::Number>().FloatValue();
  // RoPE scaling: optional keys (absent: plain RoPE); numbers are checked by check_config in the core.
  if (!get_int(env, o, "rope_type", c.rope_type, 0, true)) return false;
  if (c.rope_type != PT_ROPE_DEFAULT) {
    if (!get_int(env, o, "rope_original_max_position_embeddings", c.rope_original_max_position_embeddings, 0, true) ||
        !get_int(env, o, "rope_truncate", c.rope_truncate, 0, true))
      return false;
    const std::pair<const char*, double*> reals[] = {
        {"rope_factor", &c.rope_factor}, {"rope_low_freq_factor", &c.rope_low_freq_factor},
        {"rope_high_freq_factor", &c.rope_high_freq_factor}, {"rope_beta_fast", &c.rope_beta_fast},
        {"rope_beta_slow", &c.rope_beta_slow}, {"rope_attention_factor", &c.rope_attention_factor}};
    for (const auto& [key, dst] : reals) {
      Napi::Value v = o.Get(key);
      *dst = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : 0.0;
    }
    // longrope's divisors: two number arrays of one length (the core checks it against rotary_dim / 2)
    Napi::Value sf = o.Get("rope_short_factor"), lf = o.Get("rope_long_factor");
    if (!sf.IsUndefined() || !lf.IsUndefined()) {
      if (throw_if(env, !sf.IsArray() || !lf.IsArray() || sf.As<Napi::Array>().Length() != lf.As<Napi::Array>().Length(),
                   "rope_short_factor and rope_long_factor must be number arrays of one length"))
        return false;
      const uint32_t n = sf.As<Napi::Array>().Length();
      factors.assign(2 * (size_t)n, 0.0f);
      for (uint32_t i = 0; i < 2 * n; i++) {
        Napi::Value e = (i < n ? sf : lf).As<Napi::Array>().Get(i % n);
        if (throw_if(env, !e.IsNumber(), "rope_short_factor and rope_long_factor must hold numbers")) return false;
        factors[i] = e.As<Napi::Number>().FloatValue();
      }
      c.rope_short_factor = factors.data();
      c.rope_long_factor = factors.data() + n;
    }
  }
  // The family features (ABI 13): optional keys, absent = 0 (the Llama shape); their ranges are checked by the core.
  const std::pair<const char*, int32_t*> family[] = {
      {"arch", &c.arch}, {"norm_type", &c.norm_type}, {"norm_unit_offset", &c.norm_unit_offset},
      {"sandwich_norms", &c.sandwich_norms}, {"parallel_residual", &c.parallel_residual}, {"mlp_plain", &c.mlp_plain},
      {"mlp_act", &c.mlp_act}, {"rotary_dim", &c.rotary_dim}, {"head_bias", &c.head_bias},
      {"position_rows", &c.position_rows}, {"position_offset", &c.position_offset}, {"norm_after", &c.norm_after},
      {"no_final_norm", &c.no_final_norm}, {"embed_dim", &c.embed_dim}};
  for (const auto& [key, dst] : family) if (!get_int(env, o, key, *dst, 0, true)) return false;
  const std::pair<const char*, float*> family_reals[] = {
      {"embed_scale", &c.embed_scale}, {"attn_scale", &c.attn_scale}, {"attn_softcap", &c.attn_softcap},
      {"final_softcap", &c.final_softcap}, {"rope_local_theta", &c.rope_local_theta}};
  for (const auto& [key, dst] : family_reals) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) continue;  // 0: the default
    if (throw_if(env, !v.IsNumber(), std::string(key) + " must be a number")) return false;
    *dst = v.As<Napi::Number>().FloatValue();
  }
  layers.assign(2 * (size_t)c.num_layers, 0);
  const std::pair<const char*, const int32_t**> arrays[] = {{"layer_window", &c.layer_window}, {"layer_rope", &c.layer_rope}};
  for (size_t a = 0; a < 2; a++) {
    Napi::Value v = o.Get(arrays[a].first);
    if (v.IsUndefined()) continue;  // NULL: every layer full / with RoPE
    if (throw_if(env, !v.IsArray() || v.As<Napi::Array>().Length() != (uint32_t)c.num_layers,
                 std::string(arrays[a].first) + " must be an array of num_layers (" + std::to_string(c.num_layers) + ") numbers"))
      return false;
    auto arr = v.As<Napi::Array>();
    int32_t* dst = layers.data() + a * c.num_layers;
    for (uint32_t i = 0; i < arr.Length(); i++) {  // whole numbers here; their range is checked by the core
      const std::string key = std::string(arrays[a].first) + "[" + std::to_string(i) + "]";
      auto e = Napi::Object::New(env);
      e.Set(key, arr.Get(i));
      if (!get_int(env, e, key.c_str(), dst[i], -2147483648.0)) return false;
    }
    *arrays[a].second = dst;
  }
  const size_t half = (size_t)(c.rotary_dim > 0 ? c.rotary_dim : c.head_dim) / 2;
  if (throw_if(env, !factors.empty() && factors.size() != 2 * half,
               "rope_short_factor and rope_long_factor must have rotary_dim / 2 = " + std::to_string(half) + " entries each"))
    return false;
  return true;
}

// A parameter table as an array of {name, shape, offset, size, decay}.
Napi::Array table_array(Napi::Env env, int32_t n, const std::function<const pt_param*(int32_t)>& get) {
  auto arr = Napi::Array::New(env, n);
  for (int32_t i = 0; i < n; i++) {
    const pt_param* p = get(i);
    auto o = Napi::Object::New(env);
    o.Set("name", p->name);
    auto shape = Napi::Array::New(env, p->ndim);
    for (int d = 0; d < p->ndim; d++) shape.Set((uint32_t)d, Napi::Number::New(env, (double)p->shape[d]));
    o.Set("shape", shape);
    o.Set("offset", Napi::Number::New(env, (double)p->offset));
    o.Set("size", Napi::Number::New(env, (double)p->size));
    o.Set("decay", Napi::Boolean::New(env, p->decay != 0));
    o.Set("quant4", Napi::Boolean::New(env, p->quant4 != 0));
    arr.Set((uint32_t)i, o);
  }
  return arr;
}

class Model : public Napi::ObjectWrap<Model> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Model",
                       {InstanceMethod("params", &Model::Params), InstanceMethod("grads", &Model::Grads),
                        InstanceMethod("table", &Model::Table), InstanceMethod("forward", &Model::Forward),
                        InstanceMethod("backward", &Model::Backward),
                        InstanceMethod("zeroGrad", &Model::ZeroGrad), InstanceMethod("gradNorm", &Model::GradNorm),
                        InstanceMethod("scaleGrads", &Model::ScaleGrads),
                        InstanceMethod("adamwStep", &Model::AdamW), InstanceMethod("free", &Model::Free),
                        InstanceMethod("loraAttach", &Model::LoraAttach),
                        InstanceMethod("loraDetach", &Model::LoraDetach),
                        InstanceMethod("loraMerge", &Model::LoraMerge),
                        InstanceMethod("loraScaling", &Model::LoraScaling),
                        InstanceMethod("loraParams", &Model::LoraParams),
                        InstanceMethod("loraGrads", &Model::LoraGrads),
                        InstanceMethod("loraTable", &Model::LoraTable),
                        InstanceMethod("loraZeroGrad", &Model::LoraZeroGrad),
                        InstanceMethod("loraGradNorm", &Model::LoraGradNorm),
                        InstanceMethod("loraScaleGrads", &Model::LoraScaleGrads),
                        InstanceMethod("loraAdamwStep", &Model::LoraAdamW),
                        InstanceMethod("loraSetDropoutSeed", &Model::LoraSetDropoutSeed),
                        InstanceMethod("loraDoraInit", &Model::LoraDoraInit),
                        InstanceMethod("decode", &Model::Decode),
                        InstanceMethod("setCompute", &Model::SetCompute),
                        InstanceMethod("paramsBf16", &Model::ParamsBf16),
                        InstanceMethod("getCompute", &Model::GetCompute),
                        InstanceMethod("quantize4bit", &Model::Quantize4bit),
                        InstanceMethod("dequantize", &Model::Dequantize),
                        InstanceMethod("writeTensor", &Model::WriteTensor),
                        InstanceMethod("weightBytes", &Model::WeightBytes),
                        InstanceMethod("setGradientCheckpointing", &Model::SetGradientCheckpointing),
                        InstanceMethod("getGradientCheckpointing", &Model::GetGradientCheckpointing)});
  }
  static Napi::FunctionReference* ctor;
  pt_model* handle() const { return m_; }

  explicit Model(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Model>(info) {
    Napi::Env env = info.Env();
    if (throw_if(env, info.Length() < 1 || !info[0].IsObject(), "Model(config): config object expected")) return;
    pt_config c{};
    std::vector<int32_t> layers;
    std::vector<float> factors;
    if (!read_config(env, info[0].As<Napi::Object>(), c, layers, factors)) return;
    int32_t model_flags = 0;  // Model(config, flags?): PT_MODEL_* bits
    if (info.Length() > 1 && !info[1].IsUndefined()) {
      if (throw_if(env, !info[1].IsNumber(), "Model(config, flags): flags must be a number")) return;
      model_flags = info[1].As<Napi::Number>().Int32Value();
    }
    // A parameter buffer of 4 GiB or more lives in a JavaScript ArrayBuffer the core uses as its storage: N-API
    // can view external memory only below 4 GiB. Smaller ones stay the core's own (freed with the model, not by GC).
    int64_t floats = 0;
    const bool q4 = model_flags & (PT_MODEL_NF4_BASE | PT_MODEL_FP4_BASE);
    if (!q4 && pt_param_layout(&c, nullptr, 0, nullptr, &floats) == PT_OK) {
      const size_t bytes = (size_t)floats * ((model_flags & PT_MODEL_BF16_BASE) ? sizeof(uint16_t) : sizeof(float));
      if (bytes >= ((size_t)1 << 32)) {
        // V8 aborts the process when an ArrayBuffer cannot be allocated: refuse what memory and swap cannot hold
        struct sysinfo si{};
        if (sysinfo(&si) == 0 && bytes / si.mem_unit > (size_t)si.totalram + si.totalswap) {
          throw_if(env, true, "cannot allocate " + std::to_string(bytes >> 20) + " MiB for " + std::to_string(floats) +
                                  " parameters (the machine has " + std::to_string(((size_t)si.totalram * si.mem_unit) >> 20) +
                                  " MiB of memory)");
          return;
        }
        Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, bytes);  // zero-filled
        if (env.IsExceptionPending()) return;
        storage_ = Napi::Persistent(ab);
        check_status(env, pt_model_create_in(&c, model_flags, ab.Data(), bytes, &m_));
        return;
      }
    }
    check_status(env, pt_model_create_ex(&c, model_flags, &m_));
  }
  ~Model() override { pt_model_free(m_); }

 private:
  pt_model* m_ = nullptr;
  Napi::Reference<Napi::ArrayBuffer> storage_;  // the parameter buffer when it is JavaScript's (4 GiB or more)

  // A typed view of the parameter buffer: over the JavaScript storage, or of the core's memory.
  template <typename TA, typename E>
  Napi::Value StorageView(Napi::Env env, E* p, size_t n) {
    if (!storage_.IsEmpty()) return TA::New(env, n, storage_.Value(), 0);
    return TA::New(env, n, Napi::ArrayBuffer::New(env, p, n * sizeof(E)), 0);
  }

  bool Alive(Napi::Env env) { return !throw_if(env, m_ == nullptr, "the model was freed"); }

  Napi::Value View(Napi::Env env, float* p, size_t n) {
    auto ab = Napi::ArrayBuffer::New(env, p, n * sizeof(float));
    return Napi::Float32Array::New(env, n, ab, 0);
  }
  Napi::Value View(Napi::Env env, float* p) { return View(env, p, (size_t)pt_model_num_floats(m_)); }
  bool Bf16Base() const { return pt_model_flags(m_) & PT_MODEL_BF16_BASE; }
  bool Q4Base() const { return pt_model_flags(m_) & (PT_MODEL_NF4_BASE | PT_MODEL_FP4_BASE); }
  // quantize4bit(param index, values Float32Array, start): one chunk of a projection weight into the 4-bit store
  Napi::Value Quantize4bit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    if (throw_if(env, info.Length() < 3 || !info[0].IsNumber() || !info[1].IsTypedArray() || !info[2].IsNumber(),
                 "quantize4bit(param, values, start) expected"))
      return env.Undefined();
    auto v = info[1].As<Napi::Float32Array>();
    check_status(env, pt_model_quantize_4bit(m_, info[0].As<Napi::Number>().Int32Value(), v.Data(),
                                             info[2].As<Napi::Number>().Int64Value(), (int64_t)v.ElementLength()));
    return env.Undefined();
  }
  // writeTensor(param index, values Float32Array, start): part of an unquantized tensor
  Napi::Value WriteTensor(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    if (throw_if(env, info.Length() < 3 || !info[0].IsNumber() || !info[1].IsTypedArray() || !info[2].IsNumber(),
                 "writeTensor(param, values, start) expected"))
      return env.Undefined();
    auto v = info[1].As<Napi::Float32Array>();
    check_status(env, pt_model_write_tensor(m_, info[0].As<Napi::Number>().Int32Value(), v.Data(),
                                            info[2].As<Napi::Number>().Int64Value(), (int64_t)v.ElementLength()));
    return env.Undefined();
  }
  // dequantize(param index, out Float32Array of the tensor's size): the tensor in fp32
  Napi::Value Dequantize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    if (throw_if(env, info.Length() < 2 || !info[0].IsNumber() || !info[1].IsTypedArray(), "dequantize(param, out) expected"))
      return env.Undefined();
    const int32_t i = info[0].As<Napi::Number>().Int32Value();
    const pt_param* p = pt_model_param(m_, i);
    auto out = info[1].As<Napi::Float32Array>();
    if (throw_if(env, p == nullptr, "no parameter " + std::to_string(i)) ||
        throw_if(env, out.ElementLength() != (size_t)p->size, std::string("dequantize: out must have ") +
                                                                  std::to_string(p->size) + " entries for " + p->name))
      return env.Undefined();
    check_status(env, pt_model_dequantize(m_, i, out.Data()));
    return env.Undefined();
  }
  Napi::Value WeightBytes(const Napi::CallbackInfo& info) {
    return Alive(info.Env()) ? Napi::Number::New(info.Env(), (double)pt_model_weight_bytes(m_)) : info.Env().Undefined();
  }
  Napi::Value Params(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env) || throw_if(env, Bf16Base(), "this model's base is held in bf16 only: use paramsBf16()"))
      return env.Undefined();
    return StorageView<Napi::Float32Array>(env, pt_model_params(m_), (size_t)pt_model_num_floats(m_));
  }
  Napi::Value ParamsBf16(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env) || throw_if(env, !Bf16Base(), "this model's parameters are fp32: use params()")) return env.Undefined();
    return StorageView<Napi::Uint16Array>(env, pt_model_params_bf16(m_), (size_t)pt_model_num_floats(m_));
  }
  Napi::Value Grads(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    if (throw_if(env, Bf16Base() || Q4Base(), std::string("this model's base is held ") +
                                                  (Q4Base() ? "in 4 bits" : "in bf16 only") + " and is frozen: it has no gradients"))
      return env.Undefined();
    float* g = pt_model_grads(m_);  // allocated on this first call
    if (throw_if(env, g == nullptr, "cannot allocate " + std::to_string(pt_model_num_floats(m_) * 4 >> 20) +
                                        " MiB for the model's gradients"))
      return env.Undefined();
    return View(env, g);
  }
  // setCompute(mode): PT_COMPUTE_FP32 (0) or PT_COMPUTE_BF16 (1)
  Napi::Value SetCompute(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    if (throw_if(env, info.Length() < 1 || !info[0].IsNumber(), "setCompute(mode) expected")) return env.Undefined();
    check_status(env, pt_set_compute(m_, info[0].As<Napi::Number>().Int32Value()));
    return env.Undefined();
  }
  Napi::Value SetGradientCheckpointing(const Napi::CallbackInfo& info) {
    if (Alive(info.Env())) pt_set_gradient_checkpointing(m_, info[0].ToBoolean().Value() ? 1 : 0);
    return info.Env().Undefined();
  }
  Napi::Value GetGradientCheckpointing(const Napi::CallbackInfo& info) {
    return Alive(info.Env()) ? Napi::Boolean::New(info.Env(), pt_get_gradient_checkpointing(m_) != 0) : info.Env().Undefined();
  }
  Napi::Value GetCompute(const Napi::CallbackInfo& info) {
    return Alive(info.Env()) ? Napi::Number::New(info.Env(), pt_get_compute(m_)) : info.Env().Undefined();
  }

  Napi::Value Table(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    return TableOf(env, pt_model_num_params(m_), pt_model_param);
  }
  Napi::Value TableOf(Napi::Env env, int32_t n, const pt_param* (*get)(const pt_model*, int32_t)) {
    return table_array(env, n, [&](int32_t i) { return get(m_, i); });
  }

  // forward(ids Int32Array (B*T), lengths Int32Array (B), B, T, flags (PT_FORWARD_* bits, or a train boolean),
  //         logps?, logitsMean?, entropy?, correct?)
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    if (throw_if(env, info.Length() < 5 || !info[0].IsTypedArray() || !info[1].IsTypedArray(),
                 "forward(ids, lengths, B, T, train, ...outputs) expected"))
      return env.Undefined();
    auto ids = info[0].As<Napi::Int32Array>();
    auto lengths = info[1].As<Napi::Int32Array>();
    int32_t B = info[2].As<Napi::Number>().Int32Value(), T = info[3].As<Napi::Number>().Int32Value();
    int32_t flags = info[4].IsBoolean() ? (info[4].As<Napi::Boolean>().Value() ? PT_FORWARD_TRAIN : 0)
                                        : info[4].As<Napi::Number>().Int32Value();
    size_t BT = (size_t)B * (size_t)T;
    if (throw_if(env, ids.ElementLength() != BT, "ids must have B*T = " + std::to_string(BT) + " entries") ||
        throw_if(env, lengths.ElementLength() != (size_t)B, "lengths must have B entries"))
      return env.Undefined();
    pt_token_stats out{};
    float** fouts[3] = {&out.logps, &out.logits_mean, &out.entropy};
    for (int k = 0; k < 3; k++) {
      size_t a = 5 + k;
      if (info.Length() > a && info[a].IsTypedArray()) {
        auto f = info[a].As<Napi::Float32Array>();
        if (throw_if(env, f.ElementLength() != BT, "each output must have B*T entries")) return env.Undefined();
        *fouts[k] = f.Data();
      }
    }
    if (info.Length() > 8 && info[8].IsTypedArray()) {
      auto u = info[8].As<Napi::Uint8Array>();
      if (throw_if(env, u.ElementLength() != BT, "correct must have B*T entries")) return env.Undefined();
      out.correct = u.Data();
    }
    check_status(env, pt_forward(m_, ids.Data(), lengths.Data(), B, T, flags, &out));
    return env.Undefined();
  }

  Napi::Value Backward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    if (throw_if(env, info.Length() < 1 || !info[0].IsTypedArray(), "backward(dlogps) expected"))
      return env.Undefined();
    check_status(env, pt_backward(m_, info[0].As<Napi::Float32Array>().Data()));
    return env.Undefined();
  }

  Napi::Value ZeroGrad(const Napi::CallbackInfo& info) {
    if (Alive(info.Env())) pt_zero_grad(m_);
    return info.Env().Undefined();
  }
  Napi::Value GradNorm(const Napi::CallbackInfo& info) {
    return Alive(info.Env()) ? Napi::Number::New(info.Env(), pt_grad_norm(m_)) : info.Env().Undefined();
  }
  Napi::Value ScaleGrads(const Napi::CallbackInfo& info) {
    if (Alive(info.Env())) pt_scale_grads(m_, info[0].As<Napi::Number>().FloatValue());
    return info.Env().Undefined();
  }

  // adamwStep(expAvg, expAvgSq, step, lr, beta1, beta2, eps, weightDecay)
  Napi::Value AdamW(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    if (throw_if(env, Bf16Base() || Q4Base(), std::string("this model's base is held ") +
                                                  (Q4Base() ? "in 4 bits" : "in bf16 only") + " and is frozen: train a LoRA adapter"))
      return env.Undefined();
    auto ma = info[0].As<Napi::Float32Array>();
    auto va = info[1].As<Napi::Float32Array>();
    size_t n = (size_t)pt_model_num_floats(m_);
    if (throw_if(env, ma.ElementLength() != n || va.ElementLength() != n,
                 "AdamW state must have one entry per parameter float (" + std::to_string(n) + ")"))
      return env.Undefined();
    auto num = [&](size_t i) { return info[i].As<Napi::Number>(); };
    pt_adamw_step(m_, ma.Data(), va.Data(), num(2).Int64Value(), num(3).FloatValue(), num(4).FloatValue(),
                  num(5).FloatValue(), num(6).FloatValue(), num(7).FloatValue());
    return env.Undefined();
  }

  // loraAttach({ r, lora_alpha, use_rslora, targets, lora_dropout, use_dora })
  Napi::Value LoraAttach(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    if (throw_if(env, info.Length() < 1 || !info[0].IsObject(), "loraAttach(config) expected")) return env.Undefined();
    Napi::Object o = info[0].As<Napi::Object>();
    pt_lora_config c{};
    if (!get_int(env, o, "r", c.r, 1)) return env.Undefined();
    c.lora_alpha = o.Get("lora_alpha").As<Napi::Number>().FloatValue();
    if (!get_int(env, o, "use_rslora", c.use_rslora) || !get_int(env, o, "targets", c.targets)) return env.Undefined();
    c.lora_dropout = o.Get("lora_dropout").As<Napi::Number>().FloatValue();
    if (!get_int(env, o, "use_dora", c.use_dora)) return env.Undefined();
    check_status(env, pt_lora_attach(m_, &c));
    return env.Undefined();
  }
  Napi::Value LoraDetach(const Napi::CallbackInfo& info) {
    if (Alive(info.Env())) pt_lora_detach(m_);
    return info.Env().Undefined();
  }
  Napi::Value LoraMerge(const Napi::CallbackInfo& info) {
    if (Alive(info.Env())) check_status(info.Env(), pt_lora_merge(m_));
    return info.Env().Undefined();
  }
  bool Attached(Napi::Env env) {
    return Alive(env) && !throw_if(env, !pt_lora_attached(m_), "no LoRA adapter is attached");
  }
  Napi::Value LoraScaling(const Napi::CallbackInfo& info) {
    return Attached(info.Env()) ? Napi::Number::New(info.Env(), pt_lora_scaling(m_)) : info.Env().Undefined();
  }
  Napi::Value LoraParams(const Napi::CallbackInfo& info) {
    if (!Attached(info.Env())) return info.Env().Undefined();
    return View(info.Env(), pt_lora_params(m_), (size_t)pt_lora_num_floats(m_));
  }
  Napi::Value LoraGrads(const Napi::CallbackInfo& info) {
    if (!Attached(info.Env())) return info.Env().Undefined();
    return View(info.Env(), pt_lora_grads(m_), (size_t)pt_lora_num_floats(m_));
  }
  Napi::Value LoraTable(const Napi::CallbackInfo& info) {
    if (!Attached(info.Env())) return info.Env().Undefined();
    return TableOf(info.Env(), pt_lora_num_params(m_), pt_lora_param);
  }
  Napi::Value LoraZeroGrad(const Napi::CallbackInfo& info) {
    if (Attached(info.Env())) pt_lora_zero_grad(m_);
    return info.Env().Undefined();
  }
  Napi::Value LoraGradNorm(const Napi::CallbackInfo& info) {
    return Attached(info.Env()) ? Napi::Number::New(info.Env(), pt_lora_grad_norm(m_)) : info.Env().Undefined();
  }
  Napi::Value LoraScaleGrads(const Napi::CallbackInfo& info) {
    if (Attached(info.Env())) pt_lora_scale_grads(m_, info[0].As<Napi::Number>().FloatValue());
    return info.Env().Undefined();
  }
  // loraSetDropoutSeed(seed, step, micro): integers, seed < 2^53
  Napi::Value LoraSetDropoutSeed(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Attached(env)) return env.Undefined();
    auto num = [&](size_t i) { return info[i].As<Napi::Number>(); };
    pt_lora_set_dropout_seed(m_, (uint64_t)num(0).Int64Value(), num(1).Int64Value(), num(2).Int32Value());
    return env.Undefined();
  }
  Napi::Value LoraDoraInit(const Napi::CallbackInfo& info) {
    if (Attached(info.Env())) check_status(info.Env(), pt_lora_dora_init(m_));
    return info.Env().Undefined();
  }
  // loraAdamwStep(expAvg, expAvgSq, step, lr, beta1, beta2, eps, weightDecay)
  Napi::Value LoraAdamW(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Attached(env)) return env.Undefined();
    auto ma = info[0].As<Napi::Float32Array>();
    auto va = info[1].As<Napi::Float32Array>();
    size_t n = (size_t)pt_lora_num_floats(m_);
    if (throw_if(env, ma.ElementLength() != n || va.ElementLength() != n,
                 "AdamW state must have one entry per adapter float (" + std::to_string(n) + ")"))
      return env.Undefined();
    auto num = [&](size_t i) { return info[i].As<Napi::Number>(); };
    pt_lora_adamw_step(m_, ma.Data(), va.Data(), num(2).Int64Value(), num(3).FloatValue(), num(4).FloatValue(),
                       num(5).FloatValue(), num(6).FloatValue(), num(7).FloatValue());
    return env.Undefined();
  }

  // decode(cache, rows Int32Array (n), ids Int32Array (n*T), lengths Int32Array (n), T, flags, logits Float32Array (n*V))
  Napi::Value Decode(const Napi::CallbackInfo& info);

  Napi::Value Free(const Napi::CallbackInfo& info) {
    pt_model_free(m_);
    m_ = nullptr;
    storage_.Reset();  // JavaScript views of it keep the memory alive; the garbage collector frees it after them
    return info.Env().Undefined();
  }
};

Napi::FunctionReference* Model::ctor = nullptr;

// A decoding session (pt_kv_cache): new KvCache(model, B, T_max); length(row); reset(row); free().
class KvCache : public Napi::ObjectWrap<KvCache> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "KvCache",
                       {InstanceMethod("length", &KvCache::Length), InstanceMethod("reset", &KvCache::Reset),
                        InstanceMethod("free", &KvCache::Free)});
  }
  explicit KvCache(const Napi::CallbackInfo& info) : Napi::ObjectWrap<KvCache>(info) {
    Napi::Env env = info.Env();
    if (throw_if(env, info.Length() < 3 || !info[0].IsObject() || !info[0].As<Napi::Object>().InstanceOf(Model::ctor->Value()),
                 "KvCache(model, B, T_max) expected"))
      return;
    const pt_model* m = Model::Unwrap(info[0].As<Napi::Object>())->handle();
    if (throw_if(env, m == nullptr, "the model was freed")) return;
    check_status(env, pt_kv_create(m, info[1].As<Napi::Number>().Int32Value(), info[2].As<Napi::Number>().Int32Value(), &kv_));
  }
  ~KvCache() override { pt_kv_free(kv_); }
  pt_kv_cache* handle() const { return kv_; }

 private:
  pt_kv_cache* kv_ = nullptr;
  Napi::Value Length(const Napi::CallbackInfo& info) {
    if (throw_if(info.Env(), kv_ == nullptr, "the KV cache was freed")) return info.Env().Undefined();
    return Napi::Number::New(info.Env(), pt_kv_length(kv_, info[0].As<Napi::Number>().Int32Value()));
  }
  Napi::Value Reset(const Napi::CallbackInfo& info) {
    if (!throw_if(info.Env(), kv_ == nullptr, "the KV cache was freed")) pt_kv_reset(kv_, info[0].As<Napi::Number>().Int32Value());
    return info.Env().Undefined();
  }
  Napi::Value Free(const Napi::CallbackInfo& info) {
    pt_kv_free(kv_);
    kv_ = nullptr;
    return info.Env().Undefined();
  }
};
Napi::FunctionReference* kv_ctor = nullptr;

Napi::Value Model::Decode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Alive(env)) return env.Undefined();
  if (throw_if(env, info.Length() < 7 || !info[0].IsObject() || !info[0].As<Napi::Object>().InstanceOf(kv_ctor->Value()) ||
                        !info[1].IsTypedArray() || !info[2].IsTypedArray() || !info[3].IsTypedArray() || !info[6].IsTypedArray(),
               "decode(cache, rows, ids, lengths, T, flags, logits) expected"))
    return env.Undefined();
  pt_kv_cache* kv = KvCache::Unwrap(info[0].As<Napi::Object>())->handle();
  if (throw_if(env, kv == nullptr, "the KV cache was freed")) return env.Undefined();
  auto rows = info[1].As<Napi::Int32Array>();
  auto ids = info[2].As<Napi::Int32Array>();
  auto lengths = info[3].As<Napi::Int32Array>();
  int32_t T = info[4].As<Napi::Number>().Int32Value(), flags = info[5].As<Napi::Number>().Int32Value();
  auto logits = info[6].As<Napi::Float32Array>();
  const size_t n = rows.ElementLength();
  const pt_param* embed = pt_model_param(m_, 0);  // (V, C): the vocabulary size
  const size_t V = (size_t)embed->shape[0];
  if (throw_if(env, lengths.ElementLength() != n || ids.ElementLength() != n * (size_t)T,
               "decode: lengths must have n entries and ids n*T") ||
      throw_if(env, logits.ElementLength() != n * V, "decode: logits must have n*V = " + std::to_string(n * V) + " entries"))
    return env.Undefined();
  check_status(env, pt_decode(m_, kv, rows.Data(), ids.Data(), lengths.Data(), (int32_t)n, T, flags, logits.Data()));
  return env.Undefined();
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  pt_set_num_threads(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}
Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), pt_get_num_threads());
}
// bf16Support(): PT_BF16_* bits, read again on each call (PREFTUNE_NO_BF16 may change); bf16Describe(): a line.
// paramLayout(config): {table, numFloats}, the parameter layout of a model of config (pt_param_layout), no model made.
Napi::Value ParamLayout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (throw_if(env, info.Length() < 1 || !info[0].IsObject(), "paramLayout(config): config object expected")) return env.Undefined();
  pt_config c{};
  std::vector<int32_t> layers;
  std::vector<float> factors;
  if (!read_config(env, info[0].As<Napi::Object>(), c, layers, factors)) return env.Undefined();
  int32_t n = 0;
  int64_t floats = 0;
  if (check_status(env, pt_param_layout(&c, nullptr, 0, &n, &floats))) return env.Undefined();
  std::vector<pt_param> table((size_t)n);
  if (check_status(env, pt_param_layout(&c, table.data(), n, &n, &floats))) return env.Undefined();
  auto out = Napi::Object::New(env);
  out.Set("table", table_array(env, n, [&](int32_t i) { return &table[(size_t)i]; }));
  out.Set("numFloats", Napi::Number::New(env, (double)floats));
  return out;
}
Napi::Value Bf16Support(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), pt_bf16_support()); }
Napi::Value Bf16Describe(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), pt_bf16_describe()); }
// quantize4bit(x Float32Array, type 0 nf4 | 1 fp4) -> { packed Uint8Array, absmax Float32Array }
Napi::Value Quantize4bitArray(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (throw_if(env, info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsNumber(), "quantize4bit(x, type) expected"))
    return env.Undefined();
  auto x = info[0].As<Napi::Float32Array>();
  const int64_t n = (int64_t)x.ElementLength();
  auto packed = Napi::Uint8Array::New(env, (size_t)(n + 1) / 2);
  auto absmax = Napi::Float32Array::New(env, (size_t)(n + 63) / 64);
  pt_quantize_4bit(x.Data(), n, info[1].As<Napi::Number>().Int32Value(), packed.Data(), absmax.Data());
  auto o = Napi::Object::New(env);
  o.Set("packed", packed);
  o.Set("absmax", absmax);
  return o;
}
// dequantize4bit(packed, absmax, n, type) -> Float32Array (n)
Napi::Value Dequantize4bitArray(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (throw_if(env, info.Length() < 4 || !info[0].IsTypedArray() || !info[1].IsTypedArray(), "dequantize4bit(packed, absmax, n, type) expected"))
    return env.Undefined();
  auto packed = info[0].As<Napi::Uint8Array>();
  auto absmax = info[1].As<Napi::Float32Array>();
  const int64_t n = info[2].As<Napi::Number>().Int64Value();
  if (throw_if(env, n < 0 || packed.ElementLength() < (size_t)(n + 1) / 2 || absmax.ElementLength() < (size_t)(n + 63) / 64,
               "dequantize4bit: packed needs (n + 1) / 2 bytes and absmax ceil(n / 64) values"))
    return env.Undefined();
  auto out = Napi::Float32Array::New(env, (size_t)n);
  pt_dequantize_4bit(packed.Data(), absmax.Data(), n, info[3].As<Napi::Number>().Int32Value(), out.Data());
  return out;
}
// quantizeAbsmax(absmax Float32Array) -> { q Uint8Array, absmax2 Float32Array, offset, dequantized Float32Array }
Napi::Value QuantizeAbsmax(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (throw_if(env, info.Length() < 1 || !info[0].IsTypedArray(), "quantizeAbsmax(absmax) expected")) return env.Undefined();
  auto a = info[0].As<Napi::Float32Array>();
  const int64_t nb = (int64_t)a.ElementLength();
  auto q = Napi::Uint8Array::New(env, (size_t)nb);
  auto a2 = Napi::Float32Array::New(env, (size_t)(nb + 255) / 256);
  auto back = Napi::Float32Array::New(env, (size_t)nb);
  float offset = 0;
  pt_quantize_absmax(a.Data(), nb, q.Data(), a2.Data(), &offset);
  pt_dequantize_absmax(q.Data(), a2.Data(), offset, nb, back.Data());
  auto o = Napi::Object::New(env);
  o.Set("q", q);
  o.Set("absmax2", a2);
  o.Set("offset", Napi::Number::New(env, offset));
  o.Set("dequantized", back);
  return o;
}
Napi::Value Gradcheck(const Napi::CallbackInfo& info) {
  std::string op = info[0].As<Napi::String>().Utf8Value();
  uint64_t seed = info.Length() > 1 ? (uint64_t)info[1].As<Napi::Number>().Int64Value() : 1;
  return Napi::Number::New(info.Env(), pt_gradcheck(op.c_str(), seed));
}

// ---- per-tensor optimizer kernels (lengths checked here: the core trusts them) ----
bool is_f32(const Napi::Value& v) { return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_float32_array; }
bool is_u8(const Napi::Value& v) { return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array; }
size_t blocks_of(size_t n) { return (n + PT_QBLOCK - 1) / PT_QBLOCK; }
// dynamicMap(signed) -> Float32Array(256)
Napi::Value DynamicMap(const Napi::CallbackInfo& info) {
  auto out = Napi::Float32Array::New(info.Env(), 256);
  pt_dynamic_map(info[0].ToBoolean().Value() ? 1 : 0, out.Data());
  return out;
}
// quantizeBlockwise(x Float32Array (n), signed, codes Uint8Array (n), absmax Float32Array (ceil(n/256)))
Napi::Value QuantizeBlockwise(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (throw_if(env, info.Length() < 4 || !is_f32(info[0]) || !is_u8(info[2]) || !is_f32(info[3]),
               "quantizeBlockwise(x, signed, codes, absmax) expected")) return env.Undefined();
  auto x = info[0].As<Napi::Float32Array>();
  auto codes = info[2].As<Napi::Uint8Array>();
  auto absmax = info[3].As<Napi::Float32Array>();
  const size_t n = x.ElementLength();
  if (throw_if(env, codes.ElementLength() != n || absmax.ElementLength() != blocks_of(n),
               "quantizeBlockwise: codes must have n entries and absmax ceil(n / 256)")) return env.Undefined();
  pt_quantize_blockwise(x.Data(), (int64_t)n, info[1].ToBoolean().Value() ? 1 : 0, codes.Data(), absmax.Data());
  return env.Undefined();
}
// dequantizeBlockwise(codes Uint8Array (n), absmax Float32Array (ceil(n/256)), signed, out Float32Array (n))
Napi::Value DequantizeBlockwise(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (throw_if(env, info.Length() < 4 || !is_u8(info[0]) || !is_f32(info[1]) || !is_f32(info[3]),
               "dequantizeBlockwise(codes, absmax, signed, out) expected")) return env.Undefined();
  auto codes = info[0].As<Napi::Uint8Array>();
  auto absmax = info[1].As<Napi::Float32Array>();
  auto out = info[3].As<Napi::Float32Array>();
  const size_t n = codes.ElementLength();
  if (throw_if(env, out.ElementLength() != n || absmax.ElementLength() != blocks_of(n),
               "dequantizeBlockwise: out must have n entries and absmax ceil(n / 256)")) return env.Undefined();
  pt_dequantize_blockwise(codes.Data(), absmax.Data(), (int64_t)n, info[2].ToBoolean().Value() ? 1 : 0, out.Data());
  return env.Undefined();
}
// adamwTensor(p, g, expAvg, expAvgSq, step, lr, beta1, beta2, eps, weightDecay): Float32Arrays of one length
Napi::Value AdamwTensor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (throw_if(env, info.Length() < 10 || !is_f32(info[0]) || !is_f32(info[1]) || !is_f32(info[2]) || !is_f32(info[3]),
               "adamwTensor(p, g, expAvg, expAvgSq, step, lr, beta1, beta2, eps, weightDecay) expected")) return env.Undefined();
  auto p = info[0].As<Napi::Float32Array>();
  const size_t n = p.ElementLength();
  auto g = info[1].As<Napi::Float32Array>(), m = info[2].As<Napi::Float32Array>(), v = info[3].As<Napi::Float32Array>();
  if (throw_if(env, g.ElementLength() != n || m.ElementLength() != n || v.ElementLength() != n,
               "adamwTensor: p, g, expAvg and expAvgSq must have the same length")) return env.Undefined();
  auto num = [&](size_t i) { return info[i].As<Napi::Number>(); };
  pt_adamw_tensor(p.Data(), g.Data(), m.Data(), v.Data(), (int64_t)n, num(4).Int64Value(), num(5).FloatValue(),
                  num(6).FloatValue(), num(7).FloatValue(), num(8).FloatValue(), num(9).FloatValue());
  return env.Undefined();
}
// adamw8bitTensor(p, g, state1, state2, absmax1, absmax2, step, lr, beta1, beta2, eps, weightDecay)
Napi::Value Adamw8bitTensor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (throw_if(env, info.Length() < 12 || !is_f32(info[0]) || !is_f32(info[1]) || !is_u8(info[2]) || !is_u8(info[3]) ||
                        !is_f32(info[4]) || !is_f32(info[5]),
               "adamw8bitTensor(p, g, state1, state2, absmax1, absmax2, step, lr, beta1, beta2, eps, weightDecay) expected"))
    return env.Undefined();
  auto p = info[0].As<Napi::Float32Array>(), g = info[1].As<Napi::Float32Array>();
  auto s1 = info[2].As<Napi::Uint8Array>(), s2 = info[3].As<Napi::Uint8Array>();
  auto a1 = info[4].As<Napi::Float32Array>(), a2 = info[5].As<Napi::Float32Array>();
  const size_t n = p.ElementLength(), nb = blocks_of(n);
  if (throw_if(env, g.ElementLength() != n || s1.ElementLength() != n || s2.ElementLength() != n ||
                        a1.ElementLength() != nb || a2.ElementLength() != nb,
               "adamw8bitTensor: g, state1 and state2 must have p's length n, absmax1 and absmax2 ceil(n / 256)"))
    return env.Undefined();
  auto num = [&](size_t i) { return info[i].As<Napi::Number>(); };
  pt_adamw8bit_tensor(p.Data(), g.Data(), s1.Data(), s2.Data(), a1.Data(), a2.Data(), (int64_t)n, num(6).Int64Value(),
                      num(7).FloatValue(), num(8).FloatValue(), num(9).FloatValue(), num(10).FloatValue(), num(11).FloatValue());
  return env.Undefined();
}
// mpiInit(libPath?): {rank, size}, or an Error saying why MPI cannot be used (pt_mpi_init).
Napi::Value MpiInit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string lib = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  int32_t rank = 0, size = 1;
  if (check_status(env, pt_mpi_init(lib.c_str(), &rank, &size))) return env.Undefined();
  Napi::Object o = Napi::Object::New(env);
  o.Set("rank", Napi::Number::New(env, rank));
  o.Set("size", Napi::Number::New(env, size));
  return o;
}
// mpiAllreduceSum(buf, bucket?): buf (Float32Array or Float64Array) summed over every rank, in place.
Napi::Value MpiAllreduceSum(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (throw_if(env, info.Length() < 1 || !info[0].IsTypedArray(), "mpiAllreduceSum(buf): a Float32Array or Float64Array expected"))
    return env.Undefined();
  Napi::TypedArray t = info[0].As<Napi::TypedArray>();
  const int64_t bucket = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int64Value() : 0;
  if (t.TypedArrayType() == napi_float32_array) {
    Napi::Float32Array a = t.As<Napi::Float32Array>();
    check_status(env, pt_mpi_allreduce_sum_f32(a.Data(), (int64_t)a.ElementLength(), bucket));
  } else if (t.TypedArrayType() == napi_float64_array) {
    Napi::Float64Array a = t.As<Napi::Float64Array>();
    check_status(env, pt_mpi_allreduce_sum_f64(a.Data(), (int64_t)a.ElementLength()));
  } else {
    throw_if(env, true, "mpiAllreduceSum(buf): a Float32Array or Float64Array expected");
  }
  return env.Undefined();
}
// mpiOverlapBegin(grads: Float32Array, ranges: Float64Array (L, 2)); mpiOverlapEnd(rest: Float64Array (n, 2), bucket):
// the number of layers whose sum the backward started
bool ranges_of(Napi::Env env, const Napi::Value& v, size_t limit, std::vector<int64_t>& out) {
  if (throw_if(env, !v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array,
               "ranges: a Float64Array of (start, end) pairs expected"))
    return false;
  Napi::Float64Array a = v.As<Napi::Float64Array>();
  if (throw_if(env, a.ElementLength() % 2 != 0, "ranges: an even number of values (start, end pairs) expected")) return false;
  out.resize(a.ElementLength());
  for (size_t i = 0; i < a.ElementLength(); i++) {
    const double d = a[i];
    if (throw_if(env, !(d >= 0 && d <= (double)limit && d == std::floor(d)), "ranges: " + std::to_string(d) + " is not an index into the buffer"))
      return false;
    out[i] = (int64_t)d;
  }
  return true;
}
Napi::Value MpiOverlapBegin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (throw_if(env, info.Length() < 2 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array,
               "mpiOverlapBegin(grads, ranges): grads must be a Float32Array"))
    return env.Undefined();
  Napi::Float32Array g = info[0].As<Napi::Float32Array>();
  std::vector<int64_t> r;
  if (!ranges_of(env, info[1], g.ElementLength(), r)) return env.Undefined();
  check_status(env, pt_mpi_overlap_begin(g.Data(), r.data(), (int32_t)(r.size() / 2)));
  return env.Undefined();
}
Napi::Value MpiOverlapEnd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<int64_t> r;
  if (info.Length() < 1 || !ranges_of(env, info[0], (size_t)1 << 53, r)) return env.Undefined();
  const int64_t bucket = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int64Value() : 0;
  int32_t early = 0;
  if (check_status(env, pt_mpi_overlap_end(r.data(), (int32_t)(r.size() / 2), bucket, &early))) return env.Undefined();
  return Napi::Number::New(env, early);
}
Napi::Value MpiBarrier(const Napi::CallbackInfo& info) {
  check_status(info.Env(), pt_mpi_barrier());
  return info.Env().Undefined();
}
Napi::Value MpiAbort(const Napi::CallbackInfo& info) {
  pt_mpi_abort(info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 1);
  return info.Env().Undefined();
}
Napi::Value MpiFinalize(const Napi::CallbackInfo& info) {
  check_status(info.Env(), pt_mpi_finalize());
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Napi::Function model = Model::Define(env);
  Model::ctor = new Napi::FunctionReference(Napi::Persistent(model));
  Napi::Function cache = KvCache::Define(env);
  kv_ctor = new Napi::FunctionReference(Napi::Persistent(cache));
  exports.Set("Model", model);
  exports.Set("KvCache", cache);
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads));
  exports.Set("getNumThreads", Napi::Function::New(env, GetNumThreads));
  exports.Set("gradcheck", Napi::Function::New(env, Gradcheck));
  exports.Set("paramLayout", Napi::Function::New(env, ParamLayout));
  exports.Set("quantize4bit", Napi::Function::New(env, Quantize4bitArray));
  exports.Set("dequantize4bit", Napi::Function::New(env, Dequantize4bitArray));
  exports.Set("quantizeAbsmax", Napi::Function::New(env, QuantizeAbsmax));
  exports.Set("bf16Support", Napi::Function::New(env, Bf16Support));
  exports.Set("bf16Describe", Napi::Function::New(env, Bf16Describe));
  exports.Set("dynamicMap", Napi::Function::New(env, DynamicMap));
  exports.Set("quantizeBlockwise", Napi::Function::New(env, QuantizeBlockwise));
  exports.Set("dequantizeBlockwise", Napi::Function::New(env, DequantizeBlockwise));
  exports.Set("adamwTensor", Napi::Function::New(env, AdamwTensor));
  exports.Set("adamw8bitTensor", Napi::Function::New(env, Adamw8bitTensor));
  exports.Set("mpiInit", Napi::Function::New(env, MpiInit));
  exports.Set("mpiAllreduceSum", Napi::Function::New(env, MpiAllreduceSum));
  exports.Set("mpiOverlapBegin", Napi::Function::New(env, MpiOverlapBegin));
  exports.Set("mpiOverlapEnd", Napi::Function::New(env, MpiOverlapEnd));
  exports.Set("mpiBarrier", Napi::Function::New(env, MpiBarrier));
  exports.Set("mpiAbort", Napi::Function::New(env, MpiAbort));
  exports.Set("mpiFinalize", Napi::Function::New(env, MpiFinalize));
  exports.Set("abiVersion", Napi::Number::New(env, pt_abi_version()));
  exports.Set("blasCore", Napi::String::New(env, pt_blas_core()));
  return exports;
}

}  // namespace

NODE_API_MODULE(preftune, Init)
