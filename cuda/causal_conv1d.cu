// Causal depthwise conv1d kernels (see causal_conv1d.hpp for the contract).
//
// Prefill design (memory-bound: one read of x, one write of y): each thread owns 8 consecutive
// channels (one 16-byte load/store per token when the layout allows) over a tile of time_tile
// tokens, and keeps the K-1 previous inputs in registers, so x is read once plus K-1 tokens of
// overlap per tile. Grid: (channel groups, time tiles, batch), sized to whole waves of resident
// blocks (conv_time_tile). The final conv state is written by the first time tile (see the
// kernel), so one launch does everything, in place or not.
#include "cuda/causal_conv1d.hpp"

#include <algorithm>
#include <string>

#include "cuda/device_util.cuh"

namespace jb::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kBlocksPerSm = 4;  // __launch_bounds__: 128 registers, 4 x 128 threads per SM
// Rows of x each thread keeps in flight: a rolling window, row r + kRows is requested as soon as
// row r is consumed. 6 rows x 16 B x 512 threads = 48 KB of reads in flight per SM, 6.3 MB on
// 132 SMs, against 2.1 TB/s of reads (half the copy traffic) x ~1-2 us loaded latency = 2-4 MB
// needed, provided every SM holds its 4 blocks (conv_time_tile). 8 rows spilled the window to
// local memory at the 128-register cap (K = 4); 6 use 126 registers. (The previous pipeline,
// groups of 4 rows with the next group in flight, had up to 8 rows in flight for the same 32
// registers, but its stores came out as 4 x 32-bit STG per row instead of one 128-bit one.) The
// scalar path's rows arrive as 8 separate 16-bit loads, each holding a register until packed:
// 4 rows there.
// Measured on an H200 (D = 8192, K = 4, fraction of the 1 GB copy at B=1 L = 2K / 8K / 32K /
// 128K and B=16 L=8K; back-to-back launches below 32K):
// - this design, one wave up to 32K (2026-11-28): 0.57 / 0.80 / 0.88 / 0.92 / 0.91;
// - with conv_time_tile's two or four waves (2026-11-29): 0.62 / 0.84 / 0.90 / 0.92 / 0.92;
// - the pipeline before it, one launch per event pair: 0.44 / 0.65 / 0.79 / 0.87 / 0.87 (from
//   32K up the two timings agree to 1%);
// - a per-thread 16-row shared-memory ring filled by cp.async (128 KB of reads in flight per
//   SM, 52 KB of shared memory per block), one wave: 0.50 / 0.72 / 0.83 / 0.92 / 0.91. So bytes
//   in flight are not what limits the short lengths;
// - nor is the chain of DRAM round trips per tile: an L2 bulk prefetch
//   (cp.async.bulk.prefetch.L2) of the tile's first 8-64 rows at block start, then of row
//   r + distance at row r, two waves, left 2K at 0.61-0.62 and took 8K / 32K down to 0.62 /
//   0.65 at distances 32 / 64 (0.61 / 0.83 / 0.90 without it in the same run).
constexpr int kRowsVec = 6;
constexpr int kRowsScalar = 4;
constexpr int kTileGranule = 8;  // tiles are multiples of this many tokens
constexpr int kMinTimeTile = 16;
// Only the first time tile may read the initial conv state (the kernel's in-place state write
// relies on it): every other tile starts at t0 >= kMinTimeTile, past the K - 1 <= 3 history rows.
static_assert(kMinTimeTile >= 4, "time tiles must be at least as long as the widest conv");
// Longest tile: caps a wave at ~1/4 of the run at B=1 L=128K (4 whole waves) so a slow SM
// delays the end by a fraction of one block, while the per-block prologue (K-1 history rows, the
// weight fill) stays < 1% of the block's 512 rows.
constexpr int kMaxTimeTile = 512;
constexpr int64_t kFourWaveTile = 128;  // see conv_time_tile
constexpr int64_t kMaxTiles = 65535;    // gridDim.y

