// Kernel benchmarks of the Mamba path at Jamba-v0.1 widths (d_inner 8192, d_state 16, d_conv 4),
// shapes and peers from performance-targets.md:
//   scan      B=1 L=2K/8K/32K/128K, B=16 L=8K, every variant (auto, single, chunked) and the
//             single pass pinned to each block organisation (g4, ws)
//   conv      the same shapes; also x_copy_same_bytes: against a cudaMemcpy of the same bytes,
//             called back-to-back the same number of times (the job-size ceiling); and
//             B=1 L=2K/8K without the SiLU (a diagnostic: H200, 2026-11-29, 27.2 / 81.2 us
//             against 28.4 / 79.3 us with it, so the short shapes are not held back by the
//             arithmetic)
//   update    selective state update and conv update at B=1/16/64/256, inside a CUDA graph
//             (kGraphLaunches launches captured, the replay time / kGraphLaunches)
//   layer     the whole Mamba mixer: prefill L=2048 (B=1) and one decode step (B=1, 16)
// Each benchmark reports GB/s over the bytes it must move, x_copy (fraction of the copy
// bandwidth measured at start-up in this run, bench/common/ceilings), and where a peer number
// exists speedup_vs_mamba_ssm = peer time / our time. The peers (mamba-ssm, causal-conv1d) are
// not installable on the GPU machine; their H100 times are constants taken from
// performance-targets.md (label "peer time (H100, performance-targets.md)").
//
// Timing: CUDA events around each iteration (UseManualTime), 5 repetitions, median reported
// (plus median_us over all iterations). Every row has a fixed iteration count: the manual time
// of a conv or graph-replay iteration is per call, while its wall time is n calls (up to 20
// conv launches, 50 graph calls), so Google Benchmark's default of 0.5 s of manual time per
// repetition meant up to 50 x that in wall time (by that arithmetic ~27 s per repetition of
// state_update at B = 1, 2.7 us per call; on 2026-11-29 a 60 s bench call ended inside that
// row, after three scan rows). Inputs are random (cuda/random_init, never zeros), and rotated
// among several copies when one set fits in L2.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "bench/common/ceilings.hpp"
#include "core/rng.hpp"
#include "cuda/causal_conv1d.hpp"
#include "cuda/common.cuh"
#include "cuda/mamba_layer.hpp"
#include "cuda/random_init.hpp"
#include "cuda/selective_scan.hpp"
#include "cuda/selective_state_update.hpp"

