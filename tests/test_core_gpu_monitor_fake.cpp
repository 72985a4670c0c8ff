// core/gpu_monitor against a fake NVML library (tests/fake/fake_nvml.cpp): loading by path,
// device lookup, one sample, and the sampling thread's summary. A separate executable from
// test_core_gpu_monitor: the library is loaded once per process, before any test runs.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "core/gpu_monitor.hpp"

namespace {

class FakeNvml : public ::testing::Environment {
 public:
  void SetUp() override { setenv("JB_NVML_LIBRARY", JB_FAKE_NVML, 1); }
};
const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new FakeNvml);

TEST(GpuMonitorFake, UnknownBusIdIsUnavailable) {
  jb::GpuMonitor m("0000:02:00.0");
  EXPECT_FALSE(m.available());
  EXPECT_NE(m.why().find("Not Found"), std::string::npos) << m.why();
}

TEST(GpuMonitorFake, SamplesTheDevice) {
  jb::GpuMonitor m("0000:01:00.0", std::chrono::milliseconds(1));
  ASSERT_TRUE(m.available()) << m.why();
  jb::GpuSample s;
  ASSERT_TRUE(m.sample(s));
  EXPECT_EQ(s.mem_mhz, 3201u);
  EXPECT_DOUBLE_EQ(s.watts, 700.0);
  m.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  const jb::GpuConditions c = m.stop();
  ASSERT_GE(c.samples, 6);
  EXPECT_EQ(c.sm_mhz_min, 1470u);
  EXPECT_EQ(c.sm_mhz_max, 1980u);
  EXPECT_EQ(c.mem_mhz_min, 3201u);
  EXPECT_DOUBLE_EQ(c.watts_max, 700.0);
  // Every second reasons query reports the power cap: about half of the samples.
  EXPECT_GT(c.power_cap_fraction, 0.3);
  EXPECT_LT(c.power_cap_fraction, 0.7);
  EXPECT_EQ(c.slowdown_fraction, 0.0);
  // A second, immediate run starts from no samples: it holds at most the one or two it took.
  m.start();
  EXPECT_LT(m.stop().samples, c.samples);
}

}  // namespace
