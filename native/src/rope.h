// Rotary position embedding, forward and backward, in Hugging Face's rotate_half convention:
// out[i] = x[i] cos - x[i + HS/2] sin,  out[i + HS/2] = x[i + HS/2] cos + x[i] sin  (i < HS/2),
// with angle pos * inv_freq[i]. Applied in place to H heads of width HS inside rows of width ld, over the first R
// dims of each head (partial rotary: Phi-2, GPT-NeoX, Phi-4-mini; the frequencies, tables and rotate_half are then
// those of dimension R, and dims R.. pass through).
// The backward is the transpose (rotation by -angle; with yarn's attention factor the tables are scaled
// rotations and the transpose is still exact).
// The inverse frequencies follow transformers' rope_type (modeling_rope_utils, v5.18): default (theta^(-2i/HS)),
// linear, dynamic (NTK, recomputed from the run-time length as transformers' dynamic_rope_update does), yarn
// (with its cos/sin attention factor), llama3 and longrope (short or long per-frequency divisors by the run's length,
// with its attention factor), each in the precision transformers computes it: Python-number arithmetic in double,
// tensor arithmetic in fp32. A per-layer base is a second RopeState.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>
#include "preftune.h"

namespace pt {

// pt_config's rope fields; type PT_ROPE_*.
struct RopeScaling {
  int type = PT_ROPE_DEFAULT;
  double theta = 10000, factor = 1, low_freq_factor = 0, high_freq_factor = 0, beta_fast = 32, beta_slow = 1;
  double attention_factor = 1;
  int64_t original_max = 0;  // llama3/yarn/longrope: original_max_position_embeddings; dynamic: max_position_embeddings
  bool truncate = true;
  std::vector<float> short_factor, long_factor;  // longrope (HS/2 each)
};

inline RopeScaling rope_scaling_of(const pt_config& c) {
  RopeScaling s;
  s.type = c.rope_type;
  s.theta = c.rope_theta;
  if (s.type == PT_ROPE_DEFAULT) return s;
  s.factor = c.rope_factor;
  s.low_freq_factor = c.rope_low_freq_factor;
  s.high_freq_factor = c.rope_high_freq_factor;
  s.beta_fast = c.rope_beta_fast;
  s.beta_slow = c.rope_beta_slow;
  s.attention_factor = s.type == PT_ROPE_YARN || s.type == PT_ROPE_LONGROPE ? c.rope_attention_factor : 1.0;
  s.original_max = c.rope_original_max_position_embeddings;
  s.truncate = c.rope_truncate != 0;
  const int half = (c.rotary_dim > 0 ? c.rotary_dim : c.head_dim) / 2;
  if (s.type == PT_ROPE_LONGROPE && c.rope_short_factor && c.rope_long_factor) {
    s.short_factor.assign(c.rope_short_factor, c.rope_short_factor + half);
    s.long_factor.assign(c.rope_long_factor, c.rope_long_factor + half);
  }
  return s;
}

// "" when the scaling is usable, else what is wrong (pt_model_create reports it).
inline std::string rope_check(const RopeScaling& s, int HS) {
  auto pos = [](double v) { return std::isfinite(v) && v > 0; };
  if (s.type < PT_ROPE_DEFAULT || s.type > PT_ROPE_LONGROPE) return "unknown rope_type " + std::to_string(s.type);
  if (!pos(s.theta)) return "rope_theta must be a positive number";
  if (s.type == PT_ROPE_DEFAULT) return "";
  if (!pos(s.factor)) return "the RoPE scaling factor must be a positive number";
  if (s.type != PT_ROPE_LINEAR && s.original_max <= 0)
    return "the RoPE scaling needs a positive original_max_position_embeddings";
  if (s.type == PT_ROPE_DYNAMIC && HS <= 2) return "dynamic RoPE needs head_dim > 2";
  if (s.type == PT_ROPE_LLAMA3 && !(std::isfinite(s.low_freq_factor) && std::isfinite(s.high_freq_factor) &&
                                    s.low_freq_factor > 0 && s.high_freq_factor != s.low_freq_factor))
    return "llama3 RoPE needs low_freq_factor > 0 and high_freq_factor != low_freq_factor";
  if (s.type == PT_ROPE_YARN && !(pos(s.beta_fast) && pos(s.beta_slow) && pos(s.attention_factor)))
    return "yarn RoPE needs positive beta_fast, beta_slow and attention_factor";
  if (s.type == PT_ROPE_LONGROPE) {
    if (!pos(s.attention_factor)) return "longrope needs a positive attention_factor";
    if (s.short_factor.empty() || s.long_factor.empty()) return "longrope needs rope_short_factor and rope_long_factor";
    for (size_t i = 0; i < s.short_factor.size(); i++)
      if (!pos(s.short_factor[i]) || !pos(s.long_factor[i])) return "longrope's short_factor and long_factor must be positive numbers";
  }
  return "";
}

// theta^(-2i/HS) for i < HS/2: transformers' 1.0 / (base ** (arange(0, dim, 2).float() / dim)) in fp32.
inline std::vector<float> rope_default_inv(float theta, int HS) {
  std::vector<float> inv(HS / 2);
  for (int i = 0; i < HS / 2; i++) inv[i] = 1.0f / std::pow(theta, (float)(2 * i) / (float)HS);
  return inv;
}

// The inverse frequencies (HS/2) transformers uses. seq_len: dynamic only, the run-time length
// max(position_ids) + 1 (0 = at model creation, when transformers takes max_position_embeddings).
inline std::vector<float> rope_inv_freq(const RopeScaling& s, int HS, int64_t seq_len = 0) {
  const int half = HS / 2;
  const double pi = 3.14159265358979323846;
  switch (s.type) {
    case PT_ROPE_LINEAR: {
      std::vector<float> inv = rope_default_inv((float)s.theta, HS);
      for (float& v : inv) v /= (float)s.factor;
      return inv;
    }
    case PT_ROPE_DYNAMIC: {
      // base * ((factor * L / max_pos) - (factor - 1)) ** (dim / (dim - 2)), L = max(seq_len, max_pos).
      // At creation L is a Python int (all in double); at run time it is a tensor, so the new base is fp32.
      const double e = (double)HS / (double)(HS - 2);
      if (seq_len <= 0) {
        const double L = (double)s.original_max;
        const double base = s.theta * std::pow(s.factor * L / L - (s.factor - 1), e);
        return rope_default_inv((float)base, HS);
      }
      const float L = (float)std::max<int64_t>(seq_len, s.original_max);
      float t = (float)s.factor * L;
      t = t / (float)s.original_max;
      t = t - (float)(s.factor - 1);
      t = std::pow(t, (float)e);
      return rope_default_inv((float)s.theta * t, HS);
    }
    case PT_ROPE_YARN: {
      // Interpolate (divide by factor) the low frequencies, extrapolate (keep) the high ones, with a linear ramp
      // between the dims where the pretraining length holds beta_fast and beta_slow rotations.
      auto corr = [&](double rotations) {
        return (HS * std::log((double)s.original_max / (rotations * 2 * pi))) / (2 * std::log(s.theta));
      };
      double low = corr(s.beta_fast), high = corr(s.beta_slow);
      if (s.truncate) { low = std::floor(low); high = std::ceil(high); }
      low = std::max(low, 0.0);
      high = std::min(high, (double)(HS - 1));
      if (low == high) high += 0.001;
      std::vector<float> inv(half);
      for (int i = 0; i < half; i++) {
        const float f = std::pow((float)s.theta, (float)(2 * i) / (float)HS);
        const float extra = 1.0f / f, inter = 1.0f / ((float)s.factor * f);
        const float ramp = std::min(1.0f, std::max(0.0f, ((float)i - (float)low) / (float)(high - low)));
        const float keep = 1.0f - ramp;  // transformers' inv_freq_extrapolation_factor
        inv[i] = inter * (1.0f - keep) + extra * keep;
      }
      return inv;
    }
    case PT_ROPE_LLAMA3: {
      // Wavelengths above original/low_freq_factor are divided by factor, those below original/high_freq_factor
      // kept, and the band between blended by (original / wavelength - low) / (high - low).
      std::vector<float> inv = rope_default_inv((float)s.theta, HS);
      const double old = (double)s.original_max;
      const float low_wl = (float)(old / s.low_freq_factor), high_wl = (float)(old / s.high_freq_factor);
      const float factor = (float)s.factor;
      for (float& v : inv) {
        const float wl = (1.0f / v) * (float)(2 * pi);  // 2 pi / inv_freq, as torch computes a scalar / tensor
        const float scaled = wl > low_wl ? v / factor : v;
        const float smooth = ((1.0f / wl) * (float)old - (float)s.low_freq_factor) /
                             (float)(s.high_freq_factor - s.low_freq_factor);
        const float blended = (1.0f - smooth) * scaled / factor + smooth * scaled;
        const bool medium = !(wl < high_wl) && !(wl > low_wl);
        v = medium ? blended : scaled;
      }
      return inv;
    }
    case PT_ROPE_LONGROPE: {
      // 1 / (ext * base^(2i/dim)): the long divisors once the run's positions pass the pretraining length.
      const std::vector<float>& ext = seq_len > s.original_max ? s.long_factor : s.short_factor;
      std::vector<float> inv(half);
      for (int i = 0; i < half; i++) inv[i] = 1.0f / (ext[i] * std::pow((float)s.theta, (float)(2 * i) / (float)HS));
      return inv;
    }
    default:
      return rope_default_inv((float)s.theta, HS);
  }
}

// Tables (maxT, HS/2): cos(p inv[i]) * scale and sin(p inv[i]) * scale, the angle a fp32 product as in
// transformers (inv_freq @ position_ids in fp32, then cos/sin times the attention factor in fp32).
template <typename T>
void rope_tables(std::vector<T>& cosv, std::vector<T>& sinv, int maxT, const std::vector<float>& inv, float scale) {
  const int half = (int)inv.size();
  cosv.resize((size_t)maxT * half);
  sinv.resize((size_t)maxT * half);
  for (int i = 0; i < half; i++) {
    for (int p = 0; p < maxT; p++) {
      float a = (float)p * inv[i];
      float c = std::cos(a), s = std::sin(a);
      if (scale != 1.0f) { c *= scale; s *= scale; }
      cosv[(size_t)p * half + i] = (T)c;
      sinv[(size_t)p * half + i] = (T)s;
    }
  }
}
template <typename T>
void rope_tables(std::vector<T>& cosv, std::vector<T>& sinv, int maxT, int HS, float theta) {
  rope_tables(cosv, sinv, maxT, rope_default_inv(theta, HS), 1.0f);
}

// The frequencies in use, with transformers' dynamic_rope_update state: max_seq_len_cached (`cached`) starts at
// max_position_embeddings; a run longer than it recomputes the frequencies for that length and becomes the new
// cached length; a run shorter than max_position_embeddings after a longer one restores the original frequencies.
// So, as in transformers, a dynamic model's frequencies depend on the lengths of the runs before (a run between
// max_position_embeddings and the longest so far keeps the longest's). Every other type never changes.
struct RopeState {
  RopeScaling s;
  int HS = 0;
  std::vector<float> inv, original;
  float scale = 1.0f;
  int64_t cached = 0;
};

inline void rope_init(RopeState& st, const RopeScaling& s, int HS) {
  st.s = s;
  st.HS = HS;
  st.inv = rope_inv_freq(s, HS);
  st.original = st.inv;
  st.scale = (float)s.attention_factor;
  st.cached = s.original_max;
}

// Applies the dynamic rule (or longrope's choice of divisors) for a run whose positions reach seq_len - 1; true when
// the frequencies changed.
inline bool rope_update(RopeState& st, int64_t seq_len) {
  if (st.s.type == PT_ROPE_LONGROPE) {
    std::vector<float> inv = rope_inv_freq(st.s, st.HS, seq_len);
    if (inv == st.inv) return false;
    st.inv = std::move(inv);
    return true;
  }
  if (st.s.type != PT_ROPE_DYNAMIC) return false;
  const int64_t before = st.cached, original = st.s.original_max;
  bool changed = false;
  if (seq_len > before) {
    st.inv = rope_inv_freq(st.s, st.HS, seq_len);
    st.cached = seq_len;
    changed = true;
  }
  if (seq_len < original && before > original) {
    st.inv = st.original;
    st.cached = original;
    changed = true;
  }
  return changed;
}

// x (N, ld): H heads of width HS starting at column col0, the first R (<= HS, even) dims of each rotated with
// tables (positions, R/2). pos (N) position of each token.
template <typename T>
void rope_apply(T* x, const int32_t* pos, const T* cosv, const T* sinv, int64_t N, int col0, int H, int HS,
                int64_t ld, bool inverse, int R) {
  int half = R / 2;
  T sgn = inverse ? (T)-1 : (T)1;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    const T* c = cosv + (size_t)pos[n] * half;
    const T* s = sinv + (size_t)pos[n] * half;
    for (int h = 0; h < H; h++) {
      T* v = x + n * ld + col0 + (int64_t)h * HS;
      for (int i = 0; i < half; i++) {
        T a = v[i], b = v[i + half], si = sgn * s[i];
        v[i] = a * c[i] - b * si;
        v[i + half] = b * c[i] + a * si;
      }
    }
  }
}

template <typename T>
void rope_forward(T* x, const int32_t* pos, const T* cosv, const T* sinv, int64_t N, int col0, int H, int HS,
                  int64_t ld, int R = 0) {
  rope_apply(x, pos, cosv, sinv, N, col0, H, HS, ld, false, R > 0 ? R : HS);
}
template <typename T>
void rope_backward(T* dx, const int32_t* pos, const T* cosv, const T* sinv, int64_t N, int col0, int H,
                   int HS, int64_t ld, int R = 0) {
  rope_apply(dx, pos, cosv, sinv, N, col0, H, HS, ld, true, R > 0 ? R : HS);
}

}  // namespace pt
