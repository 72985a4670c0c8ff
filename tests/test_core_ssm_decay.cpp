// The FMA-pipe part of the SSM decay (core/ssm_decay.hpp) against 2^x in long double: the error
// bound and the mean signed error over the range it covers. A bias in the decay would add up in
// the scan's state over the ~1 / |x| steps the state remembers (cuda/ssm_math.cuh), so the mean
// is checked as well as the bound.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/ssm_decay.hpp"
#include "tests/ulp_error.hpp"

namespace {

// 2^x in long double. The host fmaf rounds correctly, like the device's fma, so the polynomial's
// values here are the device's bit for bit.
long double exp2_exact(float x) {
  return std::exp2(static_cast<long double>(x));
}

// The ranges of the header's figures (max 0.50 / 0.53 / 0.59 ulp, mean +0.001 / -0.012 / +0.009
// on this host). The bounds are half an ulp of rounding plus the fit's error (1.1e-7 relative,
// about 1 ulp near 1), and a mean under 0.05 ulp.
TEST(Exp2Decay, PolynomialIsWithinOneUlpAndUnbiased) {
  const float lim = jb::kExp2DecayPolyLimit;
  const std::pair<float, float> ranges[] = {{-1e-3f, 0.f}, {-0.02f, -1e-3f}, {-lim, -0.02f}};
  for (auto [lo, hi] : ranges) {
    const jb::test::UlpStats s =
        jb::test::ulp_error_over(jb::exp2_decay_poly, exp2_exact, lo, hi, 20001);
    EXPECT_LE(s.max_abs, 1.0) << "x in [" << lo << ", " << hi << "]";
    EXPECT_LE(std::abs(s.mean), 0.05) << "x in [" << lo << ", " << hi << "]";
  }
}

// Where the state remembers longest (x -> 0) the decay must not round up to 1 early: wherever 2^x
// rounds below 1 (from about x < -2^-25 / ln 2 = -4.3e-8), so must the polynomial, or the state
// would not decay at all there.
TEST(Exp2Decay, BelowOneWhereTwoToTheXIs) {
  EXPECT_EQ(jb::exp2_decay_poly(0.f), 1.f);
  for (float x = -1e-9f; x > -jb::kExp2DecayPolyLimit; x *= 1.37f) {
    const float exact = static_cast<float>(exp2_exact(x));
    if (exact < 1.f) EXPECT_LT(jb::exp2_decay_poly(x), 1.f) << "x = " << x;
  }
}

}  // namespace
