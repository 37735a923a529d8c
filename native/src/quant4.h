// bitsandbytes' 4-bit weight format (QLoRA): the NF4 and FP4 code books, blockwise quantization (blocks of 64
// elements, one fp32 absmax per block, nearest code of w / absmax, two nibbles per byte with the first element in
// the high nibble), double quantization of those absmax values (minus their mean, 8-bit codes of bitsandbytes'
// signed dynamic map in blocks of 256 with one fp32 scale each), and dequantization of a run of elements back to
// fp32 (code * absmax, in fp32, as bitsandbytes dequantizes before its matmul).
// Also the frozen-base linear layer over such a weight: x W^T and dy W with W dequantized a tile of rows at a time
// into fp32 scratch and multiplied by the BLAS (never a full fp32 copy of a matrix).
// Not here: which tensors are quantized and who owns the storage (decoder.cpp); loading (TypeScript streams the
// safetensors chunks into pt_model_quantize_4bit).
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>
#include "common.h"
#include "optim.h"

namespace pt {

constexpr int kQ4Block = 64;    // elements per absmax (bitsandbytes' default blocksize)
constexpr int kQ4Block2 = 256;  // absmax values per nested scale (bitsandbytes' double-quant blocksize)

// Nibble -> value. NF4 is sorted (nibble 7 is 0); FP4 is sign bit + 2 exponent bits + 1 mantissa bit, not sorted.
inline constexpr float kNF4[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
    -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
    0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};
inline constexpr float kFP4[16] = {
    0.0f, 0.005208333333f, 0.6666666667f, 1.0f, 0.3333333333f, 0.5f, 0.1666666667f, 0.25f,
    -0.0f, -0.005208333333f, -0.6666666667f, -1.0f, -0.3333333333f, -0.5f, -0.1666666667f, -0.25f};

enum Q4Type { Q4_NF4 = 0, Q4_FP4 = 1 };
inline const float* q4_code(int type) { return type == Q4_FP4 ? kFP4 : kNF4; }

// bitsandbytes' signed dynamic 8-bit map (create_dynamic_map(signed=True)), 256 values ascending: optim.h's.
inline const std::vector<float>& dynamic_map() {
  static const std::vector<float> map(dynamic_map(true).code, dynamic_map(true).code + 256);
  return map;
}

// The nibble of a scaled value s in [-1, 1]. NF4: the nearest code, a value exactly between two codes taking the
// lower (torch.bucketize against the midpoints, as bitsandbytes' CPU path). FP4: bitsandbytes' decision tree on
// |s| (strict > at each midpoint, so ties take the smaller magnitude) plus the sign bit when s < 0.
inline uint8_t q4_nibble(float s, int type) {
  if (type == Q4_FP4) {
    const float a = std::fabs(s);
    uint8_t m;
    if (a > 0.29166667f) m = a > 0.583333f ? (a > 0.8333333f ? 0b011 : 0b010) : (a > 0.4166667f ? 0b101 : 0b100);
    else m = a > 0.0859375f ? (a > 0.20833333f ? 0b111 : 0b110) : (a > 0.00260417f ? 0b001 : 0b000);
    return s < 0 ? (uint8_t)(m | 0b1000) : m;
  }
  static const auto mids = [] {
    std::array<float, 15> m{};
    for (int i = 0; i < 15; i++) m[i] = (kNF4[i] + kNF4[i + 1]) / 2.0f;
    return m;
  }();
  uint8_t k = 0;
  while (k < 15 && mids[k] < s) k++;
  return k;
}

// Quantizes x (n elements, the first on a block boundary of its tensor) into packed (n / 2 bytes, rounded up: an
// odd tail is padded with the code of 0) and absmax (one per block of 64; the last block may be partial).
// Scaling multiplies by the fp32 reciprocal of absmax (a partial last block divides, as bitsandbytes' torch path).
inline void quantize4(const float* x, int64_t n, int type, uint8_t* packed, float* absmax) {
  const int64_t nb = (n + kQ4Block - 1) / kQ4Block;
  const uint8_t zero = type == Q4_FP4 ? 0 : 7;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < nb; b++) {
    const int64_t e0 = b * kQ4Block, len = std::min<int64_t>(kQ4Block, n - e0);
    float am = 0;
    for (int64_t i = 0; i < len; i++) am = std::max(am, std::fabs(x[e0 + i]));
    absmax[b] = am;
    const float inv = 1.0f / std::max(am, 1e-38f), div = std::max(am, 1e-38f);
    uint8_t q[kQ4Block + 1];
    for (int64_t i = 0; i < len; i++) {
      const float s = len == kQ4Block ? x[e0 + i] * inv : x[e0 + i] / div;
      q[i] = q4_nibble(std::min(1.0f, std::max(-1.0f, s)), type);
    }
    q[len] = zero;
    for (int64_t i = 0; i < len; i += 2) packed[(e0 + i) / 2] = (uint8_t)(q[i] << 4 | q[i + 1]);
  }
}

// Index of the code nearest to s in a sorted map (first of equals, as torch.argmin over |s - code|).
inline uint8_t nearest8(const std::vector<float>& map, float s) {
  const auto it = std::lower_bound(map.begin(), map.end(), s);
  if (it == map.begin()) return 0;
  if (it == map.end()) return 255;
  const int hi = (int)(it - map.begin()), lo = hi - 1;
  return std::fabs(s - map[lo]) <= std::fabs(s - map[hi]) ? (uint8_t)lo : (uint8_t)hi;
}

