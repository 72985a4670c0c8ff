// SwiGLU experts, bf16 and ExpertsInt8 (W8A16). See cuda/experts.hpp for the rounding points and
// the two paths.
#include "cuda/experts.hpp"

#include <algorithm>

#include "cuda/gemm.hpp"
#include "cuda/quant_int8.hpp"

namespace jb::cuda {

namespace {

constexpr int kGemvThreads = 256;
constexpr int kGemvWarps = kGemvThreads / 32;

// Elements per 16-byte load and their conversion to fp32 (both exact).
template <class WT>
struct WVec;

template <>
struct WVec<int8_t> {
  static constexpr int kElems = 16;
  // Signed byte b -> unsigned b + 128 (xor 0x80) placed in the mantissa of 2^23: the float is
  // 2^23 + b + 128 exactly, and subtracting 2^23 + 128 leaves b exactly. One byte-permute and
  // one add per element instead of the quarter-rate int->float conversion.
  static __device__ __forceinline__ void unpack(const uint4& v, float (&f)[16]) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint32_t u = w[k] ^ 0x80808080u;
      f[4 * k + 0] = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7440)) - 8388736.0f;
      f[4 * k + 1] = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7441)) - 8388736.0f;
      f[4 * k + 2] = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7442)) - 8388736.0f;
      f[4 * k + 3] = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7443)) - 8388736.0f;
    }
  }
};

// bf16 element 2k is the low half of little-endian word k.
__device__ __forceinline__ void unpack_bf16x8(const uint4& v, float* f) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    f[2 * k + 0] = __uint_as_float(w[k] << 16);
    f[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
  }
}

template <>
struct WVec<bf16> {
  static constexpr int kElems = 8;
  static __device__ __forceinline__ void unpack(const uint4& v, float (&f)[8]) {
    unpack_bf16x8(v, f);
  }
};

template <int N>
__device__ __forceinline__ void load_bf16_f32(const bf16* p, float (&f)[N]) {
#pragma unroll
  for (int h = 0; h < N / 8; ++h)
    unpack_bf16x8(__ldg(reinterpret_cast<const uint4*>(p) + h), f + 8 * h);
}

__device__ __forceinline__ float silu_f32(float g) {
  return g / (1.0f + expf(-g));
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
// the arithmetic on the activations, not by the weight stream).
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
      const float g = ag[t] * sg, u = au[t] * su;
      act[t * inter + i] = __float2bfloat16_rn(silu_f32(g) * u);
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

struct GroupsDev {
  const int32_t* offsets;
  const int32_t* active;
  const int32_t* num_active;
};

// grid.x: blocks of kGemvWarps intermediate indices i; grid.y: active-expert slot. Warp w of
// block b computes act[r, i] for i = b * kGemvWarps + w and every row r of the slot's expert.
template <class WT>
__global__ void __launch_bounds__(kGemvThreads, 2)
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
  if (n <= 1)
    gate_up_act_rows<WT, 1>(wg, wu, sg, su, x, d, inter, n, i, a);
  else if (n <= 2)
    gate_up_act_rows<WT, 2>(wg, wu, sg, su, x, d, inter, n, i, a);
  else if (n <= 4)
    gate_up_act_rows<WT, 4>(wg, wu, sg, su, x, d, inter, n, i, a);
  else if (n <= 8)
    gate_up_act_rows<WT, 8>(wg, wu, sg, su, x, d, inter, n, i, a);
  else
    gate_up_act_rows<WT, 16>(wg, wu, sg, su, x, d, inter, n, i, a);
}

// grid.x: blocks of 2 * kGemvWarps output columns c; each warp computes two adjacent rows of
// down (columns c, c + 1 of y).
template <class WT>
__global__ void __launch_bounds__(kGemvThreads, 2)
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
  if (n <= 1)
    down_rows<WT, 1>(w0, w1, s0, s1, has1, a, d, inter, n, c, y);
  else if (n <= 2)
    down_rows<WT, 2>(w0, w1, s0, s1, has1, a, d, inter, n, c, y);
  else if (n <= 4)
    down_rows<WT, 4>(w0, w1, s0, s1, has1, a, d, inter, n, c, y);
  else if (n <= 8)
    down_rows<WT, 8>(w0, w1, s0, s1, has1, a, d, inter, n, c, y);
  else
    down_rows<WT, 16>(w0, w1, s0, s1, has1, a, d, inter, n, c, y);
}

