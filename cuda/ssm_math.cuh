// Device math shared by the selective scan (prefill) and the selective state update (decode):
// both must advance the state by exactly the same rule, or prefill(L) then decode would drift
// from prefill(L + n).
#pragma once
#include <cuda_runtime.h>

namespace jb::cuda::ssm_math {

constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ float ex2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
// 2^x for x = delta * A * log2(e) (<= 0 with softplus). For |x| < 0.5 a degree-6 Taylor
// polynomial of 2^x = e^(x ln2) on the FMA pipe: its truncation error ((0.5 ln2)^7/7! ~ 2e-11) is
// far below an fp32 ulp, so the result is rounded about as well as a correctly rounded exp. This
// matters: when delta*A is small, exp(delta*A) ~ 1 multiplies the state at every step (long
// memory), and the hardware ex2.approx error is a smooth function of its argument, i.e. nearly
// the same at consecutive steps, so it would add up linearly over the ~1/|delta*A| steps the
// state remembers instead of averaging out like rounding errors. For larger |x| the state
// forgets within ~3 steps and ex2.approx (MUFU, relative error ~2^-22) is accurate enough.
// Measured on an H200 (2026-11-28): a degree-3 polynomial on |x| < 1/64 only was 7% faster at
// B = 1, L = 8K but raised the final-state error from 1.0x to 2.1-2.3x the bf16 reference's
// (the policy allows 3x): not worth it.
__device__ __forceinline__ float exp2_decay(float x) {
  float p = fmaf(x, 1.5403530393381606e-4f, 1.3333558146428443e-3f);
  p = fmaf(p, x, 9.6181291076284772e-3f);
  p = fmaf(p, x, 5.5504108664821580e-2f);
  p = fmaf(p, x, 2.4022650695910071e-1f);
  p = fmaf(p, x, 6.9314718055994531e-1f);
  p = fmaf(p, x, 1.0f);
  return fabsf(x) < 0.5f ? p : ex2_approx(x);
}
// Threshold 20 as in PyTorch and the mamba kernels (jamba-spec §2.4 step 7).
__device__ __forceinline__ float softplus_f(float v) {
  return v <= 20.0f ? log1pf(expf(v)) : v;
}
__device__ __forceinline__ float silu_f(float v) {
  return v / (1.0f + expf(-v));
}

}  // namespace jb::cuda::ssm_math
