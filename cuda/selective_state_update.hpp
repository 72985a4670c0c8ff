// Mamba-1 decode step: one token per sequence, fp32 state updated in place (jamba-spec §2.5;
// the kernel contract of selective_scan.hpp with L = 1, but the state stays fp32, §7 item 12):
//   delta = softplus(dt + dt_bias); h = exp(delta*A) * h + delta * B * x
//   y = (sum_n h C + D * x) * silu(z)
// x, dt, z, y [B, D] bf16 (row strides: z is the second half of in_proj's output, stride 2D);
// B, C [B, N] bf16 (row strides: columns of x_proj's output); state [B, D, N] fp32.
//
// HBM-bound over the state (read + write 2 * B * D * N * 4 bytes): 4 threads per channel, each
// moving 4 state entries as one 16-byte load and store, for 1, 2 or 4 batch rows per thread
// (more rows when the grid still has >= 2 blocks per SM: more state bytes in flight).

#pragma once
#include <cstdint>

#include "cuda/common.cuh"

namespace jb::cuda {

struct StateUpdateArgs {
  int64_t batch = 1, dim = 0, dstate = 16;
  const bf16* x = nullptr;
  int64_t x_row_stride = 0;  // 0 = dim
  const bf16* dt = nullptr;
  int64_t dt_row_stride = 0;
  const float* dt_bias = nullptr;  // [D] or null
  bool delta_softplus = true;
  const float* A_log = nullptr;  // [D, N]
  const bf16* B = nullptr;       // [B, N]
  int64_t B_row_stride = 0;      // 0 = dstate
  const bf16* C = nullptr;
  int64_t C_row_stride = 0;
  const float* D_skip = nullptr;  // [D] or null
  const bf16* z = nullptr;        // [B, D] or null
  int64_t z_row_stride = 0;
  float* state = nullptr;  // [B, D, N], in place
  bf16* y = nullptr;
  int64_t y_row_stride = 0;
};

// Returns the variant: "vec16" when the state rows are 16 aligned floats, else "scalar", with
// "_rows2" / "_rows4" appended when each thread handles 2 / 4 batch rows.
const char* selective_state_update(const StateUpdateArgs& a, cudaStream_t stream = nullptr);

}  // namespace jb::cuda
