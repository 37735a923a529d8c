// The language-model head fused with log-softmax and the gather of the next token, forward and
// backward, in chunks of rows so the (rows, V) logits never exist at once. Per row it also yields
// the statistics TRL logs: mean logit, entropy, and whether the argmax is the label.
// Rows with label < 0 (the last token of each sequence) produce nothing and get no gradient.
// A HeadPost adds lm_head's bias (Phi-2) and soft-caps the logits to c tanh(z / c) (Gemma 2's
// final_logit_softcapping) before the softmax; the backward carries both (d bias += d z).
// With a HeadBf16 (fp32 only) the weight is bf16: either the GEMMs take bf16 operands and accumulate in fp32
// (bf16 compute), or a weight held only in bf16 is widened to fp32 block by block right before each GEMM (fp32
// compute over a frozen bf16 base). The log-softmax and statistics stay fp32 either way.
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>
#include "bf16.h"
#include "common.h"
#include "mathx.h"

namespace pt {

constexpr int kHeadChunk = 256;
constexpr int kHeadWidenRows = 2048;  // rows of a bf16-held W widened at once (2048 x C floats)

// What follows the head GEMM: bias (V) or null, softcap 0 for none; dbias (V) +=, in the backward, or null.
template <typename T>
struct HeadPost {
  const T* bias = nullptr;
  T* dbias = nullptr;
  double softcap = 0;
  bool any() const { return bias || softcap > 0; }
  // One row of logits (V) in place: z + b, then the cap.
  void apply(T* x, int V) const {
    if (bias)
      for (int v = 0; v < V; v++) x[v] += bias[v];
    if (softcap > 0) {
      const T c = (T)softcap, ic = (T)(1.0 / softcap);
      for (int v = 0; v < V; v++) x[v] = c * ttanh(x[v] * ic);
    }
  }
};

// The head weight W (V, C) in bf16 (see the file comment).
struct HeadBf16 {
  const bf16* W = nullptr;
  bool widen = false;          // false: bf16 operands; true: fp32 math, W widened by blocks of rows
  Bf16Scratch* s = nullptr;    // bf16 operands of the activations (widen = false)
  Buf<float>* tile = nullptr;  // widened rows (widen = true)
};

// logits (n, V) = Hc (n, C) W^T: in T; or with bf16 operands (Hc then also left in hb); or in fp32 over W
// widened block by block.
template <typename T>
void head_logits(T* logits, const T* Hc, const T* W, const HeadBf16* hw, bf16* hb, int n, int C, int V) {
  if constexpr (std::is_same_v<T, float>) {
    if (hw && !hw->widen) {
      to_bf16(hb, Hc, (int64_t)n * C);
      return gemm_bf16(false, true, n, V, C, hb, C, hw->W, C, false, logits, V);
    }
    if (hw) {
      float* t = hw->tile->need((size_t)kHeadWidenRows * C);
      for (int v0 = 0; v0 < V; v0 += kHeadWidenRows) {
        const int vb = std::min(kHeadWidenRows, V - v0);
        from_bf16(t, hw->W + (size_t)v0 * C, (int64_t)vb * C);
        gemm(false, true, n, vb, C, 1.0f, Hc, C, t, C, 0.0f, logits + v0, V);
      }
      return;
    }
  }
  gemm(false, true, n, V, C, (T)1, Hc, C, W, C, (T)0, logits, V);
}

// H (R, C) hidden rows, labels (R), W (V, C). Outputs per row (any may be null except lse):
// logp = logits[label] - lse, lse, mean logit, entropy, correct. work: (kHeadChunk, V) + (kHeadChunk, C).
// hw: the weight in bf16 (W then unused), or null.
template <typename T>
void head_forward(T* logp, T* lse, T* mean, T* ent, uint8_t* correct, const T* H, const int32_t* labels,
                  const T* W, int64_t R, int C, int V, Buf<T>& work, const HeadBf16* hw = nullptr,
                  const HeadPost<T>& post = {}) {
  std::vector<int64_t> rows;
  for (int64_t r = 0; r < R; r++) if (labels[r] >= 0) rows.push_back(r);
  T* logits = work.need((size_t)kHeadChunk * V + (size_t)kHeadChunk * C);
  T* Hc = logits + (size_t)kHeadChunk * V;
  bf16* hb = hw && !hw->widen ? hw->s->a.need((size_t)kHeadChunk * C) : nullptr;
  for (size_t c0 = 0; c0 < rows.size(); c0 += kHeadChunk) {
    const int n = (int)std::min<size_t>(kHeadChunk, rows.size() - c0);
    for (int i = 0; i < n; i++) std::memcpy(Hc + (size_t)i * C, H + rows[c0 + i] * C, sizeof(T) * C);
    head_logits(logits, Hc, W, hw, hb, n, C, V);  // (n, V)
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
      const int64_t r = rows[c0 + i];
      T* x = logits + (size_t)i * V;
      post.apply(x, V);
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
// (a frozen head, as under LoRA: the GEMM that training adapters saves; always so for a widened bf16 head).
// d logits = dlogp * (onehot(label) - softmax), recomputed chunk by chunk from lse.
template <typename T>
void head_backward(T* dH, T* dW, const T* dlogp, const T* H, const int32_t* labels, const T* lse, const T* W,
                   int64_t R, int C, int V, Buf<T>& work, const HeadBf16* hw = nullptr, const HeadPost<T>& post = {}) {
  std::vector<int64_t> rows;
  for (int64_t r = 0; r < R; r++) {
    if (labels[r] >= 0 && dlogp[r] != 0) rows.push_back(r);
    else std::memset(dH + r * C, 0, sizeof(T) * C);
  }
  T* logits = work.need((size_t)kHeadChunk * V + 2 * (size_t)kHeadChunk * C);
  T* Hc = logits + (size_t)kHeadChunk * V;
  T* dHc = Hc + (size_t)kHeadChunk * C;
  const bool operands = hw && !hw->widen;
  bf16* hb = operands ? hw->s->a.need((size_t)kHeadChunk * C) : nullptr;
  bf16* gb = operands ? hw->s->g.need((size_t)kHeadChunk * V) : nullptr;
  for (size_t c0 = 0; c0 < rows.size(); c0 += kHeadChunk) {
    const int n = (int)std::min<size_t>(kHeadChunk, rows.size() - c0);
    for (int i = 0; i < n; i++) std::memcpy(Hc + (size_t)i * C, H + rows[c0 + i] * C, sizeof(T) * C);
    head_logits(logits, Hc, W, hw, hb, n, C, V);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
      const int64_t r = rows[c0 + i];
      T* x = logits + (size_t)i * V;
      const T l = lse[r], g = dlogp[r];
      if (post.softcap > 0) {  // d z = d y (1 - tanh^2), y = c tanh(z / c)
        const T c = (T)post.softcap, ic = (T)(1.0 / post.softcap);
        const int lab = labels[r];
        for (int v = 0; v < V; v++) {
          const T th = ttanh((x[v] + (post.bias ? post.bias[v] : (T)0)) * ic);
          x[v] = (-g * texp(c * th - l) + (v == lab ? g : (T)0)) * ((T)1 - th * th);
        }
        continue;
      }
      if (post.bias)
        for (int v = 0; v < V; v++) x[v] += post.bias[v];
#pragma omp simd
      for (int v = 0; v < V; v++) x[v] = -g * texp(x[v] - l);
      x[labels[r]] += g;
    }
    if (post.dbias) {
#pragma omp parallel for schedule(static)
      for (int v = 0; v < V; v++) {
        T s = 0;
        for (int i = 0; i < n; i++) s += logits[(size_t)i * V + v];
        post.dbias[v] += s;
      }
    }
    bool done = false;
    if constexpr (std::is_same_v<T, float>) {
      if (operands) {  // d logits rounded to bf16 once for both GEMMs; hb still holds Hc in bf16
        to_bf16(gb, logits, (int64_t)n * V);
        gemm_bf16(false, false, n, C, V, gb, V, hw->W, C, false, dHc, C);
        if (dW) gemm_bf16(true, false, V, C, n, gb, V, hb, C, true, dW, C);
        done = true;
      } else if (hw) {  // dHc = sum over row blocks of d logits[:, block] W[block], W widened per block
        float* t = hw->tile->need((size_t)kHeadWidenRows * C);
        for (int v0 = 0; v0 < V; v0 += kHeadWidenRows) {
          const int vb = std::min(kHeadWidenRows, V - v0);
          from_bf16(t, hw->W + (size_t)v0 * C, (int64_t)vb * C);
          gemm(false, false, n, C, vb, 1.0f, logits + v0, V, t, C, v0 ? 1.0f : 0.0f, dHc, C);
        }
        done = true;
      }
    }
    if (!done) {
      gemm(false, false, n, C, V, (T)1, logits, V, W, C, (T)0, dHc, C);  // (n, C)
      if (dW) gemm(true, false, V, C, n, (T)1, logits, V, Hc, C, (T)1, dW, C);   // (V, C)
    }
    for (int i = 0; i < n; i++) std::memcpy(dH + rows[c0 + i] * C, dHc + (size_t)i * C, sizeof(T) * C);
  }
}

}  // namespace pt
