// MLP / MoE family: registry cases through the compare runner (GPU), the quantiser bitwise
// against the reference, the permutation against a host counting sort, the embedding's bounds
// check, and CPU-side checks of the constructed routing inputs (ties, one expert, empty expert).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "compare/registry.hpp"
#include "compare/runner.hpp"
#include "core/bf16.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "cuda/common.cuh"
#include "cuda/embedding.hpp"
#include "cuda/experts.hpp"
#include "cuda/moe.hpp"
#include "cuda/quant_int8.hpp"
#include "reference/quant_int8.hpp"

namespace {

using jb::cmp::Case;
using jb::cmp::Precision;

#define SKIP_WITHOUT_GPU()                                                         \
  do {                                                                             \
    if (!jb::cuda::device_available()) GTEST_SKIP() << "no CUDA device available"; \
  } while (0)

// Runs every non-big case of `op` through the runner and expects a pass.
void run_op(const std::string& op) {
  SKIP_WITHOUT_GPU();
  jb::cmp::Selection sel;
  sel.ops = {op};
  sel.quick = true;  // big=1 cases (Jamba widths) are for `jambench compare` on the GPU machine
  const auto cases = jb::cmp::select_cases(jb::cmp::registry(), sel);
  ASSERT_FALSE(cases.empty()) << op << " has no non-big cases";
  for (const auto& [info, c] : cases) {
    const jb::cmp::CaseResult r = jb::cmp::run_case(*info, c);
    std::string detail = r.reason;
    for (const auto& t : r.tensors)
      for (const auto& f : t.verdict.failures) detail += " | " + t.name + ": " + f;
    EXPECT_EQ(r.status, jb::cmp::Status::Pass)
        << c.str() << " variant=" << r.variant << " worst_rel_l2=" << r.worst_rel_l2
        << " lp_ratio=" << r.worst_lp_ratio << " : " << detail;
    EXPECT_TRUE(r.deterministic) << c.str();
    EXPECT_TRUE(r.guards_ok) << c.str();
  }
}

TEST(CudaMoe, RouterTopkCases) {
  run_op("ROUTER_TOPK");
}
TEST(CudaMoe, MoeCases) {
  run_op("MOE");
}
TEST(CudaMoe, MlpCases) {
  run_op("MLP");
}
TEST(CudaMoe, ExpertInt8Cases) {
  run_op("EXPERT_INT8");
}
TEST(CudaMoe, QuantInt8Cases) {
  run_op("QUANT_INT8");
}
TEST(CudaMoe, EmbeddingCases) {
  run_op("EMBEDDING");
}
TEST(CudaMoe, LmHeadCases) {
  run_op("LM_HEAD");
}

const jb::cmp::OpInfo& op(const std::string& name) {
  const jb::cmp::OpInfo* o = jb::cmp::registry().find(name);
  if (!o) throw std::runtime_error("op " + name + " not registered");
  return *o;
}

// ---- CPU-side checks of the constructed inputs (run without a GPU too) ----

TEST(MoeInputs, TieCaseResolvesToLowerIndex) {
  // Three identical router rows {2, 5, 9} on top: the rule must give 2, then 5, for every token,
  // in the truth and in the bf16 emulation.
  for (int k : {1, 2}) {
    const Case c = Case::parse("ROUTER_TOPK(T=64,d=100,E=16,k=" + std::to_string(k) +
                               ",renorm=0,route=tie,seed=3)");
    for (Precision p : {Precision::Truth, Precision::Bf16}) {
      const jb::cmp::Outputs out = op("ROUTER_TOPK").reference(c, p);
      ASSERT_EQ(out[0].name, "ids");
      for (int64_t t = 0; t < 64; ++t) {
        EXPECT_EQ(out[0].values[t * k], 2.0f) << "token " << t;
        if (k == 2) {
          EXPECT_EQ(out[0].values[t * k + 1], 5.0f) << "token " << t;
          // A true tie: both weights equal.
          EXPECT_EQ(out[1].values[t * k], out[1].values[t * k + 1]) << "token " << t;
        }
      }
    }
  }
}

TEST(MoeInputs, OneExpertAndEmptyExpert) {
  const jb::cmp::Outputs one =
      op("ROUTER_TOPK")
          .reference(Case::parse("ROUTER_TOPK(T=257,d=100,E=16,k=2,renorm=0,route=one,seed=1)"),
                     Precision::Truth);
  for (int64_t t = 0; t < 257; ++t) EXPECT_EQ(one[0].values[t * 2], 7.0f) << "token " << t;
  const jb::cmp::Outputs skip =
      op("ROUTER_TOPK")
          .reference(Case::parse("ROUTER_TOPK(T=257,d=100,E=16,k=2,renorm=0,route=skip,seed=1)"),
                     Precision::Truth);
  std::set<int> used(skip[0].values.begin(), skip[0].values.end());
  EXPECT_EQ(used.count(1), 0u) << "expert 1 must receive no token";
  EXPECT_GE(used.size(), 8u) << "the other experts should be spread";
}

TEST(MoeInputs, RouterWeightsNotRenormalisedForJamba) {
  const jb::cmp::Outputs out =
      op("ROUTER_TOPK")
          .reference(Case::parse("ROUTER_TOPK(T=32,d=100,E=16,k=2,renorm=0,route=rand,seed=2)"),
                     Precision::Truth);
  for (int64_t t = 0; t < 32; ++t)
    EXPECT_LT(out[1].values[2 * t] + out[1].values[2 * t + 1], 1.0f - 1e-3f);
}

// The streaming reference (one expert in memory at a time, used by the big cases) must equal
// reference/moe.cpp's ref::moe bit for bit, at both precisions (both take the routing weights
// in T from ref::route_t).
TEST(MoeInputs, StreamReferenceEqualsFullReference) {
  for (const char* w : {"bf16", "int8"}) {
    const std::string base =
        std::string("MOE(T=37,d=64,I=96,E=8,k=2,renorm=0,route=rand,weights=") + w + ",path=auto";
    const Case full = Case::parse(base + ",seed=5)");
    const Case stream = Case::parse(base + ",ref=stream,seed=5)");
    for (Precision p : {Precision::Truth, Precision::Bf16}) {
      const auto a = op("MOE").reference(full, p);
      const auto b = op("MOE").reference(stream, p);
      ASSERT_EQ(a[0].values.size(), b[0].values.size());
      EXPECT_EQ(0, std::memcmp(a[0].values.data(), b[0].values.data(),
                               a[0].values.size() * sizeof(float)))
          << w << " " << (p == Precision::Bf16 ? "bf16" : "truth");
    }
  }
}

// Without a GPU the kernels cannot run, but every quick case's two references can: they must
// run, agree on exact outputs (routing ids under the gap construction, quantiser, embedding),
// and the bf16 emulation must stay within the bf16 backstop of the truth. (With a GPU, the
// CudaMoe.*Cases tests above run the same references against the kernels.)
TEST(MoeInputs, ReferencesOfEveryQuickCase) {
  if (jb::cuda::device_available()) GTEST_SKIP() << "covered by the CudaMoe.*Cases tests";
  jb::cmp::RunOptions opt;
  opt.references_when_skipped = true;
  for (const char* name :
       {"ROUTER_TOPK", "MOE", "MLP", "EXPERT_INT8", "QUANT_INT8", "EMBEDDING", "LM_HEAD"}) {
    jb::cmp::Selection sel;
    sel.ops = {name};
    sel.quick = true;
    for (const auto& [info, c] : jb::cmp::select_cases(jb::cmp::registry(), sel)) {
      const jb::cmp::CaseResult r = jb::cmp::run_case(*info, c, opt);
      ASSERT_EQ(r.status, jb::cmp::Status::Skipped) << c.str() << ": " << r.reason;
      ASSERT_FALSE(r.tensors.empty()) << c.str() << ": references did not run";
      for (const auto& t : r.tensors) {
        EXPECT_EQ(t.lp_metrics.nonfinite_mismatches, 0) << c.str() << " " << t.name;
        if (t.kind == jb::cmp::CheckKind::Exact)
          EXPECT_EQ(t.lp_metrics.bit_mismatches, 0) << c.str() << " " << t.name;
        else
          EXPECT_LE(t.lp_metrics.rel_l2, 1e-2) << c.str() << " " << t.name;
      }
    }
  }
}

// ---- GPU unit checks ----

std::vector<float> tie_and_zero_weights(int64_t rows, int64_t cols, uint64_t seed) {
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows * cols; ++i)
    w[i] = jb::round_bf16(jb::rng_normal(seed, jb::stream_id("test.quant"), i, 0.0f, 0.05f));
  for (int64_t r = 0; r < rows; ++r) {
    float* row = w.data() + r * cols;
    if (r % 4 == 0) std::fill(row, row + cols, 0.0f);  // zero rows: scale 0, q 0
    if (r % 4 == 1) {
      // max |w| = 127 * 2^-4 -> scale 2^-4 exactly; entries (m + 0.5) * 2^-4: quotients m + 0.5
      for (int64_t j = 0; j < cols; ++j) {
        const int m = static_cast<int>(jb::rng_bits(seed, 99, r * cols + j) % 200) - 100;
        row[j] = std::ldexp(static_cast<float>(m) + 0.5f, -4);
      }
      row[0] = -127.0f / 16.0f;
    }
  }
  return w;
}

