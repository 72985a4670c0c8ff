// Device math shared by the selective scan (prefill) and the selective state update (decode):
// both must advance the state by exactly the same rule, or prefill(L) then decode would drift
// from prefill(L + n).
#pragma once
#include <cuda_runtime.h>

#include "core/softplus.hpp"
#include "cuda/device_util.cuh"

namespace jb::cuda::ssm_math {

using dev::ex2_approx;
using dev::kLog2e;
using jb::softplus_poly;

// 2^x for x = delta * A * log2(e) (<= 0 with softplus). For |x| < 1/4: 1 + x q(x), q a cubic
// fitted to (2^x - 1) / x on [-1/4, 0] in relative error (fp32 coefficients), on the FMA pipe;
// for larger |x|, ex2.approx (MUFU). Why not ex2.approx everywhere: when delta*A is small,
// exp(delta*A) ~ 1 multiplies the state at every step (long memory), and the hardware
// approximation's error is a smooth function of its argument, i.e. nearly the same at
// consecutive steps, so it adds up linearly over the ~1/|delta*A| steps the state remembers
// instead of averaging out like rounding errors. The form 1 + x q(x) keeps the error relative to
// 1 - 2^x, and so to the state, small as x -> 0. Against 2^x in 30-digit arithmetic, fp32
// evaluation (numpy, 3000 random x per range): |x| < 1e-3: bias +0.01 ulp, max 0.50 ulp;
// [1e-3, 0.06]: |bias| <= 0.02, max 0.53; [0.06, 0.25]: bias +0.06, max 0.74 ulp. The degree-6
// Taylor polynomial on |x| < 1/2 it replaces (two FMAs more per state entry) gave 0.44 / 2.4 ulp
// on [0.25, 0.5], where ex2.approx now runs: beyond 1/4 the state forgets within ~6 steps.
// Measured on an H200 (2026-11-28): a degree-3 polynomial in x on |x| < 1/64 only (ex2.approx
// above) raised the final-state error from 1.0x to 2.1-2.3x the bf16 reference's.
__device__ __forceinline__ float exp2_decay(float x) {
  float q = fmaf(x, 8.974820375442505e-3f, 5.5404290556907654e-2f);
  q = fmaf(q, x, 2.4022150039672852e-1f);
  q = fmaf(q, x, 6.931471228599548e-1f);
  const float p = fmaf(x, q, 1.0f);
  return fabsf(x) < 0.25f ? p : ex2_approx(x);
}
// core/softplus.hpp (accuracy there and in tests/test_core_softplus.cpp). It replaced
// log1pf(expf(v)), which ran 8 times per thread per tile in the scan's staging (~17% of that
// kernel's instructions). The scan and the state update share it, so both advance the state
// alike.
__device__ __forceinline__ float softplus_f(float v) {
  return softplus_poly(v);
}

}  // namespace jb::cuda::ssm_math
