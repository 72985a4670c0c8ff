// RMS_NORM registry entry with its CUDA kernel (cuda/rmsnorm.hpp). The case grid and references
// are in norm_cases.hpp (shared with the CPU-only cpu_listings.cpp).
#include <cstring>

#include "compare/ops/norm_cases.hpp"
#include "cuda/common.cuh"
#include "cuda/rmsnorm.hpp"

namespace jb::cmp {

namespace {

Outputs rmsnorm_kernel(const Case& c, KernelRun& run) {
  const norm::RmsNormInputs in = norm::rmsnorm_inputs(c);
  const size_t out_elems = static_cast<size_t>(in.rows * in.n);
  NamedTensor y;
  y.name = "y";
  y.shape = {in.rows, in.n};
  y.kind = CheckKind::Reduction;
  y.values.resize(out_elems);
  if (in.fp32) {
    cuda::DeviceBuffer<float> x(in.x.size()), w(in.weight.size());
    x.upload(in.x);
    w.upload(in.weight);
    cuda::GuardedBuffer out(out_elems * sizeof(float));
    out.poison();  // NaN everywhere: an element the kernel does not write fails the comparison
    float* yp = static_cast<float*>(out.body());
    run.variant = cuda::rmsnorm_variant(in.n, in.stride, in.n, x.get(), w.get(), yp, 4);
    cuda::rmsnorm_f32_strided(x.get(), in.stride, w.get(), yp, in.n, in.rows, in.n, in.eps);
    JB_CUDA(cudaDeviceSynchronize());
    run.guards_ok = out.guards_intact();
    const std::vector<uint8_t> bytes = out.download_body();
    std::memcpy(y.values.data(), bytes.data(), bytes.size());
  } else {
    cuda::DeviceBuffer<cuda::bf16> x(in.x.size()), w(in.weight.size());
    x.upload(cuda::to_bf16(in.x));  // exact: the values are already bf16
    w.upload(cuda::to_bf16(in.weight));
    cuda::GuardedBuffer out(out_elems * sizeof(cuda::bf16));
    out.poison();
    void* yp = out.body();
    run.variant = cuda::rmsnorm_variant(in.n, in.stride, in.n, x.get(), w.get(), yp, 2);
    cuda::rmsnorm_bf16_strided(x.get(), in.stride, w.get(), yp, in.n, in.rows, in.n, in.eps);
    JB_CUDA(cudaDeviceSynchronize());
    run.guards_ok = out.guards_intact();
    const std::vector<uint8_t> bytes = out.download_body();
    for (size_t i = 0; i < out_elems; ++i) {
      uint16_t b;
      std::memcpy(&b, bytes.data() + 2 * i, 2);
      y.values[i] = bf16_bits_to_float(b);
    }
  }
  return {y};
}

}  // namespace

void register_norm_ops(Registry& r) {
  OpInfo op = norm::rmsnorm_op_listing();
  op.kernel = rmsnorm_kernel;
  r.add(std::move(op));
}

}  // namespace jb::cmp
