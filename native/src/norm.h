// RMSNorm and LayerNorm, forward and backward, in fp32. RMSNorm: HF LlamaRMSNorm y = w * x / sqrt(mean(x^2) + eps),
// or Gemma's y = (1 + w) * x / sqrt(...) with off = 1. LayerNorm (torch.nn.LayerNorm with a bias):
// y = w * (x - mean) / sqrt(var + eps) + b, the biased variance. Both keep one rstd per row for the backward (the
// LayerNorm backward recomputes the row mean from x). Rows may be strided: row r = (n, h) starts at x + n * ld + h * D, which covers both the hidden
// states (H = 1, ld = D) and Qwen3's per-head q/k norms (H heads inside a token row of width ld).
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>
#include <omp.h>

namespace pt {

// y, x (N, ld) with H rows of width D per token; w (D); rstd (N * H) saved for backward.
template <typename T>
void rmsnorm_forward(T* y, T* rstd, const T* x, const T* w, int64_t N, int H, int D, int64_t ld, T eps, T off = 0) {
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
      for (int i = 0; i < D; i++) yr[i] = (off + w[i]) * (xr[i] * r);
    }
  }
}

// dx (=, or += when accumulate) and dw (+=) from dy; x and rstd as saved by the forward. dx may be dy.
// dx = rstd * (dy*w - x * rstd^2 * mean(dy*w*x)),  dw += sum_rows dy * x * rstd
template <typename T>
void rmsnorm_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, const T* rstd, int64_t N, int H,
                      int D, int64_t ld, bool accumulate, T off = 0) {
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
        for (int i = 0; i < D; i++) dot += dyr[i] * (off + w[i]) * xr[i];
        T c = dot / (T)D * r * r;
#pragma omp simd
        for (int i = 0; i < D; i++) {
          const T dyi = dyr[i];  // read before dx is written: dx may alias dy (in-place q/k norms)
          dwp[i] += dyi * xr[i] * r;
          T g = r * (dyi * (off + w[i]) - xr[i] * c);
          dxr[i] = accumulate ? dxr[i] + g : g;
        }
      }
    }
  }
  for (int t = 0; t < nt; t++)
    for (int i = 0; i < D; i++) dw[i] += (T)dw_part[(size_t)t * D + i];
}

// LayerNorm over rows of width D (strided as above); w, b (D).
template <typename T>
void layernorm_forward(T* y, T* rstd, const T* x, const T* w, const T* b, int64_t N, int H, int D, int64_t ld, T eps) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    for (int h = 0; h < H; h++) {
      const T* xr = x + n * ld + (int64_t)h * D;
      T* yr = y + n * ld + (int64_t)h * D;
      T s = 0;
#pragma omp simd reduction(+ : s)
      for (int i = 0; i < D; i++) s += xr[i];
      const T mean = s / (T)D;
      T ss = 0;
#pragma omp simd reduction(+ : ss)
      for (int i = 0; i < D; i++) ss += (xr[i] - mean) * (xr[i] - mean);
      const T r = (T)(1.0 / std::sqrt((double)ss / D + (double)eps));
      rstd[n * H + h] = r;
      for (int i = 0; i < D; i++) yr[i] = (xr[i] - mean) * r * w[i] + b[i];
    }
  }
}

// dx (=, or += when accumulate), dw and db (+=) from dy; xh = (x - mean) rstd, g = dy w:
// dx = rstd * (g - mean(g) - xh * mean(g xh)),  dw += sum_rows dy xh,  db += sum_rows dy. dx may be dy.
template <typename T>
void layernorm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* rstd, int64_t N, int H,
                        int D, int64_t ld, bool accumulate) {
  int nt = omp_get_max_threads();
  std::vector<T> part((size_t)nt * 2 * D, (T)0);
#pragma omp parallel
  {
    T* dwp = part.data() + (size_t)omp_get_thread_num() * 2 * D;
    T* dbp = dwp + D;
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; n++) {
      for (int h = 0; h < H; h++) {
        int64_t o = n * ld + (int64_t)h * D;
        const T *xr = x + o, *dyr = dy + o;
        T* dxr = dx + o;
        const T r = rstd[n * H + h];
        T s = 0;
#pragma omp simd reduction(+ : s)
        for (int i = 0; i < D; i++) s += xr[i];
        const T mean = s / (T)D;
        T sg = 0, sgx = 0;
#pragma omp simd reduction(+ : sg, sgx)
        for (int i = 0; i < D; i++) {
          const T g = dyr[i] * w[i];
          sg += g;
          sgx += g * (xr[i] - mean) * r;
        }
        sg /= (T)D;
        sgx /= (T)D;
        for (int i = 0; i < D; i++) {
          const T dyi = dyr[i], xh = (xr[i] - mean) * r;  // read before dx is written: dx may alias dy
          dwp[i] += dyi * xh;
          dbp[i] += dyi;
          const T gi = r * (dyi * w[i] - sg - xh * sgx);
          dxr[i] = accumulate ? dxr[i] + gi : gi;
        }
      }
    }
  }
  for (int t = 0; t < nt; t++)
    for (int i = 0; i < D; i++) {
      dw[i] += part[(size_t)t * 2 * D + i];
      db[i] += part[(size_t)t * 2 * D + D + i];
    }
}

// The norm a config asks for (pt_config.norm_type, norm_unit_offset), forward and backward: one call site each.
template <typename T>
struct Norm {
  bool layer = false;  // LayerNorm with a bias (else RMSNorm)
  T eps = 0, off = 0;  // off: RMSNorm's weight offset (Gemma 1)
  void forward(T* y, T* rstd, const T* x, const T* w, const T* b, int64_t N, int H, int D, int64_t ld) const {
    if (layer) layernorm_forward(y, rstd, x, w, b, N, H, D, ld, eps);
    else rmsnorm_forward(y, rstd, x, w, N, H, D, ld, eps, off);
  }
  void backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* rstd, int64_t N, int H, int D,
                int64_t ld, bool accumulate) const {
    if (layer) layernorm_backward(dx, dw, db, dy, x, w, rstd, N, H, D, ld, accumulate);
    else rmsnorm_backward(dx, dw, dy, x, w, rstd, N, H, D, ld, accumulate, off);
  }
};

}  // namespace pt
