#pragma once
#include "reference/common.hpp"

namespace jb::ref {

// RMSNorm over the last dim of x [rows, n] (jamba-spec §2.2):
//   y = x * rsqrt(mean(x^2) + eps) * weight, reduction in fp32 (T).
// Round::Bf16 rounds once, at the output (the CUDA kernel computes weight*x*rsqrt in fp32 and
// stores bf16; HF's two-rounding variant differs by <= 1 ulp and is not emulated).
template <class T>
Mat<T> rmsnorm(const Mat<T>& x, const Vec<T>& weight, double eps, Round r);

}  // namespace jb::ref
