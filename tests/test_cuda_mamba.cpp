// GPU tests of the Mamba path: every non-big case of CONV1D, CONV1D_UPDATE, SSM_SCAN, SSM_UPDATE
// and MAMBA_LAYER through the compare runner (references, policy, determinism, guards), the
// GPU random fill against the host generator bit for bit, and the prefill(L) -> decode(n) ==
// prefill(L + n) handoff (ecosystem.md §1.8) on the GPU path.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "compare/ops/mamba_cases.hpp"
#include "compare/policy.hpp"
#include "compare/runner.hpp"
#include "core/bf16.hpp"
#include "core/rng.hpp"
#include "core/weights.hpp"
#include "cuda/causal_conv1d.hpp"
#include "cuda/common.cuh"
#include "cuda/mamba_layer.hpp"
#include "cuda/random_init.hpp"
#include "cuda/selective_scan.hpp"

namespace {

using jb::cmp::Case;
using jb::cuda::bf16;

class CudaMamba : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!jb::cuda::device_available())
      GTEST_SKIP() << "no CUDA device available: the Mamba GPU kernels are not tested here";
  }
};

// Host only: the scan's tile knob round-trips through its names; an unknown name is a usage
// error that lists every name.
TEST(ScanKnobs, TileNamesParse) {
  using jb::cuda::ScanTile;
  for (ScanTile t : {ScanTile::Auto, ScanTile::G4, ScanTile::WS})
    EXPECT_EQ(jb::cuda::parse_scan_tile(jb::cuda::scan_tile_name(t)), t);
  EXPECT_STREQ(jb::cuda::scan_tile_name(ScanTile::WS), "ws");
  EXPECT_EQ(jb::cuda::ScanArgs().tile, ScanTile::Auto);
  try {
    jb::cuda::parse_scan_tile("g8");
    FAIL() << "an unknown scan tile was accepted";
  } catch (const jb::Error& e) {
    EXPECT_EQ(e.kind(), jb::ErrorKind::Usage);
    EXPECT_NE(std::string(e.what()).find("unknown scan tile 'g8' (auto, g4, ws)"),
              std::string::npos)
        << e.what();
  }
}

// Host only: the conv prefill's time tiles. The H200 examples of causal_conv1d.cu (132 SMs x 4
// blocks = 528 slots; D = 8192 is 8 channel blocks of 1024), worked out by hand from the rule:
// two waves at 2K and 8K, four at 32K (128-token tiles), the 512-token cap's four waves at 128K
// and at B = 16, L = 8K.
TEST(ConvKnobs, TimeTileExamples) {
  EXPECT_EQ(jb::cuda::conv_time_tile(8, 2048, 528), 16);
  EXPECT_EQ(jb::cuda::conv_time_tile(8, 8192, 528), 64);
  EXPECT_EQ(jb::cuda::conv_time_tile(8, 32768, 528), 128);
  EXPECT_EQ(jb::cuda::conv_time_tile(8, 131072, 528), 504);
  EXPECT_EQ(jb::cuda::conv_time_tile(128, 8192, 528), 512);
  EXPECT_EQ(jb::cuda::conv_time_tile(8, 1, 528), 16);
}

// Host only: over strips, lengths up to the kernel's limit (512 x 65535 tokens) and slot counts,
// every tile is a multiple of 8 in [16, 512], a strip has at most 65535 tiles (gridDim.y), and
// a grid of tiles longer than the minimum fills at least one wave.
TEST(ConvKnobs, TimeTileInvariants) {
  for (int64_t rows : {1, 2, 3, 8, 16, 33, 128, 1024, 8192, 524280})
    for (int64_t L : {1, 2, 15, 16, 17, 100, 1000, 2048, 4097, 8192, 16384, 32768, 131072, 1 << 20,
                      512 * 65535})
      for (int64_t slots : {132, 456, 528, 1056, 2112}) {
        const int64_t tile = jb::cuda::conv_time_tile(rows, L, slots);
        const int64_t tiles = (L + tile - 1) / tile;
        SCOPED_TRACE("rows " + std::to_string(rows) + ", L " + std::to_string(L) + ", slots " +
                     std::to_string(slots) + ": tile " + std::to_string(tile));
        EXPECT_EQ(tile % 8, 0);
        EXPECT_GE(tile, 16);
        EXPECT_LE(tile, 512);
        EXPECT_LE(tiles, 65535);
        if (tile > 16) EXPECT_GE(rows * tiles, slots);
      }
}

