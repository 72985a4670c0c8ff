// Internal to the experts (cuda/experts.cu and cuda/experts_gemv_mma.cu): the SwiGLU store
// point, the device view of the expert groups and the tensor-core variant's launch.
#pragma once
#include <cuda_fp16.h>

#include <string>

#include "cuda/device_util.cuh"
#include "cuda/experts.hpp"

namespace jb::cuda::experts_detail {

// The SwiGLU store point shared by every path (cuda/experts.hpp): g and u (row scales already
// applied) are rounded to bf16 as the GEMM outputs of a bf16 model are, then act =
// bf16(silu(g) * u) with SiLU and the product in fp32. kFastSilu takes dev::silu_fast (a few fp32
// ulp from silu_exact, far below the bf16 store's 2^-9): the wgmma GEMMs' epilogue, which the
// tensor cores wait for (cuda/experts_wgmma.cu).
template <bool kFastSilu = false>
__device__ __forceinline__ bf16 swiglu_act(float g, float u) {
  const float gr = __bfloat162float(__float2bfloat16_rn(g));
  const float ur = __bfloat162float(__float2bfloat16_rn(u));
  return __float2bfloat16_rn((kFastSilu ? dev::silu_fast(gr) : dev::silu_exact(gr)) * ur);
}

struct GroupsDev {
  const int32_t* offsets;
  const int32_t* active;
  const int32_t* num_active;
};

// The fp16 operands of the tensor-core Gemv variant (Int8Gemv::Mma in cuda/experts.hpp): x and act
// as fp16 rescaled per row, [rows, d] and [rows, I], and the per-row factors that undo it.
struct F16Operands {
  __half* x;
  float* x_scale;
  __half* act;
  float* act_scale;
};

// Tensor-core Gemv (cuda/experts_gemv_mma.cu): both stages for every active expert, up to
// 16 rows per expert; int8 weights, fp16 operands (x and act converted into f16 on the way).
template <class WT>
void launch_gemv_mma(const WT* gate_up, const float* gu_scale, const WT* down, const float* d_scale,
                     const ExpertWeights& w, const ExpertGroups& g, const bf16* x_rows, bf16* act,
                     bf16* y_rows, const F16Operands& f16, cudaStream_t stream);

// Why these operands cannot run the grouped wgmma GEMMs (GemmSchedule::Wgmma), or "" when they
// can.
std::string grouped_wgmma_refusal(const ExpertWeights& w, const bf16* x_rows, const bf16* y_rows,
                                  int64_t total_rows);
// Grouped expert GEMMs on TMA and wgmma (cuda/experts_wgmma.cu): every expert's gate/up with
// SwiGLU in the epilogue into act [total_rows, I], then every expert's down into y_rows. Reads
// the expert offsets on the device (no host sync). tile_counters: 2 device ints (zeroed here, on
// the stream, before each launch).
void launch_grouped_experts_wgmma(const ExpertWeights& w, const ExpertGroups& g, const bf16* x_rows,
                                  bf16* act, bf16* y_rows, int* tile_counters, cudaStream_t stream);

}  // namespace jb::cuda::experts_detail
