// Embedding lookup (bounds-checked), final norm and LM head (see cuda/embedding.hpp).
#include "cuda/embedding.hpp"

#include <climits>
#include <string>

#include "cuda/experts.hpp"
#include "cuda/rmsnorm.hpp"

namespace jb::cuda {

namespace {

template <bool kVec8>
__global__ void embedding_kernel(const int32_t* __restrict__ ids, const bf16* __restrict__ table,
                                 int64_t vocab, int64_t d, bf16* __restrict__ out,
                                 int32_t* __restrict__ error) {
  const int64_t i = blockIdx.x;
  int64_t id = ids[i];
  if (id < 0 || id >= vocab) {
    if (threadIdx.x == 0) {
      // Count and lowest position: both order-independent, so the flag is deterministic.
      atomicAdd(&error[0], 1);
      atomicMin(&error[1], static_cast<int32_t>(i));
    }
    id = id < 0 ? 0 : vocab - 1;  // clamp: never read outside the table
  }
  const bf16* src = table + id * d;
  bf16* dst = out + i * d;
  if (kVec8) {
    for (int64_t c = int64_t(threadIdx.x) * 8; c < d; c += int64_t(blockDim.x) * 8)
      *reinterpret_cast<uint4*>(dst + c) = __ldg(reinterpret_cast<const uint4*>(src + c));
  } else {
    for (int64_t c = threadIdx.x; c < d; c += blockDim.x) dst[c] = src[c];
  }
}

}  // namespace

void embedding_lookup(const int32_t* ids, int64_t n, const bf16* table, int64_t vocab, int64_t d,
                      bf16* out, int32_t* error, cudaStream_t stream) {
  if (vocab <= 0 || d <= 0) fail(ErrorKind::Shape, "embedding_lookup: empty table");
  if (n <= 0) return;
  if (n > 2147483647) fail(ErrorKind::Unsupported, "embedding_lookup: more than 2^31 - 1 ids");
  const unsigned grid = static_cast<unsigned>(n);
  if (d % 8 == 0 && aligned16(table) && aligned16(out))
    embedding_kernel<true><<<grid, 128, 0, stream>>>(ids, table, vocab, d, out, error);
  else
    embedding_kernel<false><<<grid, 128, 0, stream>>>(ids, table, vocab, d, out, error);
  JB_LAUNCH("embedding_kernel");
}

void embedding_lookup_checked(const int32_t* ids, int64_t n, const bf16* table, int64_t vocab,
                              int64_t d, bf16* out, cudaStream_t stream) {
  if (n <= 0) return;
  DeviceBuffer<int32_t> error(2);
  const int32_t init[2] = {0, INT_MAX};
  JB_CUDA(cudaMemcpyAsync(error.get(), init, sizeof init, cudaMemcpyHostToDevice, stream));
  embedding_lookup(ids, n, table, vocab, d, out, error.get(), stream);
  int32_t h[2] = {0, 0};
  JB_CUDA(cudaMemcpyAsync(h, error.get(), sizeof h, cudaMemcpyDeviceToHost, stream));
  JB_CUDA(cudaStreamSynchronize(stream));
  if (h[0] != 0) {
    int32_t bad_id = 0;
    JB_CUDA(cudaMemcpy(&bad_id, ids + h[1], sizeof bad_id, cudaMemcpyDeviceToHost));
    fail(ErrorKind::Usage, std::to_string(h[0]) + " token id(s) out of range [0, " +
                               std::to_string(vocab) + "): first at position " +
                               std::to_string(h[1]) + " (id " + std::to_string(bad_id) + ")");
  }
}

void lm_head(const bf16* hidden, int64_t rows, int64_t row_stride, int64_t d, const bf16* w_lm,
             int64_t vocab, float* logits, cudaStream_t stream) {
  if (rows <= 0) return;
  if (row_stride < d) fail(ErrorKind::Internal, "lm_head: row stride below d");
  linear_bf16_f32out(hidden, row_stride, w_lm, logits, rows, vocab, d, stream);
}

void final_norm_lm_head(const bf16* hidden, int64_t batch, int64_t seq_len, int64_t d,
                        const bf16* norm_weight, float eps, const bf16* w_lm, int64_t vocab,
                        bf16* normed, float* logits, cudaStream_t stream) {
  if (batch <= 0) return;
  if (seq_len <= 0) fail(ErrorKind::Shape, "final_norm_lm_head: empty sequences");
  // Only the last position of each sequence is normalised and projected.
  rmsnorm_bf16_strided(hidden + (seq_len - 1) * d, seq_len * d, norm_weight, normed, d, batch, d,
                       eps, stream);
  lm_head(normed, batch, d, d, w_lm, vocab, logits, stream);
}

}  // namespace jb::cuda
