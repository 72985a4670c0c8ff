// Attention kernel benchmarks (performance-targets.md, attention rows): causal GQA prefill
// TFLOP/s (2*2*H*L^2*hd/2 FLOPs) at B=1, H=32:8, hd=128, L = 2K/8K/32K for each tensor-core
// variant (mma64, mma128, mma128r32, wgmma),
// and split-KV decode KV GB/s (B*L*Hkv*hd*2*2 bytes / time) at B=1, L = 8K/32K/128K and B=16,
// L=8K: Auto (rows attn_decode/.../L<L>, labelled with the kernel that ran) and each kernel
// on its own (rows .../L<L>/fma and .../L<L>/mma; filter: 'attn_decode/.*/(fma|mma)/').
// Ratios to the ceilings measured in the same run (bench/common/ceilings.hpp) and to torch
// SDPA timed in the same run by tools/peer_sdpa.py (with --peer or JB_PEER=1), once before our
// rows and once after; the summary's ratio is against the faster of the two.
//
//   build-gpu/bench/bench_attention --peer --benchmark_min_time=0.5
//
// Timing: CUDA events around each call (UseManualTime), warm-up first; decode is also timed as
// a replayed CUDA graph of 20 calls (graph_* counters: how the engine runs decode); decode rotates
// among several caches when one fits in L2 (never timing the cache); inputs are N(0,1) drawn on the
// device from core/rng.hpp (never zeros).
#include <benchmark/benchmark.h>

#include <unistd.h>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/common/ceilings.hpp"
#include "core/bf16.hpp"
#include "core/rng.hpp"
#include "cuda/attention.hpp"
#include "cuda/common.cuh"
#include "cuda/kv_cache.hpp"

namespace {

using jb::cuda::bf16;

constexpr int kH = 32, kHkv = 8, kHd = 128;

__global__ void fill_normal_kernel(bf16* p, size_t n, uint64_t seed, uint64_t stream) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) p[i] = __float2bfloat16_rn(jb::rng_normal(seed, stream, i));
}

void fill_normal(bf16* p, size_t n, uint64_t seed, const char* name) {
  fill_normal_kernel<<<static_cast<unsigned>((n + 255) / 256), 256>>>(p, n, seed,
                                                                      jb::stream_id(name));
  JB_LAUNCH("fill_normal_kernel");
}

// Results of our kernels (median ms per shape key), for the final table.
std::map<std::string, double>& our_ms() {
  static std::map<std::string, double> m;
  return m;
}

struct Peer {
  bool ran = false;
  std::string why_not;
  nlohmann::json doc;
};
// SDPA is timed twice, before our rows (its process has a cool GPU to itself) and after them
// (the GPU as warm as at our last rows: at L = 32K both sit at the 700 W cap, where the SM
// clock depends on temperature and recent load). Ratios are taken against the faster of the two.
Peer& peer(int when = 0) {  // 0: before our rows, 1: after
  static Peer p[2];
  return p[when];
}

double prefill_flops(int L) {
  return 2.0 * 2.0 * kH * double(L) * L * kHd / 2.0;
}
double decode_bytes(int B, int L) {
  return double(B) * L * kHkv * kHd * 2.0 * 2.0;
}

