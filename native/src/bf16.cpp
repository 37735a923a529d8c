// bf16 operands with fp32 accumulation: conversions, the CPU check, and the matmul over oneDNN (the library
// PyTorch's CPU backend uses; it picks AVX512-BF16 or AMX kernels at run time). Built without oneDNN (its
// headers missing at build time) the support check reports 0 and gemm_bf16 throws.
// Not here: which GEMMs run in bf16 (decoder.cpp, head.h).
#include "bf16.h"
#include <cpuid.h>
#include <array>
#include <cstdio>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#ifdef PT_HAVE_DNNL
#include "oneapi/dnnl/dnnl.hpp"
#endif
#include "preftune.h"

namespace pt {

namespace {

inline bf16 bf16_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16)((u >> 16) | 0x40);  // NaN: keep it a quiet NaN
  return (bf16)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// dst[0, n) from src[0, n): 32 at a time with the AVX512-BF16 instruction where the build has it.
inline void convert_span(bf16* dst, const float* src, int64_t n) {
  int64_t i = 0;
#ifdef __AVX512BF16__
  for (; i + 32 <= n; i += 32) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
    _mm512_storeu_si512((void*)(dst + i), (__m512i)v);
  }
#endif
  for (; i < n; i++) dst[i] = bf16_of(src[i]);
}

struct Cpu {
  bool avx512_bf16 = false, amx_bf16 = false, amd = false;
  std::string vendor;
};

Cpu detect() {
  Cpu c;
  unsigned a, b, cx, d;
  if (!__get_cpuid(0, &a, &b, &cx, &d)) return c;
  const unsigned max_leaf = a;
  char v[13] = {0};
  std::memcpy(v, &b, 4);
  std::memcpy(v + 4, &d, 4);
  std::memcpy(v + 8, &cx, 4);
  c.vendor = v;
  c.amd = c.vendor == "AuthenticAMD";
  if (max_leaf < 7 || !__get_cpuid(1, &a, &b, &cx, &d) || !(cx & (1u << 27))) return c;  // no OSXSAVE
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  const uint64_t xcr0 = ((uint64_t)hi << 32) | lo;
  const bool os_avx512 = (xcr0 & 0xe6) == 0xe6;         // SSE, AVX, opmask, ZMM state saved by the OS
  const bool os_amx = (xcr0 & 0x60000) == 0x60000;      // TILECFG, TILEDATA
  __cpuid_count(7, 0, a, b, cx, d);
  const bool avx512f = b & (1u << 16);
  const bool amx_bf16 = (d & (1u << 22)) && (d & (1u << 24));  // AMX-BF16 and AMX-TILE
  __cpuid_count(7, 1, a, b, cx, d);
  const bool bf16 = a & (1u << 5);
  c.avx512_bf16 = os_avx512 && avx512f && bf16;
  c.amx_bf16 = os_amx && amx_bf16;
  return c;
}

const Cpu& cpu() {
  static const Cpu c = detect();
  return c;
}

bool disabled() {
  const char* e = std::getenv("PREFTUNE_NO_BF16");
  return e && *e && std::string(e) != "0";
}

#ifdef PT_HAVE_DNNL
using dt = dnnl::memory::data_type;
using dims = dnnl::memory::dims;

struct Dnnl {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
  std::mutex mu;
  // One matmul primitive per shape, strides, accumulate flag and thread count (oneDNN sizes its blocking to
  // the threads at creation). Token counts vary from batch to batch, so the map is bounded.
  std::map<std::array<int, 10>, dnnl::matmul> cache;
};
Dnnl& dnnl_state() {
  static Dnnl d;
  return d;
}
#endif

}  // namespace

void to_bf16(bf16* dst, const float* src, int64_t n) {
  constexpr int64_t kBlock = 1 << 14;
  if (n < 4 * kBlock || omp_in_parallel()) return convert_span(dst, src, n);
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < blocks; k++) {
    const int64_t i = k * kBlock;
    convert_span(dst + i, src + i, std::min(kBlock, n - i));
  }
}

void to_bf16_rows(bf16* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows, int64_t cols) {
  if (ldd == cols && lds == cols) return to_bf16(dst, src, rows * cols);
#pragma omp parallel for schedule(static) if (rows * cols >= (1 << 16) && !omp_in_parallel())
  for (int64_t r = 0; r < rows; r++) convert_span(dst + r * ldd, src + r * lds, cols);
}

void from_bf16(float* dst, const bf16* src, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= (1 << 16) && !omp_in_parallel())
  for (int64_t i = 0; i < n; i++) {
    const uint32_t u = (uint32_t)src[i] << 16;
    std::memcpy(dst + i, &u, 4);
  }
}

