// GPU attention: every non-big ATTN_PREFILL / ATTN_DECODE / ATTN_LAYER registry case through the
// compare runner (tolerance policy of compare/README.md, two runs bitwise equal, guards intact),
// plus the attention layer's prefill(L) + decode(n) handoff against one prefill(L + n) on the GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "compare/registry.hpp"
#include "compare/runner.hpp"
#include "core/bf16.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "cuda/attention.hpp"
#include "cuda/attention_layer.hpp"
#include "cuda/common.cuh"
#include "cuda/kv_cache.hpp"

namespace {

using jb::cuda::bf16;

#define SKIP_WITHOUT_GPU()                                                                 \
  do {                                                                                     \
    if (!jb::cuda::device_available()) GTEST_SKIP() << "no CUDA device: GPU test skipped"; \
  } while (0)

void run_op(const std::string& name) {
  jb::cmp::Selection sel;
  sel.ops = {name};
  sel.quick = true;  // big=1 cases are for `jambench compare` on the GPU machine
  const auto cases = jb::cmp::select_cases(jb::cmp::registry(), sel);
  ASSERT_FALSE(cases.empty()) << name << " has no cases in the registry";
  for (const auto& [op, c] : cases) {
    const jb::cmp::CaseResult r = jb::cmp::run_case(*op, c);
    std::string detail = r.reason;
    for (const auto& t : r.tensors)
      for (const auto& f : t.verdict.failures) detail += "; " + t.name + ": " + f;
    EXPECT_EQ(r.status, jb::cmp::Status::Pass) << r.case_str << " [" << r.variant << "] "
                                               << jb::cmp::status_name(r.status) << ": " << detail;
    EXPECT_TRUE(r.deterministic) << r.case_str;
    EXPECT_TRUE(r.guards_ok) << r.case_str;
  }
}

TEST(CudaAttention, PrefillCases) {
  SKIP_WITHOUT_GPU();
  run_op("ATTN_PREFILL");
}

TEST(CudaAttention, DecodeCases) {
  SKIP_WITHOUT_GPU();
  run_op("ATTN_DECODE");
}

TEST(CudaAttention, LayerCases) {
  SKIP_WITHOUT_GPU();
  run_op("ATTN_LAYER");
}

std::vector<uint16_t> random_bits(const char* name, size_t n, float stdev) {
  std::vector<uint16_t> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = jb::float_to_bf16_bits(jb::rng_normal(11, jb::stream_id(name), i) * stdev);
  return v;
}

jb::cuda::DeviceBuffer<bf16> upload(const std::vector<uint16_t>& h) {
  jb::cuda::DeviceBuffer<bf16> d(h.size());
  JB_CUDA(cudaMemcpy(d.get(), h.data(), h.size() * 2, cudaMemcpyHostToDevice));
  return d;
}

std::vector<float> download(const bf16* d, size_t n) {
  std::vector<uint16_t> h(n);
  JB_CUDA(cudaMemcpy(h.data(), d, n * 2, cudaMemcpyDeviceToHost));
  std::vector<float> f(n);
  for (size_t i = 0; i < n; ++i) f[i] = jb::bf16_bits_to_float(h[i]);
  return f;
}

// prefill(L) then decode(n) on one layer must equal prefill(L + n) on another, up to the bf16
// rounding of two different kernel paths (policy backstops: rel_l2 <= 1e-2, cosine >= 0.9999).
void check_handoff(bool rope) {
  jb::ModelConfig c;
  c.hidden_size = 512;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 2;
  c.head_dim = 128;
  c.use_rope = rope;
  c.rope_theta = 10000.0;
  const int L = 150, n = 6, d = 512;
  const float ws = 1.0f / std::sqrt(static_cast<float>(d));
  auto x = upload(random_bits("x", static_cast<size_t>((L + n) * d), 1.0f));
  auto wq = upload(random_bits("wq", static_cast<size_t>(c.q_dim() * d), ws));
  auto wk = upload(random_bits("wk", static_cast<size_t>(c.kv_dim() * d), ws));
  auto wv = upload(random_bits("wv", static_cast<size_t>(c.kv_dim() * d), ws));
  auto wo = upload(random_bits("wo", static_cast<size_t>(d * c.q_dim()), ws));
  jb::cuda::AttentionLayerWeights w{wq.get(), wk.get(), wv.get(), wo.get()};
  jb::cuda::DeviceBuffer<bf16> y_step(static_cast<size_t>((L + n) * d));
  jb::cuda::DeviceBuffer<bf16> y_full(static_cast<size_t>((L + n) * d));

  jb::cuda::AttentionLayer stepwise(c, 1, L + n);
  EXPECT_NE(stepwise.prefill(x.get(), y_step.get(), {L}, w), "none");
  for (int i = 0; i < n; ++i)
    EXPECT_EQ(stepwise.decode(x.get() + (L + i) * d, y_step.get() + (L + i) * d, w), "splitkv_mma");
  EXPECT_EQ(stepwise.cache().lengths()[0], L + n);
  jb::cuda::AttentionLayer whole(c, 1, L + n);
  whole.prefill(x.get(), y_full.get(), {L + n}, w);
  JB_CUDA(cudaDeviceSynchronize());

  const auto a = download(y_step.get(), y_step.size());
  const auto b = download(y_full.get(), y_full.size());
  double diff2 = 0, ref2 = 0, dot = 0, a2 = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(std::isfinite(a[i])) << "non-finite output at " << i;
    diff2 += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    ref2 += double(b[i]) * b[i];
    dot += double(a[i]) * b[i];
    a2 += double(a[i]) * a[i];
  }
  ASSERT_GT(ref2, 0.0);  // an all-zero output would pass trivially
  EXPECT_LE(std::sqrt(diff2 / ref2), 1e-2);
  EXPECT_GE(dot / std::sqrt(a2 * ref2), 0.9999);
}

