// Causal depthwise conv1d kernels (see causal_conv1d.hpp for the contract).
//
// Prefill design (memory-bound: one read of x, one write of y): each thread owns 8 consecutive
// channels (one 16-byte load/store per token when the layout allows) over a tile of time_tile
// tokens, and keeps the K-1 previous inputs in registers, so x is read once plus K-1 tokens of
// overlap per tile. Grid: (channel groups, time tiles, batch).
#include "cuda/causal_conv1d.hpp"

#include <algorithm>
#include <string>

namespace jb::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kMinTimeTile = 64;  // also the granularity of the tile length
constexpr int kMaxTimeTile = 1024;
constexpr int kUnroll = 4;  // tokens per group; the next group's loads fly during this one

struct FwdParams {
  int64_t seqlen, dim;
  int64_t time_tile;  // tokens per blockIdx.y
  const bf16* x;
  int64_t x_rs, x_bs;
  const float* weight;
  const float* bias;
  const bf16* state_in;
  bf16* state_out;
  bool write_state_here;  // the last time tile writes the final state
  bool silu;
  bf16* y;
  int64_t y_rs, y_bs;
};

// Fast SiLU: __expf (one ex2.approx) and __fdividef (rcp.approx + mul), ~4 instructions instead
// of ~15 for expf and an IEEE division; a few fp32 ulp from the exact value, far below the bf16
// store's 2^-9 (for v < -87, 1 + e^-v > 2^126 and the quotient flushes to 0 where the exact value
// is below 1e-36). (A version with the correctly rounded __frcp_rn was measured slower.)
__device__ __forceinline__ float silu_f(float v) {
  return __fdividef(v, 1.0f + __expf(-v));
}

// 8 channels of one token as raw bf16 bits (zeros beyond nc valid channels).
template <bool kVec>
__device__ __forceinline__ uint4 load8(const bf16* p, int nc) {
  uint4 r;
  if (kVec) {
    r = __ldg(reinterpret_cast<const uint4*>(p));
  } else {
    uint16_t v[8];
#pragma unroll
    for (int i = 0; i < 8; ++i)
      v[i] = i < nc ? __bfloat16_as_ushort(p[i]) : static_cast<uint16_t>(0);
    r.x = v[0] | (uint32_t(v[1]) << 16);
    r.y = v[2] | (uint32_t(v[3]) << 16);
    r.z = v[4] | (uint32_t(v[5]) << 16);
    r.w = v[6] | (uint32_t(v[7]) << 16);
  }
  return r;
}

__device__ __forceinline__ void unpack8(const uint4& r, float (&f)[8]) {
  const uint32_t w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}

template <bool kVec>
__device__ __forceinline__ void store8(bf16* p, const float (&f)[8], int nc) {
  if (kVec) {
    uint4 r;
    uint32_t w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
      w[i] = uint32_t(__bfloat16_as_ushort(__float2bfloat16_rn(f[2 * i]))) |
             (uint32_t(__bfloat16_as_ushort(__float2bfloat16_rn(f[2 * i + 1]))) << 16);
    r.x = w[0];
    r.y = w[1];
    r.z = w[2];
    r.w = w[3];
    *reinterpret_cast<uint4*>(p) = r;
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i)
      if (i < nc) p[i] = __float2bfloat16_rn(f[i]);
  }
}

// Input at position t (may be negative: history) for 8 channels of batch row xb / state sb.
template <int K, bool kVec>
__device__ __forceinline__ void load_input(const FwdParams& p, const bf16* xb, const bf16* sb,
                                           int64_t t, int nc, float (&f)[8]) {
  if (t >= 0) {
    unpack8(load8<kVec>(xb + t * p.x_rs, nc), f);
    return;
  }
#pragma unroll
  for (int i = 0; i < 8; ++i)  // history column K + t of the [D, K] state, oldest first
    f[i] = (sb != nullptr && i < nc) ? __bfloat162float(sb[int64_t(i) * K + (K + t)]) : 0.0f;
}

