// Finite-difference gradient checks of every op family, run on the fp64 instantiation of the very
// templates the fp32 model uses. L(x) = sum(r * f(x)) for a random r; the analytic gradient from the
// op's backward is compared with central differences over every element of every input.
// Not a test runner: tests call pt_gradcheck through the addon and assert on the returned error.
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>
#include "preftune.h"
#include "attention.h"
#include "dora.h"
#include "head.h"
#include "linear.h"
#include "lora.h"
#include "mlp_act.h"
#include "norm.h"
#include "rope.h"

using namespace pt;
using Vec = std::vector<double>;

namespace {

struct Check {
  std::vector<Vec> inputs;
  std::function<Vec(std::vector<Vec>&)> forward;                          // -> output
  std::function<std::vector<Vec>(std::vector<Vec>&, const Vec&)> backward;  // (inputs, dout) -> d inputs
};

Vec randn(std::mt19937_64& rng, size_t n, double scale = 1.0, double shift = 0.0) {
  std::normal_distribution<double> d(0.0, 1.0);
  Vec v(n);
  for (auto& x : v) x = shift + scale * d(rng);
  return v;
}

double run(Check c, std::mt19937_64& rng) {
  Vec out = c.forward(c.inputs);
  Vec r = randn(rng, out.size());
  auto loss = [&](std::vector<Vec>& in) {
    Vec o = c.forward(in);
    double s = 0;
    for (size_t i = 0; i < o.size(); i++) s += r[i] * o[i];
    return s;
  };
  std::vector<Vec> analytic = c.backward(c.inputs, r);
  double worst = 0;
  const double h = 1e-6;
  for (size_t k = 0; k < c.inputs.size(); k++) {
    double maxdiff = 0, maxref = 1e-12;
    for (size_t j = 0; j < c.inputs[k].size(); j++) {
      double keep = c.inputs[k][j];
      c.inputs[k][j] = keep + h;
      double lp = loss(c.inputs);
      c.inputs[k][j] = keep - h;
      double lm = loss(c.inputs);
      c.inputs[k][j] = keep;
      double num = (lp - lm) / (2 * h);
      maxdiff = std::max(maxdiff, std::fabs(num - analytic[k][j]));
      maxref = std::max(maxref, std::fabs(num));
    }
    worst = std::max(worst, maxdiff / maxref);
  }
  return worst;
}

// The model's Norm: RMSNorm (unit_offset: Gemma's 1 + w) or LayerNorm with its bias (the third input).
Check norm_check(std::mt19937_64& rng, bool in_place, bool layer = false, bool unit_offset = false) {
  const int N = 3, H = 2, D = 6, ld = H * D + 3;  // strided heads inside wider rows
  Norm<double> nm;
  nm.layer = layer;
  nm.eps = 1e-5;
  nm.off = unit_offset ? 1.0 : 0.0;
  Check c;
  c.inputs = {randn(rng, N * ld, 1.0, 0.5), randn(rng, D, 0.3, unit_offset ? 0.0 : 1.0)};
  if (layer) c.inputs.push_back(randn(rng, D));
  c.forward = [=](std::vector<Vec>& in) {
    Vec y(N * ld, 0.0), rstd(N * H);
    nm.forward(y.data(), rstd.data(), in[0].data(), in[1].data(), layer ? in[2].data() : nullptr, N, H, D, ld);
    return y;
  };
  c.backward = [=](std::vector<Vec>& in, const Vec& dy) {
    Vec y(N * ld, 0.0), rstd(N * H), dx(N * ld, 0.0), dw(D, 0.0), db(D, 0.0);
    const double* b = layer ? in[2].data() : nullptr;
    nm.forward(y.data(), rstd.data(), in[0].data(), in[1].data(), b, N, H, D, ld);
    Vec dyc = dy;
    for (int n = 0; n < N; n++)  // columns outside the heads carry no output
      for (int j = H * D; j < ld; j++) dyc[n * ld + j] = 0;
    // In place (dx aliasing dy) is how the Qwen3 q/k norms call it.
    if (in_place) {
      nm.backward(dyc.data(), dw.data(), db.data(), dyc.data(), in[0].data(), in[1].data(), rstd.data(), N, H, D, ld, false);
      dx = dyc;
    } else {
      nm.backward(dx.data(), dw.data(), db.data(), dyc.data(), in[0].data(), in[1].data(), rstd.data(), N, H, D, ld, false);
    }
    for (int n = 0; n < N; n++)
      for (int j = H * D; j < ld; j++) dx[n * ld + j] = 0;
    if (layer) return std::vector<Vec>{dx, dw, db};
    return std::vector<Vec>{dx, dw};
  };
  // Outputs outside the heads are 0 regardless of x, so the forward must report them as 0 too.
  return c;
}

// scaled: yarn's tables, whose cos and sin carry the attention factor (a scaled rotation, not a rotation).
// R < HS: partial rotary over the first R dims of each head.
Check rope_check(std::mt19937_64& rng, bool scaled, int R = 8) {
  const int N = 4, H = 3, HS = 8, col0 = 2, ld = col0 + H * HS + 1;
  std::vector<double> cosv, sinv;
  if (scaled) {
    RopeScaling s;
    s.type = PT_ROPE_YARN; s.factor = 4; s.original_max = 8; s.attention_factor = 1.25;
    rope_tables(cosv, sinv, 16, rope_inv_freq(s, R), (float)s.attention_factor);
  } else {
    rope_tables(cosv, sinv, 16, R, 10000.0f);
  }
  std::vector<int32_t> pos = {0, 5, 2, 15};
  Check c;
  c.inputs = {randn(rng, N * ld)};
  c.forward = [=](std::vector<Vec>& in) {
    Vec x = in[0];
    rope_forward(x.data(), pos.data(), cosv.data(), sinv.data(), N, col0, H, HS, ld, R);
    return x;
  };
  c.backward = [=](std::vector<Vec>&, const Vec& dy) {
    Vec dx = dy;
    rope_backward(dx.data(), pos.data(), cosv.data(), sinv.data(), N, col0, H, HS, ld, R);
    return std::vector<Vec>{dx};
  };
  return c;
}

// window 0: full causal attention; window > 0: a sliding window shorter than the long sequence and its blocks.
// sc: a score scale other than 1/sqrt(HS) and a soft-cap (Gemma 2).
Check attention_check(std::mt19937_64& rng, int window, AttnScore sc = {}) {
  // A sequence longer than one 128-row block, an empty one and a short one, with grouped KV heads.
  const int NH = 4, NKV = 2, HS = 4, QKV = (NH + 2 * NKV) * HS, AO = NH * HS;
  std::vector<SeqSpan> seqs = {{0, 133}, {133, 0}, {133, 6}};
  const int B = 3, N = 139;
  Check c;
  c.inputs = {randn(rng, (size_t)N * QKV)};
  c.forward = [=](std::vector<Vec>& in) {
    Vec out((size_t)N * AO), lse((size_t)N * NH);
    attention_forward(out.data(), lse.data(), in[0].data(), seqs.data(), B, NH, NKV, HS, window, sc);
    return out;
  };
  c.backward = [=](std::vector<Vec>& in, const Vec& dout) {
    Vec out((size_t)N * AO), lse((size_t)N * NH), dqkv((size_t)N * QKV);
    attention_forward(out.data(), lse.data(), in[0].data(), seqs.data(), B, NH, NKV, HS, window, sc);
    attention_backward(dqkv.data(), dout.data(), out.data(), lse.data(), in[0].data(), seqs.data(), B, NH, NKV, HS, window, sc);
    return std::vector<Vec>{dqkv};
  };
  return c;
}

// The MLP activation: gated (f(gate) * up) or plain (f(h)), f = PT_ACT_*. relu's kink at 0 is never sampled.
Check mlp_act_check(std::mt19937_64& rng, bool gated, int act) {
  const int N = 3, I = 5, W = gated ? 2 * I : I;
  Check c;
  c.inputs = {randn(rng, N * W, 2.0)};
  for (double& v : c.inputs[0]) if (std::fabs(v) < 1e-3) v = 0.5;
  c.forward = [=](std::vector<Vec>& in) {
    Vec a(N * I);
    mlp_act_forward(a.data(), in[0].data(), N, I, gated, act);
    return a;
  };
  c.backward = [=](std::vector<Vec>& in, const Vec& da) {
    Vec dgu(N * W);
    mlp_act_backward(dgu.data(), da.data(), in[0].data(), N, I, gated, act);
    return std::vector<Vec>{dgu};
  };
  return c;
}

Check linear_check(std::mt19937_64& rng) {
  const int N = 3, in_f = 4, out_f = 5;
  Check c;
  c.inputs = {randn(rng, N * in_f), randn(rng, out_f * in_f), randn(rng, out_f)};
  c.forward = [=](std::vector<Vec>& in) {
    Vec y(N * out_f);
    linear_forward(y.data(), in[0].data(), in[1].data(), in[2].data(), N, in_f, out_f);
    return y;
  };
  c.backward = [=](std::vector<Vec>& in, const Vec& dy) {
    Vec dx(N * in_f), dW(out_f * in_f, 0.0), db(out_f, 0.0);
    linear_backward(dx.data(), dW.data(), db.data(), dy.data(), in[0].data(), in[1].data(), N, in_f, out_f, false);
    return std::vector<Vec>{dx, dW, db};
  };
  return c;
}

// post: lm_head's bias (the third input) and a logit soft-cap (Gemma 2), or neither.
Check head_check(std::mt19937_64& rng, bool post = false) {
  const int R = 5, C = 3, V = 7;
  std::vector<int32_t> labels = {3, 0, -1, 6, 3};
  Check c;
  c.inputs = {randn(rng, R * C, 1.5), randn(rng, V * C, 1.5)};
  if (post) c.inputs.push_back(randn(rng, V));
  auto hp = [=](std::vector<Vec>& in, double* db) {
    HeadPost<double> p;
    if (post) { p.bias = in[2].data(); p.dbias = db; p.softcap = 2.0; }
    return p;
  };
  c.forward = [=](std::vector<Vec>& in) {
    Vec logp(R, 0.0), lse(R, 0.0);
    Buf<double> work;
    head_forward<double>(logp.data(), lse.data(), nullptr, nullptr, nullptr, in[0].data(), labels.data(),
                         in[1].data(), R, C, V, work, nullptr, hp(in, nullptr));
    return logp;
  };
  c.backward = [=](std::vector<Vec>& in, const Vec& dlogp) {
    Vec logp(R, 0.0), lse(R, 0.0), dH(R * C), dW(V * C, 0.0), db(V, 0.0);
    Buf<double> work;
    head_forward<double>(logp.data(), lse.data(), nullptr, nullptr, nullptr, in[0].data(), labels.data(),
                         in[1].data(), R, C, V, work, nullptr, hp(in, nullptr));
    Vec g = dlogp;
    for (int r = 0; r < R; r++) if (labels[r] < 0) g[r] = 0;
    head_backward<double>(dH.data(), dW.data(), g.data(), in[0].data(), labels.data(), lse.data(), in[1].data(),
                          R, C, V, work, nullptr, hp(in, db.data()));
    if (post) return std::vector<Vec>{dH, dW, db};
    return std::vector<Vec>{dH, dW};
  };
  return c;
}

Check embedding_check(std::mt19937_64& rng) {
  const int V = 5, C = 3, N = 6;
  std::vector<int32_t> ids = {1, 4, 1, 0, 2, 1};
  Check c;
  c.inputs = {randn(rng, V * C)};
  c.forward = [=](std::vector<Vec>& in) {
    Vec x(N * C);
    embedding_forward(x.data(), ids.data(), in[0].data(), N, C);
    return x;
  };
  c.backward = [=](std::vector<Vec>&, const Vec& dx) {
    Vec dE(V * C, 0.0);
    embedding_backward(dE.data(), dx.data(), ids.data(), N, C);
    return std::vector<Vec>{dE};
  };
  return c;
}

// A frozen base linear plus a two-member LoRA group writing strided column blocks of a wider output, as
// q|k|v does: y = x W^T, then y[:, col_j : col_j + out_j] += s (x A_j^T) B_j^T. W is a constant here (the
// base is frozen under LoRA); x, the stacked A and both B are checked.
Check lora_check(std::mt19937_64& rng) {
  const int N = 4, in = 5, r = 2, ldy = 9;
  const double s = 1.7;
  const Vec W = randn(rng, (size_t)ldy * in);
  Check c;
  c.inputs = {randn(rng, N * in), randn(rng, 2 * r * in), randn(rng, 3 * r), randn(rng, 2 * r)};
  auto group = [=](std::vector<Vec>& in_, Vec* dA, Vec* dB0, Vec* dB1) {
    LoraGroup<double> g;
    g.members = 2; g.in = in; g.r = r;
    g.col[0] = 1; g.out[0] = 3;  // columns 1..3
    g.col[1] = 6; g.out[1] = 2;  // columns 6..7; 0, 4, 5 and 8 are the base's alone
    g.A = in_[1].data(); g.B[0] = in_[2].data(); g.B[1] = in_[3].data();
    if (dA) { g.dA = dA->data(); g.dB[0] = dB0->data(); g.dB[1] = dB1->data(); }
    return g;
  };
  c.forward = [=](std::vector<Vec>& in_) {
    Vec y((size_t)N * ldy), u((size_t)N * 2 * r);
    linear_forward(y.data(), in_[0].data(), W.data(), (const double*)nullptr, N, in, ldy);
    lora_forward(y.data(), ldy, u.data(), in_[0].data(), group(in_, nullptr, nullptr, nullptr), N, s);
    return y;
  };
  c.backward = [=](std::vector<Vec>& in_, const Vec& dy) {
    Vec y((size_t)N * ldy), u((size_t)N * 2 * r), du((size_t)N * 2 * r), dx((size_t)N * in);
    Vec dA(in_[1].size(), 0.0), dB0(in_[2].size(), 0.0), dB1(in_[3].size(), 0.0);
    LoraGroup<double> g = group(in_, &dA, &dB0, &dB1);
    linear_forward(y.data(), in_[0].data(), W.data(), (const double*)nullptr, N, in, ldy);
    lora_forward(y.data(), ldy, u.data(), in_[0].data(), g, N, s);
    linear_backward<double>(dx.data(), nullptr, nullptr, dy.data(), in_[0].data(), W.data(), N, in, ldy, false);
    lora_backward(dx.data(), du.data(), dy.data(), ldy, in_[0].data(), u.data(), g, N, s);
    return std::vector<Vec>{dx, dA, dB0, dB1};
  };
  return c;
}

// The frozen head's input gradient (what LoRA training runs instead of head_backward).
Check head_input_check(std::mt19937_64& rng) {
  const int R = 5, C = 3, V = 7;
  std::vector<int32_t> labels = {3, 0, -1, 6, 3};
  const Vec W = randn(rng, V * C);
  Check c;
  c.inputs = {randn(rng, R * C)};
  c.forward = [=](std::vector<Vec>& in) {
    Vec logp(R, 0.0), lse(R, 0.0);
    Buf<double> work;
    head_forward<double>(logp.data(), lse.data(), nullptr, nullptr, nullptr, in[0].data(), labels.data(), W.data(),
                         R, C, V, work);
    return logp;
  };
  c.backward = [=](std::vector<Vec>& in, const Vec& dlogp) {
    Vec logp(R, 0.0), lse(R, 0.0), dH(R * C);
    Buf<double> work;
    head_forward<double>(logp.data(), lse.data(), nullptr, nullptr, nullptr, in[0].data(), labels.data(), W.data(),
                         R, C, V, work);
    Vec g = dlogp;
    for (int r = 0; r < R; r++) if (labels[r] < 0) g[r] = 0;
    head_backward<double>(dH.data(), nullptr, g.data(), in[0].data(), labels.data(), lse.data(), W.data(), R, C, V, work);
    return std::vector<Vec>{dH};
  };
  return c;
}


// One LoRA member on the member-wise path (dora.h) writing columns [2, 5) of a 7-wide frozen base linear with a
// bias: plain LoRA with dropout, DoRA, or DoRA with dropout. The dropout mask is fixed by its key, so it is a
// constant of the checked function. DoRA's row norms are computed once from the initial A and B and then held:
// PEFT detaches them, so the analytic gradient is that of the function with the norm a constant.
Check member_check(std::mt19937_64& rng, bool dora, float p) {
  const int N = 5, in = 4, r = 2, ldy = 7, col = 2, out = 3;
  const double s = 1.3;
  const Vec W = randn(rng, (size_t)ldy * in), bias = randn(rng, ldy);
  Check c;
  c.inputs = {randn(rng, N * in), randn(rng, r * in), randn(rng, out * r)};
  if (dora) c.inputs.push_back(randn(rng, out, 0.3, 1.5));  // magnitude m
  Vec norm(out), rowbuf((size_t)omp_get_max_threads() * in);
  if (dora) dora_norms(norm.data(), W.data() + (size_t)col * in, c.inputs[1].data(), c.inputs[2].data(), out, in, r, s,
                       rowbuf.data());
  Dropout d;
  d.p = p;
  d.key = 0x5eed1234abcdULL;
  auto member = [=](std::vector<Vec>& in_, Vec* dA, Vec* dB, Vec* dm) {
    LoraMember<double> m;
    m.in = in; m.r = r; m.out = out; m.col = col;
    m.A = in_[1].data(); m.B = in_[2].data();
    if (dA) { m.dA = dA->data(); m.dB = dB->data(); }
    if (dora) {
      m.mag = in_[3].data();
      m.dmag = dm ? dm->data() : nullptr;
      m.norm = norm.data();
      m.W = W.data() + (size_t)col * in;
      m.bias = bias.data() + col;
    }
    return m;
  };
  struct Scratch { Vec xd, t, w, du, dX; };
  auto scratch = [=](Scratch& k) {
    k.xd.assign((size_t)N * in, 0); k.t.assign((size_t)N * out, 0); k.w.assign((size_t)N * out, 0);
    k.du.assign((size_t)N * r, 0); k.dX.assign((size_t)N * in, 0);
    MemberScratch<double> S;
    S.xd = k.xd.data(); S.t = k.t.data(); S.w = k.w.data(); S.du = k.du.data(); S.dX = k.dX.data();
    return S;
  };
  auto forward = [=](std::vector<Vec>& in_, Vec& y, Vec& u, const LoraMember<double>& m) {
    Scratch k;
    linear_forward(y.data(), in_[0].data(), W.data(), bias.data(), N, in, ldy);
    member_forward(y.data(), ldy, u.data(), r, in_[0].data(), m, N, s, d, scratch(k));
  };
  c.forward = [=](std::vector<Vec>& in_) {
    Vec y((size_t)N * ldy), u((size_t)N * r);
    forward(in_, y, u, member(in_, nullptr, nullptr, nullptr));
    return y;
  };
  c.backward = [=](std::vector<Vec>& in_, const Vec& dy) {
    Vec y((size_t)N * ldy), u((size_t)N * r), dx((size_t)N * in, 0.0);
    Vec dA(in_[1].size(), 0.0), dB(in_[2].size(), 0.0), dm(dora ? in_[3].size() : 0, 0.0);
    LoraMember<double> m = member(in_, &dA, &dB, &dm);
    forward(in_, y, u, m);
    linear_backward<double>(dx.data(), nullptr, nullptr, dy.data(), in_[0].data(), W.data(), N, in, ldy, false);
    Scratch k;
    member_backward(dx.data(), dy.data(), ldy, in_[0].data(), u.data(), r, m, N, s, d, scratch(k));
    std::vector<Vec> g{dx, dA, dB};
    if (dora) g.push_back(dm);
    return g;
  };
  return c;
}

// dora_norms against ||W + s B A||_row computed the plain way; the largest relative difference.
double dora_norm_error(std::mt19937_64& rng) {
  const int out = 6, in = 9, r = 3;
  const double s = 0.7;
  const Vec W = randn(rng, (size_t)out * in), A = randn(rng, (size_t)r * in), B = randn(rng, (size_t)out * r);
  Vec n(out), rowbuf((size_t)omp_get_max_threads() * in);
  dora_norms(n.data(), W.data(), A.data(), B.data(), out, in, r, s, rowbuf.data());
  double worst = 0;
  for (int o = 0; o < out; o++) {
    double q = 0;
    for (int i = 0; i < in; i++) {
      double v = W[(size_t)o * in + i];
      for (int k = 0; k < r; k++) v += s * B[(size_t)o * r + k] * A[(size_t)k * in + i];
      q += v * v;
    }
    worst = std::max(worst, std::fabs(n[o] - std::sqrt(q)) / std::sqrt(q));
  }
  return worst;
}

// The dropout mask: the kept fraction of 20000 draws at p = 0.25 (returned as |fraction - 0.75|), and that a
// kept element is scaled by 1 / (1 - p) and a dropped one is 0.
double dropout_stats_error() {
  const int N = 100, in = 200;
  Vec x((size_t)N * in, 1.0), y((size_t)N * in);
  Dropout d;
  d.p = 0.25f;
  d.key = 42;
  dropout_rows(y.data(), x.data(), 0, N, in, d);
  double kept = 0, bad = 0;
  for (double v : y) {
    if (v != 0) kept++;
    if (v != 0 && std::fabs(v - 1.0 / 0.75) > 1e-12) bad = 1;
  }
  return bad + std::fabs(kept / (N * in) - 0.75);
}

}  // namespace