TEST(CudaMoe, QuantiserBitwiseWithTiesAndZeroRows) {
  SKIP_WITHOUT_GPU();
  const int64_t rows = 96, cols = 1000;
  const std::vector<float> w = tie_and_zero_weights(rows, cols, 11);
  const jb::ref::QuantizedMatrix ref = jb::ref::quantize_int8(w.data(), rows, cols);
  // The data must really contain exact .5 quotients, both even and odd neighbours.
  int ties_down = 0, ties_up = 0;
  for (int64_t r = 1; r < rows; r += 4)
    for (int64_t j = 1; j < cols; ++j) {
      const float qf = w[r * cols + j] / ref.scale[r];
      ASSERT_EQ(qf - std::floor(qf), 0.5f);
      const int q = ref.q[r * cols + j];
      (std::fabs(static_cast<float>(q)) < std::fabs(qf) ? ties_down : ties_up)++;
      EXPECT_EQ(q % 2, 0) << "half-to-even gives even integers";
    }
  EXPECT_GT(ties_down, 100);
  EXPECT_GT(ties_up, 100);

  jb::cuda::DeviceBuffer<jb::cuda::bf16> dw(w.size());
  dw.upload(jb::cuda::to_bf16(w));
  jb::cuda::DeviceBuffer<int8_t> dq(w.size());
  jb::cuda::DeviceBuffer<float> ds(rows);
  jb::cuda::quantize_int8(dw.get(), rows, cols, dq.get(), ds.get());
  JB_CUDA(cudaDeviceSynchronize());
  const std::vector<int8_t> q = dq.download();
  const std::vector<float> s = ds.download();
  for (int64_t r = 0; r < rows; ++r) {
    uint32_t a, b;
    std::memcpy(&a, &s[r], 4);
    std::memcpy(&b, &ref.scale[r], 4);
    ASSERT_EQ(a, b) << "scale of row " << r;
    if (r % 4 == 0) EXPECT_EQ(s[r], 0.0f);
  }
  for (size_t i = 0; i < q.size(); ++i) ASSERT_EQ(q[i], ref.q[i]) << "element " << i;
}

