// ExpertsInt8 quantiser with vLLM's exact bf16 arithmetic (ecosystem.md §1.8 "Quantizer
// exactness"): every intermediate is a bf16 value, torch.round is half-to-even.
#include "reference/quant_int8.hpp"

#include <cfenv>
#include <cmath>
#include <string>

#include "core/bf16.hpp"
#include "core/error.hpp"

namespace jb::ref {

namespace {
// Restores the caller's rounding mode on every exit path.
struct RoundToNearest {
  int saved = std::fegetround();
  RoundToNearest() { std::fesetround(FE_TONEAREST); }
  ~RoundToNearest() { std::fesetround(saved); }
};
}  // namespace

QuantizedMatrix quantize_int8(const float* w, int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0 || (rows * cols > 0 && w == nullptr))
    fail(ErrorKind::Shape,
         "quantize_int8: bad matrix [" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
  const RoundToNearest mode;
  QuantizedMatrix m;
  m.rows = rows;
  m.cols = cols;
  m.q.assign(static_cast<size_t>(rows * cols), 0);
  m.scale.assign(static_cast<size_t>(rows), 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = w + r * cols;
    // max |w| over bf16 values is itself a bf16 value (exact).
    float amax = 0.0f;
    for (int64_t j = 0; j < cols; ++j) amax = std::max(amax, std::fabs(round_bf16(row[j])));
    // bf16 / python scalar 127: computed in fp32, stored bf16.
    const float scale = round_bf16(amax / 127.0f);
    m.scale[r] = scale;
    if (scale == 0.0f) continue;  // all-zero row (vLLM would give NaN): q = 0, scale = 0
    for (int64_t j = 0; j < cols; ++j) {
      const float quotient = round_bf16(round_bf16(row[j]) / scale);  // w.div_(scales) in bf16
      float qv = std::nearbyint(quotient);                            // w.round_(): half to even
      qv = std::min(127.0f, std::max(-127.0f, qv));                   // w.clamp_(-127, 127)
      m.q[static_cast<size_t>(r * cols + j)] = static_cast<int8_t>(qv);
    }
  }
  return m;
}

std::vector<float> dequantize_int8(const QuantizedMatrix& m) {
  std::vector<float> out(static_cast<size_t>(m.rows * m.cols));
  for (int64_t r = 0; r < m.rows; ++r)
    for (int64_t j = 0; j < m.cols; ++j) {
      const size_t i = static_cast<size_t>(r * m.cols + j);
      out[i] = static_cast<float>(m.q[i]) * m.scale[static_cast<size_t>(r)];
    }
  return out;
}

}  // namespace jb::ref