TEST(CudaAttention, LayerPrefillThenDecodeEqualsLongerPrefill) {
  SKIP_WITHOUT_GPU();
  check_handoff(false);
}

TEST(CudaAttention, LayerPrefillThenDecodeEqualsLongerPrefillWithRope) {
  SKIP_WITHOUT_GPU();
  check_handoff(true);
}

// Both decode kernels against the references (compare policy, two runs bitwise equal, guards
// intact) on a few shapes, each reporting the kernel that ran; Auto must run the mma kernel.
// Shapes: 32:8 hd 128 over a mixed-length batch (lengths 1 and odd, several splits), G = 1 at
// hd 64 (64-row splits: the 40-row sequence has a single split, the other 33), G = 8 with a
// sharp softmax.
TEST(CudaAttention, DecodeVariantsAgreeWithReference) {
  SKIP_WITHOUT_GPU();
  const jb::cmp::OpInfo* op = jb::cmp::registry().find("ATTN_DECODE");
  ASSERT_NE(op, nullptr);
  const char* shapes[] = {"H=32,Hkv=8,hd=128,lens=1+100+5000+777", "H=2,Hkv=2,hd=64,lens=40+2049",
                          "H=64,Hkv=8,hd=128,lens=3000,qscale=4"};
  const std::pair<const char*, const char*> variants[] = {
      {"fma", "splitkv_fma"}, {"mma", "splitkv_mma"}, {"auto", "splitkv_mma"}};
  for (const char* shape : shapes)
    for (const auto& [variant, expected] : variants) {
      const jb::cmp::Case c = jb::cmp::Case::parse(std::string("ATTN_DECODE(") + shape +
                                                   ",variant=" + variant + ",seed=3)");
      const jb::cmp::CaseResult r = jb::cmp::run_case(*op, c);
      std::string detail = r.reason;
      for (const auto& t : r.tensors)
        for (const auto& f : t.verdict.failures) detail += "; " + t.name + ": " + f;
      EXPECT_EQ(r.status, jb::cmp::Status::Pass) << r.case_str << ": " << detail;
      EXPECT_EQ(r.variant, expected) << r.case_str;
      EXPECT_TRUE(r.deterministic) << r.case_str;
      EXPECT_TRUE(r.guards_ok) << r.case_str;
    }
}

