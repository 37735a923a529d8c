// Causal self-attention with grouped KV heads over packed variable-length sequences, forward and
// backward. The forward keeps only the log-sum-exp of each score row; the backward recomputes the
// probabilities from it block by block (flash-attention style), so no T x T matrix is ever stored.
// The query heads that share a KV head are stacked into one matrix (G = NH / NKV heads x 128 query rows)
// so each score and value product is one taller BLAS GEMM against the causal key prefix (with a sliding window,
// against the keys some row of the block sees: first_key of its first row on).
// Scores are q.k * scale (default 1/sqrt(HS); Gemma's query_pre_attn_scalar^-0.5), optionally soft-capped to
// c tanh(s / c) before the mask (Gemma 2's attn_logit_softcapping); the backward recomputes the cap's tanh.
// Also the inference-only variant for decoding, whose keys and values come from a per-sequence KV cache.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
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
  thread_local Buf<T> bufs[6];
  return bufs[slot].need(n);
}

// The score scale and soft-cap (0: none) of a model.
struct AttnScore {
  double scale = 0;    // 0: 1/sqrt(HS)
  double softcap = 0;
  template <typename T> T scale_for(int HS) const { return (T)(scale > 0 ? scale : 1.0 / std::sqrt((double)HS)); }
};

// Soft-caps the visible scores [lo, nv) of one row in place: s -> c tanh(s / c).
template <typename T>
inline void softcap_row(T* s, int lo, int nv, double cap) {
  if (cap <= 0) return;
  const T c = (T)cap, ic = (T)(1.0 / cap);
  for (int j = lo; j < nv; j++) s[j] = c * ttanh(s[j] * ic);
}

// The first key a query at position t sees: 0, or with a sliding window w > 0 (transformers' sliding_window mask,
// kv_idx > q_idx - w) t - w + 1, so it sees the w keys t - w < s <= t.
inline int first_key(int t, int window) { return window > 0 && t >= window ? t - window + 1 : 0; }

// One score row in place: softmax over its entries [lo, nv) (the visible keys), 0 for the rest of its width.
// Returns the row's log-sum-exp, which the training forward keeps for the backward.
template <typename T>
T causal_softmax(T* s, int lo, int nv, int width) {
  T m = s[lo];
#pragma omp simd reduction(max : m)
  for (int j = lo + 1; j < nv; j++) m = s[j] > m ? s[j] : m;
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int j = lo; j < nv; j++) { s[j] = texp(s[j] - m); sum += s[j]; }
  const T inv = (T)1 / sum;
#pragma omp simd
  for (int j = lo; j < nv; j++) s[j] *= inv;
  for (int j = 0; j < lo; j++) s[j] = 0;
  for (int j = nv; j < width; j++) s[j] = 0;
  return m + std::log(sum);
}

// Stack rows [r0, r0 + br) of the G heads h0.. of src (row stride ld) into dst (G * br, HS), head-major.
template <typename T>
void stack_heads(T* dst, const T* src, int64_t ld, int h0, int G, int r0, int br, int HS) {
  for (int k = 0; k < G; k++)
    for (int i = 0; i < br; i++)
      std::memcpy(dst + ((size_t)k * br + i) * HS, src + (int64_t)(r0 + i) * ld + (int64_t)(h0 + k) * HS, sizeof(T) * HS);
}
template <typename T>
void unstack_heads(T* dst, const T* src, int64_t ld, int h0, int G, int r0, int br, int HS) {
  for (int k = 0; k < G; k++)
    for (int i = 0; i < br; i++)
      std::memcpy(dst + (int64_t)(r0 + i) * ld + (int64_t)(h0 + k) * HS, src + ((size_t)k * br + i) * HS, sizeof(T) * HS);
}

