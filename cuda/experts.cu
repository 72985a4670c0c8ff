// SwiGLU experts, bf16 and ExpertsInt8 (W8A16). See cuda/experts.hpp for the rounding points and
// the two paths.
#include "cuda/experts.hpp"

#include <algorithm>
#include <type_traits>

#include "cuda/experts_internal.cuh"
#include "cuda/gemm.hpp"
#include "cuda/quant_int8.hpp"

namespace jb::cuda {

namespace {

using experts_detail::GroupsDev;
using experts_detail::swiglu_act;

// Gemv path, FMA variant: one warp per gate/up row pair (or two down rows), fp32 FMA against
// every activation row. Measured on an H200 against the tensor-core variant of
// cuda/experts_gemv_mma.cu (Jamba-v0.1 widths, top-2 of 16; fraction of copy bandwidth over the
// touched weight bytes, T = 1 / 2 / 4 / 8 / 12 / 16 tokens; one benchmark sweep, 2026-11-29):
//   int8 FMA                  0.83 / 0.92 / 0.84 / 0.80 / -    / -
//   int8 mma (fp16 operands)  0.87 / 0.93 / 0.96 / 0.98 / 0.89 / 0.87
//   bf16 FMA                  0.94 / 1.02 / 0.99 / 0.98 / 0.92 / 0.90 (another sweep)
// so int8 takes the tensor cores at every row bound (Int8Gemv::Auto) and the FMA variant only
// when pinned; bf16 takes the FMA variant (its tensor-core variant was slower at every T). The
// tensor-core variant overtook the FMA one at small T when each warp began to read whole
// 128-byte lines (cuda/experts_gemv_mma.cu, kStepElems); before, it was 0.72-0.86 and varied
// from sweep to sweep with the SM clock under the 700 W power cap.
// Earlier the same day: one kernel per row bound (GemvOccupancy) took int8 T = 1 / 2 / 4 / 8
// from 0.74 / 0.80 / 0.78 / 0.73 to 0.82 / 0.78 / 0.80 / 0.78; rejected: L2 bulk prefetch
// (cp.async.bulk.prefetch.L2) of 4 KB per row ahead of the loads, plus the next generation's
// gate/up rows, in both Gemv variants: int8 0.57-0.64 and bf16 0.60-0.66 of copy at every T.
constexpr int kGemvFmaMaxRowsInt8 = 8;  // the largest bound the FMA kernels are built for
constexpr int kGemvThreads = 256;
constexpr int kGemvWarps = kGemvThreads / 32;
// Blocks per SM for launches with at most 2 rows per expert (GemvOccupancy): <= 85 registers,
// 77-80 used, no spills (4 blocks, 64 registers, spilled 48-64 bytes).
constexpr int kGemvBlocksPerSmSmallN = 3;

// Four signed bytes of w as exact floats: byte b -> b + 128 (xor 0x80) placed in the mantissa of
// 2^23, so the float is 2^23 + b + 128 and subtracting 2^23 + 128 leaves b exactly. One
// byte-permute and one add per element instead of the quarter-rate int->float conversion.
__device__ __forceinline__ void int8x4_to_f32(uint32_t w, float (&f)[4]) {
  const uint32_t u = w ^ 0x80808080u;
#pragma unroll
  for (int b = 0; b < 4; ++b)
    f[b] = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7440 + b)) - 8388736.0f;
}

// Elements per 16-byte load and their conversion to fp32 (both exact).
template <class WT>
struct WVec;

template <>
struct WVec<int8_t> {
  static constexpr int kElems = 16;
  // Exact, one byte-permute and one add per element (int8x4_to_f32).
  static __device__ __forceinline__ void unpack(const uint4& v, float (&f)[16]) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      float q[4];
      int8x4_to_f32(w[k], q);
#pragma unroll
      for (int b = 0; b < 4; ++b) f[4 * k + b] = q[b];
    }
  }
};

template <>
struct WVec<bf16> {
  static constexpr int kElems = 8;
  static __device__ __forceinline__ void unpack(const uint4& v, float (&f)[8]) {
    dev::bf16x8_to_f32(v, f);
  }
};

template <int N>
__device__ __forceinline__ void load_bf16_f32(const bf16* p, float (&f)[N]) {
#pragma unroll
  for (int h = 0; h < N / 8; ++h)
    dev::bf16x8_to_f32(__ldg(reinterpret_cast<const uint4*>(p) + h), f + 8 * h);
}

// One warp: a0[t] = sum_c w0[c] * x[t, c], a1[t] = sum_c w1[c] * x[t, c] for t < n, over c in
// [0, len). Lane-strided 16-byte weight loads (U in flight per row before first use), fp32 FMA
// in a fixed order, then a butterfly reduction: every lane ends with the same, run-to-run
// identical sums. Requires len % kElems == 0 and 16-byte aligned rows.
template <class WT, int NT, int U>
__device__ __forceinline__ void warp_dot2(const WT* __restrict__ w0, const WT* __restrict__ w1,
                                          const bf16* __restrict__ x, int64_t ldx, int n,
                                          int64_t len, float (&a0)[NT], float (&a1)[NT]) {
  constexpr int V = WVec<WT>::kElems;
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int t = 0; t < NT; ++t) a0[t] = a1[t] = 0.0f;
  for (int64_t base = 0; base < len; base += int64_t(32) * V * U) {
    uint4 r0[U], r1[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t c = base + (int64_t(u) * 32 + lane) * V;
      r0[u] = make_uint4(0u, 0u, 0u, 0u);
      r1[u] = make_uint4(0u, 0u, 0u, 0u);
      if (c < len) {
        // Weights are streamed once: evict-first, keep L1/L2 for the activations.
        r0[u] = __ldcs(reinterpret_cast<const uint4*>(w0 + c));
        r1[u] = __ldcs(reinterpret_cast<const uint4*>(w1 + c));
      }
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t c = base + (int64_t(u) * 32 + lane) * V;
      if (c < len) {
        float f0[V], f1[V];
        WVec<WT>::unpack(r0[u], f0);
        WVec<WT>::unpack(r1[u], f1);
#pragma unroll
        for (int t = 0; t < NT; ++t) {
          if (t < n) {
            float xv[V];
            load_bf16_f32<V>(x + t * ldx + c, xv);
#pragma unroll
            for (int v = 0; v < V; ++v) {
              a0[t] = fmaf(f0[v], xv[v], a0[t]);
              a1[t] = fmaf(f1[v], xv[v], a1[t]);
            }
          }
        }
      }
    }
  }
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    if (t < n) {
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) {
        a0[t] += __shfl_xor_sync(0xffffffffu, a0[t], off);
        a1[t] += __shfl_xor_sync(0xffffffffu, a1[t], off);
      }
    }
  }
}