TEST(CudaMoe, PermutationMatchesHostCountingSort) {
  SKIP_WITHOUT_GPU();
  const int64_t T = 1000;
  const int k = 2, E = 16;
  std::vector<int32_t> ids(T * k);
  for (int64_t t = 0; t < T; ++t) {
    // Two distinct experts per token, never expert 3 (an empty group).
    int a = static_cast<int>(jb::rng_bits(1, 7, 2 * t) % E), b;
    if (a == 3) a = 4;
    b = static_cast<int>(jb::rng_bits(1, 7, 2 * t + 1) % E);
    while (b == a || b == 3) b = (b + 1) % E;
    ids[t * k] = a;
    ids[t * k + 1] = b;
  }
  jb::cuda::DeviceBuffer<int32_t> d_ids(ids.size()), offsets(E + 1), active(E), num_active(1),
      perm(T * k), slot(T * k);
  d_ids.upload(ids);
  jb::cuda::MoePermutation p{offsets.get(), active.get(), num_active.get(), perm.get(), slot.get()};
  jb::cuda::moe_permute(d_ids.get(), T, k, E, p);
  JB_CUDA(cudaDeviceSynchronize());
  // Host counting sort: expert-major, ascending tokens within an expert.
  std::vector<int32_t> h_off(E + 1, 0), h_perm, h_slot(T * k), h_active;
  for (int e = 0; e < E; ++e) {
    h_off[e] = static_cast<int32_t>(h_perm.size());
    for (int64_t t = 0; t < T; ++t)
      for (int j = 0; j < k; ++j)
        if (ids[t * k + j] == e) {
          h_slot[t * k + j] = static_cast<int32_t>(h_perm.size());
          h_perm.push_back(static_cast<int32_t>(t));
        }
    if (static_cast<int32_t>(h_perm.size()) > h_off[e]) h_active.push_back(e);
  }
  h_off[E] = static_cast<int32_t>(h_perm.size());
  EXPECT_EQ(offsets.download(), h_off);
  EXPECT_EQ(perm.download(), h_perm);
  EXPECT_EQ(slot.download(), h_slot);
  const std::vector<int32_t> act = active.download();
  ASSERT_EQ(num_active.download()[0], static_cast<int32_t>(h_active.size()));
  EXPECT_EQ(std::vector<int32_t>(act.begin(), act.begin() + h_active.size()), h_active);
}

