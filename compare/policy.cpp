#include "compare/policy.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace jb::cmp {

namespace {

std::string fmt(const char* f, double a, double b) {
  char buf[160];
  std::snprintf(buf, sizeof buf, f, a, b);
  return buf;
}

}  // namespace

const char* path_name(Path p) {
  switch (p) {
    case Path::Bf16:
      return "bf16";
    case Path::Fp32:
      return "fp32";
    case Path::Exact:
      return "exact";
  }
  return "unknown";
}

Path path_for(const Case& c, CheckKind kind) {
  if (kind == CheckKind::Exact) return Path::Exact;
  return c.dtype() == "fp32" ? Path::Fp32 : Path::Bf16;
}

double bf16_factor(CheckKind kind) {
  switch (kind) {
    case CheckKind::Elementwise:
    case CheckKind::Reduction:
      return 2.0;  // FlashAttention's default (ecosystem.md §1.1)
    case CheckKind::Scan:
    case CheckKind::State:
    case CheckKind::Cache:
      return 3.0;  // FlashAttention's KV-cache factor; state error accumulates
    case CheckKind::Exact:
      return 0.0;
  }
  return 2.0;
}

double fp32_rel_l2_limit(CheckKind kind, int64_t seq_len) {
  switch (kind) {
    case CheckKind::Elementwise:
      return 1e-6;
    case CheckKind::Reduction:
    case CheckKind::Cache:
      return 1e-5;
    case CheckKind::Scan:
    case CheckKind::State:
      // fp32 rounding error of a recurrence grows with its length (ecosystem.md §1.8 fp32 row).
      return 1e-5 * std::max(1.0, static_cast<double>(seq_len) / 4096.0);
    case CheckKind::Exact:
      return 0.0;
  }
  return 1e-5;
}

Verdict judge(Path path, CheckKind kind, const Metrics& k, const Metrics& lp, int64_t seq_len) {
  Verdict v;
  Thresholds& t = v.thresholds;
  t.path = path;
  if (lp.rel_l2 > 0)
    v.lp_ratio = k.rel_l2 / lp.rel_l2;
  else
    v.lp_ratio = k.rel_l2 > 0 ? std::numeric_limits<double>::infinity() : 0.0;

  // Non-finite mismatches fail on every path (llama.cpp rules, metrics.hpp).
  if (k.nonfinite_mismatches > 0)
    v.failures.push_back(
        "non-finite mismatches: " + std::to_string(k.nonfinite_mismatches) + " (first at index " +
        std::to_string(k.first_nonfinite_index) +
        fmt(": kernel %.9g, truth %.9g)", k.first_nonfinite_out, k.first_nonfinite_ref));

  // NaN-safe comparisons: "!(x <= limit)" fails on NaN as well.
  auto check = [&](const char* what, double value, double limit) {
    if (!(value <= limit))
      v.failures.push_back(std::string(what) + fmt(" %.6g > limit %.6g", value, limit));
  };

  switch (path) {
    case Path::Exact:
      if (k.bit_mismatches > 0)
        v.failures.push_back("exact: " + std::to_string(k.bit_mismatches) + " of " +
                             std::to_string(k.count) + " elements differ bitwise" +
                             fmt(" (max_abs %.6g at worst, truth %.9g)", k.max_abs, k.worst_ref));
      break;
    case Path::Fp32:
      t.rel_l2_limit = fp32_rel_l2_limit(kind, seq_len);
      check("fp32 rel_l2", k.rel_l2, t.rel_l2_limit);
      if (kind == CheckKind::Elementwise) {
        // Whole-tensor form of allclose(rtol 1e-5, atol 1e-6) (ecosystem.md §1.8 fp32 row).
        t.max_abs_limit = 1e-6 + 1e-5 * k.ref_max_abs;
        check("fp32 max_abs", k.max_abs, t.max_abs_limit);
      }
      break;
    case Path::Bf16: {
      t.factor = bf16_factor(kind);
      // FlashAttention-3 floor: twice the rounding error of arithmetic at the output's scale. It
      // keeps the gate meaningful when R_lp's own error is exactly 0.
      t.atol_floor = 2.0 * ulp_bf16(k.ref_max_abs);
      t.max_abs_limit = t.factor * lp.max_abs + t.atol_floor;
      t.rel_l2_limit = t.factor * lp.rel_l2 + 1e-6;
      // Backstops: the ratio rule alone accepts anything when R_lp itself is badly off.
      t.backstop_rel_l2 = 1e-2;
      t.backstop_cosine = 0.9999;
      check("max_abs", k.max_abs, t.max_abs_limit);
      check("rel_l2", k.rel_l2, t.rel_l2_limit);
      check("backstop rel_l2", k.rel_l2, t.backstop_rel_l2);
      if (!(k.cosine >= t.backstop_cosine))
        v.failures.push_back(fmt("backstop cosine %.9g < limit %.6g", k.cosine, t.backstop_cosine));
      break;
    }
  }
  v.pass = v.failures.empty();
  return v;
}

Verdict judge(const Case& c, CheckKind kind, const Metrics& kernel, const Metrics& lp) {
  int64_t seq_len = 0;
  if (c.has("L")) seq_len = c.geti("L");
  return judge(path_for(c, kind), kind, kernel, lp, seq_len);
}

}  // namespace jb::cmp
