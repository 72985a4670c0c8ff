// Internal interface between cuda/attention.cu (dispatch) and cuda/attention_wgmma.cu (the
// Hopper warpgroup-MMA prefill kernel). Not for other callers: cuda/attention.hpp is the API.
#pragma once
#include <cuda_runtime.h>

#include "cuda/attention.hpp"

namespace jb::cuda::attention_detail {

// Whether this build holds the wgmma kernel for the current device: sm_90a machine code exists
// only for compute capability 9.0 (H100 / H200); elsewhere the compute_90 PTX has no wgmma.
bool prefill_wgmma_supported();

// Causal prefill, head_dim 128, with wgmma (the PrefillVariant::Wgmma contract of
// attention.hpp). The caller has checked shapes and alignment.
void launch_prefill_wgmma(const PrefillArgs& a, float scale_log2, cudaStream_t stream);

}  // namespace jb::cuda::attention_detail
