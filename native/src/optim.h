// AdamW over one tensor, with its moments in fp32 (torch.optim.AdamW) or as bitsandbytes' blockwise 8-bit
// state: bitsandbytes' dynamic quantization maps (signed for exp_avg, unsigned for exp_avg_sq), blocks of 256
// elements with an fp32 absmax each, nearest code with ties to the lower code. The 8-bit update dequantizes,
// runs the fp32 math, steps the weight with the fresh fp32 moments and only then requantizes them.
// Not here: which tensors are held in 8 bits (min_8bit_size) and the state's files (TypeScript).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace pt {

constexpr int kQBlock = 256;  // elements per absmax block of 8-bit optimizer state (bitsandbytes >= 0.44)

// A 256-entry code book in ascending order and the 255 fp32 midpoints between neighbours.
struct DynamicMap {
  float code[256];
  float mid[255];
};

// bitsandbytes' create_dynamic_map(signed, max_exponent_bits = 7, total_bits = 8), rebuilt here in fp32 the way
// torch computes it: for decade i = 0..6, the midpoints of linspace(0.1, 1, k + 1) (k = 2^i signed, 2^(i+1)
// unsigned) times 10^(i-6), with both signs when signed; then 0 and 1; sorted. torch's linspace is
// fma(step, j, start) on the first half and fma(-step, n-1-j, end) on the second, step = (end - start) / (n - 1).
inline DynamicMap build_dynamic_map(bool is_signed) {
  static const float decade[7] = {1e-6f, 1e-5f, 1e-4f, 1e-3f, 1e-2f, 1e-1f, 1.0f};
  DynamicMap q{};
  int n = 0;
  for (int i = 0; i < 7; i++) {
    const int k = is_signed ? 1 << i : 1 << (i + 1);  // fractions in this decade
    const float start = 0.1f, end = 1.0f, step = (end - start) / (float)k;
    float b[129];
    for (int j = 0; j <= k; j++)
      b[j] = j < (k + 1) / 2 ? std::fma(step, (float)j, start) : std::fma(-step, (float)(k - j), end);
    for (int j = 0; j < k; j++) {
      const float mean = (b[j] + b[j + 1]) / 2.0f;
      q.code[n++] = decade[i] * mean;
      if (is_signed) q.code[n++] = -(decade[i] * mean);
    }
  }
  q.code[n++] = 0.0f;
  q.code[n++] = 1.0f;
  std::sort(q.code, q.code + 256);
  for (int j = 0; j < 255; j++) q.mid[j] = (q.code[j] + q.code[j + 1]) * 0.5f;
  return q;
}

inline const DynamicMap& dynamic_map(bool is_signed) {
  static const DynamicMap s = build_dynamic_map(true), u = build_dynamic_map(false);
  return is_signed ? s : u;
}

// The nearest code to x (already divided by its block's absmax): the count of midpoints below x, so a value
// exactly on a midpoint takes the lower code (torch.bucketize(right=False) over the midpoints).
inline uint8_t quantize_code(const DynamicMap& q, float x) {
  return (uint8_t)(std::lower_bound(q.mid, q.mid + 255, x) - q.mid);
}

// codes (n), absmax (ceil(n / 256)): each block of 256 divided by its largest |x| and rounded to the map.
// An all-zero block gets absmax 0 and the code of 0.
inline void quantize_blockwise(const float* x, int64_t n, const DynamicMap& q, uint8_t* codes, float* absmax) {
  const int64_t nb = (n + kQBlock - 1) / kQBlock;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < nb; b++) {
    const int64_t i0 = b * kQBlock, i1 = std::min(n, i0 + kQBlock);
    float a = 0;
    for (int64_t i = i0; i < i1; i++) a = std::max(a, std::fabs(x[i]));
    absmax[b] = a;
    for (int64_t i = i0; i < i1; i++) codes[i] = quantize_code(q, a > 0 ? x[i] / a : 0.0f);
  }
}

inline void dequantize_blockwise(const uint8_t* codes, const float* absmax, int64_t n, const DynamicMap& q, float* out) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) out[i] = q.code[codes[i]] * absmax[i / kQBlock];
}

// The step-wide constants of torch.optim.AdamW at (1-based) step t.
struct AdamWStep {
  float lr, beta1, beta2, eps, keep;  // keep = 1 - lr * weight_decay (1 for tensors without decay)
  float step_size, bc2_sqrt;          // lr / (1 - beta1^t), sqrt(1 - beta2^t)
  AdamWStep(int64_t t, float lr_, float b1, float b2, float eps_, float wd)
      : lr(lr_), beta1(b1), beta2(b2), eps(eps_), keep(1.0f - lr_ * wd) {
    step_size = lr / (1.0f - (float)std::pow((double)b1, (double)t));
    bc2_sqrt = std::sqrt(1.0f - (float)std::pow((double)b2, (double)t));
  }
  // One element: p *= keep; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= step_size m / (sqrt(v)/bc2 + eps).
  inline void apply(float& p, float g, float& m, float& v) const {
    p *= keep;
    m = beta1 * m + (1.0f - beta1) * g;
    v = beta2 * v + (1.0f - beta2) * g * g;
    p -= step_size * m / (std::sqrt(v) / bc2_sqrt + eps);
  }
};

// torch.optim.AdamW (single-tensor path) over n elements with fp32 moments.
inline void adamw_tensor(float* p, const float* g, float* exp_avg, float* exp_avg_sq, int64_t n, const AdamWStep& s) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) s.apply(p[i], g[i], exp_avg[i], exp_avg_sq[i]);
}

// The same update with 8-bit moments: state1 (n) codes of exp_avg in the signed map, state2 (n) codes of
// exp_avg_sq in the unsigned map, absmax1/absmax2 (ceil(n / 256)) their block scales (all 0 before the first
// step, which dequantizes to exactly 0). Per block: dequantize, update in fp32 (the weight steps with these
// fp32 moments), then requantize each moment against its new block absmax.
inline void adamw8bit_tensor(float* p, const float* g, uint8_t* state1, uint8_t* state2, float* absmax1, float* absmax2,
                             int64_t n, const AdamWStep& s) {
  const DynamicMap& q1 = dynamic_map(true);
  const DynamicMap& q2 = dynamic_map(false);
  const int64_t nb = (n + kQBlock - 1) / kQBlock;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < nb; b++) {
    const int64_t i0 = b * kQBlock, len = std::min<int64_t>(kQBlock, n - i0);
    float m[kQBlock], v[kQBlock];
    const float a1 = absmax1[b], a2 = absmax2[b];
    float top1 = 0, top2 = 0;
    for (int64_t j = 0; j < len; j++) {
      const int64_t i = i0 + j;
      m[j] = q1.code[state1[i]] * a1;
      v[j] = q2.code[state2[i]] * a2;
      s.apply(p[i], g[i], m[j], v[j]);
      top1 = std::max(top1, std::fabs(m[j]));
      top2 = std::max(top2, v[j]);
    }
    absmax1[b] = top1;
    absmax2[b] = top2;
    for (int64_t j = 0; j < len; j++) {
      state1[i0 + j] = quantize_code(q1, top1 > 0 ? m[j] / top1 : 0.0f);
      state2[i0 + j] = quantize_code(q2, top2 > 0 ? v[j] / top2 : 0.0f);
    }
  }
}

}  // namespace pt
