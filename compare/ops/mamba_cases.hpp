// The CPU half of the Mamba-path registry entries (case grids, inputs, references), usable by
// compare/ops/mamba.cpp (CUDA builds, adds the kernels) and by the CPU-only listing
// (cpu_listings.cpp registers mamba::listings()).
//
// Ops and parameters (all bf16 storage; every input keyed by (seed, "OP.tensor", flat index)):
//   CONV1D(L, D, B, K, state=0|1, xstride=1|2)        prefill conv + bias + SiLU, final state
//   CONV1D_UPDATE(D, B, K, steps)                      `steps` decode steps from a random state
//   SSM_SCAN(L, D, N, B, state, zstride, bcpad, dtedge=none|big|tiny, underflow=0|1,
//            variant=auto|single|chunked, chunk, tile=auto|g4|ws)
//                                                      prefill scan, final state
//   SSM_UPDATE(D, N, B, steps, dtedge)                 `steps` decode steps from a random state
//   MAMBA_LAYER(d, B, L, n)                            prefill L tokens, then n decode steps
// Distributions (ecosystem.md §1.8): A = -exp(A_log) with A_log = log(n+1) + U(-0.05, 0.05)
// (A in [-16, -1]); dt_bias = softplus^-1(delta0), delta0 = exp(U[log 1e-3, log 1e-1]); dt (the
// dt_proj output) ~ N(0, 0.25). dtedge=big: dt ~ N(21, 2) (both branches of the threshold-20
// softplus); dtedge=tiny: delta0 in [1e-6, 1e-5] (exp(delta A) ~ 1: long memory);
// underflow=1: A_log += log(300), so exp(delta A) underflows to 0.
//
// References: Truth = double, Round::None; Bf16 = float, Round::Bf16; both on the bf16-rounded
// inputs the kernel receives. The per-channel scan and conv are independent, so the references
// run channel groups on std::thread (results do not depend on the thread count): the L = 64K
// cases at d_inner 8192 take seconds, not minutes.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "compare/registry.hpp"
#include "core/bf16.hpp"
#include "core/config.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "reference/causal_conv1d.hpp"
#include "reference/mamba_layer.hpp"
#include "reference/selective_scan.hpp"

