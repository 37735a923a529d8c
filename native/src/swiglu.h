// SwiGLU activation of the Llama MLP, forward and backward: a = silu(gate) * up, silu(g) = g * sigmoid(g).
// gate and up come from one stacked projection: gu (N, 2I) holds gate in [:, :I] and up in [:, I:].
#pragma once
#include <cstdint>
#include "mathx.h"

namespace pt {

template <typename T>
void swiglu_forward(T* a, const T* gu, int64_t N, int I) {  // a (N, I)
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    const T* g = gu + n * 2 * I;
    const T* u = g + I;
    T* ar = a + n * I;
    for (int i = 0; i < I; i++) ar[i] = g[i] * sigmoidf_(g[i]) * u[i];
  }
}

// dgu (N, 2I) = [da * u * s * (1 + g (1 - s)), da * g * s] with s = sigmoid(g)
template <typename T>
void swiglu_backward(T* dgu, const T* da, const T* gu, int64_t N, int I) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    const T* g = gu + n * 2 * I;
    const T* u = g + I;
    const T* dar = da + n * I;
    T* dg = dgu + n * 2 * I;
    T* du = dg + I;
    for (int i = 0; i < I; i++) {
      T s = sigmoidf_(g[i]);
      dg[i] = dar[i] * u[i] * s * ((T)1 + g[i] * ((T)1 - s));
      du[i] = dar[i] * g[i] * s;
    }
  }
}

}  // namespace pt
