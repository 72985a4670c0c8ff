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
// Round::Bf16 rounds the gated product (the kernel stores it bf16) and the output.
template <class T>
Mat<T> mlp(const Mat<T>& x, const MlpWeights<T>& w, Round r);

}  // namespace jb::ref
