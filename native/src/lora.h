// LoRA (PEFT's low-rank adapters) on the decoder's linear layers, forward and backward:
//   y = x W^T (+b) + s * (x A^T) B^T,   A (r, in), B (out, r), s = lora_alpha / r (or / sqrt(r), rsLoRA).
// A group is one base GEMM whose output columns hold several projections side by side (q|k|v, gate|up):
// the members' A matrices lie back to back and run as one GEMM; B is block-diagonal, one GEMM per member.
// Also the frozen-base backward pieces (input gradient only, no weight gradient) that LoRA training uses.
// Not here: the adapter's parameter table and ownership (decoder.cpp), its initialisation (TypeScript), LoRA
// dropout and DoRA (dora.h, one member at a time).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>
#include <omp.h>
#include "common.h"
#include "head.h"
#include "mathx.h"

namespace pt {

// Views of one adapted group, into the adapter's parameter buffer (A, B) and gradient buffer (dA, dB).
template <typename T>
struct LoraGroup {
  int members = 0;           // 0: this group carries no adapter
  int in = 0, r = 0;
  int col[3] = {0, 0, 0};    // member j writes output columns [col[j], col[j] + out[j])
  int out[3] = {0, 0, 0};
  const T* A = nullptr;      // (members * r, in): the members' A matrices stacked
  const T* B[3] = {nullptr, nullptr, nullptr};  // (out[j], r)
  T* dA = nullptr;           // like A
  T* dB[3] = {nullptr, nullptr, nullptr};       // like B
  // DoRA (dora.h): per member the magnitude m (out[j]), its gradient, and the row norms n (out[j]) of the last
  // forward. All null for plain LoRA.
  const T* mag[3] = {nullptr, nullptr, nullptr};
  T* dmag[3] = {nullptr, nullptr, nullptr};
  T* norm[3] = {nullptr, nullptr, nullptr};
};

// The adapter GEMMs are skinny (one side is r or a few r). Threaded inside the BLAS they spend most of their
// time synchronising (measured 5-15x slower than one thread on 2 busy cores). Instead each op is one OpenMP
// region in which every thread makes single-threaded BLAS calls (OpenBLAS runs single-threaded inside a
// parallel region) on its own block of tokens, or of output rows/columns for the token reductions.
inline void thread_block(int len, int& a, int& b) {
  const int nt = omp_get_num_threads(), per = (len + nt - 1) / nt;
  a = std::min(len, omp_get_thread_num() * per);
  b = std::min(len, a + per);
}

// C (M, N) = alpha op(A) op(B) + beta C with the longer side of C cut into one block per thread.
template <typename T>
void gemm_split(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb, T beta,
                T* C, int ldc) {
  const bool rows = M >= N;
#pragma omp parallel
  {
    int a, b;
    thread_block(rows ? M : N, a, b);
    if (b > a && rows)
      gemm(ta, tb, b - a, N, K, alpha, ta ? A + a : A + (size_t)a * lda, lda, B, ldb, beta, C + (size_t)a * ldc, ldc);
    else if (b > a)
      gemm(ta, tb, M, b - a, K, alpha, A, lda, tb ? B + (size_t)a * ldb : B + a, ldb, beta, C + a, ldc);
  }
}

// u (N, m*r) = x A^T, kept for the backward;  y (N, ldy) columns of member j += s * u_j B_j^T.
// x (N, in) contiguous. The base GEMM has already written y. Rows of u and y depend on the same rows of x
// only, so each thread runs both steps on its tokens with no barrier.
template <typename T>
void lora_forward(T* y, int ldy, T* u, const T* x, const LoraGroup<T>& g, int N, T s) {
  const int R = g.members * g.r;
#pragma omp parallel
  {
    int a, b;
    thread_block(N, a, b);
    if (b > a) {
      gemm(false, true, b - a, R, g.in, (T)1, x + (size_t)a * g.in, g.in, g.A, g.in, (T)0, u + (size_t)a * R, R);
      for (int j = 0; j < g.members; j++)
        gemm(false, true, b - a, g.out[j], g.r, s, u + (size_t)a * R + j * g.r, R, g.B[j], g.r, (T)1,
             y + (size_t)a * ldy + g.col[j], ldy);
    }
  }
}

// From dy (N, ldy):  du_j = s dy_j B_j;  dx (N, in) += du A;  dB_j += s dy_j^T u_j;  dA += du^T x.
// du: (N, m*r) scratch. dx must already hold the base path's input gradient. du and dx by tokens, dB by its
// rows, then (after the one barrier: dA needs all of du) dA by its columns.
template <typename T>
void lora_backward(T* dx, T* du, const T* dy, int ldy, const T* x, const T* u, const LoraGroup<T>& g, int N, T s) {
  const int R = g.members * g.r;
#pragma omp parallel
  {
    int a, b;
    thread_block(N, a, b);
    if (b > a) {
      for (int j = 0; j < g.members; j++)
        gemm(false, false, b - a, g.r, g.out[j], s, dy + (size_t)a * ldy + g.col[j], ldy, g.B[j], g.r, (T)0,
             du + (size_t)a * R + j * g.r, R);
      gemm(false, false, b - a, g.in, R, (T)1, du + (size_t)a * R, R, g.A, g.in, (T)1, dx + (size_t)a * g.in, g.in);
    }
    for (int j = 0; j < g.members; j++) {
      thread_block(g.out[j], a, b);
      if (b > a)
        gemm(true, false, b - a, g.r, N, s, dy + g.col[j] + a, ldy, u + j * g.r, R, (T)1, g.dB[j] + (size_t)a * g.r,
             g.r);
    }
#pragma omp barrier
    thread_block(g.in, a, b);
    if (b > a) gemm(true, false, R, b - a, N, (T)1, du, R, x + a, g.in, (T)1, g.dA + a, g.in);
  }
}

// W (out, in) += s * B_j A_j for every member: the adapter folded into the stacked base matrix of the group.
template <typename T>
void lora_merge(T* W, const LoraGroup<T>& g, T s) {
  for (int j = 0; j < g.members; j++)
    gemm_split(false, false, g.out[j], g.in, g.r, s, g.B[j], g.r, g.A + (size_t)j * g.r * g.in, g.in, (T)1,
               W + (size_t)g.col[j] * g.in, g.in);
}

}  // namespace pt
