// Device math shared by the selective scan (prefill) and the selective state update (decode):
// both must advance the state by exactly the same rule, or prefill(L) then decode would drift
// from prefill(L + n).
#pragma once
#include <cuda_runtime.h>

#include "core/softplus.hpp"
#include "core/ssm_decay.hpp"
#include "cuda/device_util.cuh"

namespace jb::cuda::ssm_math {

using dev::ex2_approx;
using dev::kLog2e;
using jb::exp2_decay_poly;
using jb::kExp2DecayPolyLimit;
using jb::softplus_poly;

// 2^x for x = delta * A * log2(e) (<= 0 with softplus). For |x| < 1/16: 1 + x q(x), q a quadratic
// (core/ssm_decay.hpp: fit, accuracy, host test), on the FMA pipe; for larger |x|, ex2.approx
// (MUFU). Why not ex2.approx everywhere: when delta*A is small, exp(delta*A) ~ 1 multiplies the
// state at every step (long memory), and the hardware approximation's error is a smooth function
// of its argument, i.e. nearly the same at consecutive steps, so it adds up linearly over the
// ~1/|delta*A| steps the state remembers instead of averaging out like rounding errors: a
// relative error e in 2^x becomes ~e / (|x| ln 2) in the state, so ex2.approx's ~2^-22 is
// harmless at |x| >= 1/16 (memory of ~23 steps) and not below.
// Measured on an H200 (results/h200-2026-11-29h, call 5; compare --quick SSM_SCAN, SSM_UPDATE,
// MAMBA_LAYER; worst final-state error over the cases as a multiple of the bf16 reference's;
// scan at B = 1 L = 2K / 8K / 128K and B = 16 L = 8K):
//   this (1/16, quadratic)                  1.23x   206 / 710 / 11107 us, 10.35 ms (call 6:
//                                                   186 / 710 / 11167 us, 10.38 ms)
//   1/4 with a cubic q (one FMA more)       1.22x   198 / 739 / 11616 us, 10.78 ms
//   ex2.approx everywhere                   5.50x   167 / 635 /  9907 us,  9.45 ms
// y stays at 1.00x in all three. The big cases at this setting (call 6: L = 4K at B = 8, 16K,
// 64K at B = 1 and 8, chunked 64K) give a final state of 1.14-1.18x, 1.00x before (policy 3x).
// (2026-11-28: a cubic in x on |x| < 1/64 only raised the state error to 2.1-2.3x; before the
// 1/4 cubic, a degree-6 Taylor polynomial on |x| < 1/2 cost two FMAs more than it.)
// The selection is a predicated ex2 written over the polynomial's register (inline PTX): from
// `fabsf(x) < limit ? p : ex2_approx(x)` the compiler issued the MUFU into a scratch register
// ahead of the polynomial and merged it with a predicated MOV, one per state entry and step (the
// ws scan loop: 1511 -> 1402 instructions per 32-step tile and thread). Same values: |x| >= limit
// takes ex2, the rest (NaN included, which stays NaN) the polynomial. Measured on an H200
// (results/h200-2026-11-29k, call 2, old and new binaries alternated in one session): ws at B = 1
// L = 2K 187-189 -> 179-181 us, 8K 708-709 -> 685-686 us; g4 at B = 16 L = 8K 10.35-10.39 ms
// both ways.
__device__ __forceinline__ float exp2_decay(float x) {
  float r = exp2_decay_poly(x);
  asm("{\n\t.reg .pred big;\n\tsetp.ge.f32 big, %1, %2;\n\t@big ex2.approx.ftz.f32 %0, %3;\n\t}"
      : "+f"(r)
      : "f"(fabsf(x)), "f"(kExp2DecayPolyLimit), "f"(x));
  return r;
}
// core/softplus.hpp (accuracy there and in tests/test_core_softplus.cpp). It replaced
// log1pf(expf(v)), which ran 8 times per thread per tile in the scan's staging (~17% of that
// kernel's instructions). The scan and the state update share it, so both advance the state
// alike.
__device__ __forceinline__ float softplus_f(float v) {
  return softplus_poly(v);
}

}  // namespace jb::cuda::ssm_math