// Gemm path: act[r, i] = bf16(silu(sg[i] * g) * (su[i] * u)) from the fp32 [n, 2I] gate/up.
// 2-D grid (columns x rows, both grid-strided): no 64-bit division per element.
__global__ void act_from_f32_kernel(const float* __restrict__ gate_up, int64_t n, int64_t inter,
                                    const float* __restrict__ sg, const float* __restrict__ su,
                                    bf16* __restrict__ act) {
  for (int64_t r = blockIdx.y; r < n; r += gridDim.y) {
    const float* g_row = gate_up + r * 2 * inter;
    const float* u_row = g_row + inter;
    bf16* a_row = act + r * inter;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < inter;
         i += int64_t(gridDim.x) * blockDim.x) {
      float g = g_row[i], u = u_row[i];
      if (sg != nullptr) {
        g *= sg[i];
        u *= su[i];
      }
      a_row[i] = __float2bfloat16_rn(silu_f32(g) * u);
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

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
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

template <class WT>
void launch_gemv(const WT* gate_up, const float* gu_scale, const WT* down, const float* d_scale,
                 const ExpertWeights& w, const ExpertGroups& g, const bf16* x_rows, bf16* act,
                 bf16* y_rows, cudaStream_t stream) {
  const GroupsDev gd{g.offsets, g.active, g.num_active};
  // Each active expert owns at least one row, so at most min(E, rows) slots are used.
  const unsigned slots = static_cast<unsigned>(std::min<int64_t>(w.num_experts, g.total_rows));
  const dim3 grid_gu(static_cast<unsigned>((w.inter + kGemvWarps - 1) / kGemvWarps), slots);
  gemv_gate_up_act_kernel<WT>
      <<<grid_gu, kGemvThreads, 0, stream>>>(gate_up, gu_scale, x_rows, gd, w.d, w.inter, act);
  JB_LAUNCH("gemv_gate_up_act_kernel");
  const dim3 grid_dn(static_cast<unsigned>((w.d + 2 * kGemvWarps - 1) / (2 * kGemvWarps)), slots);
  gemv_down_kernel<WT>
      <<<grid_dn, kGemvThreads, 0, stream>>>(down, d_scale, act, gd, w.d, w.inter, y_rows);
  JB_LAUNCH("gemv_down_kernel");
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

ExpertsPath parse_experts_path(const std::string& s) {
  if (s == "auto") return ExpertsPath::Auto;
  if (s == "gemv") return ExpertsPath::Gemv;
  if (s == "gemm") return ExpertsPath::Gemm;
  fail(ErrorKind::Usage, "unknown experts path '" + s + "' (auto, gemv, gemm)");
}

void linear_bf16_f32out(const bf16* x, int64_t ldx, const bf16* w, float* y, int64_t M, int64_t N,
                        int64_t K, cudaStream_t stream) {
  if (M == 0 || N == 0) return;
  if (ldx == 0) ldx = K;
  const int64_t lim = 2147483647;
  if (M < 0 || N < 0 || K <= 0 || ldx < K || M > lim || N > lim || K > lim || ldx > lim)
    fail(ErrorKind::Internal, "linear_bf16_f32out: bad shape M=" + std::to_string(M) +
                                  " N=" + std::to_string(N) + " K=" + std::to_string(K));
  // Row-major y = x W^T is column-major y^T[N, M] = (W as col-major [K, N])^T * x^T[K, M]
  // (the same mapping as cuda/gemm.cu, with an fp32 C).
  const float alpha = 1.0f, beta = 0.0f;
  cublasHandle_t h = cublas();
  JB_CUBLAS(cublasSetStream(h, stream));
  JB_CUBLAS(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(N), static_cast<int>(M),
                         static_cast<int>(K), &alpha, w, CUDA_R_16BF, static_cast<int>(K), x,
                         CUDA_R_16BF, static_cast<int>(ldx), &beta, y, CUDA_R_32F,
                         static_cast<int>(N), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

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
      launch_gemv<int8_t>(w.gate_up_q, w.gate_up_scale, w.down_q, w.down_scale, w, g, x_rows,
                          ws.act.get(), y_rows, stream);
      return "gemv_int8";
    }
    launch_gemv<bf16>(w.gate_up, nullptr, w.down, nullptr, w, g, x_rows, ws.act.get(), y_rows,
                      stream);
    return "gemv_bf16";
  }

  // Gemm path: host needs the row counts.
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
  ensure(ws.gate_up_f32, static_cast<size_t>(max_rows * 2 * inter));
  ensure(ws.act, static_cast<size_t>(max_rows * inter));
  if (is_int8) {
    ensure(ws.down_f32, static_cast<size_t>(max_rows * d));
    ensure(ws.w_scratch, static_cast<size_t>(2 * inter * d));
  }
  for (int64_t e = 0; e < E; ++e) {
    const int64_t o = ws.host_offsets[e];
    const int64_t n = ws.host_offsets[e + 1] - o;
    if (n == 0) continue;  // an expert without rows costs nothing (not even its weights)
    const bf16* xe = x_rows + o * d;
    bf16* ye = y_rows + o * d;
    // gate/up: [n, 2I] fp32
    const bf16* wgu_e = nullptr;
    if (is_int8) {
      int8_to_bf16(w.gate_up_q + e * 2 * inter * d, 2 * inter * d, ws.w_scratch.get(), stream);
      wgu_e = ws.w_scratch.get();
    } else {
      wgu_e = w.gate_up + e * 2 * inter * d;
    }
    linear_bf16_f32out(xe, d, wgu_e, ws.gate_up_f32.get(), n, 2 * inter, d, stream);
    const float* sg = is_int8 ? w.gate_up_scale + e * 2 * inter : nullptr;
    const float* su = is_int8 ? sg + inter : nullptr;
    act_from_f32_kernel<<<grid_2d(n, inter, 256), 256, 0, stream>>>(ws.gate_up_f32.get(), n, inter,
                                                                    sg, su, ws.act.get());
    JB_LAUNCH("act_from_f32_kernel");
    // down: [n, d]
    if (is_int8) {
      int8_to_bf16(w.down_q + e * d * inter, d * inter, ws.w_scratch.get(), stream);
      linear_bf16_f32out(ws.act.get(), inter, ws.w_scratch.get(), ws.down_f32.get(), n, d, inter,
                         stream);
      scale_round_kernel<<<grid_2d(n, d, 256), 256, 0, stream>>>(ws.down_f32.get(), n, d,
                                                                 w.down_scale + e * d, ye);
      JB_LAUNCH("scale_round_kernel");
    } else {
      // bf16 out of cuBLAS = fp32 accumulation rounded once (RNE), the contract's y store.
      linear_bf16(ws.act.get(), w.down + e * d * inter, ye, n, d, inter, stream);
    }
  }
  return is_int8 ? "gemm_int8" : "gemm_bf16";
}

}  // namespace jb::cuda
