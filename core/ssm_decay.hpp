// The FMA-pipe part of the SSM decay exp(delta A) = 2^x of the CUDA kernels (cuda/ssm_math.cuh,
// which says why and where ex2.approx takes over), compiled for host and device so that its
// accuracy is tested on machines without a GPU (tests/test_core_ssm_decay.cpp).
#pragma once
#include <math.h>

#include "core/hostdevice.hpp"

namespace jb {

// The polynomial covers x in (-kExp2DecayPolyLimit, 0].
constexpr float kExp2DecayPolyLimit = 0.0625f;

// 2^x = 1 + x q(x) for x in (-1/16, 0], q a quadratic fitted to (2^x - 1) / x on [-1/16, 0] in
// relative error (fp32 coefficients, max 1.1e-7). The form keeps the error relative to 1 - 2^x,
// the part of the decay the state forgets per step. Against exp2 in long double at 20001 evenly
// spaced x per range (tests/test_core_ssm_decay.cpp, x86-64 host, whose fmaf rounds like the
// device's fma): |x| < 1e-3: max 0.50 ulp, mean +0.001 ulp; [1e-3, 0.02]: 0.53, -0.012;
// [0.02, 1/16]: 0.59, +0.009.
JB_HD float exp2_decay_poly(float x) {
  float q = fmaf(x, 5.460984259843826e-2f, 2.402055561542511e-1f);
  q = fmaf(q, x, 6.931471228599548e-1f);
  return fmaf(x, q, 1.0f);
}

}  // namespace jb