// Fewer loads in flight when the accumulators take the registers (those cases are bound by
// the arithmetic on the activations, not by the weight stream). (8 loads per row at NT = 1, a
// whole 4096-byte int8 row per warp in one round, measured slower on an H200: int8 T = 1 / 2 at
// 0.71 / 0.77 of copy against 0.75 / 0.80, bf16 T = 1 at 0.90 against 0.92.)
template <int NT>
struct Unroll {
  static constexpr int value = NT >= 16 ? 1 : (NT >= 8 ? 2 : 4);
};

template <class WT, int NT>
__device__ __forceinline__ void gate_up_act_rows(const WT* wg, const WT* wu, float sg, float su,
                                                 const bf16* x, int64_t d, int64_t inter, int n,
                                                 int64_t i, bf16* act) {
  float ag[NT], au[NT];
  warp_dot2<WT, NT, Unroll<NT>::value>(wg, wu, x, d, n, d, ag, au);
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int t = 0; t < NT; ++t)
    if (t < n && lane == t) {
      act[t * inter + i] = swiglu_act(ag[t] * sg, au[t] * su);
    }
}

template <class WT, int NT>
__device__ __forceinline__ void down_rows(const WT* w0, const WT* w1, float s0, float s1, bool has1,
                                          const bf16* act, int64_t d, int64_t inter, int n,
                                          int64_t c, bf16* y) {
  float a0[NT], a1[NT];
  warp_dot2<WT, NT, Unroll<NT>::value>(w0, w1, act, inter, n, inter, a0, a1);
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int t = 0; t < NT; ++t)
    if (t < n && lane == t) {
      y[t * d + c] = __float2bfloat16_rn(a0[t] * s0);
      if (has1) y[t * d + c + 1] = __float2bfloat16_rn(a1[t] * s1);
    }
}

// Rows-per-expert bound NTMAX of one launch -> blocks per SM in __launch_bounds__. One kernel
// holding every row-count variant took the registers of the largest (128 per thread: 2 blocks of
// 8 warps per SM) at every n; a launch whose experts have at most 1 or 2 rows (decode at batch
// 1-2) needs far fewer, and more warps per SM keep more weight loads in flight (these kernels
// are bound by memory latency: Nsight Compute on an H200, 2026-11-29, T = 1: long-scoreboard
// stalls 3.1 and 6.8 of 7.3 and 11.1 cycles per issued instruction in gate/up and down).
template <int NTMAX>
struct GemvOccupancy {
  static constexpr int value = NTMAX <= 2 ? kGemvBlocksPerSmSmallN : 2;
};

// Runs body(integral_constant<NT>) for the smallest NT in {1, 2, 4, 8, 16} that holds n rows,
// NT <= NTMAX (nothing when n > NTMAX): the kernels' per-expert row counts on the device, the
// launch's bound on the host.
#pragma nv_exec_check_disable
template <int NTMAX, class Body>
__host__ __device__ __forceinline__ void dispatch_rows(int64_t n, Body&& body) {
  if (n <= 1) {
    body(std::integral_constant<int, 1>{});
  } else if constexpr (NTMAX >= 2) {
    if (n <= 2) {
      body(std::integral_constant<int, 2>{});
    } else if constexpr (NTMAX >= 4) {
      if (n <= 4) {
        body(std::integral_constant<int, 4>{});
      } else if constexpr (NTMAX >= 8) {
        if (n <= 8)
          body(std::integral_constant<int, 8>{});
        else if constexpr (NTMAX >= 16)
          body(std::integral_constant<int, 16>{});
      }
    }
  }
}

// grid.x: blocks of kGemvWarps intermediate indices i; grid.y: active-expert slot. Warp w of
// block b computes act[r, i] for i = b * kGemvWarps + w and every row r of the slot's expert
// (at most NTMAX rows per expert: the host's bound).
template <class WT, int NTMAX>
__global__ void __launch_bounds__(kGemvThreads, GemvOccupancy<NTMAX>::value)
    gemv_gate_up_act_kernel(const WT* __restrict__ gate_up, const float* __restrict__ scale,
                            const bf16* __restrict__ x_rows, GroupsDev g, int64_t d, int64_t inter,
                            bf16* __restrict__ act) {
  if (static_cast<int>(blockIdx.y) >= *g.num_active) return;
  const int64_t e = g.active[blockIdx.y];
  const int64_t row0 = g.offsets[e];
  const int n = g.offsets[e + 1] - g.offsets[e];
  const int64_t i = int64_t(blockIdx.x) * kGemvWarps + (threadIdx.x >> 5);
  if (i >= inter || n <= 0) return;  // whole warps leave; no block barrier follows
  const WT* wg = gate_up + (e * 2 * inter + i) * d;
  const WT* wu = wg + inter * d;
  float sg = 1.0f, su = 1.0f;
  if (scale != nullptr) {
    sg = scale[e * 2 * inter + i];
    su = scale[e * 2 * inter + inter + i];
  }
  const bf16* x = x_rows + row0 * d;
  bf16* a = act + row0 * inter;
  dispatch_rows<NTMAX>(n, [&](auto nt) {
    gate_up_act_rows<WT, decltype(nt)::value>(wg, wu, sg, su, x, d, inter, n, i, a);
  });
}

