// The compare runner on the CPU: registry listing, skip reporting (never "pass" without a kernel
// run), determinism / guard / verdict handling with fake CPU kernels, case selection, JSON and the
// HDF5 failure dump.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <memory>
#include <set>

#include <unistd.h>

#include "compare/ops/norm_cases.hpp"
#include "compare/registry.hpp"
#include "compare/runner.hpp"
#include "core/bf16.hpp"
#include "core/error.hpp"
#include "core/hdf5_io.hpp"

using namespace jb::cmp;

namespace {

// A fake op: truth y = (1, 2, 3, 4); the bf16 reference is off by one bf16 ulp at 2 (2^-7), so
// R_lp's own error is rel_l2 = 2^-7 / sqrt(30). The kernel is a CPU lambda set by each test.
OpInfo fake_op(std::function<std::vector<float>(int call)> kernel_values) {
  OpInfo op;
  op.name = "FAKE";
  op.family = "test";
  op.description = "fake op for runner tests";
  op.cases = [] { return std::vector<Case>{Case::parse("FAKE(n=4,seed=1)")}; };
  op.reference = [](const Case&, Precision p) {
    NamedTensor t;
    t.name = "y";
    t.shape = {4};
    t.kind = CheckKind::Reduction;
    t.values = {1.0f, 2.0f, 3.0f, 4.0f};
    if (p == Precision::Bf16) t.values[1] = 2.0078125f;
    return Outputs{t};
  };
  if (kernel_values) {
    auto calls = std::make_shared<int>(0);
    op.kernel = [kernel_values, calls](const Case&, KernelRun& run) {
      run.variant = "cpu_fake";
      NamedTensor t;
      t.name = "y";
      t.shape = {4};
      t.kind = CheckKind::Reduction;
      t.values = kernel_values((*calls)++);
      return Outputs{t};
    };
  }
  return op;
}

RunOptions fake_gpu() {
  RunOptions o;
  o.run_without_gpu = true;
  return o;
}

const Case kFakeCase = Case::parse("FAKE(n=4,seed=1)");

}  // namespace

TEST(Registry, ListingIsNonEmptyAndEveryCaseRoundTrips) {
  const Registry& reg = registry();
  ASSERT_FALSE(reg.ops().empty());
  const OpInfo* rms = reg.find("RMS_NORM");
  ASSERT_NE(rms, nullptr);
  EXPECT_EQ(rms->family, "norm");
  std::set<std::string> names;
  for (const OpInfo& op : reg.ops()) {
    EXPECT_TRUE(names.insert(op.name).second) << "duplicate op " << op.name;
    EXPECT_FALSE(op.family.empty()) << op.name;
    const std::vector<Case> cases = op.cases();
    EXPECT_FALSE(cases.empty()) << op.name;
    std::set<std::string> seen;
    for (const Case& c : cases) {
      EXPECT_EQ(c.op, op.name);
      const std::string s = c.str();
      EXPECT_EQ(Case::parse(s), c) << s;
      EXPECT_EQ(Case::parse(s).str(), s);
      EXPECT_TRUE(seen.insert(s).second) << "duplicate case " << s;
    }
  }
#if defined(JAMBENCH_HAVE_CUDA)
  EXPECT_TRUE(static_cast<bool>(rms->kernel));
#else
  EXPECT_FALSE(static_cast<bool>(rms->kernel));
#endif
}

// Every component is listed with its case grid in every build: a CPU-only build must still show
// (and skip with a reason) the ops whose kernels it cannot run.
TEST(Registry, EveryComponentListedInEveryBuild) {
  const Registry& reg = registry();
  for (const char* name :
       {"RMS_NORM", "CONV1D", "CONV1D_UPDATE", "SSM_SCAN", "SSM_UPDATE", "MAMBA_LAYER",
        "ATTN_PREFILL", "ATTN_DECODE", "ATTN_LAYER", "ROUTER_TOPK", "MOE", "MLP", "EXPERT_INT8",
        "QUANT_INT8", "EMBEDDING", "LM_HEAD"}) {
    const OpInfo* op = reg.find(name);
    ASSERT_NE(op, nullptr) << name;
    EXPECT_FALSE(op->description.empty()) << name;
    EXPECT_GT(op->cases().size(), 0u) << name;
#if defined(JAMBENCH_HAVE_CUDA)
    EXPECT_TRUE(static_cast<bool>(op->kernel)) << name;
    EXPECT_TRUE(static_cast<bool>(op->reference)) << name;
#else
    EXPECT_FALSE(static_cast<bool>(op->kernel)) << name;
#endif
  }
}