namespace {

using jb::cuda::bf16;
using jb::cuda::DeviceBuffer;

constexpr int64_t kDi = 8192, kN = 16, kK = 4, kR = 256, kD = 4096;
constexpr int kGraphLaunches = 50;
// Iterations of the rows whose iteration is several calls (conv, graph replays): 100 event
// pairs, i.e. 100-2000 conv launches or 5000 graph calls per repetition.
constexpr int kCallRowIterations = 100;
constexpr uint64_t kSeed = 2024;

// ---- peers (performance-targets.md, "Kernel peers", measured on one H100 80GB HBM3) --------
double peer_scan_ms(int64_t B, int64_t L) {  // mamba-ssm selective_scan_fwd
  if (B == 1 && L == 2048) return 0.305;
  if (B == 1 && L == 8192) return 1.48;
  if (B == 1 && L == 32768) return 6.11;
  if (B == 1 && L == 131072) return 23.6;
  if (B == 16 && L == 8192) return 21.3;
  return 0;
}
double peer_update_us(int64_t B) {  // mamba-ssm selective_state_update (Triton), in a graph
  switch (B) {
    case 1:
      return 2.69;
    case 16:
      return 8.65;
    case 64:
      return 27.3;
    case 256:
      return 100.6;
    default:
      return 0;
  }
}
double peer_conv_update_us(int64_t B) {  // causal-conv1d causal_conv1d_update, in a graph
  switch (B) {
    case 1:
      return 3.06;
    case 16:
      return 4.55;
    case 64:
      return 9.39;
    case 256:
      return 28.3;
    default:
      return 0;
  }
}

void fill(DeviceBuffer<bf16>& b, const char* name, float mean, float std) {
  jb::cuda::fill_normal(b.get(), b.size(), kSeed, jb::stream_id(name), mean, std);
}
void fill(DeviceBuffer<float>& b, const char* name, float mean, float std) {
  jb::cuda::fill_normal(b.get(), b.size(), kSeed, jb::stream_id(name), mean, std);
}

// How many copies of a working set of `bytes` to rotate so repeated runs do not hit in L2.
int rotation_sets(double bytes) {
  const double l2 = static_cast<double>(jb::bench::l2_bytes());
  if (bytes >= 2.0 * l2) return 1;
  return std::min(64, static_cast<int>(4.0 * l2 / std::max(bytes, 1.0)) + 1);
}

// Counters shared by every benchmark. bytes and peer_s are per iteration (one kernel call).
void set_counters(benchmark::State& st, double bytes, double peer_s,
                  const std::vector<double>& iter_s, const std::string& variant) {
  const double copy = jb::bench::ceilings().copy_gbs();
  using C = benchmark::Counter;
  st.counters["GB/s"] = C(bytes / 1e9, C::kIsIterationInvariantRate);
  if (copy > 0) st.counters["x_copy"] = C(bytes / 1e9 / copy, C::kIsIterationInvariantRate);
  if (peer_s > 0) {
    st.counters["speedup_vs_mamba_ssm"] = C(peer_s, C::kIsIterationInvariantRate);
    st.counters["peer_us"] = peer_s * 1e6;
  }
  std::vector<double> v = iter_s;
  st.counters["median_us"] = jb::bench::median(v) * 1e6;
  std::string label = variant;
  if (peer_s > 0) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "%speer time (H100, performance-targets.md) %.2f us",
                  label.empty() ? "" : "; ", peer_s * 1e6);
    label += buf;
  }
  st.SetLabel(label);
}

// ---- selective scan --------------------------------------------------------------------------

struct ScanSet {
  DeviceBuffer<bf16> u, dt, xz, xdbl, y;  // z in the second half of xz; B, C in x_proj layout
};

void BM_Scan(benchmark::State& st, int64_t B, int64_t L, jb::cuda::ScanVariant variant,
             jb::cuda::ScanTile tile) {
  const int64_t T = B * L;
  const double bytes = 4.0 * T * kDi * 2 + 2.0 * T * kN * 2 + 2.0 * B * kDi * kN * 4;
  const int sets = rotation_sets(bytes);
  std::vector<std::unique_ptr<ScanSet>> s;
  for (int i = 0; i < sets; ++i) {
    auto p = std::make_unique<ScanSet>();
    p->u.alloc(T * kDi);
    p->dt.alloc(T * kDi);
    p->xz.alloc(T * 2 * kDi);
    p->xdbl.alloc(T * (kR + 2 * kN));
    p->y.alloc(T * kDi);
    fill(p->u, "bench.scan.u", 0, 1);
    fill(p->dt, "bench.scan.dt", 0, 0.25f);
    fill(p->xz, "bench.scan.xz", 0, 1);
    fill(p->xdbl, "bench.scan.xdbl", 0, 1);
    s.push_back(std::move(p));
  }
  DeviceBuffer<float> dt_bias(kDi), A_log(kDi * kN), Dsk(kDi), state(B * kDi * kN);
  jb::cuda::fill_uniform(dt_bias.get(), kDi, kSeed, jb::stream_id("bench.scan.dt_bias"), -6.9f,
                         -2.25f);  // softplus^-1 of [1e-3, 1e-1]
  jb::cuda::fill_uniform(A_log.get(), kDi * kN, kSeed, jb::stream_id("bench.scan.A_log"), 0.0f,
                         2.77f);  // A in [-16, -1]
  fill(Dsk, "bench.scan.D", 1, 0.1f);
  fill(state, "bench.scan.state", 0, 0.5f);
  jb::cuda::ScanArgs a;
  a.batch = B;
  a.seqlen = L;
  a.dim = kDi;
  a.dstate = kN;
  a.dt_bias = dt_bias.get();
  a.A_log = A_log.get();
  a.D_skip = Dsk.get();
  a.B_row_stride = a.C_row_stride = kR + 2 * kN;
  a.z_row_stride = 2 * kDi;
  a.ssm_state_in = state.get();
  a.ssm_state_out = state.get();
  a.variant = variant;
  a.tile = tile;
  DeviceBuffer<unsigned char> ws(std::max<size_t>(1, jb::cuda::selective_scan_workspace_bytes(a)));
  a.workspace = ws.get();
  a.workspace_bytes = ws.size();
  auto bind = [&](const ScanSet& p) {
    a.u = p.u.get();
    a.dt = p.dt.get();
    a.z = p.xz.get() + kDi;
    a.B = p.xdbl.get() + kR;
    a.C = p.xdbl.get() + kR + kN;
    a.y = p.y.get();
  };
  bind(*s[0]);
  std::string v = jb::cuda::selective_scan_fwd(a);  // warm-up (and the variant name)
  JB_CUDA(cudaDeviceSynchronize());
  const std::vector<double> times = jb::bench::event_timed_loop(st, [&](int i) {
    bind(*s[i % sets]);
    jb::cuda::selective_scan_fwd(a);
  });
  set_counters(st, bytes, peer_scan_ms(B, L) * 1e-3, times, v);
}