// Double quantization of nb absmax values: offset = their mean; c = absmax - offset quantized 8-bit blockwise
// (blocks of 256, absmax2 = max |c| per block, code = nearest dynamic-map value of c * (1 / absmax2)).
inline void quantize_absmax8(const float* absmax, int64_t nb, uint8_t* q, float* absmax2, float* offset) {
  double sum = 0;
  for (int64_t b = 0; b < nb; b++) sum += absmax[b];
  const float off = nb ? (float)(sum / (double)nb) : 0.0f;
  *offset = off;
  const auto& map = dynamic_map();
  const int64_t n2 = (nb + kQ4Block2 - 1) / kQ4Block2;
  for (int64_t k = 0; k < n2; k++) {
    const int64_t b0 = k * kQ4Block2, len = std::min<int64_t>(kQ4Block2, nb - b0);
    float am = 0;
    for (int64_t i = 0; i < len; i++) am = std::max(am, std::fabs(absmax[b0 + i] - off));
    absmax2[k] = am;
    const float inv = 1.0f / std::max(am, 1e-38f);
    for (int64_t i = 0; i < len; i++) q[b0 + i] = nearest8(map, std::min(1.0f, std::max(-1.0f, (absmax[b0 + i] - off) * inv)));
  }
}

// One quantized tensor (its own flat element order, e.g. (out, in) row-major): the packed nibbles and the block
// scales, plain (absmax) or nested (qabs, absmax2, offset).
struct Q4Tensor {
  int64_t size = 0;            // elements
  int64_t loaded = 0;          // elements quantized so far (loading goes front to back)
  uint8_t* packed = nullptr;   // (size + 1) / 2
  float* absmax = nullptr;     // (nblocks) unless nested
  uint8_t* qabs = nullptr;     // (nblocks) nested: 8-bit codes of absmax - offset
  float* absmax2 = nullptr;    // (ceil(nblocks / 256)) nested
  float offset = 0;            // nested: the mean of the absmax values
  int64_t nblocks() const { return (size + kQ4Block - 1) / kQ4Block; }
  // absmax of block b, in fp32 (nested: dynamic code * absmax2 + offset, as bitsandbytes' dequantize_4bit).
  float scale(int64_t b) const {
    if (!qabs) return absmax[b];
    return dynamic_map()[qabs[b]] * absmax2[b / kQ4Block2] + offset;
  }
};

// out[0, n) = the dequantized elements [e0, e0 + n) of t. e0 even.
inline void dequant4(const Q4Tensor& t, const float* code, int64_t e0, int64_t n, float* out) {
  int64_t i = 0;
  while (i < n) {
    const int64_t e = e0 + i, b = e / kQ4Block;
    const int64_t len = std::min(n - i, (b + 1) * kQ4Block - e);
    const float s = t.scale(b);
    const uint8_t* p = t.packed + e / 2;
    int64_t j = 0;
    if (e & 1) { out[i] = code[p[0] & 15] * s; j = 1; p++; }
    for (; j + 1 < len; j += 2, p++) {
      out[i + j] = code[*p >> 4] * s;
      out[i + j + 1] = code[*p & 15] * s;
    }
    if (j < len) out[i + j] = code[*p >> 4] * s;
    i += len;
  }
}

// The matrix of one base GEMM held in 4 bits: up to three tensors stacked by rows (q|k|v, gate|up), each
// (rows[j], cols).
struct Q4Matrix {
  int n = 0;                   // 0: not quantized
  const Q4Tensor* t[3] = {nullptr, nullptr, nullptr};
  int rows[3] = {0, 0, 0};
  int cols = 0;
  const float* code = kNF4;
};

// tile (r1 - r0, cols) = rows [r0, r1) of W dequantized.
inline void dequant_rows(const Q4Matrix& W, int r0, int r1, float* tile) {
  const int64_t C = W.cols;
#pragma omp parallel for schedule(static)
  for (int r = r0; r < r1; r++) {
    int j = 0, base = 0;
    while (r >= base + W.rows[j]) base += W.rows[j++];
    dequant4(*W.t[j], W.code, (int64_t)(r - base) * C, C, tile + (int64_t)(r - r0) * C);
  }
}

// Rows of W per tile: about 1M floats (4 MB) of scratch, at least 16 rows.
inline int q4_tile_rows(const Q4Matrix& W, int out) {
  return std::min(out, std::max(16, (1 << 20) / std::max(1, W.cols)));
}

// y (N, out) = x (N, in) W^T + b, W dequantized a tile of rows at a time.
inline void linear_forward_q4(float* y, const float* x, const Q4Matrix& W, const float* b, int N, int in, int out,
                              Buf<float>& tile) {
  const int R = q4_tile_rows(W, out);
  float* t = tile.need((size_t)R * in);
  for (int r0 = 0; r0 < out; r0 += R) {
    const int r1 = std::min(out, r0 + R);
    dequant_rows(W, r0, r1, t);
    gemm(false, true, N, r1 - r0, in, 1.0f, x, in, t, in, 0.0f, y + r0, out);
  }
  if (b) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
      for (int o = 0; o < out; o++) y[(int64_t)n * out + o] += b[o];
  }
}

// dx (N, in) = dy (N, out) W (or += when accumulate), the input gradient of a frozen 4-bit weight: a sum over
// tiles of rows, dx += dy[:, r0:r1] W[r0:r1, :].
inline void linear_backward_q4(float* dx, const float* dy, const Q4Matrix& W, int N, int in, int out, bool accumulate,
                               Buf<float>& tile) {
  const int R = q4_tile_rows(W, out);
  float* t = tile.need((size_t)R * in);
  for (int r0 = 0; r0 < out; r0 += R) {
    const int r1 = std::min(out, r0 + R);
    dequant_rows(W, r0, r1, t);
    gemm(false, false, N, in, r1 - r0, 1.0f, dy + r0, out, t, in, (accumulate || r0 > 0) ? 1.0f : 0.0f, dx, in);
  }
}

}  // namespace pt
