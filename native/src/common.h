// Shared plumbing for the op files: a typed GEMM over CBLAS (float -> sgemm, double -> dgemm, so every
// op template runs in fp32 for training and in fp64 for finite-difference checks) and aligned buffers.
// No math of the model here.
#pragma once
#include <cblas.h>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

namespace pt {

// C (M, N) = alpha * op(A) (M, K) * op(B) (K, N) + beta * C, row-major with leading dimensions.
// One output row (M = 1, a decoding step at batch 1) goes to GEMV: a single streaming pass over B, which is
// what bounds decoding by memory bandwidth; the GEMM kernels pack B first and run several times slower there.
inline void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                 const float* B, int ldb, float beta, float* C, int ldc) {
  if (M == 1 && !ta) {  // C (1, N) = alpha * a (1, K) op(B) + beta * C
    if (tb) cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, alpha, B, ldb, A, 1, beta, C, 1);  // B (N, K)
    else cblas_sgemv(CblasRowMajor, CblasTrans, K, N, alpha, B, ldb, A, 1, beta, C, 1);       // B (K, N)
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
