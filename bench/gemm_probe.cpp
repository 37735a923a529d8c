// GEMM throughput probe for the training step's matrix products: OpenBLAS sgemm (fp32) against oneDNN's matmul
// with bf16 operands and fp32 accumulation/output, on the SmolLM2-135M shapes at N = 4 x 512 tokens.
// Each linear layer of the step is three GEMMs: forward y = x W^T ("NT"), input gradient dx = dy W ("NN") and
// weight gradient dW += dy^T x ("TN", K = N tokens). The head runs in chunks of 256 rows (native/src/head.h).
// Not part of the addon; a measurement tool. Build and run (2 threads; OPENBLAS_CORETYPE as the addon sets it):
//   g++ -O3 -march=native -fopenmp -std=c++17 bench/gemm_probe.cpp -o /tmp/gemm_probe \
//       -L/usr/lib/x86_64-linux-gnu/openblas-openmp -Wl,-rpath,/usr/lib/x86_64-linux-gnu/openblas-openmp -lopenblas -ldnnl
//   OPENBLAS_CORETYPE=SkylakeX OMP_NUM_THREADS=2 /tmp/gemm_probe [reps]
// Prints one line per shape and form: GFLOP/s of sgemm, of the bf16 matmul alone (operands already bf16), of
// the bf16 matmul including the fp32 -> bf16 conversion of both operands (what the core pays: it converts per
// call), of the bf16 matmul with the weights pre-packed in oneDNN's blocked layout, and of oneDNN's fp32 matmul;
// then the totals over one training step's GEMMs (each shape weighted by how often a step runs it) as text and
// as one JSON line (bench/compare_trl.ts reads it).
#include <cblas.h>
#include <immintrin.h>
#include <omp.h>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
#include "oneapi/dnnl/dnnl.hpp"

using dt = dnnl::memory::data_type;

static double now() { return omp_get_wtime(); }

static void to_bf16(uint16_t* dst, const float* src, size_t n) {
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i += 16) {
    if (i + 16 <= n) {
      __m512 v = _mm512_loadu_ps(src + i);
      _mm256_storeu_si256((__m256i*)(dst + i), (__m256i)_mm512_cvtneps_pbh(v));
    } else {
      for (size_t j = i; j < n; j++) {
        uint32_t u;
        std::memcpy(&u, src + j, 4);
        dst[j] = (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
      }
    }
  }
}