void BM_Prefill(benchmark::State& state, int L, jb::cuda::PrefillVariant variant) {
  const int64_t qd = int64_t(kH) * kHd;
  jb::cuda::DeviceBuffer<bf16> q(static_cast<size_t>(L * qd)), out(static_cast<size_t>(L * qd));
  jb::cuda::KvCache cache(1, L, kHkv, kHd);
  fill_normal(q.get(), q.size(), 1, "bench.q");
  const size_t kv_elems = size_t(L) * kHkv * kHd;
  fill_normal(cache.view().k, kv_elems, 1, "bench.k");
  fill_normal(cache.view().v, kv_elems, 1, "bench.v");
  jb::cuda::SeqBatchBuffer seqs;
  seqs.set({L}, {0});
  jb::cuda::PrefillArgs a;
  a.q = q.get();
  a.q_stride = qd;
  a.out = out.get();
  a.out_stride = qd;
  a.num_heads = kH;
  a.kv = cache.view();
  a.seqs = seqs.view();
  std::string ran;
  for (int i = 0; i < 2; ++i) ran = jb::cuda::attention_prefill(a, variant);
  JB_CUDA(cudaDeviceSynchronize());
  const double ms = 1e3 * jb::bench::median(jb::bench::event_timed_loop(
                              state, [&](int) { jb::cuda::attention_prefill(a, variant); }));
  const double tflops = prefill_flops(L) / (ms * 1e-3) / 1e12;
  state.counters["TFLOP/s"] = tflops;
  const auto& ceil = jb::bench::ceilings();
  state.counters["x_gemm"] = ceil.gemm_tflops > 0 ? tflops * 1e12 / (ceil.gemm_tflops * 1e12) : 0;
  state.SetLabel(ran);
  const std::string key = "prefill L=" + std::to_string(L) + " " + ran;
  our_ms()[key] = ms;
}

constexpr int kDecodeGraphCalls = 20;

// Median over 10 replays of a graph of kDecodeGraphCalls decode calls (call i on cache set
// i % sets), in ms per call.
template <class ArgsFor>
double decode_graph_ms(int sets, ArgsFor args_for, jb::cuda::DecodeWorkspace& ws,
                       jb::cuda::DecodeVariant variant) {
  const jb::bench::Stream s;
  const jb::bench::CapturedGraph graph(s.s, [&] {
    for (int i = 0; i < kDecodeGraphCalls; ++i)
      jb::cuda::attention_decode(args_for(i % sets), ws, variant, s.s);
  });
  return jb::bench::median_ms([&] { graph.launch(s.s); }, 10, 1, s.s) / kDecodeGraphCalls;
}

// Our-results key of a decode row: "decode B=.. L=.." for Auto (the summary's main line), with
// " fma" / " mma" appended for the explicit-kernel rows, and "decode graph ..." for the graph
// timing of the same row.
std::string decode_key(const char* what, int B, int L, jb::cuda::DecodeVariant v) {
  std::string k = std::string(what) + " B=" + std::to_string(B) + " L=" + std::to_string(L);
  if (v != jb::cuda::DecodeVariant::Auto) k += std::string(" ") + jb::cuda::decode_variant_name(v);
  return k;
}

