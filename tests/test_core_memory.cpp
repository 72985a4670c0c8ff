// Memory model: expected integers are the independent hand computations of jamba-spec §5 and §5.4
// (not outputs of this code), plus properties of the activation model and max-context search.
#include <gtest/gtest.h>

#include "core/config.hpp"
#include "core/error.hpp"
#include "core/memory_model.hpp"

namespace jb {
namespace {

constexpr int64_t kGiB = int64_t{1} << 30;

TEST(Params, JambaV01PerLayerAndTotal) {
  const ParamCounts p = count_params(preset("jamba-v0.1"));
  EXPECT_EQ(p.mamba_layer, 105308448);  // jamba-spec §5.1
  EXPECT_EQ(p.attention_layer, 41943040);
  EXPECT_EQ(p.mlp, 176160768);
  EXPECT_EQ(p.moe_layer, 2818637824);
  EXPECT_EQ(p.moe_layer_active, 352387072);
  EXPECT_EQ(p.total, 51570323328);
  EXPECT_EQ(p.active, 12110311296);
}

TEST(Params, Jamba15Large) {
  const ParamCounts p = count_params(preset("jamba-1.5-large"));
  EXPECT_EQ(p.mamba_layer, 420332064);  // jamba-spec §5.2
  EXPECT_EQ(p.attention_layer, 150994944);
  EXPECT_EQ(p.mlp, 603979776);
  EXPECT_EQ(p.moe_layer, 9663807488);
  EXPECT_EQ(p.total, 398555145696);
  EXPECT_EQ(p.active, 94149338592);
}

TEST(Params, Baselines) {
  const ParamCounts mixtral = count_params(preset("mixtral-8x7b"));  // jamba-spec §5.3
  EXPECT_EQ(mixtral.total, 46702792704);
  EXPECT_EQ(mixtral.active, 12879925248);
  EXPECT_EQ(count_params(preset("llama-2-7b")).total, 6738415616);
  EXPECT_EQ(count_params(preset("llama-2-7b")).active, 6738415616);
  EXPECT_EQ(count_params(preset("llama-2-70b")).total, 68976648192);
  EXPECT_EQ(count_params(preset("mistral-7b")).total, 7241732096);
}

TEST(Params, JambaV01WithoutEmbeddingAndHead) {
  // jamba-spec §5.1: 11.57B active without embedding + head (2 x 268,435,456).
  const ParamCounts p = count_params(preset("jamba-v0.1"));
  EXPECT_EQ(p.embedding, 268435456);
  EXPECT_EQ(p.active - p.embedding - p.lm_head, 12110311296 - 2 * 268435456);
}

TEST(KvCache, BytesPerTokenAndAt256K) {
  // jamba-spec §5.4.
  EXPECT_EQ(kv_bytes_per_token(preset("llama-2-7b")), 524288);
  EXPECT_EQ(kv_bytes_per_token(preset("mistral-7b")), 131072);
  EXPECT_EQ(kv_bytes_per_token(preset("mixtral-8x7b")), 131072);
  EXPECT_EQ(kv_bytes_per_token(preset("jamba-v0.1")), 16384);
  EXPECT_EQ(kv_bytes_per_token(preset("jamba-1.5-large")), 36864);
  EXPECT_EQ(kv_bytes_per_token(preset("llama-2-70b")), 327680);
  EXPECT_EQ(kv_bytes_per_token(preset("llama-2-13b")), 819200);
  // Table 1 (P1): 128 / 32 / 32 / 4 GB at 256K tokens, 16-bit; "GB" = GiB.
  const int64_t ctx = 262144;
  EXPECT_EQ(kv_bytes_per_token(preset("llama-2-7b")) * ctx, 128 * kGiB);
  EXPECT_EQ(kv_bytes_per_token(preset("mistral-7b")) * ctx, 32 * kGiB);
  EXPECT_EQ(kv_bytes_per_token(preset("mixtral-8x7b")) * ctx, 32 * kGiB);
  EXPECT_EQ(kv_bytes_per_token(preset("jamba-v0.1")) * ctx, 4 * kGiB);
  EXPECT_EQ(kv_bytes_per_token(preset("jamba-1.5-large")) * ctx, 9 * kGiB);
  EXPECT_EQ(kv_bytes_per_token(preset("llama-2-70b")) * ctx, 80 * kGiB);
  // fp32 KV doubles it; a pure-Mamba ablation has none.
  EXPECT_EQ(kv_bytes_per_token(preset("jamba-v0.1"), Dtype::F32), 32768);
  EXPECT_EQ(kv_bytes_per_token(preset("jamba-v0.1+mamba-only")), 0);
}

TEST(MambaState, BytesPerSequence) {
  // jamba-spec §5.4: 28 x 8192 x (4 + 16) x 2 B; conv 1.75 MiB + ssm 7.0 MiB.
  const MambaStateBytes s = mamba_state_bytes(preset("jamba-v0.1"), Dtype::BF16);
  EXPECT_EQ(s.total, 9175040);
  EXPECT_EQ(s.conv, 1835008);
  EXPECT_EQ(s.ssm, 7340032);
  // 15.75 MiB with an fp32 SSM state.
  EXPECT_EQ(mamba_state_bytes(preset("jamba-v0.1"), Dtype::F32).total, 15 * 1048576 + 786432);
  EXPECT_EQ(mamba_state_bytes(preset("jamba-1.5-large"), Dtype::BF16).total, 41287680);
  EXPECT_EQ(mamba_state_bytes(preset("mixtral-8x7b"), Dtype::BF16).total, 0);
}

TEST(Weights, FormatsAndExpertsInt8) {
  const ModelConfig c = preset("jamba-v0.1");
  const ParamCounts p = count_params(c);
  EXPECT_EQ(weight_bytes(c, WeightFormat::BF16).total, 2 * p.total);
  EXPECT_EQ(weight_bytes(c, WeightFormat::FP32).total, 4 * p.total);
  const WeightBytes w = weight_bytes(c, WeightFormat::ExpertsInt8);
  // int8: 16 dense MLPs + 16 layers x 16 experts, 3·4096·14336 each (routers stay bf16).
  const int64_t mlp = 3LL * 4096 * 14336;
  EXPECT_EQ(w.int8_params, 16 * mlp + 16 * 16 * mlp);
  // Scales: (2·I + d) output rows per MLP, fp32.
  EXPECT_EQ(w.scale_bytes, (16 + 16 * 16) * (2LL * 14336 + 4096) * 4);
  EXPECT_EQ(w.other_bytes, 2 * (p.total - w.int8_params));
  EXPECT_EQ(w.total, w.int8_bytes + w.scale_bytes + w.other_bytes);
  // Int8 on all linear layers is smaller still; neither touches embedding/head.
  EXPECT_LT(weight_bytes(c, WeightFormat::Int8Linear).total, w.total);
  EXPECT_GT(weight_bytes(c, WeightFormat::Int8Linear).other_bytes, 4 * p.embedding);
}

TEST(Predict, BreakdownAddsUpAndScalesWithContext) {
  const ModelConfig c = preset("jamba-v0.1");
  MemoryPolicy pol;
  pol.weights = WeightFormat::ExpertsInt8;
  const MemoryBreakdown b = predict_memory(c, pol, MemoryRequest{2, 4096, 0});
  EXPECT_EQ(b.kv_cache, 2 * 4096 * 16384);
  EXPECT_EQ(b.mamba_state, 2 * mamba_state_bytes(c, Dtype::F32).total);
  EXPECT_EQ(b.weights, weight_bytes(c, WeightFormat::ExpertsInt8).total);
  EXPECT_EQ(b.total,
            b.weights + b.kv_cache + b.mamba_state + b.activations + b.workspace + b.reserved);
  int64_t counted = 0;
  for (const MemoryTerm& t : b.terms)
    if (t.counted) counted += t.bytes;
  EXPECT_EQ(counted, b.total);
  // Jamba's MoE buffers ([T*k, 2I] ...) dominate its layer scratch.
  EXPECT_EQ(b.peak_group, "moe");
  // Residual stream alone: [B*L, d] bf16.
  bool found = false;
  for (const MemoryTerm& t : b.terms)
    if (t.name == "act.residual") {
      found = true;
      EXPECT_EQ(t.bytes, 2LL * 4096 * 4096 * 2);
    }
  EXPECT_TRUE(found);
  // Chunked prefill bounds activations by the chunk, not the context.
  const MemoryBreakdown c1 = predict_memory(c, pol, MemoryRequest{1, 65536, 2048});
  const MemoryBreakdown c2 = predict_memory(c, pol, MemoryRequest{1, 131072, 2048});
  EXPECT_EQ(c1.activations, c2.activations);
  EXPECT_EQ(c2.kv_cache - c1.kv_cache, 65536LL * 16384);
  const MemoryBreakdown one_shot = predict_memory(c, pol, MemoryRequest{1, 131072, 0});
  EXPECT_GT(one_shot.activations, 32 * c2.activations);
}

TEST(Predict, RejectsBadRequests) {
  EXPECT_THROW(predict_memory(preset("jamba-tiny"), MemoryPolicy{}, MemoryRequest{0, 10, 0}),
               Error);
  EXPECT_THROW(predict_memory(preset("jamba-tiny"), MemoryPolicy{}, MemoryRequest{1, -1, 0}),
               Error);
}

TEST(MaxContext, MonotoneInGpuMemoryAndExactAtBoundary) {
  const ModelConfig c = preset("mixtral-8x7b");
  MemoryPolicy pol;
  pol.weights = WeightFormat::ExpertsInt8;
  int64_t previous = 0;
  for (int64_t gib = 40; gib <= 140; gib += 10) {
    const int64_t n = max_context(c, pol, gib * kGiB, 1, 0);
    EXPECT_GE(n, previous) << gib << " GiB";
    previous = n;
    if (n > 0 && n < (int64_t{1} << 26)) {
      EXPECT_LE(predict_memory(c, pol, MemoryRequest{1, n, 0}).total, gib * kGiB);
      EXPECT_GT(predict_memory(c, pol, MemoryRequest{1, n + 1, 0}).total, gib * kGiB);
    }
  }
  EXPECT_GT(previous, 0);
  // Weights alone do not fit in 20 GiB.
  EXPECT_EQ(max_context(c, pol, 20 * kGiB, 1, 0), 0);
}

TEST(MaxContext, Figure2OrderingJambaMixtralLlama70B) {
  // P1 Figure 2: one 80 GB GPU with int8 weights; Jamba > Mixtral > Llama-2-70B.
  MemoryPolicy pol;
  pol.weights = WeightFormat::ExpertsInt8;
  const int64_t gpu = 80 * kGiB;
  for (int64_t chunk : {int64_t{0}, int64_t{8192}}) {
    SCOPED_TRACE(chunk);
    const int64_t jamba = max_context(preset("jamba-v0.1"), pol, gpu, 1, chunk);
    const int64_t mixtral = max_context(preset("mixtral-8x7b"), pol, gpu, 1, chunk);
    const int64_t llama = max_context(preset("llama-2-70b"), pol, gpu, 1, chunk);
    EXPECT_GT(jamba, mixtral);
    EXPECT_GT(mixtral, llama);
    EXPECT_GT(llama, 0);
  }
  // performance-targets.md: Jamba >= 256K on one 80 GB GPU with chunked prefill.
  EXPECT_GE(max_context(preset("jamba-v0.1"), pol, gpu, 1, 8192), 262144);
}

TEST(MemoryReport, ContainsPaperRows) {
  MemoryReportOptions opt;
  const MemoryReport rep = memory_report(opt);
  EXPECT_NE(rep.table1_markdown.find("51,570,323,328"), std::string::npos);
  EXPECT_NE(rep.table1_markdown.find("128.00 GiB"), std::string::npos);
  EXPECT_NE(rep.table1_markdown.find("4.00 GiB"), std::string::npos);
  EXPECT_NE(rep.table1_markdown.find("9.00 GiB"), std::string::npos);
  EXPECT_NE(rep.table1_markdown.find("80.00 GiB"), std::string::npos);
  EXPECT_NE(rep.figure2_markdown.find("140K"), std::string::npos);
  EXPECT_NE(rep.section.markdown.find("Assumptions"), std::string::npos);
  EXPECT_EQ(rep.results.size(), 6u);
}

}  // namespace
}  // namespace jb
