// Registry entries of the MLP / MoE family (jamba-spec §2.1, §2.6-§2.8, §6.6, §7 items 1-3):
// ROUTER_TOPK, MOE, MLP, EXPERT_INT8, QUANT_INT8, EMBEDDING, LM_HEAD, with their CUDA kernels
// (cuda/moe.hpp, cuda/experts.hpp, cuda/quant_int8.hpp, cuda/embedding.hpp).
//
// Inputs (all from core/rng.hpp, rounded to bf16, identical for the kernel and both references):
//   x [T, d] ~ N(0, 1); router [E, d] ~ N(0, (2/sqrt(d))^2) (logits of std ~2);
//   gate_up [E, 2I, d] ~ N(0, 1/d), down [E, d, I] ~ N(0, 1/I) — generated on the GPU with
//   cuda/random_init.hpp and on the host with the same (seed, stream, index) keys.
// Routing without near-ties (ecosystem.md §1.8 "MoE"): each token's row of x is redrawn (the
// stream advances with a retry counter) until consecutive logits among its top-(k+1), computed in
// double from the bf16 inputs, are at least max(0.05, 4 bf16 ulps) apart, so the truth (no
// rounding), the bf16 emulation and the kernel pick the same experts in the same rank order.
// route=one/skip/tie use a "bias feature": x[:, 0] = 4 and router[e, 0] = +-2 for chosen experts
// (+-8 on their logits; Jamba's router has no bias): one = every token's top-1 is one expert;
// skip = one expert never selected; tie = three experts with IDENTICAL router rows on top, so
// the tie rule (lower expert index wins) decides the order.
//
// Big cases (Jamba-v0.1 widths, 4096 x 14336, 16 experts) carry big=1. The CPU reference cannot
// afford every token there (8192 tokens x 2 experts x 3 x 4096 x 14336 MACs is ~2.9 TFLOP in
// double), so a case with rows=S compares S deterministic rows (evenly spaced, first and last
// included): the MoE is row-independent, so the reference of those rows alone is exact, and the
// reference then generates one expert's weights at a time (ref=stream, see moe_stream_reference).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "compare/ops/moe_cases.hpp"
#include "compare/registry.hpp"
#include "core/bf16.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "cuda/common.cuh"
#include "cuda/embedding.hpp"
#include "cuda/experts.hpp"
#include "cuda/moe.hpp"
#include "cuda/quant_int8.hpp"
#include "cuda/random_init.hpp"
#include "reference/common.hpp"
#include "reference/mlp.hpp"
#include "reference/moe.hpp"
#include "reference/quant_int8.hpp"
#include "reference/rmsnorm.hpp"

