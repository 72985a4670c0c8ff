// Selective state update (decode) kernel; contract in selective_state_update.hpp.
#include "cuda/selective_state_update.hpp"

#include <string>

#include "cuda/ssm_math.cuh"

namespace jb::cuda {
namespace {

using ssm_math::exp2_decay;
using ssm_math::kLog2e;
using ssm_math::silu_f;
using ssm_math::softplus_f;

constexpr int kG = 4;              // threads per channel
constexpr int kNPer = 4;           // state entries per thread (one float4)
constexpr int kMaxN = kG * kNPer;  // 16
constexpr int kThreads = 256;      // 64 channels per block
constexpr int kCB = kThreads / kG;

struct Params {
  int64_t dim, dstate;
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

template <bool kVec>
__global__ void __launch_bounds__(kThreads) state_update_kernel(Params p) {
  const int tid = threadIdx.x;
  const int g = tid % kG;
  const int64_t b = blockIdx.y;
  const int64_t c = int64_t(blockIdx.x) * kCB + tid / kG;
  const bool c_ok = c < p.dim;
  const int n0 = g * kNPer;

  // Issue the state load first: it is the bulk of the bytes.
  float h[kNPer] = {0.f, 0.f, 0.f, 0.f};
  float* st = p.state + (b * p.dim + (c_ok ? c : 0)) * p.dstate + n0;
  if (c_ok) {
    if (kVec) {
      const float4 v = *reinterpret_cast<const float4*>(st);
      h[0] = v.x, h[1] = v.y, h[2] = v.z, h[3] = v.w;
    } else {
#pragma unroll
      for (int j = 0; j < kNPer; ++j)
        if (n0 + j < p.dstate) h[j] = st[j];
    }
  }
  float xv = 0.f, dtv = 0.f, zv = 0.f, bias = 0.f, dsk = 0.f;
  float A2[kNPer], bv[kNPer], cv[kNPer];
  if (c_ok) {
    xv = __bfloat162float(p.x[b * p.x_rs + c]);
    dtv = __bfloat162float(p.dt[b * p.dt_rs + c]);
    if (p.z) zv = __bfloat162float(p.z[b * p.z_rs + c]);
    if (p.dt_bias) bias = p.dt_bias[c];
    if (p.D_skip) dsk = p.D_skip[c];
  }
#pragma unroll
  for (int j = 0; j < kNPer; ++j) {
    const bool ok = c_ok && n0 + j < p.dstate;
    A2[j] = ok ? -expf(p.A_log[c * p.dstate + n0 + j]) * kLog2e : 0.f;
    bv[j] = ok ? __bfloat162float(p.B[b * p.B_rs + n0 + j]) : 0.f;
    cv[j] = ok ? __bfloat162float(p.C[b * p.C_rs + n0 + j]) : 0.f;
  }
  const float pre = dtv + bias;
  const float delta = p.softplus ? softplus_f(pre) : pre;
  const float du = delta * xv;
  float yp = 0.f;
#pragma unroll
  for (int j = 0; j < kNPer; ++j) {
    h[j] = fmaf(exp2_decay(delta * A2[j]), h[j], bv[j] * du);
    yp = fmaf(h[j], cv[j], yp);
  }
  yp += __shfl_xor_sync(0xffffffffu, yp, 1);
  yp += __shfl_xor_sync(0xffffffffu, yp, 2);
  if (!c_ok) return;
  if (kVec) {
    *reinterpret_cast<float4*>(st) = make_float4(h[0], h[1], h[2], h[3]);
  } else {
#pragma unroll
    for (int j = 0; j < kNPer; ++j)
      if (n0 + j < p.dstate) st[j] = h[j];
  }
  if (g == 0) {
    float yv = fmaf(dsk, xv, yp);
    if (p.z) yv *= silu_f(zv);
    p.y[b * p.y_rs + c] = __float2bfloat16_rn(yv);
  }
}

}  // namespace

const char* selective_state_update(const StateUpdateArgs& a, cudaStream_t stream) {
  if (a.batch < 1 || a.batch > 65535 || a.dim < 1 || a.dstate < 1 || a.dstate > kMaxN)
    fail(ErrorKind::Unsupported, "selective_state_update: batch " + std::to_string(a.batch) +
                                     ", dim " + std::to_string(a.dim) + ", d_state " +
                                     std::to_string(a.dstate) + " (supported: d_state <= 16)");
  Params p;
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
  const dim3 grid(static_cast<unsigned>((a.dim + kCB - 1) / kCB), static_cast<unsigned>(a.batch));
  if (vec)
    state_update_kernel<true><<<grid, kThreads, 0, stream>>>(p);
  else
    state_update_kernel<false><<<grid, kThreads, 0, stream>>>(p);
  JB_LAUNCH("state_update_kernel");
  return vec ? "vec16" : "scalar";
}

}  // namespace jb::cuda
