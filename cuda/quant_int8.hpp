// ExpertsInt8 on the GPU (jamba-spec §6.6, ecosystem.md §1.8 "Quantizer exactness"): symmetric
// per-output-channel int8 weights with fp32 scales, produced bit for bit like the CPU reference
// quantiser (reference/quant_int8.hpp, i.e. vLLM's quantize_in_place_and_get_scales on bf16):
//   scale[r] = bf16(max_j |W[r,j]| / 127)
//   q[r,j]   = clamp(rne(bf16(W[r,j] / scale[r])), -127, 127)
// An all-zero row gives scale 0 and q = 0.
#pragma once
#include <cstdint>

#include "cuda/common.cuh"

namespace jb::cuda {

// w: [rows, cols] bf16 (row-major, rows = output channels); q: [rows, cols]; scale: [rows].
// Any cols >= 1 (no alignment requirement). Deterministic (max is order-independent).
void quantize_int8(const bf16* w, int64_t rows, int64_t cols, int8_t* q, float* scale,
                   cudaStream_t stream = nullptr);

// out[r, j] = bf16(q[r, j]) — the raw integers, exact in bf16 (|q| <= 127 < 256). The scales
// are NOT applied: the int8 prefill path multiplies them into the fp32 GEMM output instead, so
// the weights never pick up a bf16 rounding of q * scale (cuda/experts.hpp).
void int8_to_bf16(const int8_t* q, int64_t count, bf16* out, cudaStream_t stream = nullptr);

// out[r, j] = bf16(q[r, j] * scale[r]) (for callers that want a dequantised bf16 copy).
void dequantize_int8_bf16(const int8_t* q, const float* scale, int64_t rows, int64_t cols,
                          bf16* out, cudaStream_t stream = nullptr);

}  // namespace jb::cuda