namespace jb::cmp {

namespace {

using ref::Mat;
using ref::Round;

// ---------------------------------------------------------------------------------------------
// Case parameters

int64_t get_i(const Case& c, const char* key, int64_t dflt) {
  return c.has(key) ? c.geti(key) : dflt;
}
std::string get_s(const Case& c, const char* key, const std::string& dflt) {
  return c.has(key) ? c.get(key) : dflt;
}

struct MoeParams {
  int64_t T = 1, d = 128, inter = 256, E = 16;
  int k = 2;
  bool renorm = false;
  std::string route = "rand";  // rand | one | skip | tie
  bool int8 = false;           // weights=int8
  cuda::ExpertsPath path = cuda::ExpertsPath::Auto;
  // sched=auto|lanes|grouped: the Gemm path's schedule (cuda/experts.hpp GemmSchedule)
  cuda::GemmSchedule sched = cuda::GemmSchedule::Auto;
  cuda::Int8Gemv gemv = cuda::Int8Gemv::Auto;  // gemv=auto|fma|mma (int8 weights)
  float x_std = 1.0f;                          // xstd= (MLP, EXPERT_INT8: x ~ N(0, xstd^2))
  int64_t sample = 0;                          // rows=S: compare S sampled rows (0: all)
  bool stream_ref = false;
};

MoeParams moe_params(const Case& c) {
  MoeParams p;
  p.T = get_i(c, "T", 1);
  p.d = get_i(c, "d", 128);
  p.inter = get_i(c, "I", 256);
  p.E = get_i(c, "E", 1);
  p.k = static_cast<int>(get_i(c, "k", 1));
  p.renorm = get_i(c, "renorm", 0) != 0;
  p.route = get_s(c, "route", "rand");
  const std::string wt = get_s(c, "weights", "bf16");
  if (wt != "bf16" && wt != "int8")
    fail(ErrorKind::Usage, "case " + c.str() + ": weights must be bf16 or int8");
  p.int8 = wt == "int8";
  p.path = cuda::parse_experts_path(get_s(c, "path", "auto"));
  p.gemv = cuda::parse_int8_gemv(get_s(c, "gemv", "auto"));
  p.sched = cuda::parse_gemm_schedule(get_s(c, "sched", "auto"));
  p.x_std = c.has("xstd") ? static_cast<float>(c.getf("xstd")) : 1.0f;
  if (!(p.x_std > 0.0f) || !std::isfinite(p.x_std))
    fail(ErrorKind::Usage, "case " + c.str() + ": xstd must be a positive number");
  p.sample = get_i(c, "rows", 0);
  p.stream_ref = get_s(c, "ref", "full") == "stream" || p.sample > 0;
  if (p.T < 0 || p.d < 1 || p.inter < 1 || p.E < 1 || p.k < 1 || p.k > p.E)
    fail(ErrorKind::Usage, "case " + c.str() + ": bad MoE shape");
  if (p.route != "rand" && p.route != "one" && p.route != "skip" && p.route != "tie")
    fail(ErrorKind::Usage, "case " + c.str() + ": route must be rand, one, skip or tie");
  if (p.route == "tie" && (p.E < 3 || p.k > 2))
    fail(ErrorKind::Usage, "case " + c.str() + ": route=tie needs E >= 3 and k <= 2");
  return p;
}

// Rows compared: all, or S evenly spaced rows including the first and the last.
std::vector<int64_t> compared_rows(int64_t T, int64_t sample) {
  std::vector<int64_t> rows;
  if (sample <= 0 || sample >= T) {
    rows.resize(static_cast<size_t>(T));
    std::iota(rows.begin(), rows.end(), int64_t(0));
    return rows;
  }
  for (int64_t i = 0; i < sample; ++i) rows.push_back(sample == 1 ? 0 : i * (T - 1) / (sample - 1));
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  return rows;
}

// ---------------------------------------------------------------------------------------------
// Host generation (bit-identical to cuda::fill_normal: same key, same fma, same RNE store)

void host_fill_normal(float* dst, size_t n, uint64_t seed, uint64_t stream, float mean,
                      float std_dev, uint64_t offset = 0) {
  auto body = [=](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i)
      dst[i] = round_bf16(rng_normal(seed, stream, offset + i, mean, std_dev));
  };
  unsigned threads = std::thread::hardware_concurrency();
  threads = std::max(1u, std::min(threads, 16u));
  if (n < (size_t(1) << 20) || threads == 1) {
    body(0, n);
    return;
  }
  std::vector<std::thread> pool;
  const size_t chunk = (n + threads - 1) / threads;
  for (unsigned t = 0; t < threads; ++t) {
    const size_t b = std::min(n, t * chunk), e = std::min(n, b + chunk);
    pool.emplace_back(body, b, e);
  }
  for (auto& th : pool) th.join();
}

std::vector<float> host_normal(size_t n, uint64_t seed, const char* name, float mean, float std_dev,
                               uint64_t offset = 0) {
  std::vector<float> v(n);
  host_fill_normal(v.data(), n, seed, stream_id(name), mean, std_dev, offset);
  return v;
}

float gate_up_std(int64_t d) {
  return static_cast<float>(1.0 / std::sqrt(double(d)));
}
float down_std(int64_t inter) {
  return static_cast<float>(1.0 / std::sqrt(double(inter)));
}

// ---------------------------------------------------------------------------------------------
// Router inputs with gaps (see the file comment)

struct RouterInputs {
  int64_t T = 0, d = 0, E = 0;
  int k = 1;
  std::vector<float> x, router;  // bf16 values
  std::vector<int> tie_group;    // route=tie: the experts with identical rows, ascending
};

double ulp_bf16(double v) {
  v = std::fabs(v);
  if (v == 0.0) return std::ldexp(1.0, -133);
  int e = 0;
  std::frexp(v, &e);  // v = m 2^e, m in [0.5, 1)
  return std::ldexp(1.0, e - 1 - 7);
}

std::vector<int> tie_group_for(int64_t E) {
  if (E >= 10) return {2, 5, 9};
  if (E >= 8) return {2, 5, 7};
  return {0, 1, 2};
}

std::shared_ptr<const RouterInputs> build_router_inputs(int64_t T, int64_t d, int64_t E, int k,
                                                        const std::string& route, uint64_t seed) {
  auto in = std::make_shared<RouterInputs>();
  in->T = T;
  in->d = d;
  in->E = E;
  in->k = k;
  const float router_std = static_cast<float>(2.0 / std::sqrt(double(d)));
  in->router = host_normal(static_cast<size_t>(E * d), seed, "moe.router", 0.0f, router_std);
  const bool bias_feature = route != "rand";
  const int one_expert = static_cast<int>(E / 2 - 1 < 0 ? 0 : E / 2 - 1);
  const int skip_expert = static_cast<int>(E > 1 ? 1 : 0);
  if (route == "tie") {
    in->tie_group = tie_group_for(E);
    const int lead = in->tie_group[0];
    for (int e : in->tie_group)
      for (int64_t j = 0; j < d; ++j) in->router[e * d + j] = in->router[lead * d + j];
  }
  if (bias_feature) {
    for (int64_t e = 0; e < E; ++e) in->router[e * d] = 0.0f;
    if (route == "one") in->router[one_expert * d] = 2.0f;
    if (route == "skip") in->router[skip_expert * d] = -2.0f;
    if (route == "tie")
      for (int e : in->tie_group) in->router[e * d] = 2.0f;
  }
  auto in_tie = [&](int e) {
    return std::find(in->tie_group.begin(), in->tie_group.end(), e) != in->tie_group.end();
  };
  in->x.resize(static_cast<size_t>(T * d));
  const uint64_t xs = stream_id("moe.x");
  std::vector<double> logit(static_cast<size_t>(E));
  std::vector<int> order(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    float* row = in->x.data() + t * d;
    bool ok = false;
    for (uint64_t retry = 0; retry < 4096 && !ok; ++retry) {
      for (int64_t j = 0; j < d; ++j)
        row[j] = round_bf16(rng_normal(seed, xs + retry, static_cast<uint64_t>(t * d + j)));
      if (bias_feature) row[0] = 4.0f;
      for (int64_t e = 0; e < E; ++e) {
        double s = 0;
        const float* re = in->router.data() + e * d;
        for (int64_t j = 0; j < d; ++j) s += double(row[j]) * double(re[j]);
        logit[e] = s;
      }
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](int a, int b) { return logit[a] > logit[b]; });
      ok = true;
      for (int r = 0; r < k && r + 1 < E; ++r) {
        const int a = order[r], b = order[r + 1];
        if (in_tie(a) && in_tie(b)) continue;  // constructed tie: no gap wanted
        const double thr = std::max(0.05, 4.0 * ulp_bf16(logit[a]));
        if (logit[a] - logit[b] < thr) ok = false;
      }
      if (route == "one" && order[0] != one_expert) ok = false;
      if (route == "skip")
        for (int r = 0; r < k; ++r)
          if (order[r] == skip_expert) ok = false;
      if (route == "tie" && !in_tie(order[0])) ok = false;
    }
    if (!ok)
      fail(ErrorKind::Internal, "moe inputs: no gap-separated router row for token " +
                                    std::to_string(t) + " after 4096 draws");
  }
  return in;
}

