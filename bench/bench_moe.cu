// MoE / expert benchmarks at Jamba-v0.1 width (d 4096, I 14336, 16 experts, top-2, no
// renormalisation), performance-targets.md rows "MoE expert GEMM, decode ... W8A16" and
// "MoE / dense GEMM, prefill".
//
//   BM_ExpertsDecode/<int8|bf16>/T   the expert stage alone (gate/up + act + down, Gemv path) on
//       a routing computed once: GB/s over the weight bytes (+ scales) of the experts actually
//       touched, x_copy = that over the copy ceiling measured in this run (target >= 0.80 for
//       int8). CUDA graph of the stage's launches, replayed; the label is the variant that ran.
//       BM_ExpertsDecode/int8_<fma|mma>/T pins one int8 Gemv variant (Int8Gemv), the plain int8
//       rows take Auto. Long sweeps run under the GPU's power cap (see cuda/experts.cu): a row
//       run alone (--benchmark_filter) can measure faster than the same row in a sweep.
//   BM_MoeDecode/<int8|bf16>/T      the whole block (router, permute, gather, experts, combine)
//       as one CUDA graph (decode takes no host sync), same byte count.
//   BM_MoePrefill/<bf16|int8>/lanesN/T  the whole block at T = 1024 / 2048 / 4096 / 8192 tokens
//       (Gemm path, expert GEMMs on N concurrent lanes): TFLOP/s (2 * T * k * 3 * d * I), and
//       x_cublas = time of the same GEMMs done as two plain cuBLAS bf16 calls (bf16 in and out)
//       over all T*k rows, over our time (target >= 0.85 for bf16): the median of per-iteration
//       ratios, ours and the reference called in alternation (paired_event_loop; x_cublas_min the
//       lowest pair). bf16 rows at N = 1, 2, 4 (the default) and 8. On an H200 (2026-11-29,
//       power-capped at 700 W, SM clock 1.4-1.5 GHz in these rows) x_cublas at T = 4096 / 8192:
//       4 lanes 0.85 / 0.90, 2 lanes 0.85 / 0.89, 8 lanes 0.84 / 0.90, 1 lane 0.79 / 0.85.
//       Before the reference was paired it was timed after our loop and moved 645-735 TFLOP/s
//       between rows of one run.
//   BM_MoePrefill/bf16/grouped/T     the same block with the Gemm path's Grouped schedule
//       (GemmSchedule: one grouped cuBLAS call for every expert's gate/up, one SwiGLU pass over
//       all rows, one grouped call for every expert's down), same counters. Measured on an
//       H200 (2026-11-29, cuBLAS of CUDA 13.0): x_cublas 0.34 / 0.36 at T = 4096 / 8192 (12.3 /
//       24.0 ms against 4.9 / 9.4 ms for 4 lanes): rejected.
//   BM_MoePrefill/bf16/wgmma/T       the same block with our grouped TMA + wgmma GEMMs
//       (GemmSchedule::Wgmma, cuda/experts_wgmma.cu): two launches for every expert, SwiGLU in
//       the gate/up epilogue, no host sync; what Auto runs for bf16 on sm_90 since the swap-AB
//       tiles. H200, results/h200-2026-11-29j call 9, T = 1024 / 2048 / 4096 / 8192: x_cublas
//       0.68 / 0.86 / 0.88 / 0.92 (x_roofline 0.89 / 0.85 / 0.87 / 0.92) against 0.54 / 0.79 /
//       0.86 / 0.92 for 4 lanes in the same run; the expert stage alone (BM_ExpertsPrefill) 0.70
//       / 0.88 / 0.89 / 0.94 against 0.59 / 0.84 / 0.88 / 0.93.
//   BM_ExpertsPrefill/bf16/<lanes4|wgmma|grouped>/T  run_experts alone (Gemm path, the schedule
//       pinned) on a routing computed once, at T = 1024 / 2048 / 4096 / 8192: the same GEMMs,
//       reference and counters as BM_MoePrefill, so that the two families together split the gap to
//       cuBLAS into the expert stage and the rest of the block (router, permutation, gather,
//       combine). The cuBLAS schedules include the Gemm path's host read of the row counts (one
//       device->host copy and a stream sync per call); wgmma has none. H200, 2026-11-29, 4
//       lanes, T = 4096 / 8192: x_cublas 0.88 / 0.93 for the expert stage against 0.85 / 0.90 for
//       the whole block (same run): the router, permutation, gather and combine cost ~3.5% at T =
//       4096. With the tiled router and the 32-warp permutation (later run): experts 0.875 / 0.933,
//       whole block 0.857 / 0.909. T = 2048 (results/h200-2026-11-29h, call 3): expert stage 0.83
//       on 4 lanes, 0.73 on wgmma.
//   BM_MoeStages/T                   the four kernels around the experts, each alone, on the
//       routing of T = 1024 / 4096 / 8192 tokens computed once (bf16 layer): router_topk,
//       moe_permute, gather_rows, moe_combine, every call on the same inputs and outputs.
//       kStageCalls calls of one stage are captured as a CUDA graph and replayed between an event
//       pair (per-call time: the kernel plus the graph's launch gap, no host launch latency), the
//       four stages in turn within one iteration. Counters: router_us, permute_us, gather_us,
//       combine_us (medians over iterations), sum_us (the sum of the four medians; the row's
//       time is the per-iteration sum), gather_GB/s and combine_GB/s (row bytes read + written,
//       the copy ceiling's convention: 2 d per gathered row, (k + 1) d per combined token, 2 bytes
//       each) and their x_copy ratios. Inputs stay in the 50 MB L2 between calls for the smaller
//       T (x is 8 MB at T = 1024), so x_copy can pass 1 there. The Gemm path's host read of the
//       row counts is not in any stage: it is the rest of the gap between BM_MoePrefill and
//       BM_ExpertsPrefill. H200, 2026-11-29 (tiled router, 32-warp permutation), T = 4096:
//       router 29 us, permute 13, gather 31 (1.04x copy), combine 30 (0.80x copy), 103 in all;
//       T = 8192: 63 / 22 / 64 / 57 us. The previous router and permutation were not timed.
//
// Timing: CUDA events around each call (UseManualTime), warm-up first, median reported in the
// counters. Weights and activations are random (fill_normal), never zeros (METHOD.md). The
// weights of two experts (352 MB int8) exceed the 50 MB L2, so replays do not hit the cache.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "bench/common/ceilings.hpp"
#include "core/rng.hpp"
#include "cuda/common.cuh"
#include "cuda/experts.hpp"
#include "cuda/gemm.hpp"
#include "cuda/moe.hpp"
#include "cuda/quant_int8.hpp"
#include "cuda/random_init.hpp"

