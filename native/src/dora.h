// LoRA projections run one member at a time, for what the fused group path of lora.h cannot do:
//   LoRA dropout (PEFT): y = x W^T (+b) + s * (x~ A^T) B^T with x~ = dropout(x); the base sees x itself.
//   DoRA (PEFT's weight-decomposed LoRA), with the row norm n = ||W + s B A||_row recomputed every forward
//   and held constant in the backward (PEFT detaches it), c = m / n per output row:
//     no dropout:  y = c * (x W^T + s (x A^T) B^T) + b
//     dropout:     y = x W^T + b + (c - 1) * (x~ W^T) + c * s (x~ A^T) B^T      (the bias is not rescaled)
// Dropout masks are counter-based (a hash of a per-forward key and the element index), so nothing is stored:
// the backward, and any recomputation, draws the same mask again. Forward and backward side by side.
// Not here: which members exist and where their tensors live (decoder.cpp), the fused no-dropout LoRA path
// (lora.h), where the dropout key comes from (pt_lora_set_dropout_seed).
#pragma once
#include <cmath>
#include <cstdint>
#include <omp.h>
#include "common.h"
#include "lora.h"

namespace pt {

// splitmix64's finaliser: a bijective 64-bit mix.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Inverted dropout of rate p (torch.nn.Dropout): an element is kept when the top 32 bits of
// mix64(key + (i + 1) * golden) are >= p * 2^32, and a kept element is scaled by 1 / (1 - p).
struct Dropout {
  float p = 0.0f;     // 0: off (x~ = x)
  uint64_t key = 0;   // one member's stream in one forward
  bool on() const { return p > 0.0f; }
  uint32_t threshold() const {
    const double t = std::floor((double)p * 4294967296.0);
    return t >= 4294967295.0 ? 0xffffffffu : (uint32_t)t;
  }
  bool keep(uint64_t i, uint32_t th) const {
    return (uint32_t)(mix64(key + (i + 1) * 0x9e3779b97f4a7c15ULL) >> 32) >= th;
  }
};

// out rows [a, b) = dropout(x) rows [a, b); x, out (N, in).
template <typename T>
void dropout_rows(T* out, const T* x, int a, int b, int in, const Dropout& d) {
  const uint32_t th = d.threshold();
  const T scale = (T)(1.0 / (1.0 - (double)d.p));
  for (int n = a; n < b; n++)
    for (int i = 0; i < in; i++) {
      const size_t e = (size_t)n * in + i;
      out[e] = d.keep(e, th) ? x[e] * scale : (T)0;
    }
}
// dx rows [a, b) += the dropout backward of g rows [a, b) (the same mask and scale).
template <typename T>
void dropout_backward_add(T* dx, const T* g, int a, int b, int in, const Dropout& d) {
  const uint32_t th = d.threshold();
  const T scale = (T)(1.0 / (1.0 - (double)d.p));
  for (int n = a; n < b; n++)
    for (int i = 0; i < in; i++) {
      const size_t e = (size_t)n * in + i;
      if (d.keep(e, th)) dx[e] += g[e] * scale;
    }
}

// One member j of a LoraGroup, with what DoRA adds.
template <typename T>
struct LoraMember {
  int in = 0, r = 0, out = 0, col = 0;   // writes output columns [col, col + out) of the group's y
  const T* A = nullptr;                  // (r, in)
  const T* B = nullptr;                  // (out, r)
  T* dA = nullptr;
  T* dB = nullptr;
  const T* mag = nullptr;                // DoRA magnitude m (out), PEFT's lora_magnitude_vector; null: plain LoRA
  T* dmag = nullptr;
  const T* norm = nullptr;               // DoRA: n (out) of this forward
  const T* W = nullptr;                  // DoRA: the member's base rows (out, in)
  const T* bias = nullptr;               // DoRA: the member's base bias (out), or null
};

template <typename T>
LoraMember<T> member_of(const LoraGroup<T>& g, int j) {
  LoraMember<T> m;
  m.in = g.in; m.r = g.r; m.out = g.out[j]; m.col = g.col[j];
  m.A = g.A + (size_t)j * g.r * g.in;
  m.B = g.B[j];
  m.dA = g.dA ? g.dA + (size_t)j * g.r * g.in : nullptr;
  m.dB = g.dB[j];
  return m;
}

// Scratch of one member: xd (N, in), t (N, out), w (N, out), du (N, r), dX (N, in). Only what the pass uses
// must be set: xd with dropout; t, w with DoRA (w in the forward only with dropout); du, dX in the backward.
template <typename T>
struct MemberScratch {
  T *xd = nullptr, *t = nullptr, *w = nullptr, *du = nullptr, *dX = nullptr;
};

// n[o] = ||W[o, :] + s (B A)[o, :]|| for o < out (sum of squares in double). rowbuf: in floats per thread.
template <typename T>
void dora_norms(T* norm, const T* W, const T* A, const T* B, int out, int in, int r, T s, T* rowbuf) {
#pragma omp parallel
  {
    int a, b;
    thread_block(out, a, b);
    T* row = rowbuf + (size_t)omp_get_thread_num() * in;
    for (int o = a; o < b; o++) {
      for (int i = 0; i < in; i++) row[i] = W[(size_t)o * in + i];
      for (int k = 0; k < r; k++) {
        const T c = s * B[(size_t)o * r + k];
        const T* Ak = A + (size_t)k * in;
        for (int i = 0; i < in; i++) row[i] += c * Ak[i];
      }
      double q = 0;
      for (int i = 0; i < in; i++) q += (double)row[i] * row[i];
      norm[o] = (T)std::sqrt(q);
    }
  }
}

// PEFT's DoRA merge on rows that already hold W + s B A: each row scaled by m[o] / ||row||.
template <typename T>
void dora_rescale_rows(T* W, const T* mag, int out, int in) {
#pragma omp parallel for schedule(static)
  for (int o = 0; o < out; o++) {
    double q = 0;
    for (int i = 0; i < in; i++) q += (double)W[(size_t)o * in + i] * W[(size_t)o * in + i];
    const T c = mag[o] / (T)std::sqrt(q);
    for (int i = 0; i < in; i++) W[(size_t)o * in + i] *= c;
  }
}

// Forward of one member: u (N, ldu) = x~ A^T (kept for the backward); y (N, ldy) columns [col, col + out)
// receive the member's term. x (N, in); y already holds the base output x W^T + b of every column.
template <typename T>
void member_forward(T* y, int ldy, T* u, int ldu, const T* x, const LoraMember<T>& m, int N, T s, const Dropout& d,
                    const MemberScratch<T>& S) {
#pragma omp parallel
  {
    int a, b;
    thread_block(N, a, b);
    const int n = b - a;
    if (n > 0) {
      const T* xt = x + (size_t)a * m.in;
      if (d.on()) {
        dropout_rows(S.xd, x, a, b, m.in, d);
        xt = S.xd + (size_t)a * m.in;
      }
      T* ua = u + (size_t)a * ldu;
      T* ya = y + (size_t)a * ldy + m.col;
      gemm(false, true, n, m.r, m.in, (T)1, xt, m.in, m.A, m.in, (T)0, ua, ldu);
      if (!m.mag) {
        gemm(false, true, n, m.out, m.r, s, ua, ldu, m.B, m.r, (T)1, ya, ldy);
      } else {
        T* t = S.t + (size_t)a * m.out;  // s u B^T
        gemm(false, true, n, m.out, m.r, s, ua, ldu, m.B, m.r, (T)0, t, m.out);
        T* w = nullptr;                  // x~ W^T, with dropout only (else the base output minus the bias)
        if (d.on()) {
          w = S.w + (size_t)a * m.out;
          gemm(false, true, n, m.out, m.in, (T)1, xt, m.in, m.W, m.in, (T)0, w, m.out);
        }
        for (int i = 0; i < n; i++)
          for (int o = 0; o < m.out; o++) {
            const T c = m.mag[o] / m.norm[o];
            T& yv = ya[(size_t)i * ldy + o];
            const T base = w ? w[(size_t)i * m.out + o] : yv - (m.bias ? m.bias[o] : (T)0);
            yv += (c - (T)1) * base + c * t[(size_t)i * m.out + o];
          }
      }
    }
  }
}

// Backward of one member from dy (N, ldy) (its columns [col, col + out)): dx (N, in) += the member's input
// gradient (the base path's x W^T is the caller's); dA, dB (and DoRA's dmag) accumulate. x, u as in the
// forward; the dropout mask is drawn again from d. DoRA recomputes x~ W^T (nothing of size (N, out) is kept).
template <typename T>
void member_backward(T* dx, const T* dy, int ldy, const T* x, const T* u, int ldu, const LoraMember<T>& m, int N, T s,
                     const Dropout& d, const MemberScratch<T>& S) {
  const bool dora = m.mag != nullptr, drop = d.on();
  const T* xt = drop ? S.xd : x;                                  // x~ (N, in), complete after phase 1
  const T* e = dora ? S.t : dy + m.col;                           // the gradient the low-rank path sees
  const int lde = dora ? m.out : ldy;
#pragma omp parallel
  {
    int a, b;
    thread_block(N, a, b);
    const int n = b - a;
    // 1. x~ rows; DoRA: z = x~ W^T + s u B^T (the pre-scale output) into w.
    if (n > 0) {
      if (drop) dropout_rows(S.xd, x, a, b, m.in, d);
      if (dora) {
        T* z = S.w + (size_t)a * m.out;
        gemm(false, true, n, m.out, m.r, s, u + (size_t)a * ldu, ldu, m.B, m.r, (T)0, z, m.out);
        gemm(false, true, n, m.out, m.in, (T)1, xt + (size_t)a * m.in, m.in, m.W, m.in, (T)1, z, m.out);
      }
    }
    if (dora) {
      // 2. dm[o] += sum_n dy[n, o] z[n, o] / n[o], by output rows.
#pragma omp barrier
      int oa, ob;
      thread_block(m.out, oa, ob);
      for (int o = oa; o < ob; o++) {
        double acc = 0;
        for (int t = 0; t < N; t++) acc += (double)dy[(size_t)t * ldy + m.col + o] * S.w[(size_t)t * m.out + o];
        m.dmag[o] += (T)(acc / (double)m.norm[o]);
      }
#pragma omp barrier
      // 3. e = c dy (the low-rank path), f = (c - 1) dy (the x~ W^T path), by tokens.
      for (int t = a; t < b; t++)
        for (int o = 0; o < m.out; o++) {
          const T c = m.mag[o] / m.norm[o], g = dy[(size_t)t * ldy + m.col + o];
          S.t[(size_t)t * m.out + o] = c * g;
          S.w[(size_t)t * m.out + o] = (c - (T)1) * g;
        }
    }
    // 4. du = s e B;  dx~ = du A (+ f W);  dx += dropout backward of dx~ (or dx~ itself), by tokens.
    if (n > 0) {
      T* du = S.du + (size_t)a * m.r;
      gemm(false, false, n, m.r, m.out, s, e + (size_t)a * lde, lde, m.B, m.r, (T)0, du, m.r);
      T* dxt = drop ? S.dX + (size_t)a * m.in : dx + (size_t)a * m.in;
      gemm(false, false, n, m.in, m.r, (T)1, du, m.r, m.A, m.in, drop ? (T)0 : (T)1, dxt, m.in);
      if (dora) gemm(false, false, n, m.in, m.out, (T)1, S.w + (size_t)a * m.out, m.out, m.W, m.in, (T)1, dxt, m.in);
      if (drop) dropout_backward_add(dx, S.dX, a, b, m.in, d);
    }
#pragma omp barrier
    // 5. dB += s e^T u, by rows of B;  dA += du^T x~, by columns of A.
    thread_block(m.out, a, b);
    if (b > a) gemm(true, false, b - a, m.r, N, s, e + a, lde, u, ldu, (T)1, m.dB + (size_t)a * m.r, m.r);
    thread_block(m.in, a, b);
    if (b > a) gemm(true, false, m.r, b - a, N, (T)1, S.du, m.r, xt + a, m.in, (T)1, m.dA + a, m.in);
  }
}

}  // namespace pt