// ---- causal conv1d prefill ------------------------------------------------------------------

// Launches timed back-to-back between one pair of events, per iteration: enough for ~300 us of
// work, at most 20. The job is 64 MB at B=1 L=2K (~15 us at copy speed), and one launch between
// two events also timed the host's launch gap (a few us, ~20%), whereas the peers' numbers
// (causal-conv1d) come from back-to-back launches; after the first launch the queue stays ahead
// of the GPU, so the gap is divided by n (19 launches at 2K: ~1%). Large shapes keep one launch
// per iteration (4 GB at L=128K: ~1 ms): each iteration's wall time is n x the reported time.
// The time reported is elapsed / n; the copy ceiling is measured as before.
int conv_launches(double bytes) {
  const double copy = jb::bench::ceilings().copy_gbs();
  if (copy <= 0) return 20;
  const double est_s = bytes / (copy * 1e9);
  return std::clamp(static_cast<int>(300e-6 / est_s) + 1, 1, 20);
}

void BM_Conv(benchmark::State& st, int64_t B, int64_t L, bool strided, bool silu) {
  const int64_t T = B * L;
  const int64_t xs = strided ? 2 * kDi : kDi;
  const double bytes = 2.0 * T * kDi * 2;  // read x once, write y once
  const int sets = rotation_sets(bytes);
  std::vector<DeviceBuffer<bf16>> x(sets), y(sets);
  for (int i = 0; i < sets; ++i) {
    x[i].alloc(T * xs);
    y[i].alloc(T * kDi);
    fill(x[i], "bench.conv.x", 0, 1);
  }
  DeviceBuffer<float> w(kDi * kK), bias(kDi);
  jb::cuda::fill_uniform(w.get(), w.size(), kSeed, jb::stream_id("bench.conv.w"), -0.5f, 0.5f);
  jb::cuda::fill_uniform(bias.get(), bias.size(), kSeed, jb::stream_id("bench.conv.b"), -0.5f,
                         0.5f);
  DeviceBuffer<bf16> cs(B * kDi * kK);
  fill(cs, "bench.conv.state", 0, 1);
  jb::cuda::Conv1dArgs a;
  a.batch = B;
  a.seqlen = L;
  a.dim = kDi;
  a.width = kK;
  a.x_row_stride = xs;
  a.weight = w.get();
  a.bias = bias.get();
  a.conv_state_in = cs.get();
  a.conv_state_out = cs.get();
  a.silu = silu;
  a.x = x[0].get();
  a.y = y[0].get();
  std::string v = jb::cuda::causal_conv1d_fwd(a);
  JB_CUDA(cudaDeviceSynchronize());
  const int launches = conv_launches(bytes);
  const std::vector<double> times = jb::bench::event_timed_loop(
      st,
      [&](int i) {  // rotating sets: consecutive launches miss in L2
        a.x = x[i % sets].get();
        a.y = y[i % sets].get();
        jb::cuda::causal_conv1d_fwd(a);
      },
      nullptr, launches);
  set_counters(st, bytes, 0, times,
               v + (strided ? ", x in in_proj layout" : "") + (silu ? "" : ", no SiLU") + ", " +
                   std::to_string(launches) +
                   (launches == 1 ? " launch per event pair" : " launches back-to-back"));
  // A second ceiling at this job's size: cudaMemcpyAsync of the same bytes (T x D bf16 read and
  // written) over the same rotating sets, the same number of calls back-to-back between two
  // events. The 1 GB copy of the run's ceiling has no per-launch ramp-up and tail; at B=1 L=2K
  // (64 MB, ~15 us) those are a visible part of any kernel's time, the copy's included.
  const size_t copy_bytes = static_cast<size_t>(T * kDi) * sizeof(bf16);
  int call = 0;
  const double copy_ms = jb::bench::median_ms(
      [&] {
        for (int k = 0; k < launches; ++k, ++call)
          JB_CUDA(cudaMemcpyAsync(y[call % sets].get(), x[call % sets].get(), copy_bytes,
                                  cudaMemcpyDeviceToDevice, nullptr));
      },
      20);
  const double copy_same_gbs = bytes / (copy_ms * 1e-3 / launches) / 1e9;
  st.counters["copy_same_bytes_GB/s"] = copy_same_gbs;
  st.counters["x_copy_same_bytes"] =
      copy_same_gbs > 0 ? bytes / (jb::bench::median(times) * 1e9) / copy_same_gbs : 0;
}