TEST(CudaAttention, CacheOverflowIsOutOfMemory) {
  SKIP_WITHOUT_GPU();
  jb::cuda::KvCache cache(2, 16, 1, 64);
  jb::cuda::DeviceBuffer<bf16> kv(static_cast<size_t>(20 * 64));
  JB_CUDA(cudaMemset(kv.get(), 0, kv.bytes()));
  cache.append(kv.get(), 64, kv.get(), 64, {10, 3});
  EXPECT_EQ(cache.lengths()[0], 10);
  try {
    cache.append(kv.get(), 64, kv.get(), 64, {7, 0});
    FAIL() << "appending past max_tokens did not throw";
  } catch (const jb::Error& e) {
    EXPECT_EQ(e.kind(), jb::ErrorKind::OutOfMemory);
  }
  EXPECT_EQ(cache.lengths()[0], 10);  // a refused append changes nothing
}

}  // namespace

// Host arithmetic only (runs without a GPU): the split count a decode launch really uses, which
// the compare harness reports. 1000 rows over 7 requested splits: 143 rows each, rounded up to
// three 64-row tiles (192), so 6 splits; a request above the workspace is capped first.
TEST(AttentionDecodeSplit, WholeTilesPerSplit) {
  const jb::cuda::DecodeSplit a = jb::cuda::decode_split(1000, 7, 256);
  EXPECT_EQ(a.splits, 6);
  EXPECT_EQ(a.chunk, 192);
  const jb::cuda::DecodeSplit b = jb::cuda::decode_split(8192, 300, 256);
  EXPECT_EQ(b.chunk, 64);
  EXPECT_EQ(b.splits, 128);
  const jb::cuda::DecodeSplit c = jb::cuda::decode_split(1, 16, 16);
  EXPECT_EQ(c.splits, 1);
}

// Host only: the decode variant knob's names, parsing and what Auto resolves to.
TEST(AttentionDecodeVariant, NamesParseAndAuto) {
  using jb::cuda::DecodeVariant;
  for (DecodeVariant v : {DecodeVariant::Auto, DecodeVariant::Fma, DecodeVariant::Mma})
    EXPECT_EQ(jb::cuda::parse_decode_variant(jb::cuda::decode_variant_name(v)), v);
  EXPECT_EQ(jb::cuda::parse_decode_variant(""), DecodeVariant::Auto);
  EXPECT_EQ(jb::cuda::resolve_decode_variant(DecodeVariant::Auto), DecodeVariant::Mma);
  EXPECT_EQ(jb::cuda::resolve_decode_variant(DecodeVariant::Fma), DecodeVariant::Fma);
  try {
    jb::cuda::parse_decode_variant("splitkv");
    FAIL() << "an unknown variant name was accepted";
  } catch (const jb::Error& e) {
    EXPECT_EQ(e.kind(), jb::ErrorKind::Usage);
  }
}

// Host only: the prefill variant knob's names round-trip through parsing; "" is Auto.
TEST(AttentionPrefillVariant, NamesParse) {
  using jb::cuda::PrefillVariant;
  for (PrefillVariant v :
       {PrefillVariant::Auto, PrefillVariant::Simple, PrefillVariant::Mma64, PrefillVariant::Mma128,
        PrefillVariant::Mma128R32, PrefillVariant::Wgmma})
    EXPECT_EQ(jb::cuda::parse_prefill_variant(jb::cuda::prefill_variant_name(v)), v);
  EXPECT_EQ(jb::cuda::parse_prefill_variant(""), PrefillVariant::Auto);
  try {
    jb::cuda::parse_prefill_variant("mma32");
    FAIL() << "an unknown variant name was accepted";
  } catch (const jb::Error& e) {
    EXPECT_EQ(e.kind(), jb::ErrorKind::Usage);
  }
}
