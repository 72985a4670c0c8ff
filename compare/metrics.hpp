// Error metrics of one compared tensor against a reference (ecosystem.md §1.8 "Metrics computed
// for every compared tensor"). Everything is accumulated in double so that the metric itself adds
// no error comparable to the bf16/fp32 errors it measures.
//
// Non-finite values follow llama.cpp test-backend-ops (ecosystem.md §1.3): before any numeric
// metric, the two values at each index are checked:
//   * both +inf, or both -inf (FLT_MAX counts as +inf, -FLT_MAX as -inf): a match, and the index
//     is left out of the numeric metrics;
//   * one side infinite and the other finite, or infinities of opposite sign: a mismatch;
//   * a NaN on either side: a mismatch (a NaN in the reference means the case itself is broken,
//     which must not pass either).
// Mismatched indices are also left out of the numeric metrics (they would make them NaN); the
// policy fails any tensor with nonfinite_mismatches > 0, so nothing is hidden.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace jb::cmp {

struct Metrics {
  int64_t count = 0;         // elements compared
  int64_t finite_count = 0;  // elements in the numeric metrics below
  double max_abs = 0;        // max |out - ref|
  double rel_l2 = 0;         // ||out - ref||_2 / ||ref||_2 (0/0 := 0, x/0 := inf)
  double cosine = 1;         // <out,ref> / (||out|| ||ref||) (both zero := 1)
  double ref_max_abs = 0;    // max |ref| (finite elements): scale of the atol floor
  double ref_l2 = 0;         // ||ref||_2
  int64_t worst_index = -1;  // argmax |out - ref| (first on ties), -1 if none
  double worst_out = 0, worst_ref = 0;
  int64_t nonfinite_mismatches = 0;  // llama.cpp rules above
  int64_t first_nonfinite_index = -1;
  double first_nonfinite_out = 0, first_nonfinite_ref = 0;
  int64_t inf_matches = 0;     // same-sign infinities (allowed)
  int64_t bit_mismatches = 0;  // elements whose fp32 bit patterns differ (Exact kind)
};

// out and ref have n elements each.
Metrics compute_metrics(const float* out, const float* ref, size_t n);
Metrics compute_metrics(const std::vector<float>& out, const std::vector<float>& ref);

// True for +-inf and +-FLT_MAX (llama.cpp's isinf_or_max).
bool is_inf_or_max(float v);

// One point of the per-position error curve: positions [pos_begin, pos_end) pooled together.
struct CurvePoint {
  int64_t pos_begin = 0, pos_end = 0;
  double rel_l2 = 0;   // ||out - ref|| / ||ref|| over the pooled elements (finite pairs only)
  double max_abs = 0;  // max |out - ref| over them
};

// Per-position error curve for a tensor of `shape` whose axis `position_axis` indexes sequence
// positions (e.g. [B, L, D] with axis 1). With more than max_points positions, consecutive
// positions are pooled into max_points buckets of equal width (the last may be shorter), so a
// 64K-long scan gives a 64-point curve of how the error grows with position.
std::vector<CurvePoint> error_curve(const float* out, const float* ref,
                                    const std::vector<int64_t>& shape, int position_axis,
                                    int max_points = 64);

// The unit in the last place of a bf16 number of magnitude |x|: 2^(floor(log2|x|) - 7) for
// normal x, and the smallest subnormal step 2^-133 for |x| below the normal range (and for 0).
double ulp_bf16(double x);

}  // namespace jb::cmp
