// RMSNorm kernels; contract and variants in cuda/rmsnorm.hpp (jamba-spec §2.2).
#include "cuda/rmsnorm.hpp"

#include <climits>
#include <cstring>
#include <string>

#include "cuda/common.cuh"

namespace jb::cuda {

namespace {

constexpr int kThreadRowMaxN = 32;     // n <= 32: one thread per row
constexpr int kWarpRowMaxN = 2048;     // n <= 2048: one warp per row
constexpr int kWarpsPerBlock = 8;      // warp_*: rows per block
constexpr int kBlockThreads = 256;     // block_*: threads per row
constexpr int kThreadRowBlock = 128;   // thread_row: rows per block
constexpr int64_t kMaxGrid = 1 << 20;  // grid-stride loops cover any row count

__device__ __forceinline__ float to_float(bf16 v) {
  return __bfloat162float(v);
}
__device__ __forceinline__ float to_float(float v) {
  return v;
}
template <class T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ bf16 from_float<bf16>(float v) {
  return __float2bfloat16_rn(v);  // the single rounding of the output
}
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}

// 16 bytes of T, loaded and stored as one 128-bit access (requires 16-byte alignment).
template <class T>
struct alignas(16) Pack {
  static constexpr int kN = 16 / sizeof(T);
  T v[kN];
};

__device__ __forceinline__ float warp_sum(float v) {
  // Butterfly: every lane ends with the same total, summed in the same order on every run.
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// Sum over the block (all threads get the total). The caller's loop is block-uniform; the trailing
// barrier lets the next row reuse warp_sums.
__device__ __forceinline__ float block_sum(float v, float* warp_sums) {
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  float t = lane < warps ? warp_sums[lane] : 0.0f;
  t = warp_sum(t);
  __syncthreads();
  return t;
}

// inv_rms exactly as the reference computes it in fp32: 1/sqrt (IEEE, not rsqrtf's 2-ulp
// approximation) of sum/n + eps.
__device__ __forceinline__ float inv_rms(float sum_sq, int n, float eps) {
  return 1.0f / sqrtf(sum_sq / static_cast<float>(n) + eps);
}

// Partial sum of squares of row xr over the elements this thread owns (tid, tid + nthreads, ...),
// in packs of 16 bytes when kVec.
template <class T, bool kVec>
__device__ __forceinline__ float partial_sum_sq(const T* xr, int n, int tid, int nthreads) {
  float s = 0.0f;
  if (kVec) {
    constexpr int kN = Pack<T>::kN;
    const Pack<T>* xp = reinterpret_cast<const Pack<T>*>(xr);
    for (int i = tid; i < n / kN; i += nthreads) {
      const Pack<T> p = xp[i];
#pragma unroll
      for (int k = 0; k < kN; ++k) {
        const float v = to_float(p.v[k]);
        s += v * v;
      }
    }
  } else {
    for (int j = tid; j < n; j += nthreads) {
      const float v = to_float(xr[j]);
      s += v * v;
    }
  }
  return s;
}

template <class T, bool kVec>
__device__ __forceinline__ void write_row(const T* xr, const T* w, T* yr, int n, float r, int tid,
                                          int nthreads) {
  if (kVec) {
    constexpr int kN = Pack<T>::kN;
    const Pack<T>* xp = reinterpret_cast<const Pack<T>*>(xr);
    const Pack<T>* wp = reinterpret_cast<const Pack<T>*>(w);
    Pack<T>* yp = reinterpret_cast<Pack<T>*>(yr);
    for (int i = tid; i < n / kN; i += nthreads) {
      const Pack<T> px = xp[i], pw = wp[i];
      Pack<T> py;
#pragma unroll
      for (int k = 0; k < kN; ++k)
        py.v[k] = from_float<T>(to_float(pw.v[k]) * (to_float(px.v[k]) * r));
      yp[i] = py;
    }
  } else {
    for (int j = tid; j < n; j += nthreads)
      yr[j] = from_float<T>(to_float(w[j]) * (to_float(xr[j]) * r));
  }
}

// n <= 32: one thread per row, sequential over the row.
template <class T>
__global__ void rmsnorm_thread_row(const T* x, int64_t xs, const T* w, T* y, int64_t ys,
                                   int64_t rows, int n, float eps) {
  for (int64_t row = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; row < rows;
       row += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const T* xr = x + row * xs;
    const float r = inv_rms(partial_sum_sq<T, false>(xr, n, 0, 1), n, eps);
    write_row<T, false>(xr, w, y + row * ys, n, r, 0, 1);
  }
}

// One warp per row, kWarpsPerBlock rows per block.
template <class T, bool kVec>
__global__ void rmsnorm_warp_row(const T* x, int64_t xs, const T* w, T* y, int64_t ys, int64_t rows,
                                 int n, float eps) {
  const int lane = threadIdx.x & 31;
  const int64_t warp = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + (threadIdx.x >> 5);
  for (int64_t row = warp; row < rows; row += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const T* xr = x + row * xs;
    const float r = inv_rms(warp_sum(partial_sum_sq<T, kVec>(xr, n, lane, 32)), n, eps);
    write_row<T, kVec>(xr, w, y + row * ys, n, r, lane, 32);
  }
}

// One block per row.
template <class T, bool kVec>
__global__ void rmsnorm_block_row(const T* x, int64_t xs, const T* w, T* y, int64_t ys,
                                  int64_t rows, int n, float eps) {
  __shared__ float warp_sums[32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * xs;
    const float s = block_sum(partial_sum_sq<T, kVec>(xr, n, threadIdx.x, blockDim.x), warp_sums);
    write_row<T, kVec>(xr, w, y + row * ys, n, inv_rms(s, n, eps), threadIdx.x, blockDim.x);
  }
}

bool can_vectorise(int64_t n, int64_t xs, int64_t ys, const void* x, const void* w, const void* y,
                   int elem_bytes) {
  const int64_t per = 16 / elem_bytes;
  return n % per == 0 && xs % per == 0 && ys % per == 0 && aligned16(x) && aligned16(w) &&
         aligned16(y);
}

int64_t grid_for(int64_t units_needed) {
  return units_needed < 1 ? 1 : (units_needed < kMaxGrid ? units_needed : kMaxGrid);
}

void check_args(const char* fn, const void* x, int64_t xs, const void* w, const void* y, int64_t ys,
                int64_t rows, int64_t n) {
  const std::string f = fn;
  if (rows < 0) fail(ErrorKind::Shape, f + ": rows = " + std::to_string(rows) + " < 0");
  if (n < 1 || n > INT_MAX)
    fail(ErrorKind::Shape, f + ": n = " + std::to_string(n) + " outside [1, INT_MAX]");
  if (xs < n || ys < n)
    fail(ErrorKind::Shape, f + ": row strides (" + std::to_string(xs) + ", " + std::to_string(ys) +
                               ") must be >= n = " + std::to_string(n));
  if (rows > 0 && (!x || !w || !y)) fail(ErrorKind::Internal, f + ": null pointer");
}

template <class T>
void launch(const char* fn, const T* x, int64_t xs, const T* w, T* y, int64_t ys, int64_t rows,
            int64_t n64, float eps, cudaStream_t stream) {
  check_args(fn, x, xs, w, y, ys, rows, n64);
  if (rows == 0) return;
  const int n = static_cast<int>(n64);
  const bool vec = can_vectorise(n64, xs, ys, x, w, y, sizeof(T));
  if (n <= kThreadRowMaxN) {
    const int64_t grid = grid_for((rows + kThreadRowBlock - 1) / kThreadRowBlock);
    rmsnorm_thread_row<T><<<static_cast<unsigned>(grid), kThreadRowBlock, 0, stream>>>(
        x, xs, w, y, ys, rows, n, eps);
    JB_LAUNCH("rmsnorm_thread_row");
  } else if (n <= kWarpRowMaxN) {
    const int64_t grid = grid_for((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
    if (vec)
      rmsnorm_warp_row<T, true><<<static_cast<unsigned>(grid), 32 * kWarpsPerBlock, 0, stream>>>(
          x, xs, w, y, ys, rows, n, eps);
    else
      rmsnorm_warp_row<T, false><<<static_cast<unsigned>(grid), 32 * kWarpsPerBlock, 0, stream>>>(
          x, xs, w, y, ys, rows, n, eps);
    JB_LAUNCH("rmsnorm_warp_row");
  } else {
    const int64_t grid = grid_for(rows);
    if (vec)
      rmsnorm_block_row<T, true><<<static_cast<unsigned>(grid), kBlockThreads, 0, stream>>>(
          x, xs, w, y, ys, rows, n, eps);
    else
      rmsnorm_block_row<T, false><<<static_cast<unsigned>(grid), kBlockThreads, 0, stream>>>(
          x, xs, w, y, ys, rows, n, eps);
    JB_LAUNCH("rmsnorm_block_row");
  }
}

}  // namespace

const char* rmsnorm_variant(int64_t n, int64_t xs, int64_t ys, const void* x, const void* w,
                            const void* y, int elem_bytes) {
  const bool vec = can_vectorise(n, xs, ys, x, w, y, elem_bytes);
  if (n <= kThreadRowMaxN) return "thread_row";
  if (n <= kWarpRowMaxN) return vec ? "warp_vec16" : "warp_scalar";
  return vec ? "block_vec16" : "block_scalar";
}

void rmsnorm_bf16_strided(const void* x, int64_t xs, const void* w, void* y, int64_t ys,
                          int64_t rows, int64_t n, float eps, cudaStream_t stream) {
  launch<bf16>("rmsnorm_bf16", static_cast<const bf16*>(x), xs, static_cast<const bf16*>(w),
               static_cast<bf16*>(y), ys, rows, n, eps, stream);
}

void rmsnorm_bf16(const void* x, const void* w, void* y, int64_t rows, int64_t n, float eps,
                  cudaStream_t stream) {
  rmsnorm_bf16_strided(x, n, w, y, n, rows, n, eps, stream);
}

void rmsnorm_f32_strided(const float* x, int64_t xs, const float* w, float* y, int64_t ys,
                         int64_t rows, int64_t n, float eps, cudaStream_t stream) {
  launch<float>("rmsnorm_f32", x, xs, w, y, ys, rows, n, eps, stream);
}

void rmsnorm_f32(const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps,
                 cudaStream_t stream) {
  rmsnorm_f32_strided(x, n, w, y, n, rows, n, eps, stream);
}

}  // namespace jb::cuda
