// The FMA-pipe part of the SSM decay (core/ssm_decay.hpp) against 2^x in long double: the error
// bound and the mean signed error over the range it covers. A bias in the decay would add up in
// the scan's state over the ~1 / |x| steps the state remembers (cuda/ssm_math.cuh), so the mean
// is checked as well as the bound.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/ssm_decay.hpp"

namespace {

// Error of exp2_decay_poly(x) in units of the fp32 ulp of the exact value. The host fmaf is
// correctly rounded, like the device's fma, so these are the device's values bit for bit.
double ulp_error(float x) {
  const long double exact = std::exp2(static_cast<long double>(x));
  const float exact_f = static_cast<float>(exact);
  const double ulp = std::nextafter(exact_f, std::numeric_limits<float>::infinity()) - exact_f;
  return static_cast<double>((static_cast<long double>(jb::exp2_decay_poly(x)) - exact) / ulp);
}

struct Stats {
  double max_abs = 0, mean = 0;
};

Stats error_over(float lo, float hi, int n) {
  Stats s;
  for (int i = 0; i < n; ++i) {
    const float x = lo + (hi - lo) * (static_cast<float>(i) + 0.5f) / static_cast<float>(n);
    const double e = ulp_error(x);
    s.max_abs = std::max(s.max_abs, std::abs(e));
    s.mean += e / n;
  }
  return s;
}

// The ranges of the header's figures (max 0.50 / 0.53 / 0.59 ulp, mean +0.001 / -0.012 / +0.009
// on this host). The bounds are half an ulp of rounding plus the fit's error (1.1e-7 relative,
// about 1 ulp near 1), and a mean under 0.05 ulp.
TEST(Exp2Decay, PolynomialIsWithinOneUlpAndUnbiased) {
  const float lim = jb::kExp2DecayPolyLimit;
  const std::pair<float, float> ranges[] = {{-1e-3f, 0.f}, {-0.02f, -1e-3f}, {-lim, -0.02f}};
  for (auto [lo, hi] : ranges) {
    const Stats s = error_over(lo, hi, 20001);
    EXPECT_LE(s.max_abs, 1.0) << "x in [" << lo << ", " << hi << "]";
    EXPECT_LE(std::abs(s.mean), 0.05) << "x in [" << lo << ", " << hi << "]";
  }
}

// Where the state remembers longest (x -> 0) the decay must not round up to 1 early: an x below
// -2^-24 / ln 2 already rounds 2^x below 1, and so must the polynomial, or the state would not
// decay at all there.
TEST(Exp2Decay, BelowOneWhereTwoToTheXIs) {
  EXPECT_EQ(jb::exp2_decay_poly(0.f), 1.f);
  for (float x = -1e-6f; x > -jb::kExp2DecayPolyLimit; x *= 1.37f) {
    const float exact = static_cast<float>(std::exp2(static_cast<long double>(x)));
    if (exact < 1.f) EXPECT_LT(jb::exp2_decay_poly(x), 1.f) << "x = " << x;
  }
}

}  // namespace
