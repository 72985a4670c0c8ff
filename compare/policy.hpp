// The tolerance policy of ecosystem.md §1.8, turned into verdicts. Each compared output has three
// versions: K (the kernel), R_lp (the reference emulating the kernel contract's rounding points,
// Precision::Bf16) and R_hi (the truth, Precision::Truth). The metrics of K vs R_hi are judged
// against the metrics of R_lp vs R_hi ("at most f times the error that bf16 itself costs", the
// FlashAttention rule, ecosystem.md §1.1), with floors and absolute backstops. compare/README.md
// explains every number.
#pragma once
#include <string>
#include <vector>

#include "compare/metrics.hpp"
#include "compare/registry.hpp"

namespace jb::cmp {

// Which gate applies: chosen from the case's "dtype" parameter (fp32 -> Fp32, anything else or
// absent -> Bf16) and the tensor's CheckKind (Exact -> Exact whatever the dtype).
enum class Path { Bf16, Fp32, Exact };
const char* path_name(Path p);
Path path_for(const Case& c, CheckKind kind);

// The numbers a tensor was judged against (all recorded in the result JSON). Limits that do not
// apply to the path are 0 and not checked.
struct Thresholds {
  Path path = Path::Bf16;
  double factor = 0;           // bf16: f (2 elementwise/reduction, 3 scan/state/cache)
  double atol_floor = 0;       // bf16: 2 * ulp_bf16(max |R_hi|)
  double max_abs_limit = 0;    // bf16: f*max_abs(R_lp) + atol_floor; fp32: 1e-6 + 1e-5*max|R_hi|
  double rel_l2_limit = 0;     // bf16: f*rel_l2(R_lp) + 1e-6; fp32: fixed per kind
  double backstop_rel_l2 = 0;  // bf16: 1e-2
  double backstop_cosine = 0;  // bf16: 0.9999
};

struct Verdict {
  bool pass = false;
  Thresholds thresholds;
  std::vector<std::string> failures;  // one line per violated condition, with the numbers
  // Ratio of the kernel's rel_l2 to the bf16 reference's own rel_l2 (inf if the latter is 0 and
  // the former is not; 0 if both are 0). Informational: "how much worse than bf16 itself".
  double lp_ratio = 0;
};

// The gate factor of ecosystem.md §1.8: 2 for Elementwise/Reduction, 3 for Scan/State/Cache.
double bf16_factor(CheckKind kind);
// fp32 rel_l2 limit: 1e-6 elementwise, 1e-5 reductions/cache, 1e-5*max(1, L/4096) scan/state.
double fp32_rel_l2_limit(CheckKind kind, int64_t seq_len);

// kernel: K vs R_hi; lp: R_lp vs R_hi. seq_len: the case's "L" (scan gate scaling), 0 if none.
Verdict judge(Path path, CheckKind kind, const Metrics& kernel, const Metrics& lp, int64_t seq_len);

// Convenience: path from the case, seq_len from its "L" parameter when present.
Verdict judge(const Case& c, CheckKind kind, const Metrics& kernel, const Metrics& lp);

}  // namespace jb::cmp
