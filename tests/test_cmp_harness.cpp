// The compare harness's pure parts: case strings, metrics on hand-made vectors (expected numbers
// worked out by hand below), llama.cpp non-finite rules, and the tolerance policy's verdicts.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <limits>

#include "compare/metrics.hpp"
#include "compare/policy.hpp"
#include "compare/registry.hpp"
#include "core/error.hpp"

using namespace jb::cmp;

namespace {

const float kInf = std::numeric_limits<float>::infinity();
const float kNaN = std::numeric_limits<float>::quiet_NaN();

jb::ErrorKind parse_error_kind(const std::string& s) {
  try {
    Case::parse(s);
  } catch (const jb::Error& e) {
    return e.kind();
  }
  return jb::ErrorKind::Internal;  // did not throw
}

}  // namespace

// ---- case strings ---------------------------------------------------------------------------

TEST(CaseString, RoundTrip) {
  const std::string s = "SSM_SCAN(L=4097,D=8192,N=16,B=1,dtype=bf16,seed=7)";
  const Case c = Case::parse(s);
  EXPECT_EQ(c.op, "SSM_SCAN");
  ASSERT_EQ(c.params.size(), 5u);
  EXPECT_EQ(c.params[0].first, "L");
  EXPECT_EQ(c.params[4].second, "bf16");
  EXPECT_EQ(c.seed, 7u);
  EXPECT_EQ(c.geti("L"), 4097);
  EXPECT_EQ(c.str(), s);
  EXPECT_EQ(Case::parse(c.str()), c);
}

TEST(CaseString, SeedIsPrintedLastAndDefaultsToOne) {
  const Case c = Case::parse("RMS_NORM(seed=3,rows=7,n=16)");
  EXPECT_EQ(c.seed, 3u);
  EXPECT_EQ(c.str(), "RMS_NORM(rows=7,n=16,seed=3)");
  const Case d = Case::parse("RMS_NORM(rows=7)");
  EXPECT_EQ(d.seed, 1u);
  EXPECT_EQ(d.str(), "RMS_NORM(rows=7,seed=1)");
  const Case e = Case::parse("NOP()");
  EXPECT_TRUE(e.params.empty());
  EXPECT_EQ(e.str(), "NOP(seed=1)");
  const Case big = Case::parse("X(seed=18446744073709551615)");
  EXPECT_EQ(big.seed, 18446744073709551615ull);
}

TEST(CaseString, ValuesMayHoldDotsSignsAndPluses) {
  const Case c = Case::parse("ATTN(lens=3+5+17,xscale=1e-3,past=-1,seed=2)");
  EXPECT_EQ(c.get("lens"), "3+5+17");
  EXPECT_DOUBLE_EQ(c.getf("xscale"), 1e-3);
  EXPECT_EQ(c.geti("past"), -1);
  EXPECT_EQ(Case::parse(c.str()), c);
}

TEST(CaseString, MalformedStringsAreUsageErrors) {
  for (const char* s : {"",
                        "RMS_NORM",
                        "RMS_NORM(",
                        "RMS_NORM)",
                        "(rows=1)",
                        "RMS NORM(rows=1)",
                        "RMS_NORM(rows)",
                        "RMS_NORM(rows=)",
                        "RMS_NORM(=1)",
                        "RMS_NORM(rows=1,,n=2)",
                        "RMS_NORM(rows=1,)",
                        "RMS_NORM(rows=1 )",
                        "RMS_NORM(rows=1)x",
                        "RMS_NORM(rows=1,rows=2)",
                        "RMS_NORM(seed=-1)",
                        "RMS_NORM(seed=abc)",
                        "RMS_NORM(seed=1,seed=2)",
                        "RMS_NORM(seed=99999999999999999999)",
                        "RMS_NORM(a=b=c)",
                        "RMS_NORM(a=(1))"}) {
    EXPECT_EQ(parse_error_kind(s), jb::ErrorKind::Usage) << "'" << s << "'";
  }
}

TEST(CaseString, AccessorErrors) {
  const Case c = Case::parse("OP(a=x,b=1.5,seed=1)");
  EXPECT_THROW(c.get("zz"), jb::Error);
  EXPECT_EQ(c.get("zz", "def"), "def");
  EXPECT_THROW(c.geti("a"), jb::Error);
  EXPECT_THROW(c.geti("b"), jb::Error);  // 1.5 is not an integer
  EXPECT_DOUBLE_EQ(c.getf("b"), 1.5);
  EXPECT_FALSE(c.big());
  EXPECT_EQ(c.dtype(), "bf16");
  Case d = c;
  d.set("big", 1).set("dtype", "fp32").set("a", "y").set("seed", "9");
  EXPECT_TRUE(d.big());
  EXPECT_EQ(d.dtype(), "fp32");
  EXPECT_EQ(d.str(), "OP(a=y,b=1.5,big=1,dtype=fp32,seed=9)");
}