// One-entry cache: the runner asks for the same case's inputs four times (truth, lp, kernel x2)
// and the gap search costs T * E * d double MACs each time.
std::shared_ptr<const RouterInputs> router_inputs(int64_t T, int64_t d, int64_t E, int k,
                                                  const std::string& route, uint64_t seed) {
  static std::mutex mu;
  static std::string key;
  static std::shared_ptr<const RouterInputs> cached;
  const std::string want = std::to_string(T) + "/" + std::to_string(d) + "/" + std::to_string(E) +
                           "/" + std::to_string(k) + "/" + route + "/" + std::to_string(seed);
  std::lock_guard<std::mutex> lock(mu);
  if (!cached || key != want) {
    cached = build_router_inputs(T, d, E, k, route, seed);
    key = want;
  }
  return cached;
}

// ---------------------------------------------------------------------------------------------
// Host/device conversions and small helpers

template <class T>
Mat<T> to_mat(const float* v, int64_t rows, int64_t cols) {
  Mat<T> m(rows, cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) m(r, c) = static_cast<T>(v[r * cols + c]);
  return m;
}

template <class T>
std::vector<float> from_mat(const Mat<T>& m) {
  std::vector<float> v(static_cast<size_t>(m.rows() * m.cols()));
  for (int64_t r = 0; r < m.rows(); ++r)
    for (int64_t c = 0; c < m.cols(); ++c) v[r * m.cols() + c] = static_cast<float>(m(r, c));
  return v;
}

std::vector<float> bf16_bytes_to_float(const std::vector<uint8_t>& bytes) {
  std::vector<float> v(bytes.size() / 2);
  for (size_t i = 0; i < v.size(); ++i) {
    uint16_t b;
    std::memcpy(&b, bytes.data() + 2 * i, 2);
    v[i] = bf16_bits_to_float(b);
  }
  return v;
}

std::vector<float> pick_rows(const std::vector<float>& full, int64_t cols,
                             const std::vector<int64_t>& rows) {
  std::vector<float> out(rows.size() * static_cast<size_t>(cols));
  for (size_t i = 0; i < rows.size(); ++i)
    std::copy_n(full.data() + rows[i] * cols, cols, out.data() + i * cols);
  return out;
}

NamedTensor tensor(const std::string& name, std::vector<int64_t> shape, std::vector<float> values,
                   CheckKind kind) {
  NamedTensor t;
  t.name = name;
  t.shape = std::move(shape);
  t.values = std::move(values);
  t.kind = kind;
  return t;
}

// ---------------------------------------------------------------------------------------------
// Expert weights on the host (reference side): one expert at a time

struct HostExpert {
  std::vector<float> gate_up;  // [2I, d] values the reference uses (dequantised for int8)
  std::vector<float> down;     // [d, I]
};

// Expert e of the stack named `prefix` (streams prefix.gate_up / prefix.down). For int8 the
// weights are quantised with the reference quantiser and dequantised (q * scale in fp32): the
// values the W8A16 kernel computes with.
HostExpert host_expert(uint64_t seed, const std::string& prefix, int64_t e, int64_t d,
                       int64_t inter, bool int8) {
  HostExpert h;
  const size_t n_gu = static_cast<size_t>(2 * inter * d), n_dn = static_cast<size_t>(d * inter);
  h.gate_up = host_normal(n_gu, seed, (prefix + ".gate_up").c_str(), 0.0f, gate_up_std(d),
                          static_cast<uint64_t>(e) * n_gu);
  h.down = host_normal(n_dn, seed, (prefix + ".down").c_str(), 0.0f, down_std(inter),
                       static_cast<uint64_t>(e) * n_dn);
  if (int8) {
    h.gate_up = ref::dequantize_int8(ref::quantize_int8(h.gate_up.data(), 2 * inter, d));
    h.down = ref::dequantize_int8(ref::quantize_int8(h.down.data(), d, inter));
  }
  return h;
}

