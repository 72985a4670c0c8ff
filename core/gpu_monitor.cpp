#include "core/gpu_monitor.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace jb {

GpuConditions summarize(const std::vector<GpuSample>& samples) {
  GpuConditions c;
  if (samples.empty()) return c;
  c.samples = static_cast<int>(samples.size());
  std::vector<unsigned> sm;
  sm.reserve(samples.size());
  c.mem_mhz_min = samples[0].mem_mhz;
  int capped = 0, slowed = 0;
  for (const GpuSample& s : samples) {
    sm.push_back(s.sm_mhz);
    c.mem_mhz_min = std::min(c.mem_mhz_min, s.mem_mhz);
    c.watts_max = std::max(c.watts_max, s.watts);
    capped += (s.reasons & gpu_reason::kSwPowerCap) != 0;
    slowed += (s.reasons & gpu_reason::kSlowdown) != 0;
  }
  std::sort(sm.begin(), sm.end());
  c.sm_mhz_min = sm.front();
  c.sm_mhz_max = sm.back();
  c.sm_mhz_median = sm[sm.size() / 2];  // the upper median: a clock that was really sampled
  c.power_cap_fraction = static_cast<double>(capped) / c.samples;
  c.slowdown_fraction = static_cast<double>(slowed) / c.samples;
  return c;
}

namespace {

// The few NVML entry points used, resolved once from the driver's library. nvmlReturn_t is an
// int enum (0 = success); nvmlDevice_t an opaque pointer; NVML_CLOCK_SM = 1, NVML_CLOCK_MEM = 2.
constexpr int kNvmlClockSm = 1;
constexpr int kNvmlClockMem = 2;
struct Nvml {
  using InitFn = int (*)();
  using HandleFn = int (*)(const char*, void**);
  using ClockFn = int (*)(void*, int, unsigned*);
  using PowerFn = int (*)(void*, unsigned*);
  using ReasonsFn = int (*)(void*, unsigned long long*);
  using ErrorFn = const char* (*)(int);
  HandleFn handle_by_pci = nullptr;
  ClockFn clock = nullptr;
  PowerFn power = nullptr;
  ReasonsFn reasons = nullptr;
  ErrorFn error_string = nullptr;
  std::string why;  // empty when usable

  std::string error(int rc) const {
    return error_string ? error_string(rc) : "NVML error " + std::to_string(rc);
  }

  static const Nvml& get() {
    static const Nvml nvml = load();
    return nvml;
  }

 private:
  static Nvml load() {
    Nvml n;
    const char* env = std::getenv("JB_GPU_MONITOR");
    if (env && std::strcmp(env, "0") == 0) {
      n.why = "disabled by JB_GPU_MONITOR=0";
      return n;
    }
    // JB_NVML_LIBRARY: another library to load (tests use a fake, tests/fake/fake_nvml.cpp).
    // Never closed: the library stays loaded for the process's lifetime.
    const char* path = std::getenv("JB_NVML_LIBRARY");
    if (!path || !*path) path = "libnvidia-ml.so.1";
    void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      const char* e = dlerror();
      n.why = std::string("cannot load ") + path + ": " + (e ? e : "unknown error");
      return n;
    }
    const auto sym = [&](const char* name) { return dlsym(lib, name); };
    const auto init = reinterpret_cast<InitFn>(sym("nvmlInit_v2"));
    n.handle_by_pci = reinterpret_cast<HandleFn>(sym("nvmlDeviceGetHandleByPciBusId_v2"));
    n.clock = reinterpret_cast<ClockFn>(sym("nvmlDeviceGetClockInfo"));
    n.power = reinterpret_cast<PowerFn>(sym("nvmlDeviceGetPowerUsage"));
    // Renamed from "throttle" to "event" reasons in 2023; same bits.
    n.reasons = reinterpret_cast<ReasonsFn>(sym("nvmlDeviceGetCurrentClocksEventReasons"));
    if (!n.reasons)
      n.reasons = reinterpret_cast<ReasonsFn>(sym("nvmlDeviceGetCurrentClocksThrottleReasons"));
    n.error_string = reinterpret_cast<ErrorFn>(sym("nvmlErrorString"));
    if (!init || !n.handle_by_pci || !n.clock || !n.power || !n.reasons) {
      n.why = "libnvidia-ml.so.1 lacks an entry point this monitor needs";
      return n;
    }
    if (const int rc = init(); rc != 0) n.why = "nvmlInit_v2 failed: " + n.error(rc);
    return n;
  }
};

}  // namespace

GpuMonitor::GpuMonitor(const std::string& pci_bus_id, std::chrono::microseconds period)
    : period_(period) {
  const Nvml& nvml = Nvml::get();
  if (!nvml.why.empty()) {
    why_ = nvml.why;
    return;
  }
  void* dev = nullptr;
  if (const int rc = nvml.handle_by_pci(pci_bus_id.c_str(), &dev); rc != 0) {
    why_ = "no NVML device with PCI bus id '" + pci_bus_id + "': " + nvml.error(rc);
    return;
  }
  device_ = dev;
  GpuSample probe;
  if (!sample(probe)) device_ = nullptr;  // why_ says which query failed
}

GpuMonitor::~GpuMonitor() {
  if (thread_.joinable()) {
    stop_ = true;
    thread_.join();
  }
}

int GpuMonitor::query(GpuSample& out) const {
  const Nvml& nvml = Nvml::get();
  unsigned mw = 0;
  unsigned long long reasons = 0;
  int rc = nvml.clock(device_, kNvmlClockSm, &out.sm_mhz);
  if (rc == 0) rc = nvml.clock(device_, kNvmlClockMem, &out.mem_mhz);
  if (rc == 0) rc = nvml.power(device_, &mw);
  if (rc == 0) rc = nvml.reasons(device_, &reasons);
  out.watts = mw * 1e-3;
  out.reasons = reasons;
  return rc;
}

bool GpuMonitor::sample(GpuSample& out) {
  if (!device_) return false;
  if (const int rc = query(out); rc != 0) {
    why_ = "NVML query failed: " + Nvml::get().error(rc);
    return false;
  }
  return true;
}

void GpuMonitor::start() {
  if (!device_ || thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    samples_.clear();
  }
  stop_ = false;
  thread_ = std::thread([this] { run(); });
}

void GpuMonitor::run() {
  while (!stop_) {
    GpuSample s;
    if (query(s) == 0) {  // (a failed sample is left out: why_ belongs to the owning thread)
      std::lock_guard<std::mutex> lock(mutex_);
      samples_.push_back(s);
    }
    std::this_thread::sleep_for(period_);
  }
}

GpuConditions GpuMonitor::stop() {
  if (thread_.joinable()) {
    stop_ = true;
    thread_.join();
  }
  std::lock_guard<std::mutex> lock(mutex_);
  return summarize(samples_);
}

}  // namespace jb