TEST(CudaMoe, EmbeddingOutOfRangeIdIsClampedAndRaises) {
  SKIP_WITHOUT_GPU();
  const int64_t V = 50, d = 24;
  std::vector<float> table(V * d);
  for (int64_t i = 0; i < V * d; ++i) table[i] = jb::round_bf16(jb::rng_normal(3, 5, i));
  jb::cuda::DeviceBuffer<jb::cuda::bf16> dt(table.size());
  dt.upload(jb::cuda::to_bf16(table));
  const std::vector<int32_t> ids = {4, 50, -7, 49};
  jb::cuda::DeviceBuffer<int32_t> did(ids.size());
  did.upload(ids);
  jb::cuda::DeviceBuffer<jb::cuda::bf16> out(ids.size() * d);
  try {
    jb::cuda::embedding_lookup_checked(did.get(), 4, dt.get(), V, d, out.get());
    FAIL() << "out-of-range ids must raise";
  } catch (const jb::Error& e) {
    EXPECT_EQ(e.kind(), jb::ErrorKind::Usage);
    EXPECT_NE(std::string(e.what()).find("position 1"), std::string::npos) << e.what();
  }
  const std::vector<float> o = jb::cuda::from_bf16(out.download());
  const int64_t expect_row[4] = {4, V - 1, 0, 49};  // clamped, never out of bounds
  for (int i = 0; i < 4; ++i)
    for (int64_t j = 0; j < d; ++j) EXPECT_EQ(o[i * d + j], table[expect_row[i] * d + j]);
}

TEST(CudaMoe, DecodeTakesGemvPath) {
  SKIP_WITHOUT_GPU();
  // Decode (T <= 16 tokens) must take the Gemv path under Auto, and pass: int8 on the tensor
  // cores at every row bound (the FMA variant only when pinned), bf16 on the FMA variant.
  const std::pair<int, const char*> want[] = {{1, "gemv_mma_f16_int8"}, {16, "gemv_mma_f16_int8"}};
  for (const auto& [T, variant] : want) {
    const jb::cmp::CaseResult r = jb::cmp::run_case(
        op("MOE"), Case::parse("MOE(T=" + std::to_string(T) +
                               ",d=128,I=256,E=16,k=2,renorm=0,route=rand,weights=int8,"
                               "path=auto,seed=9)"));
    EXPECT_EQ(r.status, jb::cmp::Status::Pass) << r.reason;
    EXPECT_EQ(r.variant, variant) << "T=" << T;
  }
  const jb::cmp::CaseResult r = jb::cmp::run_case(
      op("MOE"), Case::parse("MOE(T=4,d=128,I=256,E=16,k=2,renorm=0,route=rand,weights=bf16,"
                             "path=auto,seed=9)"));
  EXPECT_EQ(r.status, jb::cmp::Status::Pass) << r.reason;
  EXPECT_EQ(r.variant, "gemv_bf16");
}