template <class T>
ref::MlpWeights<T> mlp_weights(const HostExpert& h, int64_t d, int64_t inter) {
  ref::MlpWeights<T> w;
  w.gate_proj = to_mat<T>(h.gate_up.data(), inter, d);
  w.up_proj = to_mat<T>(h.gate_up.data() + inter * d, inter, d);
  w.down_proj = to_mat<T>(h.down.data(), d, inter);
  return w;
}

// ---------------------------------------------------------------------------------------------
// Device weights (kernel side)

struct DeviceExperts {
  cuda::DeviceBuffer<cuda::bf16> gate_up, down;
  cuda::DeviceBuffer<int8_t> gate_up_q, down_q;
  cuda::DeviceBuffer<float> gate_up_scale, down_scale;
  cuda::ExpertWeights view;
};

// Generates the stack on the GPU; for int8 quantises it there (cuda/quant_int8, bitwise equal to
// the reference quantiser: QUANT_INT8) and frees the bf16 copy.
std::unique_ptr<DeviceExperts> device_experts(uint64_t seed, const std::string& prefix, int64_t E,
                                              int64_t d, int64_t inter, bool int8) {
  auto de = std::make_unique<DeviceExperts>();
  const size_t n_gu = static_cast<size_t>(E * 2 * inter * d),
               n_dn = static_cast<size_t>(E * d * inter);
  de->gate_up.alloc(n_gu);
  de->down.alloc(n_dn);
  cuda::fill_normal(de->gate_up.get(), n_gu, seed, stream_id((prefix + ".gate_up").c_str()), 0.0f,
                    gate_up_std(d));
  cuda::fill_normal(de->down.get(), n_dn, seed, stream_id((prefix + ".down").c_str()), 0.0f,
                    down_std(inter));
  de->view.num_experts = E;
  de->view.d = d;
  de->view.inter = inter;
  if (!int8) {
    de->view.type = cuda::WeightType::Bf16;
    de->view.gate_up = de->gate_up.get();
    de->view.down = de->down.get();
    return de;
  }
  de->gate_up_q.alloc(n_gu);
  de->down_q.alloc(n_dn);
  de->gate_up_scale.alloc(static_cast<size_t>(E * 2 * inter));
  de->down_scale.alloc(static_cast<size_t>(E * d));
  cuda::quantize_int8(de->gate_up.get(), E * 2 * inter, d, de->gate_up_q.get(),
                      de->gate_up_scale.get());
  cuda::quantize_int8(de->down.get(), E * d, inter, de->down_q.get(), de->down_scale.get());
  JB_CUDA(cudaDeviceSynchronize());
  de->gate_up.reset();
  de->down.reset();
  de->view.type = cuda::WeightType::Int8;
  de->view.gate_up_q = de->gate_up_q.get();
  de->view.gate_up_scale = de->gate_up_scale.get();
  de->view.down_q = de->down_q.get();
  de->view.down_scale = de->down_scale.get();
  return de;
}

// Runs fn(out_ptr) on a poisoned guarded bf16 [rows, cols] buffer; returns the values.
template <class Fn>
std::vector<float> run_guarded_bf16(int64_t rows, int64_t cols, KernelRun& run, Fn&& fn) {
  cuda::GuardedBuffer out(static_cast<size_t>(rows * cols) * sizeof(cuda::bf16));
  out.poison();
  fn(static_cast<cuda::bf16*>(out.body()));
  JB_CUDA(cudaDeviceSynchronize());
  run.guards_ok = run.guards_ok && out.guards_intact();
  return bf16_bytes_to_float(out.download_body());
}

cuda::DeviceBuffer<cuda::bf16> upload_bf16(const std::vector<float>& v) {
  cuda::DeviceBuffer<cuda::bf16> b(v.size());
  b.upload(cuda::to_bf16(v));
  return b;
}

// ---------------------------------------------------------------------------------------------
// ROUTER_TOPK

Outputs router_reference(const Case& c, Precision prec) {
  const MoeParams p = moe_params(c);
  const auto in = router_inputs(p.T, p.d, p.E, p.k, p.route, c.seed);
  ref::Routing rt;
  if (prec == Precision::Truth)
    rt =
        ref::route<double>(to_mat<double>(in->x.data(), p.T, p.d),
                           to_mat<double>(in->router.data(), p.E, p.d), p.k, p.renorm, Round::None);
  else
    rt = ref::route<float>(to_mat<float>(in->x.data(), p.T, p.d),
                           to_mat<float>(in->router.data(), p.E, p.d), p.k, p.renorm, Round::Bf16);
  std::vector<float> ids, ws;
  for (int64_t t = 0; t < p.T; ++t)
    for (int j = 0; j < p.k; ++j) {
      ids.push_back(static_cast<float>(rt.expert[t][j]));
      ws.push_back(rt.weight[t][j]);
    }
  return {tensor("ids", {p.T, p.k}, ids, CheckKind::Exact),
          tensor("weights", {p.T, p.k}, ws, CheckKind::Reduction)};
}