namespace jb::cmp::mamba {

using ref::Mat;
using ref::Round;
using ref::Vec;

// ---------------------------------------------------------------------------------------------
// Helpers

// Runs fn(i) for i in [0, n) on up to hardware_concurrency threads (static striding). Each task
// must write only its own outputs, so the result is independent of the thread count.
template <class F>
void parallel_for(int64_t n, F fn) {
  int64_t nt = static_cast<int64_t>(std::max(1u, std::thread::hardware_concurrency()));
  nt = std::min(nt, n);
  if (nt <= 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::vector<std::thread> th;
  for (int64_t k = 0; k < nt; ++k)
    th.emplace_back([&, k] {
      for (int64_t i = k; i < n; i += nt) fn(i);
    });
  for (auto& t : th) t.join();
}

enum class Dist { Normal, Uniform };

// n values of (seed, stream_id(name), index), optionally rounded to bf16; generated in parallel.
inline std::vector<float> gen(uint64_t seed, const std::string& name, size_t n, Dist d, float a,
                              float b, bool bf16) {
  std::vector<float> v(n);
  const uint64_t sid = stream_id(name.c_str());
  const int64_t chunk = 1 << 16;
  parallel_for(static_cast<int64_t>((n + chunk - 1) / chunk), [&](int64_t k) {
    const size_t e = std::min(n, static_cast<size_t>((k + 1) * chunk));
    for (size_t i = static_cast<size_t>(k * chunk); i < e; ++i) {
      const float x =
          d == Dist::Normal ? rng_normal(seed, sid, i, a, b) : rng_uniform(seed, sid, i, a, b);
      v[i] = bf16 ? round_bf16(x) : x;
    }
  });
  return v;
}

template <class T>
Mat<T> to_mat(const std::vector<float>& v, int64_t rows, int64_t cols) {
  Mat<T> m(rows, cols);
  for (int64_t i = 0; i < rows * cols; ++i) m.data()[i] = static_cast<T>(v[i]);
  return m;
}
template <class T>
Vec<T> to_vec(const std::vector<float>& v) {
  Vec<T> m(static_cast<int64_t>(v.size()));
  for (size_t i = 0; i < v.size(); ++i) m(static_cast<int64_t>(i)) = static_cast<T>(v[i]);
  return m;
}

inline int64_t geti_or(const Case& c, const char* k, int64_t def) {
  return c.has(k) ? c.geti(k) : def;
}
inline std::string get_or(const Case& c, const char* k, const std::string& def) {
  return c.has(k) ? c.get(k) : def;
}

// Channel groups for the threaded references: about 4 tasks per core, at least 8 channels.
inline int64_t group_width(int64_t D, int64_t batch) {
  const int64_t cores = static_cast<int64_t>(std::max(1u, std::thread::hardware_concurrency()));
  const int64_t want = std::max<int64_t>(1, 4 * cores / std::max<int64_t>(1, batch));
  return std::max<int64_t>(8, (D + want - 1) / want);
}

inline NamedTensor tensor(const std::string& name, std::vector<int64_t> shape,
                          std::vector<float> values, CheckKind kind, int position_axis = -1) {
  NamedTensor t;
  t.name = name;
  t.shape = std::move(shape);
  t.values = std::move(values);
  t.kind = kind;
  t.position_axis = position_axis;
  return t;
}

// ---------------------------------------------------------------------------------------------
// Causal conv1d (prefill and update share the inputs: the update is the L = steps case of the
// same function, jamba-spec §2.5, one token at a time).

struct ConvInputs {
  int64_t B = 1, L = 0, D = 0, K = 4;
  bool has_state = false;
  int64_t xstride = 1;        // x lives in a [B, L, xstride*D] buffer, columns [0, D)
  std::vector<float> x;       // [B, L, D]
  std::vector<float> weight;  // [D, K] (bf16 values: checkpoint weights are bf16)
  std::vector<float> bias;    // [D]
  std::vector<float> state;   // [B, D, K] (zeros when !has_state)
};

inline ConvInputs conv_inputs(const Case& c, bool update) {
  ConvInputs in;
  const std::string op = c.op;
  in.B = geti_or(c, "B", 1);
  in.L = update ? geti_or(c, "steps", 1) : c.geti("L");
  in.D = c.geti("D");
  in.K = geti_or(c, "K", 4);
  in.has_state = update || geti_or(c, "state", 0) != 0;
  in.xstride = geti_or(c, "xstride", 1);
  if (in.B < 1 || in.L < 1 || in.D < 1 || in.K < 1 || in.K > 4 || in.xstride < 1)
    fail(ErrorKind::Usage, op + ": bad parameters in " + c.str());
  const float wb = 1.0f / std::sqrt(static_cast<float>(in.K));  // nn.Conv1d init bound
  in.x = gen(c.seed, op + ".x", static_cast<size_t>(in.B * in.L * in.D), Dist::Normal, 0, 1, true);
  in.weight =
      gen(c.seed, op + ".weight", static_cast<size_t>(in.D * in.K), Dist::Uniform, -wb, wb, true);
  in.bias = gen(c.seed, op + ".bias", static_cast<size_t>(in.D), Dist::Uniform, -wb, wb, true);
  const size_t ns = static_cast<size_t>(in.B * in.D * in.K);
  in.state = in.has_state ? gen(c.seed, op + ".state", ns, Dist::Normal, 0, 1, true)
                          : std::vector<float>(ns, 0.0f);
  return in;
}

template <class T>
Outputs conv_reference_t(const ConvInputs& in, Round r) {
  const int64_t B = in.B, L = in.L, D = in.D, K = in.K;
  std::vector<float> y(static_cast<size_t>(B * L * D)), st(static_cast<size_t>(B * D * K));
  const int64_t gw = group_width(D, B);
  const int64_t ng = (D + gw - 1) / gw;
  parallel_for(B * ng, [&](int64_t task) {
    const int64_t b = task / ng, c0 = (task % ng) * gw, w = std::min(gw, D - c0);
    Mat<T> x(L, w), wt(w, K), state(w, K);
    Vec<T> bias(w);
    for (int64_t t = 0; t < L; ++t)
      for (int64_t c = 0; c < w; ++c) x(t, c) = in.x[(b * L + t) * D + c0 + c];
    for (int64_t c = 0; c < w; ++c) {
      bias(c) = in.bias[c0 + c];
      for (int64_t j = 0; j < K; ++j) {
        wt(c, j) = in.weight[(c0 + c) * K + j];
        state(c, j) = in.state[(b * D + c0 + c) * K + j];
      }
    }
    const Mat<T> out = ref::causal_conv1d<T>(x, wt, bias, &state, /*silu_act=*/true, r);
    for (int64_t t = 0; t < L; ++t)
      for (int64_t c = 0; c < w; ++c) y[(b * L + t) * D + c0 + c] = static_cast<float>(out(t, c));
    for (int64_t c = 0; c < w; ++c)
      for (int64_t j = 0; j < K; ++j)
        st[(b * D + c0 + c) * K + j] = static_cast<float>(state(c, j));
  });
  return {tensor("y", {B, L, D}, std::move(y), CheckKind::Reduction, 1),
          tensor("conv_state", {B, D, K}, std::move(st), CheckKind::State)};
}

inline Outputs conv_reference(const ConvInputs& in, Precision p) {
  return p == Precision::Truth ? conv_reference_t<double>(in, Round::None)
                               : conv_reference_t<float>(in, Round::Bf16);
}

// ---------------------------------------------------------------------------------------------
// Selective scan (prefill) and state update (decode = the scan over `steps` tokens from a state)

struct ScanInputsHost {
  int64_t B = 1, L = 0, D = 0, N = 16;
  bool has_state = false;
  int64_t zstride = 1;  // z lives in a [B, L, zstride*D] buffer, columns [(zstride-1)*D, zstride*D)
  int64_t bcpad = 0;    // B, C live in a [B, L, bcpad + 2N] buffer at columns bcpad, bcpad + N
  std::vector<float> u, dt, z;  // [B, L, D] bf16 values
  std::vector<float> Bm, Cm;    // [B, L, N] bf16 values
  std::vector<float> dt_bias;   // [D] fp32
  std::vector<float> A_log;     // [D, N] fp32
  std::vector<float> Dskip;     // [D] fp32
  std::vector<float> state;     // [B, D, N] fp32 (zeros when !has_state)
};

inline ScanInputsHost scan_inputs(const Case& c, bool update) {
  ScanInputsHost in;
  const std::string op = c.op;
  in.B = geti_or(c, "B", 1);
  in.L = update ? geti_or(c, "steps", 1) : c.geti("L");
  in.D = c.geti("D");
  in.N = geti_or(c, "N", 16);
  in.has_state = update || geti_or(c, "state", 0) != 0;
  in.zstride = geti_or(c, "zstride", 1);
  in.bcpad = geti_or(c, "bcpad", 0);
  if (in.B < 1 || in.L < 1 || in.D < 1 || in.N < 1 || in.N > 16 || in.zstride < 1 || in.bcpad < 0)
    fail(ErrorKind::Usage, op + ": bad parameters in " + c.str());
  const std::string dtedge = get_or(c, "dtedge", "none");
  if (dtedge != "none" && dtedge != "big" && dtedge != "tiny")
    fail(ErrorKind::Usage, op + ": dtedge must be none, big or tiny in " + c.str());
  const bool underflow = geti_or(c, "underflow", 0) != 0;
  const size_t nld = static_cast<size_t>(in.B * in.L * in.D);
  const size_t nln = static_cast<size_t>(in.B * in.L * in.N);
  in.u = gen(c.seed, op + ".u", nld, Dist::Normal, 0, 1, true);
  in.dt = dtedge == "big" ? gen(c.seed, op + ".dt", nld, Dist::Normal, 21.0f, 2.0f, true)
                          : gen(c.seed, op + ".dt", nld, Dist::Normal, 0, 0.25f, true);
  in.z = gen(c.seed, op + ".z", nld, Dist::Normal, 0, 1, true);
  in.Bm = gen(c.seed, op + ".B", nln, Dist::Normal, 0, 1, true);
  in.Cm = gen(c.seed, op + ".C", nln, Dist::Normal, 0, 1, true);
  // dt_bias = softplus^-1(delta0) = log(expm1(delta0)), computed in double (Mamba's init).
  const bool tiny = dtedge == "tiny";
  const std::vector<float> ub = gen(c.seed, op + ".dt_bias", static_cast<size_t>(in.D),
                                    Dist::Uniform, static_cast<float>(std::log(tiny ? 1e-6 : 1e-3)),
                                    static_cast<float>(std::log(tiny ? 1e-5 : 1e-1)), false);
  in.dt_bias.resize(ub.size());
  for (size_t i = 0; i < ub.size(); ++i)
    in.dt_bias[i] =
        dtedge == "big" ? 0.0f : static_cast<float>(std::log(std::expm1(std::exp(double(ub[i])))));
  const std::vector<float> jit = gen(c.seed, op + ".A_log", static_cast<size_t>(in.D * in.N),
                                     Dist::Uniform, -0.05f, 0.05f, false);
  in.A_log.resize(jit.size());
  for (int64_t d = 0; d < in.D; ++d)
    for (int64_t n = 0; n < in.N; ++n) {
      double v = std::log(double(n + 1)) + jit[d * in.N + n];
      if (underflow) v += std::log(300.0);
      in.A_log[d * in.N + n] = static_cast<float>(v);
    }
  in.Dskip = gen(c.seed, op + ".D", static_cast<size_t>(in.D), Dist::Uniform, 0.5f, 1.5f, false);
  const size_t ns = static_cast<size_t>(in.B * in.D * in.N);
  in.state = in.has_state ? gen(c.seed, op + ".state", ns, Dist::Normal, 0, 0.5f, false)
                          : std::vector<float>(ns, 0.0f);
  return in;
}

template <class T>
Outputs scan_reference_t(const ScanInputsHost& in, Round r) {
  const int64_t B = in.B, L = in.L, D = in.D, N = in.N;
  std::vector<float> y(static_cast<size_t>(B * L * D)), st(static_cast<size_t>(B * D * N));
  const int64_t gw = group_width(D, B);
  const int64_t ng = (D + gw - 1) / gw;
  parallel_for(B * ng, [&](int64_t task) {
    const int64_t b = task / ng, c0 = (task % ng) * gw, w = std::min(gw, D - c0);
    ref::ScanInputs<T> si;
    si.x.resize(L, w);
    si.dt.resize(L, w);
    si.z.resize(L, w);
    for (int64_t t = 0; t < L; ++t)
      for (int64_t c = 0; c < w; ++c) {
        const size_t i = static_cast<size_t>((b * L + t) * D + c0 + c);
        si.x(t, c) = in.u[i];
        si.dt(t, c) = in.dt[i];
        si.z(t, c) = in.z[i];
      }
    si.B.resize(L, N);
    si.C.resize(L, N);
    for (int64_t t = 0; t < L; ++t)
      for (int64_t n = 0; n < N; ++n) {
        si.B(t, n) = in.Bm[(b * L + t) * N + n];
        si.C(t, n) = in.Cm[(b * L + t) * N + n];
      }
    si.dt_bias.resize(w);
    si.Dskip.resize(w);
    si.A.resize(w, N);
    Mat<T> state(w, N);
    for (int64_t c = 0; c < w; ++c) {
      si.dt_bias(c) = in.dt_bias[c0 + c];
      si.Dskip(c) = in.Dskip[c0 + c];
      for (int64_t n = 0; n < N; ++n) {
        // A = -exp(A_log) in T (jamba-spec §2.4 step 8: fp32 in the kernel contract).
        si.A(c, n) = -std::exp(static_cast<T>(in.A_log[(c0 + c) * N + n]));
        state(c, n) = in.state[(b * D + c0 + c) * N + n];
      }
    }
    const Mat<T> out = ref::selective_scan<T>(si, &state, r);
    for (int64_t t = 0; t < L; ++t)
      for (int64_t c = 0; c < w; ++c) y[(b * L + t) * D + c0 + c] = static_cast<float>(out(t, c));
    for (int64_t c = 0; c < w; ++c)
      for (int64_t n = 0; n < N; ++n)
        st[(b * D + c0 + c) * N + n] = static_cast<float>(state(c, n));
  });
  return {tensor("y", {B, L, D}, std::move(y), CheckKind::Scan, 1),
          tensor("ssm_state", {B, D, N}, std::move(st), CheckKind::State)};
}

inline Outputs scan_reference(const ScanInputsHost& in, Precision p) {
  return p == Precision::Truth ? scan_reference_t<double>(in, Round::None)
                               : scan_reference_t<float>(in, Round::Bf16);
}

// ---------------------------------------------------------------------------------------------
// Mamba layer

inline ModelConfig layer_config(const Case& c) {
  ModelConfig m;
  m.name = "mamba-layer-test";
  m.model_type = "jamba";
  m.hidden_size = c.geti("d");
  m.mamba_expand = 2;
  m.mamba_d_state = 16;
  m.mamba_d_conv = 4;
  m.mamba_dt_rank = 0;  // auto: ceil(d / 16)
  m.mamba_conv_bias = true;
  m.mamba_proj_bias = false;
  m.mamba_inner_norms = true;
  m.rms_norm_eps = 1e-6;
  if (m.hidden_size < 1) fail(ErrorKind::Usage, "MAMBA_LAYER: bad d in " + c.str());
  return m;
}

inline int64_t dt_rank_of(const ModelConfig& m) {
  return m.mamba_dt_rank > 0 ? m.mamba_dt_rank : (m.hidden_size + 15) / 16;
}

struct LayerInputs {
  ModelConfig cfg;
  int64_t B = 1, L = 0, n = 0;
  // fp32 values in the reference layout (bf16-valued where the GPU stores bf16).
  std::vector<float> in_proj, conv_w, conv_b, x_proj, dt_proj, dt_bias, A_log, D, out_proj, dt_norm,
      b_norm, c_norm;
  std::vector<float> h;  // [B, L + n, d] bf16 values
};

inline LayerInputs layer_inputs(const Case& c) {
  LayerInputs in;
  in.cfg = layer_config(c);
  in.B = geti_or(c, "B", 1);
  in.L = c.geti("L");
  in.n = geti_or(c, "n", 0);
  if (in.B < 1 || in.L < 1 || in.n < 0) fail(ErrorKind::Usage, "MAMBA_LAYER: bad " + c.str());
  const int64_t d = in.cfg.hidden_size, Di = in.cfg.d_inner(), N = in.cfg.mamba_d_state,
                K = in.cfg.mamba_d_conv, R = dt_rank_of(in.cfg);
  const uint64_t s = c.seed;
  auto sz = [](int64_t v) { return static_cast<size_t>(v); };
  // Linear weights ~ N(0, 1/fan_in) so activations stay O(1) through the layer.
  in.in_proj = gen(s, "MAMBA_LAYER.in_proj", sz(2 * Di * d), Dist::Normal, 0,
                   1.0f / std::sqrt(float(d)), true);
  const float wb = 1.0f / std::sqrt(float(K));
  in.conv_w = gen(s, "MAMBA_LAYER.conv_w", sz(Di * K), Dist::Uniform, -wb, wb, true);
  in.conv_b = gen(s, "MAMBA_LAYER.conv_b", sz(Di), Dist::Uniform, -wb, wb, true);
  in.x_proj = gen(s, "MAMBA_LAYER.x_proj", sz((R + 2 * N) * Di), Dist::Normal, 0,
                  1.0f / std::sqrt(float(Di)), true);
  const float rb = 1.0f / std::sqrt(float(R));
  in.dt_proj = gen(s, "MAMBA_LAYER.dt_proj", sz(Di * R), Dist::Uniform, -rb, rb, true);
  const std::vector<float> ub = gen(s, "MAMBA_LAYER.dt_bias", sz(Di), Dist::Uniform,
                                    float(std::log(1e-3)), float(std::log(1e-1)), false);
  in.dt_bias.resize(ub.size());
  for (size_t i = 0; i < ub.size(); ++i)
    in.dt_bias[i] = static_cast<float>(std::log(std::expm1(std::exp(double(ub[i])))));
  const std::vector<float> jit =
      gen(s, "MAMBA_LAYER.A_log", sz(Di * N), Dist::Uniform, -0.05f, 0.05f, false);
  in.A_log.resize(jit.size());
  for (int64_t i = 0; i < Di; ++i)
    for (int64_t k = 0; k < N; ++k)
      in.A_log[i * N + k] = static_cast<float>(std::log(double(k + 1)) + jit[i * N + k]);
  in.D = gen(s, "MAMBA_LAYER.D", sz(Di), Dist::Uniform, 0.5f, 1.5f, false);
  in.out_proj = gen(s, "MAMBA_LAYER.out_proj", sz(d * Di), Dist::Normal, 0,
                    1.0f / std::sqrt(float(Di)), true);
  in.dt_norm = gen(s, "MAMBA_LAYER.dt_norm", sz(R), Dist::Uniform, 0.5f, 1.5f, true);
  in.b_norm = gen(s, "MAMBA_LAYER.b_norm", sz(N), Dist::Uniform, 0.5f, 1.5f, true);
  in.c_norm = gen(s, "MAMBA_LAYER.c_norm", sz(N), Dist::Uniform, 0.5f, 1.5f, true);
  in.h = gen(s, "MAMBA_LAYER.h", sz(in.B * (in.L + in.n) * d), Dist::Normal, 0, 1, true);
  return in;
}

template <class T>
ref::MambaWeights<T> layer_weights(const LayerInputs& in) {
  const int64_t d = in.cfg.hidden_size, Di = in.cfg.d_inner(), N = in.cfg.mamba_d_state,
                K = in.cfg.mamba_d_conv, R = dt_rank_of(in.cfg);
  ref::MambaWeights<T> w;
  w.in_proj = to_mat<T>(in.in_proj, 2 * Di, d);
  w.conv_w = to_mat<T>(in.conv_w, Di, K);
  w.conv_b = to_vec<T>(in.conv_b);
  w.x_proj = to_mat<T>(in.x_proj, R + 2 * N, Di);
  w.dt_proj = to_mat<T>(in.dt_proj, Di, R);
  w.dt_bias = to_vec<T>(in.dt_bias);
  w.A_log = to_mat<T>(in.A_log, Di, N);
  w.D = to_vec<T>(in.D);
  w.out_proj = to_mat<T>(in.out_proj, d, Di);
  w.dt_norm = to_vec<T>(in.dt_norm);
  w.b_norm = to_vec<T>(in.b_norm);
  w.c_norm = to_vec<T>(in.c_norm);
  return w;
}

// Outputs: prefill_out [B, L, d], decode_out [B, n, d] (if n > 0), conv_state [B, Di, K],
// ssm_state [B, Di, N]. The sequences run in parallel.
template <class T>
Outputs layer_reference_t(const LayerInputs& in, Round r) {
  const ModelConfig& cfg = in.cfg;
  const int64_t B = in.B, L = in.L, n = in.n, d = cfg.hidden_size, Di = cfg.d_inner(),
                N = cfg.mamba_d_state, K = cfg.mamba_d_conv;
  const ref::MambaWeights<T> w = layer_weights<T>(in);
  std::vector<float> pre(static_cast<size_t>(B * L * d)), dec(static_cast<size_t>(B * n * d)),
      cst(static_cast<size_t>(B * Di * K)), sst(static_cast<size_t>(B * Di * N));
  parallel_for(B, [&](int64_t b) {
    ref::MambaState<T> st = ref::MambaState<T>::zeros(cfg);
    const float* hb = in.h.data() + b * (L + n) * d;
    Mat<T> h(L, d);
    for (int64_t i = 0; i < L * d; ++i) h.data()[i] = hb[i];
    const Mat<T> o = ref::mamba_layer<T>(h, w, cfg, st, r);
    for (int64_t i = 0; i < L * d; ++i) pre[b * L * d + i] = static_cast<float>(o.data()[i]);
    for (int64_t s = 0; s < n; ++s) {
      Mat<T> ht(1, d);
      for (int64_t j = 0; j < d; ++j) ht(0, j) = hb[(L + s) * d + j];
      const Mat<T> ot = ref::mamba_layer<T>(ht, w, cfg, st, r);
      for (int64_t j = 0; j < d; ++j) dec[(b * n + s) * d + j] = static_cast<float>(ot(0, j));
    }
    for (int64_t c = 0; c < Di; ++c) {
      for (int64_t j = 0; j < K; ++j) cst[(b * Di + c) * K + j] = static_cast<float>(st.conv(c, j));
      for (int64_t j = 0; j < N; ++j) sst[(b * Di + c) * N + j] = static_cast<float>(st.ssm(c, j));
    }
  });
  // The layer output carries the scan's error: gated with the scan/state factor.
  Outputs out;
  out.push_back(tensor("prefill_out", {B, L, d}, std::move(pre), CheckKind::Scan, 1));
  if (n > 0) out.push_back(tensor("decode_out", {B, n, d}, std::move(dec), CheckKind::Scan, 1));
  out.push_back(tensor("conv_state", {B, Di, K}, std::move(cst), CheckKind::State));
  out.push_back(tensor("ssm_state", {B, Di, N}, std::move(sst), CheckKind::State));
  return out;
}

inline Outputs layer_reference(const LayerInputs& in, Precision p) {
  return p == Precision::Truth ? layer_reference_t<double>(in, Round::None)
                               : layer_reference_t<float>(in, Round::Bf16);
}

// ---------------------------------------------------------------------------------------------
// Case grids (ecosystem.md §1.8): the length ladder, batch 1 and 8, channel counts that are not
// multiples of any tile (2048+16, 1000, 24, 7), strided inputs, dt/A edges, forced variants.

inline const std::vector<int64_t>& ladder() {
  static const std::vector<int64_t> v = {1,   2,   3,    15,   16,   17,  127,
                                         128, 129, 2047, 2048, 2049, 4097};
  return v;
}

inline std::vector<Case> conv_cases() {
  std::vector<Case> v;
  for (int64_t L : ladder())
    v.push_back(make_case("CONV1D", {{"L", L},
                                     {"D", "2064"},
                                     {"B", "1"},
                                     {"K", "4"},
                                     {"state", L % 2},
                                     {"xstride", L % 3 == 0 ? "2" : "1"}}));
  for (const char* D : {"8192", "1000", "24", "7"})
    v.push_back(make_case(
        "CONV1D",
        {{"L", "129"}, {"D", D}, {"B", "1"}, {"K", "4"}, {"state", "1"}, {"xstride", "2"}}));
  for (const char* K : {"1", "2", "3"})
    v.push_back(
        make_case("CONV1D", {{"L", "17"}, {"D", "1000"}, {"B", "2"}, {"K", K}, {"state", "1"}}));
  v.push_back(
      make_case("CONV1D", {{"L", "2"}, {"D", "64"}, {"B", "3"}, {"K", "4"}, {"state", "1"}}));
  v.push_back(
      make_case("CONV1D", {{"L", "129"}, {"D", "1000"}, {"B", "8"}, {"K", "4"}, {"state", "1"}}));
  v.push_back(make_case("CONV1D", {{"L", "4097"},
                                   {"D", "8192"},
                                   {"B", "8"},
                                   {"K", "4"},
                                   {"state", "1"},
                                   {"xstride", "2"},
                                   {"big", "1"}}));
  v.push_back(
      make_case("CONV1D", {{"L", "16384"}, {"D", "8192"}, {"B", "1"}, {"K", "4"}, {"big", "1"}}));
  v.push_back(make_case(
      "CONV1D",
      {{"L", "65536"}, {"D", "8192"}, {"B", "1"}, {"K", "4"}, {"state", "1"}, {"big", "1"}}));
  return v;
}

inline std::vector<Case> conv_update_cases() {
  std::vector<Case> v;
  for (const char* B : {"1", "16", "256"})
    v.push_back(make_case("CONV1D_UPDATE", {{"D", "8192"}, {"B", B}, {"K", "4"}, {"steps", "3"}}));
  v.push_back(make_case("CONV1D_UPDATE", {{"D", "7"}, {"B", "3"}, {"K", "3"}, {"steps", "5"}}));
  v.push_back(make_case("CONV1D_UPDATE", {{"D", "1000"}, {"B", "8"}, {"K", "2"}, {"steps", "2"}}));
  return v;
}

inline std::vector<Case> scan_cases() {
  std::vector<Case> v;
  for (int64_t L : ladder())
    v.push_back(make_case("SSM_SCAN", {{"L", L},
                                       {"D", "2064"},
                                       {"N", "16"},
                                       {"B", "1"},
                                       {"state", L % 2},
                                       {"zstride", L % 3 == 0 ? "2" : "1"}}));
  for (const char* D : {"8192", "1000", "24", "7"})
    v.push_back(make_case("SSM_SCAN", {{"L", "129"},
                                       {"D", D},
                                       {"N", "16"},
                                       {"B", "1"},
                                       {"state", "1"},
                                       {"zstride", "2"},
                                       {"bcpad", "256"}}));
  // Cases kept to be pinned to the ws tile below as well.
  std::vector<Case> few_states;  // N = 4 and 1
  for (const char* N : {"8", "4", "1"}) {
    v.push_back(
        make_case("SSM_SCAN", {{"L", "65"}, {"D", "1000"}, {"N", N}, {"B", "2"}, {"state", "1"}}));
    if (std::string(N) != "8") few_states.push_back(v.back());
  }
  const Case bcpad3 = make_case(
      "SSM_SCAN",
      {{"L", "200"}, {"D", "1000"}, {"N", "16"}, {"B", "2"}, {"state", "1"}, {"bcpad", "3"}});
  v.push_back(bcpad3);
  for (const char* e : {"big", "tiny"})
    v.push_back(make_case(
        "SSM_SCAN",
        {{"L", "2049"}, {"D", "1000"}, {"N", "16"}, {"B", "1"}, {"state", "1"}, {"dtedge", e}}));
  const Case long_memory = v.back();  // dtedge tiny
  v.push_back(make_case(
      "SSM_SCAN",
      {{"L", "2049"}, {"D", "1000"}, {"N", "16"}, {"B", "1"}, {"state", "1"}, {"underflow", "1"}}));
  // Forced variants: the chunked path at small sizes (many chunks, partial last chunk, initial
  // state through the combine) and the single pass where auto would chunk.
  v.push_back(make_case("SSM_SCAN", {{"L", "129"},
                                     {"D", "24"},
                                     {"N", "16"},
                                     {"B", "1"},
                                     {"state", "1"},
                                     {"variant", "chunked"},
                                     {"chunk", "64"}}));
  v.push_back(make_case("SSM_SCAN", {{"L", "2049"},
                                     {"D", "1000"},
                                     {"N", "16"},
                                     {"B", "2"},
                                     {"state", "1"},
                                     {"zstride", "2"},
                                     {"variant", "chunked"},
                                     {"chunk", "128"}}));
  v.push_back(make_case("SSM_SCAN", {{"L", "4097"},
                                     {"D", "2064"},
                                     {"N", "16"},
                                     {"B", "1"},
                                     {"state", "1"},
                                     {"variant", "chunked"},
                                     {"chunk", "512"},
                                     {"dtedge", "tiny"}}));
  v.push_back(make_case("SSM_SCAN", {{"L", "4097"},
                                     {"D", "24"},
                                     {"N", "16"},
                                     {"B", "1"},
                                     {"state", "1"},
                                     {"variant", "single"}}));
  const Case batch8 = make_case("SSM_SCAN", {{"L", "129"},
                                             {"D", "1000"},
                                             {"N", "16"},
                                             {"B", "8"},
                                             {"state", "1"},
                                             {"zstride", "2"},
                                             {"bcpad", "256"}});
  v.push_back(batch8);
  // Forced tiles. Auto runs ws on single passes of at most one block per SM (most single passes
  // above, D = 8192 at B = 1) and g4 elsewhere (chunked scans, more blocks). g4 is pinned on
  // single passes at B = 1 (1 to 65 tiles; L = 16384 is a big case). ws is pinned on single
  // passes of 2, 3, 4 and 64 tiles (both buffers, the stagers' drain), at B = 2 and 8, on the
  // scalar paths (D % 8, bcpad 3), N < 16, the chunked scan's pass 3, and with long memory
  // (dtedge tiny).
  const std::pair<const char*, std::vector<const char*>> single_b1[] = {
      {"ws", {"33", "64", "97", "2049"}}, {"g4", {"1", "17", "129", "2049"}}};
  for (const auto& [tile, lengths] : single_b1)
    for (const char* L : lengths)
      v.push_back(make_case("SSM_SCAN", {{"L", L},
                                         {"D", "2064"},
                                         {"N", "16"},
                                         {"B", "1"},
                                         {"state", "1"},
                                         {"zstride", "2"},
                                         {"variant", "single"},
                                         {"tile", tile}}));
  v.push_back(Case(batch8).set("tile", "ws"));
  v.push_back(Case(bcpad3).set("tile", "ws"));
  for (const Case& c : few_states) v.push_back(Case(c).set("tile", "ws"));
  v.push_back(make_case(
      "SSM_SCAN",
      {{"L", "129"}, {"D", "7"}, {"N", "16"}, {"B", "1"}, {"zstride", "2"}, {"tile", "ws"}}));
  v.push_back(make_case("SSM_SCAN", {{"L", "2049"},
                                     {"D", "1000"},
                                     {"N", "16"},
                                     {"B", "2"},
                                     {"state", "1"},
                                     {"variant", "chunked"},
                                     {"chunk", "96"},
                                     {"tile", "ws"}}));
  v.push_back(Case(long_memory).set("tile", "ws"));
  // Big: Jamba-v0.1 widths (d_inner 8192, d_state 16), up to L = 64K, batch 8.
  v.push_back(make_case("SSM_SCAN", {{"L", "4097"},
                                     {"D", "8192"},
                                     {"N", "16"},
                                     {"B", "8"},
                                     {"state", "1"},
                                     {"zstride", "2"},
                                     {"bcpad", "256"},
                                     {"big", "1"}}));
  v.push_back(make_case(
      "SSM_SCAN",
      {{"L", "16384"}, {"D", "8192"}, {"N", "16"}, {"B", "1"}, {"state", "1"}, {"big", "1"}}));
  v.push_back(make_case("SSM_SCAN", {{"L", "16384"},
                                     {"D", "8192"},
                                     {"N", "16"},
                                     {"B", "1"},
                                     {"state", "1"},
                                     {"tile", "g4"},
                                     {"big", "1"}}));
  v.push_back(make_case("SSM_SCAN", {{"L", "65536"},
                                     {"D", "8192"},
                                     {"N", "16"},
                                     {"B", "1"},
                                     {"state", "1"},
                                     {"zstride", "2"},
                                     {"bcpad", "256"},
                                     {"big", "1"}}));
  v.push_back(make_case("SSM_SCAN", {{"L", "65536"},
                                     {"D", "8192"},
                                     {"N", "16"},
                                     {"B", "1"},
                                     {"variant", "chunked"},
                                     {"big", "1"}}));
  v.push_back(make_case(
      "SSM_SCAN",
      {{"L", "65536"}, {"D", "1000"}, {"N", "16"}, {"B", "8"}, {"state", "1"}, {"big", "1"}}));
  return v;
}

inline std::vector<Case> update_cases() {
  std::vector<Case> v;
  for (const char* B : {"1", "16", "64", "256"})
    v.push_back(make_case("SSM_UPDATE", {{"D", "8192"}, {"N", "16"}, {"B", B}, {"steps", "3"}}));
  v.push_back(make_case("SSM_UPDATE", {{"D", "2064"},
                                       {"N", "16"},
                                       {"B", "3"},
                                       {"steps", "8"},
                                       {"zstride", "2"},
                                       {"bcpad", "256"}}));
  v.push_back(make_case("SSM_UPDATE",
                        {{"D", "1000"}, {"N", "8"}, {"B", "2"}, {"steps", "4"}, {"bcpad", "3"}}));
  v.push_back(make_case("SSM_UPDATE", {{"D", "7"}, {"N", "16"}, {"B", "1"}, {"steps", "2"}}));
  for (const char* e : {"big", "tiny"})
    v.push_back(make_case("SSM_UPDATE",
                          {{"D", "1000"}, {"N", "16"}, {"B", "4"}, {"steps", "4"}, {"dtedge", e}}));
  // The kernel takes 1, 2 or 4 batch rows per thread by the grid size (132 SMs: B <= 4 -> 1,
  // 5..8 -> 2, >= 9 -> 4): reach each with and without 16-byte state rows, a partial last row
  // group, a partial channel block, and the dt edge at 4 rows.
  v.push_back(make_case("SSM_UPDATE", {{"D", "8192"}, {"N", "16"}, {"B", "6"}, {"steps", "2"}}));
  v.push_back(make_case("SSM_UPDATE", {{"D", "8192"}, {"N", "8"}, {"B", "9"}, {"steps", "2"}}));
  v.push_back(make_case("SSM_UPDATE",
                        {{"D", "8192"}, {"N", "8"}, {"B", "6"}, {"steps", "2"}, {"bcpad", "3"}}));
  v.push_back(make_case(
      "SSM_UPDATE",
      {{"D", "4100"}, {"N", "16"}, {"B", "37"}, {"steps", "3"}, {"zstride", "2"}, {"bcpad", "3"}}));
  v.push_back(make_case(
      "SSM_UPDATE", {{"D", "8192"}, {"N", "16"}, {"B", "64"}, {"steps", "3"}, {"dtedge", "big"}}));
  return v;
}

inline std::vector<Case> layer_cases() {
  std::vector<Case> v;
  for (const char* L : {"1", "17", "129"})
    v.push_back(make_case("MAMBA_LAYER", {{"d", "64"}, {"B", "1"}, {"L", L}, {"n", "3"}}));
  v.push_back(make_case("MAMBA_LAYER", {{"d", "64"}, {"B", "8"}, {"L", "33"}, {"n", "3"}}));
  v.push_back(make_case("MAMBA_LAYER", {{"d", "256"}, {"B", "2"}, {"L", "2049"}, {"n", "4"}}));
  v.push_back(make_case("MAMBA_LAYER",
                        {{"d", "4096"}, {"B", "1"}, {"L", "512"}, {"n", "2"}, {"big", "1"}}));
  return v;
}

// The listings without kernels (CPU builds); mamba.cpp adds the kernels.
inline std::vector<OpInfo> listings() {
  std::vector<OpInfo> ops;
  {
    OpInfo op;
    op.name = "CONV1D";
    op.family = "mamba";
    op.description =
        "causal depthwise conv1d + bias + SiLU, prefill, with conv state (jamba-spec §2.4 step 3)";
    op.cases = conv_cases;
    op.reference = [](const Case& c, Precision p) {
      return conv_reference(conv_inputs(c, false), p);
    };
    ops.push_back(std::move(op));
  }
  {
    OpInfo op;
    op.name = "CONV1D_UPDATE";
    op.family = "mamba";
    op.description = "conv decode step: state shift + insert, conv + bias + SiLU (jamba-spec §2.5)";
    op.cases = conv_update_cases;
    op.reference = [](const Case& c, Precision p) {
      return conv_reference(conv_inputs(c, true), p);
    };
    ops.push_back(std::move(op));
  }
  {
    OpInfo op;
    op.name = "SSM_SCAN";
    op.family = "mamba";
    op.description =
        "selective scan prefill: softplus(dt+bias), fp32 state, D skip, SiLU(z) gate (jamba-spec "
        "§2.4 steps 7-11)";
    op.cases = scan_cases;
    op.reference = [](const Case& c, Precision p) {
      return scan_reference(scan_inputs(c, false), p);
    };
    ops.push_back(std::move(op));
  }
  {
    OpInfo op;
    op.name = "SSM_UPDATE";
    op.family = "mamba";
    op.description = "selective state update (decode), fp32 state in place (jamba-spec §2.5)";
    op.cases = update_cases;
    op.reference = [](const Case& c, Precision p) {
      return scan_reference(scan_inputs(c, true), p);
    };
    ops.push_back(std::move(op));
  }
  {
    OpInfo op;
    op.name = "MAMBA_LAYER";
    op.family = "mamba";
    op.description =
        "Mamba mixer with inner norms: prefill L then n decode steps (jamba-spec §2.4-2.5)";
    op.cases = layer_cases;
    op.reference = [](const Case& c, Precision p) { return layer_reference(layer_inputs(c), p); };
    ops.push_back(std::move(op));
  }
  return ops;
}

}  // namespace jb::cmp::mamba
