#pragma once
#include "reference/common.hpp"

namespace jb::ref {

template <class T>
struct MlpWeights {
  Mat<T> gate_proj;  // [I, d]
  Mat<T> up_proj;    // [I, d]
  Mat<T> down_proj;  // [d, I]
};

// SwiGLU: down(silu(gate x) * up x)  (jamba-spec §2.6). x [L, d] -> [L, d].
// Round::Bf16 rounds g = x gate^T and u = x up^T, the gated product silu(g) * u (computed from
// the rounded g, u) and the output: the kernels' store points (cuda/experts.hpp).
template <class T>
Mat<T> mlp(const Mat<T>& x, const MlpWeights<T>& w, Round r);

}  // namespace jb::ref