Outputs router_kernel(const Case& c, KernelRun& run) {
  const MoeParams p = moe_params(c);
  const auto in = router_inputs(p.T, p.d, p.E, p.k, p.route, c.seed);
  auto x = upload_bf16(in->x);
  auto router = upload_bf16(in->router);
  const size_t n = static_cast<size_t>(p.T * p.k);
  cuda::GuardedBuffer ids(n * sizeof(int32_t)), ws(n * sizeof(float));
  ids.poison();
  ws.poison();
  cuda::router_topk(x.get(), router.get(), p.T, p.d, static_cast<int>(p.E), p.k, p.renorm,
                    static_cast<int32_t*>(ids.body()), static_cast<float*>(ws.body()));
  JB_CUDA(cudaDeviceSynchronize());
  run.guards_ok = ids.guards_intact() && ws.guards_intact();
  run.variant = p.d % 8 == 0 ? "router_vec8" : "router_scalar";
  const std::vector<uint8_t> ib = ids.download_body(), wb = ws.download_body();
  std::vector<float> idf(n), wf(n);
  for (size_t i = 0; i < n; ++i) {
    int32_t id;
    std::memcpy(&id, ib.data() + 4 * i, 4);
    idf[i] = static_cast<float>(id);
    std::memcpy(&wf[i], wb.data() + 4 * i, 4);
  }
  return {tensor("ids", {p.T, p.k}, idf, CheckKind::Exact),
          tensor("weights", {p.T, p.k}, wf, CheckKind::Reduction)};
}

// ---------------------------------------------------------------------------------------------
// MOE

// Reference with one expert's weights in memory at a time (big cases), on the compared rows
// only. It reproduces reference/moe.cpp's combine exactly (experts in ascending index, each
// w * y rounded, then the running sum rounded, under Round::Bf16); ref=stream on a small case
// lets the test check it against ref::moe, bit for bit at both precisions (routing weights in T
// from ref::route_t, as ref::moe has them).
template <class T>
Mat<T> moe_stream_reference(const MoeParams& p, const RouterInputs& in,
                            const std::vector<int64_t>& rows, uint64_t seed, Round r) {
  const int64_t n = static_cast<int64_t>(rows.size());
  const std::vector<float> xs = pick_rows(in.x, p.d, rows);
  const Mat<T> x = to_mat<T>(xs.data(), n, p.d);
  const ref::RoutingT<T> rt =
      ref::route_t<T>(x, to_mat<T>(in.router.data(), p.E, p.d), p.k, p.renorm, r);
  Mat<T> out = Mat<T>::Zero(n, p.d);
  for (int64_t e = 0; e < p.E; ++e) {
    std::vector<int64_t> toks;
    std::vector<T> ws;
    for (int64_t t = 0; t < n; ++t)
      for (int j = 0; j < p.k; ++j)
        if (rt.expert[t][j] == e) {
          toks.push_back(t);
          ws.push_back(rt.weight[t][j]);
        }
    if (toks.empty()) continue;
    const HostExpert h = host_expert(seed, "moe", e, p.d, p.inter, p.int8);
    Mat<T> xe(static_cast<int64_t>(toks.size()), p.d);
    for (size_t i = 0; i < toks.size(); ++i) xe.row(i) = x.row(toks[i]);
    const Mat<T> ye = ref::mlp<T>(xe, mlp_weights<T>(h, p.d, p.inter), r);
    for (size_t i = 0; i < toks.size(); ++i)
      for (int64_t j = 0; j < p.d; ++j)
        out(toks[i], j) = ref::rnd(out(toks[i], j) + ref::rnd(ws[i] * ye(i, j), r), r);
  }
  return out;
}

template <class T>
Mat<T> moe_full_reference(const MoeParams& p, const RouterInputs& in, uint64_t seed, Round r) {
  ref::MoeWeights<T> w;
  w.router = to_mat<T>(in.router.data(), p.E, p.d);
  for (int64_t e = 0; e < p.E; ++e)
    w.experts.push_back(
        mlp_weights<T>(host_expert(seed, "moe", e, p.d, p.inter, p.int8), p.d, p.inter));
  return ref::moe<T>(to_mat<T>(in.x.data(), p.T, p.d), w, p.k, p.renorm, r);
}

Outputs moe_reference(const Case& c, Precision prec) {
  const MoeParams p = moe_params(c);
  const auto in = router_inputs(p.T, p.d, p.E, p.k, p.route, c.seed);
  const std::vector<int64_t> rows = compared_rows(p.T, p.sample);
  const int64_t n = static_cast<int64_t>(rows.size());
  std::vector<float> out;
  if (prec == Precision::Truth)
    out = from_mat(p.stream_ref ? moe_stream_reference<double>(p, *in, rows, c.seed, Round::None)
                                : moe_full_reference<double>(p, *in, c.seed, Round::None));
  else
    out = from_mat(p.stream_ref ? moe_stream_reference<float>(p, *in, rows, c.seed, Round::Bf16)
                                : moe_full_reference<float>(p, *in, c.seed, Round::Bf16));
  return {tensor("out", {n, p.d}, out, CheckKind::Reduction)};
}

Outputs moe_kernel(const Case& c, KernelRun& run) {
  const MoeParams p = moe_params(c);
  const auto in = router_inputs(p.T, p.d, p.E, p.k, p.route, c.seed);
  auto experts = device_experts(c.seed, "moe", p.E, p.d, p.inter, p.int8);
  auto x = upload_bf16(in->x);
  auto router = upload_bf16(in->router);
  cuda::MoeLayer layer;
  layer.router = router.get();
  layer.top_k = p.k;
  layer.renormalize = p.renorm;
  layer.experts = experts->view;
  cuda::MoeWorkspace ws;
  ws.experts.int8_gemv = p.gemv;
  ws.experts.gemm_schedule = p.sched;
  const std::vector<float> full = run_guarded_bf16(p.T, p.d, run, [&](cuda::bf16* out) {
    run.variant = cuda::moe_forward(layer, x.get(), p.T, out, ws, p.path);
  });
  const std::vector<int64_t> rows = compared_rows(p.T, p.sample);
  return {tensor("out", {static_cast<int64_t>(rows.size()), p.d}, pick_rows(full, p.d, rows),
                 CheckKind::Reduction)};
}

