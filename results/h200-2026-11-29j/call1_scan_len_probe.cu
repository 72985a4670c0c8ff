// Probe (not landed): scan time vs L at B=1 D=8192 N=16, to split fixed cost and per-step cost.
#include <algorithm>
#include <cstdio>
#include <vector>
#include "core/rng.hpp"
#include "cuda/common.cuh"
#include "cuda/random_init.hpp"
#include "cuda/selective_scan.hpp"
using namespace jb::cuda;
int main() {
  const int64_t D = 8192, N = 16, Lmax = 8192, R = 256;
  DeviceBuffer<bf16> u(Lmax * D), dt(Lmax * D), xz(Lmax * 2 * D), xdbl(Lmax * (R + 2 * N)),
      y(Lmax * D);
  DeviceBuffer<float> bias(D), A_log(D * N), Dsk(D), st(D * N);
  fill_normal(u.get(), u.size(), 1, 1, 0, 1);
  fill_normal(dt.get(), dt.size(), 1, 2, 0, 0.25f);
  fill_normal(xz.get(), xz.size(), 1, 3, 0, 1);
  fill_normal(xdbl.get(), xdbl.size(), 1, 4, 0, 1);
  fill_uniform(bias.get(), D, 1, 5, -6.9f, -2.25f);
  fill_uniform(A_log.get(), D * N, 1, 6, 0.0f, 2.77f);
  fill_normal(Dsk.get(), D, 1, 7, 1, 0.1f);
  fill_normal(st.get(), D * N, 1, 8, 0, 0.5f);
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  for (int64_t L : {32, 64, 128, 256, 512, 1024, 2048, 4096, 8192}) {
    ScanArgs a;
    a.batch = 1;
    a.seqlen = L;
    a.dim = D;
    a.dstate = N;
    a.u = u.get();
    a.dt = dt.get();
    a.dt_bias = bias.get();
    a.A_log = A_log.get();
    a.B = xdbl.get() + R;
    a.C = xdbl.get() + R + N;
    a.B_row_stride = a.C_row_stride = R + 2 * N;
    a.D_skip = Dsk.get();
    a.z = xz.get() + D;
    a.z_row_stride = 2 * D;
    a.ssm_state_in = st.get();
    a.ssm_state_out = st.get();
    a.y = y.get();
    a.variant = ScanVariant::SinglePass;
    std::string v = selective_scan_fwd(a);
    cudaDeviceSynchronize();
    std::vector<float> t;
    for (int i = 0; i < 60; ++i) {
      cudaEventRecord(e0);
      selective_scan_fwd(a);
      cudaEventRecord(e1);
      cudaEventSynchronize(e1);
      float ms;
      cudaEventElapsedTime(&ms, e0, e1);
      t.push_back(ms * 1000);
    }
    // back-to-back: 20 launches between one pair of events
    cudaEventRecord(e0);
    for (int i = 0; i < 20; ++i) selective_scan_fwd(a);
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float ms;
    cudaEventElapsedTime(&ms, e0, e1);
    std::sort(t.begin(), t.end());
    std::printf(
        "L=%6lld %-12s median %8.2f us  min %8.2f  back-to-back %8.2f us/call  ns/step %.1f\n",
        (long long)L, v.c_str(), t[t.size() / 2], t[0], ms * 1000 / 20, t[t.size() / 2] * 1000 / L);
  }
  return 0;
}