namespace {
#ifdef __AVX512F__
// 16 bf16 -> 16 floats (the maskz forms: GCC 12's unmasked ones warn from inside its own headers).
inline __m512 widen16(const bf16* p) {
  const __m512i w = _mm512_maskz_cvtepu16_epi32((__mmask16)0xffff, _mm256_loadu_si256((const __m256i*)p));
  return _mm512_castsi512_ps(_mm512_maskz_slli_epi32((__mmask16)0xffff, w, 16));
}
#endif
inline float widen1(bf16 h) {
  const uint32_t u = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// gemm_few_rows' loader for bf16 weights: 16 at a time widened in registers, 2 bytes a weight read from memory.
struct LoadBf16 {
  using T = bf16;
#ifdef __AVX512F__
  static __m512 vec(const bf16* p) { return widen16(p); }
#endif
  static float one(bf16 h) { return widen1(h); }
};
}  // namespace

void gemm_few_rows_bf16(int M, int N, int K, const float* A, int lda, const bf16* B, int ldb, float* C, int ldc) {
  gemm_few_rows_t<LoadBf16>(M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
}

void gemm_bf16(bool ta, bool tb, int M, int N, int K, const bf16* A, int lda, const bf16* B, int ldb, bool accumulate,
               float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
#ifdef PT_HAVE_DNNL
  Dnnl& d = dnnl_state();
  std::lock_guard<std::mutex> lock(d.mu);
  const dims ad = {M, K}, bd = {K, N}, cd = {M, N};
  const dims as = ta ? dims{1, lda} : dims{lda, 1};  // op(A) (M, K) over A stored (K, M) or (M, K)
  const dims bs = tb ? dims{1, ldb} : dims{ldb, 1};
  const dnnl::memory::desc a_md(ad, dt::bf16, as), b_md(bd, dt::bf16, bs), c_md(cd, dt::f32, dims{ldc, 1});
  try {
    const std::array<int, 10> key = {M, N, K, lda, ldb, ldc, (int)ta | (int)tb << 1 | (int)accumulate << 2,
                                     omp_get_max_threads(), 0, 0};
    auto it = d.cache.find(key);
    if (it == d.cache.end()) {
      if (d.cache.size() >= 256) d.cache.clear();
      dnnl::primitive_attr attr;
      if (accumulate) {
        dnnl::post_ops po;
        po.append_sum(1.0f);
        attr.set_post_ops(po);
      }
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), attr, d.eng);
      it = d.cache.emplace(key, dnnl::matmul(pd)).first;
    }
    dnnl::memory am(a_md, d.eng, const_cast<bf16*>(A)), bm(b_md, d.eng, const_cast<bf16*>(B)), cm(c_md, d.eng, C);
    it->second.execute(d.strm, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
    d.strm.wait();
  } catch (const dnnl::error& e) {
    if (e.status == dnnl_out_of_memory) throw std::bad_alloc();
    throw std::runtime_error(std::string("oneDNN bf16 matmul failed (") + e.what() + ") for M=" + std::to_string(M) +
                             " N=" + std::to_string(N) + " K=" + std::to_string(K));
  }
#else
  (void)ta; (void)tb; (void)K; (void)A; (void)lda; (void)B; (void)ldb; (void)accumulate; (void)C; (void)ldc;
  throw std::runtime_error("this build of preftune has no oneDNN (libdnnl-dev was missing): no bf16 compute");
#endif
}

int bf16_support() {
#ifdef PT_HAVE_DNNL
  if (disabled()) return 0;
  const Cpu& c = cpu();
  if (!c.avx512_bf16 && !c.amx_bf16) return 0;
  int bits = PT_BF16_AVX512;
  if (c.amx_bf16) bits |= PT_BF16_AMX;
  // Measured on the SmolLM2 shapes (bench/gemm_probe.cpp): AMD Zen 4 runs bf16 matmuls about 2x its fp32 rate; an
  // Intel Xeon with AVX512-BF16 but no AMX (AMX absent or hidden by a VM) issues the bf16 dot product at half the
  // rate of its fp32 FMAs, so bf16 GEMMs run at ~0.55x sgemm there. AMX runs them many times faster.
  if (c.amx_bf16 || c.amd) bits |= PT_BF16_FAST;
  return bits;
#else
  return 0;
#endif
}

const char* bf16_describe() {
  static std::string s;
  const Cpu& c = cpu();
  s = c.vendor.empty() ? std::string("unknown CPU") : c.vendor;
  s += c.amx_bf16 ? ", AMX-BF16" : ", no AMX-BF16";
  s += c.avx512_bf16 ? ", AVX512-BF16" : ", no AVX512-BF16";
#ifndef PT_HAVE_DNNL
  s += "; built without oneDNN (install libdnnl-dev and rebuild)";
#endif
  if (disabled()) s += "; disabled by PREFTUNE_NO_BF16";
  return s.c_str();
}

}  // namespace pt