// ---- metrics --------------------------------------------------------------------------------

TEST(Metrics, HandMadeVectors) {
  // out - ref = (0, 0, 1, -1): max_abs 1 first reached at index 2; ||d|| = sqrt(2);
  // ||ref|| = sqrt(1 + 4 + 4 + 25) = sqrt(34); <out,ref> = 1 + 4 + 6 + 20 = 31;
  // ||out|| = sqrt(1 + 4 + 9 + 16) = sqrt(30).
  const std::vector<float> out = {1, 2, 3, 4}, ref = {1, 2, 2, 5};
  const Metrics m = compute_metrics(out, ref);
  EXPECT_EQ(m.count, 4);
  EXPECT_EQ(m.finite_count, 4);
  EXPECT_DOUBLE_EQ(m.max_abs, 1.0);
  EXPECT_EQ(m.worst_index, 2);
  EXPECT_DOUBLE_EQ(m.worst_out, 3.0);
  EXPECT_DOUBLE_EQ(m.worst_ref, 2.0);
  EXPECT_NEAR(m.rel_l2, 0.24253562503633297, 1e-15);  // sqrt(2/34) = 1/sqrt(17)
  EXPECT_NEAR(m.cosine, 0.9706476511819817, 1e-15);   // 31 / sqrt(1020)
  EXPECT_DOUBLE_EQ(m.ref_max_abs, 5.0);
  EXPECT_NEAR(m.ref_l2, 5.830951894845301, 1e-14);  // sqrt(34)
  EXPECT_EQ(m.nonfinite_mismatches, 0);
  EXPECT_EQ(m.bit_mismatches, 2);
}

TEST(Metrics, IdenticalAndZeroVectors) {
  const std::vector<float> a = {0.5f, -2.0f, 3.25f};
  const Metrics m = compute_metrics(a, a);
  EXPECT_EQ(m.max_abs, 0.0);
  EXPECT_EQ(m.rel_l2, 0.0);
  EXPECT_DOUBLE_EQ(m.cosine, 1.0);
  EXPECT_EQ(m.bit_mismatches, 0);
  const std::vector<float> z = {0, 0}, nz = {0, 1};
  EXPECT_EQ(compute_metrics(z, z).rel_l2, 0.0);
  EXPECT_EQ(compute_metrics(z, z).cosine, 1.0);
  EXPECT_TRUE(std::isinf(compute_metrics(nz, z).rel_l2));  // any error against a zero reference
  EXPECT_EQ(compute_metrics(nz, z).cosine, 0.0);
  // -0 vs +0: numerically equal, bitwise different (matters for the Exact kind).
  const std::vector<float> pz = {0.0f}, mz = {-0.0f};
  EXPECT_EQ(compute_metrics(mz, pz).max_abs, 0.0);
  EXPECT_EQ(compute_metrics(mz, pz).bit_mismatches, 1);
}

TEST(Metrics, SizeMismatchThrows) {
  EXPECT_THROW(compute_metrics(std::vector<float>{1}, std::vector<float>{1, 2}), jb::Error);
}

TEST(Metrics, SameSignInfinitiesMatchAndFltMaxCountsAsInf) {
  const std::vector<float> out = {kInf, -kInf, FLT_MAX, -kInf, 2.0f};
  const std::vector<float> ref = {kInf, -kInf, kInf, -FLT_MAX, 1.0f};
  const Metrics m = compute_metrics(out, ref);
  EXPECT_EQ(m.nonfinite_mismatches, 0);
  EXPECT_EQ(m.inf_matches, 4);
  EXPECT_EQ(m.finite_count, 1);
  EXPECT_DOUBLE_EQ(m.max_abs, 1.0);  // only the finite pair
  EXPECT_DOUBLE_EQ(m.rel_l2, 1.0);
}