// qkv (N, QKV) after RoPE: q heads at [0, NH*HS), k at [NH*HS, (NH+NKV)*HS), v after that.
// out (N, NH*HS); lse (N, NH). window: 0 for full causal attention, w > 0 for a sliding window (first_key).
template <typename T>
void attention_forward(T* out, T* lse, const T* qkv, const SeqSpan* seqs, int B, int NH, int NKV, int HS, int window,
                       const AttnScore& sc = {}) {
  const int64_t ld = (int64_t)(NH + 2 * NKV) * HS, ldo = (int64_t)NH * HS;
  const int G = NH / NKV;
  const T scale = sc.scale_for<T>(HS);
#pragma omp parallel for schedule(dynamic, 1) collapse(2)
  for (int b = 0; b < B; b++) {
    for (int g = 0; g < NKV; g++) {
      const int len = seqs[b].len;
      if (len == 0) continue;
      const int64_t s0 = seqs[b].start;
      const T* K = qkv + s0 * ld + (int64_t)(NH + g) * HS;
      const T* Vv = qkv + s0 * ld + (int64_t)(NH + NKV + g) * HS;
      const int rows = G * kAttnBlock;
      T* S = attn_scratch<T>(0, (size_t)rows * len);   // (G*br, r1) scores, then probabilities
      T* Qs = attn_scratch<T>(1, (size_t)rows * HS);   // (G*br, HS)
      T* Os = attn_scratch<T>(2, (size_t)rows * HS);
      for (int r0 = 0; r0 < len; r0 += kAttnBlock) {
        const int r1 = r0 + kAttnBlock < len ? r0 + kAttnBlock : len, br = r1 - r0;
        const int k0 = first_key(r0, window), w = r1 - k0;  // the block's keys: k0 .. r1 - 1
        stack_heads(Qs, qkv + s0 * ld, ld, g * G, G, r0, br, HS);
        gemm(false, true, G * br, w, HS, scale, Qs, HS, K + k0 * ld, (int)ld, (T)0, S, w);  // (G*br, w)
        for (int k = 0; k < G; k++) {
          for (int i = 0; i < br; i++) {  // keys first_key(r0 + i) .. r0 + i are visible
            const int lo = first_key(r0 + i, window) - k0, nv = r0 + i + 1 - k0;
            softcap_row(S + ((size_t)k * br + i) * w, lo, nv, sc.softcap);
            lse[(s0 + r0 + i) * NH + g * G + k] = causal_softmax(S + ((size_t)k * br + i) * w, lo, nv, w);
          }
        }
        gemm(false, false, G * br, HS, w, (T)1, S, w, Vv + k0 * ld, (int)ld, (T)0, Os, HS);  // (G*br, HS)
        unstack_heads(out + s0 * ldo, Os, ldo, g * G, G, r0, br, HS);
      }
    }
  }
}

// dqkv (N, QKV) is written (not accumulated) from dout (N, NH*HS), the forward's out and lse, and qkv.
template <typename T>
void attention_backward(T* dqkv, const T* dout, const T* out, const T* lse, const T* qkv, const SeqSpan* seqs,
                        int B, int NH, int NKV, int HS, int window, const AttnScore& sc = {}) {
  const int64_t ld = (int64_t)(NH + 2 * NKV) * HS, ldo = (int64_t)NH * HS;
  const int G = NH / NKV;
  const T scale = sc.scale_for<T>(HS);
  const T cap = (T)sc.softcap, icap = sc.softcap > 0 ? (T)(1.0 / sc.softcap) : (T)0;
  // A KV head collects dK, dV from all G query heads of its group, so one task per (b, kv head).
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
      for (int t = 0; t < len; t++) {
        std::memset(dK + t * ld, 0, sizeof(T) * HS);
        std::memset(dV + t * ld, 0, sizeof(T) * HS);
      }
      const int rows = G * kAttnBlock;
      T* P = attn_scratch<T>(0, (size_t)rows * len);
      T* dS = attn_scratch<T>(1, (size_t)rows * len);
      T* Qs = attn_scratch<T>(2, (size_t)rows * HS);
      T* dOs = attn_scratch<T>(3, (size_t)rows * HS);
      T* dQs = attn_scratch<T>(4, (size_t)rows * HS);
      T* Dr = attn_scratch<T>(5, rows);
      for (int r0 = 0; r0 < len; r0 += kAttnBlock) {
        const int r1 = r0 + kAttnBlock < len ? r0 + kAttnBlock : len, br = r1 - r0;
        stack_heads(Qs, qkv + s0 * ld, ld, g * G, G, r0, br, HS);
        stack_heads(dOs, dout + s0 * ldo, ldo, g * G, G, r0, br, HS);
        for (int k = 0; k < G; k++)  // D_i = dO_i . O_i
          for (int i = 0; i < br; i++) {
            const T* o = out + (s0 + r0 + i) * ldo + (int64_t)(g * G + k) * HS;
            const T* dor = dOs + ((size_t)k * br + i) * HS;
            T dsum = 0;
#pragma omp simd reduction(+ : dsum)
            for (int d = 0; d < HS; d++) dsum += o[d] * dor[d];
            Dr[k * br + i] = dsum;
          }
        const int k0 = first_key(r0, window), w = r1 - k0;  // the block's keys: k0 .. r1 - 1
        gemm(false, true, G * br, w, HS, scale, Qs, HS, K + k0 * ld, (int)ld, (T)0, P, w);  // scores
        gemm(false, true, G * br, w, HS, (T)1, dOs, HS, Vv + k0 * ld, (int)ld, (T)0, dS, w);  // dP
        for (int k = 0; k < G; k++) {
          for (int i = 0; i < br; i++) {
            T* p = P + ((size_t)k * br + i) * w;
            T* ds = dS + ((size_t)k * br + i) * w;
            const int nv = r0 + i + 1 - k0, lo = first_key(r0 + i, window) - k0;
            const T l = lse[(s0 + r0 + i) * NH + g * G + k], Di = Dr[k * br + i];
            for (int j = 0; j < lo; j++) { p[j] = 0; ds[j] = 0; }
            if (cap > 0) {  // through the cap: d s / d raw = 1 - tanh^2
              for (int j = lo; j < nv; j++) {
                const T th = ttanh(p[j] * icap);
                p[j] = texp(cap * th - l);
                ds[j] = p[j] * (ds[j] - Di) * ((T)1 - th * th);
              }
            } else {
#pragma omp simd
              for (int j = lo; j < nv; j++) {
                p[j] = texp(p[j] - l);
                ds[j] = p[j] * (ds[j] - Di);
              }
            }
            for (int j = nv; j < w; j++) { p[j] = 0; ds[j] = 0; }
          }
        }
        gemm(false, false, G * br, HS, w, scale, dS, w, K + k0 * ld, (int)ld, (T)0, dQs, HS);  // dQ block
        gemm(true, false, w, HS, G * br, scale, dS, w, Qs, HS, (T)1, dK + k0 * ld, (int)ld);    // dK of keys k0..
        gemm(true, false, w, HS, G * br, (T)1, P, w, dOs, HS, (T)1, dV + k0 * ld, (int)ld);     // dV of keys k0..
        unstack_heads(dqkv + s0 * ld, dQs, ld, g * G, G, r0, br, HS);
      }
    }
  }
}

