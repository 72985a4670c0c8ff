// A stand-in for the driver's libnvidia-ml.so.1 with the entry points core/gpu_monitor.cpp
// resolves, so that its loading, sampling thread and summary run on machines without a GPU
// (tests/test_core_gpu_monitor_fake.cpp loads it through JB_NVML_LIBRARY). One device, PCI bus
// id 0000:01:00.0; its SM clock steps through kSmClocks on every query; power 700 W; the
// software power cap engaged on every second query.
#include <atomic>
#include <cstring>

namespace {
int g_device;  // the handle's target
std::atomic<unsigned> g_sm_queries{0};
std::atomic<unsigned> g_reason_queries{0};
constexpr unsigned kSmClocks[] = {1980, 1470, 1755};
constexpr int kSuccess = 0, kInvalidArgument = 2, kNotFound = 6;
}  // namespace

extern "C" {
int nvmlInit_v2() {
  return kSuccess;
}
int nvmlDeviceGetHandleByPciBusId_v2(const char* bus, void** device) {
  if (!bus || !device) return kInvalidArgument;
  if (std::strcmp(bus, "0000:01:00.0") != 0) return kNotFound;
  *device = &g_device;
  return kSuccess;
}
int nvmlDeviceGetClockInfo(void* device, int type, unsigned* mhz) {
  if (device != &g_device || !mhz) return kInvalidArgument;
  if (type == 1)
    *mhz = kSmClocks[g_sm_queries++ % 3];
  else if (type == 2)
    *mhz = 3201;
  else
    return kInvalidArgument;
  return kSuccess;
}
int nvmlDeviceGetPowerUsage(void* device, unsigned* mw) {
  if (device != &g_device || !mw) return kInvalidArgument;
  *mw = 700000;
  return kSuccess;
}
int nvmlDeviceGetCurrentClocksEventReasons(void* device, unsigned long long* reasons) {
  if (device != &g_device || !reasons) return kInvalidArgument;
  *reasons = (g_reason_queries++ % 2) ? 0x4ull : 0x0ull;
  return kSuccess;
}
const char* nvmlErrorString(int rc) {
  return rc == kNotFound ? "Not Found" : "fake NVML error";
}
}
