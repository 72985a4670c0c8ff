// Device helpers used by more than one kernel file: PTX wrappers (asynchronous copies, the bf16 and
// fp16 tensor-core MMAs, the hardware 2^x) and exact SiLU. sm_80+ (cp.async, mma.sync).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace jb::cuda::dev {

constexpr float kLog2e = 1.4426950408889634f;

// ex2.approx.ftz.f32 (MUFU.EX2, relative error ~2^-22; results below 2^-126 flush to zero).
__device__ __forceinline__ float ex2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// SiLU with expf and an IEEE division (the references' rounding, to an ulp or so).
__device__ __forceinline__ float silu_exact(float v) {
  return v / (1.0f + expf(-v));
}

// SiLU in ~4 instructions: ex2.approx and __fdividef (rcp.approx + mul) instead of expf's ~10 and
// an IEEE division's ~20: a few fp32 ulp from silu_exact, far below a bf16 output's 2^-9, so
// kernels that only round it into a bf16 result use this one. For v < -87, 1 + 2^t > 2^126 and
// __fdividef returns 0 where the exact value is below 1e-36. The ftz form of ex2 differs only
// where 2^t < 2^-126, where 1 + 2^t rounds to 1.0f either way.
__device__ __forceinline__ float silu_fast(float v) {
  return __fdividef(v, 1.0f + ex2_approx(v * -kLog2e));
}

// Two floats -> bf16x2 (round to nearest even), `lo` in the low half: the lower column of an
// mma / wgmma A fragment register, or the lower address of a 4-byte store.
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// Eight bf16 (one 16-byte load) as floats, exactly: element 2k is the low half of little-endian
// word k, and a bf16 is the upper half of the float with the same value.
__device__ __forceinline__ void bf16x8_to_f32(const uint4& v, float* f) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    f[2 * k] = __uint_as_float(w[k] << 16);
    f[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
  }
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global->shared copy, bypassing L1; when !valid, writes 16 zero bytes and reads nothing
// (src-size 0). The zeros matter to attention: a NaN in rows past the cache length times P = 0
// would still be NaN.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
// 4-byte global->shared copy; when !valid, writes a zero instead.
__device__ __forceinline__ void cp_async4(float* dst, const float* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 4 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  // A compiler barrier too: shared-memory reads of the landed data must not move above it.
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() {
  asm volatile("cp.async.wait_all;\n" ::: "memory");
}

// D = A(16x16, row) * B(16x8, col) + D, bf16 inputs, fp32 accumulators (mma.m16n8k16).
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                               uint32_t a3, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                               uint32_t b1) {
  mma_bf16_16816(d, a[0], a[1], a[2], a[3], b0, b1);
}

// The same with fp16 inputs (mma.m16n8k16 .f16, fp32 accumulators).
__device__ __forceinline__ void mma_f16_16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                              uint32_t a3, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

}  // namespace jb::cuda::dev
