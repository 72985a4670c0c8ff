// RMSNorm (jamba-spec §2.2), one rounding at the output under Round::Bf16 (the fused kernel's).
#include "reference/rmsnorm.hpp"

#include "core/error.hpp"

namespace jb::ref {

template <class T>
Mat<T> rmsnorm(const Mat<T>& x, const Vec<T>& weight, double eps, Round r) {
  const int64_t n = x.cols();
  if (weight.size() != n)
    fail(ErrorKind::Shape, "rmsnorm: weight has " + std::to_string(weight.size()) +
                               " elements, input rows have " + std::to_string(n));
  Mat<T> y(x.rows(), n);
  for (int64_t i = 0; i < x.rows(); ++i) {
    // Sequential sum of squares in T (fp32 for the reference), then mean over the last dim.
    T sum_sq = T(0);
    for (int64_t j = 0; j < n; ++j) sum_sq += x(i, j) * x(i, j);
    const T inv_rms = T(1) / std::sqrt(sum_sq / static_cast<T>(n) + static_cast<T>(eps));
    for (int64_t j = 0; j < n; ++j) y(i, j) = rnd(weight(j) * (x(i, j) * inv_rms), r);
  }
  return y;
}

template Mat<float> rmsnorm<float>(const Mat<float>&, const Vec<float>&, double, Round);
template Mat<double> rmsnorm<double>(const Mat<double>&, const Vec<double>&, double, Round);

}  // namespace jb::ref
