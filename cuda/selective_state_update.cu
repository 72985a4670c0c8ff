// Selective state update (decode) kernel; contract in selective_state_update.hpp.
#include "cuda/selective_state_update.hpp"

#include <string>

#include "cuda/ssm_math.cuh"

namespace jb::cuda {
namespace {

using ssm_math::exp2_decay;
using ssm_math::kLog2e;
using ssm_math::softplus_f;

constexpr int kG = 4;              // threads per channel
constexpr int kNPer = 4;           // state entries per thread (one float4)
constexpr int kMaxN = kG * kNPer;  // 16
constexpr int kThreads = 256;      // 64 channels per block
constexpr int kCB = kThreads / kG;

struct Params {
  int64_t batch, dim, dstate;
  const bf16* x;
  int64_t x_rs;
  const bf16* dt;
  int64_t dt_rs;
  const float* dt_bias;
  bool softplus;
  const float* A_log;
  const bf16* B;
  int64_t B_rs;
  const bf16* C;
  int64_t C_rs;
  const float* D_skip;
  const bf16* z;
  int64_t z_rs;
  float* state;
  bf16* y;
  int64_t y_rs;
};

// Each thread updates the same 4 entries of one channel in kR batch rows (rows b0 .. b0+kR-1):
// the kR state float4 loads are all issued before any math, so a thread has 16 * kR bytes of
// state in flight instead of 16 (the kernel is bound by HBM latency: with one row per thread an
// SM held ~24 KB of loads in flight, below bandwidth x latency), and A2 = -exp(A_log) log2(e),
// dt_bias and D are read once per channel instead of once per row. The per-row scalars (x, dt,
// z; softplus, SiLU, the y store) belong to lane g = r of the channel's 4 lanes, which hands delta
// and delta * x to the others by shuffle: each lane evaluates softplus and SiLU once instead of
// kR times. Every entry still goes through exactly the operations of the one-row kernel (the
// shuffles move values, not rounding), so the outputs do not depend on kR.
template <bool kStream, class T>
__device__ __forceinline__ T ld_hint(const T* p) {
  if constexpr (kStream) return __ldcs(p);
  return *p;
}
template <bool kStream, class T>
__device__ __forceinline__ void st_hint(T* p, const T& v) {
  if constexpr (kStream)
    __stcs(p, v);
  else
    *p = v;
}

template <bool kVec, int kR>
__global__ void __launch_bounds__(kThreads) state_update_kernel(Params p) {
  static_assert(kR == 1 || kR == 2 || kR == 4, "rows per thread: 1, 2 or 4 (at most kG)");
  const int tid = threadIdx.x;
  const int g = tid % kG;
  const int64_t b0 = int64_t(blockIdx.y) * kR;
  const int64_t c = int64_t(blockIdx.x) * kCB + tid / kG;
  const bool c_ok = c < p.dim;
  const int n0 = g * kNPer;
  // Rows past the batch are the same for the whole block, so skipping them keeps the warp
  // shuffles convergent.
  const int rows = static_cast<int>(p.batch - b0 < kR ? p.batch - b0 : kR);
  const int64_t row_elems = p.dim * p.dstate;
  float* st0 = p.state + (b0 * p.dim + (c_ok ? c : 0)) * p.dstate + n0;

  // The state is touched once per step: streaming loads and stores (evict-first) when a block
  // takes several rows (large batches, state far beyond L2). With one row (B <= 4) plain ones:
  // on an H200 the streaming hints measured 2.62 us at B = 1 against 2.06 us without them.
  float h[kR][kNPer];
#pragma unroll
  for (int r = 0; r < kR; ++r) {
#pragma unroll
    for (int j = 0; j < kNPer; ++j) h[r][j] = 0.f;
    if (r < rows && c_ok) {
      const float* st = st0 + r * row_elems;
      if (kVec) {
        const float4 v = ld_hint<(kR > 1)>(reinterpret_cast<const float4*>(st));
        h[r][0] = v.x, h[r][1] = v.y, h[r][2] = v.z, h[r][3] = v.w;
      } else {
#pragma unroll
        for (int j = 0; j < kNPer; ++j)
          if (n0 + j < p.dstate) h[r][j] = ld_hint<(kR > 1)>(st + j);
      }
    }
  }
  float bias = 0.f, dsk = 0.f, alog[kNPer];
  if (c_ok) {
    if (p.dt_bias) bias = p.dt_bias[c];
    if (p.D_skip) dsk = p.D_skip[c];
  }
#pragma unroll
  for (int j = 0; j < kNPer; ++j)
    alog[j] = c_ok && n0 + j < p.dstate ? p.A_log[c * p.dstate + n0 + j] : 0.f;
  // The row whose scalars this lane loads; lanes g >= kR duplicate row g % kR and store nothing.
  const int my_r = g % kR;
  const bool my_ok = my_r < rows && c_ok;
  float xv = 0.f, dtv = 0.f, zv = 0.f;
  if (my_ok) {
    const int64_t b = b0 + my_r;
    xv = __bfloat162float(p.x[b * p.x_rs + c]);
    dtv = __bfloat162float(p.dt[b * p.dt_rs + c]);
    if (p.z) zv = __bfloat162float(p.z[b * p.z_rs + c]);
  }
  // B and C rows are shared by the block's 64 channels: staged once as fp32 in shared memory
  // (entries past d_state are 0, as the one-row kernel's registers were), which saves the
  // 8 * kR registers that per-thread copies cost (kR = 4 needed 96 registers, 2 blocks per SM).
  __shared__ __align__(16) float sBC[2][kR][kMaxN];
  if (tid < 2 * kR * kMaxN) {
    const int which = tid / (kR * kMaxN), r = tid / kMaxN % kR, n = tid % kMaxN;
    const int64_t b = b0 + r;
    float v = 0.f;
    if (r < rows && n < p.dstate)
      v = __bfloat162float(which == 0 ? p.B[b * p.B_rs + n] : p.C[b * p.C_rs + n]);
    sBC[which][r][n] = v;
  }
  __syncthreads();
  // exp(A_log) after the barrier: placed before it, ptxas waited for A_log before issuing the
  // state loads, serializing two memory latencies.
  float A2[kNPer];
#pragma unroll
  for (int j = 0; j < kNPer; ++j) A2[j] = c_ok && n0 + j < p.dstate ? -expf(alog[j]) * kLog2e : 0.f;
  const float pre = dtv + bias;
  const float my_delta = p.softplus ? softplus_f(pre) : pre;
  const float my_du = my_delta * xv;
  float my_yp = 0.f;
#pragma unroll
  for (int r = 0; r < kR; ++r) {
    if (r >= rows) break;
    float delta = my_delta, du = my_du;
    if (kR > 1) {
      delta = __shfl_sync(0xffffffffu, my_delta, r, kG);
      du = __shfl_sync(0xffffffffu, my_du, r, kG);
    }
    const float4 b4 = *reinterpret_cast<const float4*>(&sBC[0][r][n0]);
    const float4 c4 = *reinterpret_cast<const float4*>(&sBC[1][r][n0]);
    const float bv[kNPer] = {b4.x, b4.y, b4.z, b4.w}, cv[kNPer] = {c4.x, c4.y, c4.z, c4.w};
    float yp = 0.f;
#pragma unroll
    for (int j = 0; j < kNPer; ++j) {
      h[r][j] = fmaf(exp2_decay(delta * A2[j]), h[r][j], bv[j] * du);
      yp = fmaf(h[r][j], cv[j], yp);
    }
    // After the butterfly all 4 lanes hold the same sum (y0 + y1) + (y2 + y3): fp addition is
    // commutative, so the owner lane's copy is the one-row kernel's lane-0 value.
    yp += __shfl_xor_sync(0xffffffffu, yp, 1);
    yp += __shfl_xor_sync(0xffffffffu, yp, 2);
    if (g == r) my_yp = yp;
    if (!c_ok) continue;
    float* st = st0 + r * row_elems;
    if (kVec) {
      st_hint<(kR > 1)>(reinterpret_cast<float4*>(st),
                        make_float4(h[r][0], h[r][1], h[r][2], h[r][3]));
    } else {
#pragma unroll
      for (int j = 0; j < kNPer; ++j)
        if (n0 + j < p.dstate) st_hint<(kR > 1)>(st + j, h[r][j]);
    }
  }
  if (g < kR && my_ok) {
    float yv = fmaf(dsk, xv, my_yp);
    if (p.z) yv *= dev::silu_exact(zv);
    p.y[(b0 + my_r) * p.y_rs + c] = __float2bfloat16_rn(yv);
  }
}

template <int kR>
void launch(bool vec, dim3 grid, const Params& p, cudaStream_t stream) {
  if (vec)
    state_update_kernel<true, kR><<<grid, kThreads, 0, stream>>>(p);
  else
    state_update_kernel<false, kR><<<grid, kThreads, 0, stream>>>(p);
}

}  // namespace

const char* selective_state_update(const StateUpdateArgs& a, cudaStream_t stream) {
  if (a.batch < 1 || a.batch > 65535 || a.dim < 1 || a.dstate < 1 || a.dstate > kMaxN)
    fail(ErrorKind::Unsupported, "selective_state_update: batch " + std::to_string(a.batch) +
                                     ", dim " + std::to_string(a.dim) + ", d_state " +
                                     std::to_string(a.dstate) + " (supported: d_state <= 16)");
  Params p;
  p.batch = a.batch;
  p.dim = a.dim;
  p.dstate = a.dstate;
  p.x = a.x;
  p.x_rs = a.x_row_stride ? a.x_row_stride : a.dim;
  p.dt = a.dt;
  p.dt_rs = a.dt_row_stride ? a.dt_row_stride : a.dim;
  p.dt_bias = a.dt_bias;
  p.softplus = a.delta_softplus;
  p.A_log = a.A_log;
  p.B = a.B;
  p.B_rs = a.B_row_stride ? a.B_row_stride : a.dstate;
  p.C = a.C;
  p.C_rs = a.C_row_stride ? a.C_row_stride : a.dstate;
  p.D_skip = a.D_skip;
  p.z = a.z;
  p.z_rs = a.z_row_stride ? a.z_row_stride : a.dim;
  p.state = a.state;
  p.y = a.y;
  p.y_rs = a.y_row_stride ? a.y_row_stride : a.dim;
  const bool vec = a.dstate == kMaxN && (reinterpret_cast<uintptr_t>(a.state) & 15u) == 0;
  // Rows per thread: the most (4, 2) that still gives every SM at least two blocks, so small
  // batches keep their parallelism (B = 1: 128 blocks of 64 channels at d_inner 8192) and large
  // ones get 64 bytes of state in flight per thread (d_inner 8192, B = 16 on 132 SMs: 512 blocks,
  // one wave at 4 blocks per SM).
  const int64_t cblocks = (a.dim + kCB - 1) / kCB;
  const int64_t min_blocks = 2 * static_cast<int64_t>(sm_count());
  int rows = 1;
  for (int r : {4, 2})
    if (cblocks * ((a.batch + r - 1) / r) >= min_blocks) {
      rows = r;
      break;
    }
  const dim3 grid(static_cast<unsigned>(cblocks),
                  static_cast<unsigned>((a.batch + rows - 1) / rows));
  if (rows == 4)
    launch<4>(vec, grid, p, stream);
  else if (rows == 2)
    launch<2>(vec, grid, p, stream);
  else
    launch<1>(vec, grid, p, stream);
  JB_LAUNCH("state_update_kernel");
  static const char* const kNames[2][3] = {{"scalar", "scalar_rows2", "scalar_rows4"},
                                           {"vec16", "vec16_rows2", "vec16_rows4"}};
  return kNames[vec ? 1 : 0][rows == 4 ? 2 : rows - 1];
}

}  // namespace jb::cuda