void run_op_cases(const std::string& name) {
  const jb::cmp::OpInfo* op = jb::cmp::registry().find(name);
  ASSERT_NE(op, nullptr) << name << " is not registered";
  ASSERT_TRUE(static_cast<bool>(op->kernel)) << name << " has no kernel in this build";
  int ran = 0;
  for (const Case& c : op->cases()) {
    if (c.big()) continue;
    const jb::cmp::CaseResult r = jb::cmp::run_case(*op, c);
    ++ran;
    EXPECT_EQ(r.status, jb::cmp::Status::Pass)
        << c.str() << ": " << jb::cmp::status_name(r.status) << " (" << r.reason << "), variant "
        << r.variant << ", worst rel_l2 " << r.worst_rel_l2 << ", x R_lp " << r.worst_lp_ratio;
    EXPECT_TRUE(r.deterministic) << c.str();
    EXPECT_TRUE(r.guards_ok) << c.str();
  }
  EXPECT_GT(ran, 0);
}

TEST_F(CudaMamba, Conv1dCases) {
  run_op_cases("CONV1D");
}
TEST_F(CudaMamba, Conv1dUpdateCases) {
  run_op_cases("CONV1D_UPDATE");
}
TEST_F(CudaMamba, SsmScanCases) {
  run_op_cases("SSM_SCAN");
}
TEST_F(CudaMamba, SsmUpdateCases) {
  run_op_cases("SSM_UPDATE");
}
TEST_F(CudaMamba, MambaLayerCases) {
  run_op_cases("MAMBA_LAYER");
}

// The GPU fill (cuda/random_init) regenerates the host's values bit for bit, bf16 and fp32,
// normal and uniform, including an index offset.
TEST_F(CudaMamba, RandomInitMatchesHostBitForBit) {
  const size_t n = 100003;
  const uint64_t seed = 42, stream = jb::stream_id("model.layers.0.mamba.in_proj.weight");
  const uint64_t off = 12345;
  jb::cuda::DeviceBuffer<bf16> b(n);
  jb::cuda::DeviceBuffer<float> f(n);

  jb::cuda::fill_normal(b.get(), n, seed, stream, 0.0f, 0.02f, off);
  jb::cuda::fill_uniform(f.get(), n, seed, stream, -0.5f, 0.5f, off);
  JB_CUDA(cudaDeviceSynchronize());
  const std::vector<float> gb = jb::cuda::from_bf16(b.download());
  const std::vector<float> gf = f.download();
  size_t bad_b = 0, bad_f = 0;
  for (size_t i = 0; i < n; ++i) {
    const float hb = jb::round_bf16(jb::rng_normal(seed, stream, off + i, 0.0f, 0.02f));
    const float hf = jb::rng_uniform(seed, stream, off + i, -0.5f, 0.5f);
    bad_b += std::memcmp(&hb, &gb[i], 4) != 0;
    bad_f += std::memcmp(&hf, &gf[i], 4) != 0;
  }
  EXPECT_EQ(bad_b, 0u);
  EXPECT_EQ(bad_f, 0u);
  // Not all equal (a fill that wrote a constant would pass the checks above only by accident).
  EXPECT_NE(gb[0], gb[1]);

  jb::cuda::fill_normal(f.get(), n, seed, stream, 1.0f, 2.0f);
  jb::cuda::fill_uniform(b.get(), n, seed, stream, -3.0f, 3.0f);
  JB_CUDA(cudaDeviceSynchronize());
  const std::vector<float> gf2 = f.download();
  const std::vector<float> gb2 = jb::cuda::from_bf16(b.download());
  bad_b = bad_f = 0;
  for (size_t i = 0; i < n; ++i) {
    const float hf = jb::rng_normal(seed, stream, i, 1.0f, 2.0f);
    const float hb = jb::round_bf16(jb::rng_uniform(seed, stream, i, -3.0f, 3.0f));
    bad_b += std::memcmp(&hb, &gb2[i], 4) != 0;
    bad_f += std::memcmp(&hf, &gf2[i], 4) != 0;
  }
  EXPECT_EQ(bad_b, 0u);
  EXPECT_EQ(bad_f, 0u);
}

