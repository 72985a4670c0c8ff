#include "cuda/random_init.hpp"

#include <vector>

#include "core/bf16.hpp"
#include "core/rng.hpp"

namespace jb::cuda {
namespace {

enum class Dist { Normal, Uniform };

__device__ __forceinline__ void store(float* p, float v) {
  *p = v;
}
__device__ __forceinline__ void store(bf16* p, float v) {
  *p = __float2bfloat16_rn(v);
}

template <Dist kDist, class T>
__global__ void fill_rng_kernel(T* dst, size_t n, uint64_t seed, uint64_t stream, float a, float b,
                                uint64_t index_offset) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    const uint64_t key = index_offset + i;
    // The same inline functions as the host (core/rng.hpp): a = mean or lo, b = std or hi.
    const float v = kDist == Dist::Normal ? jb::rng_normal(seed, stream, key, a, b)
                                          : jb::rng_uniform(seed, stream, key, a, b);
    store(dst + i, v);
  }
}

template <class T>
__global__ void fill_constant_kernel(T* dst, size_t n, float value) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    store(dst + i, value);
}

int grid_for(size_t n) {
  size_t blocks = (n + 255) / 256;
  if (blocks > 16384) blocks = 16384;  // grid-stride loop covers the rest
  if (blocks == 0) blocks = 1;
  return static_cast<int>(blocks);
}

template <Dist kDist, class T>
void launch_fill(T* dst, size_t n, uint64_t seed, uint64_t stream, float a, float b,
                 uint64_t index_offset, cudaStream_t s) {
  if (n == 0) return;
  fill_rng_kernel<kDist, T><<<grid_for(n), 256, 0, s>>>(dst, n, seed, stream, a, b, index_offset);
  JB_LAUNCH("fill_rng_kernel");
}

}  // namespace

void fill_normal(bf16* dst, size_t n, uint64_t seed, uint64_t stream, float mean, float std,
                 uint64_t index_offset, cudaStream_t s) {
  launch_fill<Dist::Normal>(dst, n, seed, stream, mean, std, index_offset, s);
}
void fill_normal(float* dst, size_t n, uint64_t seed, uint64_t stream, float mean, float std,
                 uint64_t index_offset, cudaStream_t s) {
  launch_fill<Dist::Normal>(dst, n, seed, stream, mean, std, index_offset, s);
}
void fill_uniform(bf16* dst, size_t n, uint64_t seed, uint64_t stream, float lo, float hi,
                  uint64_t index_offset, cudaStream_t s) {
  launch_fill<Dist::Uniform>(dst, n, seed, stream, lo, hi, index_offset, s);
}
void fill_uniform(float* dst, size_t n, uint64_t seed, uint64_t stream, float lo, float hi,
                  uint64_t index_offset, cudaStream_t s) {
  launch_fill<Dist::Uniform>(dst, n, seed, stream, lo, hi, index_offset, s);
}
void fill_constant(bf16* dst, size_t n, float value, cudaStream_t s) {
  if (n == 0) return;
  fill_constant_kernel<<<grid_for(n), 256, 0, s>>>(dst, n, value);
  JB_LAUNCH("fill_constant_kernel");
}
void fill_constant(float* dst, size_t n, float value, cudaStream_t s) {
  if (n == 0) return;
  fill_constant_kernel<<<grid_for(n), 256, 0, s>>>(dst, n, value);
  JB_LAUNCH("fill_constant_kernel");
}

namespace {

template <class T>
void fill_rule(T* dst, size_t n, uint64_t seed, uint64_t stream, const InitRule& r,
               cudaStream_t s) {
  switch (r.kind) {
    case InitRule::Normal:
      fill_normal(dst, n, seed, stream, 0.0f, r.a, 0, s);
      return;
    case InitRule::Uniform:
      fill_uniform(dst, n, seed, stream, r.a, r.b, 0, s);
      return;
    case InitRule::Constant:
      fill_constant(dst, n, r.a, s);
      return;
    default: {  // DtBias, ALog: small tensors, host formula in double
      std::vector<T> h(n);
      for (size_t i = 0; i < n; ++i) {
        const float v = random_init_value(r, seed, stream, static_cast<int64_t>(i));
        if constexpr (sizeof(T) == 2)
          h[i] = __ushort_as_bfloat16(float_to_bf16_bits(v));
        else
          h[i] = v;
      }
      JB_CUDA(cudaMemcpyAsync(dst, h.data(), n * sizeof(T), cudaMemcpyHostToDevice, s));
      JB_CUDA(cudaStreamSynchronize(s));  // h is freed on return
      return;
    }
  }
}

}  // namespace

void fill_random_weight(bf16* dst, size_t n, uint64_t seed, uint64_t stream, const InitRule& rule,
                        cudaStream_t s) {
  fill_rule(dst, n, seed, stream, rule, s);
}
void fill_random_weight(float* dst, size_t n, uint64_t seed, uint64_t stream, const InitRule& rule,
                        cudaStream_t s) {
  fill_rule(dst, n, seed, stream, rule, s);
}

}  // namespace jb::cuda