// grid.x: blocks of 2 * kGemvWarps output columns c; each warp computes two adjacent rows of
// down (columns c, c + 1 of y).
template <class WT, int NTMAX>
__global__ void __launch_bounds__(kGemvThreads, GemvOccupancy<NTMAX>::value)
    gemv_down_kernel(const WT* __restrict__ down, const float* __restrict__ scale,
                     const bf16* __restrict__ act, GroupsDev g, int64_t d, int64_t inter,
                     bf16* __restrict__ y_rows) {
  if (static_cast<int>(blockIdx.y) >= *g.num_active) return;
  const int64_t e = g.active[blockIdx.y];
  const int64_t row0 = g.offsets[e];
  const int n = g.offsets[e + 1] - g.offsets[e];
  const int64_t c = (int64_t(blockIdx.x) * kGemvWarps + (threadIdx.x >> 5)) * 2;
  if (c >= d || n <= 0) return;
  const bool has1 = c + 1 < d;
  const WT* w0 = down + (e * d + c) * inter;
  const WT* w1 = has1 ? w0 + inter : w0;
  float s0 = 1.0f, s1 = 1.0f;
  if (scale != nullptr) {
    s0 = scale[e * d + c];
    s1 = has1 ? scale[e * d + c + 1] : 1.0f;
  }
  const bf16* a = act + row0 * inter;
  bf16* y = y_rows + row0 * d;
  dispatch_rows<NTMAX>(n, [&](auto nt) {
    down_rows<WT, decltype(nt)::value>(w0, w1, s0, s1, has1, a, d, inter, n, c, y);
  });
}

// Gemm path: act[r, i] = swiglu_act(g, u) from the [n, 2I] gate/up GEMM output, bf16 (bf16
// weights: cuBLAS rounds the fp32 accumulator once, which is the contract's g and u) or fp32
// times the int8 row scales sg, su. 2-D grid (columns x rows, both grid-strided): no 64-bit
// division per element.
__device__ __forceinline__ float to_f32(float v) {
  return v;
}
__device__ __forceinline__ float to_f32(bf16 v) {
  return __bfloat162float(v);
}

// T = bf16 (bf16 weights: no scales; sg, su unused) or float (int8: sg, su are the row scales).
template <class T>
__global__ void act_kernel(const T* __restrict__ gate_up, int64_t n, int64_t inter,
                           const float* __restrict__ sg, const float* __restrict__ su,
                           bf16* __restrict__ act) {
  for (int64_t r = blockIdx.y; r < n; r += gridDim.y) {
    const T* g_row = gate_up + r * 2 * inter;
    const T* u_row = g_row + inter;
    bf16* a_row = act + r * inter;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < inter;
         i += int64_t(gridDim.x) * blockDim.x) {
      float g = to_f32(g_row[i]), u = to_f32(u_row[i]);
      if constexpr (std::is_same_v<T, float>) {
        g *= sg[i];
        u *= su[i];
      }
      a_row[i] = swiglu_act(g, u);
    }
  }
}

// act_kernel<bf16> with 16-byte loads and stores, 8 columns per thread (inter % 8 == 0, all
// rows 16-byte aligned): one index computation and three memory instructions per 8 columns
// instead of per column, for a pass that shares the SMs with the other lanes' GEMMs. (Measured
// only together with the LPT lanes below; neither was timed alone.)
__global__ void act_bf16x8_kernel(const bf16* __restrict__ gate_up, int64_t n, int64_t inter,
                                  bf16* __restrict__ act) {
  const int64_t vecs = inter / 8;
  for (int64_t r = blockIdx.y; r < n; r += gridDim.y) {
    const uint4* g_row = reinterpret_cast<const uint4*>(gate_up + r * 2 * inter);
    const uint4* u_row = g_row + vecs;
    uint4* a_row = reinterpret_cast<uint4*>(act + r * inter);
    for (int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; v < vecs;
         v += int64_t(gridDim.x) * blockDim.x) {
      float g[8], u[8];
      dev::bf16x8_to_f32(g_row[v], g);
      dev::bf16x8_to_f32(u_row[v], u);
      uint32_t w[4];
#pragma unroll
      for (int k = 0; k < 4; ++k)
        w[k] = uint32_t(__bfloat16_as_ushort(swiglu_act(g[2 * k], u[2 * k]))) |
               (uint32_t(__bfloat16_as_ushort(swiglu_act(g[2 * k + 1], u[2 * k + 1]))) << 16);
      a_row[v] = make_uint4(w[0], w[1], w[2], w[3]);
    }
  }
}

// Gemm int8 path: y[r, c] = bf16(f[r, c] * scale[c]); same 2-D grid.
__global__ void scale_round_kernel(const float* __restrict__ f, int64_t n, int64_t d,
                                   const float* __restrict__ scale, bf16* __restrict__ y) {
  for (int64_t r = blockIdx.y; r < n; r += gridDim.y)
    for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < d;
         c += int64_t(gridDim.x) * blockDim.x)
      y[r * d + c] = __float2bfloat16_rn(f[r * d + c] * scale[c]);
}

dim3 grid_2d(int64_t rows, int64_t cols, int threads) {
  const int64_t gx = std::min<int64_t>((cols + threads - 1) / threads, 1024);
  const int64_t gy = std::min<int64_t>(std::max<int64_t>(rows, 1), 65535);
  return dim3(static_cast<unsigned>(std::max<int64_t>(gx, 1)), static_cast<unsigned>(gy));
}

template <class T>
void ensure(DeviceBuffer<T>& b, size_t n) {
  if (b.size() < n) b.alloc(n);
}

void check_weights(const ExpertWeights& w) {
  if (w.num_experts <= 0 || w.d <= 0 || w.inter <= 0)
    fail(ErrorKind::Shape, "run_experts: bad expert shape E=" + std::to_string(w.num_experts) +
                               " d=" + std::to_string(w.d) + " I=" + std::to_string(w.inter));
  const bool ok = w.type == WeightType::Bf16
                      ? (w.gate_up && w.down)
                      : (w.gate_up_q && w.gate_up_scale && w.down_q && w.down_scale);
  if (!ok) fail(ErrorKind::Internal, "run_experts: missing weight pointers for the weight type");
}

