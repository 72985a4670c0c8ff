#include "compare/runner.hpp"

#include <chrono>
#include <cmath>
#include <cstring>
#include <regex>
#include <set>

#include "core/error.hpp"

#if defined(JAMBENCH_HAVE_CUDA)
#include "cuda/common.cuh"
#endif

namespace jb::cmp {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Names, order and shapes of two output lists must agree (an op bug otherwise).
void check_same_layout(const Outputs& a, const Outputs& b, const char* what_a, const char* what_b) {
  if (a.size() != b.size())
    fail(ErrorKind::Internal, std::string(what_a) + " returned " + std::to_string(a.size()) +
                                  " tensors, " + what_b + " " + std::to_string(b.size()));
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].shape != b[i].shape)
      fail(ErrorKind::Internal, std::string("tensor ") + std::to_string(i) + ": " + what_a + " '" +
                                    a[i].name + "' " + shape_to_string(a[i].shape) + " vs " +
                                    what_b + " '" + b[i].name + "' " + shape_to_string(b[i].shape));
    int64_t numel = 1;
    for (int64_t d : a[i].shape) numel *= d;
    if (static_cast<int64_t>(a[i].values.size()) != numel ||
        static_cast<int64_t>(b[i].values.size()) != numel)
      fail(ErrorKind::Internal, "tensor '" + a[i].name + "': values do not match its shape " +
                                    shape_to_string(a[i].shape));
  }
}

bool bitwise_equal(const Outputs& a, const Outputs& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].values.size() != b[i].values.size()) return false;
    if (std::memcmp(a[i].values.data(), b[i].values.data(), a[i].values.size() * sizeof(float)))
      return false;
  }
  return true;
}

nlohmann::json metrics_json(const Metrics& m) {
  nlohmann::json j;
  j["count"] = m.count;
  j["finite_count"] = m.finite_count;
  j["max_abs"] = json_number(m.max_abs);
  j["rel_l2"] = json_number(m.rel_l2);
  j["cosine"] = json_number(m.cosine);
  j["ref_max_abs"] = json_number(m.ref_max_abs);
  j["worst_index"] = m.worst_index;
  j["worst_value"] = json_number(m.worst_out);
  j["worst_ref"] = json_number(m.worst_ref);
  j["nonfinite_mismatches"] = m.nonfinite_mismatches;
  if (m.nonfinite_mismatches > 0) {
    j["first_nonfinite_index"] = m.first_nonfinite_index;
    j["first_nonfinite_value"] = json_number(m.first_nonfinite_out);
    j["first_nonfinite_ref"] = json_number(m.first_nonfinite_ref);
  }
  j["inf_matches"] = m.inf_matches;
  j["bit_mismatches"] = m.bit_mismatches;
  return j;
}

nlohmann::json curve_json(const std::vector<CurvePoint>& curve) {
  nlohmann::json a = nlohmann::json::array();
  for (const CurvePoint& p : curve)
    a.push_back({{"pos_begin", p.pos_begin},
                 {"pos_end", p.pos_end},
                 {"rel_l2", json_number(p.rel_l2)},
                 {"max_abs", json_number(p.max_abs)}});
  return a;
}

}  // namespace

std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

const char* status_name(Status s) {
  switch (s) {
    case Status::Pass:
      return "pass";
    case Status::Fail:
      return "fail";
    case Status::Skipped:
      return "skipped";
    case Status::Error:
      return "error";
  }
  return "unknown";
}

bool kernels_runnable(std::string* reason) {
#if defined(JAMBENCH_HAVE_CUDA)
  if (jb::cuda::device_available()) return true;
  if (reason) *reason = "no GPU";
  return false;
#else
  if (reason) *reason = "no CUDA in this build";
  return false;
#endif
}

