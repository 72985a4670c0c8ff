// core/gpu_monitor: the summary of samples (pure), and the monitor's behaviour where NVML or the
// device is missing (CI machines have no driver: unavailable, with a reason, and no samples).
#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

#include "core/gpu_monitor.hpp"

namespace {

jb::GpuSample make(unsigned sm, unsigned mem, double w, uint64_t reasons) {
  jb::GpuSample s;
  s.sm_mhz = sm;
  s.mem_mhz = mem;
  s.watts = w;
  s.reasons = reasons;
  return s;
}

TEST(GpuMonitor, SummaryOfNoSamplesIsZero) {
  const jb::GpuConditions c = jb::summarize({});
  EXPECT_EQ(c.samples, 0);
  EXPECT_EQ(c.sm_mhz_min, 0u);
  EXPECT_EQ(c.power_cap_fraction, 0.0);
}

TEST(GpuMonitor, SummaryCountsClocksPowerAndReasons) {
  using namespace jb::gpu_reason;
  const std::vector<jb::GpuSample> s = {
      make(1980, 3201, 650.0, 0),
      make(1470, 3201, 699.5, kSwPowerCap),
      make(1755, 3201, 698.0, kSwPowerCap | kIdle),
      make(1935, 1593, 400.0, kHwThermal),
  };
  const jb::GpuConditions c = jb::summarize(s);
  EXPECT_EQ(c.samples, 4);
  EXPECT_EQ(c.sm_mhz_min, 1470u);
  EXPECT_EQ(c.sm_mhz_max, 1980u);
  EXPECT_EQ(c.sm_mhz_median, 1935u);  // upper median of 1470, 1755, 1935, 1980
  EXPECT_EQ(c.mem_mhz_min, 1593u);
  EXPECT_DOUBLE_EQ(c.watts_max, 699.5);
  EXPECT_DOUBLE_EQ(c.power_cap_fraction, 0.5);
  EXPECT_DOUBLE_EQ(c.slowdown_fraction, 0.25);  // idle and the power cap are not slowdowns
}

TEST(GpuMonitor, UnknownDeviceIsUnavailableWithAReason) {
  // No GPU has this bus id; without NVML the reason names the library instead.
  jb::GpuMonitor m("ffff:ff:1f.7");
  EXPECT_FALSE(m.available());
  EXPECT_FALSE(m.why().empty());
  jb::GpuSample s;
  EXPECT_FALSE(m.sample(s));
  m.start();  // a no-op when unavailable
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(m.stop().samples, 0);
}

}  // namespace
