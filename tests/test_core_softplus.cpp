// The polynomial softplus of the CUDA kernels (core/softplus.hpp) against log1p(exp(v)) in long
// double: the error bound and the mean signed error (a bias would add up in the scan's state over
// the steps it remembers), the threshold 20 and the special values.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/softplus.hpp"
#include "tests/ulp_error.hpp"

namespace {

// log1p(exp(v)) in long double, and v itself above the threshold 20.
long double softplus_exact(float v) {
  const long double x = v;
  return x > 20.0L ? x : std::log1p(std::exp(x));
}

// Ranges: dt pre-activations of small and mid delta, around 0, large, and up to the threshold.
// The bounds leave ~1 ulp for the host expf on top of the fit's 1.75 (measured with a correctly
// rounded exp).
TEST(Softplus, PolynomialIsWithinThreeUlpAndUnbiased) {
  const std::pair<float, float> ranges[] = {
      {-87.f, -20.f}, {-20.f, -5.f}, {-9.f, -2.f}, {-2.f, 2.f}, {2.f, 20.f}};
  for (auto [lo, hi] : ranges) {
    const jb::test::UlpStats s =
        jb::test::ulp_error_over(jb::softplus_poly, softplus_exact, lo, hi, 20001);
    EXPECT_LE(s.max_abs, 3.0) << "v in [" << lo << ", " << hi << "]";
    EXPECT_LE(std::abs(s.mean), 0.15) << "v in [" << lo << ", " << hi << "]";
  }
}

TEST(Softplus, AboveTwentyIsTheInputItself) {
  for (float v : {20.0001f, 20.5f, 25.f, 88.f, 1e6f, 3e38f}) EXPECT_EQ(jb::softplus_poly(v), v);
  // 20 itself: log1p(e^20) = 20 + 2.06e-9, below half an ulp of 20 (9.5e-7).
  EXPECT_EQ(jb::softplus_poly(20.f), 20.f);
}

TEST(Softplus, SpecialValues) {
  EXPECT_EQ(jb::softplus_poly(-std::numeric_limits<float>::infinity()), 0.f);
  EXPECT_EQ(jb::softplus_poly(std::numeric_limits<float>::infinity()),
            std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(jb::softplus_poly(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_NEAR(jb::softplus_poly(0.f), 0.69314718f, 1e-7f);
  // Far below zero the result is exp(v), down to where expf underflows.
  EXPECT_NEAR(jb::softplus_poly(-80.f) / std::exp(-80.f), 1.f, 1e-6f);
  EXPECT_EQ(jb::softplus_poly(-110.f), 0.f);
}

}  // namespace