TEST(Registry, DuplicateAndInvalidNamesRejected) {
  Registry r;
  r.add(fake_op(nullptr));
  EXPECT_THROW(r.add(fake_op(nullptr)), jb::Error);
  OpInfo bad = fake_op(nullptr);
  bad.name = "BAD NAME";
  EXPECT_THROW(r.add(bad), jb::Error);
  EXPECT_EQ(r.ops().size(), 1u);
}

TEST(Runner, NoKernelIsSkippedNotPassed) {
  const CaseResult r = run_case(fake_op(nullptr), kFakeCase, fake_gpu());
  EXPECT_EQ(r.status, Status::Skipped);
  EXPECT_NE(r.reason.find("no kernel"), std::string::npos) << r.reason;
  EXPECT_FALSE(r.kernel_ran);
  EXPECT_EQ(to_json(r)["status"], "skipped");
}

TEST(Runner, NoGpuIsSkippedAndKernelNotCalled) {
  int called = 0;
  OpInfo op = fake_op([&](int) {
    ++called;
    return std::vector<float>{1, 2, 3, 4};
  });
  RunOptions o;
  o.pretend_no_gpu = true;
  const CaseResult r = run_case(op, kFakeCase, o);
  EXPECT_EQ(r.status, Status::Skipped);
  EXPECT_NE(r.reason.find("no GPU"), std::string::npos) << r.reason;
  EXPECT_EQ(called, 0);
}

TEST(Runner, RealRmsNormSkipsWithoutGpuOrPassesWithOne) {
  const OpInfo* op = registry().find("RMS_NORM");
  ASSERT_NE(op, nullptr);
  const CaseResult r = run_case(*op, Case::parse("RMS_NORM(rows=7,n=40,dtype=bf16,seed=1)"));
  std::string why;
  if (kernels_runnable(&why)) {
    EXPECT_EQ(r.status, Status::Pass) << r.reason;
  } else {
    EXPECT_EQ(r.status, Status::Skipped);
    // CUDA build without a GPU: "no GPU"; CPU build: the op has no kernel at all.
    const std::string expected = op->kernel ? why : "no kernel in this build";
    EXPECT_EQ(r.reason, "skipped: " + expected);
    EXPECT_TRUE(r.tensors.empty());  // references not computed unless asked
  }
}

TEST(Runner, ReferencesWhenSkippedMeasureBf16Error) {
  const OpInfo* op = registry().find("RMS_NORM");
  ASSERT_NE(op, nullptr);
  RunOptions o;
  o.pretend_no_gpu = true;
  o.references_when_skipped = true;
  const CaseResult r = run_case(*op, Case::parse("RMS_NORM(rows=7,n=256,dtype=bf16,seed=1)"), o);
  EXPECT_EQ(r.status, Status::Skipped);
  ASSERT_EQ(r.tensors.size(), 1u);
  const Metrics& lp = r.tensors[0].lp_metrics;
  EXPECT_EQ(lp.count, 7 * 256);
  // One bf16 rounding of the output: relative error per element <= 2^-9, so rel_l2 <= 2^-9 too.
  EXPECT_GT(lp.rel_l2, 0.0);
  EXPECT_LE(lp.rel_l2, std::ldexp(1.0, -9));
  EXPECT_EQ(lp.nonfinite_mismatches, 0);
  const nlohmann::json j = to_json(r);
  EXPECT_FALSE(j["tensors"][0]["pass"].get<bool>());
  EXPECT_FALSE(j["tensors"][0].contains("metrics"));  // no kernel metrics when it did not run
}

TEST(Runner, Fp32ReferencesAgree) {
  // dtype=fp32: the "Bf16" precision is the fp32 reference; against fp64 truth it must be within
  // the fp32 reduction gate (1e-5) with a large margin.
  const OpInfo* op = registry().find("RMS_NORM");
  ASSERT_NE(op, nullptr);
  RunOptions o;
  o.pretend_no_gpu = true;
  o.references_when_skipped = true;
  const CaseResult r = run_case(*op, Case::parse("RMS_NORM(rows=7,n=4095,dtype=fp32,seed=1)"), o);
  ASSERT_EQ(r.tensors.size(), 1u);
  EXPECT_LT(r.tensors[0].lp_metrics.rel_l2, 1e-6);
  EXPECT_EQ(r.tensors[0].verdict.thresholds.path, Path::Fp32);
}

