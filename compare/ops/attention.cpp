// Registry entries of the attention family (jamba-spec §2.3): ATTN_PREFILL, ATTN_DECODE and
// ATTN_LAYER, checked against jb::ref::attention / attention_layer (double = truth, float with
// Round::Bf16 = the bf16-emulating reference) on the same bf16-rounded inputs.
//
// Case parameters:
//   H, Hkv, hd        query heads, kv heads, head dim
//   L | lens=a+b+..   new tokens of one sequence | of each sequence of a batch (prefill)
//   past=p | p1+p2..  cache rows already there before the call (prefill; one value = all)
//   lens=a+b+..       (decode) keys per sequence, the new token's own key included
//   rope=1,theta=T    rotate-half RoPE on q and k before caching (baselines, jamba-spec §4.3)
//   qscale=s          q drawn with std s (s > 1 sharpens the softmax: stress on the max trick)
//   rows=sampled      the kernel computes every row; the comparison (both references and the
//                     kernel output) covers only 8 blocks of 16 query rows per sequence with
//                     more than 256 new tokens, spread evenly and including the first and the
//                     last 16 rows (a full double-precision reference at L=32K, H=32 would be
//                     ~4 TFLOP on the CPU). The cache rows compared are the same rows.
//   variant=          prefill kernel variant (auto, simple, mma64, mma128, mma128r32, wgmma);
//                     decode kernel variant (auto, fma, mma); splits= (decode: split count)
//   big=1             excluded by --quick (CPU reference and input generation take seconds)
//
// Inputs: q, k, v ~ N(0, 1) (q ~ N(0, qscale)), bf16-rounded, from core/rng.hpp keyed by
// (seed, "<OP>.<tensor>.<sequence>", element index). Cache rows before `past` are generated
// directly as cache contents (already rotated, when rope=1). Unused cache rows on the GPU are
// filled with NaN so that a kernel reading past a sequence's length fails the comparison.
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "compare/ops/attention_cases.hpp"
#include "compare/registry.hpp"
#include "core/bf16.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "cuda/attention.hpp"
#include "cuda/attention_layer.hpp"
#include "cuda/common.cuh"
#include "cuda/kv_cache.hpp"
#include "reference/attention.hpp"

namespace jb::cmp {

namespace {

using jb::cuda::bf16;
template <class T>
using Mat = jb::ref::Mat<T>;

std::vector<int> split_plus(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, '+')) {
    if (item.empty()) fail(ErrorKind::Usage, "empty length in '" + s + "'");
    out.push_back(std::stoi(item));
  }
  return out;
}

std::vector<float> draw(uint64_t seed, const std::string& name, size_t n, float stdev) {
  const uint64_t st = stream_id(name.c_str());
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = round_bf16(rng_normal(seed, st, i) * stdev);
  return v;
}

template <class T>
Mat<T> to_mat(const float* p, int64_t rows, int64_t cols) {
  Mat<T> m(rows, cols);
  for (int64_t i = 0; i < rows * cols; ++i) m.data()[i] = static_cast<T>(p[i]);
  return m;
}

template <class T>
void append_rows(std::vector<float>& out, const Mat<T>& m) {
  for (int64_t i = 0; i < m.size(); ++i) out.push_back(static_cast<float>(m.data()[i]));
}

// Rows of one sequence that a case compares, as [begin, end) blocks.
std::vector<std::pair<int, int>> compared_blocks(int n, bool sampled) {
  if (!sampled || n <= 256) return {{0, n}};
  std::vector<std::pair<int, int>> b;
  for (int i = 0; i < 8; ++i) {
    const int r0 = static_cast<int>(std::lround(static_cast<double>(i) * (n - 16) / 7.0));
    b.push_back({r0, r0 + 16});
  }
  return b;
}

// Single-slot memo: the reference (twice) and the kernel (twice) of one case share its inputs,
// which take seconds to draw for the 128K cases.
template <class In>
std::shared_ptr<const In> memo(const std::string& key, In (*make)(const Case&), const Case& c) {
  static std::mutex mu;
  static std::string last_key;
  static std::shared_ptr<const In> last;
  std::lock_guard<std::mutex> lock(mu);
  if (key != last_key || !last) {
    last.reset();
    last = std::make_shared<const In>(make(c));
    last_key = key;
  }
  return last;
}

