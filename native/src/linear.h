// Linear layers (nn.Linear: y = x W^T + b, W stored (out, in) as in Hugging Face), forward and backward
// through the BLAS. The embedding lookup and its backward live here too: they are the same weight shape.
#pragma once
#include <cstdint>
#include "common.h"

namespace pt {

// y (N, out) += b (out) on every row: the bias of every linear layer (fp32 and bf16 weights alike).
template <typename T>
void add_bias(T* y, const T* b, int N, int out) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++)
    for (int o = 0; o < out; o++) y[(int64_t)n * out + o] += b[o];
}

// db (out) += sum over the N rows of dy (N, out), summed in double.
template <typename T>
void bias_backward(T* db, const T* dy, int N, int out) {
#pragma omp parallel for schedule(static)
  for (int o = 0; o < out; o++) {
    double s = 0;
    for (int n = 0; n < N; n++) s += dy[(int64_t)n * out + o];
    db[o] += (T)s;
  }
}

// y (N, out) = x (N, in) W^T + b;  W (out, in), b (out) or null
template <typename T>
void linear_forward(T* y, const T* x, const T* W, const T* b, int N, int in, int out) {
  gemm(false, true, N, out, in, (T)1, x, in, W, in, (T)0, y, out);
  if (b) add_bias(y, b, N, out);
}

// dx (N, in) = dy W (or += when accumulate; skipped when dx is null);  dW += dy^T x and db += sum_n dy,
// each skipped when null (a frozen weight, as under LoRA).
template <typename T>
void linear_backward(T* dx, T* dW, T* db, const T* dy, const T* x, const T* W, int N, int in, int out,
                     bool accumulate) {
  if (dx) gemm(false, false, N, in, out, (T)1, dy, out, W, in, accumulate ? (T)1 : (T)0, dx, in);
  if (dW) gemm(true, false, out, in, N, (T)1, dy, out, x, in, (T)1, dW, in);
  if (db) bias_backward(db, dy, N, out);
}

// x (N, C) = E[ids] ;  E (V, C)
template <typename T>
void embedding_forward(T* x, const int32_t* ids, const T* E, int64_t N, int C) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++)
    for (int c = 0; c < C; c++) x[n * C + c] = E[(int64_t)ids[n] * C + c];
}

// dE[ids[n]] += dx[n]; serial because ids repeat (N * C adds: negligible next to the GEMMs).
template <typename T>
void embedding_backward(T* dE, const T* dx, const int32_t* ids, int64_t N, int C) {
  for (int64_t n = 0; n < N; n++)
    for (int c = 0; c < C; c++) dE[(int64_t)ids[n] * C + c] += dx[n * C + c];
}

}  // namespace pt