double moe_flops(const Case& c) {
  const MoeParams p = moe_params(c);
  return 2.0 * p.T * p.k * 3.0 * double(p.d) * double(p.inter) + 2.0 * p.T * p.E * double(p.d);
}

// ---------------------------------------------------------------------------------------------
// MLP (dense SwiGLU, one expert) and EXPERT_INT8 (one int8 expert)

std::vector<float> mlp_x(const MoeParams& p, uint64_t seed) {
  // Rounded to bf16 after the scaling (host_normal rounds), so the kernel and the references
  // get the same values.
  return host_normal(static_cast<size_t>(p.T * p.d), seed, "mlp.x", 0.0f, p.x_std);
}

Outputs mlp_reference_impl(const Case& c, Precision prec, bool int8) {
  MoeParams p = moe_params(c);
  p.int8 = int8;
  const std::vector<int64_t> rows = compared_rows(p.T, p.sample);
  const std::vector<float> xs = pick_rows(mlp_x(p, c.seed), p.d, rows);
  const int64_t n = static_cast<int64_t>(rows.size());
  const HostExpert h = host_expert(c.seed, "mlp", 0, p.d, p.inter, int8);
  std::vector<float> out;
  if (prec == Precision::Truth)
    out = from_mat(ref::mlp<double>(to_mat<double>(xs.data(), n, p.d),
                                    mlp_weights<double>(h, p.d, p.inter), Round::None));
  else
    out = from_mat(ref::mlp<float>(to_mat<float>(xs.data(), n, p.d),
                                   mlp_weights<float>(h, p.d, p.inter), Round::Bf16));
  return {tensor("out", {n, p.d}, out, CheckKind::Reduction)};
}

Outputs mlp_kernel_impl(const Case& c, KernelRun& run, bool int8, bool host_quantised) {
  MoeParams p = moe_params(c);
  p.int8 = int8;
  auto x = upload_bf16(mlp_x(p, c.seed));
  std::unique_ptr<DeviceExperts> de;
  if (host_quantised) {
    // EXPERT_INT8: the kernel gets exactly the reference quantiser's q and scales, so this op
    // tests the W8A16 GEMM alone (the quantiser has its own exact check, QUANT_INT8).
    de = std::make_unique<DeviceExperts>();
    const size_t n_gu = static_cast<size_t>(2 * p.inter * p.d);
    const size_t n_dn = static_cast<size_t>(p.d * p.inter);
    const std::vector<float> gu = host_normal(n_gu, c.seed, "mlp.gate_up", 0.0f, gate_up_std(p.d));
    const std::vector<float> dn = host_normal(n_dn, c.seed, "mlp.down", 0.0f, down_std(p.inter));
    const ref::QuantizedMatrix qgu = ref::quantize_int8(gu.data(), 2 * p.inter, p.d);
    const ref::QuantizedMatrix qdn = ref::quantize_int8(dn.data(), p.d, p.inter);
    de->gate_up_q.alloc(n_gu);
    de->gate_up_q.upload(qgu.q);
    de->down_q.alloc(n_dn);
    de->down_q.upload(qdn.q);
    de->gate_up_scale.alloc(qgu.scale.size());
    de->gate_up_scale.upload(qgu.scale);
    de->down_scale.alloc(qdn.scale.size());
    de->down_scale.upload(qdn.scale);
    de->view.type = cuda::WeightType::Int8;
    de->view.num_experts = 1;
    de->view.d = p.d;
    de->view.inter = p.inter;
    de->view.gate_up_q = de->gate_up_q.get();
    de->view.gate_up_scale = de->gate_up_scale.get();
    de->view.down_q = de->down_q.get();
    de->view.down_scale = de->down_scale.get();
  } else {
    de = device_experts(c.seed, "mlp", 1, p.d, p.inter, int8);
  }
  cuda::MoeWorkspace ws;
  ws.experts.int8_gemv = p.gemv;
  ws.experts.gemm_schedule = p.sched;
  const std::vector<float> full = run_guarded_bf16(p.T, p.d, run, [&](cuda::bf16* out) {
    run.variant = cuda::mlp_forward(de->view, x.get(), p.T, out, ws, p.path);
  });
  const std::vector<int64_t> rows = compared_rows(p.T, p.sample);
  return {tensor("out", {static_cast<int64_t>(rows.size()), p.d}, pick_rows(full, p.d, rows),
                 CheckKind::Reduction)};
}

double mlp_flops(const Case& c) {
  const MoeParams p = moe_params(c);
  return 2.0 * p.T * 3.0 * double(p.d) * double(p.inter);
}

// ---------------------------------------------------------------------------------------------
// QUANT_INT8