// fill_random_weight follows core/weights.hpp's random_weights rule for every kind of Mamba
// tensor (normal, uniform, constant on the GPU; dt bias and A_log computed on the host).
TEST_F(CudaMamba, RandomWeightRuleMatchesHost) {
  const jb::ModelConfig cfg =
      jb::cmp::mamba::layer_config(Case::parse("MAMBA_LAYER(d=64,L=1,seed=1)"));
  const int64_t Di = cfg.d_inner(), N = cfg.mamba_d_state, K = cfg.mamba_d_conv, d = 64;
  const std::pair<const char*, int64_t> tensors[] = {
      {"model.layers.0.mamba.in_proj.weight", 2 * Di * d},
      {"model.layers.0.mamba.conv1d.weight", Di * K},
      {"model.layers.0.mamba.dt_proj.bias", Di},
      {"model.layers.0.mamba.A_log", Di * N},
      {"model.layers.0.mamba.D", Di},
      {"model.layers.0.mamba.dt_layernorm.weight", (d + 15) / 16}};
  const uint64_t seed = 7;
  for (const auto& [name, n] : tensors) {
    const jb::InitRule rule = jb::random_init_rule(name, cfg);
    const uint64_t stream = jb::stream_id(name);
    jb::cuda::DeviceBuffer<float> f(static_cast<size_t>(n));
    jb::cuda::DeviceBuffer<bf16> b(static_cast<size_t>(n));
    jb::cuda::fill_random_weight(f.get(), f.size(), seed, stream, rule);
    jb::cuda::fill_random_weight(b.get(), b.size(), seed, stream, rule);
    JB_CUDA(cudaDeviceSynchronize());
    const std::vector<float> gf = f.download();
    const std::vector<float> gb = jb::cuda::from_bf16(b.download());
    size_t bad = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float hv = jb::random_init_value(rule, seed, stream, i);
      const float hb = jb::round_bf16(hv);
      bad += std::memcmp(&hv, &gf[i], 4) != 0;
      bad += std::memcmp(&hb, &gb[i], 4) != 0;
    }
    EXPECT_EQ(bad, 0u) << name;
  }
}

