// jambench compare: CUDA kernels against the CPU reference over the op registry
// (compare/README.md; the policy is ecosystem.md §1.8).
#include <cstdio>
#include <string>
#include <vector>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "compare/registry.hpp"
#include "compare/runner.hpp"
#include "core/error.hpp"
#include "core/result.hpp"

namespace jb::cli {

namespace {

const char* kUsage =
    "usage: jambench compare [options]\n"
    "\n"
    "Runs each selected case: CPU references (fp64 truth and the bf16-emulating reference), the\n"
    "kernel twice (bit-identical unless allow-listed), guard checks, and the tolerance policy of\n"
    "compare/README.md. Every input comes from the case string's seed, so a printed case string\n"
    "replays exactly.\n"
    "\n"
    "  -o OP[,OP]        ops to run (default: all); or a full case string such as\n"
    "                    -o 'RMS_NORM(rows=7,n=4095,dtype=bf16,seed=3)' (repeatable)\n"
    "  -p REGEX          keep grid cases whose case string matches REGEX (ECMAScript search)\n"
    "  --seed N          override every case's seed\n"
    "  --quick           leave out cases marked big=1 (default: all cases)\n"
    "  --big             accepted for clarity: big cases are included by default\n"
    "  --list            list ops: family, case count, whether this build has a kernel\n"
    "  --list-cases      print the selected case strings and exit\n"
    "  --out FILE.json   write the result document (schema: core/result.hpp, kind kernel_check)\n"
    "  --dump-dir DIR    on failure, write DIR/<case>.h5 with kernel/truth/lp outputs\n"
    "  --references      when kernels cannot run, still compute both references (bf16 error)\n"
    "  --allow-skip      exit 0 when kernels cannot run here (no GPU / CPU build)\n"
    "\n"
    "Exit: 0 all passed; 1 a case failed or errored; 6 kernels could not run (without\n"
    "--allow-skip); 2 usage error.\n";

std::string fmt_sci(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3e", v);
  return buf;
}

std::string ratio_cell(const cmp::CaseResult& r) {
  if (!r.kernel_ran) return "-";
  bool any_bf16 = false;
  for (const auto& t : r.tensors) any_bf16 |= t.verdict.thresholds.path == cmp::Path::Bf16;
  if (!any_bf16) return "-";  // fp32 / exact gates are absolute
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fx", r.worst_lp_ratio);
  return buf;
}

void print_list(const cmp::Registry& reg) {
  std::string why;
  const bool runnable = cmp::kernels_runnable(&why);
  std::printf("%-16s %-10s %6s %4s %-7s %s\n", "op", "family", "cases", "big", "kernel",
              "description");
  for (const cmp::OpInfo& op : reg.ops()) {
    const std::vector<cmp::Case> cases = op.cases();
    int big = 0;
    for (const cmp::Case& c : cases) big += c.big() ? 1 : 0;
    std::printf("%-16s %-10s %6zu %4d %-7s %s\n", op.name.c_str(), op.family.c_str(), cases.size(),
                big, op.kernel ? "yes" : "no", op.description.c_str());
  }
  std::printf("\nkernels can run here: %s\n", runnable ? "yes" : ("no (" + why + ")").c_str());
}

}  // namespace

int cmd_compare(const Argv& argv) {
  const Args args(argv, {"-o", "-p", "--seed", "--out", "--dump-dir"},
                  {"--list", "--list-cases", "--big", "--quick", "--allow-skip", "--references",
                   "--help", "-h"});
  if (args.has("--help") || args.has("-h")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (!args.positional().empty())
    fail(ErrorKind::Usage, "unexpected argument '" + args.positional()[0] + "' (see --help)");
  if (args.has("--big") && args.has("--quick"))
    fail(ErrorKind::Usage, "--big and --quick contradict each other");
  std::vector<std::string> command_line = {"jambench", "compare"};
  command_line.insert(command_line.end(), argv.begin(), argv.end());
  set_command_line(command_line);

  const cmp::Registry& reg = cmp::registry();
  if (args.has("--list")) {
    print_list(reg);
    return 0;
  }

  cmp::Selection sel;
  for (const std::string& o : args.get_all("-o")) {
    if (o.find('(') != std::string::npos) {
      sel.cases.push_back(cmp::Case::parse(o));
      continue;
    }
    size_t start = 0;
    while (start <= o.size()) {
      const size_t comma = o.find(',', start);
      const std::string name = o.substr(start, comma == std::string::npos ? comma : comma - start);
      if (name.empty()) fail(ErrorKind::Usage, "empty op name in -o '" + o + "'");
      sel.ops.push_back(name);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  sel.param_regex = args.get("-p");
  if (args.has("--seed")) {
    const int64_t seed = args.get_int("--seed", 1);
    if (seed < 0) fail(ErrorKind::Usage, "--seed must be >= 0");
    sel.has_seed = true;
    sel.seed = static_cast<uint64_t>(seed);
    set_run_seed(sel.seed);
  }
  sel.quick = args.has("--quick");
  const auto selected = cmp::select_cases(reg, sel);
  if (selected.empty()) fail(ErrorKind::Usage, "no case matches the selection (see --list-cases)");

  if (args.has("--list-cases")) {
    for (const auto& pc : selected) std::printf("%s\n", pc.second.str().c_str());
    return 0;
  }

  cmp::RunOptions opt;
  opt.dump_dir = args.get("--dump-dir");
  opt.references_when_skipped = args.has("--references");

  std::vector<cmp::CaseResult> results;
  int n_pass = 0, n_fail = 0, n_skip = 0;
  std::string skip_reason;
  std::printf("%-64s %-8s %-10s %-8s %9s\n", "case", "status", "rel_l2", "vs bf16", "time ms");
  for (const auto& pc : selected) {
    cmp::CaseResult r = cmp::run_case(*pc.first, pc.second, opt);
    const double ms = 1e3 * (r.t_truth + r.t_lp + r.t_kernel1 + r.t_kernel2 + r.t_metrics);
    const std::string status =
        r.status == cmp::Status::Skipped ? "SKIPPED" : cmp::status_name(r.status);
    std::printf("%-64s %-8s %-10s %-8s %9.1f\n", r.case_str.c_str(), status.c_str(),
                r.kernel_ran ? fmt_sci(r.worst_rel_l2).c_str() : "-", ratio_cell(r).c_str(), ms);
    switch (r.status) {
      case cmp::Status::Pass:
        ++n_pass;
        break;
      case cmp::Status::Skipped:
        ++n_skip;
        if (skip_reason.empty())
          skip_reason = r.reason.rfind("skipped: ", 0) == 0 ? r.reason.substr(9) : r.reason;
        break;
      case cmp::Status::Fail:
      case cmp::Status::Error:
        ++n_fail;
        std::printf("    %s\n    replay: jambench compare -o '%s'\n", r.reason.c_str(),
                    r.case_str.c_str());
        if (!r.dump_path.empty()) std::printf("    dump: %s\n", r.dump_path.c_str());
        break;
    }
    std::fflush(stdout);
    results.push_back(std::move(r));
  }
  std::printf("\n%d passed, %d failed, %d skipped of %zu cases\n", n_pass, n_fail, n_skip,
              results.size());
  if (n_skip) std::printf("SKIPPED: %d cases not run (%s)\n", n_skip, skip_reason.c_str());

  if (args.has("--out")) {
    nlohmann::json params;
    params["selection"] = {{"ops", sel.ops},
                           {"regex", sel.param_regex},
                           {"quick", sel.quick},
                           {"seed_override", sel.has_seed ? nlohmann::json(sel.seed) : nullptr}};
    write_result(args.get("--out"), cmp::results_document(results, params));
    std::printf("wrote %s\n", args.get("--out").c_str());
  }
  if (n_fail) return 1;
  if (n_skip && !args.has("--allow-skip")) {
    std::fprintf(stderr,
                 "jambench compare: unsupported: %d of %zu cases skipped (%s); pass --allow-skip "
                 "to accept\n",
                 n_skip, results.size(), skip_reason.c_str());
    return error_exit_code(ErrorKind::Unsupported);
  }
  return 0;
}

}  // namespace jb::cli