TEST(Metrics, NonFiniteMismatches) {
  struct Pair {
    float out, ref;
  };
  for (Pair p : {Pair{kInf, -kInf}, Pair{-kInf, kInf}, Pair{kInf, 1.0f}, Pair{1.0f, -kInf},
                 Pair{kNaN, 1.0f}, Pair{1.0f, kNaN}, Pair{kNaN, kNaN}, Pair{kNaN, kInf},
                 Pair{FLT_MAX, -FLT_MAX}, Pair{FLT_MAX, 3.0f}}) {
    const std::vector<float> out = {1.0f, p.out}, ref = {1.0f, p.ref};
    const Metrics m = compute_metrics(out, ref);
    EXPECT_EQ(m.nonfinite_mismatches, 1) << p.out << " vs " << p.ref;
    EXPECT_EQ(m.first_nonfinite_index, 1);
    EXPECT_EQ(m.finite_count, 1);  // excluded from the numeric metrics, which stay finite
    EXPECT_EQ(m.max_abs, 0.0);
    EXPECT_EQ(m.rel_l2, 0.0);
  }
}

TEST(Metrics, UlpBf16) {
  EXPECT_EQ(ulp_bf16(1.0), 1.0 / 128);  // 8 significand bits: 2^-7 in [1, 2)
  EXPECT_EQ(ulp_bf16(1.99), 1.0 / 128);
  EXPECT_EQ(ulp_bf16(-1.5), 1.0 / 128);
  EXPECT_EQ(ulp_bf16(2.0), 1.0 / 64);
  EXPECT_EQ(ulp_bf16(0.75), 1.0 / 256);
  EXPECT_EQ(ulp_bf16(4096.0), 32.0);
  EXPECT_EQ(ulp_bf16(0.0), std::ldexp(1.0, -133));
}

TEST(Metrics, ErrorCurvePerPosition) {
  // shape [B=2, L=4, D=2], position axis 1; errors only at position 3 of batch 1.
  std::vector<float> ref(16), out(16);
  for (int i = 0; i < 16; ++i) ref[i] = out[i] = 1.0f;
  out[(1 * 4 + 3) * 2 + 0] = 1.5f;
  out[(1 * 4 + 3) * 2 + 1] = 0.5f;
  const auto full = error_curve(out.data(), ref.data(), {2, 4, 2}, 1, 64);
  ASSERT_EQ(full.size(), 4u);
  for (int p = 0; p < 3; ++p) EXPECT_EQ(full[p].rel_l2, 0.0);
  // Position 3 pools 4 elements (2 batches x 2 features): ||d|| = sqrt(0.5), ||ref|| = 2.
  EXPECT_NEAR(full[3].rel_l2, std::sqrt(0.5) / 2.0, 1e-15);
  EXPECT_DOUBLE_EQ(full[3].max_abs, 0.5);
  EXPECT_EQ(full[3].pos_begin, 3);
  EXPECT_EQ(full[3].pos_end, 4);
  // Two buckets of two positions: the second pools 8 elements, ||ref|| = sqrt(8).
  const auto pooled = error_curve(out.data(), ref.data(), {2, 4, 2}, 1, 2);
  ASSERT_EQ(pooled.size(), 2u);
  EXPECT_EQ(pooled[0].rel_l2, 0.0);
  EXPECT_NEAR(pooled[1].rel_l2, std::sqrt(0.5) / std::sqrt(8.0), 1e-15);
  EXPECT_EQ(pooled[1].pos_begin, 2);
  EXPECT_EQ(pooled[1].pos_end, 4);
  // 5 positions into 2 buckets: widths 3 and 2.
  std::vector<float> five(5, 1.0f);
  const auto uneven = error_curve(five.data(), five.data(), {5}, 0, 2);
  ASSERT_EQ(uneven.size(), 2u);
  EXPECT_EQ(uneven[0].pos_end, 3);
  EXPECT_EQ(uneven[1].pos_end, 5);
  EXPECT_TRUE(error_curve(out.data(), ref.data(), {2, 4, 2}, -1).empty());
  EXPECT_THROW(error_curve(out.data(), ref.data(), {2, 4, 2}, 3), jb::Error);
}

// ---- policy ---------------------------------------------------------------------------------

namespace {

// Metrics with the given errors at output magnitude `scale`.
Metrics err(double rel_l2, double max_abs, double scale = 1.0) {
  Metrics m;
  m.count = m.finite_count = 100;
  m.rel_l2 = rel_l2;
  m.max_abs = max_abs;
  m.ref_max_abs = scale;
  m.cosine = std::sqrt(1.0 - rel_l2 * rel_l2);
  return m;
}

}  // namespace