// ---- decode kernels inside a CUDA graph -------------------------------------------------------

// Captures kGraphLaunches calls of launch(i) (i rotates over the input sets) and times replays.
template <class F>
void time_graph(benchmark::State& st, F launch, std::vector<double>& times) {
  const jb::bench::Stream s;
  const jb::bench::CapturedGraph graph(s.s, [&] {
    for (int i = 0; i < kGraphLaunches; ++i) launch(i, s.s);
  });
  graph.launch(s.s);  // warm-up
  JB_CUDA(cudaStreamSynchronize(s.s));
  jb::bench::EventTimer timer(s.s);
  for (auto _ : st) {
    timer.start();
    graph.launch(s.s);
    timer.stop();
    const double sec = timer.elapsed_ms() * 1e-3 / kGraphLaunches;
    times.push_back(sec);
    st.SetIterationTime(sec);
  }
}

struct UpdateSet {
  DeviceBuffer<bf16> xz, xc, dt, xdbl, y;
  DeviceBuffer<float> state;
};

void BM_StateUpdate(benchmark::State& st, int64_t B) {
  const double bytes = 2.0 * B * kDi * kN * 4 + 4.0 * B * kDi * 2 + 2.0 * B * kN * 2;
  const int sets = rotation_sets(bytes);
  std::vector<std::unique_ptr<UpdateSet>> s;
  for (int i = 0; i < sets; ++i) {
    auto p = std::make_unique<UpdateSet>();
    p->xz.alloc(B * 2 * kDi);
    p->xc.alloc(B * kDi);
    p->dt.alloc(B * kDi);
    p->xdbl.alloc(B * (kR + 2 * kN));
    p->y.alloc(B * kDi);
    p->state.alloc(B * kDi * kN);
    fill(p->xz, "bench.su.xz", 0, 1);
    fill(p->xc, "bench.su.x", 0, 1);
    fill(p->dt, "bench.su.dt", 0, 0.25f);
    fill(p->xdbl, "bench.su.xdbl", 0, 1);
    fill(p->state, "bench.su.state", 0, 0.5f);
    s.push_back(std::move(p));
  }
  DeviceBuffer<float> dt_bias(kDi), A_log(kDi * kN), Dsk(kDi);
  jb::cuda::fill_uniform(dt_bias.get(), kDi, kSeed, jb::stream_id("bench.su.dt_bias"), -6.9f,
                         -2.25f);
  jb::cuda::fill_uniform(A_log.get(), kDi * kN, kSeed, jb::stream_id("bench.su.A_log"), 0.0f,
                         2.77f);
  fill(Dsk, "bench.su.D", 1, 0.1f);
  const char* variant = "";
  auto launch = [&](int i, cudaStream_t stream) {
    const UpdateSet& p = *s[i % sets];
    jb::cuda::StateUpdateArgs a;
    a.batch = B;
    a.dim = kDi;
    a.dstate = kN;
    a.x = p.xc.get();
    a.dt = p.dt.get();
    a.dt_bias = dt_bias.get();
    a.A_log = A_log.get();
    a.B = p.xdbl.get() + kR;
    a.B_row_stride = kR + 2 * kN;
    a.C = p.xdbl.get() + kR + kN;
    a.C_row_stride = kR + 2 * kN;
    a.D_skip = Dsk.get();
    a.z = p.xz.get() + kDi;
    a.z_row_stride = 2 * kDi;
    a.state = p.state.get();
    a.y = p.y.get();
    variant = jb::cuda::selective_state_update(a, stream);
  };
  std::vector<double> times;
  time_graph(st, launch, times);
  set_counters(st, bytes, peer_update_us(B) * 1e-6, times,
               std::string(variant) + ", CUDA graph of " + std::to_string(kGraphLaunches));
}

