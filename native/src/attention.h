// Causal self-attention with grouped KV heads over packed variable-length sequences, forward and
// backward. The forward keeps only the log-sum-exp of each score row; the backward recomputes the
// probabilities from it block by block (flash-attention style), so no T x T matrix is ever stored.
// Score and value products are BLAS GEMMs on row blocks of 128 queries against the causal key prefix.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include "common.h"
#include "mathx.h"

namespace pt {

struct SeqSpan {
  int64_t start;  // first packed row of the sequence
  int len;        // its tokens
};

constexpr int kAttnBlock = 128;

// Per-thread scratch of at least n elements.
template <typename T>
T* attn_scratch(int slot, size_t n) {
  thread_local Buf<T> bufs[3];
  return bufs[slot].need(n);
}

// qkv (N, QKV) after RoPE: q heads at [0, NH*HS), k at [NH*HS, (NH+NKV)*HS), v after that.
// out (N, NH*HS); lse (N, NH).
template <typename T>
void attention_forward(T* out, T* lse, const T* qkv, const SeqSpan* seqs, int B, int NH, int NKV, int HS) {
  const int64_t ld = (int64_t)(NH + 2 * NKV) * HS, ldo = (int64_t)NH * HS;
  const int group = NH / NKV;
  const T scale = (T)(1.0 / std::sqrt((double)HS));
#pragma omp parallel for schedule(dynamic, 1) collapse(2)
  for (int b = 0; b < B; b++) {
    for (int h = 0; h < NH; h++) {
      const int len = seqs[b].len;
      if (len == 0) continue;
      const int64_t s0 = seqs[b].start;
      const int g = h / group;
      const T* Q = qkv + s0 * ld + (int64_t)h * HS;
      const T* K = qkv + s0 * ld + (int64_t)(NH + g) * HS;
      const T* Vv = qkv + s0 * ld + (int64_t)(NH + NKV + g) * HS;
      T* O = out + s0 * ldo + (int64_t)h * HS;
      T* S = attn_scratch<T>(0, (size_t)kAttnBlock * len);
      for (int r0 = 0; r0 < len; r0 += kAttnBlock) {
        const int r1 = r0 + kAttnBlock < len ? r0 + kAttnBlock : len, br = r1 - r0;
        gemm(false, true, br, r1, HS, scale, Q + r0 * ld, (int)ld, K, (int)ld, (T)0, S, r1);  // (br, r1)
        for (int i = 0; i < br; i++) {
          T* s = S + (int64_t)i * r1;
          const int nv = r0 + i + 1;  // keys 0..r0+i are visible
          T m = s[0];
#pragma omp simd reduction(max : m)
          for (int j = 1; j < nv; j++) m = s[j] > m ? s[j] : m;
          T sum = 0;
#pragma omp simd reduction(+ : sum)
          for (int j = 0; j < nv; j++) { s[j] = texp(s[j] - m); sum += s[j]; }
          const T inv = (T)1 / sum;
#pragma omp simd
          for (int j = 0; j < nv; j++) s[j] *= inv;
          for (int j = nv; j < r1; j++) s[j] = 0;
          lse[(s0 + r0 + i) * NH + h] = m + std::log(sum);
        }
        gemm(false, false, br, HS, r1, (T)1, S, r1, Vv, (int)ld, (T)0, O + r0 * ldo, (int)ldo);  // (br, HS)
      }
    }
  }
}

// dqkv (N, QKV) is written (not accumulated) from dout (N, NH*HS), the forward's out and lse, and qkv.
template <typename T>
void attention_backward(T* dqkv, const T* dout, const T* out, const T* lse, const T* qkv, const SeqSpan* seqs,
                        int B, int NH, int NKV, int HS) {
  const int64_t ld = (int64_t)(NH + 2 * NKV) * HS, ldo = (int64_t)NH * HS;
  const int group = NH / NKV;
  const T scale = (T)(1.0 / std::sqrt((double)HS));
  // KV heads shared by a group accumulate dK, dV from all its query heads, so one task per (b, kv head).
#pragma omp parallel for schedule(dynamic, 1) collapse(2)
  for (int b = 0; b < B; b++) {
    for (int g = 0; g < NKV; g++) {
      const int len = seqs[b].len;
      if (len == 0) continue;
      const int64_t s0 = seqs[b].start;
      const T* K = qkv + s0 * ld + (int64_t)(NH + g) * HS;
      const T* Vv = qkv + s0 * ld + (int64_t)(NH + NKV + g) * HS;
      T* dK = dqkv + s0 * ld + (int64_t)(NH + g) * HS;
      T* dV = dqkv + s0 * ld + (int64_t)(NH + NKV + g) * HS;
      for (int t = 0; t < len; t++)
        for (int d = 0; d < HS; d++) { dK[t * ld + d] = 0; dV[t * ld + d] = 0; }
      T* P = attn_scratch<T>(0, (size_t)kAttnBlock * len);
      T* dS = attn_scratch<T>(1, (size_t)kAttnBlock * len);
      T* Dr = attn_scratch<T>(2, kAttnBlock);
      for (int h = g * group; h < (g + 1) * group; h++) {
        const T* Q = qkv + s0 * ld + (int64_t)h * HS;
        const T* O = out + s0 * ldo + (int64_t)h * HS;
        const T* dO = dout + s0 * ldo + (int64_t)h * HS;
        T* dQ = dqkv + s0 * ld + (int64_t)h * HS;
        for (int r0 = 0; r0 < len; r0 += kAttnBlock) {
          const int r1 = r0 + kAttnBlock < len ? r0 + kAttnBlock : len, br = r1 - r0;
          gemm(false, true, br, r1, HS, scale, Q + r0 * ld, (int)ld, K, (int)ld, (T)0, P, r1);    // scores
          gemm(false, true, br, r1, HS, (T)1, dO + r0 * ldo, (int)ldo, Vv, (int)ld, (T)0, dS, r1);  // dP
          for (int i = 0; i < br; i++) {
            const T* o = O + (r0 + i) * ldo;
            const T* dor = dO + (r0 + i) * ldo;
            T dsum = 0;
#pragma omp simd reduction(+ : dsum)
            for (int d = 0; d < HS; d++) dsum += o[d] * dor[d];
            Dr[i] = dsum;
          }
          for (int i = 0; i < br; i++) {
            T* p = P + (int64_t)i * r1;
            T* ds = dS + (int64_t)i * r1;
            const int nv = r0 + i + 1;
            const T l = lse[(s0 + r0 + i) * NH + h];
#pragma omp simd
            for (int j = 0; j < nv; j++) {
              p[j] = texp(p[j] - l);
              ds[j] = p[j] * (ds[j] - Dr[i]);
            }
            for (int j = nv; j < r1; j++) { p[j] = 0; ds[j] = 0; }
          }
          gemm(false, false, br, HS, r1, scale, dS, r1, K, (int)ld, (T)0, dQ + r0 * ld, (int)ld);  // dQ block
          gemm(true, false, r1, HS, br, scale, dS, r1, Q + r0 * ld, (int)ld, (T)1, dK, (int)ld);  // dK prefix
          gemm(true, false, r1, HS, br, (T)1, P, r1, dO + r0 * ldo, (int)ldo, (T)1, dV, (int)ld);  // dV prefix
        }
      }
    }
  }
}

}  // namespace pt