TEST(Policy, Bf16FactorTwoOnRelL2) {
  // bf16 reference: rel_l2 1e-3. At scale 1 the max_abs floor is 2 * 2^-7, so max_abs is not the
  // binding limit here; rel_l2's limit is 2 * 1e-3 + 1e-6.
  const Metrics lp = err(1e-3, 1e-3);
  EXPECT_TRUE(judge(Path::Bf16, CheckKind::Reduction, err(1.9e-3, 1.9e-3), lp, 0).pass);
  const Verdict v = judge(Path::Bf16, CheckKind::Reduction, err(2.1e-3, 2.1e-3), lp, 0);
  EXPECT_FALSE(v.pass);
  ASSERT_EQ(v.failures.size(), 1u);
  EXPECT_NE(v.failures[0].find("rel_l2"), std::string::npos);
  EXPECT_NEAR(v.lp_ratio, 2.1, 1e-12);
  EXPECT_DOUBLE_EQ(v.thresholds.factor, 2.0);
  EXPECT_DOUBLE_EQ(v.thresholds.rel_l2_limit, 2e-3 + 1e-6);
  EXPECT_DOUBLE_EQ(v.thresholds.atol_floor, 2.0 / 128);
  EXPECT_TRUE(judge(Path::Bf16, CheckKind::Elementwise, err(1.9e-3, 0), lp, 0).pass);
  EXPECT_FALSE(judge(Path::Bf16, CheckKind::Elementwise, err(2.1e-3, 0), lp, 0).pass);
}

TEST(Policy, Bf16MaxAbsWithFloor) {
  // Scale 2^-10: ulp_bf16 = 2^-17, floor = 2^-16 ~ 1.53e-5. lp max_abs 1e-4: limit 2e-4 + floor.
  const double scale = std::ldexp(1.0, -10), floor = std::ldexp(1.0, -16);
  const Metrics lp = err(1e-3, 1e-4, scale);
  EXPECT_TRUE(
      judge(Path::Bf16, CheckKind::Reduction, err(1e-3, 2e-4 + 0.9 * floor, scale), lp, 0).pass);
  const Verdict v =
      judge(Path::Bf16, CheckKind::Reduction, err(1e-3, 2e-4 + 1.1 * floor, scale), lp, 0);
  EXPECT_FALSE(v.pass);
  EXPECT_NE(v.failures.at(0).find("max_abs"), std::string::npos);
}

TEST(Policy, ScanStateCacheAllowThree) {
  const Metrics lp = err(1e-3, 1e-3);
  for (CheckKind k : {CheckKind::Scan, CheckKind::State, CheckKind::Cache}) {
    EXPECT_TRUE(judge(Path::Bf16, k, err(2.9e-3, 1e-3), lp, 0).pass) << check_kind_name(k);
    EXPECT_FALSE(judge(Path::Bf16, k, err(3.1e-3, 1e-3), lp, 0).pass) << check_kind_name(k);
  }
  EXPECT_FALSE(judge(Path::Bf16, CheckKind::Reduction, err(2.9e-3, 1e-3), lp, 0).pass);
}

TEST(Policy, FloorWhenBf16ReferenceIsExact) {
  // R_lp's own error is exactly 0 (e.g. an exact copy): the floors decide. At scale 1:
  // max_abs <= 2 ulp = 2^-6 and rel_l2 <= 1e-6.
  const Metrics lp = err(0, 0);
  EXPECT_TRUE(judge(Path::Bf16, CheckKind::Elementwise, err(5e-7, 1.0 / 128), lp, 0).pass);
  EXPECT_FALSE(judge(Path::Bf16, CheckKind::Elementwise, err(5e-7, 3.0 / 128), lp, 0).pass);
  EXPECT_FALSE(judge(Path::Bf16, CheckKind::Elementwise, err(2e-6, 1.0 / 128), lp, 0).pass);
  const Verdict exact = judge(Path::Bf16, CheckKind::Elementwise, err(0, 0), lp, 0);
  EXPECT_TRUE(exact.pass);
  EXPECT_EQ(exact.lp_ratio, 0.0);
  EXPECT_TRUE(std::isinf(judge(Path::Bf16, CheckKind::Elementwise, err(5e-7, 0), lp, 0).lp_ratio));
}

