// What the GPU was doing while something was timed: SM clock, board power and the reasons NVML
// gives for lowered clocks, sampled on a host thread. Why: on an H200 the same benchmark row
// measured 0.73 of copy in a long sweep and 0.82 alone, and nvidia-smi showed the 700 W software
// power cap engaged during sweeps (results/h200-2026-11-29b); a kernel bound by issue or latency
// slows with the SM clock while the copy ceiling does not, so a ratio is only interpretable with
// the clock it ran at. Every benchmark row that uses bench::event_timed_loop carries these
// figures (bench/common/ceilings.hpp).
//
// NVML is loaded at run time (dlopen of libnvidia-ml.so.1, the driver's library), so nothing
// links against it and machines without a driver build and run the same binaries: there the
// monitor reports itself unavailable, with the reason. JB_GPU_MONITOR=0 switches it off;
// JB_NVML_LIBRARY names another library to load (the tests' fake).
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace jb {

// NVML's clock-event reason bits (nvmlClocksEventReasons / the older ...ThrottleReasons).
namespace gpu_reason {
inline constexpr uint64_t kIdle = 0x1;
inline constexpr uint64_t kSwPowerCap = 0x4;
inline constexpr uint64_t kHwSlowdown = 0x8;
inline constexpr uint64_t kSwThermal = 0x20;
inline constexpr uint64_t kHwThermal = 0x40;
inline constexpr uint64_t kHwPowerBrake = 0x80;
// Slowdowns other than the software power cap: hardware slowdown, thermal, power brake.
inline constexpr uint64_t kSlowdown = kHwSlowdown | kSwThermal | kHwThermal | kHwPowerBrake;
}  // namespace gpu_reason

struct GpuSample {
  unsigned sm_mhz = 0;
  unsigned mem_mhz = 0;
  double watts = 0;      // as NVML reports it (a short moving average on recent GPUs)
  uint64_t reasons = 0;  // gpu_reason bits
};

// Summary of the samples taken while one thing ran.
struct GpuConditions {
  int samples = 0;
  unsigned sm_mhz_min = 0, sm_mhz_median = 0, sm_mhz_max = 0;
  unsigned mem_mhz_min = 0;
  double watts_max = 0;
  double power_cap_fraction = 0;  // of the samples, those with the software power cap engaged
  double slowdown_fraction = 0;   // ... with a hardware, thermal or power-brake slowdown
};
// All zeros for no samples.
GpuConditions summarize(const std::vector<GpuSample>& samples);

// Samples one GPU (named by its PCI bus id, e.g. cudaDeviceGetPCIBusId's "0000:1B:00.0") every
// `period` between start() and stop(). When NVML is missing or the device is unknown the monitor
// is unavailable: start() does nothing and stop() returns zero samples; why() says what failed.
class GpuMonitor {
 public:
  explicit GpuMonitor(const std::string& pci_bus_id,
                      std::chrono::microseconds period = std::chrono::milliseconds(10));
  ~GpuMonitor();
  GpuMonitor(const GpuMonitor&) = delete;
  GpuMonitor& operator=(const GpuMonitor&) = delete;

  bool available() const { return device_ != nullptr; }
  const std::string& why() const { return why_; }
  // One sample now (false when unavailable or a query failed; why() then says which).
  bool sample(GpuSample& out);
  void start();
  GpuConditions stop();

 private:
  int query(GpuSample& out) const;  // NVML return code
  void run();
  void* device_ = nullptr;  // nvmlDevice_t
  std::string why_;
  std::chrono::microseconds period_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::vector<GpuSample> samples_;
};

}  // namespace jb
