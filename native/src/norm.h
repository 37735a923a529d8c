// RMSNorm, forward and backward (HF LlamaRMSNorm: y = w * x / sqrt(mean(x^2) + eps), in fp32).
// Rows may be strided: row r = (n, h) starts at x + n * ld + h * D, which covers both the hidden
// states (H = 1, ld = D) and Qwen3's per-head q/k norms (H heads inside a token row of width ld).
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>
#include <omp.h>

namespace pt {

// y, x (N, ld) with H rows of width D per token; w (D); rstd (N * H) saved for backward.
template <typename T>
void rmsnorm_forward(T* y, T* rstd, const T* x, const T* w, int64_t N, int H, int D, int64_t ld, T eps) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    for (int h = 0; h < H; h++) {
      const T* xr = x + n * ld + (int64_t)h * D;
      T* yr = y + n * ld + (int64_t)h * D;
      T ss = 0;
#pragma omp simd reduction(+ : ss)
      for (int i = 0; i < D; i++) ss += xr[i] * xr[i];
      T r = (T)(1.0 / std::sqrt((double)ss / D + (double)eps));
      rstd[n * H + h] = r;
      for (int i = 0; i < D; i++) yr[i] = w[i] * (xr[i] * r);
    }
  }
}

// dx (=, or += when accumulate) and dw (+=) from dy; x and rstd as saved by the forward. dx may be dy.
// dx = rstd * (dy*w - x * rstd^2 * mean(dy*w*x)),  dw += sum_rows dy * x * rstd
template <typename T>
void rmsnorm_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, const T* rstd, int64_t N, int H,
                      int D, int64_t ld, bool accumulate) {
  int nt = omp_get_max_threads();
  std::vector<T> dw_part((size_t)nt * D, (T)0);
#pragma omp parallel
  {
    T* dwp = dw_part.data() + (size_t)omp_get_thread_num() * D;
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; n++) {
      for (int h = 0; h < H; h++) {
        int64_t o = n * ld + (int64_t)h * D;
        const T *xr = x + o, *dyr = dy + o;
        T* dxr = dx + o;
        T r = rstd[n * H + h];
        T dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int i = 0; i < D; i++) dot += dyr[i] * w[i] * xr[i];
        T c = dot / (T)D * r * r;
#pragma omp simd
        for (int i = 0; i < D; i++) {
          const T dyi = dyr[i];  // read before dx is written: dx may alias dy (in-place q/k norms)
          dwp[i] += dyi * xr[i] * r;
          T g = r * (dyi * w[i] - xr[i] * c);
          dxr[i] = accumulate ? dxr[i] + g : g;
        }
      }
    }
  }
  for (int t = 0; t < nt; t++)
    for (int i = 0; i < D; i++) dw[i] += (T)dw_part[(size_t)t * D + i];
}

}  // namespace pt