TEST(Policy, Backstops) {
  // A bad bf16 reference (rel_l2 1e-2) would let 1.5e-2 through the ratio rule: the absolute
  // backstop rel_l2 <= 1e-2 stops it.
  const Metrics lp = err(1e-2, 1.0);
  const Verdict v = judge(Path::Bf16, CheckKind::Scan, err(1.5e-2, 1.0), lp, 0);
  EXPECT_FALSE(v.pass);
  EXPECT_NE(v.failures.at(0).find("backstop rel_l2"), std::string::npos);
  // Cosine backstop on its own.
  Metrics k = err(1e-3, 1e-3);
  k.cosine = 0.9998;
  const Verdict c = judge(Path::Bf16, CheckKind::Reduction, k, err(1e-3, 1e-3), 0);
  EXPECT_FALSE(c.pass);
  EXPECT_NE(c.failures.at(0).find("cosine"), std::string::npos);
}

TEST(Policy, NonFiniteMismatchAlwaysFails) {
  Metrics k = err(0, 0);
  k.nonfinite_mismatches = 1;
  k.first_nonfinite_index = 5;
  for (Path p : {Path::Bf16, Path::Fp32, Path::Exact}) {
    const Verdict v = judge(p, CheckKind::Elementwise, k, err(1e-3, 1e-3), 0);
    EXPECT_FALSE(v.pass) << path_name(p);
    EXPECT_NE(v.failures.at(0).find("index 5"), std::string::npos);
  }
}

TEST(Policy, NaNMetricFails) {
  // A NaN metric (should not happen, but must never pass): comparisons are written NaN-safe.
  Metrics k = err(0, 0);
  k.rel_l2 = std::numeric_limits<double>::quiet_NaN();
  EXPECT_FALSE(judge(Path::Bf16, CheckKind::Reduction, k, err(1e-3, 1e-3), 0).pass);
  EXPECT_FALSE(judge(Path::Fp32, CheckKind::Reduction, k, err(1e-3, 1e-3), 0).pass);
}

TEST(Policy, ExactIsBitwise) {
  Metrics k = err(0, 0);
  EXPECT_TRUE(judge(Path::Exact, CheckKind::Exact, k, err(0, 0), 0).pass);
  k.bit_mismatches = 1;
  EXPECT_FALSE(judge(Path::Exact, CheckKind::Exact, k, err(0, 0), 0).pass);
}

TEST(Policy, Fp32Gates) {
  const Metrics lp = err(0, 0);
  EXPECT_TRUE(judge(Path::Fp32, CheckKind::Elementwise, err(9e-7, 1e-6), lp, 0).pass);
  EXPECT_FALSE(judge(Path::Fp32, CheckKind::Elementwise, err(1.1e-6, 1e-6), lp, 0).pass);
  // Elementwise max_abs: 1e-6 + 1e-5 * max|ref| (scale 1 -> 1.1e-5).
  EXPECT_FALSE(judge(Path::Fp32, CheckKind::Elementwise, err(1e-7, 1.2e-5), lp, 0).pass);
  EXPECT_TRUE(judge(Path::Fp32, CheckKind::Reduction, err(9e-6, 1), lp, 0).pass);
  EXPECT_FALSE(judge(Path::Fp32, CheckKind::Reduction, err(1.1e-5, 0), lp, 0).pass);
  // Scan: 1e-5 * max(1, L/4096): L = 8192 allows 2e-5, L = 100 still 1e-5.
  EXPECT_TRUE(judge(Path::Fp32, CheckKind::Scan, err(1.9e-5, 1), lp, 8192).pass);
  EXPECT_FALSE(judge(Path::Fp32, CheckKind::Scan, err(2.1e-5, 1), lp, 8192).pass);
  EXPECT_FALSE(judge(Path::Fp32, CheckKind::Scan, err(1.1e-5, 1), lp, 100).pass);
}

TEST(Policy, PathFromCase) {
  EXPECT_EQ(path_for(Case::parse("OP(n=1)"), CheckKind::Reduction), Path::Bf16);
  EXPECT_EQ(path_for(Case::parse("OP(dtype=fp32)"), CheckKind::Reduction), Path::Fp32);
  EXPECT_EQ(path_for(Case::parse("OP(dtype=fp32)"), CheckKind::Exact), Path::Exact);
  // judge(Case, ...) reads L for the fp32 scan gate.
  const Case c = Case::parse("SCAN(L=8192,dtype=fp32)");
  EXPECT_TRUE(judge(c, CheckKind::Scan, err(1.9e-5, 1), err(0, 0)).pass);
}
