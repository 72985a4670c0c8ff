#include "cuda/gemm.hpp"

#include <string>

namespace jb::cuda {

// cuBLAS is column-major. A row-major matrix R[rows, cols] with leading dimension ld is the
// column-major matrix R^T[cols, rows] with the same ld. So the row-major y = x W^T is the
// column-major y^T[N, M] = W[N,K] (as column-major W^T[K,N], transposed -> op T) * x^T[K, M]:
//   cublasGemmEx(opA = T on W (K x N col-major, ld ldw), opB = N on x (K x M col-major, ld ldx),
//                m = N, n = M, k = K, C = y (N x M col-major, ld ldy)).
void gemm_bf16(const GemmArgs& a, cudaStream_t stream) {
  if (a.M == 0 || a.N == 0) return;
  const int64_t ldx = a.ldx ? a.ldx : a.K;
  const int64_t ldw = a.ldw ? a.ldw : a.K;
  const int64_t ldy = a.ldy ? a.ldy : a.N;
  if (a.M < 0 || a.N < 0 || a.K <= 0 || ldx < a.K || ldw < a.K || ldy < a.N)
    fail(ErrorKind::Internal, "gemm_bf16: bad shape M=" + std::to_string(a.M) +
                                  " N=" + std::to_string(a.N) + " K=" + std::to_string(a.K));
  const int64_t lim = 2147483647;
  if (a.M > lim || a.N > lim || a.K > lim || ldx > lim || ldw > lim || ldy > lim)
    fail(ErrorKind::Unsupported, "gemm_bf16: dimension exceeds int32");
  cublasHandle_t h = a.handle ? a.handle : cublas();
  JB_CUBLAS(cublasSetStream(h, stream));
  JB_CUBLAS(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(a.N), static_cast<int>(a.M),
                         static_cast<int>(a.K), &a.alpha, a.w, CUDA_R_16BF, static_cast<int>(ldw),
                         a.x, CUDA_R_16BF, static_cast<int>(ldx), &a.beta, a.y, CUDA_R_16BF,
                         static_cast<int>(ldy), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

namespace {
__global__ void add_bias_rows_kernel(bf16* y, int64_t ldy, const float* bias, int64_t M,
                                     int64_t N) {
  const int64_t total = M * N;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / N, c = i % N;
    bf16* p = y + r * ldy + c;
    *p = __float2bfloat16_rn(__bfloat162float(*p) + bias[c]);
  }
}
}  // namespace

void add_bias_rows_bf16(bf16* y, int64_t ldy, const float* bias, int64_t M, int64_t N,
                        cudaStream_t stream) {
  if (M == 0 || N == 0) return;
  const int64_t total = M * N;
  int blocks = static_cast<int>((total + 255) / 256);
  if (blocks > 65536) blocks = 65536;
  add_bias_rows_kernel<<<blocks, 256, 0, stream>>>(y, ldy, bias, M, N);
  JB_LAUNCH("add_bias_rows_kernel");
}

}  // namespace jb::cuda