struct FwdParams {
  int64_t seqlen, dim;
  int64_t time_tile;  // tokens per blockIdx.y, a multiple of kTileGranule
  const bf16* x;
  int64_t x_rs, x_bs;
  const float* weight;
  const float* bias;
  const bf16* state_in;
  bf16* state_out;
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

// The prefill loop uses dev::silu_fast, silu_f bit for bit: __expf(-v) is ex2.approx.f32(v *
// -log2(e)), which without -ftz wraps the MUFU.EX2 in a denormal-range fix-up (3 more
// instructions per channel, ~20% of the loop); the ftz form differs only where 2^t < 2^-126, and
// there 1 + 2^t rounds to 1.0f either way, so the quotient is unchanged.

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

// Input at position t (may be negative: history) for 8 channels of batch row xb / state sb, as
// raw bf16 bits (dev::bf16x8_to_f32 gives exactly __bfloat162float of each).
template <int K, bool kVec>
__device__ __forceinline__ uint4 load_input(const FwdParams& p, const bf16* xb, const bf16* sb,
                                            int64_t t, int nc) {
  if (t >= 0) return load8<kVec>(xb + t * p.x_rs, nc);
  uint16_t v[8];
#pragma unroll
  for (int i = 0; i < 8; ++i)  // history column K + t of the [D, K] state, oldest first
    v[i] = (sb != nullptr && i < nc) ? __bfloat16_as_ushort(sb[int64_t(i) * K + (K + t)])
                                     : static_cast<uint16_t>(0);
  return make_uint4(v[0] | (uint32_t(v[1]) << 16), v[2] | (uint32_t(v[3]) << 16),
                    v[4] | (uint32_t(v[5]) << 16), v[6] | (uint32_t(v[7]) << 16));
}

template <int K, bool kVec>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm) conv1d_fwd_kernel(FwdParams p) {
  // The block's weights and biases, transposed so that thread t reads s_wb[row][t]: conflict-free
  // reads, and the fill below is one coalesced pass over the block's contiguous [1024, K] slice.
  // (Each thread loading its own 8 x K + 8 floats straight from global memory was 40 loads
  // whose 32 lanes hit 32 different 128-byte lines: by count ~1280 L1 wavefronts per warp against
  // ~256 for the x and y of a 32-row tile, the likely reason fixed 64-token tiles measured 45% of
  // copy.) The +1 column makes the fill's shared-memory writes conflict-free for K = 4: bank
  // (8j + i + t) mod 32 over a warp's 32 (j, i).
  __shared__ float s_wb[(K + 1) * 8][kThreads + 1];
  const int64_t cb0 = int64_t(blockIdx.x) * kThreads * 8;
  const int64_t c0 = cb0 + int64_t(threadIdx.x) * 8;
  const bool active = c0 < p.dim;
  const int64_t b = blockIdx.z;
  const int64_t t0 = int64_t(blockIdx.y) * p.time_tile;
  const int n = static_cast<int>(min(p.time_tile, p.seqlen - t0));  // rows of this tile, >= 1
  const int nc = !active ? 0 : p.dim - c0 < 8 ? static_cast<int>(p.dim - c0) : 8;
  const bf16* xb = p.x + b * p.x_bs + c0;
  const bf16* xt = xb + t0 * p.x_rs;
  bf16* yt = p.y + b * p.y_bs + c0 + t0 * p.y_rs;
  const bf16* sb = p.state_in ? p.state_in + (b * p.dim + c0) * K : nullptr;

  // Weights and biases go global -> shared with cp.async: no registers held while in flight, so
  // the fill's 8K + 8 loads per thread are all issued at once and overlap the x loads below.
  // (A plain load/store loop was compiled 4 loads per round trip: 8 dependent L2 round trips
  // before the first row.) Channels past dim are zero-filled (source size 0).
  const int64_t nw = min(p.dim - cb0, int64_t(kThreads) * 8) * K;  // valid weights in the block
#pragma unroll
  for (int k = 0; k < 8 * K; ++k) {
    const int e = k * kThreads + threadIdx.x, cc = e / K;  // cc: channel within the block
    dev::cp_async4(&s_wb[(e % K) * 8 + cc % 8][cc / 8], p.weight + cb0 * K + (e < nw ? e : 0),
                   e < nw);
  }
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const int e = k * kThreads + threadIdx.x;
    const bool ok = p.bias != nullptr && cb0 + e < p.dim;
    dev::cp_async4(&s_wb[K * 8 + e % 8][e / 8], ok ? p.bias + cb0 + e : p.weight, ok);
  }

  // x next: these DRAM round trips overlap the weight fill and the barrier below.
  // hist[j] = input at t - (K-1) + j for the next output t.
  float hist[K > 1 ? K - 1 : 1][8];
  constexpr int kRows = kVec ? kRowsVec : kRowsScalar;
  uint4 buf[kRows];  // buf[s] holds row r + s of the current window of kRows rows
  // The final state (inputs L-K .. L-1) is written by the first time tile: only that tile reads
  // the initial history (t0 >= kMinTimeTile >= K elsewhere), and each thread reads exactly the
  // state entries it later writes, in program order, so an in-place state (state_in ==
  // state_out) needs neither a second kernel nor a grid-wide ordering.
  const bool write_state = p.state_out != nullptr && blockIdx.y == 0 && active;
  uint4 col[K];
  if (active) {
#pragma unroll
    for (int j = 0; j < K - 1; ++j)
      dev::bf16x8_to_f32(load_input<K, kVec>(p, xb, sb, t0 - (K - 1) + j, nc), hist[j]);
#pragma unroll
    for (int s = 0; s < kRows; ++s)
      buf[s] = s < n ? load8<kVec>(xt + s * p.x_rs, nc) : make_uint4(0, 0, 0, 0);
    if (write_state) {
#pragma unroll
      for (int j = 0; j < K; ++j) col[j] = load_input<K, kVec>(p, xb, sb, p.seqlen - K + j, nc);
    }
  }

  if (write_state) {
    bf16* so = p.state_out + (b * p.dim + c0) * K;
#pragma unroll
    for (int j = 0; j < K; ++j) {
      float f[8];
      dev::bf16x8_to_f32(col[j], f);
#pragma unroll
      for (int i = 0; i < 8; ++i)
        if (i < nc) so[int64_t(i) * K + j] = __float2bfloat16_rn(f[i]);
    }
  }
  dev::cp_async_wait_all();
  __syncthreads();
  if (!active) return;

  float w[K][8], bias[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) {
#pragma unroll
    for (int j = 0; j < K; ++j) w[j][i] = s_wb[j * 8 + i][threadIdx.x];
    bias[i] = s_wb[K * 8 + i][threadIdx.x];
  }

  // Running row pointers (one 64-bit add per row) rather than xt + row * x_rs per unrolled
  // step, which kept a pointer per step live and spilled.
  const bf16* xn = xt + kRows * p.x_rs;  // the row to request next
  bf16* yp = yt;
  for (int r = 0; r < n; r += kRows) {
#pragma unroll
    for (int s = 0; s < kRows; ++s) {
      float cur[8], out[8];
      dev::bf16x8_to_f32(buf[s], cur);
      if (r + kRows + s < n) buf[s] = load8<kVec>(xn, nc);
      xn += p.x_rs;
      // Rows past the tile's end (its last window is partial when kRows does not divide n, e.g.
      // 4 of the 36 steps of a 32-row tile) skip the ~100 instructions of arithmetic: at the
      // end of a one-wave grid they would run with the memory system already idle.
      if (r + s < n) {
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          float acc = bias[i];
#pragma unroll
          for (int j = 0; j < K - 1; ++j) acc = fmaf(w[j][i], hist[j][i], acc);
          acc = fmaf(w[K - 1][i], cur[i], acc);
          out[i] = p.silu ? dev::silu_fast(acc) : acc;
        }
        store8<kVec>(yp, out, nc);
      }
      yp += p.y_rs;
#pragma unroll
      for (int j = 0; j + 1 < K - 1; ++j)
#pragma unroll
        for (int i = 0; i < 8; ++i) hist[j][i] = hist[j + 1][i];
      if (K > 1) {
#pragma unroll
        for (int i = 0; i < 8; ++i) hist[K > 1 ? K - 2 : 0][i] = cur[i];
      }
    }
  }
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

