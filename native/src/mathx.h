// Elementwise math for the hot loops: an exp that GCC vectorises (own Taylor polynomial after range
// reduction; ~1 ulp in fp32), and std::exp for fp64 so the fp64 gradient checks stay exact.
// Not a general math library.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace pt {

inline float fast_exp(float x) {
  x = x < -87.0f ? -87.0f : x;  // clamps compile to vmaxps/vminps (with -fno-trapping-math),
  x = x > 88.0f ? 88.0f : x;    // so loops calling this vectorise
  const float kRound = 12582912.0f;                       // 1.5 * 2^23: adding it rounds to an integer
  float n = (x * 1.44269504088896341f + kRound) - kRound;  // n = round(x / ln2)
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;     // x - n ln2, ln2 split into two parts
  // e^r = sum_k r^k / k! for k <= 7; |r| <= ln2 / 2 keeps the tail below 1e-8 relative.
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;    // 2^n
  return p * __builtin_bit_cast(float, bits);
}

inline float texp(float x) { return fast_exp(x); }
inline double texp(double x) { return std::exp(x); }

inline float sigmoidf_(float x) { return 1.0f / (1.0f + fast_exp(-x)); }
inline double sigmoidf_(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace pt
