// The MLP's activation, forward and backward, for every family: gated a = f(gate) * up (SwiGLU with silu, GeGLU
// with GELU), or plain a = f(h) on fc1's output (Phi-2, GPT-NeoX, OPT). f is PT_ACT_*: silu, GELU with the tanh
// approximation (gelu_pytorch_tanh, gelu_new), exact GELU (erf), relu. Gated: gate and up come from one stacked
// projection, gu (N, 2I) holds gate in [:, :I] and up in [:, I:]; plain: gu (N, I).
#pragma once
#include <cmath>
#include <cstdint>
#include "preftune.h"
#include "mathx.h"

namespace pt {

// f(x) and f'(x) of activation `act`.
template <typename T>
inline T act_f(int act, T x) {
  switch (act) {
    case PT_ACT_GELU_TANH: {
      const T k = (T)0.7978845608028654;  // sqrt(2 / pi)
      return (T)0.5 * x * ((T)1 + std::tanh(k * (x + (T)0.044715 * x * x * x)));
    }
    case PT_ACT_GELU: return (T)0.5 * x * ((T)1 + std::erf(x * (T)0.7071067811865476));
    case PT_ACT_RELU: return x > (T)0 ? x : (T)0;
    default: return x * sigmoidf_(x);
  }
}
template <typename T>
inline T act_df(int act, T x) {
  switch (act) {
    case PT_ACT_GELU_TANH: {
      const T k = (T)0.7978845608028654;
      const T t = std::tanh(k * (x + (T)0.044715 * x * x * x));
      return (T)0.5 * ((T)1 + t) + (T)0.5 * x * ((T)1 - t * t) * k * ((T)1 + (T)3 * (T)0.044715 * x * x);
    }
    case PT_ACT_GELU:
      return (T)0.5 * ((T)1 + std::erf(x * (T)0.7071067811865476)) + x * std::exp((T)-0.5 * x * x) * (T)0.3989422804014327;
    case PT_ACT_RELU: return x > (T)0 ? (T)1 : (T)0;
    default: {
      const T s = sigmoidf_(x);
      return s * ((T)1 + x * ((T)1 - s));
    }
  }
}

// a (N, I) from gu: (N, 2I) gated, (N, I) plain.
template <typename T>
void mlp_act_forward(T* a, const T* gu, int64_t N, int I, bool gated, int act) {
  const int w = gated ? 2 * I : I;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    const T* g = gu + n * w;
    T* ar = a + n * I;
    if (!gated) {
      for (int i = 0; i < I; i++) ar[i] = act_f(act, g[i]);
    } else if (act == PT_ACT_SILU) {  // the hot Llama path, vectorised
      const T* u = g + I;
#pragma omp simd
      for (int i = 0; i < I; i++) ar[i] = g[i] * sigmoidf_(g[i]) * u[i];
    } else {
      const T* u = g + I;
      for (int i = 0; i < I; i++) ar[i] = act_f(act, g[i]) * u[i];
    }
  }
}

// dgu from da: gated [da * up * f'(gate), da * f(gate)], plain da * f'(h).
template <typename T>
void mlp_act_backward(T* dgu, const T* da, const T* gu, int64_t N, int I, bool gated, int act) {
  const int w = gated ? 2 * I : I;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    const T* g = gu + n * w;
    const T* dar = da + n * I;
    T* dg = dgu + n * w;
    if (!gated) {
      for (int i = 0; i < I; i++) dg[i] = dar[i] * act_df(act, g[i]);
      continue;
    }
    const T* u = g + I;
    T* du = dg + I;
    if (act == PT_ACT_SILU) {
#pragma omp simd
      for (int i = 0; i < I; i++) {
        T s = sigmoidf_(g[i]);
        dg[i] = dar[i] * u[i] * s * ((T)1 + g[i] * ((T)1 - s));
        du[i] = dar[i] * g[i] * s;
      }
    } else {
      for (int i = 0; i < I; i++) {
        dg[i] = dar[i] * u[i] * act_df(act, g[i]);
        du[i] = dar[i] * act_f(act, g[i]);
      }
    }
  }
}

}  // namespace pt