// prefill(L) then n decode steps, and chunked prefill (L1 then L - L1 tokens, then decode), must
// both match prefill(L + n) on the GPU: each is judged against the double reference of the
// single-shot prefill(L + n) with the policy (Scan kind: 3x the bf16 reference's own error),
// and the final states of the three paths agree to the same policy.
TEST_F(CudaMamba, PrefillThenDecodeEqualsLongerPrefill) {
  using namespace jb::cmp;
  const Case c = Case::parse("MAMBA_LAYER(d=128,B=2,L=45,n=6,seed=11)");
  const mamba::LayerInputs in = mamba::layer_inputs(c);
  const int64_t B = in.B, L = in.L, n = in.n, T = L + n, d = in.cfg.hidden_size;
  const int64_t L1 = 20;

  // References of the single-shot prefill over all L + n tokens.
  mamba::LayerInputs whole = in;
  whole.L = T;
  whole.n = 0;
  const Outputs truth = mamba::layer_reference(whole, Precision::Truth);
  const Outputs lp = mamba::layer_reference(whole, Precision::Bf16);

  const jb::cuda::MambaDims dims = jb::cuda::mamba_dims(in.cfg);
  jb::cuda::MambaHostWeights hw;
  hw.in_proj = in.in_proj;
  hw.conv_w = in.conv_w;
  hw.conv_b = in.conv_b;
  hw.x_proj = in.x_proj;
  hw.dt_proj = in.dt_proj;
  hw.dt_bias = in.dt_bias;
  hw.A_log = in.A_log;
  hw.D = in.D;
  hw.out_proj = in.out_proj;
  hw.dt_norm = in.dt_norm;
  hw.b_norm = in.b_norm;
  hw.c_norm = in.c_norm;
  const jb::cuda::MambaLayerWeights w = jb::cuda::upload_mamba_weights(hw, dims);
  jb::cuda::MambaWorkspace ws;

  // Tokens [t0, t1) of every sequence as a [B, t1 - t0, d] device tensor.
  auto slice = [&](int64_t t0, int64_t t1) {
    std::vector<float> v(static_cast<size_t>(B * (t1 - t0) * d));
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(&v[b * (t1 - t0) * d], &in.h[(b * T + t0) * d],
                  static_cast<size_t>((t1 - t0) * d) * sizeof(float));
    jb::cuda::DeviceBuffer<bf16> dbuf(v.size());
    dbuf.upload(jb::cuda::to_bf16(v));
    return dbuf;
  };
  // out [B, T, d] host; writes rows [t0, t1) from a device [B, t1 - t0, d].
  auto put = [&](std::vector<float>& out, const jb::cuda::DeviceBuffer<bf16>& o, int64_t t0,
                 int64_t t1) {
    const std::vector<float> h = jb::cuda::from_bf16(o.download());
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(&out[(b * T + t0) * d], &h[b * (t1 - t0) * d],
                  static_cast<size_t>((t1 - t0) * d) * sizeof(float));
  };
  auto prefill = [&](jb::cuda::MambaLayerState& st, std::vector<float>& out, int64_t t0,
                     int64_t t1) {
    jb::cuda::DeviceBuffer<bf16> x = slice(t0, t1), o(static_cast<size_t>(B * (t1 - t0) * d));
    jb::cuda::mamba_prefill(w, x.get(), o.get(), B, t1 - t0, st, ws);
    put(out, o, t0, t1);
  };
  auto decode = [&](jb::cuda::MambaLayerState& st, std::vector<float>& out, int64_t t) {
    jb::cuda::DeviceBuffer<bf16> x = slice(t, t + 1), o(static_cast<size_t>(B * d));
    jb::cuda::mamba_decode_step(w, x.get(), o.get(), st, ws);
    put(out, o, t, t + 1);
  };

  const size_t nout = static_cast<size_t>(B * T * d);
  std::vector<float> one(nout), split(nout), chunked(nout);
  jb::cuda::MambaLayerState s_one = jb::cuda::make_mamba_state(dims, B);
  jb::cuda::MambaLayerState s_split = jb::cuda::make_mamba_state(dims, B);
  jb::cuda::MambaLayerState s_chunk = jb::cuda::make_mamba_state(dims, B);
  prefill(s_one, one, 0, T);
  prefill(s_split, split, 0, L);
  for (int64_t t = L; t < T; ++t) decode(s_split, split, t);
  prefill(s_chunk, chunked, 0, L1);
  prefill(s_chunk, chunked, L1, L);
  for (int64_t t = L; t < T; ++t) decode(s_chunk, chunked, t);
  JB_CUDA(cudaDeviceSynchronize());

  const Metrics lp_out = compute_metrics(lp[0].values, truth[0].values);
  for (const auto* k : {&one, &split, &chunked}) {
    const Metrics m = compute_metrics(*k, truth[0].values);
    const Verdict v = judge(Path::Bf16, CheckKind::Scan, m, lp_out, T);
    EXPECT_TRUE(v.pass) << (k == &one     ? "prefill(L+n)"
                            : k == &split ? "prefill(L)+decode(n)"
                                          : "chunked prefill+decode")
                        << ": rel_l2 " << m.rel_l2 << " vs R_lp " << lp_out.rel_l2 << ", max_abs "
                        << m.max_abs << (v.failures.empty() ? "" : ": " + v.failures[0]);
  }
  // The decode rows specifically (a handoff bug would show only there).
  std::vector<float> dec_truth, dec_split;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = L; t < T; ++t)
      for (int64_t j = 0; j < d; ++j) {
        dec_truth.push_back(truth[0].values[(b * T + t) * d + j]);
        dec_split.push_back(split[(b * T + t) * d + j]);
      }
  EXPECT_LT(compute_metrics(dec_split, dec_truth).rel_l2, 1e-2);

  // Final states: all three GPU paths against the truth's final state.
  const std::vector<float>& ssm_truth = truth[2].values;  // prefill_out, conv_state, ssm_state
  ASSERT_EQ(truth[2].name, "ssm_state");
  const Metrics lp_ssm = compute_metrics(lp[2].values, ssm_truth);
  for (jb::cuda::MambaLayerState* s : {&s_one, &s_split, &s_chunk}) {
    const Metrics m = compute_metrics(s->ssm.download(), ssm_truth);
    const Verdict v = judge(Path::Bf16, CheckKind::State, m, lp_ssm, T);
    EXPECT_TRUE(v.pass) << "ssm_state rel_l2 " << m.rel_l2 << " vs R_lp " << lp_ssm.rel_l2;
    // The conv state holds copies of the bf16 in_proj outputs: same policy against the truth.
    const std::vector<float> conv = jb::cuda::from_bf16(s->conv.download());
    const Metrics mc = compute_metrics(conv, truth[1].values);
    const Verdict vc =
        judge(Path::Bf16, CheckKind::State, mc, compute_metrics(lp[1].values, truth[1].values), T);
    EXPECT_TRUE(vc.pass) << "conv_state rel_l2 " << mc.rel_l2;
  }
}

}  // namespace