void BM_Decode(benchmark::State& state, int B, int L, jb::cuda::DecodeVariant variant) {
  const int64_t qd = int64_t(kH) * kHd;
  const double bytes = decode_bytes(B, L);
  const double l2 = static_cast<double>(jb::bench::l2_bytes());
  // Enough caches that the rotation's footprint is at least twice L2.
  const int sets = bytes < 2 * l2 ? static_cast<int>(2 * l2 / bytes) + 2 : 1;
  std::vector<std::unique_ptr<jb::cuda::KvCache>> caches;
  for (int s = 0; s < sets; ++s) {
    caches.push_back(std::make_unique<jb::cuda::KvCache>(B, L, kHkv, kHd));
    const size_t n = size_t(B) * kHkv * L * kHd;
    fill_normal(caches.back()->view().k, n, 10 + s, "bench.k");
    fill_normal(caches.back()->view().v, n, 10 + s, "bench.v");
    caches.back()->set_lengths(std::vector<int>(B, L));
  }
  jb::cuda::DeviceBuffer<bf16> q(static_cast<size_t>(B * qd)), out(static_cast<size_t>(B * qd));
  fill_normal(q.get(), q.size(), 2, "bench.q");
  jb::cuda::DecodeWorkspace ws;
  const int splits = jb::cuda::decode_num_splits(B, kH, kHkv, kHd, L, variant);
  jb::cuda::decode_workspace_init(ws, B, kH, kHkv, kHd, splits);
  auto args_for = [&](int s) {
    jb::cuda::DecodeArgs a;
    a.q = q.get();
    a.q_stride = qd;
    a.out = out.get();
    a.out_stride = qd;
    a.num_heads = kH;
    a.kv = caches[s]->view();
    a.kv_len = caches[s]->device_lengths();
    a.max_kv_len = L;
    return a;
  };
  std::string ran;
  for (int s = 0; s < sets; ++s) ran = jb::cuda::attention_decode(args_for(s), ws, variant);
  JB_CUDA(cudaDeviceSynchronize());
  const double ms = 1e3 * jb::bench::median(jb::bench::event_timed_loop(state, [&](int i) {
                      jb::cuda::attention_decode(args_for(i % sets), ws, variant);
                    }));
  const double gbs = bytes / (ms * 1e-3) / 1e9;
  // The engine replays decode steps as CUDA graphs: the same calls (rotating caches) captured
  // kDecodeGraphCalls at a time, replayed, time / calls. No host launch gap between calls; the
  // single-call figure above has one (as the SDPA peer's timing does).
  const double graph_ms = decode_graph_ms(sets, args_for, ws, variant);
  const double graph_gbs = bytes / (graph_ms * 1e-3) / 1e9;
  const double copy = jb::bench::ceilings().copy_gbs();
  state.counters["KV_GB/s"] = gbs;
  state.counters["x_copy"] = copy > 0 ? gbs / copy : 0;
  state.counters["graph_KV_GB/s"] = graph_gbs;
  state.counters["graph_x_copy"] = copy > 0 ? graph_gbs / copy : 0;
  // The split count the launches ran (whole tiles per split can leave fewer than requested).
  state.counters["splits"] = jb::cuda::decode_split(L, splits, ws.max_splits).splits;
  state.SetLabel(ran + " rotate=" + std::to_string(sets) + "; graph_* = CUDA graph of " +
                 std::to_string(kDecodeGraphCalls) + " calls");
  our_ms()[decode_key("decode", B, L, variant)] = ms;
  our_ms()[decode_key("decode graph", B, L, variant)] = graph_ms;
}

std::string exe_dir() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  buf[n] = 0;
  std::string p(buf);
  return p.substr(0, p.find_last_of('/'));
}

void run_peer(const std::vector<int>& prefill_L, const std::vector<std::pair<int, int>>& dec,
              Peer& p) {
  std::string script;
  const char* env_script = std::getenv("JB_PEER_SCRIPT");
  std::vector<std::string> candidates;
  if (env_script) candidates.push_back(env_script);
  candidates.push_back("tools/peer_sdpa.py");
  candidates.push_back(exe_dir() + "/../../tools/peer_sdpa.py");
  for (const auto& c : candidates)
    if (access(c.c_str(), R_OK) == 0) {
      script = c;
      break;
    }
  if (script.empty()) {
    p.why_not = "tools/peer_sdpa.py not found (set JB_PEER_SCRIPT)";
    return;
  }
  if (std::system("python3 -c 'import torch' >/dev/null 2>&1") != 0) {
    p.why_not = "python3 with torch not found";
    return;
  }
  std::string pl, dl;
  for (int L : prefill_L) pl += (pl.empty() ? "" : ",") + std::to_string(L);
  for (const auto& bl : dec)
    dl += (dl.empty() ? "" : ",") + std::to_string(bl.first) + ":" + std::to_string(bl.second);
  const std::string cmd = "python3 " + script + " --H " + std::to_string(kH) + " --Hkv " +
                          std::to_string(kHkv) + " --hd " + std::to_string(kHd) + " --prefill " +
                          pl + " --decode " + dl;
  std::fprintf(stderr, "peer: %s\n", cmd.c_str());
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) {
    p.why_not = "popen failed";
    return;
  }
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  const int rc = pclose(f);
  const size_t brace = text.find('{');
  if (rc != 0 || brace == std::string::npos) {
    p.why_not = "peer exited with status " + std::to_string(rc);
    return;
  }
  try {
    p.doc = nlohmann::json::parse(text.substr(brace));
  } catch (const std::exception& e) {
    p.why_not = std::string("peer output is not JSON: ") + e.what();
    return;
  }
  if (p.doc.contains("error")) {
    p.why_not = p.doc["error"].get<std::string>();
    return;
  }
  p.ran = true;
}

