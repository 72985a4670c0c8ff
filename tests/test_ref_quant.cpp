// ExpertsInt8 quantiser (reference/quant_int8.hpp): vLLM's bf16 arithmetic, round half to even,
// all-zero rows, clamping, and the dequantisation error bound.
#include <gtest/gtest.h>

#include <cfenv>
#include <cmath>
#include <cstdio>

#include "core/bf16.hpp"
#include "core/rng.hpp"
#include "reference/quant_int8.hpp"

namespace jb::ref {
namespace {

TEST(RefQuantInt8, HalfStepsRoundToEven) {
  // max |w| = 127 -> scale = bf16(127/127) = 1 exactly, so q = rne(w): 0.5 -> 0, 1.5 -> 2,
  // 2.5 -> 2, -0.5 -> -0, -1.5 -> -2, -2.5 -> -2, 126.5 -> 126 (all exact bf16 values).
  const std::vector<float> w = {127.0f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 126.5f, 3.5f};
  const QuantizedMatrix m = quantize_int8(w.data(), 1, static_cast<int64_t>(w.size()));
  ASSERT_EQ(m.scale.size(), 1u);
  EXPECT_EQ(m.scale[0], 1.0f);
  const std::vector<int8_t> expect = {127, 0, 2, 2, 0, -2, -2, 126, 4};
  EXPECT_EQ(m.q, expect);  // std::round would give 1, 3, -1, -3, 127
}

TEST(RefQuantInt8, HalfToEvenEvenUnderAnotherRoundingMode) {
  // The quantiser sets round-to-nearest itself and restores the caller's mode.
  const std::vector<float> w = {127.0f, 2.5f, -2.5f};
  ASSERT_EQ(std::fesetround(FE_UPWARD), 0);
  const QuantizedMatrix m = quantize_int8(w.data(), 1, 3);
  EXPECT_EQ(std::fegetround(), FE_UPWARD);
  std::fesetround(FE_TONEAREST);
  EXPECT_EQ(m.q, (std::vector<int8_t>{127, 2, -2}));
}

TEST(RefQuantInt8, ScaleAndQuotientAreBf16Rounded) {
  // max |w| = 1: 1/127 = 0.00787401..., bf16(1/127) = 0.0078735352 (slightly below), so the
  // max element quantises to bf16(1 / 0.0078735352) = bf16(127.0078) = 127.
  const std::vector<float> w = {1.0f, 0.25f, -0.75f};
  const QuantizedMatrix m = quantize_int8(w.data(), 1, 3);
  EXPECT_EQ(m.scale[0], round_bf16(1.0f / 127.0f));
  EXPECT_NE(m.scale[0], 1.0f / 127.0f);
  for (size_t j = 0; j < w.size(); ++j) {
    const float quotient = round_bf16(w[j] / m.scale[0]);
    EXPECT_EQ(m.q[j], static_cast<int8_t>(std::nearbyint(quotient)));
  }
  // 0.25 / 0.0078735352 = 31.752 -> bf16 31.75 -> 32; -0.75 -> -95.256 -> bf16 -95.5 -> -96
  // (the bf16 quotient is what gets rounded: fp32 rounding would give -95).
  EXPECT_EQ(m.q[1], 32);
  EXPECT_EQ(m.q[2], -96);
}

TEST(RefQuantInt8, AllZeroRowGivesZeroScaleAndZeros) {
  const std::vector<float> w = {0.0f, -0.0f, 0.0f, 1.0f, 2.0f, 3.0f};
  const QuantizedMatrix m = quantize_int8(w.data(), 2, 3);
  EXPECT_EQ(m.scale[0], 0.0f);
  EXPECT_EQ(m.q[0], 0);
  EXPECT_EQ(m.q[1], 0);
  EXPECT_EQ(m.q[2], 0);
  EXPECT_GT(m.scale[1], 0.0f);
  const std::vector<float> back = dequantize_int8(m);
  for (int j = 0; j < 3; ++j) EXPECT_EQ(back[j], 0.0f);
}

TEST(RefQuantInt8, RowWithNegativeMax) {
  // max |w| = 3 from a negative value: scale = bf16(3/127) = 0.023681640625 (above 3/127), and
  // the quotients -126.68, 84.45, 42.23 round to bf16 -126.5, 84.5, 42.25 -> -126, 84, 42
  // (half to even twice). Values worked out independently of this code.
  const std::vector<float> w = {-3.0f, 2.0f, 1.0f};
  const QuantizedMatrix m = quantize_int8(w.data(), 1, 3);
  EXPECT_EQ(m.scale[0], 0.023681640625f);
  EXPECT_EQ(m.q, (std::vector<int8_t>{-126, 84, 42}));
}

TEST(RefQuantInt8, ClampAt127) {
  // With normal numbers bf16(max/127) is within 2^-9 of max/127, so max/scale <= 127.25 and
  // the clamp cannot bind. With a subnormal bf16 scale (max < 127 * 2^-126) the scale has few
  // significant bits, the max element's quotient can exceed 127.5, and the clamp must give 127.
  int clamped = 0;
  for (int i = 0; i < 2000; ++i) {
    const float big = round_bf16(rng_uniform(90, 1, static_cast<uint64_t>(i), 1e-38f, 1.4e-36f));
    const std::vector<float> row = {big, -big, 0.5f * big};
    const QuantizedMatrix q = quantize_int8(row.data(), 1, 3);
    ASSERT_GT(q.scale[0], 0.0f);
    const float quotient = round_bf16(big / q.scale[0]);
    if (std::nearbyint(quotient) > 127.0f) ++clamped;
    EXPECT_EQ(q.q[0], std::min(127.0f, std::nearbyint(quotient)));
    EXPECT_EQ(q.q[1], -q.q[0]);
    EXPECT_LE(q.q[0], 127);
  }
  EXPECT_GT(clamped, 0) << "no case exercised the clamp";
}

TEST(RefQuantInt8, DequantErrorHalfStepOfBf16Quotient) {
  const int64_t rows = 16, cols = 64;
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (size_t i = 0; i < w.size(); ++i)
    w[i] = round_bf16(rng_normal(91, 1, i, 0.0f, 0.02f * static_cast<float>(1 + i / cols)));
  const QuantizedMatrix m = quantize_int8(w.data(), rows, cols);
  const std::vector<float> back = dequantize_int8(m);
  double worst = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      const size_t i = static_cast<size_t>(r * cols + j);
      const double err = std::fabs(double(back[i]) - double(w[i]));
      // Relative to the bf16 quotient that the rule rounds, the error is at most half a step.
      const double quotient = round_bf16(w[i] / m.scale[r]);
      EXPECT_LE(std::fabs(double(m.q[i]) - quotient), 0.5) << "row " << r << " col " << j;
      // Against w itself the bf16 rounding of the quotient (half an ulp of a value below 128:
      // 0.25 step) adds to the half step; this is vLLM's rule, not a tolerance of ours.
      EXPECT_LE(err, 0.75 * m.scale[r]) << "row " << r << " col " << j;
      worst = std::max(worst, err / m.scale[r]);
    }
  EXPECT_LE(worst, 0.75);
  std::printf("int8 dequant: worst error %.4f steps\n", worst);
}

}  // namespace
}  // namespace jb::ref
