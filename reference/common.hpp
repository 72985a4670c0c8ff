// Shared types of the Eigen CPU reference. Every component is a template over the scalar type
// T (float: the reference; double: the "truth" where a tolerance needs one) and takes a Round
// policy: Round::Bf16 rounds to bf16 at exactly the points where the CUDA kernels round
// (jamba-spec.md §7.1: bf16 storage of inputs, weights and outputs; fp32 accumulation and fp32
// dt/softplus/exp/state/skip/gate). Round::None rounds nowhere.
//
// Layout: activations are token-major, [L, features] per sequence (row-major, like the GEMM
// outputs on the GPU); weights keep PyTorch's nn.Linear [out, in] layout.
#pragma once
#include <Eigen/Dense>
#include <cmath>

#include "core/bf16.hpp"

namespace jb::ref {

template <class T>
using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;

enum class Round { None, Bf16 };

// Value of a bf16 store of x when r == Bf16 (computed through fp32, as a kernel's store is).
template <class T>
inline T rnd(T x, Round r) {
  return r == Round::Bf16 ? static_cast<T>(round_bf16(static_cast<float>(x))) : x;
}
template <class T>
inline void rnd_inplace(Mat<T>& m, Round r) {
  if (r == Round::Bf16) m = m.unaryExpr([](T v) { return rnd(v, Round::Bf16); });
}
template <class T>
inline void rnd_inplace(Vec<T>& v, Round r) {
  if (r == Round::Bf16) v = v.unaryExpr([](T x) { return rnd(x, Round::Bf16); });
}

template <class T>
inline T silu(T x) {
  return x / (T(1) + std::exp(-x));
}

// softplus with PyTorch's threshold 20 (jamba-spec §2.4 step 7): linear above 20.
template <class T>
inline T softplus(T x) {
  return x > T(20) ? x : std::log1p(std::exp(x));
}

}  // namespace jb::ref
