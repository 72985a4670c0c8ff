// Error of an fp32 approximation against a long double reference, in units of the fp32 ulp of
// the exact value: the host tests of the kernels' polynomials (softplus, the SSM decay).
#pragma once
#include <algorithm>
#include <cmath>
#include <limits>

namespace jb::test {

struct UlpStats {
  double max_abs = 0, mean = 0;  // the largest |error| and the mean signed error (a bias)
};

inline double ulp_error(float got, long double exact) {
  const float exact_f = static_cast<float>(exact);
  const double ulp = std::nextafter(exact_f, std::numeric_limits<float>::infinity()) - exact_f;
  return static_cast<double>((static_cast<long double>(got) - exact) / ulp);
}

// approx(x) against exact(x) at the midpoints of n equal cells of [lo, hi].
template <class Approx, class Exact>
UlpStats ulp_error_over(Approx approx, Exact exact, float lo, float hi, int n) {
  UlpStats s;
  for (int i = 0; i < n; ++i) {
    const float x = lo + (hi - lo) * (static_cast<float>(i) + 0.5f) / static_cast<float>(n);
    const double e = ulp_error(approx(x), exact(x));
    s.max_abs = std::max(s.max_abs, std::abs(e));
    s.mean += e / n;
  }
  return s;
}

}  // namespace jb::test
