// Elementwise math for the hot loops: an exp that GCC vectorises (own Taylor polynomial after range
// reduction; ~1 ulp in fp32), and tanh and erf built on it (within 2e-7 absolute in fp32); std:: functions for
// fp64 so the fp64 gradient checks stay exact. Not a general math library.
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

// tanh(x) = 1 - 2 / (e^(2x) + 1): exact at the ends (fast_exp clamps), within 2e-7 absolute around 0.
inline float ttanh(float x) { return 1.0f - 2.0f / (fast_exp(2.0f * x) + 1.0f); }
inline double ttanh(double x) { return std::tanh(x); }

// erf from erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z / 2) (Numerical Recipes' erfcc: relative error below
// 1.2e-7 everywhere), so erf within 2e-7 absolute.
inline float terf(float x) {
  const float z = x < 0 ? -x : x;
  const float t = 1.0f / (1.0f + 0.5f * z);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  const float e = 1.0f - t * fast_exp(p - z * z);
  return x < 0 ? -e : e;
}
inline double terf(double x) { return std::erf(x); }

}  // namespace pt