template <class WT, int NTMAX>
void launch_gemv_nt(const WT* gate_up, const float* gu_scale, const WT* down, const float* d_scale,
                    const ExpertWeights& w, const ExpertGroups& g, const bf16* x_rows, bf16* act,
                    bf16* y_rows, cudaStream_t stream) {
  const GroupsDev gd{g.offsets, g.active, g.num_active};
  // Each active expert owns at least one row, so at most min(E, rows) slots are used.
  const unsigned slots = static_cast<unsigned>(std::min<int64_t>(w.num_experts, g.total_rows));
  const dim3 grid_gu(static_cast<unsigned>((w.inter + kGemvWarps - 1) / kGemvWarps), slots);
  gemv_gate_up_act_kernel<WT, NTMAX>
      <<<grid_gu, kGemvThreads, 0, stream>>>(gate_up, gu_scale, x_rows, gd, w.d, w.inter, act);
  JB_LAUNCH("gemv_gate_up_act_kernel");
  const dim3 grid_dn(static_cast<unsigned>((w.d + 2 * kGemvWarps - 1) / (2 * kGemvWarps)), slots);
  gemv_down_kernel<WT, NTMAX>
      <<<grid_dn, kGemvThreads, 0, stream>>>(down, d_scale, act, gd, w.d, w.inter, y_rows);
  JB_LAUNCH("gemv_down_kernel");
}

// The kernels instantiated for the smallest row bound that holds the host's bound on rows per
// expert (decode: the token count); MAXNT is the largest bound this weight type runs here.
template <class WT, int MAXNT>
void launch_gemv(const WT* gate_up, const float* gu_scale, const WT* down, const float* d_scale,
                 const ExpertWeights& w, const ExpertGroups& g, const bf16* x_rows, bf16* act,
                 bf16* y_rows, cudaStream_t stream) {
  if (g.max_rows_per_expert < 1 || g.max_rows_per_expert > MAXNT)
    fail(ErrorKind::Internal, "experts FMA gemv: row bound " +
                                  std::to_string(g.max_rows_per_expert) + " outside [1, " +
                                  std::to_string(MAXNT) + "]");
  dispatch_rows<MAXNT>(g.max_rows_per_expert, [&](auto nt) {
    launch_gemv_nt<WT, decltype(nt)::value>(gate_up, gu_scale, down, d_scale, w, g, x_rows, act,
                                            y_rows, stream);
  });
}

}  // namespace

const char* experts_path_name(ExpertsPath p) {
  switch (p) {
    case ExpertsPath::Auto:
      return "auto";
    case ExpertsPath::Gemv:
      return "gemv";
    case ExpertsPath::Gemm:
      return "gemm";
  }
  return "?";
}

const char* int8_gemv_name(Int8Gemv v) {
  switch (v) {
    case Int8Gemv::Auto:
      return "auto";
    case Int8Gemv::Fma:
      return "fma";
    case Int8Gemv::Mma:
      return "mma";
  }
  return "?";
}

Int8Gemv parse_int8_gemv(const std::string& s) {
  const Int8Gemv all[] = {Int8Gemv::Auto, Int8Gemv::Fma, Int8Gemv::Mma};
  return parse_by_name(s, all, int8_gemv_name, "int8 gemv variant");
}

const char* gemm_schedule_name(GemmSchedule s) {
  switch (s) {
    case GemmSchedule::Auto:
      return "auto";
    case GemmSchedule::Lanes:
      return "lanes";
    case GemmSchedule::Grouped:
      return "grouped";
    case GemmSchedule::Wgmma:
      return "wgmma";
  }
  return "?";
}

GemmSchedule parse_gemm_schedule(const std::string& s) {
  const GemmSchedule all[] = {GemmSchedule::Auto, GemmSchedule::Lanes, GemmSchedule::Grouped,
                              GemmSchedule::Wgmma};
  return parse_by_name(s, all, gemm_schedule_name, "gemm schedule");
}

ExpertsPath parse_experts_path(const std::string& s) {
  const ExpertsPath all[] = {ExpertsPath::Auto, ExpertsPath::Gemv, ExpertsPath::Gemm};
  return parse_by_name(s, all, experts_path_name, "experts path");
}

ExpertLane::ExpertLane() {
  JB_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  JB_CUDA(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming));
  JB_CUDA(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
  JB_CUBLAS(cublasCreate(&blas));
  JB_CUBLAS(cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH));  // as cublas(): no TF32 shortcuts
}

ExpertLane::~ExpertLane() {
  // Destructors do not throw: release what exists, ignore errors (the context may be gone).
  if (blas) cublasDestroy(blas);
  if (done) cudaEventDestroy(done);
  if (fork) cudaEventDestroy(fork);
  if (stream) cudaStreamDestroy(stream);
}