// Host staging of bf16 tensors as raw bits (cudaMemcpy moves them to bf16 device buffers).
using Bits = std::vector<uint16_t>;

Bits nan_bf16(size_t n) {
  return Bits(n, 0xFFFF);
}

void put_bf16(uint16_t* dst, const float* src, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = float_to_bf16_bits(src[i]);
}

jb::cuda::DeviceBuffer<bf16> upload_bits(const Bits& h) {
  jb::cuda::DeviceBuffer<bf16> d(h.size());
  JB_CUDA(cudaMemcpy(d.get(), h.data(), h.size() * 2, cudaMemcpyHostToDevice));
  return d;
}

Bits download_bits(const bf16* d, size_t n) {
  Bits h(n);
  JB_CUDA(cudaMemcpy(h.data(), d, n * 2, cudaMemcpyDeviceToHost));
  return h;
}

std::vector<float> bits_to_float(const uint8_t* raw, size_t n) {
  std::vector<float> o(n);
  for (size_t i = 0; i < n; ++i) {
    uint16_t b;
    std::memcpy(&b, raw + 2 * i, 2);
    o[i] = bf16_bits_to_float(b);
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// ATTN_PREFILL

struct PrefillSpec {
  int H = 0, Hkv = 0, hd = 0;
  std::vector<int> new_len, past;
  bool rope = false;
  double theta = 10000.0;
  bool sampled = false;
  float qscale = 1.0f;
};

PrefillSpec prefill_spec(const Case& c) {
  PrefillSpec p;
  p.H = static_cast<int>(c.geti("H"));
  p.Hkv = static_cast<int>(c.geti("Hkv"));
  p.hd = static_cast<int>(c.geti("hd"));
  p.new_len = c.has("lens") ? split_plus(c.get("lens")) : std::vector<int>{(int)c.geti("L")};
  p.past = c.has("past") ? split_plus(c.get("past")) : std::vector<int>{0};
  if (p.past.size() == 1 && p.new_len.size() > 1) p.past.assign(p.new_len.size(), p.past[0]);
  if (p.past.size() != p.new_len.size())
    fail(ErrorKind::Usage, "ATTN_PREFILL: past and lens have different counts");
  p.rope = c.get("rope", "0") == "1";
  if (c.has("theta")) p.theta = c.getf("theta");
  p.sampled = c.get("rows", "all") == "sampled";
  if (c.has("qscale")) p.qscale = static_cast<float>(c.getf("qscale"));
  return p;
}

struct PrefillInputs {
  PrefillSpec spec;
  // Per sequence: q [new, H*hd]; k/v [past + new, Hkv*hd] (rows < past: cache contents; rows
  // >= past: this call's projections, keys not yet rotated).
  std::vector<std::vector<float>> q, k, v;
};

PrefillInputs make_prefill_inputs(const Case& c) {
  PrefillInputs in;
  in.spec = prefill_spec(c);
  const auto& p = in.spec;
  for (size_t s = 0; s < p.new_len.size(); ++s) {
    const std::string sfx = "." + std::to_string(s);
    const size_t rows = static_cast<size_t>(p.past[s] + p.new_len[s]);
    in.q.push_back(draw(c.seed, "ATTN_PREFILL.q" + sfx,
                        static_cast<size_t>(p.new_len[s]) * p.H * p.hd, p.qscale));
    in.k.push_back(draw(c.seed, "ATTN_PREFILL.k" + sfx, rows * p.Hkv * p.hd, 1.0f));
    in.v.push_back(draw(c.seed, "ATTN_PREFILL.v" + sfx, rows * p.Hkv * p.hd, 1.0f));
  }
  return in;
}

template <class T>
Outputs prefill_reference(const PrefillInputs& in, jb::ref::Round r) {
  const auto& p = in.spec;
  const int64_t qd = static_cast<int64_t>(p.H) * p.hd, kvd = static_cast<int64_t>(p.Hkv) * p.hd;
  std::vector<float> out, kc, vc;
  int64_t rows_out = 0;
  for (size_t s = 0; s < p.new_len.size(); ++s) {
    const int n = p.new_len[s], past = p.past[s];
    Mat<T> q = to_mat<T>(in.q[s].data(), n, qd);
    Mat<T> K = to_mat<T>(in.k[s].data(), past + n, kvd);
    Mat<T> V = to_mat<T>(in.v[s].data(), past + n, kvd);
    if (p.rope) {
      jb::ref::apply_rope(q, p.H, p.hd, past, p.theta);
      Mat<T> kn = K.bottomRows(n);
      jb::ref::apply_rope(kn, p.Hkv, p.hd, past, p.theta);
      jb::ref::rnd_inplace(q, r);
      jb::ref::rnd_inplace(kn, r);
      K.bottomRows(n) = kn;
    }
    for (const auto& b : compared_blocks(n, p.sampled)) {
      const int m = b.second - b.first;
      const Mat<T> qb = q.middleRows(b.first, m);
      const Mat<T> kb = K.topRows(past + b.second);
      const Mat<T> vb = V.topRows(past + b.second);
      append_rows(out, jb::ref::attention<T>(qb, kb, vb, p.H, p.Hkv, past + b.first,
                                             /*causal=*/true, r));
      append_rows(kc, Mat<T>(K.middleRows(past + b.first, m)));
      append_rows(vc, Mat<T>(V.middleRows(past + b.first, m)));
      rows_out += m;
    }
  }
  // Cache rows: exact bf16 copies without RoPE; rotated keys carry the rotation's rounding.
  const CheckKind kcache = p.rope ? CheckKind::Cache : CheckKind::Exact;
  return {NamedTensor{"out", {rows_out, qd}, std::move(out), CheckKind::Reduction, 0},
          NamedTensor{"k_cache", {rows_out, kvd}, std::move(kc), kcache, 0},
          NamedTensor{"v_cache", {rows_out, kvd}, std::move(vc), CheckKind::Exact, 0}};
}

Outputs prefill_kernel(const Case& c, KernelRun& run) {
  auto inp = memo<PrefillInputs>(c.str(), &make_prefill_inputs, c);
  const auto& in = *inp;
  const auto& p = in.spec;
  const int B = static_cast<int>(p.new_len.size());
  const int64_t qd = static_cast<int64_t>(p.H) * p.hd, kvd = static_cast<int64_t>(p.Hkv) * p.hd;
  int64_t total = 0, tmax = 0;
  for (int s = 0; s < B; ++s) {
    total += p.new_len[s];
    tmax = std::max<int64_t>(tmax, p.past[s] + p.new_len[s]);
  }
  tmax += 37;  // spare rows (NaN) past every sequence: reading them would show

  // Host staging: q, k_new, v_new token-major; the cache slabs with the past rows.
  Bits hq(static_cast<size_t>(total * qd)), hk(static_cast<size_t>(total * kvd)),
      hv(static_cast<size_t>(total * kvd));
  const size_t slab = static_cast<size_t>(tmax) * p.hd;
  Bits hkc = nan_bf16(static_cast<size_t>(B) * p.Hkv * slab);
  Bits hvc = nan_bf16(hkc.size());
  int64_t t0 = 0;
  for (int s = 0; s < B; ++s) {
    const int n = p.new_len[s], past = p.past[s];
    put_bf16(hq.data() + t0 * qd, in.q[s].data(), static_cast<size_t>(n * qd));
    put_bf16(hk.data() + t0 * kvd, in.k[s].data() + past * kvd, static_cast<size_t>(n * kvd));
    put_bf16(hv.data() + t0 * kvd, in.v[s].data() + past * kvd, static_cast<size_t>(n * kvd));
    for (int hh = 0; hh < p.Hkv; ++hh)
      for (int t = 0; t < past; ++t) {
        const size_t dst =
            (static_cast<size_t>(s) * p.Hkv + hh) * slab + static_cast<size_t>(t) * p.hd;
        put_bf16(hkc.data() + dst, in.k[s].data() + t * kvd + hh * p.hd, p.hd);
        put_bf16(hvc.data() + dst, in.v[s].data() + t * kvd + hh * p.hd, p.hd);
      }
    t0 += n;
  }
  auto dq = upload_bits(hq), dk = upload_bits(hk), dv = upload_bits(hv);
  jb::cuda::KvCache cache(B, tmax, p.Hkv, p.hd);
  JB_CUDA(cudaMemcpy(cache.view().k, hkc.data(), hkc.size() * 2, cudaMemcpyHostToDevice));
  JB_CUDA(cudaMemcpy(cache.view().v, hvc.data(), hvc.size() * 2, cudaMemcpyHostToDevice));
  cache.set_lengths(p.past);
  const jb::cuda::SeqBatch seqs =
      cache.append(dk.get(), kvd, dv.get(), kvd, p.new_len, p.rope ? p.theta : 0.0);
  if (p.rope) jb::cuda::rope_inplace(dq.get(), qd, p.H, p.hd, seqs, p.theta);

  jb::cuda::GuardedBuffer out(static_cast<size_t>(total * qd) * sizeof(bf16));
  out.poison();
  jb::cuda::PrefillArgs a;
  a.q = dq.get();
  a.q_stride = qd;
  a.out = static_cast<bf16*>(out.body());
  a.out_stride = qd;
  a.num_heads = p.H;
  a.kv = cache.view();
  a.seqs = seqs;
  run.variant =
      jb::cuda::attention_prefill(a, jb::cuda::parse_prefill_variant(c.get("variant", "auto")));
  JB_CUDA(cudaDeviceSynchronize());
  run.guards_ok = out.guards_intact();
  if (p.sampled) run.notes.push_back("rows=sampled: 8 blocks of 16 rows per sequence > 256");

  const std::vector<uint8_t> ob = out.download_body();
  const Bits kc = download_bits(cache.view().k, hkc.size());
  const Bits vc = download_bits(cache.view().v, hvc.size());
  auto val = [](const void* base, size_t i) {
    uint16_t b;
    std::memcpy(&b, static_cast<const uint8_t*>(base) + 2 * i, 2);
    return bf16_bits_to_float(b);
  };
  std::vector<float> o, ko, vo;
  int64_t rows_out = 0;
  t0 = 0;
  for (int s = 0; s < B; ++s) {
    const int n = p.new_len[s], past = p.past[s];
    for (const auto& b : compared_blocks(n, p.sampled)) {
      for (int r = b.first; r < b.second; ++r) {
        for (int64_t j = 0; j < qd; ++j) o.push_back(val(ob.data(), (t0 + r) * qd + j));
        for (int hh = 0; hh < p.Hkv; ++hh)
          for (int d = 0; d < p.hd; ++d) {
            const size_t i = (static_cast<size_t>(s) * p.Hkv + hh) * slab +
                             static_cast<size_t>(past + r) * p.hd + d;
            ko.push_back(val(kc.data(), i));
            vo.push_back(val(vc.data(), i));
          }
      }
      rows_out += b.second - b.first;
    }
    t0 += n;
  }
  const CheckKind kcache = p.rope ? CheckKind::Cache : CheckKind::Exact;
  return {NamedTensor{"out", {rows_out, qd}, std::move(o), CheckKind::Reduction, 0},
          NamedTensor{"k_cache", {rows_out, kvd}, std::move(ko), kcache, 0},
          NamedTensor{"v_cache", {rows_out, kvd}, std::move(vo), CheckKind::Exact, 0}};
}

// ---------------------------------------------------------------------------------------------
// ATTN_DECODE

struct DecodeInputs {
  int H = 0, Hkv = 0, hd = 0;
  std::vector<int> lens;
  std::vector<float> q;                  // [B, H*hd]
  std::vector<std::vector<float>> k, v;  // per sequence [len, Hkv*hd]
};

DecodeInputs make_decode_inputs(const Case& c) {
  DecodeInputs in;
  in.H = static_cast<int>(c.geti("H"));
  in.Hkv = static_cast<int>(c.geti("Hkv"));
  in.hd = static_cast<int>(c.geti("hd"));
  in.lens = split_plus(c.get("lens"));
  const float qscale = c.has("qscale") ? static_cast<float>(c.getf("qscale")) : 1.0f;
  in.q = draw(c.seed, "ATTN_DECODE.q", in.lens.size() * in.H * in.hd, qscale);
  for (size_t s = 0; s < in.lens.size(); ++s) {
    const size_t n = static_cast<size_t>(in.lens[s]) * in.Hkv * in.hd;
    in.k.push_back(draw(c.seed, "ATTN_DECODE.k." + std::to_string(s), n, 1.0f));
    in.v.push_back(draw(c.seed, "ATTN_DECODE.v." + std::to_string(s), n, 1.0f));
  }
  return in;
}

template <class T>
Outputs decode_reference(const DecodeInputs& in, jb::ref::Round r) {
  const int64_t qd = static_cast<int64_t>(in.H) * in.hd, kvd = static_cast<int64_t>(in.Hkv) * in.hd;
  std::vector<float> out;
  for (size_t s = 0; s < in.lens.size(); ++s) {
    const int len = in.lens[s];
    const Mat<T> q = to_mat<T>(in.q.data() + s * qd, 1, qd);
    const Mat<T> K = to_mat<T>(in.k[s].data(), len, kvd);
    const Mat<T> V = to_mat<T>(in.v[s].data(), len, kvd);
    append_rows(out, jb::ref::attention<T>(q, K, V, in.H, in.Hkv, len - 1, true, r));
  }
  return {NamedTensor{
      "out", {static_cast<int64_t>(in.lens.size()), qd}, std::move(out), CheckKind::Reduction, -1}};
}

Outputs decode_kernel(const Case& c, KernelRun& run) {
  auto inp = memo<DecodeInputs>(c.str(), &make_decode_inputs, c);
  const auto& in = *inp;
  const int B = static_cast<int>(in.lens.size());
  const int64_t qd = static_cast<int64_t>(in.H) * in.hd, kvd = static_cast<int64_t>(in.Hkv) * in.hd;
  const int max_len = *std::max_element(in.lens.begin(), in.lens.end());
  const int64_t tmax = max_len + 37;
  const size_t slab = static_cast<size_t>(tmax) * in.hd;
  Bits hkc = nan_bf16(static_cast<size_t>(B) * in.Hkv * slab);
  Bits hvc = nan_bf16(hkc.size());
  for (int s = 0; s < B; ++s)
    for (int hh = 0; hh < in.Hkv; ++hh)
      for (int t = 0; t < in.lens[s]; ++t) {
        const size_t dst =
            (static_cast<size_t>(s) * in.Hkv + hh) * slab + static_cast<size_t>(t) * in.hd;
        put_bf16(hkc.data() + dst, in.k[s].data() + t * kvd + hh * in.hd, in.hd);
        put_bf16(hvc.data() + dst, in.v[s].data() + t * kvd + hh * in.hd, in.hd);
      }
  Bits hq(in.q.size());
  put_bf16(hq.data(), in.q.data(), in.q.size());
  auto dq = upload_bits(hq);
  jb::cuda::KvCache cache(B, tmax, in.Hkv, in.hd);
  JB_CUDA(cudaMemcpy(cache.view().k, hkc.data(), hkc.size() * 2, cudaMemcpyHostToDevice));
  JB_CUDA(cudaMemcpy(cache.view().v, hvc.data(), hvc.size() * 2, cudaMemcpyHostToDevice));
  cache.set_lengths(in.lens);

  jb::cuda::DecodeArgs a;
  a.q = dq.get();
  a.q_stride = qd;
  a.num_heads = in.H;
  a.kv = cache.view();
  a.kv_len = cache.device_lengths();
  a.max_kv_len = max_len;
  a.num_splits = c.has("splits") ? static_cast<int>(c.geti("splits")) : 0;
  const jb::cuda::DecodeVariant variant = jb::cuda::parse_decode_variant(c.get("variant", "auto"));
  const int splits = a.num_splits > 0
                         ? a.num_splits
                         : jb::cuda::decode_num_splits(B, in.H, in.Hkv, in.hd, max_len, variant);
  jb::cuda::DecodeWorkspace ws;
  jb::cuda::decode_workspace_init(ws, B, in.H, in.Hkv, in.hd, splits);
  jb::cuda::GuardedBuffer out(static_cast<size_t>(B * qd) * sizeof(bf16));
  out.poison();
  a.out = static_cast<bf16*>(out.body());
  a.out_stride = qd;
  run.variant = jb::cuda::attention_decode(a, ws, variant);
  JB_CUDA(cudaDeviceSynchronize());
  run.guards_ok = out.guards_intact();
  run.notes.push_back(
      "splits=" + std::to_string(jb::cuda::decode_split(max_len, splits, ws.max_splits).splits));
  const std::vector<uint8_t> ob = out.download_body();
  std::vector<float> o = bits_to_float(ob.data(), static_cast<size_t>(B * qd));
  return {NamedTensor{"out", {B, qd}, std::move(o), CheckKind::Reduction, -1}};
}

// ---------------------------------------------------------------------------------------------
// ATTN_LAYER: prefill(L) then n decode steps on the GPU, against one reference prefill of L+n
// tokens (the handoff prefill -> decode must not change the result beyond rounding).

struct LayerInputs {
  ModelConfig cfg;
  int L = 0, n = 0;
  std::vector<float> x, wq, wk, wv, wo;
};

LayerInputs make_layer_inputs(const Case& c) {
  LayerInputs in;
  ModelConfig& m = in.cfg;
  m.name = "attn-layer-case";
  m.model_type = "jamba";
  m.hidden_size = c.geti("d");
  m.num_attention_heads = c.geti("H");
  m.num_key_value_heads = c.geti("Hkv");
  m.head_dim = c.geti("hd");
  m.use_rope = c.get("rope", "0") == "1";
  if (c.has("theta")) m.rope_theta = c.getf("theta");
  in.L = static_cast<int>(c.geti("L"));
  in.n = static_cast<int>(c.geti("n"));
  const int64_t d = m.hidden_size;
  const float ws = 1.0f / std::sqrt(static_cast<float>(d));
  const float wso = 1.0f / std::sqrt(static_cast<float>(m.q_dim()));
  in.x = draw(c.seed, "ATTN_LAYER.x", static_cast<size_t>((in.L + in.n) * d), 1.0f);
  in.wq = draw(c.seed, "ATTN_LAYER.q_proj", static_cast<size_t>(m.q_dim() * d), ws);
  in.wk = draw(c.seed, "ATTN_LAYER.k_proj", static_cast<size_t>(m.kv_dim() * d), ws);
  in.wv = draw(c.seed, "ATTN_LAYER.v_proj", static_cast<size_t>(m.kv_dim() * d), ws);
  in.wo = draw(c.seed, "ATTN_LAYER.o_proj", static_cast<size_t>(d * m.q_dim()), wso);
  return in;
}

template <class T>
Outputs layer_reference(const LayerInputs& in, jb::ref::Round r) {
  const auto& m = in.cfg;
  const int64_t d = m.hidden_size;
  jb::ref::AttentionWeights<T> w;
  w.q_proj = to_mat<T>(in.wq.data(), m.q_dim(), d);
  w.k_proj = to_mat<T>(in.wk.data(), m.kv_dim(), d);
  w.v_proj = to_mat<T>(in.wv.data(), m.kv_dim(), d);
  w.o_proj = to_mat<T>(in.wo.data(), d, m.q_dim());
  jb::ref::KvCache<T> cache;
  const Mat<T> x = to_mat<T>(in.x.data(), in.L + in.n, d);
  const Mat<T> y = jb::ref::attention_layer<T>(x, w, m, cache, r);
  std::vector<float> out;
  append_rows(out, y);
  return {NamedTensor{"out", {in.L + in.n, d}, std::move(out), CheckKind::Reduction, 0}};
}

Outputs layer_kernel(const Case& c, KernelRun& run) {
  auto inp = memo<LayerInputs>(c.str(), &make_layer_inputs, c);
  const auto& in = *inp;
  const auto& m = in.cfg;
  const int64_t d = m.hidden_size;
  auto up = [](const std::vector<float>& h) {
    Bits b(h.size());
    put_bf16(b.data(), h.data(), h.size());
    return upload_bits(b);
  };
  auto dx = up(in.x), dwq = up(in.wq), dwk = up(in.wk), dwv = up(in.wv), dwo = up(in.wo);
  jb::cuda::AttentionLayerWeights w{dwq.get(), dwk.get(), dwv.get(), dwo.get()};
  jb::cuda::AttentionLayer layer(m, 1, in.L + in.n + 5);
  layer.prefill_variant = jb::cuda::parse_prefill_variant(c.get("variant", "auto"));
  jb::cuda::GuardedBuffer out(static_cast<size_t>((in.L + in.n) * d) * sizeof(bf16));
  out.poison();
  bf16* o = static_cast<bf16*>(out.body());
  std::string variants = layer.prefill(dx.get(), o, {in.L}, w);
  for (int i = 0; i < in.n; ++i) {
    const std::string v = layer.decode(dx.get() + (in.L + i) * d, o + (in.L + i) * d, w);
    if (i == 0) variants += "+" + v;
  }
  JB_CUDA(cudaDeviceSynchronize());
  run.variant = variants;
  run.guards_ok = out.guards_intact();
  const std::vector<uint8_t> ob = out.download_body();
  std::vector<float> y = bits_to_float(ob.data(), static_cast<size_t>((in.L + in.n) * d));
  return {NamedTensor{"out", {in.L + in.n, d}, std::move(y), CheckKind::Reduction, 0}};
}

// Causal score/value FLOPs of a prefill case: 2 GEMMs x 2 FLOP x H x hd x visible pairs.
double prefill_flops(const Case& c) {
  const PrefillSpec p = prefill_spec(c);
  double pairs = 0;
  for (size_t s = 0; s < p.new_len.size(); ++s) {
    const double n = p.new_len[s], past = p.past[s];
    pairs += n * past + n * (n + 1) / 2;
  }
  return 4.0 * p.H * p.hd * pairs;
}

double decode_bytes(const Case& c) {
  double rows = 0;
  for (int len : split_plus(c.get("lens"))) rows += len;
  return rows * 2.0 /*k and v*/ * c.geti("Hkv") * c.geti("hd") * 2.0 /*bf16*/;
}

}  // namespace

void register_attention_ops(Registry& r) {
  for (OpInfo& op : attn::listings()) {
    if (op.name == "ATTN_PREFILL") {
      op.reference = [](const Case& c, Precision p) -> Outputs {
        auto in = memo<PrefillInputs>(c.str(), &make_prefill_inputs, c);
        return p == Precision::Truth ? prefill_reference<double>(*in, jb::ref::Round::None)
                                     : prefill_reference<float>(*in, jb::ref::Round::Bf16);
      };
      op.kernel = prefill_kernel;
      op.flops = prefill_flops;
    } else if (op.name == "ATTN_DECODE") {
      op.reference = [](const Case& c, Precision p) -> Outputs {
        auto in = memo<DecodeInputs>(c.str(), &make_decode_inputs, c);
        return p == Precision::Truth ? decode_reference<double>(*in, jb::ref::Round::None)
                                     : decode_reference<float>(*in, jb::ref::Round::Bf16);
      };
      op.kernel = decode_kernel;
      op.bytes = decode_bytes;
    } else if (op.name == "ATTN_LAYER") {
      op.reference = [](const Case& c, Precision p) -> Outputs {
        auto in = memo<LayerInputs>(c.str(), &make_layer_inputs, c);
        return p == Precision::Truth ? layer_reference<double>(*in, jb::ref::Round::None)
                                     : layer_reference<float>(*in, jb::ref::Round::Bf16);
      };
      op.kernel = layer_kernel;
    }
    r.add(std::move(op));
  }
}

}  // namespace jb::cmp