CaseResult run_case(const OpInfo& op, const Case& c, const RunOptions& opt) {
  CaseResult r;
  r.op = op.name;
  r.case_str = c.str();
  r.seed = c.seed;
  std::string why;
  bool can_run = true;
  if (!op.kernel) {
    can_run = false;
    why = "no kernel in this build";
  } else if (opt.pretend_no_gpu) {
    can_run = false;
    why = "no GPU";
  } else if (!opt.run_without_gpu && !kernels_runnable(&why)) {
    can_run = false;
  }
  if (!can_run) {
    r.status = Status::Skipped;
    r.reason = "skipped: " + why;
    if (!opt.references_when_skipped || !op.reference) return r;
  }
  Outputs truth, lp, k1, k2;
  try {
    if (!op.reference) fail(ErrorKind::Internal, "op " + op.name + " has no reference");
    auto t0 = Clock::now();
    truth = op.reference(c, Precision::Truth);
    r.t_truth = seconds_since(t0);
    t0 = Clock::now();
    lp = op.reference(c, Precision::Bf16);
    r.t_lp = seconds_since(t0);
    check_same_layout(truth, lp, "truth reference", "bf16 reference");

    if (!can_run) {
      // Reference-only record: R_lp's own error, no verdict.
      t0 = Clock::now();
      for (size_t i = 0; i < truth.size(); ++i) {
        TensorResult tr;
        tr.name = truth[i].name;
        tr.kind = truth[i].kind;
        tr.shape = truth[i].shape;
        tr.lp_metrics = compute_metrics(lp[i].values, truth[i].values);
        tr.lp_curve = error_curve(lp[i].values.data(), truth[i].values.data(), truth[i].shape,
                                  truth[i].position_axis);
        tr.verdict.thresholds.path = path_for(c, tr.kind);
        tr.verdict.failures.push_back(r.reason);
        r.tensors.push_back(std::move(tr));
      }
      r.t_metrics = seconds_since(t0);
      return r;
    }

    KernelRun run1, run2;
    t0 = Clock::now();
    k1 = op.kernel(c, run1);
    r.t_kernel1 = seconds_since(t0);
    t0 = Clock::now();
    k2 = op.kernel(c, run2);
    r.t_kernel2 = seconds_since(t0);
    r.kernel_ran = true;
    r.variant = run1.variant;
    r.notes = run1.notes;
    if (run2.variant != run1.variant) r.notes.push_back("second run used variant " + run2.variant);
    check_same_layout(truth, k1, "reference", "kernel");
    check_same_layout(truth, k2, "reference", "kernel (second run)");

    r.guards_ok = run1.guards_ok && run2.guards_ok;
    r.deterministic = bitwise_equal(k1, k2);
    std::vector<std::string> case_failures;
    if (!r.guards_ok)
      case_failures.push_back(
          "guard region around an output was overwritten (out-of-bounds write)");
    if (!r.deterministic) {
      if (op.nondeterministic_reason.empty())
        case_failures.push_back("two runs of the kernel gave different bits");
      else
        r.nondeterministic_reason = op.nondeterministic_reason;
    }

    t0 = Clock::now();
    bool all_pass = true;
    for (size_t i = 0; i < truth.size(); ++i) {
      const NamedTensor& t = truth[i];
      TensorResult tr;
      tr.name = t.name;
      tr.kind = t.kind;
      tr.shape = t.shape;
      tr.metrics = compute_metrics(k1[i].values, t.values);
      tr.lp_metrics = compute_metrics(lp[i].values, t.values);
      tr.vs_lp = compute_metrics(k1[i].values, lp[i].values);
      tr.verdict = judge(c, t.kind, tr.metrics, tr.lp_metrics);
      tr.curve = error_curve(k1[i].values.data(), t.values.data(), t.shape, t.position_axis);
      tr.lp_curve = error_curve(lp[i].values.data(), t.values.data(), t.shape, t.position_axis);
      if (!tr.verdict.pass) {
        all_pass = false;
        if (case_failures.empty())
          case_failures.push_back(tr.name + ": " + tr.verdict.failures.front());
      }
      if (std::isnan(tr.metrics.rel_l2) || tr.metrics.rel_l2 > r.worst_rel_l2)
        r.worst_rel_l2 = tr.metrics.rel_l2;
      if (tr.verdict.thresholds.path == Path::Bf16 && tr.verdict.lp_ratio > r.worst_lp_ratio)
        r.worst_lp_ratio = tr.verdict.lp_ratio;
      r.tensors.push_back(std::move(tr));
    }
    r.t_metrics = seconds_since(t0);
    const bool pass =
        all_pass && r.guards_ok && (r.deterministic || !op.nondeterministic_reason.empty());
    r.status = pass ? Status::Pass : Status::Fail;
    if (!pass) r.reason = case_failures.empty() ? "failed" : case_failures.front();
  } catch (const Error& e) {
    r.status = Status::Error;
    r.reason = std::string(error_kind_name(e.kind())) + " error: " + e.what();
  } catch (const std::exception& e) {
    r.status = Status::Error;
    r.reason = std::string("error: ") + e.what();
  }
  if ((r.status == Status::Fail || r.status == Status::Error) && !opt.dump_dir.empty() &&
      !truth.empty()) {
    try {
      r.dump_path = write_dump(opt.dump_dir, r, k1, truth, lp);
    } catch (const std::exception& e) {
      r.notes.push_back(std::string("dump failed: ") + e.what());
    }
  }
  return r;
}