void linear_bf16_f32out(const bf16* x, int64_t ldx, const bf16* w, float* y, int64_t M, int64_t N,
                        int64_t K, cudaStream_t stream, cublasHandle_t handle) {
  if (M == 0 || N == 0) return;
  if (ldx == 0) ldx = K;
  const int64_t lim = 2147483647;
  if (M < 0 || N < 0 || K <= 0 || ldx < K || M > lim || N > lim || K > lim || ldx > lim)
    fail(ErrorKind::Internal, "linear_bf16_f32out: bad shape M=" + std::to_string(M) +
                                  " N=" + std::to_string(N) + " K=" + std::to_string(K));
  // Row-major y = x W^T is column-major y^T[N, M] = (W as col-major [K, N])^T * x^T[K, M]
  // (the same mapping as cuda/gemm.cu, with an fp32 C).
  const float alpha = 1.0f, beta = 0.0f;
  cublasHandle_t h = handle ? handle : cublas();
  JB_CUBLAS(cublasSetStream(h, stream));
  JB_CUBLAS(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(N), static_cast<int>(M),
                         static_cast<int>(K), &alpha, w, CUDA_R_16BF, static_cast<int>(K), x,
                         CUDA_R_16BF, static_cast<int>(ldx), &beta, y, CUDA_R_32F,
                         static_cast<int>(N), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

namespace {

// The Gemm path's schedule for these weights (see GemmSchedule): Auto takes Wgmma where it can
// run (bf16 weights and no refusal: wgmma_refusal is grouped_wgmma_refusal's answer, "" when
// it can), Lanes otherwise; Grouped and Wgmma have no int8 form.
GemmSchedule resolve_gemm_schedule(GemmSchedule s, bool is_int8, const std::string& wgmma_refusal) {
  if ((s == GemmSchedule::Grouped || s == GemmSchedule::Wgmma) && is_int8)
    fail(ErrorKind::Unsupported, std::string("experts gemm: the ") + gemm_schedule_name(s) +
                                     " schedule takes bf16 weights only; int8 weights run the "
                                     "lanes schedule (gemm schedule auto or lanes)");
  if (s != GemmSchedule::Auto) return s;
  return !is_int8 && wgmma_refusal.empty() ? GemmSchedule::Wgmma : GemmSchedule::Lanes;
}

// cuBLAS takes host-side shapes: copies the expert offsets into ws.host_offsets (one
// device->host copy and a sync of `stream`), checks them and returns the most rows of one expert.
int64_t read_expert_offsets(const ExpertGroups& g, int64_t E, ExpertsWorkspace& ws,
                            cudaStream_t stream) {
  ws.host_offsets.resize(static_cast<size_t>(E + 1));
  JB_CUDA(cudaMemcpyAsync(ws.host_offsets.data(), g.offsets, (E + 1) * sizeof(int32_t),
                          cudaMemcpyDeviceToHost, stream));
  JB_CUDA(cudaStreamSynchronize(stream));
  int64_t max_rows = 0;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n = ws.host_offsets[e + 1] - ws.host_offsets[e];
    if (n < 0 || ws.host_offsets[e + 1] > g.total_rows)
      fail(ErrorKind::Internal, "run_experts: inconsistent expert offsets");
    max_rows = std::max(max_rows, n);
  }
  return max_rows;
}

int64_t rows_of(const std::vector<int32_t>& offsets, int64_t e) {
  return offsets[e + 1] - offsets[e];
}

// Experts that own rows, ascending.
std::vector<int64_t> experts_with_rows(const std::vector<int32_t>& offsets) {
  std::vector<int64_t> busy;
  for (int64_t e = 0; e + 1 < static_cast<int64_t>(offsets.size()); ++e)
    if (rows_of(offsets, e) > 0) busy.push_back(e);
  return busy;
}

// act = swiglu_act(g, u) over bf16 gate/up rows [rows, 2I]: 16-byte vectors when every row is
// 16-byte aligned (inter % 8 == 0 and aligned bases), else one element per thread.
void launch_act_bf16(const bf16* gate_up, int64_t rows, int64_t inter, bf16* act, cudaStream_t s) {
  if (inter % 8 == 0 && aligned16(gate_up) && aligned16(act)) {
    act_bf16x8_kernel<<<grid_2d(rows, inter / 8, 256), 256, 0, s>>>(gate_up, rows, inter, act);
    JB_LAUNCH("act_bf16x8_kernel");
  } else {
    act_kernel<bf16>
        <<<grid_2d(rows, inter, 256), 256, 0, s>>>(gate_up, rows, inter, nullptr, nullptr, act);
    JB_LAUNCH("act_kernel<bf16>");
  }
}

// ---- Lanes schedule ----

// LPT: busy experts (largest first) each to the lane with the fewest rows so far; the lane of
// each entry of `busy`.
std::vector<int> deal_to_lanes(const std::vector<int64_t>& busy,
                               const std::vector<int32_t>& offsets, int lanes) {
  std::vector<int64_t> lane_rows(static_cast<size_t>(lanes), 0);
  std::vector<int> lane_of(busy.size());
  for (size_t k = 0; k < busy.size(); ++k) {
    const int l =
        static_cast<int>(std::min_element(lane_rows.begin(), lane_rows.end()) - lane_rows.begin());
    lane_of[k] = l;
    lane_rows[static_cast<size_t>(l)] += rows_of(offsets, busy[k]);
  }
  return lane_of;
}

void ensure_lanes(ExpertsWorkspace& ws, int lanes, int64_t max_rows, const ExpertWeights& w) {
  const int64_t d = w.d, inter = w.inter;
  while (static_cast<int>(ws.lanes.size()) < lanes)
    ws.lanes.push_back(std::make_unique<ExpertLane>());
  for (int l = 0; l < lanes; ++l) {
    ExpertLane& lane = *ws.lanes[l];
    ensure(lane.act, static_cast<size_t>(max_rows * inter));
    if (w.type == WeightType::Int8) {
      ensure(lane.gate_up_f32, static_cast<size_t>(max_rows * 2 * inter));
      ensure(lane.down_f32, static_cast<size_t>(max_rows * d));
      ensure(lane.w_scratch, static_cast<size_t>(2 * inter * d));
    } else {
      ensure(lane.gate_up_bf16, static_cast<size_t>(max_rows * 2 * inter));
    }
  }
}

// Expert e's n rows (from row o of x_rows / y_rows) on stream s with the lane's handle and
// scratch. gate/up: bf16 weights give bf16 out of cuBLAS (half the bytes of fp32 out); int8
// gives fp32 out, the row scales are applied before g and u are rounded.
void run_expert_on_lane(const ExpertWeights& w, int64_t e, int64_t o, int64_t n, const bf16* x_rows,
                        bf16* y_rows, ExpertLane& lane, cudaStream_t s) {
  const int64_t d = w.d, inter = w.inter;
  const bf16* xe = x_rows + o * d;
  bf16* ye = y_rows + o * d;
  if (w.type == WeightType::Int8) {
    int8_to_bf16(w.gate_up_q + e * 2 * inter * d, 2 * inter * d, lane.w_scratch.get(), s);
    linear_bf16_f32out(xe, d, lane.w_scratch.get(), lane.gate_up_f32.get(), n, 2 * inter, d, s,
                       lane.blas);
    const float* sg = w.gate_up_scale + e * 2 * inter;
    act_kernel<float><<<grid_2d(n, inter, 256), 256, 0, s>>>(lane.gate_up_f32.get(), n, inter, sg,
                                                             sg + inter, lane.act.get());
    JB_LAUNCH("act_kernel<float>");
    int8_to_bf16(w.down_q + e * d * inter, d * inter, lane.w_scratch.get(), s);
    linear_bf16_f32out(lane.act.get(), inter, lane.w_scratch.get(), lane.down_f32.get(), n, d,
                       inter, s, lane.blas);
    scale_round_kernel<<<grid_2d(n, d, 256), 256, 0, s>>>(lane.down_f32.get(), n, d,
                                                          w.down_scale + e * d, ye);
    JB_LAUNCH("scale_round_kernel");
    return;
  }
  linear_bf16(xe, w.gate_up + e * 2 * inter * d, lane.gate_up_bf16.get(), n, 2 * inter, d, s,
              lane.blas);
  launch_act_bf16(lane.gate_up_bf16.get(), n, inter, lane.act.get(), s);
  // bf16 out of cuBLAS = fp32 accumulation rounded once (RNE), the contract's y store.
  linear_bf16(lane.act.get(), w.down + e * d * inter, ye, n, d, inter, s, lane.blas);
}

// Experts with rows, each given to the lane with the fewest rows so far, largest expert first
// (LPT scheduling), so that the lanes end closer together than round-robin's (at T = 4096 and
// random routing an expert has ~512 +- 22 rows, and a lane's sum of four of them varies by a
// few percent). Fork from and join back to `stream`.
std::string run_gemm_lanes(const ExpertWeights& w, const bf16* x_rows, bf16* y_rows,
                           int64_t max_rows, ExpertsWorkspace& ws, cudaStream_t stream) {
  const std::vector<int32_t>& off = ws.host_offsets;
  std::vector<int64_t> busy = experts_with_rows(off);
  std::stable_sort(busy.begin(), busy.end(),
                   [&](int64_t a, int64_t b) { return rows_of(off, a) > rows_of(off, b); });
  const int lanes = static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>(std::max(ws.gemm_lanes, 1), busy.size())));
  const std::vector<int> lane_of = deal_to_lanes(busy, off, lanes);
  ensure_lanes(ws, lanes, max_rows, w);
  if (lanes > 1) {
    JB_CUDA(cudaEventRecord(ws.lanes[0]->fork, stream));
    for (int l = 0; l < lanes; ++l)
      JB_CUDA(cudaStreamWaitEvent(ws.lanes[l]->stream, ws.lanes[0]->fork, 0));
  }
  for (size_t k = 0; k < busy.size(); ++k) {
    ExpertLane& lane = *ws.lanes[static_cast<size_t>(lane_of[k])];
    const int64_t e = busy[k];
    run_expert_on_lane(w, e, off[e], rows_of(off, e), x_rows, y_rows, lane,
                       lanes > 1 ? lane.stream : stream);
  }
  if (lanes > 1)
    for (int l = 0; l < lanes; ++l) {
      JB_CUDA(cudaEventRecord(ws.lanes[l]->done, ws.lanes[l]->stream));
      JB_CUDA(cudaStreamWaitEvent(stream, ws.lanes[l]->done, 0));
    }
  return w.type == WeightType::Int8 ? "gemm_int8" : "gemm_bf16";
}

