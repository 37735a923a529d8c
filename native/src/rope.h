// Rotary position embedding, forward and backward, in Hugging Face's rotate_half convention:
// out[i] = x[i] cos - x[i + HS/2] sin,  out[i + HS/2] = x[i + HS/2] cos + x[i] sin  (i < HS/2),
// with angle pos * theta^(-2i/HS). Applied in place to H heads of width HS inside rows of width ld.
// The backward is the transpose (rotation by -angle).
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

namespace pt {

// Tables (maxT, HS/2), computed in fp32 the way transformers does (inv_freq and pos * inv_freq in fp32).
template <typename T>
void rope_tables(std::vector<T>& cosv, std::vector<T>& sinv, int maxT, int HS, float theta) {
  int half = HS / 2;
  cosv.resize((size_t)maxT * half);
  sinv.resize((size_t)maxT * half);
  for (int i = 0; i < half; i++) {
    float inv = 1.0f / std::pow(theta, (float)(2 * i) / (float)HS);
    for (int p = 0; p < maxT; p++) {
      float a = (float)p * inv;
      cosv[(size_t)p * half + i] = (T)std::cos(a);
      sinv[(size_t)p * half + i] = (T)std::sin(a);
    }
  }
}

// x (N, ld): H heads of width HS starting at column col0. pos (N) position of each token.
template <typename T>
void rope_apply(T* x, const int32_t* pos, const T* cosv, const T* sinv, int64_t N, int col0, int H, int HS,
                int64_t ld, bool inverse) {
  int half = HS / 2;
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
                  int64_t ld) {
  rope_apply(x, pos, cosv, sinv, N, col0, H, HS, ld, false);
}
template <typename T>
void rope_backward(T* dx, const int32_t* pos, const T* cosv, const T* sinv, int64_t N, int col0, int H,
                   int HS, int64_t ld) {
  rope_apply(dx, pos, cosv, sinv, N, col0, H, HS, ld, true);
}

}  // namespace pt