struct Shape { const char* name; int M, N, K; bool ta, tb; int count; };  // count: times per training step

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 5;
  const int C = 576, I = 1536, V = 49152, QKV = 960, Ntok = 2048, L = 30, HC = 256;
  std::vector<Shape> shapes;
  auto lin = [&](const char* nm, int in, int out) {
    std::string f = std::string(nm);
    shapes.push_back({strdup((f + " fwd").c_str()), Ntok, out, in, false, true, L});
    shapes.push_back({strdup((f + " dx").c_str()), Ntok, in, out, false, false, L});
    shapes.push_back({strdup((f + " dW").c_str()), out, in, Ntok, true, false, L});
  };
  lin("qkv", C, QKV);
  lin("o", C, C);
  lin("gate|up", C, 2 * I);
  lin("down", I, C);
  // The head, per 256-row chunk (8 chunks per step; forward once, backward recomputes the logits).
  shapes.push_back({"head fwd", HC, V, C, false, true, 16});
  shapes.push_back({"head dH", HC, C, V, false, false, 8});
  shapes.push_back({"head dW", V, C, HC, true, false, 8});
  // The head as one 2048-row GEMM (what it would cost unchunked).
  shapes.push_back({"head fwd x2048", Ntok, V, C, false, true, 0});

  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  std::printf("threads %d, BLAS core %s, oneDNN %d.%d.%d\n", omp_get_max_threads(), openblas_get_corename(),
              dnnl_version()->major, dnnl_version()->minor, dnnl_version()->patch);
  std::printf("%-16s %6s %6s %6s  %8s %8s %8s %8s %8s\n", "gemm", "M", "N", "K", "sgemm", "bf16", "bf16+cvt", "bf16pack",
              "f32dnnl");
  double t_s = 0, t_b = 0, t_bc = 0, flops_step = 0;
  std::string impl;
  for (const Shape& s : shapes) {
    const size_t a_n = (size_t)s.M * s.K, b_n = (size_t)s.K * s.N, c_n = (size_t)s.M * s.N;
    std::vector<float> A(a_n), B(b_n), Cm(c_n);
    for (size_t i = 0; i < a_n; i++) A[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; i < b_n; i++) B[i] = (float)((i * 40503u) % 997) / 997.0f - 0.5f;
    std::vector<uint16_t> Ab(a_n), Bb(b_n);
    to_bf16(Ab.data(), A.data(), a_n);
    to_bf16(Bb.data(), B.data(), b_n);
    const int lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N;
    const double flops = 2.0 * s.M * s.N * s.K;
    auto best = [&](auto fn) {
      fn();
      double b = 1e30;
      for (int r = 0; r < reps; r++) {
        double t0 = now();
        fn();
        b = std::min(b, now() - t0);
      }
      return b;
    };
    const float beta = s.ta ? 1.0f : 0.0f;  // dW accumulates
    double ts = best([&] {
      cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans, s.M, s.N, s.K, 1.0f,
                  A.data(), lda, B.data(), ldb, beta, Cm.data(), s.N);
    });
    // oneDNN: A as (M, K) with strides for op(A), B as (K, N) with strides for op(B).
    dnnl::memory::dims ad = {s.M, s.K}, bd = {s.K, s.N}, cd = {s.M, s.N};
    dnnl::memory::dims as = s.ta ? dnnl::memory::dims{1, s.M} : dnnl::memory::dims{s.K, 1};
    dnnl::memory::dims bs = s.tb ? dnnl::memory::dims{1, s.K} : dnnl::memory::dims{s.N, 1};
    auto mk = [&](dt t) {
      dnnl::memory::desc a(ad, t, as), b(bd, t, bs), c(cd, dt::f32, dnnl::memory::dims{s.N, 1});
      dnnl::primitive_attr attr;
      if (beta != 0) { dnnl::post_ops po; po.append_sum(1.0f); attr.set_post_ops(po); }
      return std::make_pair(dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, c), attr, eng), std::make_tuple(a, b, c));
    };
    auto [pdb, descb] = mk(dt::bf16);
    auto [pdf, descf] = mk(dt::f32);
    dnnl::matmul mb(pdb), mf(pdf);
    dnnl::memory am(std::get<0>(descb), eng, Ab.data()), bm(std::get<1>(descb), eng, Bb.data()),
        cm(std::get<2>(descb), eng, Cm.data());
    dnnl::memory amf(std::get<0>(descf), eng, A.data()), bmf(std::get<1>(descf), eng, B.data());
    double tb = best([&] {
      mb.execute(strm, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
      strm.wait();
    });
    double tbc = best([&] {
      to_bf16(Ab.data(), A.data(), a_n);
      to_bf16(Bb.data(), B.data(), b_n);
      mb.execute(strm, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
      strm.wait();
    });
    // Weights (the B operand) in oneDNN's own blocked layout, reordered once: the best case of caching.
    dnnl::memory::desc bany(bd, dt::bf16, dnnl::memory::format_tag::any);
    dnnl::primitive_attr attrp;
    if (beta != 0) { dnnl::post_ops po; po.append_sum(1.0f); attrp.set_post_ops(po); }
    dnnl::matmul::primitive_desc pdp(dnnl::matmul::desc(std::get<0>(descb), bany, std::get<2>(descb)), attrp, eng);
    dnnl::memory bpk(pdp.weights_desc(), eng);
    dnnl::reorder(bm, bpk).execute(strm, bm, bpk);
    dnnl::matmul mp(pdp);
    double tp = best([&] {
      mp.execute(strm, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bpk}, {DNNL_ARG_DST, cm}});
      strm.wait();
    });
    double tf = best([&] {
      mf.execute(strm, {{DNNL_ARG_SRC, amf}, {DNNL_ARG_WEIGHTS, bmf}, {DNNL_ARG_DST, cm}});
      strm.wait();
    });
    std::printf("%-16s %6d %6d %6d  %8.1f %8.1f %8.1f %8.1f %8.1f  %s\n", s.name, s.M, s.N, s.K, flops / ts / 1e9,
                flops / tb / 1e9, flops / tbc / 1e9, flops / tp / 1e9, flops / tf / 1e9, pdb.impl_info_str());
    impl = pdb.impl_info_str();
    t_s += ts * s.count;
    t_b += tb * s.count;
    t_bc += tbc * s.count;
    flops_step += flops * s.count;
    std::fflush(stdout);
  }
  std::printf("one step's GEMMs (%.0f GFLOP): sgemm %.2f s (%.1f GFLOP/s), bf16 %.2f s (%.1f), bf16+cvt %.2f s (%.1f)\n",
              flops_step / 1e9, t_s, flops_step / t_s / 1e9, t_b, flops_step / t_b / 1e9, t_bc, flops_step / t_bc / 1e9);
  std::printf("{\"threads\": %d, \"step_gflop\": %.1f, \"sgemm_gflops\": %.1f, \"bf16_gflops\": %.1f, \"bf16_cvt_gflops\": %.1f, "
              "\"bf16_impl\": \"%s\"}\n",
              omp_get_max_threads(), flops_step / 1e9, flops_step / t_s / 1e9, flops_step / t_b / 1e9, flops_step / t_bc / 1e9,
              impl.c_str());
  return 0;
}