void BM_ConvUpdate(benchmark::State& st, int64_t B) {
  const double bytes = 2.0 * B * kDi * kK * 2 + 2.0 * B * kDi * 2;
  const int sets = rotation_sets(bytes);
  std::vector<DeviceBuffer<bf16>> xz(sets), y(sets), cs(sets);
  for (int i = 0; i < sets; ++i) {
    xz[i].alloc(B * 2 * kDi);
    y[i].alloc(B * kDi);
    cs[i].alloc(B * kDi * kK);
    fill(xz[i], "bench.cu.xz", 0, 1);
    fill(cs[i], "bench.cu.state", 0, 1);
  }
  DeviceBuffer<float> w(kDi * kK), bias(kDi);
  jb::cuda::fill_uniform(w.get(), w.size(), kSeed, jb::stream_id("bench.cu.w"), -0.5f, 0.5f);
  jb::cuda::fill_uniform(bias.get(), bias.size(), kSeed, jb::stream_id("bench.cu.b"), -0.5f, 0.5f);
  auto launch = [&](int i, cudaStream_t stream) {
    jb::cuda::Conv1dUpdateArgs a;
    a.batch = B;
    a.dim = kDi;
    a.width = kK;
    a.x = xz[i % sets].get();
    a.x_row_stride = 2 * kDi;
    a.weight = w.get();
    a.bias = bias.get();
    a.conv_state = cs[i % sets].get();
    a.y = y[i % sets].get();
    jb::cuda::causal_conv1d_update(a, stream);
  };
  std::vector<double> times;
  time_graph(st, launch, times);
  set_counters(st, bytes, peer_conv_update_us(B) * 1e-6, times,
               "CUDA graph of " + std::to_string(kGraphLaunches));
}

// ---- whole Mamba mixer (v0.1 width, random weights generated on the GPU) --------------------

