#pragma once
#include <cstdint>
#include <vector>

namespace jb::ref {

// ExpertsInt8 (jamba-spec §6.6, ecosystem.md §1.8): symmetric per-output-channel int8 with the
// exact arithmetic of vLLM's quantize_in_place_and_get_scales on a bf16 weight:
//   scale[r] = bf16(max_j |W[r,j]| / 127)            (computed in bf16)
//   q[r,j]   = clamp(rne(bf16(W[r,j] / scale[r])), -127, 127)   (round half to even)
// An all-zero row gives scale 0 and q = 0 (instead of NaN). Scales are stored as fp32 values.
struct QuantizedMatrix {
  int64_t rows = 0, cols = 0;
  std::vector<int8_t> q;     // [rows, cols]
  std::vector<float> scale;  // [rows]
};

// w: [rows, cols] row-major, values that are bf16-representable (they are rounded first).
QuantizedMatrix quantize_int8(const float* w, int64_t rows, int64_t cols);
// out[r, j] = q[r, j] * scale[r] in fp32.
std::vector<float> dequantize_int8(const QuantizedMatrix& m);

}  // namespace jb::ref
