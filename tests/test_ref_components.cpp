// Each reference component against an independent naive implementation in the test (plain
// loops, double): rmsnorm, causal conv1d, selective scan, attention (GQA, causal, offsets,
// windows), RoPE, MLP, router and MoE.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "core/error.hpp"
#include "reference/attention.hpp"
#include "reference/causal_conv1d.hpp"
#include "reference/mlp.hpp"
#include "reference/moe.hpp"
#include "reference/rmsnorm.hpp"
#include "reference/selective_scan.hpp"
#include "test_ref_util.hpp"

namespace jb::ref {
namespace {

using namespace jb::ref::testing;
using MatD = Mat<double>;
using VecD = Vec<double>;

// ------------------------------------------------------------------------------------------
// RMSNorm

MatD naive_rmsnorm(const MatD& x, const VecD& w, double eps) {
  MatD y(x.rows(), x.cols());
  for (int64_t i = 0; i < x.rows(); ++i) {
    double ss = 0;
    for (int64_t j = 0; j < x.cols(); ++j) ss += x(i, j) * x(i, j);
    const double s = 1.0 / std::sqrt(ss / x.cols() + eps);
    for (int64_t j = 0; j < x.cols(); ++j) y(i, j) = w(j) * x(i, j) * s;
  }
  return y;
}

TEST(RefRmsNorm, MatchesNaive) {
  const Mat<float> x = rand_mat<float>(7, 33, 1, 1);
  const Vec<float> w = rand_vec<float>(33, 1, 2);
  const MatD ref = naive_rmsnorm(x.cast<double>(), w.cast<double>(), 1e-6);
  EXPECT_LT(rel_l2(rmsnorm(x, w, 1e-6, Round::None), ref), 1e-6);
  EXPECT_LT(rel_l2(rmsnorm<double>(x.cast<double>(), w.cast<double>(), 1e-6, Round::None), ref),
            1e-14);
}

TEST(RefRmsNorm, EpsIsUsed) {
  // Rows with mean square 1e-8, far below eps = 1e-6: eps dominates and must be honoured.
  const Mat<float> x = rand_mat<float>(3, 16, 2, 1, 1e-4f);
  const Vec<float> w = Vec<float>::Ones(16);
  const MatD with_eps = naive_rmsnorm(x.cast<double>(), w.cast<double>(), 1e-6);
  const MatD without = naive_rmsnorm(x.cast<double>(), w.cast<double>(), 0.0);
  EXPECT_LT(rel_l2(rmsnorm(x, w, 1e-6, Round::None), with_eps), 1e-6);
  EXPECT_GT(rel_l2(with_eps, without), 0.5);
}

TEST(RefRmsNorm, Bf16RoundsOnceAtOutput) {
  const Mat<float> x = rand_mat<float>(4, 40, 3, 1);
  const Vec<float> w = rand_vec<float>(40, 3, 2);
  const Mat<float> exact = rmsnorm(x, w, 1e-6, Round::None);
  const Mat<float> lp = rmsnorm(x, w, 1e-6, Round::Bf16);
  Mat<float> expect = exact.unaryExpr([](float v) { return round_bf16(v); });
  EXPECT_TRUE(bitwise_equal(lp, expect));
  EXPECT_FALSE(bitwise_equal(lp, exact));
}

TEST(RefRmsNorm, RejectsWrongWeightSize) {
  EXPECT_THROW(rmsnorm(rand_mat<float>(2, 8, 1, 1), rand_vec<float>(7, 1, 1), 1e-6, Round::None),
               Error);
}

// ------------------------------------------------------------------------------------------
// Causal conv1d

// y[t,c] = act(b[c] + sum_j w[c,j] * xfull[t0 + t - (K-1) + j, c]) over the whole sequence xfull
// with zeros before position 0.
MatD naive_conv(const MatD& xfull, const MatD& w, const VecD& b, bool silu_act) {
  const int64_t L = xfull.rows(), D = xfull.cols(), K = w.cols();
  MatD y(L, D);
  for (int64_t t = 0; t < L; ++t)
    for (int64_t c = 0; c < D; ++c) {
      double acc = b.size() ? b(c) : 0.0;
      for (int64_t j = 0; j < K; ++j) {
        const int64_t src = t - (K - 1) + j;
        if (src >= 0) acc += w(c, j) * xfull(src, c);
      }
      y(t, c) = silu_act ? naive_silu(acc) : acc;
    }
  return y;
}

TEST(RefConv1d, MatchesNaiveWithAndWithoutBiasAndSilu) {
  const Mat<float> x = rand_mat<float>(9, 5, 4, 1);
  const Mat<float> w = rand_mat<float>(5, 4, 4, 2, 0.5f);
  const Vec<float> b = rand_vec<float>(5, 4, 3);
  for (bool act : {false, true})
    for (bool with_bias : {false, true}) {
      const Vec<float> bias = with_bias ? b : Vec<float>();
      const MatD ref = naive_conv(x.cast<double>(), w.cast<double>(), bias.cast<double>(), act);
      EXPECT_LT(rel_l2(causal_conv1d<float>(x, w, bias, nullptr, act, Round::None), ref), 1e-6)
          << "silu " << act << " bias " << with_bias;
    }
}

TEST(RefConv1d, CrossCorrelationNoFlip) {
  // jamba-spec §7 item 20: weight[:, K-1] multiplies the newest input, weight[:, 0] the oldest.
  const Mat<float> x = rand_mat<float>(6, 2, 5, 1);
  Mat<float> w_newest = Mat<float>::Zero(2, 4), w_oldest = Mat<float>::Zero(2, 4);
  w_newest.col(3).setOnes();
  w_oldest.col(0).setOnes();
  const Mat<float> y_new =
      causal_conv1d<float>(x, w_newest, Vec<float>(), nullptr, false, Round::None);
  const Mat<float> y_old =
      causal_conv1d<float>(x, w_oldest, Vec<float>(), nullptr, false, Round::None);
  for (int64_t t = 0; t < 6; ++t)
    for (int64_t c = 0; c < 2; ++c) {
      EXPECT_EQ(y_new(t, c), x(t, c));
      EXPECT_EQ(y_old(t, c), t >= 3 ? x(t - 3, c) : 0.0f);
    }
}

TEST(RefConv1d, StateCarriesAcrossCallsBitExact) {
  const int64_t L = 11, D = 6, K = 4;
  const Mat<float> x = rand_mat<float>(L, D, 6, 1);
  const Mat<float> w = rand_mat<float>(D, K, 6, 2, 0.5f);
  const Vec<float> b = rand_vec<float>(D, 6, 3);
  Mat<float> state_full = Mat<float>::Zero(D, K);
  const Mat<float> full = causal_conv1d<float>(x, w, b, &state_full, true, Round::None);
  // Null state = zero history.
  EXPECT_TRUE(bitwise_equal(full, causal_conv1d<float>(x, w, b, nullptr, true, Round::None)));
  // Pieces of 2, 1 (a decode step), 1, 5, 2 with the state carried.
  Mat<float> state = Mat<float>::Zero(D, K);
  Mat<float> pieces(L, D);
  int64_t t0 = 0;
  for (int64_t n : {2, 1, 1, 5, 2}) {
    pieces.middleRows(t0, n) =
        causal_conv1d<float>(x.middleRows(t0, n), w, b, &state, true, Round::None);
    t0 += n;
    // The state is the last K pre-conv inputs, oldest first, zero-padded on the left.
    for (int64_t j = 0; j < K; ++j)
      for (int64_t c = 0; c < D; ++c) {
        const int64_t src = t0 - K + j;
        EXPECT_EQ(state(c, j), src >= 0 ? x(src, c) : 0.0f) << "after " << t0 << " tokens";
      }
  }
  EXPECT_TRUE(bitwise_equal(pieces, full));
  EXPECT_TRUE(bitwise_equal(state, state_full));
}

TEST(RefConv1d, Bf16RoundsOutputOnly) {
  const Mat<float> x = rand_mat<float>(5, 7, 7, 1);
  const Mat<float> w = rand_mat<float>(7, 4, 7, 2);
  const Vec<float> b = rand_vec<float>(7, 7, 3);
  const Mat<float> exact = causal_conv1d<float>(x, w, b, nullptr, true, Round::None);
  const Mat<float> lp = causal_conv1d<float>(x, w, b, nullptr, true, Round::Bf16);
  EXPECT_TRUE(bitwise_equal(lp, exact.unaryExpr([](float v) { return round_bf16(v); }).eval()));
}

// ------------------------------------------------------------------------------------------
// Selective scan

struct NaiveScan {
  MatD x, dt, A, B, C, z, h0;
  VecD dt_bias, Dskip;
};

MatD naive_scan(const NaiveScan& s, MatD* h_out) {
  const int64_t L = s.x.rows(), D = s.x.cols(), N = s.A.cols();
  MatD h = s.h0;
  MatD y(L, D);
  for (int64_t t = 0; t < L; ++t)
    for (int64_t c = 0; c < D; ++c) {
      const double delta = naive_softplus(s.dt(t, c) + s.dt_bias(c));
      double acc = 0;
      for (int64_t n = 0; n < N; ++n) {
        h(c, n) = std::exp(delta * s.A(c, n)) * h(c, n) + delta * s.B(t, n) * s.x(t, c);
        acc += h(c, n) * s.C(t, n);
      }
      acc += s.Dskip(c) * s.x(t, c);
      if (s.z.size()) acc *= naive_silu(s.z(t, c));
      y(t, c) = acc;
    }
  if (h_out) *h_out = h;
  return y;
}

ScanInputs<float> random_scan(int64_t L, int64_t D, int64_t N, uint64_t seed, bool gated) {
  ScanInputs<float> in;
  in.x = rand_mat<float>(L, D, seed, 1);
  in.dt = rand_mat<float>(L, D, seed, 2, 0.5f);
  in.dt_bias = rand_vec<float>(D, seed, 3, 0.5f);
  in.A = -rand_uniform_mat<float>(D, N, seed, 4, 0.5f, 4.0f);
  in.B = rand_mat<float>(L, N, seed, 5);
  in.C = rand_mat<float>(L, N, seed, 6);
  in.Dskip = rand_vec<float>(D, seed, 7);
  if (gated) in.z = rand_mat<float>(L, D, seed, 8);
  return in;
}

NaiveScan to_naive(const ScanInputs<float>& in, const Mat<float>& h0) {
  return {in.x.cast<double>(), in.dt.cast<double>(),      in.A.cast<double>(),
          in.B.cast<double>(), in.C.cast<double>(),       in.z.cast<double>(),
          h0.cast<double>(),   in.dt_bias.cast<double>(), in.Dskip.cast<double>()};
}

TEST(RefScan, MatchesNaiveFromZeroAndFromState) {
  for (bool gated : {false, true}) {
    const ScanInputs<float> in = random_scan(13, 6, 5, 8, gated);
    for (bool from_state : {false, true}) {
      const Mat<float> h0 =
          from_state ? rand_mat<float>(6, 5, 8, 9) : Mat<float>(Mat<float>::Zero(6, 5));
      Mat<float> h = h0;
      MatD h_ref;
      const MatD ref = naive_scan(to_naive(in, h0), &h_ref);
      const Mat<float> y = selective_scan(in, &h, Round::None);
      EXPECT_LT(rel_l2(y, ref), 1e-6) << "gated " << gated << " from_state " << from_state;
      EXPECT_LT(rel_l2(h, h_ref), 1e-6);
    }
  }
}

TEST(RefScan, ChunkedEqualsOneShotBitExact) {
  const ScanInputs<float> in = random_scan(12, 4, 3, 10, true);
  Mat<float> h_full = Mat<float>::Zero(4, 3);
  const Mat<float> full = selective_scan(in, &h_full, Round::None);
  Mat<float> h = Mat<float>::Zero(4, 3);
  Mat<float> pieces(12, 4);
  int64_t t0 = 0;
  for (int64_t n : {5, 1, 6}) {
    ScanInputs<float> part = in;
    part.x = in.x.middleRows(t0, n);
    part.dt = in.dt.middleRows(t0, n);
    part.B = in.B.middleRows(t0, n);
    part.C = in.C.middleRows(t0, n);
    part.z = in.z.middleRows(t0, n);
    pieces.middleRows(t0, n) = selective_scan(part, &h, Round::None);
    t0 += n;
  }
  EXPECT_TRUE(bitwise_equal(pieces, full));
  EXPECT_TRUE(bitwise_equal(h, h_full));
}

// One channel, one state, B = C = x = 1, D = 0, zero state: y = delta = softplus(dt + bias).
template <class T>
T scan_delta(T dt, T bias) {
  ScanInputs<T> in;
  in.x = Mat<T>::Ones(1, 1);
  in.dt = Mat<T>::Constant(1, 1, dt);
  in.dt_bias = Vec<T>::Constant(1, bias);
  in.A = Mat<T>::Constant(1, 1, T(-1));
  in.B = Mat<T>::Ones(1, 1);
  in.C = Mat<T>::Ones(1, 1);
  in.Dskip = Vec<T>::Zero(1);
  return selective_scan<T>(in, nullptr, Round::None)(0, 0);
}

TEST(RefScan, SoftplusThreshold20AndBiasBeforeSoftplus) {
  // Linear branch above 20: exact, in both precisions.
  EXPECT_EQ(scan_delta<float>(25.0f, 0.0f), 25.0f);
  EXPECT_EQ(scan_delta<double>(25.0, 0.0), 25.0);
  EXPECT_EQ(scan_delta<double>(20.5, 0.0), 20.5);
  // log1p branch at 19.9: log1p(exp(19.9)) = 19.9 + 2.27e-9, visible in double only.
  EXPECT_NEAR(scan_delta<double>(19.9, 0.0), std::log1p(std::exp(19.9)), 1e-14);
  EXPECT_GT(scan_delta<double>(19.9, 0.0) - 19.9, 2e-9);
  EXPECT_NEAR(scan_delta<double>(-3.0, 0.0), std::log1p(std::exp(-3.0)), 1e-16);
  EXPECT_NEAR(scan_delta<float>(-3.0f, 0.0f), std::log1p(std::exp(-3.0)), 1e-8);
  // The bias is added before softplus: 10 + 15 = 25 -> 25, not softplus(10) + 15.
  EXPECT_EQ(scan_delta<float>(10.0f, 15.0f), 25.0f);
  EXPECT_EQ(scan_delta<double>(10.0, 15.0), 25.0);
}

TEST(RefScan, Bf16RoundsOutputOnce) {
  const ScanInputs<float> in = random_scan(6, 5, 4, 11, true);
  const Mat<float> exact = selective_scan<float>(in, nullptr, Round::None);
  Mat<float> h_lp = Mat<float>::Zero(5, 4), h_exact = Mat<float>::Zero(5, 4);
  const Mat<float> lp = selective_scan(in, &h_lp, Round::Bf16);
  selective_scan(in, &h_exact, Round::None);
  EXPECT_TRUE(bitwise_equal(lp, exact.unaryExpr([](float v) { return round_bf16(v); }).eval()));
  EXPECT_TRUE(bitwise_equal(h_lp, h_exact));  // the state stays in fp32
}

// ------------------------------------------------------------------------------------------
// Attention

// Plain-loop GQA attention; query i at absolute position q_pos0 + i; window 0 = none.
MatD naive_attention(const MatD& q, const MatD& k, const MatD& v, int64_t H, int64_t Hkv,
                     int64_t q_pos0, bool causal, int64_t window = 0) {
  const int64_t hd = q.cols() / H, Lq = q.rows(), Tk = k.rows();
  MatD out = MatD::Zero(Lq, H * hd);
  for (int64_t j = 0; j < H; ++j) {
    const int64_t g = j * Hkv / H;  // repeat_interleave: heads [g*H/Hkv, (g+1)*H/Hkv) use g
    for (int64_t i = 0; i < Lq; ++i) {
      const int64_t pos = q_pos0 + i;
      std::vector<double> s(Tk, -INFINITY);
      double mx = -INFINITY;
      for (int64_t t = 0; t < Tk; ++t) {
        if (causal && t > pos) continue;
        if (window > 0 && pos - t >= window) continue;
        double dot = 0;
        for (int64_t e = 0; e < hd; ++e) dot += q(i, j * hd + e) * k(t, g * hd + e);
        s[t] = dot / std::sqrt(double(hd));
        mx = std::max(mx, s[t]);
      }
      double sum = 0;
      for (int64_t t = 0; t < Tk; ++t) sum += std::isinf(s[t]) ? 0.0 : std::exp(s[t] - mx);
      for (int64_t t = 0; t < Tk; ++t) {
        if (std::isinf(s[t])) continue;
        const double p = std::exp(s[t] - mx) / sum;
        for (int64_t e = 0; e < hd; ++e) out(i, j * hd + e) += p * v(t, g * hd + e);
      }
    }
  }
  return out;
}

TEST(RefAttention, GqaRatiosCausalAndOffsets) {
  const int64_t H = 8, hd = 8;
  for (int64_t Hkv : {8, 2, 1}) {    // GQA ratios 1, 4, 8
    for (int64_t q_pos0 : {0, 7}) {  // prefill from scratch and a continuation
      const int64_t Lq = 5, Tk = q_pos0 + Lq;
      const uint64_t seed = 20 + static_cast<uint64_t>(Hkv + q_pos0);
      const Mat<float> q = rand_mat<float>(Lq, H * hd, seed, 1);
      const Mat<float> k = rand_mat<float>(Tk, Hkv * hd, seed, 2);
      const Mat<float> v = rand_mat<float>(Tk, Hkv * hd, seed, 3);
      for (bool causal : {true, false}) {
        const MatD ref = naive_attention(q.cast<double>(), k.cast<double>(), v.cast<double>(), H,
                                         Hkv, q_pos0, causal);
        const Mat<float> got = attention<float>(q, k, v, H, Hkv, q_pos0, causal, Round::None);
        EXPECT_LT(rel_l2(got, ref), 1e-6)
            << "Hkv " << Hkv << " q_pos0 " << q_pos0 << " causal " << causal;
        const Mat<double> got_d =
            attention<double>(q.cast<double>(), k.cast<double>(), v.cast<double>(), H, Hkv, q_pos0,
                              causal, Round::None);
        EXPECT_LT(rel_l2(got_d, ref), 1e-13);
      }
    }
  }
}

TEST(RefAttention, CausalMaskReallyMasks) {
  // Changing a future key/value must not change earlier outputs, and must change later ones.
  const int64_t H = 2, Hkv = 1, hd = 4, L = 6;
  const Mat<float> q = rand_mat<float>(L, H * hd, 30, 1);
  const Mat<float> k = rand_mat<float>(L, Hkv * hd, 30, 2);
  Mat<float> v = rand_mat<float>(L, Hkv * hd, 30, 3);
  const Mat<float> a = attention<float>(q, k, v, H, Hkv, 0, true, Round::None);
  v.row(4).array() += 1.0f;
  const Mat<float> b = attention<float>(q, k, v, H, Hkv, 0, true, Round::None);
  EXPECT_TRUE(bitwise_equal(a.topRows(4), b.topRows(4)));
  EXPECT_GT((a.bottomRows(2) - b.bottomRows(2)).norm(), 1e-3);
}

TEST(RefAttention, SlidingWindow) {
  const int64_t H = 4, Hkv = 2, hd = 4, Lq = 6, q_pos0 = 3;
  const Mat<float> q = rand_mat<float>(Lq, H * hd, 31, 1);
  const Mat<float> k = rand_mat<float>(Lq + q_pos0, Hkv * hd, 31, 2);
  const Mat<float> v = rand_mat<float>(Lq + q_pos0, Hkv * hd, 31, 3);
  const MatD ref = naive_attention(q.cast<double>(), k.cast<double>(), v.cast<double>(), H, Hkv,
                                   q_pos0, true, 3);
  EXPECT_LT(rel_l2(attention<float>(q, k, v, H, Hkv, q_pos0, true, Round::None, 3), ref), 1e-6);
  const MatD full = naive_attention(q.cast<double>(), k.cast<double>(), v.cast<double>(), H, Hkv,
                                    q_pos0, true, 0);
  EXPECT_GT(rel_l2(ref, full), 1e-3);  // the window changes the result
}

TEST(RefAttention, Bf16RoundsOutputOnly) {
  const Mat<float> q = rand_mat<float>(4, 16, 32, 1);
  const Mat<float> k = rand_mat<float>(4, 8, 32, 2);
  const Mat<float> v = rand_mat<float>(4, 8, 32, 3);
  const Mat<float> exact = attention<float>(q, k, v, 2, 1, 0, true, Round::None);
  const Mat<float> lp = attention<float>(q, k, v, 2, 1, 0, true, Round::Bf16);
  EXPECT_TRUE(bitwise_equal(lp, exact.unaryExpr([](float x) { return round_bf16(x); }).eval()));
}

TEST(RefAttention, KvCacheAppendGrows) {
  KvCache<float> cache;
  const Mat<float> k = rand_mat<float>(7, 6, 33, 1), v = rand_mat<float>(7, 6, 33, 2);
  cache.append(k.topRows(3), v.topRows(3));
  for (int64_t t = 3; t < 7; ++t) cache.append(k.middleRows(t, 1), v.middleRows(t, 1));
  ASSERT_EQ(cache.len, 7);
  EXPECT_TRUE(bitwise_equal(cache.k.topRows(7), k));
  EXPECT_TRUE(bitwise_equal(cache.v.topRows(7), v));
}

// ------------------------------------------------------------------------------------------
// RoPE

TEST(RefRope, MatchesRotateHalfFormula) {
  const int64_t heads = 3, hd = 8, L = 5, pos0 = 11;
  const double theta = 10000.0;
  const Mat<double> x = rand_mat<double>(L, heads * hd, 40, 1);
  Mat<double> got = x;
  apply_rope(got, heads, hd, pos0, theta);
  for (int64_t t = 0; t < L; ++t)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < hd / 2; ++i) {
        const double ang = double(pos0 + t) * std::pow(theta, -2.0 * i / hd);
        const double a = x(t, h * hd + i), b = x(t, h * hd + i + hd / 2);
        EXPECT_NEAR(got(t, h * hd + i), a * std::cos(ang) - b * std::sin(ang), 1e-12);
        EXPECT_NEAR(got(t, h * hd + i + hd / 2), b * std::cos(ang) + a * std::sin(ang), 1e-12);
      }
  // float reference (HF computes the angles in fp32) stays close to the double one.
  Mat<float> got_f = x.cast<float>();
  apply_rope(got_f, heads, hd, pos0, theta);
  EXPECT_LT(rel_l2(got_f, got), 1e-6);
}

TEST(RefRope, DotProductDependsOnlyOnRelativePosition) {
  const int64_t hd = 16;
  const Mat<double> q = rand_mat<double>(1, hd, 41, 1), k = rand_mat<double>(1, hd, 41, 2);
  auto dot_at = [&](int64_t pq, int64_t pk) {
    Mat<double> qr = q, kr = k;
    apply_rope(qr, 1, hd, pq, 10000.0);
    apply_rope(kr, 1, hd, pk, 10000.0);
    return qr.row(0).dot(kr.row(0));
  };
  EXPECT_NEAR(dot_at(9, 4), dot_at(105, 100), 1e-10);
  EXPECT_GT(std::fabs(dot_at(9, 4) - dot_at(9, 8)), 1e-4);
}

// ------------------------------------------------------------------------------------------
// MLP, router, MoE

MatD naive_mlp(const MatD& x, const MlpWeights<double>& w) {
  const int64_t L = x.rows(), d = x.cols(), I = w.gate_proj.rows();
  MatD out = MatD::Zero(L, d);
  for (int64_t t = 0; t < L; ++t) {
    std::vector<double> act(I);
    for (int64_t i = 0; i < I; ++i) {
      double g = 0, u = 0;
      for (int64_t j = 0; j < d; ++j) {
        g += w.gate_proj(i, j) * x(t, j);
        u += w.up_proj(i, j) * x(t, j);
      }
      act[i] = naive_silu(g) * u;
    }
    for (int64_t o = 0; o < d; ++o)
      for (int64_t i = 0; i < I; ++i) out(t, o) += w.down_proj(o, i) * act[i];
  }
  return out;
}

template <class T>
MlpWeights<T> rand_mlp(int64_t d, int64_t I, uint64_t seed) {
  return {rand_mat<T>(I, d, seed, 1, 0.2f), rand_mat<T>(I, d, seed, 2, 0.2f),
          rand_mat<T>(d, I, seed, 3, 0.2f)};
}
MlpWeights<double> to_double(const MlpWeights<float>& w) {
  return {w.gate_proj.cast<double>(), w.up_proj.cast<double>(), w.down_proj.cast<double>()};
}

TEST(RefMlp, MatchesNaive) {
  const MlpWeights<float> w = rand_mlp<float>(12, 20, 50);
  const Mat<float> x = rand_mat<float>(6, 12, 50, 9);
  const MatD ref = naive_mlp(x.cast<double>(), to_double(w));
  EXPECT_LT(rel_l2(mlp(x, w, Round::None), ref), 1e-6);
  EXPECT_LT(rel_l2(mlp<double>(x.cast<double>(), to_double(w), Round::None), ref), 1e-14);
  // bf16 emulation: rounded, close, not identical.
  const Mat<float> lp = mlp(x, w, Round::Bf16);
  EXPECT_LT(rel_l2(lp, ref), 2e-2);
  EXPECT_GT(rel_l2(lp, ref), 1e-5);
  EXPECT_TRUE(bitwise_equal(lp, lp.unaryExpr([](float v) { return round_bf16(v); }).eval()));
}

struct NaiveRoute {
  std::vector<int> ids;
  std::vector<double> w;
};
NaiveRoute naive_route(const MatD& x, const MatD& router, int64_t t, int k, bool renorm) {
  const int64_t E = router.rows();
  std::vector<double> logit(E), p(E);
  double mx = -INFINITY, sum = 0;
  for (int64_t e = 0; e < E; ++e) {
    logit[e] = 0;
    for (int64_t j = 0; j < x.cols(); ++j) logit[e] += router(e, j) * x(t, j);
    mx = std::max(mx, logit[e]);
  }
  for (int64_t e = 0; e < E; ++e) sum += std::exp(logit[e] - mx);
  for (int64_t e = 0; e < E; ++e) p[e] = std::exp(logit[e] - mx) / sum;
  NaiveRoute r;
  std::vector<bool> used(E, false);
  for (int i = 0; i < k; ++i) {  // selection: repeatedly the largest unused, lowest index on ties
    int best = -1;
    for (int64_t e = 0; e < E; ++e)
      if (!used[e] && (best < 0 || p[e] > p[best])) best = static_cast<int>(e);
    used[best] = true;
    r.ids.push_back(best);
    r.w.push_back(p[best]);
  }
  if (renorm) {
    double s = 0;
    for (double v : r.w) s += v;
    for (double& v : r.w) v /= s;
  }
  return r;
}

TEST(RefRouter, SoftmaxThenTopKMatchesNaive) {
  const int64_t E = 6, d = 10, L = 9;
  const Mat<float> x = rand_mat<float>(L, d, 60, 1);
  const Mat<float> router = rand_mat<float>(E, d, 60, 2, 0.5f);
  for (bool renorm : {false, true})
    for (int k : {1, 2, 3}) {
      const Routing r = route<float>(x, router, k, renorm, Round::None);
      for (int64_t t = 0; t < L; ++t) {
        const NaiveRoute n = naive_route(x.cast<double>(), router.cast<double>(), t, k, renorm);
        ASSERT_EQ(r.expert[t], n.ids) << "token " << t << " k " << k;
        for (int i = 0; i < k; ++i) EXPECT_NEAR(r.weight[t][i], n.w[i], 1e-6);
      }
    }
}

TEST(RefRouter, TiesGoToLowerExpertIndex) {
  // Experts 1 and 2 have identical router rows (equal probabilities), as do 0 and 3.
  Mat<float> router(4, 2);
  router << 0.1f, 0.2f,  //
      1.0f, 0.5f,        //
      1.0f, 0.5f,        //
      0.1f, 0.2f;
  const Mat<float> x = Mat<float>::Ones(1, 2);
  Routing r = route<float>(x, router, 1, false, Round::None);
  EXPECT_EQ(r.expert[0], std::vector<int>({1}));
  r = route<float>(x, router, 3, false, Round::None);
  EXPECT_EQ(r.expert[0], std::vector<int>({1, 2, 0}));
  // Reversed preference: 0 and 3 lead; the tie among them still goes to 0 first.
  r = route<float>(-x, router, 2, false, Round::None);
  EXPECT_EQ(r.expert[0], std::vector<int>({0, 3}));
}

TEST(RefMoe, MatchesNaive) {
  const int64_t E = 5, d = 8, I = 12, L = 7;
  MoeWeights<float> w;
  w.router = rand_mat<float>(E, d, 70, 1, 0.5f);
  for (int64_t e = 0; e < E; ++e) w.experts.push_back(rand_mlp<float>(d, I, 71 + e));
  const Mat<float> x = rand_mat<float>(L, d, 70, 2);
  for (bool renorm : {false, true}) {
    MatD ref = MatD::Zero(L, d);
    for (int64_t t = 0; t < L; ++t) {
      const NaiveRoute n = naive_route(x.cast<double>(), w.router.cast<double>(), t, 2, renorm);
      for (int i = 0; i < 2; ++i)
        ref.row(t) +=
            n.w[i] * naive_mlp(x.cast<double>().row(t), to_double(w.experts[n.ids[i]])).row(0);
    }
    EXPECT_LT(rel_l2(moe(x, w, 2, renorm, Round::None), ref), 1e-6) << "renorm " << renorm;
  }
}

TEST(RefMoe, UnusedExpertsDoNotMatter) {
  // An expert that no token selects is skipped: giving it NaN weights changes nothing.
  const int64_t d = 4, I = 6;
  MoeWeights<float> w;
  w.router = Mat<float>::Zero(3, d);
  w.router.row(2).setConstant(-50.0f);  // never chosen for positive inputs with k = 2
  for (int64_t e = 0; e < 3; ++e) w.experts.push_back(rand_mlp<float>(d, I, 80 + e));
  const Mat<float> x = rand_uniform_mat<float>(3, d, 80, 9, 0.5f, 1.0f);
  const Mat<float> a = moe(x, w, 2, false, Round::None);
  w.experts[2].down_proj.setConstant(NAN);
  const Mat<float> b = moe(x, w, 2, false, Round::None);
  EXPECT_TRUE(bitwise_equal(a, b));
}

}  // namespace
}  // namespace jb::ref