// ---- Grouped schedule ----

// cublasGemmGroupedBatchedEx takes int shapes and leading dimensions.
int cublas_int(int64_t v, const char* what) {
  if (v < 0 || v > 2147483647)
    fail(ErrorKind::Unsupported, std::string("experts grouped gemm: ") + what + " = " +
                                     std::to_string(v) +
                                     " does not fit the int of cublasGemmGroupedBatchedEx");
  return static_cast<int>(v);
}

// cuBLAS cannot see the matrix pointers of a pointer array (they are in device memory), so for
// bf16 it assumes the alignment that k promises: 16 bytes when k % 8 == 0, 4 bytes when k % 2 ==
// 0 (the alignment rule of the cuBLAS docs for the batched and grouped bf16 GEMMs).
bool grouped_ptr_aligned(const void* p, int64_t k) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (k % 8 == 0) return a % 16 == 0;
  if (k % 2 == 0) return a % 4 == 0;
  return a % 2 == 0;
}

// One group of size 1 per entry of `rows`: row-major Y_g[rows_g, m] = X_g[rows_g, k] W_g[m, k]^T
// as column-major Y_g^T[m, rows_g] = op_T(W_g as column-major [k, m]) * X_g^T[k, rows_g], the
// mapping of cuda/gemm.cu, all operands dense (lda = ldb = k, ldc = m).
void set_grouped_shapes(GroupedGemmArgs& a, const std::vector<int>& rows, int m, int k) {
  const size_t groups = rows.size();
  a.trans_a.assign(groups, CUBLAS_OP_T);
  a.trans_b.assign(groups, CUBLAS_OP_N);
  a.m.assign(groups, m);
  a.n = rows;
  a.k.assign(groups, k);
  a.lda.assign(groups, k);
  a.ldb.assign(groups, k);
  a.ldc.assign(groups, m);
  a.group_size.assign(groups, 1);
  a.alpha.assign(groups, 1.0f);
  a.beta.assign(groups, 0.0f);
}

// Slots of GroupedGemmScratch::host_ptrs, `groups` entries each.
enum GroupedSlot { kGuA, kGuB, kGuC, kDnA, kDnB, kDnC, kGroupedSlots };