// The Gemm path's schedule pinned: bf16 runs the grouped cuBLAS calls or our grouped wgmma GEMMs
// (and passes; the registry cases above cover the shapes), int8 is refused with Unsupported by
// both, the wgmma GEMMs refuse I % 8 != 0; Auto takes the wgmma GEMMs for bf16 on sm_90 (the
// lanes elsewhere, and for int8 and for shapes the wgmma GEMMs refuse).
TEST(CudaMoe, GemmScheduleVariants) {
  SKIP_WITHOUT_GPU();
  const std::string base = "MOE(T=64,d=128,I=256,E=16,k=2,renorm=0,route=rand,path=gemm,";
  const bool sm90 = jb::cuda::device_is_sm90();
  const std::pair<std::string, std::string> want[] = {
      {"weights=bf16,sched=grouped", "gemm_bf16_grouped"},
      {"weights=bf16,sched=wgmma", "gemm_bf16_wgmma"},
      {"weights=bf16,sched=lanes", "gemm_bf16"},
      {"weights=bf16,sched=auto", sm90 ? "gemm_bf16_wgmma" : "gemm_bf16"},
      {"weights=int8,sched=auto", "gemm_int8"}};
  for (const auto& [params, variant] : want) {
    const jb::cmp::CaseResult r =
        jb::cmp::run_case(op("MOE"), Case::parse(base + params + ",seed=4)"));
    EXPECT_EQ(r.status, jb::cmp::Status::Pass) << params << ": " << r.reason;
    EXPECT_EQ(r.variant, variant) << params;
  }
  const jb::cmp::CaseResult r =
      jb::cmp::run_case(op("MOE"), Case::parse(base + "weights=int8,sched=grouped,seed=4)"));
  EXPECT_EQ(r.status, jb::cmp::Status::Error);
  EXPECT_NE(r.reason.find("grouped schedule takes bf16 weights only"), std::string::npos)
      << r.reason;
  const jb::cmp::CaseResult r8 =
      jb::cmp::run_case(op("MOE"), Case::parse(base + "weights=int8,sched=wgmma,seed=4)"));
  EXPECT_EQ(r8.status, jb::cmp::Status::Error);
  EXPECT_NE(r8.reason.find("wgmma schedule takes bf16 weights only"), std::string::npos)
      << r8.reason;
  const jb::cmp::CaseResult odd = jb::cmp::run_case(
      op("MOE"), Case::parse("MOE(T=33,d=64,I=100,E=8,k=2,renorm=0,route=rand,weights=bf16,"
                             "path=gemm,sched=wgmma,seed=4)"));
  EXPECT_EQ(odd.status, jb::cmp::Status::Error);
  EXPECT_NE(odd.reason.find("d and I must be multiples of 8 (d=64, I=100)"), std::string::npos)
      << odd.reason;
  // The same shape under Auto: the lanes run it instead of an error.
  const jb::cmp::CaseResult odd_auto = jb::cmp::run_case(
      op("MOE"), Case::parse("MOE(T=33,d=64,I=100,E=8,k=2,renorm=0,route=rand,weights=bf16,"
                             "path=gemm,sched=auto,seed=4)"));
  EXPECT_EQ(odd_auto.status, jb::cmp::Status::Pass) << odd_auto.reason;
  EXPECT_EQ(odd_auto.variant, "gemm_bf16");
}

// Host only: the experts' knobs round-trip through their names; an unknown name is a usage
// error that lists every name.
TEST(ExpertsKnobs, NamesParse) {
  using jb::cuda::ExpertsPath;
  using jb::cuda::GemmSchedule;
  using jb::cuda::Int8Gemv;
  for (Int8Gemv v : {Int8Gemv::Auto, Int8Gemv::Fma, Int8Gemv::Mma})
    EXPECT_EQ(jb::cuda::parse_int8_gemv(jb::cuda::int8_gemv_name(v)), v);
  for (ExpertsPath p : {ExpertsPath::Auto, ExpertsPath::Gemv, ExpertsPath::Gemm})
    EXPECT_EQ(jb::cuda::parse_experts_path(jb::cuda::experts_path_name(p)), p);
  for (GemmSchedule s :
       {GemmSchedule::Auto, GemmSchedule::Lanes, GemmSchedule::Grouped, GemmSchedule::Wgmma})
    EXPECT_EQ(jb::cuda::parse_gemm_schedule(jb::cuda::gemm_schedule_name(s)), s);
  EXPECT_STREQ(jb::cuda::gemm_schedule_name(GemmSchedule::Grouped), "grouped");
  EXPECT_EQ(jb::cuda::ExpertsWorkspace().gemm_schedule, GemmSchedule::Auto);
  try {
    jb::cuda::parse_gemm_schedule("lanes4");
    FAIL() << "an unknown gemm schedule was accepted";
  } catch (const jb::Error& e) {
    EXPECT_EQ(e.kind(), jb::ErrorKind::Usage);
    EXPECT_NE(
        std::string(e.what()).find("unknown gemm schedule 'lanes4' (auto, lanes, grouped, wgmma)"),
        std::string::npos)
        << e.what();
  }
  try {
    jb::cuda::parse_int8_gemv("wgmma");
    FAIL() << "an unknown int8 gemv name was accepted";
  } catch (const jb::Error& e) {
    EXPECT_EQ(e.kind(), jb::ErrorKind::Usage);
    EXPECT_NE(std::string(e.what()).find("'wgmma' (auto, fma, mma)"), std::string::npos)
        << e.what();
  }
  try {
    jb::cuda::parse_experts_path("gemm_grouped");
    FAIL() << "an unknown experts path was accepted";
  } catch (const jb::Error& e) {
    EXPECT_EQ(e.kind(), jb::ErrorKind::Usage);
    EXPECT_NE(std::string(e.what()).find("(auto, gemv, gemm)"), std::string::npos) << e.what();
  }
}

}  // namespace