jb::cuda::MambaLayerWeights random_layer() {
  jb::cuda::MambaLayerWeights w;
  jb::cuda::MambaDims& m = w.dims;
  m.d_model = kD;
  m.d_inner = kDi;
  m.d_state = kN;
  m.d_conv = kK;
  m.dt_rank = kR;
  auto mat = [](DeviceBuffer<bf16>& b, int64_t n, const char* name, float std) {
    b.alloc(n);
    fill(b, name, 0, std);
  };
  mat(w.in_proj, 2 * kDi * kD, "bench.layer.in_proj", 0.02f);
  mat(w.x_proj, (kR + 2 * kN) * kDi, "bench.layer.x_proj", 0.02f);
  mat(w.dt_proj, kDi * kR, "bench.layer.dt_proj", 0.06f);
  mat(w.out_proj, kD * kDi, "bench.layer.out_proj", 0.02f);
  mat(w.dt_norm, kR, "bench.layer.dt_norm", 1.0f);
  mat(w.b_norm, kN, "bench.layer.b_norm", 1.0f);
  mat(w.c_norm, kN, "bench.layer.c_norm", 1.0f);
  w.conv_w.alloc(kDi * kK);
  w.conv_b.alloc(kDi);
  w.dt_bias.alloc(kDi);
  w.A_log.alloc(kDi * kN);
  w.D.alloc(kDi);
  jb::cuda::fill_uniform(w.conv_w.get(), w.conv_w.size(), kSeed, 1, -0.5f, 0.5f);
  jb::cuda::fill_uniform(w.conv_b.get(), w.conv_b.size(), kSeed, 2, -0.5f, 0.5f);
  jb::cuda::fill_uniform(w.dt_bias.get(), kDi, kSeed, 3, -6.9f, -2.25f);
  jb::cuda::fill_uniform(w.A_log.get(), kDi * kN, kSeed, 4, 0.0f, 2.77f);
  jb::cuda::fill_constant(w.D.get(), kDi, 1.0f);
  return w;
}

