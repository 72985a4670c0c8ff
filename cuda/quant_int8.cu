// GPU ExpertsInt8 quantiser: the same bf16 arithmetic as reference/quant_int8.cpp, step by step,
// so the int8 values and scales are bitwise equal (ecosystem.md §1.8). Every comparison below is
// written the way std::max / std::min evaluate it in the reference, so even a NaN weight gives
// the same bits on both sides.
#include "cuda/quant_int8.hpp"

#include <string>

#include "core/bf16.hpp"

namespace jb::cuda {

namespace {

constexpr int kQuantThreads = 256;

__device__ __forceinline__ float ref_max(float a, float b) {
  return (a < b) ? b : a;
}  // std::max

__device__ __forceinline__ float bf16_raw_to_float(const bf16& v) {
  return __bfloat162float(v);  // exact widening
}

// One block per row: max |w| (block reduction; max is order-independent, so deterministic),
// then every element of the row is quantised independently.
__global__ void __launch_bounds__(kQuantThreads)
    quantize_int8_kernel(const bf16* __restrict__ w, int64_t cols, int8_t* __restrict__ q,
                         float* __restrict__ scale) {
  const int64_t row = blockIdx.x;
  const bf16* wr = w + row * cols;
  int8_t* qr = q + row * cols;

  float amax = 0.0f;
  for (int64_t j = threadIdx.x; j < cols; j += kQuantThreads)
    amax = ref_max(amax, fabsf(bf16_raw_to_float(wr[j])));
  for (int off = 16; off > 0; off >>= 1)
    amax = ref_max(amax, __shfl_xor_sync(0xffffffffu, amax, off));
  __shared__ float warp_max[kQuantThreads / 32];
  __shared__ float row_scale;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_max[warp] = amax;
  __syncthreads();
  if (threadIdx.x == 0) {
    float m = 0.0f;
    for (int i = 0; i < kQuantThreads / 32; ++i) m = ref_max(m, warp_max[i]);
    // bf16 tensor / python scalar 127: computed in fp32 (IEEE division), stored bf16.
    const float s = round_bf16(__fdiv_rn(m, 127.0f));
    row_scale = s;
    scale[row] = s;
  }
  __syncthreads();
  const float s = row_scale;
  for (int64_t j = threadIdx.x; j < cols; j += kQuantThreads) {
    int8_t out = 0;
    if (s != 0.0f) {  // all-zero row: q = 0, scale = 0 (vLLM would produce NaN)
      const float quotient = round_bf16(__fdiv_rn(bf16_raw_to_float(wr[j]), s));  // div_ in bf16
      float qv = rintf(quotient);          // torch.round: half to even
      qv = (-127.0f < qv) ? qv : -127.0f;  // std::max(-127, qv)
      qv = (qv < 127.0f) ? qv : 127.0f;    // std::min(127, qv)
      out = static_cast<int8_t>(qv);
    }
    qr[j] = out;
  }
}

__global__ void int8_to_bf16_kernel(const int8_t* __restrict__ q, int64_t count,
                                    bf16* __restrict__ out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = __float2bfloat16_rn(static_cast<float>(q[i]));
}

// 16 int8 per thread per step when the count allows it (the prefill path converts whole experts,
// 100+ MB each at Jamba width, so this one is bandwidth-relevant).
__global__ void int8_to_bf16_vec16_kernel(const int4* __restrict__ q, int64_t vec_count,
                                          uint4* __restrict__ out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < vec_count;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int4 v = q[i];
    const int8_t* b = reinterpret_cast<const int8_t*>(&v);
    uint4 o[2];
    bf16* ob = reinterpret_cast<bf16*>(o);
#pragma unroll
    for (int k = 0; k < 16; ++k) ob[k] = __float2bfloat16_rn(static_cast<float>(b[k]));
    out[2 * i] = o[0];
    out[2 * i + 1] = o[1];
  }
}

__global__ void dequantize_int8_bf16_kernel(const int8_t* __restrict__ q,
                                            const float* __restrict__ scale, int64_t rows,
                                            int64_t cols, bf16* __restrict__ out) {
  const int64_t total = rows * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = __float2bfloat16_rn(static_cast<float>(q[i]) * scale[i / cols]);
}

int grid_for(int64_t n, int threads) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks > 65536) blocks = 65536;
  return static_cast<int>(blocks < 1 ? 1 : blocks);
}

}  // namespace

void quantize_int8(const bf16* w, int64_t rows, int64_t cols, int8_t* q, float* scale,
                   cudaStream_t stream) {
  if (rows < 0 || cols < 0)
    fail(ErrorKind::Shape,
         "quantize_int8: bad matrix [" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
  if (rows == 0) return;
  if (rows > 2147483647) fail(ErrorKind::Unsupported, "quantize_int8: more than 2^31 rows");
  if (cols == 0) {
    JB_CUDA(cudaMemsetAsync(scale, 0, rows * sizeof(float), stream));
    return;
  }
  quantize_int8_kernel<<<static_cast<unsigned>(rows), kQuantThreads, 0, stream>>>(w, cols, q,
                                                                                  scale);
  JB_LAUNCH("quantize_int8_kernel");
}

void int8_to_bf16(const int8_t* q, int64_t count, bf16* out, cudaStream_t stream) {
  if (count <= 0) return;
  const bool aligned = (reinterpret_cast<uintptr_t>(q) % 16 == 0) &&
                       (reinterpret_cast<uintptr_t>(out) % 16 == 0) && (count % 16 == 0);
  if (aligned) {
    const int64_t vec = count / 16;
    int8_to_bf16_vec16_kernel<<<grid_for(vec, 256), 256, 0, stream>>>(
        reinterpret_cast<const int4*>(q), vec, reinterpret_cast<uint4*>(out));
    JB_LAUNCH("int8_to_bf16_vec16_kernel");
  } else {
    int8_to_bf16_kernel<<<grid_for(count, 256), 256, 0, stream>>>(q, count, out);
    JB_LAUNCH("int8_to_bf16_kernel");
  }
}

void dequantize_int8_bf16(const int8_t* q, const float* scale, int64_t rows, int64_t cols,
                          bf16* out, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  dequantize_int8_bf16_kernel<<<grid_for(rows * cols, 256), 256, 0, stream>>>(q, scale, rows, cols,
                                                                              out);
  JB_LAUNCH("dequantize_int8_bf16_kernel");
}

}  // namespace jb::cuda