TEST(Runner, GoodFakeKernelPasses) {
  const CaseResult r = run_case(fake_op([](int) {
                                  return std::vector<float>{1, 2.0078125f, 3, 4};
                                }),
                                kFakeCase, fake_gpu());
  EXPECT_EQ(r.status, Status::Pass) << r.reason;
  EXPECT_TRUE(r.kernel_ran);
  EXPECT_TRUE(r.deterministic);
  EXPECT_EQ(r.variant, "cpu_fake");
  ASSERT_EQ(r.tensors.size(), 1u);
  EXPECT_NEAR(r.tensors[0].verdict.lp_ratio, 1.0, 1e-12);
  EXPECT_EQ(r.tensors[0].vs_lp.max_abs, 0.0);
  EXPECT_NEAR(r.worst_rel_l2, 0.0078125 / std::sqrt(30.0), 1e-12);
}

TEST(Runner, WrongKernelFails) {
  const CaseResult r = run_case(fake_op([](int) {
                                  return std::vector<float>{1.1f, 2, 3, 4};
                                }),
                                kFakeCase, fake_gpu());
  EXPECT_EQ(r.status, Status::Fail);
  EXPECT_NE(r.reason.find("y:"), std::string::npos) << r.reason;
}

TEST(Runner, NaNOutputFails) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const CaseResult r = run_case(fake_op([=](int) {
                                  return std::vector<float>{nan, 2, 3, 4};
                                }),
                                kFakeCase, fake_gpu());
  EXPECT_EQ(r.status, Status::Fail);
  EXPECT_EQ(r.tensors.at(0).metrics.nonfinite_mismatches, 1);
}

TEST(Runner, NondeterminismFailsUnlessAllowListed) {
  auto values = [](int call) {
    // Second run differs in the last bit of one element (still well within tolerance).
    std::vector<float> v = {1, 2.0078125f, 3, 4};
    if (call % 2 == 1) v[3] = std::nextafter(4.0f, 5.0f);
    return v;
  };
  const CaseResult r = run_case(fake_op(values), kFakeCase, fake_gpu());
  EXPECT_EQ(r.status, Status::Fail);
  EXPECT_FALSE(r.deterministic);
  EXPECT_NE(r.reason.find("different bits"), std::string::npos) << r.reason;

  OpInfo allowed = fake_op(values);
  allowed.nondeterministic_reason = "split-K atomics";
  const CaseResult a = run_case(allowed, kFakeCase, fake_gpu());
  EXPECT_EQ(a.status, Status::Pass) << a.reason;
  EXPECT_FALSE(a.deterministic);
  EXPECT_EQ(to_json(a)["nondeterministic_allowed"], "split-K atomics");
}

TEST(Runner, BrokenGuardFails) {
  OpInfo op = fake_op([](int) { return std::vector<float>{1, 2.0078125f, 3, 4}; });
  auto inner = op.kernel;
  op.kernel = [inner](const Case& c, KernelRun& run) {
    Outputs o = inner(c, run);
    run.guards_ok = false;
    return o;
  };
  const CaseResult r = run_case(op, kFakeCase, fake_gpu());
  EXPECT_EQ(r.status, Status::Fail);
  EXPECT_FALSE(r.guards_ok);
  EXPECT_NE(r.reason.find("guard"), std::string::npos) << r.reason;
}

TEST(Runner, ThrowingKernelAndLayoutMismatchAreErrors) {
  OpInfo throws = fake_op(
      [](int) -> std::vector<float> { throw jb::Error(jb::ErrorKind::Cuda, "launch failed"); });
  const CaseResult t = run_case(throws, kFakeCase, fake_gpu());
  EXPECT_EQ(t.status, Status::Error);
  EXPECT_NE(t.reason.find("launch failed"), std::string::npos);

  const CaseResult s = run_case(fake_op([](int) {
                                  return std::vector<float>{1, 2, 3};
                                }),
                                kFakeCase, fake_gpu());
  EXPECT_EQ(s.status, Status::Error);  // 3 values for shape [4]
}

TEST(Runner, FailureDumpHoldsCaseAndTensors) {
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("jb_cmp_dump_" + std::to_string(::getpid())))
          .string();
  RunOptions o = fake_gpu();
  o.dump_dir = dir;
  const CaseResult r = run_case(fake_op([](int) {
                                  return std::vector<float>{1.5f, 2, 3, 4};
                                }),
                                kFakeCase, o);
  ASSERT_EQ(r.status, Status::Fail);
  ASSERT_FALSE(r.dump_path.empty()) << (r.notes.empty() ? "" : r.notes.back());
  jb::h5::Reader h(r.dump_path);
  EXPECT_EQ(h.attr_string("/", "case"), kFakeCase.str());
  EXPECT_EQ(h.attr_i64("/", "seed"), 1);
  const auto k = h.read_f32("/y/kernel");
  ASSERT_EQ(k.data.size(), 4u);
  EXPECT_EQ(k.data[0], 1.5f);
  EXPECT_EQ(h.read_f32("/y/truth").data[0], 1.0f);
  EXPECT_EQ(h.read_f32("/y/lp").data[1], 2.0078125f);
  std::filesystem::remove_all(dir);
}