extern "C" double pt_gradcheck(const char* op, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const std::string name = op;
  if (name == "rmsnorm") return run(norm_check(rng, false), rng);
  if (name == "rmsnorm_inplace") return run(norm_check(rng, true), rng);
  if (name == "rmsnorm_unit_offset") return run(norm_check(rng, false, false, true), rng);
  if (name == "layernorm") return run(norm_check(rng, false, true), rng);
  if (name == "layernorm_inplace") return run(norm_check(rng, true, true), rng);
  if (name == "rope") return run(rope_check(rng, false), rng);
  if (name == "rope_scaled") return run(rope_check(rng, true), rng);
  if (name == "rope_partial") return run(rope_check(rng, false, 4), rng);
  if (name == "attention") return run(attention_check(rng, 0), rng);
  if (name == "attention_window") return run(attention_check(rng, 5), rng);
  if (name == "attention_softcap") return run(attention_check(rng, 5, AttnScore{0.3, 1.5}), rng);
  if (name == "swiglu") return run(mlp_act_check(rng, true, PT_ACT_SILU), rng);
  if (name == "geglu_tanh") return run(mlp_act_check(rng, true, PT_ACT_GELU_TANH), rng);
  if (name == "gelu_tanh") return run(mlp_act_check(rng, false, PT_ACT_GELU_TANH), rng);
  if (name == "gelu") return run(mlp_act_check(rng, false, PT_ACT_GELU), rng);
  if (name == "relu") return run(mlp_act_check(rng, false, PT_ACT_RELU), rng);
  if (name == "linear") return run(linear_check(rng), rng);
  if (name == "head") return run(head_check(rng), rng);
  if (name == "head_bias_softcap") return run(head_check(rng, true), rng);
  if (name == "embedding") return run(embedding_check(rng), rng);
  if (name == "lora") return run(lora_check(rng), rng);
  if (name == "head_input") return run(head_input_check(rng), rng);
  if (name == "lora_dropout") return run(member_check(rng, false, 0.3f), rng);
  if (name == "dora") return run(member_check(rng, true, 0.0f), rng);
  if (name == "dora_dropout") return run(member_check(rng, true, 0.3f), rng);
  if (name == "dora_norm") return dora_norm_error(rng);
  if (name == "dropout_stats") return dropout_stats_error();
  return -1.0;
}
