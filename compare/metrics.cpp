#include "compare/metrics.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.hpp"

namespace jb::cmp {

bool is_inf_or_max(float v) {
  return std::isinf(v) || v == FLT_MAX || v == -FLT_MAX;
}

namespace {

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// Non-finite classification of one pair (llama.cpp rules, metrics.hpp): 0 = both ordinary finite
// values (numeric metrics), 1 = matching infinities (skipped), 2 = mismatch.
int classify(float out, float ref) {
  if (std::isnan(out) || std::isnan(ref)) return 2;
  const bool io = is_inf_or_max(out), ir = is_inf_or_max(ref);
  if (!io && !ir) return 0;
  if (io && ir && std::signbit(out) == std::signbit(ref)) return 1;
  return 2;
}

double safe_ratio(double num, double den) {
  if (den > 0) return num / den;
  return num > 0 ? std::numeric_limits<double>::infinity() : 0.0;
}

}  // namespace

Metrics compute_metrics(const float* out, const float* ref, size_t n) {
  Metrics m;
  m.count = static_cast<int64_t>(n);
  double sum_d2 = 0, sum_r2 = 0, sum_o2 = 0, sum_or = 0;
  for (size_t i = 0; i < n; ++i) {
    const float o = out[i], r = ref[i];
    if (bits_of(o) != bits_of(r)) ++m.bit_mismatches;
    const int cls = classify(o, r);
    if (cls == 1) {
      ++m.inf_matches;
      continue;
    }
    if (cls == 2) {
      if (m.nonfinite_mismatches == 0) {
        m.first_nonfinite_index = static_cast<int64_t>(i);
        m.first_nonfinite_out = o;
        m.first_nonfinite_ref = r;
      }
      ++m.nonfinite_mismatches;
      continue;
    }
    const double od = o, rd = r, d = od - rd;
    ++m.finite_count;
    sum_d2 += d * d;
    sum_r2 += rd * rd;
    sum_o2 += od * od;
    sum_or += od * rd;
    const double ad = std::fabs(d);
    if (m.worst_index < 0 || ad > m.max_abs) {  // first on ties
      m.max_abs = ad;
      m.worst_index = static_cast<int64_t>(i);
      m.worst_out = od;
      m.worst_ref = rd;
    }
    m.ref_max_abs = std::max(m.ref_max_abs, std::fabs(rd));
  }
  m.ref_l2 = std::sqrt(sum_r2);
  m.rel_l2 = safe_ratio(std::sqrt(sum_d2), m.ref_l2);
  if (sum_o2 == 0 && sum_r2 == 0)
    m.cosine = 1;  // two zero vectors point the same way for our purposes
  else if (sum_o2 == 0 || sum_r2 == 0)
    m.cosine = 0;
  else
    m.cosine = sum_or / (std::sqrt(sum_o2) * std::sqrt(sum_r2));
  return m;
}

Metrics compute_metrics(const std::vector<float>& out, const std::vector<float>& ref) {
  if (out.size() != ref.size())
    fail(ErrorKind::Shape, "compute_metrics: " + std::to_string(out.size()) + " vs " +
                               std::to_string(ref.size()) + " elements");
  return compute_metrics(out.data(), ref.data(), out.size());
}

std::vector<CurvePoint> error_curve(const float* out, const float* ref,
                                    const std::vector<int64_t>& shape, int position_axis,
                                    int max_points) {
  if (position_axis < 0) return {};
  if (position_axis >= static_cast<int>(shape.size()))
    fail(ErrorKind::Internal, "error_curve: position_axis " + std::to_string(position_axis) +
                                  " out of range for rank " + std::to_string(shape.size()));
  if (max_points < 1) max_points = 1;
  const int64_t positions = shape[static_cast<size_t>(position_axis)];
  int64_t inner = 1, outer = 1;  // elements after / blocks before the position axis
  for (size_t a = static_cast<size_t>(position_axis) + 1; a < shape.size(); ++a) inner *= shape[a];
  for (size_t a = 0; a < static_cast<size_t>(position_axis); ++a) outer *= shape[a];
  if (positions <= 0) return {};
  const int64_t width = (positions + max_points - 1) / max_points;  // positions per bucket
  const int64_t buckets = (positions + width - 1) / width;
  std::vector<double> d2(static_cast<size_t>(buckets), 0.0), r2(static_cast<size_t>(buckets), 0.0),
      mx(static_cast<size_t>(buckets), 0.0);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t p = 0; p < positions; ++p) {
      const size_t b = static_cast<size_t>(p / width);
      const int64_t base = (o * positions + p) * inner;
      for (int64_t j = 0; j < inner; ++j) {
        const float ov = out[base + j], rv = ref[base + j];
        if (classify(ov, rv) != 0) continue;  // counted by compute_metrics
        const double d = static_cast<double>(ov) - rv;
        d2[b] += d * d;
        r2[b] += static_cast<double>(rv) * rv;
        mx[b] = std::max(mx[b], std::fabs(d));
      }
    }
  std::vector<CurvePoint> curve(static_cast<size_t>(buckets));
  for (int64_t b = 0; b < buckets; ++b) {
    CurvePoint& c = curve[static_cast<size_t>(b)];
    c.pos_begin = b * width;
    c.pos_end = std::min(positions, (b + 1) * width);
    c.rel_l2 =
        safe_ratio(std::sqrt(d2[static_cast<size_t>(b)]), std::sqrt(r2[static_cast<size_t>(b)]));
    c.max_abs = mx[static_cast<size_t>(b)];
  }
  return curve;
}

double ulp_bf16(double x) {
  const double a = std::fabs(x);
  // bf16 has 8 significand bits (7 stored): spacing 2^(e-7) in [2^e, 2^(e+1)).
  if (!(a >= std::ldexp(1.0, -126))) return std::ldexp(1.0, -133);  // subnormal step (and 0/NaN)
  if (std::isinf(a)) return std::numeric_limits<double>::infinity();
  int e = 0;
  std::frexp(a, &e);  // a = m * 2^e with m in [0.5, 1): floor(log2 a) = e - 1
  return std::ldexp(1.0, (e - 1) - 7);
}

}  // namespace jb::cmp
