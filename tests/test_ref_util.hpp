// Helpers shared by the reference tests (tests/test_ref_*.cpp): seeded inputs from the
// counter-based RNG and error metrics. Naive reference implementations live in each test file.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/rng.hpp"
#include "reference/common.hpp"

namespace jb::ref::testing {

// [rows, cols] with N(0, std) entries keyed by (seed, stream, index).
template <class T>
Mat<T> rand_mat(int64_t rows, int64_t cols, uint64_t seed, uint64_t stream, float std = 1.0f) {
  Mat<T> m(rows, cols);
  for (int64_t i = 0; i < rows * cols; ++i)
    m.data()[i] = static_cast<T>(rng_normal(seed, stream, static_cast<uint64_t>(i), 0.0f, std));
  return m;
}
template <class T>
Vec<T> rand_vec(int64_t n, uint64_t seed, uint64_t stream, float std = 1.0f) {
  Vec<T> v(n);
  for (int64_t i = 0; i < n; ++i)
    v(i) = static_cast<T>(rng_normal(seed, stream, static_cast<uint64_t>(i), 0.0f, std));
  return v;
}
template <class T>
Mat<T> rand_uniform_mat(int64_t rows, int64_t cols, uint64_t seed, uint64_t stream, float lo,
                        float hi) {
  Mat<T> m(rows, cols);
  for (int64_t i = 0; i < rows * cols; ++i)
    m.data()[i] = static_cast<T>(rng_uniform(seed, stream, static_cast<uint64_t>(i), lo, hi));
  return m;
}

// ||a - b|| / ||b|| in double (b is the reference).
template <class A, class B>
double rel_l2(const A& a, const B& b) {
  const auto ad = a.template cast<double>();
  const auto bd = b.template cast<double>();
  const double den = bd.norm();
  return den == 0.0 ? (ad - bd).norm() : (ad - bd).norm() / den;
}

template <class A, class B>
bool bitwise_equal(const A& a, const B& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
  for (int64_t i = 0; i < a.rows(); ++i)
    for (int64_t j = 0; j < a.cols(); ++j)
      if (!(a(i, j) == b(i, j))) return false;
  return true;
}

inline double naive_silu(double x) {
  return x / (1.0 + std::exp(-x));
}
inline double naive_softplus(double x) {
  return x > 20.0 ? x : std::log(1.0 + std::exp(x));
}

}  // namespace jb::ref::testing