template <int K, bool kVec>
__global__ void __launch_bounds__(kThreads, 4) conv1d_fwd_kernel(FwdParams p) {
  const int64_t c0 = (int64_t(blockIdx.x) * kThreads + threadIdx.x) * 8;
  if (c0 >= p.dim) return;
  const int64_t b = blockIdx.z;
  const int64_t t0 = int64_t(blockIdx.y) * p.time_tile;
  const int64_t t_end = min(t0 + p.time_tile, p.seqlen);
  const int nc = p.dim - c0 < 8 ? static_cast<int>(p.dim - c0) : 8;
  const bf16* xb = p.x + b * p.x_bs + c0;
  bf16* yb = p.y + b * p.y_bs + c0;
  const bf16* sb = p.state_in ? p.state_in + (b * p.dim + c0) * K : nullptr;

  float w[K][8], bias[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) {
#pragma unroll
    for (int j = 0; j < K; ++j) w[j][i] = i < nc ? p.weight[(c0 + i) * K + j] : 0.0f;
    bias[i] = (p.bias != nullptr && i < nc) ? p.bias[c0 + i] : 0.0f;
  }
  // hist[j] = input at t - (K-1) + j for the next output t.
  float hist[K > 1 ? K - 1 : 1][8];
#pragma unroll
  for (int j = 0; j < K - 1; ++j) load_input<K, kVec>(p, xb, sb, t0 - (K - 1) + j, nc, hist[j]);

  // Software pipeline: the loads of group g + 1 are issued before group g is computed, so the
  // memory system always has this warp's next kUnroll rows in flight (few warps fit on an SM to
  // hide load latency behind other warps' compute: 159 registers, 3 blocks, before this change;
  // __launch_bounds__(128, 4) now caps them at 128 without spills, 5 would spill).
  uint4 next[kUnroll];
#pragma unroll
  for (int s = 0; s < kUnroll; ++s)
    next[s] = (t0 + s < t_end) ? load8<kVec>(xb + (t0 + s) * p.x_rs, nc) : make_uint4(0, 0, 0, 0);
  for (int64_t t = t0; t < t_end; t += kUnroll) {
    uint4 raw[kUnroll];
#pragma unroll
    for (int s = 0; s < kUnroll; ++s) raw[s] = next[s];
    const int64_t tn = t + kUnroll;
#pragma unroll
    for (int s = 0; s < kUnroll; ++s)
      next[s] = (tn + s < t_end) ? load8<kVec>(xb + (tn + s) * p.x_rs, nc) : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int s = 0; s < kUnroll; ++s) {
      float cur[8], out[8];
      unpack8(raw[s], cur);
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        float acc = bias[i];
#pragma unroll
        for (int j = 0; j < K - 1; ++j) acc = fmaf(w[j][i], hist[j][i], acc);
        acc = fmaf(w[K - 1][i], cur[i], acc);
        out[i] = p.silu ? silu_f(acc) : acc;
      }
#pragma unroll
      for (int j = 0; j + 1 < K - 1; ++j)
#pragma unroll
        for (int i = 0; i < 8; ++i) hist[j][i] = hist[j + 1][i];
      if (K > 1) {
#pragma unroll
        for (int i = 0; i < 8; ++i) hist[K > 1 ? K - 2 : 0][i] = cur[i];
      }
      if (t + s < t_end) store8<kVec>(yb + (t + s) * p.y_rs, out, nc);
    }
  }

  // Final state: the last K inputs (positions L-K .. L-1), older ones from the initial history.
  if (p.write_state_here && blockIdx.y == gridDim.y - 1) {
    float col[K][8];
#pragma unroll
    for (int j = 0; j < K; ++j) load_input<K, kVec>(p, xb, sb, p.seqlen - K + j, nc, col[j]);
    bf16* so = p.state_out + (b * p.dim + c0) * K;
#pragma unroll
    for (int i = 0; i < 8; ++i)
      if (i < nc)
#pragma unroll
        for (int j = 0; j < K; ++j) so[int64_t(i) * K + j] = __float2bfloat16_rn(col[j][i]);
  }
}