// The A (weights), B (input rows) and C (output rows) pointers of every busy expert's gate/up
// and down problems. Error{Unsupported} where one breaks cuBLAS's alignment rule.
void fill_grouped_ptrs(const ExpertWeights& w, const std::vector<int64_t>& busy,
                       const std::vector<int32_t>& off, const bf16* x_rows, bf16* y_rows,
                       GroupedGemmScratch& gs) {
  const int64_t d = w.d, inter = w.inter;
  const size_t groups = busy.size();
  gs.host_ptrs.assign(kGroupedSlots * groups, nullptr);
  for (size_t g = 0; g < groups; ++g) {
    const int64_t e = busy[g], o = off[e];
    // cuBLAS only reads A and B: the const_casts only fit them into one array of void*.
    void* const p[kGroupedSlots] = {const_cast<bf16*>(w.gate_up + e * 2 * inter * d),
                                    const_cast<bf16*>(x_rows + o * d),
                                    gs.gate_up.get() + o * 2 * inter,
                                    const_cast<bf16*>(w.down + e * d * inter),
                                    gs.act.get() + o * inter,
                                    y_rows + o * d};
    for (int s = 0; s < kGroupedSlots; ++s) {
      const int64_t k = s < kDnA ? d : inter;
      if (!grouped_ptr_aligned(p[s], k))
        fail(ErrorKind::Unsupported,
             "experts grouped gemm: an operand of expert " + std::to_string(e) +
                 " is not aligned as cuBLAS assumes for bf16 pointer arrays (16 bytes when k % 8 "
                 "== 0, 4 when k % 2 == 0; d=" +
                 std::to_string(d) + ", I=" + std::to_string(inter) +
                 "); the lanes schedule takes any alignment");
      gs.host_ptrs[s * groups + g] = p[s];
    }
  }
}

// One grouped call: group g reads A, B, C from slots a_slot, a_slot + 1, a_slot + 2 of the
// device pointer arrays. alpha/beta are host arrays, hence the host pointer mode.
void grouped_gemm_bf16(cublasHandle_t h, const GroupedGemmArgs& a, void** dev_ptrs,
                       GroupedSlot a_slot) {
  const int groups = static_cast<int>(a.n.size());
  void** p = dev_ptrs + static_cast<size_t>(a_slot) * groups;
  JB_CUBLAS(cublasGemmGroupedBatchedEx(
      h, a.trans_a.data(), a.trans_b.data(), a.m.data(), a.n.data(), a.k.data(), a.alpha.data(), p,
      CUDA_R_16BF, a.lda.data(), p + groups, CUDA_R_16BF, a.ldb.data(), a.beta.data(),
      p + 2 * groups, CUDA_R_16BF, a.ldc.data(), groups, a.group_size.data(), CUBLAS_COMPUTE_32F));
}

// Grouped schedule (bf16): every expert's gate/up in one grouped call into [rows, 2I], one
// SwiGLU pass over all rows, every expert's down in one grouped call into y_rows. Rounding as
// the lanes schedule: bf16 out of cuBLAS (fp32 accumulation, CUBLAS_COMPUTE_32F), then the
// contract's one bf16 store of act. One launch per stage instead of one per expert, so that
// one expert's last partial wave could share the GPU with the others' tiles without streams.
// Measured (H200, CUDA 13.0, bench_moe BM_ExpertsPrefill, T = 4096 / 8192): 0.35 / 0.36 of one
// cuBLAS GEMM of the total shape, against 0.88 / 0.93 for 4 lanes: cuBLAS's grouped kernels
// are far slower than its single-GEMM ones at ~512 rows per expert. Kept as a pinned schedule
// so that a later cuBLAS can be re-measured with one flag. Experts without rows get no group.
std::string run_gemm_grouped(const ExpertWeights& w, const bf16* x_rows, bf16* y_rows,
                             ExpertsWorkspace& ws, cudaStream_t stream) {
  const int64_t E = w.num_experts, d = w.d, inter = w.inter;
  const std::vector<int32_t>& off = ws.host_offsets;
  const std::vector<int64_t> busy = experts_with_rows(off);
  if (busy.empty()) return "gemm_bf16_grouped";
  const int64_t rows = off[E];  // rows [0, offsets[E]): every expert's, contiguous per expert
  std::vector<int> expert_rows;
  for (int64_t e : busy) expert_rows.push_back(cublas_int(rows_of(off, e), "rows of an expert"));
  GroupedGemmScratch& gs = ws.grouped;
  set_grouped_shapes(gs.gate_up_args, expert_rows, cublas_int(2 * inter, "2I"), cublas_int(d, "d"));
  set_grouped_shapes(gs.down_args, expert_rows, cublas_int(d, "d"), cublas_int(inter, "I"));
  ensure(gs.gate_up, static_cast<size_t>(rows * 2 * inter));
  ensure(gs.act, static_cast<size_t>(rows * inter));
  fill_grouped_ptrs(w, busy, off, x_rows, y_rows, gs);
  ensure(gs.ptrs, gs.host_ptrs.size());
  // Pageable source: the copy is staged before the call returns; host_ptrs lives on anyway.
  JB_CUDA(cudaMemcpyAsync(gs.ptrs.get(), gs.host_ptrs.data(), gs.host_ptrs.size() * sizeof(void*),
                          cudaMemcpyHostToDevice, stream));
  // Lane 0's handle: the workspace's own, so binding it to `stream` races with no other user.
  if (ws.lanes.empty()) ws.lanes.push_back(std::make_unique<ExpertLane>());
  const cublasHandle_t h = ws.lanes[0]->blas;
  JB_CUBLAS(cublasSetStream(h, stream));
  JB_CUBLAS(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST));
  grouped_gemm_bf16(h, gs.gate_up_args, gs.ptrs.get(), kGuA);
  launch_act_bf16(gs.gate_up.get(), rows, inter, gs.act.get(), stream);
  grouped_gemm_bf16(h, gs.down_args, gs.ptrs.get(), kDnA);
  return "gemm_bf16_grouped";
}

// ---- Wgmma schedule ----

