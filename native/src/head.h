// The language-model head fused with log-softmax and the gather of the next token, forward and
// backward, in chunks of rows so the (rows, V) logits never exist at once. Per row it also yields
// the statistics TRL logs: mean logit, entropy, and whether the argmax is the label.
// Rows with label < 0 (the last token of each sequence) produce nothing and get no gradient.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>
#include "common.h"
#include "mathx.h"

namespace pt {

constexpr int kHeadChunk = 256;

// H (R, C) hidden rows, labels (R), W (V, C). Outputs per row (any may be null except lse):
// logp = logits[label] - lse, lse, mean logit, entropy, correct. work: (kHeadChunk, V) + (kHeadChunk, C).
template <typename T>
void head_forward(T* logp, T* lse, T* mean, T* ent, uint8_t* correct, const T* H, const int32_t* labels,
                  const T* W, int64_t R, int C, int V, Buf<T>& work) {
  std::vector<int64_t> rows;
  for (int64_t r = 0; r < R; r++) if (labels[r] >= 0) rows.push_back(r);
  T* logits = work.need((size_t)kHeadChunk * V + (size_t)kHeadChunk * C);
  T* Hc = logits + (size_t)kHeadChunk * V;
  for (size_t c0 = 0; c0 < rows.size(); c0 += kHeadChunk) {
    const int n = (int)std::min<size_t>(kHeadChunk, rows.size() - c0);
    for (int i = 0; i < n; i++) std::memcpy(Hc + (size_t)i * C, H + rows[c0 + i] * C, sizeof(T) * C);
    gemm(false, true, n, V, C, (T)1, Hc, C, W, C, (T)0, logits, V);  // (n, V)
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
      const int64_t r = rows[c0 + i];
      const T* x = logits + (size_t)i * V;
      T m = x[0], sx = 0;
#pragma omp simd reduction(max : m) reduction(+ : sx)
      for (int v = 0; v < V; v++) { m = x[v] > m ? x[v] : m; sx += x[v]; }
      T se = 0, sex = 0;  // sum exp(x - m), sum exp(x - m) * x
#pragma omp simd reduction(+ : se, sex)
      for (int v = 0; v < V; v++) {
        T e = texp(x[v] - m);
        se += e;
        sex += e * x[v];
      }
      const double l = (double)m + std::log((double)se);
      const T xl = x[labels[r]];
      lse[r] = (T)l;
      if (logp) logp[r] = (T)((double)xl - l);
      if (mean) mean[r] = (T)((double)sx / V);
      if (ent) ent[r] = (T)(l - (double)sex / (double)se);
      // The label is the argmax when no logit exceeds it (exact ties, which torch breaks by the lowest
      // index, are the only difference).
      if (correct) correct[r] = xl >= m;
    }
  }
}

// dH (R, C) is written for every row (0 where no gradient); dW (V, C) += , skipped when dW is null
// (a frozen head, as under LoRA: the GEMM that training adapters saves).
// d logits = dlogp * (onehot(label) - softmax), recomputed chunk by chunk from lse.
template <typename T>
void head_backward(T* dH, T* dW, const T* dlogp, const T* H, const int32_t* labels, const T* lse, const T* W,
                   int64_t R, int C, int V, Buf<T>& work) {
  std::vector<int64_t> rows;
  for (int64_t r = 0; r < R; r++) {
    if (labels[r] >= 0 && dlogp[r] != 0) rows.push_back(r);
    else std::memset(dH + r * C, 0, sizeof(T) * C);
  }
  T* logits = work.need((size_t)kHeadChunk * V + 2 * (size_t)kHeadChunk * C);
  T* Hc = logits + (size_t)kHeadChunk * V;
  T* dHc = Hc + (size_t)kHeadChunk * C;
  for (size_t c0 = 0; c0 < rows.size(); c0 += kHeadChunk) {
    const int n = (int)std::min<size_t>(kHeadChunk, rows.size() - c0);
    for (int i = 0; i < n; i++) std::memcpy(Hc + (size_t)i * C, H + rows[c0 + i] * C, sizeof(T) * C);
    gemm(false, true, n, V, C, (T)1, Hc, C, W, C, (T)0, logits, V);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
      const int64_t r = rows[c0 + i];
      T* x = logits + (size_t)i * V;
      const T l = lse[r], g = dlogp[r];
#pragma omp simd
      for (int v = 0; v < V; v++) x[v] = -g * texp(x[v] - l);
      x[labels[r]] += g;
    }
    gemm(false, false, n, C, V, (T)1, logits, V, W, C, (T)0, dHc, C);  // (n, C)
    if (dW) gemm(true, false, V, C, n, (T)1, logits, V, Hc, C, (T)1, dW, C);   // (V, C)
    for (int i = 0; i < n; i++) std::memcpy(dH + rows[c0 + i] * C, dHc + (size_t)i * C, sizeof(T) * C);
  }
}

}  // namespace pt