template <int K, bool kVec>
int64_t resident_blocks() {
  static const int64_t n =
      int64_t(blocks_per_sm(conv1d_fwd_kernel<K, kVec>, kThreads)) * sm_count();
  return n;
}

template <int K>
const char* launch_fwd(FwdParams p, int64_t batch, cudaStream_t stream) {
  const bool vec = p.dim % 8 == 0 && p.x_rs % 8 == 0 && p.x_bs % 8 == 0 && p.y_rs % 8 == 0 &&
                   p.y_bs % 8 == 0 && aligned16(p.x) && aligned16(p.y);
  const int64_t channel_blocks = ceil_div(ceil_div(p.dim, 8), kThreads);
  const int64_t slots = vec ? resident_blocks<K, true>() : resident_blocks<K, false>();
  p.time_tile = conv_time_tile(batch * channel_blocks, p.seqlen, slots);
  dim3 grid(static_cast<unsigned>(channel_blocks),
            static_cast<unsigned>(ceil_div(p.seqlen, p.time_tile)), static_cast<unsigned>(batch));
  if (vec)
    conv1d_fwd_kernel<K, true><<<grid, kThreads, 0, stream>>>(p);
  else
    conv1d_fwd_kernel<K, false><<<grid, kThreads, 0, stream>>>(p);
  JB_LAUNCH("conv1d_fwd_kernel");
  return vec ? "vec8" : "scalar";
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

// Tokens per block. The job is rows = batch x channel blocks independent strips of seqlen
// tokens; cut each into the same number of tiles so that the grid fills whole waves of the
// `slots` resident blocks (kBlocksPerSm x SMs): a partial last wave runs with a fraction of the
// bytes in flight, and a half-empty single wave (B=1 L=2K at the old fixed 64-token floor: 256
// blocks for 528 slots) runs the whole job at half the loads in flight.
// At least two waves, and four where the tiles stay >= kFourWaveTile tokens: in a single wave an
// SM whose blocks got their rows early idles until the slowest block ends (Nsight Compute at B=1
// L=2K, one wave: SMs active 67% of the kernel's cycles), whereas later waves let the block
// scheduler hand it more work. Measured on an H200 (2026-11-29, fraction of the 1 GB copy, one
// wave -> this rule): B=1 L=2K 0.567 -> 0.627 (16-token tiles), 8K 0.803 -> 0.838 (64), 32K
// 0.878 -> 0.905 (128). More waves by shorter tiles lost: 8-token tiles at 2K 0.565 (3 history
// rows per 8), 32-token tiles at 8K 0.81. Narrower blocks (64 or 32 threads, more blocks per
// SM) changed these by at most 0.02. Example, H200, D = 8192 (8 channel blocks), B = 1: L = 2K
// -> 16-token tiles, 1024 blocks; 8K -> 64; 32K -> 128, 2048 blocks; L = 128K -> 4 waves of
// 504-token tiles; B = 16 L = 8K -> 4 waves of 512.
int64_t conv_time_tile(int64_t rows, int64_t seqlen, int64_t slots) {
  const int64_t min_tiles = ceil_div(seqlen, kMaxTimeTile);
  const auto tile_for = [&](int64_t waves) {
    const int64_t tiles = std::min(kMaxTiles, std::max(min_tiles, waves * slots / rows));
    const int64_t tile = ceil_div(ceil_div(seqlen, tiles), kTileGranule) * kTileGranule;
    return std::max<int64_t>(tile, kMinTimeTile);
  };
  const int64_t waves = std::max<int64_t>(2, ceil_div(rows * min_tiles, slots));
  if (waves < 4 && tile_for(4) >= kFourWaveTile) return tile_for(4);
  return tile_for(waves);
}

const char* causal_conv1d_fwd(const Conv1dArgs& a, cudaStream_t stream) {
  check_dims(a.batch, a.dim, a.width, "causal_conv1d_fwd");
  if (a.seqlen == 0) return "empty";
  if (a.seqlen < 0 || ceil_div(a.seqlen, kMaxTimeTile) > kMaxTiles)
    fail(ErrorKind::Unsupported, "causal_conv1d_fwd: seqlen " + std::to_string(a.seqlen));
  FwdParams p;
  p.seqlen = a.seqlen;
  p.dim = a.dim;
  p.time_tile = 0;  // set by launch_fwd, which knows the kernel's occupancy
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
  switch (a.width) {
    case 1:
      return launch_fwd<1>(p, a.batch, stream);
    case 2:
      return launch_fwd<2>(p, a.batch, stream);
    case 3:
      return launch_fwd<3>(p, a.batch, stream);
    default:
      return launch_fwd<4>(p, a.batch, stream);
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