// Every expert's gate/up + SwiGLU into the grouped scratch's act, then every expert's down into
// y_rows, both launches on `stream`, reading the offsets on the device (no host sync).
// (Measured and rejected, H200 2026-11-29, before the swap-AB tiles of cuda/experts_wgmma.cu:
// this kernel's gate/up with the SwiGLU fused, then the down GEMMs on the cuBLAS lanes. Expert
// stage x_cublas at T = 1024 / 2048 / 4096 / 8192: 0.58 / 0.80 / 0.89 / 0.95 against lanes4's
// 0.58 / 0.84 / 0.89 / 0.93 in the same call; the whole block 0.52 / 0.77 / 0.87 / 0.92 against
// 0.55 / 0.79 / 0.86 / 0.91. It lost at 2048, where the gate/up's partial 128-row tiles cost
// more than the act pass it saves.)
std::string run_gemm_wgmma(const ExpertWeights& w, const ExpertGroups& g, const bf16* x_rows,
                           bf16* y_rows, ExpertsWorkspace& ws, cudaStream_t stream) {
  const std::string why = experts_detail::grouped_wgmma_refusal(w, x_rows, y_rows, g.total_rows);
  if (!why.empty())
    fail(ErrorKind::Unsupported, "experts gemm: the wgmma schedule cannot run here: " + why +
                                     " (gemm schedule lanes takes any of these)");
  ensure(ws.grouped.act, static_cast<size_t>(g.total_rows * w.inter));
  ensure(ws.grouped.tile_counters, 2);
  experts_detail::launch_grouped_experts_wgmma(w, g, x_rows, ws.grouped.act.get(), y_rows,
                                               ws.grouped.tile_counters.get(), stream);
  return "gemm_bf16_wgmma";
}

}  // namespace

std::string run_experts(const ExpertWeights& w, const ExpertGroups& g, const bf16* x_rows,
                        bf16* y_rows, ExpertsPath path, ExpertsWorkspace& ws, cudaStream_t stream) {
  check_weights(w);
  if (g.total_rows < 0 || g.max_rows_per_expert < 0)
    fail(ErrorKind::Internal, "run_experts: negative row counts");
  if (g.total_rows == 0) return "empty";
  if (g.total_rows > 2147483647) fail(ErrorKind::Unsupported, "run_experts: more than 2^31 rows");
  const int64_t E = w.num_experts, d = w.d, inter = w.inter;
  const bool is_int8 = w.type == WeightType::Int8;
  const void* wgu = is_int8 ? static_cast<const void*>(w.gate_up_q) : w.gate_up;
  const void* wdn = is_int8 ? static_cast<const void*>(w.down_q) : w.down;

  const bool gemv_ok = g.max_rows_per_expert <= kGemvMaxRows && d % 16 == 0 && inter % 16 == 0 &&
                       aligned16(x_rows) && aligned16(y_rows) && aligned16(wgu) && aligned16(wdn);
  if (path == ExpertsPath::Auto) path = gemv_ok ? ExpertsPath::Gemv : ExpertsPath::Gemm;
  if (path == ExpertsPath::Gemv && !gemv_ok)
    fail(ErrorKind::Unsupported,
         "experts gemv path needs <= " + std::to_string(kGemvMaxRows) +
             " rows per expert (got up to " + std::to_string(g.max_rows_per_expert) +
             "), d and I multiples of 16 (d=" + std::to_string(d) + ", I=" + std::to_string(inter) +
             ") and 16-byte aligned buffers");

  if (path == ExpertsPath::Gemv) {
    ensure(ws.act, static_cast<size_t>(g.total_rows * inter));
    if (is_int8) {
      const Int8Gemv v = ws.int8_gemv == Int8Gemv::Auto ? Int8Gemv::Mma : ws.int8_gemv;
      if (v == Int8Gemv::Fma && g.max_rows_per_expert > kGemvFmaMaxRowsInt8)
        fail(ErrorKind::Unsupported,
             "experts gemv: the int8 FMA variant takes <= " + std::to_string(kGemvFmaMaxRowsInt8) +
                 " rows per expert (got up to " + std::to_string(g.max_rows_per_expert) + ")");
      if (v == Int8Gemv::Fma) {
        launch_gemv<int8_t, kGemvFmaMaxRowsInt8>(w.gate_up_q, w.gate_up_scale, w.down_q,
                                                 w.down_scale, w, g, x_rows, ws.act.get(), y_rows,
                                                 stream);
        return "gemv_int8";
      }
      const size_t rows = static_cast<size_t>(g.total_rows);
      ensure(ws.x_f16, rows * d);
      ensure(ws.act_f16, rows * inter);
      ensure(ws.x_f16_scale, rows);
      ensure(ws.act_f16_scale, rows);
      const experts_detail::F16Operands f16{ws.x_f16.get(), ws.x_f16_scale.get(), ws.act_f16.get(),
                                            ws.act_f16_scale.get()};
      experts_detail::launch_gemv_mma<int8_t>(w.gate_up_q, w.gate_up_scale, w.down_q, w.down_scale,
                                              w, g, x_rows, ws.act.get(), y_rows, f16, stream);
      return "gemv_mma_f16_int8";
    }
    launch_gemv<bf16, kGemvMaxRows>(w.gate_up, nullptr, w.down, nullptr, w, g, x_rows, ws.act.get(),
                                    y_rows, stream);
    return "gemv_bf16";
  }

  // Gemm path. The schedule is resolved first, so that a refused one fails before the sync.
  // One expert (the dense MLP) is one plain GEMM each way, cuBLAS's own ground: Auto keeps it on
  // the lanes (Wgmma was measured on the 16-expert MoE only).
  std::string wgmma_refusal;
  if (ws.gemm_schedule == GemmSchedule::Auto && !is_int8)
    wgmma_refusal = E == 1 ? "one expert"
                           : experts_detail::grouped_wgmma_refusal(w, x_rows, y_rows, g.total_rows);
  const GemmSchedule schedule = resolve_gemm_schedule(ws.gemm_schedule, is_int8, wgmma_refusal);
  if (schedule == GemmSchedule::Wgmma) return run_gemm_wgmma(w, g, x_rows, y_rows, ws, stream);
  const int64_t max_rows = read_expert_offsets(g, E, ws, stream);
  if (schedule == GemmSchedule::Grouped) return run_gemm_grouped(w, x_rows, y_rows, ws, stream);
  return run_gemm_lanes(w, x_rows, y_rows, max_rows, ws, stream);
}

}  // namespace jb::cuda