// Final state when it cannot be written by the main kernel (in-place state with several time
// tiles: a later tile would overwrite the history the first tile still reads). L >= K here only
// in that case, but the kernel handles any L. One thread per (b, c).
template <int K>
__global__ void conv1d_final_state_kernel(FwdParams p, int64_t batch) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= batch * p.dim) return;
  const int64_t b = i / p.dim, c = i % p.dim;
  float col[K];
#pragma unroll
  for (int j = 0; j < K; ++j) {
    const int64_t t = p.seqlen - K + j;
    col[j] = t >= 0       ? __bfloat162float(p.x[b * p.x_bs + t * p.x_rs + c])
             : p.state_in ? __bfloat162float(p.state_in[(b * p.dim + c) * K + (K + t)])
                          : 0.0f;
  }
#pragma unroll
  for (int j = 0; j < K; ++j) p.state_out[(b * p.dim + c) * K + j] = __float2bfloat16_rn(col[j]);
}

template <int K>
__global__ void conv1d_update_kernel(Conv1dUpdateArgs a, int64_t x_rs, int64_t y_rs) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= a.batch * a.dim) return;
  const int64_t b = i / a.dim, c = i % a.dim;
  bf16* st = a.conv_state + (b * a.dim + c) * K;
  float s[K];
#pragma unroll
  for (int j = 0; j < K; ++j) s[j] = __bfloat162float(st[j]);
    // roll left by one, newest input at K-1 (jamba-spec §2.5, §7 item 20)
#pragma unroll
  for (int j = 0; j + 1 < K; ++j) s[j] = s[j + 1];
  s[K - 1] = __bfloat162float(a.x[b * x_rs + c]);
  float acc = a.bias ? a.bias[c] : 0.0f;
#pragma unroll
  for (int j = 0; j < K; ++j) acc = fmaf(a.weight[c * K + j], s[j], acc);
#pragma unroll
  for (int j = 0; j < K; ++j) st[j] = __float2bfloat16_rn(s[j]);
  a.y[b * y_rs + c] = __float2bfloat16_rn(a.silu ? silu_f(acc) : acc);
}

bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

template <int K>
const char* launch_fwd(const FwdParams& p, int64_t batch, bool state_separate,
                       cudaStream_t stream) {
  const bool vec = p.dim % 8 == 0 && p.x_rs % 8 == 0 && p.x_bs % 8 == 0 && p.y_rs % 8 == 0 &&
                   p.y_bs % 8 == 0 && aligned16(p.x) && aligned16(p.y);
  const int64_t groups = (p.dim + 7) / 8;
  dim3 grid(static_cast<unsigned>((groups + kThreads - 1) / kThreads),
            static_cast<unsigned>((p.seqlen + p.time_tile - 1) / p.time_tile),
            static_cast<unsigned>(batch));
  if (vec)
    conv1d_fwd_kernel<K, true><<<grid, kThreads, 0, stream>>>(p);
  else
    conv1d_fwd_kernel<K, false><<<grid, kThreads, 0, stream>>>(p);
  JB_LAUNCH("conv1d_fwd_kernel");
  if (state_separate) {
    const int64_t n = batch * p.dim;
    conv1d_final_state_kernel<K>
        <<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream>>>(p, batch);
    JB_LAUNCH("conv1d_final_state_kernel");
  }
  return vec ? "vec8" : "scalar";
}

// Tokens per block: each block's prologue (8 x K weights, 8 biases, K - 1 history rows per
// thread: a few dependent L2 round trips) must be amortised over many token rows, while the grid
// keeps about 16 blocks per SM. With a fixed 64-token tile the prologue rivalled the main loop
// (measured on an H200 at D = 8192: 45% of copy bandwidth whatever L). Multiples of 64 tokens.
int64_t conv_time_tile(int64_t batch, int64_t seqlen, int64_t channel_blocks) {
  const int64_t want_blocks = 16 * int64_t(sm_count());
  int64_t tile = batch * channel_blocks * seqlen / want_blocks;
  tile = tile / kMinTimeTile * kMinTimeTile;
  return std::min<int64_t>(std::max<int64_t>(tile, kMinTimeTile), kMaxTimeTile);
}