// Weights [rows, cols] with edge rows: every 7th row all zero (scale 0, q 0); every 5th row an
// exact-tie row (max |w| = 127 * 2^-6 so scale = 2^-6 exactly, other entries (m + 0.5) * 2^-6, so
// every quotient is m + 0.5 and round-half-to-even decides); every 11th row tiny values (~2^-130,
// subnormal scales); the rest N(0, 0.02) like Linear weights.
std::vector<float> quant_weights(int64_t rows, int64_t cols, uint64_t seed) {
  std::vector<float> w =
      host_normal(static_cast<size_t>(rows * cols), seed, "quant.w", 0.0f, 0.02f);
  const uint64_t ts = stream_id("quant.tie");
  for (int64_t r = 0; r < rows; ++r) {
    float* row = w.data() + r * cols;
    if (r % 7 == 3) {
      std::fill(row, row + cols, 0.0f);
    } else if (r % 5 == 1) {
      for (int64_t j = 0; j < cols; ++j) {
        const uint64_t bits = rng_bits(seed, ts, static_cast<uint64_t>(r * cols + j));
        const int m = static_cast<int>(bits % 254) - 127;  // m + 0.5 in [-126.5, 126.5]
        row[j] = std::ldexp(static_cast<float>(m) + 0.5f, -6);
      }
      row[(r * 13) % cols] = (r % 2 ? -127.0f : 127.0f) * std::ldexp(1.0f, -6);
    } else if (r % 11 == 2) {
      for (int64_t j = 0; j < cols; ++j) row[j] = round_bf16(row[j] * std::ldexp(1.0f, -124));
    }
  }
  return w;
}

Outputs quant_reference(const Case& c, Precision) {
  const int64_t rows = c.geti("rows"), cols = c.geti("cols");
  const std::vector<float> w = quant_weights(rows, cols, c.seed);
  const ref::QuantizedMatrix q = ref::quantize_int8(w.data(), rows, cols);
  std::vector<float> qf(q.q.begin(), q.q.end());
  return {tensor("q", {rows, cols}, qf, CheckKind::Exact),
          tensor("scale", {rows}, q.scale, CheckKind::Exact)};
}

Outputs quant_kernel(const Case& c, KernelRun& run) {
  const int64_t rows = c.geti("rows"), cols = c.geti("cols");
  auto w = upload_bf16(quant_weights(rows, cols, c.seed));
  cuda::GuardedBuffer q(static_cast<size_t>(rows * cols)), s(static_cast<size_t>(rows) * 4);
  q.poison();
  s.poison();
  cuda::quantize_int8(w.get(), rows, cols, static_cast<int8_t*>(q.body()),
                      static_cast<float*>(s.body()));
  JB_CUDA(cudaDeviceSynchronize());
  run.guards_ok = q.guards_intact() && s.guards_intact();
  run.variant = "row_block";
  const std::vector<uint8_t> qb = q.download_body(), sb = s.download_body();
  std::vector<float> qf(qb.size()), sf(static_cast<size_t>(rows));
  for (size_t i = 0; i < qb.size(); ++i) qf[i] = static_cast<float>(static_cast<int8_t>(qb[i]));
  std::memcpy(sf.data(), sb.data(), sb.size());
  return {tensor("q", {rows, cols}, qf, CheckKind::Exact),
          tensor("scale", {rows}, sf, CheckKind::Exact)};
}

// ---------------------------------------------------------------------------------------------
// EMBEDDING

struct EmbInputs {
  int64_t n, vocab, d;
  std::vector<int32_t> ids;
  std::vector<float> table;
};

EmbInputs emb_inputs(const Case& c) {
  EmbInputs in;
  in.n = c.geti("n");
  in.vocab = c.geti("V");
  in.d = c.geti("d");
  in.table = host_normal(static_cast<size_t>(in.vocab * in.d), c.seed, "emb.table", 0.0f, 1.0f);
  const uint64_t s = stream_id("emb.ids");
  for (int64_t i = 0; i < in.n; ++i)
    in.ids.push_back(static_cast<int32_t>(rng_bits(c.seed, s, static_cast<uint64_t>(i)) %
                                          static_cast<uint64_t>(in.vocab)));
  // The first and last rows of the table are always exercised.
  if (in.n >= 1) in.ids[0] = static_cast<int32_t>(in.vocab - 1);
  if (in.n >= 2) in.ids[1] = 0;
  return in;
}

Outputs emb_reference(const Case& c, Precision) {
  const EmbInputs in = emb_inputs(c);
  std::vector<float> out(static_cast<size_t>(in.n * in.d));
  for (int64_t i = 0; i < in.n; ++i)
    std::copy_n(in.table.data() + in.ids[i] * in.d, in.d, out.data() + i * in.d);
  return {tensor("out", {in.n, in.d}, out, CheckKind::Exact)};
}

Outputs emb_kernel(const Case& c, KernelRun& run) {
  const EmbInputs in = emb_inputs(c);
  auto table = upload_bf16(in.table);
  cuda::DeviceBuffer<int32_t> ids(in.ids.size());
  ids.upload(in.ids);
  run.variant = in.d % 8 == 0 ? "row_vec8" : "row_scalar";
  const std::vector<float> out = run_guarded_bf16(in.n, in.d, run, [&](cuda::bf16* o) {
    cuda::embedding_lookup_checked(ids.get(), in.n, table.get(), in.vocab, in.d, o);
  });
  return {tensor("out", {in.n, in.d}, out, CheckKind::Exact)};
}

