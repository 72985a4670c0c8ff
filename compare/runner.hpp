// Runs registry cases: CPU references (truth and bf16-emulating), the kernel twice (determinism),
// guard checks, metrics and verdicts (compare/policy.hpp), timings, and the JSON record of each
// case. Without a kernel in this build, or without a GPU, a case is reported as skipped with the
// reason — never as passed (ecosystem.md §1.5: do not "waive").
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "compare/metrics.hpp"
#include "compare/policy.hpp"
#include "compare/registry.hpp"
#include "core/result.hpp"

namespace jb::cmp {

enum class Status { Pass, Fail, Skipped, Error };
const char* status_name(Status s);  // "pass", "fail", "skipped", "error"

struct TensorResult {
  std::string name;
  CheckKind kind = CheckKind::Reduction;
  std::vector<int64_t> shape;
  Metrics metrics;     // K vs R_hi (truth)
  Metrics lp_metrics;  // R_lp vs R_hi: the error bf16 itself costs
  Metrics vs_lp;       // K vs R_lp (informational: how close the kernel is to the emulation)
  Verdict verdict;
  std::vector<CurvePoint> curve;     // K vs R_hi per position (position_axis >= 0 only)
  std::vector<CurvePoint> lp_curve;  // R_lp vs R_hi per position
};

struct CaseResult {
  std::string op, case_str;
  uint64_t seed = 0;
  std::string variant;  // KernelRun::variant
  Status status = Status::Skipped;
  std::string reason;  // why skipped / failed / error (one line)
  bool kernel_ran = false;
  bool deterministic = true;            // two runs gave identical bits
  std::string nondeterministic_reason;  // op's allow-list entry when !deterministic
  bool guards_ok = true;
  std::vector<TensorResult> tensors;
  std::vector<std::string> notes;  // KernelRun::notes
  // Seconds per phase.
  double t_truth = 0, t_lp = 0, t_kernel1 = 0, t_kernel2 = 0, t_metrics = 0;
  std::string dump_path;  // HDF5 dump written on failure ("" if none)
  // Summary over tensors: the largest K rel_l2 and the largest K/R_lp rel_l2 ratio.
  double worst_rel_l2 = 0, worst_lp_ratio = 0;
};

struct RunOptions {
  // Also compute both references (and R_lp vs truth metrics) when the kernel cannot run, so that
  // CPU CI exercises the references. The status stays Skipped.
  bool references_when_skipped = false;
  std::string dump_dir;  // "" = no HDF5 dumps on failure
  // Force "no GPU" (tests of the skip path on GPU machines).
  bool pretend_no_gpu = false;
  // Tests of the runner itself only: call kernel lambdas even without a GPU (they must be fake,
  // CPU-side kernels). Never set by jambench.
  bool run_without_gpu = false;
};

// Whether kernels can run in this process: a CUDA build and a usable device. On false, *reason
// (if given) says which ("no CUDA in this build", "no GPU").
bool kernels_runnable(std::string* reason = nullptr);

CaseResult run_case(const OpInfo& op, const Case& c, const RunOptions& opt = {});

// Case selection shared by `jambench compare`, the GPU tests and the benchmarks.
struct Selection {
  std::vector<std::string> ops;  // op names; empty = all
  std::vector<Case> cases;       // explicit case strings (replay); run as given, not filtered
  std::string param_regex;       // ECMAScript regex searched in the case string; "" = all
  bool has_seed = false;         // override every case's seed
  uint64_t seed = 1;
  bool quick = false;  // drop cases with big=1
};
// The (op, case) pairs selected. Unknown op names are Error{Usage} listing the known ones; a bad
// regex is Error{Usage}.
std::vector<std::pair<const OpInfo*, Case>> select_cases(const Registry& reg, const Selection& s);

// JSON of one case, in the result schema's kernel_check shape (ecosystem.md §3.6). Non-finite
// numbers are written as the strings "nan", "inf", "-inf" (jb::json_number, core/result.hpp).
nlohmann::json to_json(const CaseResult& r);
// The whole document (core/result.hpp): run/device metadata, benchmark {kind: "kernel_check",
// params}, results, summary counts in params, and status: "ok" when every case passed, "fail" if
// any failed or errored, else "skipped" (a run where some case did not run is never "ok").
ResultDoc results_document(const std::vector<CaseResult>& results,
                           nlohmann::json params = nlohmann::json::object());

std::string shape_to_string(const std::vector<int64_t>& shape);  // "[2,3]"

// Write the failure dump of one case: attributes case, seed, op, variant; for each tensor the
// datasets <name>/kernel, <name>/truth, <name>/lp (fp32, the tensor's shape). Returns the path.
// Inputs are not stored: a replay regenerates them from the case string (counter-based RNG).
std::string write_dump(const std::string& dir, const CaseResult& r, const Outputs& kernel,
                       const Outputs& truth, const Outputs& lp);

}  // namespace jb::cmp