void BM_LayerPrefill(benchmark::State& st, int64_t B, int64_t L) {
  const jb::cuda::MambaLayerWeights w = random_layer();
  jb::cuda::MambaLayerState state = jb::cuda::make_mamba_state(w.dims, B);
  jb::cuda::MambaWorkspace ws;
  DeviceBuffer<bf16> h(B * L * kD), out(B * L * kD);
  fill(h, "bench.layer.h", 0, 1);
  std::string v = jb::cuda::mamba_prefill(w, h.get(), out.get(), B, L, state, ws);
  JB_CUDA(cudaDeviceSynchronize());
  const std::vector<double> times = jb::bench::event_timed_loop(
      st, [&](int) { jb::cuda::mamba_prefill(w, h.get(), out.get(), B, L, state, ws); });
  const double weight_bytes = 2.0 * (2 * kDi * kD + (kR + 2 * kN) * kDi + kDi * kR + kD * kDi);
  set_counters(st, weight_bytes + 2.0 * B * L * (kD * 2 + kDi * 8), 0, times, "scan " + v);
  st.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(B * L), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_LayerDecode(benchmark::State& st, int64_t B) {
  const jb::cuda::MambaLayerWeights w = random_layer();
  jb::cuda::MambaLayerState state = jb::cuda::make_mamba_state(w.dims, B);
  jb::cuda::MambaWorkspace ws;
  DeviceBuffer<bf16> h(B * kD), out(B * kD);
  fill(h, "bench.layer.h1", 0, 1);
  auto launch = [&](int, cudaStream_t s) {
    jb::cuda::mamba_decode_step(w, h.get(), out.get(), state, ws, s);
  };
  ws.reserve(w.dims, B);
  std::vector<double> times;
  time_graph(st, launch, times);
  // Roofline bytes: every weight once + the states read and written.
  const double weight_bytes = 2.0 * (2 * kDi * kD + (kR + 2 * kN) * kDi + kDi * kR + kD * kDi);
  set_counters(st, weight_bytes + 2.0 * B * kDi * (kN * 4 + kK * 2), 0, times,
               "cuBLAS + kernels, CUDA graph of " + std::to_string(kGraphLaunches));
}

void register_all() {
  using jb::cuda::ScanTile;
  using jb::cuda::ScanVariant;
  // A jb::Error (out of memory, unsupported shape) skips that benchmark with the message
  // instead of ending the whole run.
  auto reg = [](const std::string& name, auto fn) {
    auto safe = [fn](benchmark::State& st) {
      try {
        fn(st);
      } catch (const std::exception& e) {
        st.SkipWithError(e.what());
      }
    };
    return benchmark::RegisterBenchmark(name.c_str(), safe)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond)
        ->Repetitions(5)
        ->ReportAggregatesOnly(true);
  };
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {1, 2048}, {1, 8192}, {1, 32768}, {1, 131072}, {16, 8192}};
  const std::pair<ScanVariant, const char*> variants[] = {{ScanVariant::Auto, "auto"},
                                                          {ScanVariant::SinglePass, "single"},
                                                          {ScanVariant::Chunked, "chunked"}};
  // Every shape with auto, single and chunked (tile auto), then single pinned to each tile.
  const std::pair<ScanTile, const char*> tiles[] = {{ScanTile::G4, "single/g4"},
                                                    {ScanTile::WS, "single/ws"}};
  auto reg_scan = [&](int64_t B, int64_t L, ScanVariant v, ScanTile t, const char* name) {
    reg("scan/D=8192/N=16/B=" + std::to_string(B) + "/L=" + std::to_string(L) + "/" + name,
        [B, L, v, t](benchmark::State& st) { BM_Scan(st, B, L, v, t); })
        ->Iterations(L >= 131072 || B >= 16 ? 5 : 20);
  };
  for (auto [B, L] : shapes) {
    for (auto [v, vn] : variants) reg_scan(B, L, v, ScanTile::Auto, vn);
    for (auto [t, tn] : tiles) reg_scan(B, L, ScanVariant::SinglePass, t, tn);
  }
  for (auto [B, L] : shapes)
    for (bool strided : {false, true})
      reg("conv/D=8192/K=4/B=" + std::to_string(B) + "/L=" + std::to_string(L) +
              (strided ? "/x_stride=2D" : ""),
          [B = B, L = L, strided](benchmark::State& st) { BM_Conv(st, B, L, strided, true); })
          ->Iterations(kCallRowIterations);
  // Diagnostic: the same conv without its SiLU (two MUFU ops per element), to separate the
  // arithmetic's share of the short-L shapes from the memory system's.
  for (int64_t L : {2048, 8192})
    reg("conv/D=8192/K=4/B=1/L=" + std::to_string(L) + "/no_silu", [L](benchmark::State& st) {
      BM_Conv(st, 1, L, false, false);
    })->Iterations(kCallRowIterations);
  for (int64_t B : {1, 16, 64, 256}) {
    reg("state_update/D=8192/N=16/B=" + std::to_string(B), [B](benchmark::State& st) {
      BM_StateUpdate(st, B);
    })->Iterations(kCallRowIterations);
    reg("conv_update/D=8192/K=4/B=" + std::to_string(B), [B](benchmark::State& st) {
      BM_ConvUpdate(st, B);
    })->Iterations(kCallRowIterations);
  }
  reg("layer_prefill/v0.1/B=1/L=2048", [](benchmark::State& st) {
    BM_LayerPrefill(st, 1, 2048);
  })->Iterations(10);
  for (int64_t B : {1, 16})
    reg("layer_decode/v0.1/B=" + std::to_string(B), [B](benchmark::State& st) {
      BM_LayerDecode(st, B);
    })->Iterations(kCallRowIterations);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (!jb::cuda::device_available()) {
    std::fprintf(stderr, "bench_mamba: no CUDA device available, nothing to run\n");
    return 0;
  }
  try {
    const jb::bench::Ceilings& c = jb::bench::ceilings();
    jb::bench::add_ceilings_to_context(c);
    register_all();
    benchmark::RunSpecifiedBenchmarks();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_mamba: %s\n", e.what());
    return 1;
  }
  benchmark::Shutdown();
  return 0;
}