// ---------------------------------------------------------------------------------------------
// LM_HEAD: final norm (eps 1e-6) + LM head on the last position of each sequence, fp32 logits

struct HeadInputs {
  int64_t B, L, d, V;
  std::vector<float> hidden, norm_w, w_lm;
};
constexpr float kNormEps = 1e-6f;

HeadInputs head_inputs(const Case& c) {
  HeadInputs in;
  in.B = c.geti("B");
  in.L = c.geti("L");
  in.d = c.geti("d");
  in.V = c.geti("V");
  in.hidden =
      host_normal(static_cast<size_t>(in.B * in.L * in.d), c.seed, "head.hidden", 0.0f, 1.0f);
  in.norm_w = host_normal(static_cast<size_t>(in.d), c.seed, "head.norm", 1.0f, 0.1f);
  in.w_lm = host_normal(static_cast<size_t>(in.V * in.d), c.seed, "head.lm", 0.0f, 0.02f);
  return in;
}

template <class T>
std::vector<float> head_ref(const HeadInputs& in, Round r) {
  Mat<T> last(in.B, in.d);
  for (int64_t b = 0; b < in.B; ++b)
    for (int64_t j = 0; j < in.d; ++j)
      last(b, j) = static_cast<T>(in.hidden[(b * in.L + in.L - 1) * in.d + j]);
  ref::Vec<T> w(in.d);
  for (int64_t j = 0; j < in.d; ++j) w(j) = static_cast<T>(in.norm_w[j]);
  const Mat<T> normed = ref::rmsnorm<T>(last, w, kNormEps, r);  // bf16 store under Round::Bf16
  const Mat<T> logits = normed * to_mat<T>(in.w_lm.data(), in.V, in.d).transpose();  // fp32 out
  return from_mat(logits);
}

Outputs head_reference(const Case& c, Precision prec) {
  const HeadInputs in = head_inputs(c);
  std::vector<float> out = prec == Precision::Truth ? head_ref<double>(in, Round::None)
                                                    : head_ref<float>(in, Round::Bf16);
  return {tensor("logits", {in.B, in.V}, out, CheckKind::Reduction)};
}

Outputs head_kernel(const Case& c, KernelRun& run) {
  const HeadInputs in = head_inputs(c);
  auto hidden = upload_bf16(in.hidden);
  auto norm_w = upload_bf16(in.norm_w);
  auto w_lm = upload_bf16(in.w_lm);
  cuda::DeviceBuffer<cuda::bf16> normed(static_cast<size_t>(in.B * in.d));
  cuda::GuardedBuffer logits(static_cast<size_t>(in.B * in.V) * sizeof(float));
  logits.poison();
  cuda::final_norm_lm_head(hidden.get(), in.B, in.L, in.d, norm_w.get(), kNormEps, w_lm.get(), in.V,
                           normed.get(), static_cast<float*>(logits.body()));
  JB_CUDA(cudaDeviceSynchronize());
  run.guards_ok = logits.guards_intact();
  run.variant = "rmsnorm_last+cublas_f32out";
  const std::vector<uint8_t> b = logits.download_body();
  std::vector<float> v(static_cast<size_t>(in.B * in.V));
  std::memcpy(v.data(), b.data(), b.size());
  return {tensor("logits", {in.B, in.V}, v, CheckKind::Reduction)};
}

}  // namespace

void register_moe_ops(Registry& r) {
  for (OpInfo& op : moe_grid::listings()) {
    if (op.name == "ROUTER_TOPK") {
      op.reference = router_reference;
      op.kernel = router_kernel;
    } else if (op.name == "MOE") {
      op.reference = moe_reference;
      op.kernel = moe_kernel;
      op.flops = moe_flops;
    } else if (op.name == "MLP") {
      op.reference = [](const Case& c, Precision p) { return mlp_reference_impl(c, p, false); };
      op.kernel = [](const Case& c, KernelRun& run) {
        return mlp_kernel_impl(c, run, false, false);
      };
      op.flops = mlp_flops;
    } else if (op.name == "EXPERT_INT8") {
      op.reference = [](const Case& c, Precision p) { return mlp_reference_impl(c, p, true); };
      op.kernel = [](const Case& c, KernelRun& run) { return mlp_kernel_impl(c, run, true, true); };
      op.flops = mlp_flops;
      op.bytes = [](const Case& c) {
        const MoeParams p = moe_params(c);
        return 3.0 * double(p.d) * double(p.inter) + 4.0 * (2 * p.inter + p.d);
      };
    } else if (op.name == "QUANT_INT8") {
      op.reference = quant_reference;
      op.kernel = quant_kernel;
      op.bytes = [](const Case& c) {
        return 3.0 * double(c.geti("rows")) * double(c.geti("cols")) + 4.0 * c.geti("rows");
      };
    } else if (op.name == "EMBEDDING") {
      op.reference = emb_reference;
      op.kernel = emb_kernel;
      op.bytes = [](const Case& c) { return 4.0 * double(c.geti("n")) * double(c.geti("d")); };
    } else if (op.name == "LM_HEAD") {
      op.reference = head_reference;
      op.kernel = head_kernel;
      op.flops = [](const Case& c) {
        return 2.0 * double(c.geti("B")) * double(c.geti("d")) * double(c.geti("V"));
      };
    }
    r.add(std::move(op));
  }
}

}  // namespace jb::cmp
