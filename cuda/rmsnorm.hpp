// RMSNorm kernels (jamba-spec §2.2), callable from plain C++ (no CUDA types in this header).
//
//   y[r, j] = round( w[j] * (x[r, j] * inv_rms[r]) ),  inv_rms[r] = 1 / sqrt(mean_j x[r,j]^2 + eps)
//
// Inputs and weight in the storage dtype (bf16 or fp32); the sum of squares, inv_rms and the
// products are fp32, and the output is rounded ONCE (bf16 kernels: round-to-nearest-even). This is
// the fused form the CPU reference emulates with Round::Bf16 (reference/rmsnorm.hpp); HF's
// two-rounding form differs by at most ~1 bf16 ulp.
//
// Row strides (elements between consecutive rows, >= n) let one call normalise a column slice of a
// wider activation, e.g. the B / C / dt_low columns of x_proj's output [L, R + 2N] (the Mamba
// inner norms, jamba-spec §2.4 step 6). In-place (x == y with equal strides) is allowed: each
// element is read before it is written by the same thread.
//
// Variants (chosen per call, see rmsnorm_variant):
//   thread_row   n <= 32: one thread per row (the many tiny inner-norm rows, n = 16)
//   warp_*       32 < n <= 2048: one warp per row, 8 rows per block
//   block_*      n > 2048: one 256-thread block per row
//   *_vec16 when n and both strides are multiples of 16 bytes and x, w, y are 16-byte aligned
//   (16-byte loads/stores), *_scalar otherwise.
// Every row is reduced in a fixed order, so results are bitwise deterministic.
#pragma once
#include <cstdint>

struct CUstream_st;
typedef CUstream_st* cudaStream_t;

namespace jb::cuda {

// bf16 data passed as raw device pointers to __nv_bfloat16 (2 bytes per element).
void rmsnorm_bf16(const void* x, const void* weight, void* y, int64_t rows, int64_t n, float eps,
                  cudaStream_t stream = nullptr);
void rmsnorm_bf16_strided(const void* x, int64_t x_row_stride, const void* weight, void* y,
                          int64_t y_row_stride, int64_t rows, int64_t n, float eps,
                          cudaStream_t stream = nullptr);

// fp32 storage (the fp32 path of the harness: dtype=fp32 cases).
void rmsnorm_f32(const float* x, const float* weight, float* y, int64_t rows, int64_t n, float eps,
                 cudaStream_t stream = nullptr);
void rmsnorm_f32_strided(const float* x, int64_t x_row_stride, const float* weight, float* y,
                         int64_t y_row_stride, int64_t rows, int64_t n, float eps,
                         cudaStream_t stream = nullptr);

// Name of the variant a call with these arguments runs ("warp_vec16", ...); elem_bytes is 2 for
// bf16 and 4 for fp32. Recorded in compare results.
const char* rmsnorm_variant(int64_t n, int64_t x_row_stride, int64_t y_row_stride, const void* x,
                            const void* weight, const void* y, int elem_bytes);

}  // namespace jb::cuda