TEST(Select, FiltersSeedsAndReplays) {
  const Registry& reg = registry();
  Selection all;
  all.ops = {"RMS_NORM"};
  const auto full = select_cases(reg, all);
  ASSERT_FALSE(full.empty());
  Selection quick = all;
  quick.quick = true;
  const auto q = select_cases(reg, quick);
  EXPECT_LT(q.size(), full.size());  // the grid has a big=1 case
  for (const auto& pc : q) EXPECT_FALSE(pc.second.big());

  Selection re = all;
  re.param_regex = "n=16,";
  const auto r16 = select_cases(reg, re);
  ASSERT_FALSE(r16.empty());
  for (const auto& pc : r16) EXPECT_EQ(pc.second.geti("n"), 16);

  Selection seeded = all;
  seeded.has_seed = true;
  seeded.seed = 42;
  for (const auto& pc : select_cases(reg, seeded)) EXPECT_EQ(pc.second.seed, 42u);

  Selection replay;
  replay.cases = {Case::parse("RMS_NORM(rows=3,n=5,dtype=bf16,seed=9)")};  // not in the grid
  const auto one = select_cases(reg, replay);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].second.str(), "RMS_NORM(rows=3,n=5,dtype=bf16,seed=9)");

  Selection unknown;
  unknown.ops = {"NO_SUCH_OP"};
  try {
    select_cases(reg, unknown);
    FAIL() << "unknown op accepted";
  } catch (const jb::Error& e) {
    EXPECT_EQ(e.kind(), jb::ErrorKind::Usage);
    EXPECT_NE(std::string(e.what()).find("RMS_NORM"), std::string::npos);  // lists known ops
  }
  Selection bad_re = all;
  bad_re.param_regex = "(";
  EXPECT_THROW(select_cases(reg, bad_re), jb::Error);
}

TEST(Json, NonFiniteNumbersAreStrings) {
  EXPECT_EQ(jb::json_number(std::numeric_limits<double>::quiet_NaN()), "nan");
  EXPECT_EQ(jb::json_number(std::numeric_limits<double>::infinity()), "inf");
  EXPECT_EQ(jb::json_number(-std::numeric_limits<double>::infinity()), "-inf");
  EXPECT_EQ(jb::json_number(0.5), 0.5);

  CaseResult r = run_case(fake_op([](int) {
                            return std::vector<float>{1, 2, 3, 4};
                          }),
                          kFakeCase, fake_gpu());
  ASSERT_EQ(r.tensors.size(), 1u);
  r.tensors[0].metrics.rel_l2 = std::numeric_limits<double>::quiet_NaN();
  const nlohmann::json j = to_json(r);
  EXPECT_EQ(j["tensors"][0]["metrics"]["rel_l2"], "nan");
  const std::string text = j.dump();
  EXPECT_NE(text.find("\"rel_l2\":\"nan\""), std::string::npos);
  EXPECT_EQ(text.find("null"), std::string::npos) << text;
}

TEST(Json, DocumentStatus) {
  const CaseResult pass = run_case(fake_op([](int) {
                                     return std::vector<float>{1, 2.0078125f, 3, 4};
                                   }),
                                   kFakeCase, fake_gpu());
  const CaseResult skip = run_case(fake_op(nullptr), kFakeCase, fake_gpu());
  const CaseResult fail = run_case(fake_op([](int) {
                                     return std::vector<float>{9, 2, 3, 4};
                                   }),
                                   kFakeCase, fake_gpu());
  ASSERT_EQ(pass.status, Status::Pass);
  EXPECT_EQ(results_document({pass}).status, "ok");
  EXPECT_EQ(results_document({pass, skip}).status, "skipped");
  EXPECT_EQ(results_document({skip}).status, "skipped");
  EXPECT_EQ(results_document({pass, skip, fail}).status, "fail");
  const nlohmann::json doc = results_document({pass, fail}).to_json();
  EXPECT_EQ(doc["benchmark"]["kind"], "kernel_check");
  EXPECT_EQ(doc["results"].size(), 2u);
  EXPECT_EQ(doc["results"][1]["case"], kFakeCase.str());
  EXPECT_EQ(doc["benchmark"]["params"]["summary"]["fail"], 1);
  EXPECT_TRUE(doc.contains("schema_version"));
  EXPECT_TRUE(doc.contains("run"));
}

