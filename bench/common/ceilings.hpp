// Hardware ceilings measured in the same run as a benchmark (performance-targets.md "How to
// measure"): device copy bandwidth and cuBLAS bf16 GEMM throughput, plus small timing helpers
// (CUDA events, median of repetitions) that every kernel benchmark shares.
//
// Usage in a Google Benchmark file:
//   const auto& ceil = jb::bench::ceilings();   // measured once per process, then cached
//   state.counters["x_copy"] = gbs / ceil.copy_gbs();
#pragma once
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/gpu_monitor.hpp"

namespace jb::bench {

struct Ceilings {
  std::string device;
  double memcpy_gbs = 0;       // cudaMemcpyAsync device-to-device, (bytes read + written) / s
  double copy_kernel_gbs = 0;  // 16-byte-per-thread copy kernel, (bytes read + written) / s
  double gemm_tflops = 0;      // cuBLAS bf16 x bf16 -> bf16, fp32 accumulate, 8192^3
  size_t copy_bytes = 0;       // size of the copied buffer
  int gemm_n = 0;
  // The copy ceiling used for "x_copy" ratios: the better of the two copies.
  double copy_gbs() const { return memcpy_gbs > copy_kernel_gbs ? memcpy_gbs : copy_kernel_gbs; }
};

// Measures once (first call), prints a one-line summary to stderr, and registers it as Google
// Benchmark custom context when called before benchmark::RunSpecifiedBenchmarks().
// Environment: JB_CEILINGS=0 skips the measurement (ratios then print as 0).
const Ceilings& ceilings();
Ceilings measure_ceilings(size_t copy_bytes = size_t(1) << 30, int gemm_n = 8192, int reps = 20);
// Adds the measured ceilings to benchmark's context (device, copy GB/s, GEMM TFLOP/s), and
// jb_gpu_monitor: whether the GPU monitor runs ("nvml, 10 ms samples") or why not.
void add_ceilings_to_context(const Ceilings& c);

// Median milliseconds of `reps` timed calls of fn (each bracketed by CUDA events on `stream`),
// after `warmup` untimed calls.
double median_ms(const std::function<void()>& fn, int reps, int warmup = 3,
                 cudaStream_t stream = nullptr);
double median(std::vector<double> v);

// One event pair; elapsed_ms() synchronises on the stop event.
class EventTimer {
 public:
  explicit EventTimer(cudaStream_t stream = nullptr);
  ~EventTimer();
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  void start();
  void stop();
  double elapsed_ms();

 private:
  cudaStream_t stream_;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

// The GPU monitor of the current device (core/gpu_monitor.hpp), one per process.
GpuMonitor& gpu_monitor();
// Counters of a row from what the monitor saw while its loop ran: gpu_sm_MHz (median sample),
// gpu_sm_MHz_min, gpu_mem_MHz_min, gpu_W_max, gpu_pwrcap and gpu_slowdown (fractions of the
// samples with the software power cap / another slowdown engaged). None without samples.
void add_gpu_conditions(benchmark::State& state, const GpuConditions& c);

// The benchmark loop with CUDA-event timing: per iteration, `calls` calls of fn(i) between one
// event pair on `stream` (i counts every call from 0, e.g. to rotate input sets); the
// iteration's manual time is the time per call. Returns those per-call times in seconds. The
// GPU monitor samples clocks and power meanwhile (add_gpu_conditions).
template <class Fn>
std::vector<double> event_timed_loop(benchmark::State& state, Fn&& fn,
                                     cudaStream_t stream = nullptr, int calls = 1) {
  EventTimer timer(stream);
  std::vector<double> secs;
  int i = 0;
  GpuMonitor& monitor = gpu_monitor();
  monitor.start();
  for (auto _ : state) {
    timer.start();
    for (int k = 0; k < calls; ++k) fn(i++);
    timer.stop();
    const double sec = timer.elapsed_ms() * 1e-3 / calls;
    secs.push_back(sec);
    state.SetIterationTime(sec);
  }
  add_gpu_conditions(state, monitor.stop());
  return secs;
}

// Two workloads timed in alternation, call by call, each between its own event pair on
// `stream`: per iteration one call of `ours` and one of `reference`, the order swapped every
// iteration, run back to back on the GPU. A ratio taken per iteration then compares the two
// under the same clocks and power state; timed one loop after the other, a reference on a
// power-capped GPU moved by +-7% between rows of one run (bench_moe, H200, 2026-11-29). The
// iteration's manual time is ours; returns {ours, reference} per-call seconds.
template <class FnA, class FnB>
std::pair<std::vector<double>, std::vector<double>> paired_event_loop(benchmark::State& state,
                                                                      FnA&& ours, FnB&& reference,
                                                                      cudaStream_t stream) {
  EventTimer timer_ours(stream), timer_ref(stream);
  std::vector<double> secs_ours, secs_ref;
  GpuMonitor& monitor = gpu_monitor();
  monitor.start();
  bool ours_first = true;
  for (auto _ : state) {
    if (ours_first) {
      timer_ours.start(), ours(), timer_ours.stop();
      timer_ref.start(), reference(), timer_ref.stop();
    } else {
      timer_ref.start(), reference(), timer_ref.stop();
      timer_ours.start(), ours(), timer_ours.stop();
    }
    ours_first = !ours_first;
    secs_ours.push_back(timer_ours.elapsed_ms() * 1e-3);
    secs_ref.push_back(timer_ref.elapsed_ms() * 1e-3);
    state.SetIterationTime(secs_ours.back());
  }
  add_gpu_conditions(state, monitor.stop());
  return {secs_ours, secs_ref};
}

// A non-blocking CUDA stream owned by the object.
struct Stream {
  Stream();
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t s = nullptr;
};

// The work `enqueue` issues on stream `s`, captured once as a CUDA graph and instantiated; the
// decode benchmarks replay it (how the engine runs decode steps: no host launch gaps).
class CapturedGraph {
 public:
  CapturedGraph(cudaStream_t s, const std::function<void()>& enqueue,
                cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed);
  ~CapturedGraph();
  CapturedGraph(const CapturedGraph&) = delete;
  CapturedGraph& operator=(const CapturedGraph&) = delete;
  void launch(cudaStream_t s) const;

 private:
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};

// L2 size of device 0 in bytes (for deciding how many input sets to rotate).
size_t l2_bytes();

}  // namespace jb::bench