// Decoding (no backward): new query rows against a KV cache. q (N, ldq) holds the packed new tokens after RoPE;
// sequence i has seqs[i] = {first packed row, new tokens}, held past[i] tokens before them and lives in cache row
// rows[i]. Kc, Vc: one layer's cache (B, NKV, cap, HS), the new tokens' keys and values already written. Key
// position s sits in slot s % cap: cap is the full length (no wrap) or, for a sliding-window layer, a ring that holds
// at least the window plus this call's new tokens. So new token t of sequence i sees positions
// first_key(past[i] + t, window) .. past[i] + t. out (N, NH*HS).
template <typename T>
void attention_cached(T* out, const T* q, int64_t ldq, const SeqSpan* seqs, const int32_t* past, const int32_t* rows,
                      const T* Kc, const T* Vc, int cap, int n, int NH, int NKV, int HS, int window,
                      const AttnScore& sc = {}) {
  const int64_t ldo = (int64_t)NH * HS;
  const int G = NH / NKV;
  const T scale = sc.scale_for<T>(HS);
#pragma omp parallel for schedule(dynamic, 1) collapse(2)
  for (int i = 0; i < n; i++) {
    for (int g = 0; g < NKV; g++) {
      const int len = seqs[i].len, p0 = past[i];
      const int64_t s0 = seqs[i].start;
      const size_t cache = ((size_t)rows[i] * NKV + g) * cap * HS;
      const T* K = Kc + cache;   // (cap, HS)
      const T* Vv = Vc + cache;
      const int rows_max = G * (len < kAttnBlock ? len : kAttnBlock);
      const int keys_max = std::min(p0 + len, cap);
      T* S = attn_scratch<T>(0, (size_t)rows_max * keys_max);  // (G*br, nk)
      T* Qs = attn_scratch<T>(1, (size_t)rows_max * HS);
      T* Os = attn_scratch<T>(2, (size_t)rows_max * HS);
      for (int r0 = 0; r0 < len; r0 += kAttnBlock) {
        const int r1 = r0 + kAttnBlock < len ? r0 + kAttnBlock : len, br = r1 - r0;
        const int k0 = first_key(p0 + r0, window), nk = p0 + r1 - k0;  // the block's keys: k0 .. p0 + r1 - 1
        // their slots: one run, or two when the ring wraps ([a, cap) then [0, nk - (cap - a)))
        const int a = k0 % cap, first = std::min(nk, cap - a);
        stack_heads(Qs, q + s0 * ldq, ldq, g * G, G, r0, br, HS);
        gemm(false, true, G * br, first, HS, scale, Qs, HS, K + (size_t)a * HS, HS, (T)0, S, nk);  // (G*br, nk)
        if (first < nk) gemm(false, true, G * br, nk - first, HS, scale, Qs, HS, K, HS, (T)0, S + first, nk);
        for (int k = 0; k < G; k++) {
          for (int r = 0; r < br; r++) {
            const int t = p0 + r0 + r;
            softcap_row(S + ((size_t)k * br + r) * nk, first_key(t, window) - k0, t + 1 - k0, sc.softcap);
            causal_softmax(S + ((size_t)k * br + r) * nk, first_key(t, window) - k0, t + 1 - k0, nk);
          }
        }
        gemm(false, false, G * br, HS, first, (T)1, S, nk, Vv + (size_t)a * HS, HS, (T)0, Os, HS);  // (G*br, HS)
        if (first < nk) gemm(false, false, G * br, HS, nk - first, (T)1, S + first, nk, Vv, HS, (T)1, Os, HS);
        unstack_heads(out + s0 * ldo, Os, ldo, g * G, G, r0, br, HS);
      }
    }
  }
}

}  // namespace pt
