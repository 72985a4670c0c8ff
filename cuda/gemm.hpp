// Small cuBLAS wrapper for the nn.Linear-shaped GEMMs of the CUDA path:
//   y[M, N] = x[M, K] * W[N, K]^T (+ bias[N]),  bf16 inputs and output, fp32 accumulation.
// Everything is row-major (token-major activations, PyTorch [out, in] weights), with explicit
// leading dimensions (elements between consecutive rows) so that a column slice of a wider
// activation (the x / z halves of in_proj's output, the dt / B / C columns of x_proj's output)
// can be read or written in place.
#pragma once
#include <cstdint>

#include "cuda/common.cuh"

namespace jb::cuda {

struct GemmArgs {
  int64_t M = 0, N = 0, K = 0;  // y is [M, N], x is [M, K], W is [N, K]
  const bf16* x = nullptr;
  int64_t ldx = 0;  // >= K; 0 means K
  const bf16* w = nullptr;
  int64_t ldw = 0;  // >= K; 0 means K
  bf16* y = nullptr;
  int64_t ldy = 0;  // >= N; 0 means N
  float alpha = 1.0f;
  float beta = 0.0f;  // y = alpha * x W^T + beta * y (beta != 0 reads y, rounded bf16)
  cublasHandle_t handle = nullptr;  // null: the process-wide cublas() handle
};

// bf16 x bf16 -> bf16, CUBLAS_COMPUTE_32F (fp32 accumulation, no reduced-precision reductions),
// on `stream` (the process-wide handle is bound to it for this call). M == 0 is a no-op.
void gemm_bf16(const GemmArgs& a, cudaStream_t stream = nullptr);

// Convenience: contiguous y[M,N] = x[M,K] W[N,K]^T.
inline void linear_bf16(const bf16* x, const bf16* w, bf16* y, int64_t M, int64_t N, int64_t K,
                        cudaStream_t stream = nullptr, cublasHandle_t handle = nullptr) {
  GemmArgs a;
  a.handle = handle;
  a.M = M;
  a.N = N;
  a.K = K;
  a.x = x;
  a.w = w;
  a.y = y;
  gemm_bf16(a, stream);
}

// Adds a bias[N] (fp32) to every row of y[M, N] (row stride ldy) in place, rounding to bf16 once.
void add_bias_rows_bf16(bf16* y, int64_t ldy, const float* bias, int64_t M, int64_t N,
                        cudaStream_t stream = nullptr);

}  // namespace jb::cuda