void check_dims(int64_t batch, int64_t dim, int width, const char* what) {
  if (batch < 1 || dim < 1 || batch > 65535)
    fail(ErrorKind::Unsupported, std::string(what) + ": batch " + std::to_string(batch) +
                                     " / dim " + std::to_string(dim) + " out of range");
  if (width < 1 || width > 4)
    fail(ErrorKind::Unsupported,
         std::string(what) + ": conv width " + std::to_string(width) + " (supported: 1..4)");
}

}  // namespace

const char* causal_conv1d_fwd(const Conv1dArgs& a, cudaStream_t stream) {
  check_dims(a.batch, a.dim, a.width, "causal_conv1d_fwd");
  if (a.seqlen == 0) return "empty";
  if (a.seqlen < 0 || (a.seqlen + kMinTimeTile - 1) / kMinTimeTile > 65535)
    fail(ErrorKind::Unsupported, "causal_conv1d_fwd: seqlen " + std::to_string(a.seqlen));
  FwdParams p;
  p.seqlen = a.seqlen;
  p.dim = a.dim;
  p.x = a.x;
  p.x_rs = a.x_row_stride ? a.x_row_stride : a.dim;
  p.x_bs = a.x_batch_stride ? a.x_batch_stride : a.seqlen * p.x_rs;
  p.weight = a.weight;
  p.bias = a.bias;
  p.state_in = a.conv_state_in;
  p.state_out = a.conv_state_out;
  p.silu = a.silu;
  p.y = a.y;
  p.y_rs = a.y_row_stride ? a.y_row_stride : a.dim;
  p.y_bs = a.y_batch_stride ? a.y_batch_stride : a.seqlen * p.y_rs;
  p.time_tile = conv_time_tile(a.batch, a.seqlen, (((a.dim + 7) / 8) + kThreads - 1) / kThreads);
  const bool tiles_gt1 = a.seqlen > p.time_tile;
  const bool aliased = a.conv_state_in != nullptr && a.conv_state_in == a.conv_state_out;
  const bool state_separate = a.conv_state_out != nullptr && aliased && tiles_gt1;
  p.write_state_here = a.conv_state_out != nullptr && !state_separate;
  switch (a.width) {
    case 1:
      return launch_fwd<1>(p, a.batch, state_separate, stream);
    case 2:
      return launch_fwd<2>(p, a.batch, state_separate, stream);
    case 3:
      return launch_fwd<3>(p, a.batch, state_separate, stream);
    default:
      return launch_fwd<4>(p, a.batch, state_separate, stream);
  }
}

void causal_conv1d_update(const Conv1dUpdateArgs& a, cudaStream_t stream) {
  check_dims(a.batch, a.dim, a.width, "causal_conv1d_update");
  const int64_t x_rs = a.x_row_stride ? a.x_row_stride : a.dim;
  const int64_t y_rs = a.y_row_stride ? a.y_row_stride : a.dim;
  const int64_t n = a.batch * a.dim;
  const unsigned blocks = static_cast<unsigned>((n + 255) / 256);
  switch (a.width) {
    case 1:
      conv1d_update_kernel<1><<<blocks, 256, 0, stream>>>(a, x_rs, y_rs);
      break;
    case 2:
      conv1d_update_kernel<2><<<blocks, 256, 0, stream>>>(a, x_rs, y_rs);
      break;
    case 3:
      conv1d_update_kernel<3><<<blocks, 256, 0, stream>>>(a, x_rs, y_rs);
      break;
    default:
      conv1d_update_kernel<4><<<blocks, 256, 0, stream>>>(a, x_rs, y_rs);
      break;
  }
  JB_LAUNCH("conv1d_update_kernel");
}

}  // namespace jb::cuda
