// bf16 mixed precision for the GEMMs of training (the torch autocast recipe): operands rounded to bf16, products
// accumulated and written in fp32. Conversion kernels, the CPU check, and a matmul over oneDNN (bf16.cpp) whose
// primitives are cached per shape. Also the linear-layer forward and backward in this mode; the head's lives in
// head.h beside its fp32 code. Everything else of the model (norms, softmax, RoPE, attention, losses, AdamW,
// master weights and gradients) stays fp32.
// Not here: which layers use it and when weights are converted (decoder.cpp).
#pragma once
#include <cstdint>
#include "common.h"
#include "linear.h"

namespace pt {

using bf16 = uint16_t;

// fp32 -> bf16, round to nearest even (NaN stays NaN); n any length. Parallel over the team when not already
// inside a parallel region.
void to_bf16(bf16* dst, const float* src, int64_t n);
// rows x cols of src (leading dimension lds) -> dst (leading dimension ldd).
void to_bf16_rows(bf16* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows, int64_t cols);
void from_bf16(float* dst, const bf16* src, int64_t n);

// C (M, N) fp32 = op(A) (M, K) op(B) (K, N), plus C when accumulate; A and B bf16, row-major with leading
// dimensions, as gemm() in common.h. Throws std::runtime_error when oneDNN refuses, std::bad_alloc on memory.
void gemm_bf16(bool ta, bool tb, int M, int N, int K, const bf16* A, int lda, const bf16* B, int ldb, bool accumulate,
               float* C, int ldc);

// PT_BF16_* bits (preftune.h) of this CPU and build; 0 when PREFTUNE_NO_BF16 is set to anything but "" or "0".
int bf16_support();
// A line naming what was found (ISA, vendor, why it is or is not fast), for notes and benchmarks.
const char* bf16_describe();

// C (M, N) = A (M, K) B^T for a few rows of A (decoding) with B (N, K) held in bf16, in fp32 math: each row of B
// is read once at 2 bytes a weight, widened in registers and dotted with every row of A (gemm_few_rows' scheme).
void gemm_few_rows_bf16(int M, int N, int K, const float* A, int lda, const bf16* B, int ldb, float* C, int ldc);

inline float bf16_to_f32(bf16 v) {
  const uint32_t u = (uint32_t)v << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// x (N, C) = E[ids] with E (V, C) held in bf16.
inline void embedding_forward_bf16(float* x, const int32_t* ids, const bf16* E, int64_t N, int C) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++)
    for (int c = 0; c < C; c++) {
      const uint32_t u = (uint32_t)E[(int64_t)ids[n] * C + c] << 16;
      std::memcpy(x + n * C + c, &u, 4);
    }
}

// Scratch for the bf16 operands of one op: a = activations (rows x in), g = the gradient operand.
struct Bf16Scratch {
  Buf<bf16> a, g;
};

// y (N, out) = x (N, in) Wh^T + b with Wh (out, in) already bf16.
inline void linear_forward_bf16(float* y, const float* x, const bf16* Wh, const float* b, int N, int in, int out,
                                Bf16Scratch& s) {
  bf16* xb = s.a.need((size_t)N * in);
  to_bf16(xb, x, (int64_t)N * in);
  gemm_bf16(false, true, N, out, in, xb, in, Wh, in, false, y, out);
  if (b) add_bias(y, b, N, out);
}

// linear_backward (linear.h) with bf16 operands: dx = dy Wh (or +=), dW += dy^T x, db += sum dy (fp32, from dy
// itself). Wh is only read when dx is wanted.
inline void linear_backward_bf16(float* dx, float* dW, float* db, const float* dy, const float* x, const bf16* Wh, int N,
                                 int in, int out, bool accumulate, Bf16Scratch& s) {
  if (!dx && !dW && !db) return;
  bf16* dyb = s.g.need((size_t)N * out);
  if (dx || dW) to_bf16(dyb, dy, (int64_t)N * out);
  if (dx) gemm_bf16(false, false, N, in, out, dyb, out, Wh, in, accumulate, dx, in);
  if (dW) {
    bf16* xb = s.a.need((size_t)N * in);
    to_bf16(xb, x, (int64_t)N * in);
    gemm_bf16(true, false, out, in, N, dyb, out, xb, in, true, dW, in);
  }
  if (db) bias_backward(db, dy, N, out);
}

// y (N, out) = x W^T + b in fp32 math for a weight held only in bf16 (Wh): a few rows read it directly, more
// rows widen it into tile first (one layer's weight at a time, never the whole model).
inline void linear_forward_widen(float* y, const float* x, const bf16* Wh, const float* b, int N, int in, int out,
                                 Buf<float>& tile) {
  if (N <= kFewRows) {
    gemm_few_rows_bf16(N, out, in, x, in, Wh, in, y, out);
  } else {
    float* W = tile.need((size_t)out * in);
    from_bf16(W, Wh, (int64_t)out * in);
    gemm(false, true, N, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
  }
  if (b) add_bias(y, b, N, out);
}

// dx (N, in) = dy W (or += when accumulate) in fp32 math for a frozen weight held only in bf16.
inline void linear_backward_widen(float* dx, const float* dy, const bf16* Wh, int N, int in, int out, bool accumulate,
                                  Buf<float>& tile) {
  float* W = tile.need((size_t)out * in);
  from_bf16(W, Wh, (int64_t)out * in);
  gemm(false, false, N, in, out, 1.0f, dy, out, W, in, accumulate ? 1.0f : 0.0f, dx, in);
}

}  // namespace pt
