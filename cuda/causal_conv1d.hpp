// Causal depthwise conv1d + bias + SiLU for the Mamba mixer (jamba-spec §2.4 step 3, §2.5, §7
// item 20): cross-correlation with left history, weight[c, j] against input t-(K-1)+j, no flip:
//   y[b,t,c] = silu( bias[c] + sum_{j<K} w[c,j] * x[b, t-(K-1)+j, c] )
// bf16 activations, fp32 weight/bias and arithmetic, one bf16 rounding at the output.
//
// Layouts (token-major): x [B, L, D] with row stride x_row_stride (2*D when x is the first half
// of in_proj's output [B, L, 2D]); y [B, L, D] with row stride y_row_stride.
// conv_state [B, D, K] **bf16**, HF layout: the last K pre-conv inputs, oldest at column 0,
// newest at K-1. bf16 is exact here: the state only ever holds copies of bf16 inputs.
#pragma once
#include <cstdint>

#include "cuda/common.cuh"

namespace jb::cuda {

struct Conv1dArgs {
  int64_t batch = 1, seqlen = 0, dim = 0;
  int width = 4;  // K, 1 <= K <= 4
  const bf16* x = nullptr;
  int64_t x_row_stride = 0;       // 0 means dim
  int64_t x_batch_stride = 0;     // 0 means seqlen * x_row_stride
  const float* weight = nullptr;  // [D, K] fp32
  const float* bias = nullptr;    // [D] fp32, or null
  // Initial history [B, D, K] (null = zeros) and final state [B, D, K] (null = not written).
  // They may be the same buffer (in-place continuation).
  const bf16* conv_state_in = nullptr;
  bf16* conv_state_out = nullptr;
  bool silu = true;
  bf16* y = nullptr;
  int64_t y_row_stride = 0;    // 0 means dim
  int64_t y_batch_stride = 0;  // 0 means seqlen * y_row_stride
};

// Prefill over L tokens. Returns the variant name ("vec8" or "scalar").
const char* causal_conv1d_fwd(const Conv1dArgs& a, cudaStream_t stream = nullptr);

// The prefill's tokens per block (host arithmetic, public for its test): `rows` independent
// strips of seqlen tokens (batch x channel blocks) over `slots` resident blocks. A multiple of 8,
// 16 to 512 tokens, at most 65535 tiles per strip; the rule is in causal_conv1d.cu.
int64_t conv_time_tile(int64_t rows, int64_t seqlen, int64_t slots);

struct Conv1dUpdateArgs {
  int64_t batch = 1, dim = 0;
  int width = 4;
  const bf16* x = nullptr;  // [B, D], row stride x_row_stride (0 = dim)
  int64_t x_row_stride = 0;
  const float* weight = nullptr;  // [D, K]
  const float* bias = nullptr;    // [D] or null
  bf16* conv_state = nullptr;     // [B, D, K], shifted left and x inserted at K-1, in place
  bool silu = true;
  bf16* y = nullptr;  // [B, D], row stride y_row_stride (0 = dim)
  int64_t y_row_stride = 0;
};

// Decode step (one token per sequence): conv_state = shift(conv_state) + x; y = conv(conv_state).
void causal_conv1d_update(const Conv1dUpdateArgs& a, cudaStream_t stream = nullptr);

}  // namespace jb::cuda
