// The CPU half of the RMS_NORM registry entry (case grid, inputs, references), shared by
// compare/ops/norm.cpp (CUDA builds, adds the kernel) and compare/ops/cpu_listings.cpp (CPU
// builds).
//
// Case parameters: rows, n (normalised length), dtype (bf16 | fp32), optional stride (row stride
// of x in elements, >= n: a column slice of a wider activation such as x_proj's [L, R+2N] output),
// xscale (input magnitude, default 1; 1e-3 makes eps = 1e-6 matter), eps (default 1e-6, Jamba's
// rms_norm_eps), big=1.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "compare/registry.hpp"
#include "core/bf16.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "reference/rmsnorm.hpp"

namespace jb::cmp::norm {

struct RmsNormInputs {
  int64_t rows = 0, n = 0, stride = 0;
  float eps = 1e-6f;
  bool fp32 = false;
  std::vector<float> x;       // [rows, stride]: exactly the values the kernel receives
  std::vector<float> weight;  // [n]
};

// Inputs keyed by (seed, tensor name, flat index) (core/rng.hpp). Values are rounded to bf16 for
// bf16 cases, so both references see exactly the kernel's inputs. Columns n..stride-1 of x are
// filled too: a kernel that reads the wrong columns gets different numbers.
inline RmsNormInputs rmsnorm_inputs(const Case& c) {
  RmsNormInputs in;
  in.rows = c.geti("rows");
  in.n = c.geti("n");
  in.stride = c.has("stride") ? c.geti("stride") : in.n;
  in.eps = c.has("eps") ? static_cast<float>(c.getf("eps")) : 1e-6f;
  const std::string dt = c.dtype();
  if (dt != "bf16" && dt != "fp32")
    fail(ErrorKind::Usage, "RMS_NORM: dtype must be bf16 or fp32, got '" + dt + "'");
  in.fp32 = dt == "fp32";
  if (in.rows < 0 || in.n < 1 || in.stride < in.n)
    fail(ErrorKind::Usage, "RMS_NORM: need rows >= 0, n >= 1, stride >= n in " + c.str());
  const float xscale = c.has("xscale") ? static_cast<float>(c.getf("xscale")) : 1.0f;
  const uint64_t sx = stream_id("RMS_NORM.x"), sw = stream_id("RMS_NORM.weight");
  in.x.resize(static_cast<size_t>(in.rows * in.stride));
  for (size_t i = 0; i < in.x.size(); ++i) {
    const float v = rng_normal(c.seed, sx, i) * xscale;
    in.x[i] = in.fp32 ? v : round_bf16(v);
  }
  // Norm weights near 1 (trained Jamba norms are O(1) with spread).
  in.weight.resize(static_cast<size_t>(in.n));
  for (size_t j = 0; j < in.weight.size(); ++j) {
    const float v = rng_normal(c.seed, sw, j, 1.0f, 0.25f);
    in.weight[j] = in.fp32 ? v : round_bf16(v);
  }
  return in;
}

template <class T>
Outputs rmsnorm_reference_t(const RmsNormInputs& in, ref::Round round) {
  ref::Mat<T> x(in.rows, in.n);
  for (int64_t r = 0; r < in.rows; ++r)
    for (int64_t j = 0; j < in.n; ++j) x(r, j) = static_cast<T>(in.x[r * in.stride + j]);
  ref::Vec<T> w(in.n);
  for (int64_t j = 0; j < in.n; ++j) w(j) = static_cast<T>(in.weight[j]);
  // eps goes through float as in the kernel, so both see the same constant.
  const ref::Mat<T> y = ref::rmsnorm<T>(x, w, static_cast<double>(in.eps), round);
  NamedTensor out;
  out.name = "y";
  out.shape = {in.rows, in.n};
  out.kind = CheckKind::Reduction;  // a norm: each output depends on a reduction over the row
  out.values.resize(static_cast<size_t>(in.rows * in.n));
  for (int64_t r = 0; r < in.rows; ++r)
    for (int64_t j = 0; j < in.n; ++j) out.values[r * in.n + j] = static_cast<float>(y(r, j));
  return {out};
}

// Truth: fp64 on the (rounded) inputs, no rounding. Bf16: fp32 with one bf16 rounding at the
// output (the kernel contract); for dtype=fp32 cases the fp32 reference without rounding.
inline Outputs rmsnorm_reference(const Case& c, Precision p) {
  const RmsNormInputs in = rmsnorm_inputs(c);
  if (p == Precision::Truth) return rmsnorm_reference_t<double>(in, ref::Round::None);
  return rmsnorm_reference_t<float>(in, in.fp32 ? ref::Round::None : ref::Round::Bf16);
}

inline std::vector<Case> rmsnorm_cases() {
  std::vector<Case> v;
  auto add = [&](int64_t rows, int64_t n, const char* dtype, uint64_t seed,
                 std::vector<std::pair<std::string, std::string>> extra = {}) {
    Case c;
    c.op = "RMS_NORM";
    c.set("rows", rows).set("n", n).set("dtype", dtype);
    for (auto& kv : extra) c.set(kv.first, kv.second);
    c.seed = seed;
    v.push_back(c);
  };
  // n: 16 (B/C inner norms, thread_row), 256 (dt inner norm R of d_model 4096, warp), 4096 and
  // 8192 (d_model of Jamba-1.5-Mini / Large, block), 4095 (scalar fallback of the block path).
  for (int64_t n : {16, 256, 4096})
    for (int64_t rows : {1, 7, 4096}) add(rows, n, "bf16", 1);
  add(1, 4095, "bf16", 1);
  add(7, 4095, "bf16", 1);
  add(4096, 4095, "bf16", 1);
  add(1, 8192, "bf16", 1);
  add(7, 8192, "bf16", 1);
  add(4096, 8192, "bf16", 1, {{"big", "1"}});  // 32M elements: slow on the CPU side
  // Edges: warp path with a vectorisable and a scalar odd length; n = 1; strided B slice of x_proj
  // output [L, R + 2N] = [., 256 + 32] (16-byte aligned stride) and an odd stride (scalar path).
  add(7, 40, "bf16", 1);
  add(7, 33, "bf16", 1);
  add(3, 1, "bf16", 1);
  add(4096, 16, "bf16", 1, {{"stride", "288"}});
  add(7, 256, "bf16", 1, {{"stride", "291"}});
  // Input scale: tiny inputs where eps is comparable to mean(x^2); large inputs.
  add(7, 4096, "bf16", 1, {{"xscale", "0.001"}});
  add(7, 256, "bf16", 1, {{"xscale", "1000"}});
  // More seeds on the shapes the model uses most.
  add(7, 4096, "bf16", 2);
  add(4096, 16, "bf16", 2);
  // fp32 kernels (fp32 gates).
  add(4096, 16, "fp32", 1);
  add(7, 4096, "fp32", 1);
  add(7, 4095, "fp32", 1);
  add(7, 256, "fp32", 1);
  return v;
}

// Registry entry without a kernel (cpu_listings.cpp); norm.cpp adds the kernel.
inline OpInfo rmsnorm_op_listing() {
  OpInfo op;
  op.name = "RMS_NORM";
  op.family = "norm";
  op.description =
      "RMSNorm over the last dim, fp32 reduction, one output rounding (jamba-spec §2.2)";
  op.cases = rmsnorm_cases;
  op.reference = rmsnorm_reference;
  op.bytes = [](const Case& c) {
    const double elem = c.dtype() == "fp32" ? 4.0 : 2.0;
    const double rows = static_cast<double>(c.geti("rows")), n = static_cast<double>(c.geti("n"));
    return elem * (2.0 * rows * n + n);  // read x, write y, read weight
  };
  op.flops = [](const Case& c) {
    return 4.0 * static_cast<double>(c.geti("rows")) * static_cast<double>(c.geti("n"));
  };
  return op;
}

}  // namespace jb::cmp::norm