std::vector<std::pair<const OpInfo*, Case>> select_cases(const Registry& reg, const Selection& s) {
  auto known = [&] {
    std::string k;
    for (const OpInfo& op : reg.ops()) k += (k.empty() ? "" : ", ") + op.name;
    return k.empty() ? std::string("none") : k;
  };
  auto find_op = [&](const std::string& name) {
    const OpInfo* op = reg.find(name);
    if (!op) fail(ErrorKind::Usage, "unknown op '" + name + "' (known: " + known() + ")");
    return op;
  };
  std::regex re;
  if (!s.param_regex.empty()) {
    try {
      re = std::regex(s.param_regex, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      fail(ErrorKind::Usage, "bad -p regex '" + s.param_regex + "': " + e.what());
    }
  }
  std::vector<std::pair<const OpInfo*, Case>> out;
  std::set<std::string> seen;
  auto push = [&](const OpInfo* op, Case c) {
    if (s.has_seed) c.seed = s.seed;
    if (seen.insert(c.str()).second) out.emplace_back(op, std::move(c));
  };
  for (const Case& c : s.cases) push(find_op(c.op), c);  // replays: run as given
  std::vector<const OpInfo*> ops;
  if (s.ops.empty()) {
    if (s.cases.empty())
      for (const OpInfo& op : reg.ops()) ops.push_back(&op);
  } else {
    for (const std::string& name : s.ops) ops.push_back(find_op(name));
  }
  for (const OpInfo* op : ops)
    for (const Case& c : op->cases()) {
      if (s.quick && c.big()) continue;
      if (!s.param_regex.empty() && !std::regex_search(c.str(), re)) continue;
      push(op, c);
    }
  return out;
}

nlohmann::json to_json(const CaseResult& r) {
  nlohmann::json j;
  j["op"] = r.op;
  j["case"] = r.case_str;
  j["seed"] = r.seed;
  j["variant"] = r.variant;
  j["status"] = status_name(r.status);
  j["reason"] = r.reason;
  j["kernel_ran"] = r.kernel_ran;
  j["deterministic"] = r.deterministic;
  if (!r.nondeterministic_reason.empty()) j["nondeterministic_allowed"] = r.nondeterministic_reason;
  j["guards_ok"] = r.guards_ok;
  j["notes"] = r.notes;
  j["timings_s"] = {{"truth", r.t_truth},
                    {"lp", r.t_lp},
                    {"kernel_run1", r.t_kernel1},
                    {"kernel_run2", r.t_kernel2},
                    {"metrics", r.t_metrics}};
  j["worst_rel_l2"] = json_number(r.worst_rel_l2);
  j["worst_lp_ratio"] = json_number(r.worst_lp_ratio);
  if (!r.dump_path.empty()) j["dump"] = r.dump_path;
  nlohmann::json ts = nlohmann::json::array();
  for (const TensorResult& t : r.tensors) {
    nlohmann::json tj;
    tj["name"] = t.name;
    tj["kind"] = check_kind_name(t.kind);
    tj["shape"] = t.shape;
    const Thresholds& th = t.verdict.thresholds;
    tj["path"] = path_name(th.path);
    if (r.kernel_ran) {
      tj["metrics"] = metrics_json(t.metrics);
      tj["vs_lp"] = metrics_json(t.vs_lp);
      tj["thresholds"] = {{"factor", json_number(th.factor)},
                          {"atol_floor", json_number(th.atol_floor)},
                          {"max_abs_limit", json_number(th.max_abs_limit)},
                          {"rel_l2_limit", json_number(th.rel_l2_limit)},
                          {"backstop_rel_l2", json_number(th.backstop_rel_l2)},
                          {"backstop_cosine", json_number(th.backstop_cosine)}};
      tj["lp_ratio"] = json_number(t.verdict.lp_ratio);
      tj["curve"] = curve_json(t.curve);
    }
    tj["lp_metrics"] = metrics_json(t.lp_metrics);
    tj["lp_curve"] = curve_json(t.lp_curve);
    tj["pass"] = r.kernel_ran && t.verdict.pass;
    tj["failures"] = t.verdict.failures;
    ts.push_back(std::move(tj));
  }
  j["tensors"] = std::move(ts);
  return j;
}

ResultDoc results_document(const std::vector<CaseResult>& results, nlohmann::json params) {
  int64_t n_pass = 0, n_fail = 0, n_skip = 0, n_err = 0;
  for (const CaseResult& r : results) {
    switch (r.status) {
      case Status::Pass:
        ++n_pass;
        break;
      case Status::Fail:
        ++n_fail;
        break;
      case Status::Skipped:
        ++n_skip;
        break;
      case Status::Error:
        ++n_err;
        break;
    }
  }
  std::string why;
  params["kernels_runnable"] = kernels_runnable(&why);
  if (!why.empty()) params["kernels_unavailable_reason"] = why;
  params["summary"] = {{"cases", static_cast<int64_t>(results.size())},
                       {"pass", n_pass},
                       {"fail", n_fail},
                       {"skipped", n_skip},
                       {"error", n_err}};
  ResultDoc doc = make_result("kernel_check", std::move(params));
  for (const CaseResult& r : results) doc.add_result(to_json(r));
  // Any failure fails the run; a run in which some case did not run is never "ok".
  doc.status = (n_fail || n_err) ? "fail" : (n_skip || n_pass == 0) ? "skipped" : "ok";
  if (n_err) {
    for (const CaseResult& r : results)
      if (r.status == Status::Error) {
        doc.error = r.case_str + ": " + r.reason;
        break;
      }
  }
  return doc;
}

}  // namespace jb::cmp
