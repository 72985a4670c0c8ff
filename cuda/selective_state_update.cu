// Selective state update (decode) kernel; contract in selective_state_update.hpp.
#include "cuda/selective_state_update.hpp"

#include <string>

namespace jb::cuda {
namespace {

constexpr int kG = 4;              // threads per channel
constexpr int kNPer = 4;           // state entries per thread (one float4)
constexpr int kMaxN = kG * kNPer;  // 16
constexpr int kThreads = 256;      // 64 channels per block
constexpr int kCB = kThreads / kG;
constexpr float kLog2e = 1.4426950408889634f;

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

__device__ __forceinline__ float ex2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
// 2^x for x = delta * A * log2(e) (<= 0 with softplus). For |x| < 0.5 a degree-6 Taylor
// polynomial of 2^x = e^(x ln2) on the FMA pipe: its truncation error ((0.5 ln2)^7/7! ~ 2e-11) is
// far below an fp32 ulp, so the result is rounded about as well as a correctly rounded exp. This
// matters: when delta*A is small, exp(delta*A) ~ 1 multiplies the state at every step (long
// memory), and the hardware ex2.approx error is a smooth function of its argument, i.e. nearly
// the same at consecutive steps, so it would add up linearly over the ~1/|delta*A| steps the
// state remembers instead of averaging out like rounding errors. For larger |x| the state
// forgets within ~3 steps and ex2.approx (MUFU, relative error ~2^-22) is accurate enough.
__device__ __forceinline__ float exp2_decay(float x) {
  float p = fmaf(x, 1.5403530393381606e-4f, 1.3333558146428443e-3f);
  p = fmaf(p, x, 9.6181291076284772e-3f);
  p = fmaf(p, x, 5.5504108664821580e-2f);
  p = fmaf(p, x, 2.4022650695910071e-1f);
  p = fmaf(p, x, 6.9314718055994531e-1f);
  p = fmaf(p, x, 1.0f);
  return fabsf(x) < 0.5f ? p : ex2_approx(x);
}
__device__ __forceinline__ float softplus_f(float v) {
  return v <= 20.0f ? log1pf(expf(v)) : v;
}
__device__ __forceinline__ float silu_f(float v) {
  return v / (1.0f + expf(-v));
}

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
