// Shared plumbing for the op files: a typed GEMM over CBLAS (float -> sgemm, double -> dgemm, so every
// op template runs in fp32 for training and in fp64 for finite-difference checks) and aligned buffers.
// No math of the model here.
#pragma once
#include <cblas.h>
#include <immintrin.h>
#include <omp.h>
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include "preftune.h"

namespace pt {

// Sets the message pt_last_error returns (decoder.cpp owns it) and returns s.
pt_status set_error(pt_status s, const std::string& msg);
// Called by pt_backward on the calling thread when layer l's gradients (the model's or the adapter's) are final
// for this backward, layers in the order L-1 … 0 (mpi.cpp: starts their all-reduce while the backward goes on).
void layer_grads_ready(int layer);

// C (M, N) = alpha * op(A) (M, K) * op(B) (K, N) + beta * C, row-major with leading dimensions.
#ifdef __AVX512F__
// Horizontal sum of 16 floats, once per dot product (GCC 12's own reduce and cast intrinsics warn from its headers).
inline float hsum(__m512 v) {
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  float a = 0;
  for (float x : t) a += x;
  return a;
}
#endif

// How the few-row kernels read B: LoadF32 as it is; bf16.cpp's LoadBf16 widens bf16 weights in registers.
struct LoadF32 {
  using T = float;
#ifdef __AVX512F__
  static __m512 vec(const float* p) { return _mm512_loadu_ps(p); }
#endif
  static float one(float x) { return x; }
};

// r[i][j] = A_i . B_j for MR rows of A (lda apart) and 4 rows of B (ldb apart, read through Load), K long.
// MR x 4 accumulators: each loaded vector of A or B feeds several FMAs, so the loop is bound by FMA, not by loads.
// The sum of every (i, j) takes the same order whatever MR is, so a row gets the same bits in any block.
template <int MR, class Load>
inline void dot_block(float r[][4], const float* a, int lda, const typename Load::T* B, int ldb, int K) {
  int k = 0;
#ifdef __AVX512F__
  __m512 s[MR][4];
  for (auto& row : s) for (auto& v : row) v = _mm512_setzero_ps();
  for (; k + 16 <= K; k += 16) {
    __m512 b[4];
    for (int j = 0; j < 4; j++) {
      _mm_prefetch((const char*)(B + (size_t)(j + 4) * ldb + k), _MM_HINT_T0);  // the next 4 rows of B
      b[j] = Load::vec(B + (size_t)j * ldb + k);
    }
    for (int i = 0; i < MR; i++) {
      const __m512 x = _mm512_loadu_ps(a + (size_t)i * lda + k);
      for (int j = 0; j < 4; j++) s[i][j] = _mm512_fmadd_ps(b[j], x, s[i][j]);
    }
  }
  for (int i = 0; i < MR; i++) for (int j = 0; j < 4; j++) r[i][j] = hsum(s[i][j]);
#else
  for (int i = 0; i < MR; i++) for (int j = 0; j < 4; j++) r[i][j] = 0;
#endif
  for (; k < K; k++)
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < 4; j++) r[i][j] += a[(size_t)i * lda + k] * Load::one(B[(size_t)j * ldb + k]);
}

// C (M, N) = alpha A (M, K) B^T + beta C for a few rows of A (decoding: one row per live sequence) with B (N, K)
// a weight matrix (fp32, or bf16 through LoadBf16): every row of B is read from memory once and dotted with each
// row of A while it sits in L1. Decoding is bound by that one pass over the weights; BLAS GEMM packs B first (a
// second pass and a write) and its GEMV threads poorly on the largest matrix (the LM head), measured 3-6x slower
// here. Inside a parallel region (attention per head) it runs on the calling thread.
template <class Load>
inline void gemm_few_rows_t(int M, int N, int K, float alpha, const float* A, int lda, const typename Load::T* B,
                            int ldb, float beta, float* C, int ldc) {
  auto rows = [&](int n0, int n1) {
    auto put = [&](int m, int n, float v) {
      float* c = C + (size_t)m * ldc + n;
      *c = alpha * v + (beta == 0.0f ? 0.0f : beta * *c);
    };
    int n = n0;
    for (; n + 4 <= n1; n += 4)
      for (int m = 0; m < M; m += 4) {
        const float* a = A + (size_t)m * lda;
        const typename Load::T* b = B + (size_t)n * ldb;
        float r[4][4];
        const int mr = std::min(4, M - m);
        switch (mr) {
          case 4: dot_block<4, Load>(r, a, lda, b, ldb, K); break;
          case 3: dot_block<3, Load>(r, a, lda, b, ldb, K); break;
          case 2: dot_block<2, Load>(r, a, lda, b, ldb, K); break;
          default: dot_block<1, Load>(r, a, lda, b, ldb, K);
        }
        for (int i = 0; i < mr; i++) for (int j = 0; j < 4; j++) put(m + i, n + j, r[i][j]);
      }
    for (; n < n1; n++)
      for (int m = 0; m < M; m++) {
        const float* a = A + (size_t)m * lda;
        const typename Load::T* b = B + (size_t)n * ldb;
        float r = 0;
        for (int k = 0; k < K; k++) r += a[k] * Load::one(b[k]);
        put(m, n, r);
      }
  };
  if (omp_in_parallel() || (size_t)N * K < 32768) { rows(0, N); return; }
#pragma omp parallel
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int per = ((N + nt - 1) / nt + 3) / 4 * 4;  // blocks of 4 rows
    const int n0 = std::min(N, t * per), n1 = std::min(N, n0 + per);
    if (n1 > n0) rows(n0, n1);
  }
}
inline void gemm_few_rows(int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb, float beta,
                          float* C, int ldc) {
  gemm_few_rows_t<LoadF32>(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
constexpr int kFewRows = 8;

inline void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                 const float* B, int ldb, float beta, float* C, int ldc) {
  if (!ta && tb && M <= kFewRows) return gemm_few_rows(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  if (M == 1 && !ta) {  // C (1, N) = a (1, K) B (K, N): GEMV, one streaming pass over B
    cblas_sgemv(CblasRowMajor, CblasTrans, K, N, alpha, B, ldb, A, 1, beta, C, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K,
              alpha, A, lda, B, ldb, beta, C, ldc);
}
inline void gemm(bool ta, bool tb, int M, int N, int K, double alpha, const double* A, int lda,
                 const double* B, int ldb, double beta, double* C, int ldc) {
  if (M == 1 && !ta) {
    if (tb) cblas_dgemv(CblasRowMajor, CblasNoTrans, N, K, alpha, B, ldb, A, 1, beta, C, 1);
    else cblas_dgemv(CblasRowMajor, CblasTrans, K, N, alpha, B, ldb, A, 1, beta, C, 1);
    return;
  }
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K,
              alpha, A, lda, B, ldb, beta, C, ldc);
}

// A growable 64-byte aligned array that never initialises (activations are always written first).
template <typename T>
struct Buf {
  T* p = nullptr;
  size_t cap = 0;
  Buf() = default;
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  ~Buf() { std::free(p); }
  T* need(size_t n) {
    if (n > cap) {
      std::free(p);
      size_t bytes = ((n * sizeof(T) + 63) / 64) * 64;
      p = static_cast<T*>(std::aligned_alloc(64, bytes));
      if (!p) { cap = 0; throw std::bad_alloc(); }
      cap = n;
    }
    return p;
  }
  void release() { std::free(p); p = nullptr; cap = 0; }
};

}  // namespace pt