// One peer run's time for a shape (0: not run or not measured).
double peer_ms_of(const Peer& p, const char* section, int B, int L) {
  if (!p.ran) return 0;
  for (const auto& e : p.doc[section])
    if (e.value("L", 0) == L && (B == 0 || e.value("B", 0) == B) && e.contains("ms"))
      return e["ms"].get<double>();
  return 0;
}

// The faster of the two peer runs (0 when neither measured the shape).
double peer_best_ms(const char* section, int B, int L) {
  const double a = peer_ms_of(peer(0), section, B, L), b = peer_ms_of(peer(1), section, B, L);
  return a > 0 && b > 0 ? std::min(a, b) : std::max(a, b);
}

double peer_prefill_ms(int L) {
  return peer_best_ms("prefill", 0, L);
}

double peer_decode_ms(int B, int L) {
  return peer_best_ms("decode", B, L);
}

void print_table(const std::vector<int>& prefill_L, const std::vector<std::pair<int, int>>& dec) {
  const auto& ceil = jb::bench::ceilings();
  std::printf("\nattention summary (%s; GEMM ceiling %.0f TFLOP/s, copy ceiling %.0f GB/s)\n",
              ceil.device.c_str(), ceil.gemm_tflops, ceil.copy_gbs());
  for (int w = 0; w < 2; ++w)
    if (!peer(w).ran)
      std::printf("peer %s our rows: not run (%s)\n", w == 0 ? "before" : "after",
                  peer(w).why_not.c_str());
  std::printf("SDPA: the faster of its runs before and after our rows (both: lines 'SDPA ...')\n");
  std::printf("%-34s %12s %12s %8s  %s\n", "shape", "ours", "SDPA", "ratio", "target");
  for (int L : prefill_L) {
    // Best of our prefill variants at this length.
    double best = 0;
    std::string which;
    for (const auto& [k, ms] : our_ms())
      if (k.rfind("prefill L=" + std::to_string(L) + " ", 0) == 0 && (best == 0 || ms < best)) {
        best = ms;
        which = k.substr(k.find_last_of(' ') + 1);
      }
    if (best == 0) continue;
    const double ours = prefill_flops(L) / (best * 1e-3) / 1e12;
    const double pm = peer_prefill_ms(L);
    const double theirs = pm > 0 ? prefill_flops(L) / (pm * 1e-3) / 1e12 : 0;
    char shape[64];
    std::snprintf(shape, sizeof shape, "prefill 32:8 hd128 L=%d (%s)", L, which.c_str());
    std::printf("%-34s %8.0f TF/s %7.0f TF/s %8.2f  %s\n", shape, ours, theirs,
                theirs > 0 ? ours / theirs : 0.0, L >= 8192 ? ">= 1.0x SDPA" : "(report)");
    const double before = peer_ms_of(peer(0), "prefill", 0, L);
    const double after = peer_ms_of(peer(1), "prefill", 0, L);
    if (before > 0 && after > 0)
      std::printf("  SDPA before / after our rows: %.0f / %.0f TF/s\n",
                  prefill_flops(L) / (before * 1e-3) / 1e12,
                  prefill_flops(L) / (after * 1e-3) / 1e12);
  }
  for (const auto& [B, L] : dec) {
    const double pm = peer_decode_ms(B, L);
    const double theirs = pm > 0 ? decode_bytes(B, L) / (pm * 1e-3) / 1e9 : 0;
    const char* target = B == 1 ? ">= 2400 GB/s (80% of copy)" : "(report)";
    // Auto (the main line, with SDPA), then each kernel's own rows when they ran.
    for (auto v : {jb::cuda::DecodeVariant::Auto, jb::cuda::DecodeVariant::Fma,
                   jb::cuda::DecodeVariant::Mma}) {
      const auto it = our_ms().find(decode_key("decode", B, L, v));
      if (it == our_ms().end()) continue;
      const double ours = decode_bytes(B, L) / (it->second * 1e-3) / 1e9;
      char shape[64];
      if (v == jb::cuda::DecodeVariant::Auto)
        std::snprintf(shape, sizeof shape, "decode 32:8 hd128 B=%d L=%d", B, L);
      else
        std::snprintf(shape, sizeof shape, "  %s kernel", jb::cuda::decode_variant_name(v));
      std::printf("%-34s %8.0f GB/s %7.0f GB/s %8.2f  %s\n", shape, ours, theirs,
                  theirs > 0 ? ours / theirs : 0.0, target);
      const auto g = our_ms().find(decode_key("decode graph", B, L, v));
      if (g != our_ms().end()) {
        std::snprintf(shape, sizeof shape, "  %s, in a CUDA graph",
                      v == jb::cuda::DecodeVariant::Auto ? "same" : "same kernel");
        const double gg = decode_bytes(B, L) / (g->second * 1e-3) / 1e9;
        std::printf("%-34s %8.0f GB/s %12s %8.2f  %s\n", shape, gg, "-",
                    theirs > 0 ? gg / theirs : 0.0, target);
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool want_peer = false;
  if (const char* e = std::getenv("JB_PEER")) want_peer = std::strcmp(e, "1") == 0;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--peer") == 0) {
      want_peer = true;
      continue;
    }
    args.push_back(argv[i]);
  }
  int n_args = static_cast<int>(args.size());
  benchmark::Initialize(&n_args, args.data());
  if (!jb::cuda::device_available()) {
    std::printf("bench_attention: no CUDA device, nothing to run\n");
    return 0;
  }
  const std::vector<int> prefill_L = {2048, 8192, 32768};
  const std::vector<std::pair<int, int>> dec = {{1, 8192}, {1, 32768}, {1, 131072}, {16, 8192}};
  if (want_peer)
    run_peer(prefill_L, dec, peer(0));  // before our runs: the peer's process owns the GPU alone
  else
    peer(0).why_not = peer(1).why_not = "pass --peer or set JB_PEER=1";
  jb::bench::add_ceilings_to_context(jb::bench::ceilings());

  for (int L : prefill_L)
    for (auto v : {jb::cuda::PrefillVariant::Mma64, jb::cuda::PrefillVariant::Mma128,
                   jb::cuda::PrefillVariant::Mma128R32, jb::cuda::PrefillVariant::Wgmma})
      benchmark::RegisterBenchmark(("attn_prefill/H32:8/hd128/L" + std::to_string(L) + "/" +
                                    jb::cuda::prefill_variant_name(v))
                                       .c_str(),
                                   [L, v](benchmark::State& st) { BM_Prefill(st, L, v); })
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
  // Auto rows (names unchanged since before the variant knob), then each kernel on its own.
  for (auto v :
       {jb::cuda::DecodeVariant::Auto, jb::cuda::DecodeVariant::Fma, jb::cuda::DecodeVariant::Mma})
    for (const auto& [B, L] : dec) {
      std::string name = "attn_decode/H32:8/hd128/B" + std::to_string(B) + "/L" + std::to_string(L);
      if (v != jb::cuda::DecodeVariant::Auto)
        name += std::string("/") + jb::cuda::decode_variant_name(v);
      benchmark::RegisterBenchmark(
          name.c_str(), [B = B, L = L, v](benchmark::State& st) { BM_Decode(st, B, L, v); })
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    }
  benchmark::RunSpecifiedBenchmarks();
  if (want_peer) run_peer(prefill_L, dec, peer(1));  // with the GPU as warm as our last rows
  print_table(prefill_L, dec);
  benchmark::Shutdown();
  return 0;
}