// ---- RMS_NORM grid and policy against CPU emulations of the kernel ----------------------------

namespace {

// A CPU stand-in for cuda/rmsnorm.cu: per-lane fp32 partial sums with fma (32 lanes, strided),
// a butterfly-order combine, 1/sqrt in fp32, y = round(w * (x * inv_rms)). `variant` breaks it on
// purpose: "two_roundings" (HF's form), "no_eps", "mean_n_minus_1".
Outputs emulated_rmsnorm(const Case& c, const std::string& variant) {
  const norm::RmsNormInputs in = norm::rmsnorm_inputs(c);
  NamedTensor y;
  y.name = "y";
  y.shape = {in.rows, in.n};
  y.kind = CheckKind::Reduction;
  y.values.resize(static_cast<size_t>(in.rows * in.n));
  const bool n_minus_1 = variant == "mean_n_minus_1", no_eps = variant == "no_eps";
  const bool two_roundings = variant == "two_roundings";
  for (int64_t r = 0; r < in.rows; ++r) {
    const float* xr = in.x.data() + r * in.stride;
    float lanes[32] = {};
    for (int64_t j = 0; j < in.n; ++j) lanes[j % 32] = std::fma(xr[j], xr[j], lanes[j % 32]);
    for (int off = 16; off > 0; off >>= 1)
      for (int l = 0; l < off; ++l) lanes[l] = lanes[l] + lanes[l + off];
    const float n = static_cast<float>(in.n - (n_minus_1 ? 1 : 0));
    const float eps = no_eps ? 0.0f : in.eps;
    const float inv = 1.0f / std::sqrt(lanes[0] / n + eps);
    for (int64_t j = 0; j < in.n; ++j) {
      float v;
      if (two_roundings)
        v = jb::round_bf16(in.weight[j] * jb::round_bf16(xr[j] * inv));
      else
        v = in.weight[j] * (xr[j] * inv);
      y.values[r * in.n + j] = in.fp32 ? v : jb::round_bf16(v);
    }
  }
  return {y};
}

OpInfo emulated_op(const std::string& variant) {
  OpInfo op = norm::rmsnorm_op_listing();
  op.kernel = [variant](const Case& c, KernelRun& run) {
    run.variant = "cpu_emulation_" + variant;
    return emulated_rmsnorm(c, variant);
  };
  return op;
}

}  // namespace

TEST(RmsNormGrid, FaithfulEmulationPassesEveryQuickCase) {
  // A correct kernel that only sums in another order must pass every case with margin: this
  // checks the grid, the references and the gates together before any GPU run.
  const OpInfo op = emulated_op("faithful");
  for (const Case& c : op.cases()) {
    if (c.big()) continue;
    const CaseResult r = run_case(op, c, fake_gpu());
    EXPECT_EQ(r.status, Status::Pass) << c.str() << ": " << r.reason;
    if (c.dtype() == "bf16") EXPECT_LT(r.worst_lp_ratio, 1.5) << c.str();
  }
}

TEST(RmsNormGrid, WrongFormulasFail) {
  // Dropping eps is invisible at mean(x^2) ~ 1 but not at xscale=1e-3 (mean(x^2) ~ eps).
  const CaseResult no_eps =
      run_case(emulated_op("no_eps"),
               Case::parse("RMS_NORM(rows=7,n=4096,dtype=bf16,xscale=0.001,seed=1)"), fake_gpu());
  EXPECT_EQ(no_eps.status, Status::Fail);
  // Dividing by n-1 changes every output by ~1/(2n) relative: 3e-2 at n = 16, several bf16 ulps
  // of error budget at the rel_l2 level.
  const CaseResult n1 =
      run_case(emulated_op("mean_n_minus_1"),
               Case::parse("RMS_NORM(rows=7,n=16,dtype=bf16,seed=1)"), fake_gpu());
  EXPECT_EQ(n1.status, Status::Fail);
  // fp32 path: the same n-1 slip is 1/(2n) ~ 1.2e-4 relative at n = 4096, far above 1e-5.
  const CaseResult f1 =
      run_case(emulated_op("mean_n_minus_1"),
               Case::parse("RMS_NORM(rows=7,n=4096,dtype=fp32,seed=1)"), fake_gpu());
  EXPECT_EQ(f1.status, Status::Fail);
}
