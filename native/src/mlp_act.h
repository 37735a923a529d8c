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

// f(x) and f'(x) of each activation, on the vectorisable exp / tanh / erf of mathx.h (std:: ones in fp64).
struct Silu {
  template <typename T> static T f(T x) { return x * sigmoidf_(x); }
  template <typename T> static T df(T x) {
    const T s = sigmoidf_(x);
    return s * ((T)1 + x * ((T)1 - s));
  }
};
struct GeluTanh {  // 0.5 x (1 + tanh(k (x + 0.044715 x^3))), k = sqrt(2 / pi)
  template <typename T> static T f(T x) { return (T)0.5 * x * ((T)1 + ttanh((T)0.7978845608028654 * (x + (T)0.044715 * x * x * x))); }
  template <typename T> static T df(T x) {
    const T k = (T)0.7978845608028654, t = ttanh(k * (x + (T)0.044715 * x * x * x));
    return (T)0.5 * ((T)1 + t) + (T)0.5 * x * ((T)1 - t * t) * k * ((T)1 + (T)3 * (T)0.044715 * x * x);
  }
};
struct Gelu {  // 0.5 x (1 + erf(x / sqrt(2)))
  template <typename T> static T f(T x) { return (T)0.5 * x * ((T)1 + terf(x * (T)0.7071067811865476)); }
  template <typename T> static T df(T x) {
    return (T)0.5 * ((T)1 + terf(x * (T)0.7071067811865476)) + x * texp((T)-0.5 * x * x) * (T)0.3989422804014327;
  }
};
struct Relu {
  template <typename T> static T f(T x) { return x > (T)0 ? x : (T)0; }
  template <typename T> static T df(T x) { return x > (T)0 ? (T)1 : (T)0; }
};

// Calls fn with the activation type of PT_ACT_* code act.
template <typename Fn>
void with_act(int act, Fn&& fn) {
  switch (act) {
    case PT_ACT_GELU_TANH: return fn(GeluTanh{});
    case PT_ACT_GELU: return fn(Gelu{});
    case PT_ACT_RELU: return fn(Relu{});
    default: return fn(Silu{});
  }
}

// a (N, I) from gu: (N, 2I) gated, (N, I) plain.
template <typename T>
void mlp_act_forward(T* a, const T* gu, int64_t N, int I, bool gated, int act) {
  const int w = gated ? 2 * I : I;
  with_act(act, [&](auto A) {
    using F = decltype(A);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
      const T* g = gu + n * w;
      T* ar = a + n * I;
      if (gated) {
        const T* u = g + I;
#pragma omp simd
        for (int i = 0; i < I; i++) ar[i] = F::f(g[i]) * u[i];
      } else {
#pragma omp simd
        for (int i = 0; i < I; i++) ar[i] = F::f(g[i]);
      }
    }
  });
}

// dgu from da: gated [da * up * f'(gate), da * f(gate)], plain da * f'(h).
template <typename T>
void mlp_act_backward(T* dgu, const T* da, const T* gu, int64_t N, int I, bool gated, int act) {
  const int w = gated ? 2 * I : I;
  with_act(act, [&](auto A) {
    using F = decltype(A);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
      const T* g = gu + n * w;
      const T* dar = da + n * I;
      T* dg = dgu + n * w;
      if (gated) {
        const T* u = g + I;
        T* du = dg + I;
#pragma omp simd
        for (int i = 0; i < I; i++) {
          dg[i] = dar[i] * u[i] * F::df(g[i]);
          du[i] = dar[i] * F::f(g[i]);
        }
      } else {
#pragma omp simd
        for (int i = 0; i < I; i++) dg[i] = dar[i] * F::df(g[i]);
      }
    }
  });
}

}  // namespace pt
