#include "bench/common/ceilings.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/rng.hpp"
#include "cuda/common.cuh"
#include "cuda/gemm.hpp"
#include "cuda/random_init.hpp"

namespace jb::bench {

EventTimer::EventTimer(cudaStream_t stream) : stream_(stream) {
  JB_CUDA(cudaEventCreate(&start_));
  JB_CUDA(cudaEventCreate(&stop_));
}
EventTimer::~EventTimer() {
  cudaEventDestroy(start_);
  cudaEventDestroy(stop_);
}
void EventTimer::start() {
  JB_CUDA(cudaEventRecord(start_, stream_));
}
void EventTimer::stop() {
  JB_CUDA(cudaEventRecord(stop_, stream_));
}
double EventTimer::elapsed_ms() {
  JB_CUDA(cudaEventSynchronize(stop_));
  float ms = 0;
  JB_CUDA(cudaEventElapsedTime(&ms, start_, stop_));
  return ms;
}

Stream::Stream() {
  JB_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
}
Stream::~Stream() {
  cudaStreamDestroy(s);
}

CapturedGraph::CapturedGraph(cudaStream_t s, const std::function<void()>& enqueue,
                             cudaStreamCaptureMode mode) {
  JB_CUDA(cudaStreamBeginCapture(s, mode));
  enqueue();
  JB_CUDA(cudaStreamEndCapture(s, &graph_));
  JB_CUDA(cudaGraphInstantiate(&exec_, graph_, 0));
}
CapturedGraph::~CapturedGraph() {
  if (exec_) cudaGraphExecDestroy(exec_);
  if (graph_) cudaGraphDestroy(graph_);
}
void CapturedGraph::launch(cudaStream_t s) const {
  JB_CUDA(cudaGraphLaunch(exec_, s));
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

double median_ms(const std::function<void()>& fn, int reps, int warmup, cudaStream_t stream) {
  for (int i = 0; i < warmup; ++i) fn();
  JB_CUDA(cudaStreamSynchronize(stream));
  EventTimer t(stream);
  std::vector<double> times;
  times.reserve(reps);
  for (int i = 0; i < reps; ++i) {
    t.start();
    fn();
    t.stop();
    times.push_back(t.elapsed_ms());
  }
  return median(times);
}

namespace {
std::string current_pci_bus_id() {
  int dev = 0;
  JB_CUDA(cudaGetDevice(&dev));
  char bus[32] = {};
  JB_CUDA(cudaDeviceGetPCIBusId(bus, sizeof bus, dev));
  return bus;
}
}  // namespace

GpuMonitor& gpu_monitor() {
  static GpuMonitor monitor(current_pci_bus_id());
  return monitor;
}

void add_gpu_conditions(benchmark::State& state, const GpuConditions& c) {
  if (c.samples == 0) return;
  state.counters["gpu_sm_MHz"] = c.sm_mhz_median;
  state.counters["gpu_sm_MHz_min"] = c.sm_mhz_min;
  state.counters["gpu_mem_MHz_min"] = c.mem_mhz_min;
  state.counters["gpu_W_max"] = c.watts_max;
  state.counters["gpu_pwrcap"] = c.power_cap_fraction;
  state.counters["gpu_slowdown"] = c.slowdown_fraction;
}

size_t l2_bytes() {
  cudaDeviceProp prop;
  JB_CUDA(cudaGetDeviceProperties(&prop, 0));
  return static_cast<size_t>(prop.l2CacheSize);
}

namespace {

// 16 bytes per thread per iteration; grid-stride so any size works.
__global__ void copy_kernel(const uint4* __restrict__ src, uint4* __restrict__ dst, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    dst[i] = src[i];
}

}  // namespace

Ceilings measure_ceilings(size_t copy_bytes, int gemm_n, int reps) {
  using jb::cuda::bf16;
  Ceilings c;
  c.device = jb::cuda::device_name();
  c.copy_bytes = copy_bytes;
  c.gemm_n = gemm_n;
  const uint64_t seed = 12345;

  {  // Copy bandwidth: a buffer far larger than L2 (1 GiB vs 50 MB), random contents.
    const size_t n_bf16 = copy_bytes / sizeof(bf16);
    jb::cuda::DeviceBuffer<bf16> src(n_bf16), dst(n_bf16);
    jb::cuda::fill_normal(src.get(), n_bf16, seed, jb::stream_id("ceiling.copy"), 0.f, 1.f);
    const double bytes_moved = 2.0 * static_cast<double>(copy_bytes);  // read + write
    const double ms_memcpy = median_ms(
        [&] {
          JB_CUDA(cudaMemcpyAsync(dst.get(), src.get(), copy_bytes, cudaMemcpyDeviceToDevice));
        },
        reps);
    c.memcpy_gbs = bytes_moved / (ms_memcpy * 1e-3) / 1e9;
    const int sms = jb::cuda::sm_count();
    const size_t n16 = copy_bytes / 16;
    const double ms_kernel = median_ms(
        [&] {
          copy_kernel<<<sms * 8, 512>>>(reinterpret_cast<const uint4*>(src.get()),
                                        reinterpret_cast<uint4*>(dst.get()), n16);
          JB_LAUNCH("copy_kernel");
        },
        reps);
    c.copy_kernel_gbs = static_cast<double>(n16) * 32.0 / (ms_kernel * 1e-3) / 1e9;
  }
  {  // cuBLAS bf16 GEMM n^3 (2 n^3 flops), random operands (never zeros: METHOD.md).
    const size_t nn = static_cast<size_t>(gemm_n) * gemm_n;
    jb::cuda::DeviceBuffer<bf16> a(nn), b(nn), y(nn);
    jb::cuda::fill_normal(a.get(), nn, seed, jb::stream_id("ceiling.gemm.a"), 0.f, 1.f);
    jb::cuda::fill_normal(b.get(), nn, seed, jb::stream_id("ceiling.gemm.b"), 0.f, 1.f);
    const double ms = median_ms(
        [&] { jb::cuda::linear_bf16(a.get(), b.get(), y.get(), gemm_n, gemm_n, gemm_n); }, reps);
    c.gemm_tflops = 2.0 * gemm_n * double(gemm_n) * gemm_n / (ms * 1e-3) / 1e12;
  }
  return c;
}

void add_ceilings_to_context(const Ceilings& c) {
  char buf[64];
  benchmark::AddCustomContext("jb_device", c.device);
  std::snprintf(buf, sizeof buf, "%.1f", c.memcpy_gbs);
  benchmark::AddCustomContext("jb_copy_memcpy_GBps", buf);
  std::snprintf(buf, sizeof buf, "%.1f", c.copy_kernel_gbs);
  benchmark::AddCustomContext("jb_copy_kernel_GBps", buf);
  std::snprintf(buf, sizeof buf, "%.1f", c.gemm_tflops);
  benchmark::AddCustomContext("jb_gemm_bf16_TFLOPs", buf);
  const GpuMonitor& m = gpu_monitor();
  benchmark::AddCustomContext("jb_gpu_monitor",
                              m.available() ? "nvml, 10 ms samples" : "unavailable: " + m.why());
}

const Ceilings& ceilings() {
  static const Ceilings c = [] {
    const char* env = std::getenv("JB_CEILINGS");
    if (env && std::strcmp(env, "0") == 0) {
      Ceilings none;
      none.device = jb::cuda::device_name();
      return none;
    }
    Ceilings m = measure_ceilings();
    std::fprintf(stderr,
                 "ceilings on %s: copy %.0f GB/s (cudaMemcpy D2D %.0f, copy kernel %.0f; bytes "
                 "read+written), cuBLAS bf16 GEMM %d^3 %.0f TFLOP/s\n",
                 m.device.c_str(), m.copy_gbs(), m.memcpy_gbs, m.copy_kernel_gbs, m.gemm_n,
                 m.gemm_tflops);
    return m;
  }();
  return c;
}

}  // namespace jb::bench