namespace {

using jb::cuda::bf16;
using jb::cuda::DeviceBuffer;

constexpr int64_t kD = 4096, kI = 14336, kE = 16, kMaxT = 8192;
constexpr int kTopK = 2;

struct JambaMoe {
  DeviceBuffer<bf16> router, gate_up, down, x, out;
  DeviceBuffer<int8_t> gate_up_q, down_q;
  DeviceBuffer<float> gate_up_scale, down_scale;
  jb::cuda::MoeLayer bf16_layer, int8_layer;
};

JambaMoe& jamba() {
  static std::unique_ptr<JambaMoe> m = [] {
    auto j = std::make_unique<JambaMoe>();
    const uint64_t seed = 17;
    const size_t n_gu = size_t(kE) * 2 * kI * kD, n_dn = size_t(kE) * kD * kI;
    j->router.alloc(size_t(kE) * kD);
    j->gate_up.alloc(n_gu);
    j->down.alloc(n_dn);
    j->x.alloc(size_t(kMaxT) * kD);
    j->out.alloc(size_t(kMaxT) * kD);
    jb::cuda::fill_normal(j->router.get(), j->router.size(), seed, jb::stream_id("bench.router"),
                          0.f, 0.02f);
    jb::cuda::fill_normal(j->gate_up.get(), n_gu, seed, jb::stream_id("bench.gate_up"), 0.f, 0.02f);
    jb::cuda::fill_normal(j->down.get(), n_dn, seed, jb::stream_id("bench.down"), 0.f, 0.02f);
    jb::cuda::fill_normal(j->x.get(), j->x.size(), seed, jb::stream_id("bench.x"), 0.f, 1.f);
    j->gate_up_q.alloc(n_gu);
    j->down_q.alloc(n_dn);
    j->gate_up_scale.alloc(size_t(kE) * 2 * kI);
    j->down_scale.alloc(size_t(kE) * kD);
    jb::cuda::quantize_int8(j->gate_up.get(), kE * 2 * kI, kD, j->gate_up_q.get(),
                            j->gate_up_scale.get());
    jb::cuda::quantize_int8(j->down.get(), kE * kD, kI, j->down_q.get(), j->down_scale.get());
    JB_CUDA(cudaDeviceSynchronize());
    for (jb::cuda::MoeLayer* l : {&j->bf16_layer, &j->int8_layer}) {
      l->router = j->router.get();
      l->top_k = kTopK;
      l->renormalize = false;
      l->experts.num_experts = kE;
      l->experts.d = kD;
      l->experts.inter = kI;
    }
    j->bf16_layer.experts.type = jb::cuda::WeightType::Bf16;
    j->bf16_layer.experts.gate_up = j->gate_up.get();
    j->bf16_layer.experts.down = j->down.get();
    j->int8_layer.experts.type = jb::cuda::WeightType::Int8;
    j->int8_layer.experts.gate_up_q = j->gate_up_q.get();
    j->int8_layer.experts.gate_up_scale = j->gate_up_scale.get();
    j->int8_layer.experts.down_q = j->down_q.get();
    j->int8_layer.experts.down_scale = j->down_scale.get();
    return j;
  }();
  return *m;
}

// Weight bytes one expert call reads: 3 d I weights, plus the fp32 scales for int8.
double expert_bytes(bool int8) {
  return int8 ? 3.0 * kD * kI + 4.0 * (2 * kI + kD) : 2.0 * 3.0 * kD * kI;
}

// Times fn with CUDA events on s (3 warm-up calls first); returns the median seconds.
template <class Fn>
double time_calls(benchmark::State& state, cudaStream_t s, Fn&& fn) {
  for (int i = 0; i < 3; ++i) fn();
  JB_CUDA(cudaStreamSynchronize(s));
  return jb::bench::median(jb::bench::event_timed_loop(
      state, [&](int) { fn(); }, s));
}

void set_bw_counters(benchmark::State& state, double bytes, double sec, int active) {
  const double gbs = sec > 0 ? bytes / sec / 1e9 : 0;
  const auto& ceil = jb::bench::ceilings();
  state.counters["us"] = sec * 1e6;
  state.counters["experts_touched"] = active;
  state.counters["weight_GB/s"] = gbs;
  state.counters["x_copy"] = ceil.copy_gbs() > 0 ? gbs / ceil.copy_gbs() : 0;
}

using jb::bench::CapturedGraph;
using jb::bench::Stream;

// A batch of T tokens routed once (decode, or a prefill for the expert stage alone): its
// workspace is filled by one moe_forward (so a later graph capture allocates nothing) and
// `active` counts the experts the routing touched.
struct RoutedSetup {
  const jb::cuda::MoeLayer& layer;
  Stream st;
  jb::cuda::MoeWorkspace ws;
  int active = 0;
  RoutedSetup(bool int8, int64_t T, jb::cuda::ExpertsPath path,
              jb::cuda::Int8Gemv variant = jb::cuda::Int8Gemv::Auto)
      : layer(int8 ? jamba().int8_layer : jamba().bf16_layer) {
    ws.experts.int8_gemv = variant;
    jb::cuda::moe_forward(layer, jamba().x.get(), T, jamba().out.get(), ws, path, st.s);
    JB_CUDA(cudaStreamSynchronize(st.s));
    active = ws.num_active.download()[0];
  }
  // The routed rows as run_experts takes them (a token picks an expert at most once).
  jb::cuda::ExpertGroups groups(int64_t T) const {
    jb::cuda::ExpertGroups g;
    g.offsets = ws.offsets.get();
    g.active = ws.active.get();
    g.num_active = ws.num_active.get();
    g.total_rows = T * kTopK;
    g.max_rows_per_expert = T;
    return g;
  }
};

void BM_ExpertsDecode(benchmark::State& state, bool int8, jb::cuda::Int8Gemv variant) {
  const int64_t T = state.range(0);
  // Routing, permutation and gathered rows once; then the expert stage alone.
  RoutedSetup d(int8, T, jb::cuda::ExpertsPath::Gemv, variant);
  const jb::cuda::ExpertGroups g = d.groups(T);
  std::string ran;
  const CapturedGraph graph(
      d.st.s,
      [&] {
        ran = jb::cuda::run_experts(d.layer.experts, g, d.ws.x_rows.get(), d.ws.y_rows.get(),
                                    jb::cuda::ExpertsPath::Gemv, d.ws.experts, d.st.s);
      },
      cudaStreamCaptureModeThreadLocal);
  const double sec = time_calls(state, d.st.s, [&] { graph.launch(d.st.s); });
  set_bw_counters(state, d.active * expert_bytes(int8), sec, d.active);
  state.SetLabel(ran);
}

void BM_MoeDecode(benchmark::State& state, bool int8) {
  JambaMoe& j = jamba();
  const int64_t T = state.range(0);
  RoutedSetup d(int8, T, jb::cuda::ExpertsPath::Auto);
  const CapturedGraph graph(
      d.st.s,
      [&] {
        jb::cuda::moe_forward(d.layer, j.x.get(), T, j.out.get(), d.ws, jb::cuda::ExpertsPath::Auto,
                              d.st.s);
      },
      cudaStreamCaptureModeThreadLocal);
  const double sec = time_calls(state, d.st.s, [&] { graph.launch(d.st.s); });
  set_bw_counters(state, d.active * expert_bytes(int8), sec, d.active);
}

// A Gemm-path schedule of the prefill rows: Lanes with a lane count, or Grouped.
struct PrefillSchedule {
  jb::cuda::GemmSchedule schedule = jb::cuda::GemmSchedule::Lanes;
  int lanes = jb::cuda::ExpertsWorkspace::kDefaultGemmLanes;
  std::string name() const {
    return schedule == jb::cuda::GemmSchedule::Lanes ? "lanes" + std::to_string(lanes)
                                                     : jb::cuda::gemm_schedule_name(schedule);
  }
  std::string label() const {
    return schedule == jb::cuda::GemmSchedule::Lanes
               ? "gemm_lanes=" + std::to_string(lanes)
               : "gemm_schedule=" + std::string(jb::cuda::gemm_schedule_name(schedule));
  }
  void apply(jb::cuda::ExpertsWorkspace& ws) const {
    ws.gemm_schedule = schedule;
    ws.gemm_lanes = lanes;
  }
};

// The reference of the prefill rows: the same GEMMs as two plain cuBLAS bf16 calls (bf16 in and
// out, fp32 accumulation, as the bf16 path's gate/up and down) over all M = T*k rows (expert 0's
// weights), on the gathered rows x_rows.
struct CublasPrefillReference {
  const bf16* x_rows;
  int64_t M;
  DeviceBuffer<bf16> gu, act, y;
  CublasPrefillReference(const bf16* x_rows_, int64_t M_)
      : x_rows(x_rows_), M(M_), gu(size_t(M_) * 2 * kI), act(size_t(M_) * kI), y(size_t(M_) * kD) {
    jb::cuda::fill_normal(act.get(), act.size(), 3, jb::stream_id("bench.act"), 0.f, 1.f);
  }
  void operator()(cudaStream_t s) const {
    jb::cuda::linear_bf16(x_rows, jamba().gate_up.get(), gu.get(), M, 2 * kI, kD, s);
    jb::cuda::linear_bf16(act.get(), jamba().down.get(), y.get(), M, kD, kI, s);
  }
};

// Times `call` against the reference in alternation (paired_event_loop, 3 warm-up pairs first)
// and sets the prefill counters: ms, TFLOP/s (2 * M * 3 * d * I), cublas_TFLOP/s, x_cublas (the
// median of the per-iteration ratios reference / ours, each pair run back to back),
// x_cublas_min (the lowest pair), x_gemm_ceiling, and the weight-streaming bound:
//   stream_ms   the weights (bf16, or int8 and scales) of the `active` experts plus the rows in
//               and out (x_rows, y_rows), read or written once at the run's copy ceiling. No
//               schedule can take less: the weights (352 MB per expert) do not fit in L2.
//   x_roofline  max(cuBLAS median, stream) / ours. The reference reads one expert's weights for
//               all M rows, so where stream > cuBLAS (T = 1024 at v0.1 width: 16 experts, 5.6
//               GB of weights for 0.72 TFLOP) x_cublas cannot reach 1 and x_roofline says how
//               far from the bound the schedule is.
template <class Call>
void time_against_cublas(benchmark::State& state, Call&& call, const CublasPrefillReference& ref,
                         int active, bool int8, cudaStream_t s) {
  auto reference = [&] { ref(s); };
  for (int i = 0; i < 3; ++i) call(), reference();
  JB_CUDA(cudaStreamSynchronize(s));
  const auto [ours_s, ref_s] = jb::bench::paired_event_loop(state, call, reference, s);
  std::vector<double> ratio;
  for (size_t i = 0; i < ours_s.size(); ++i) ratio.push_back(ref_s[i] / ours_s[i]);
  const double sec = jb::bench::median(ours_s);
  const double cublas_ms = jb::bench::median(ref_s) * 1e3;
  const double flops = 2.0 * ref.M * 3.0 * double(kD) * double(kI);
  const double tflops = sec > 0 ? flops / sec / 1e12 : 0;
  state.counters["ms"] = sec * 1e3;
  state.counters["TFLOP/s"] = tflops;
  state.counters["cublas_TFLOP/s"] = flops / (cublas_ms * 1e-3) / 1e12;
  state.counters["x_cublas"] = jb::bench::median(ratio);
  state.counters["x_cublas_min"] = *std::min_element(ratio.begin(), ratio.end());
  const auto& ceil = jb::bench::ceilings();
  state.counters["x_gemm_ceiling"] = ceil.gemm_tflops > 0 ? tflops / ceil.gemm_tflops : 0;
  const double stream_bytes = active * expert_bytes(int8) + 2.0 * ref.M * kD * 2.0;
  const double stream_s = ceil.copy_gbs() > 0 ? stream_bytes / (ceil.copy_gbs() * 1e9) : 0;
  state.counters["active_experts"] = active;
  state.counters["stream_ms"] = stream_s * 1e3;
  state.counters["x_roofline"] = sec > 0 ? std::max(cublas_ms * 1e-3, stream_s) / sec : 0;
}

// A pinned schedule that did not run (a fallback or a refusal) must not produce a row.
bool ran_as_pinned(benchmark::State& state, const PrefillSchedule& sched, bool int8,
                   const std::string& ran) {
  using jb::cuda::GemmSchedule;
  const std::string want = sched.schedule == GemmSchedule::Grouped ? "gemm_bf16_grouped"
                           : sched.schedule == GemmSchedule::Wgmma
                               ? "gemm_bf16_wgmma"
                               : (int8 ? "gemm_int8" : "gemm_bf16");
  if (ran == want) return true;
  state.SkipWithError(("ran " + ran + ", expected " + want).c_str());
  return false;
}

void BM_MoePrefill(benchmark::State& state, bool int8, PrefillSchedule sched) {
  JambaMoe& j = jamba();
  const int64_t T = state.range(0);
  const jb::cuda::MoeLayer& layer = int8 ? j.int8_layer : j.bf16_layer;
  Stream st;
  jb::cuda::MoeWorkspace ws;
  sched.apply(ws.experts);
  state.SetLabel(sched.label());
  std::string ran;
  auto call = [&] {
    ran = jb::cuda::moe_forward(layer, j.x.get(), T, j.out.get(), ws, jb::cuda::ExpertsPath::Auto,
                                st.s);
  };
  call();  // fills ws.x_rows for the reference and says which variant runs
  JB_CUDA(cudaStreamSynchronize(st.s));
  if (!ran_as_pinned(state, sched, int8, ran)) return;
  const CublasPrefillReference ref(ws.x_rows.get(), T * kTopK);
  time_against_cublas(state, call, ref, ws.num_active.download()[0], int8, st.s);
}

void BM_ExpertsPrefill(benchmark::State& state, PrefillSchedule sched) {
  const int64_t T = state.range(0);
  // Routing, permutation and gathered rows once; then the expert stage alone.
  RoutedSetup r(false, T, jb::cuda::ExpertsPath::Gemm);
  sched.apply(r.ws.experts);
  state.SetLabel(sched.label());
  const jb::cuda::ExpertGroups g = r.groups(T);
  std::string ran;
  auto call = [&] {
    ran = jb::cuda::run_experts(r.layer.experts, g, r.ws.x_rows.get(), r.ws.y_rows.get(),
                                jb::cuda::ExpertsPath::Gemm, r.ws.experts, r.st.s);
  };
  call();
  JB_CUDA(cudaStreamSynchronize(r.st.s));
  if (!ran_as_pinned(state, sched, false, ran)) return;
  const CublasPrefillReference ref(r.ws.x_rows.get(), T * kTopK);
  time_against_cublas(state, call, ref, r.active, false, r.st.s);
}

// Calls of one stage per captured graph in BM_MoeStages: the per-call time of a few-microsecond
// kernel then does not hinge on one event pair's resolution.
constexpr int kStageCalls = 20;

void BM_MoeStages(benchmark::State& state) {
  JambaMoe& j = jamba();
  const int64_t T = state.range(0), rows = T * kTopK;
  // Routing, permutation, gathered rows and expert outputs once (whole block, Gemm path); every
  // stage below then rewrites its own outputs with the same values.
  RoutedSetup r(false, T, jb::cuda::ExpertsPath::Auto);
  jb::cuda::MoeWorkspace& ws = r.ws;
  const cudaStream_t s = r.st.s;
  jb::cuda::MoePermutation perm;
  perm.offsets = ws.offsets.get();
  perm.active = ws.active.get();
  perm.num_active = ws.num_active.get();
  perm.perm_token = ws.perm_token.get();
  perm.slot_row = ws.slot_row.get();
  const char* names[] = {"router_us", "permute_us", "gather_us", "combine_us"};
  const std::function<void()> stages[] = {
      [&] {
        jb::cuda::router_topk(j.x.get(), r.layer.router, T, kD, kE, kTopK, r.layer.renormalize,
                              ws.topk_ids.get(), ws.topk_w.get(), s);
      },
      [&] { jb::cuda::moe_permute(ws.topk_ids.get(), T, kTopK, kE, perm, s); },
      [&] { jb::cuda::gather_rows(j.x.get(), ws.perm_token.get(), rows, kD, ws.x_rows.get(), s); },
      [&] {
        jb::cuda::moe_combine(ws.y_rows.get(), ws.topk_ids.get(), ws.topk_w.get(),
                              ws.slot_row.get(), T, kTopK, kD, j.out.get(), s);
      }};
  constexpr int kStages = 4;
  std::vector<std::unique_ptr<CapturedGraph>> graphs;
  std::vector<std::unique_ptr<jb::bench::EventTimer>> timers;
  for (const std::function<void()>& stage : stages) {
    graphs.push_back(std::make_unique<CapturedGraph>(
        s,
        [&stage] {
          for (int i = 0; i < kStageCalls; ++i) stage();
        },
        cudaStreamCaptureModeThreadLocal));
    timers.push_back(std::make_unique<jb::bench::EventTimer>(s));
  }
  for (const auto& g : graphs) g->launch(s);  // warm-up
  JB_CUDA(cudaStreamSynchronize(s));
  std::vector<double> secs[kStages];
  jb::GpuMonitor& monitor = jb::bench::gpu_monitor();
  monitor.start();
  for (auto _ : state) {
    for (int k = 0; k < kStages; ++k) {
      timers[k]->start();
      graphs[k]->launch(s);
      timers[k]->stop();
    }
    double iteration = 0;
    for (int k = 0; k < kStages; ++k) {
      secs[k].push_back(timers[k]->elapsed_ms() * 1e-3 / kStageCalls);
      iteration += secs[k].back();
    }
    state.SetIterationTime(iteration);
  }
  jb::bench::add_gpu_conditions(state, monitor.stop());
  double med[kStages], sum = 0;
  for (int k = 0; k < kStages; ++k) {
    med[k] = jb::bench::median(secs[k]);
    sum += med[k];
    state.counters[names[k]] = med[k] * 1e6;
  }
  state.counters["sum_us"] = sum * 1e6;
  const double row_bytes = double(kD) * sizeof(bf16);
  const double gather_gbs = med[2] > 0 ? 2.0 * rows * row_bytes / med[2] / 1e9 : 0;
  const double combine_gbs = med[3] > 0 ? (kTopK + 1.0) * T * row_bytes / med[3] / 1e9 : 0;
  const double copy = jb::bench::ceilings().copy_gbs();
  state.counters["gather_GB/s"] = gather_gbs;
  state.counters["combine_GB/s"] = combine_gbs;
  state.counters["gather_x_copy"] = copy > 0 ? gather_gbs / copy : 0;
  state.counters["combine_x_copy"] = copy > 0 ? combine_gbs / copy : 0;
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (!jb::cuda::device_available()) {
    std::fprintf(stderr, "bench_moe: no CUDA device available, nothing to run\n");
    return 0;
  }
  jb::bench::add_ceilings_to_context(jb::bench::ceilings());
  // The int8 Gemv variants one by one (int8_<variant>; the FMA one takes <= 8 rows per expert),
  // then what Auto picks for each weight type.
  using jb::cuda::Int8Gemv;
  for (Int8Gemv v : {Int8Gemv::Fma, Int8Gemv::Mma}) {
    auto* b = benchmark::RegisterBenchmark(
        ("BM_ExpertsDecode/int8_" + std::string(jb::cuda::int8_gemv_name(v))).c_str(),
        [v](benchmark::State& s) { BM_ExpertsDecode(s, true, v); });
    b->ArgName("T")->Arg(1)->Arg(2)->Arg(4)->Arg(8);
    if (v != Int8Gemv::Fma) b->Arg(12)->Arg(16);
    b->UseManualTime()->Unit(benchmark::kMicrosecond);
  }
  for (bool int8 : {true, false}) {
    const std::string w = int8 ? "int8" : "bf16";
    benchmark::RegisterBenchmark(
        ("BM_ExpertsDecode/" + w).c_str(),
        [int8](benchmark::State& s) { BM_ExpertsDecode(s, int8, Int8Gemv::Auto); })
        ->ArgName("T")
        ->Arg(1)
        ->Arg(2)
        ->Arg(4)
        ->Arg(8)
        ->Arg(12)  // two activation tiles of 8 with mostly <= 8 rows per expert
        ->Arg(16)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("BM_MoeDecode/" + w).c_str(),
                                 [int8](benchmark::State& s) { BM_MoeDecode(s, int8); })
        ->ArgName("T")
        ->Arg(1)
        ->Arg(4)
        ->Arg(16)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
  // Default lanes (concurrent expert GEMMs) and, for comparison, one lane (experts one after
  // another), other lane counts and the grouped schedule (bf16; a lane count equal to the
  // default is not registered twice).
  using jb::cuda::GemmSchedule;
  const int default_lanes = jb::cuda::ExpertsWorkspace::kDefaultGemmLanes;
  const auto lanes = [](int n) { return PrefillSchedule{GemmSchedule::Lanes, n}; };
  const PrefillSchedule grouped{GemmSchedule::Grouped, default_lanes};
  const PrefillSchedule wgmma{GemmSchedule::Wgmma, default_lanes};
  // Prefill rows: T = 1024, 2048, 4096 and 8192, 20 paired iterations each.
  const auto register_prefill = [](const std::string& name, auto fn) {
    benchmark::RegisterBenchmark(name.c_str(), fn)
        ->ArgName("T")
        ->Arg(1024)
        ->Arg(2048)
        ->Arg(4096)
        ->Arg(8192)
        ->UseManualTime()
        ->Iterations(20)
        ->Unit(benchmark::kMillisecond);
  };
  std::set<std::string> registered;
  for (auto [int8, sched] :
       {std::pair{false, lanes(default_lanes)}, std::pair{false, wgmma}, std::pair{false, grouped},
        std::pair{false, lanes(1)}, std::pair{false, lanes(2)}, std::pair{false, lanes(4)},
        std::pair{false, lanes(8)}, std::pair{true, lanes(default_lanes)}}) {
    const std::string w = std::string(int8 ? "int8" : "bf16") + "/" + sched.name();
    if (!registered.insert(w).second) continue;
    register_prefill("BM_MoePrefill/" + w, [int8 = int8, sched = sched](benchmark::State& s) {
      BM_MoePrefill(s, int8, sched);
    });
  }
  // The expert stage alone, bf16, the default lanes against our grouped wgmma GEMMs and the
  // grouped cuBLAS schedule.
  for (const PrefillSchedule& sched : {lanes(default_lanes), wgmma, grouped})
    register_prefill("BM_ExpertsPrefill/bf16/" + sched.name(),
                     [sched](benchmark::State& s) { BM_ExpertsPrefill(s, sched); });
  // The kernels around the experts, stage by stage (bf16 layer).
  benchmark::RegisterBenchmark("BM_MoeStages", BM_MoeStages)
      ->ArgName("T")
      ->Arg(1024)
      ->Arg(4096)
      ->Arg(8192)
      ->UseManualTime()
      ->Iterations(100)
      ->Unit(benchmark::kMicrosecond);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
