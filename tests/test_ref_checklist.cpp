// jamba-spec §7 checklist rules for the router, the MoE combine and attention positions, each as
// a test that fails if the rule is broken (the Mamba rules are in test_ref_mamba.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "core/config.hpp"
#include "reference/attention.hpp"
#include "reference/moe.hpp"
#include "test_ref_util.hpp"

namespace jb::ref {
namespace {

using namespace jb::ref::testing;

// --- item 1: no renormalisation for Jamba, renormalisation for Mixtral ----------------------

TEST(RefChecklist, JambaTopKWeightsAreNotRenormalised) {
  const Mat<float> x = rand_mat<float>(16, 8, 200, 1);
  const Mat<float> router = rand_mat<float>(16, 8, 200, 2, 0.3f);  // 16 experts, top-2
  const Routing jamba = route<float>(x, router, 2, /*renormalize=*/false, Round::None);
  const Routing mixtral = route<float>(x, router, 2, /*renormalize=*/true, Round::None);
  for (size_t t = 0; t < 16; ++t) {
    const float sj = jamba.weight[t][0] + jamba.weight[t][1];
    const float sm = mixtral.weight[t][0] + mixtral.weight[t][1];
    EXPECT_LT(sj, 0.99f) << "token " << t;  // top-2 of a 16-way softmax
    EXPECT_NEAR(sm, 1.0f, 1e-6f);
    EXPECT_EQ(jamba.expert[t], mixtral.expert[t]);
    EXPECT_NEAR(mixtral.weight[t][0], jamba.weight[t][0] / sj, 1e-6f);
  }
}

TEST(RefChecklist, PresetsRenormaliseOnlyForMixtral) {
  EXPECT_FALSE(preset("jamba-v0.1").router_renormalize);
  EXPECT_FALSE(preset("jamba-tiny").router_renormalize);
  EXPECT_TRUE(preset("mixtral-8x7b").router_renormalize);
  EXPECT_TRUE(preset("mixtral-tiny").router_renormalize);
}

// --- item 2: softmax over all experts first, then top-k ---------------------------------------

TEST(RefChecklist, SoftmaxBeforeTopK) {
  const int64_t E = 8;
  const Mat<float> x = rand_mat<float>(5, 6, 201, 1);
  const Mat<float> router = rand_mat<float>(E, 6, 201, 2, 0.5f);
  const Routing r = route<float>(x, router, 2, false, Round::None);
  const Mat<double> logits = x.cast<double>() * router.cast<double>().transpose();
  for (int64_t t = 0; t < 5; ++t) {
    double mx = logits.row(t).maxCoeff(), z = 0;
    for (int64_t e = 0; e < E; ++e) z += std::exp(logits(t, e) - mx);
    for (int i = 0; i < 2; ++i) {
      const int e = r.expert[t][i];
      // The weight is the probability under the softmax over ALL E experts ...
      EXPECT_NEAR(r.weight[t][i], std::exp(logits(t, e) - mx) / z, 1e-6);
    }
    // ... not the top-k-then-softmax value (which would make the two sum to 1).
    const double a = logits(t, r.expert[t][0]), b = logits(t, r.expert[t][1]);
    const double wrong0 = 1.0 / (1.0 + std::exp(b - a));
    EXPECT_GT(std::fabs(r.weight[t][0] - wrong0), 1e-3);
  }
}

// --- item 3: combine in ascending expert index, not top-k rank --------------------------------

// d = 1, I = 1: every product is a single multiply, so the expected sums can be written as
// scalar float expressions. Router rows 1, 3, 2, -5 with x = 1 rank the experts 1, 2, 0 (k = 3),
// so rank order and index order differ; contributions of mixed magnitudes make fp32 (and bf16)
// addition order visible.
MoeWeights<float> order_case(const float (&down)[4]) {
  MoeWeights<float> w;
  w.router = Mat<float>(4, 1);
  w.router << 1.0f, 3.0f, 2.0f, -5.0f;
  for (int e = 0; e < 4; ++e)
    w.experts.push_back({Mat<float>::Constant(1, 1, 0.75f), Mat<float>::Constant(1, 1, 1.25f),
                         Mat<float>::Constant(1, 1, down[e])});
  return w;
}

TEST(RefChecklist, CombineInExpertIndexOrderFp32) {
  const MoeWeights<float> w = order_case({1.0e4f, 1.2345678f, -2.9e4f, 1.0f});
  const Mat<float> x = Mat<float>::Constant(1, 1, 1.0f);
  const Routing r = route<float>(x, w.router, 3, false, Round::None);
  ASSERT_EQ(r.expert[0], std::vector<int>({1, 2, 0}));
  float contrib[4] = {0, 0, 0, 0};
  for (int i = 0; i < 3; ++i) {
    const int e = r.expert[0][i];
    const float act = silu(0.75f * 1.0f) * (1.25f * 1.0f);
    contrib[e] = r.weight[0][i] * (w.experts[e].down_proj(0, 0) * act);
  }
  float by_index = 0.0f;
  for (int e : {0, 1, 2}) by_index = by_index + contrib[e];
  float by_rank = 0.0f;
  for (int e : {1, 2, 0}) by_rank = by_rank + contrib[e];
  ASSERT_NE(by_index, by_rank) << "the case does not distinguish the orders";
  EXPECT_EQ(moe(x, w, 3, false, Round::None)(0, 0), by_index);
}

TEST(RefChecklist, CombineInExpertIndexOrderBf16) {
  // HF: final = bf16(final + bf16(w * bf16(expert(x)))) over experts in index order.
  // Contributions 572, 5.53, -1560 after bf16 rounding: index order gives -984, rank -980.
  const MoeWeights<float> w = order_case({1.0e4f, 13.1f, -1.0e4f, 1.0f});
  const Mat<float> x = Mat<float>::Constant(1, 1, 1.0f);
  const Routing r = route<float>(x, w.router, 3, false, Round::Bf16);
  ASSERT_EQ(r.expert[0], std::vector<int>({1, 2, 0}));
  float contrib[4] = {0, 0, 0, 0};
  for (int i = 0; i < 3; ++i) {
    const int e = r.expert[0][i];
    EXPECT_EQ(r.weight[0][i], round_bf16(r.weight[0][i]));  // weights cast to bf16
    const float act = round_bf16(silu(0.75f) * 1.25f);
    const float y = round_bf16(w.experts[e].down_proj(0, 0) * act);
    contrib[e] = round_bf16(r.weight[0][i] * y);
  }
  float by_index = 0.0f, by_rank = 0.0f;
  for (int e : {0, 1, 2}) by_index = round_bf16(by_index + contrib[e]);
  for (int e : {1, 2, 0}) by_rank = round_bf16(by_rank + contrib[e]);
  ASSERT_NE(by_index, by_rank) << "the case does not distinguish the orders";
  EXPECT_EQ(moe(x, w, 3, false, Round::Bf16)(0, 0), by_index);
}

// --- item 4: no RoPE for Jamba ----------------------------------------------------------------

ModelConfig attn_config(bool rope) {
  ModelConfig c;
  c.name = "test-attn";
  c.model_type = rope ? "mixtral" : "jamba";
  c.hidden_size = 16;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 4;
  c.use_rope = rope;
  c.rope_theta = 10000.0;
  return c;
}

AttentionWeights<double> random_attn(const ModelConfig& c, uint64_t seed) {
  return {rand_mat<double>(c.q_dim(), c.hidden_size, seed, 1, 0.5f),
          rand_mat<double>(c.kv_dim(), c.hidden_size, seed, 2, 0.5f),
          rand_mat<double>(c.kv_dim(), c.hidden_size, seed, 3, 0.5f),
          rand_mat<double>(c.hidden_size, c.q_dim(), seed, 4, 0.5f)};
}

TEST(RefChecklist, NoPositionalEncodingWithoutRope) {
  // Without positions, the last token (which sees every key) is invariant to a permutation of
  // the earlier tokens; with RoPE it is not.
  const int64_t L = 7;
  const Mat<double> h = rand_mat<double>(L, 16, 202, 1);
  Mat<double> h_perm = h;
  for (int64_t t = 0; t < L - 1; ++t) h_perm.row(t) = h.row(L - 2 - t);  // reverse the prefix
  for (bool rope : {false, true}) {
    const ModelConfig c = attn_config(rope);
    const AttentionWeights<double> w = random_attn(c, 203);
    KvCache<double> c1, c2;
    const Mat<double> a = attention_layer(h, w, c, c1, Round::None);
    const Mat<double> b = attention_layer(h_perm, w, c, c2, Round::None);
    const double diff = rel_l2(b.bottomRows(1), a.bottomRows(1));
    if (rope)
      EXPECT_GT(diff, 1e-3);
    else
      EXPECT_LT(diff, 1e-13);
    // Cached keys: raw projections without RoPE; rotated (position 0 excepted) with RoPE.
    const Mat<double> k_raw = h * w.k_proj.transpose();
    const double kdiff = rel_l2(c1.k.topRows(L), k_raw);
    if (rope)
      EXPECT_GT(kdiff, 1e-3);
    else
      EXPECT_EQ(kdiff, 0.0);
  }
}

TEST(RefChecklist, JambaPresetHasNoRope) {
  EXPECT_FALSE(preset("jamba-v0.1").use_rope);
  EXPECT_FALSE(preset("jamba-tiny").use_rope);
  EXPECT_TRUE(preset("mixtral-tiny").use_rope);
}

TEST(RefChecklist, DecodeWithCacheEqualsFullPrefillWithRope) {
  // RoPE positions must continue from the cache length (q_pos0 = tokens already cached).
  const ModelConfig c = attn_config(true);
  const AttentionWeights<double> w = random_attn(c, 204);
  const Mat<double> h = rand_mat<double>(6, 16, 204, 9);
  KvCache<double> full_cache, step_cache;
  const Mat<double> full = attention_layer(h, w, c, full_cache, Round::None);
  Mat<double> steps(6, 16);
  steps.topRows(3) = attention_layer(h.topRows(3).eval(), w, c, step_cache, Round::None);
  for (int64_t t = 3; t < 6; ++t)
    steps.row(t) = attention_layer(h.middleRows(t, 1).eval(), w, c, step_cache, Round::None);
  EXPECT_LT(rel_l2(steps, full), 1e-13);
}

// --- item 5: attention layers are never MoE with the released offsets -------------------------

TEST(RefChecklist, ReleasedLayoutAttentionNeverMoe) {
  for (const char* name : {"jamba-v0.1", "jamba-1.5-large"}) {
    const std::vector<LayerSpec> layers = preset(name).layers();
    int attn = 0;
    for (size_t i = 0; i < layers.size(); ++i) {
      EXPECT_EQ(layers[i].mixer == Mixer::Attention, i % 8 == 4) << name << " layer " << i;
      EXPECT_EQ(layers[i].ffn == Ffn::Moe, i % 2 == 1) << name << " layer " << i;
      if (layers[i].mixer == Mixer::Attention) {
        ++attn;
        EXPECT_EQ(layers[i].ffn, Ffn::Mlp);
      }
    }
    EXPECT_EQ(attn, static_cast<int>(layers.size() / 8));
  }
}

}  // namespace
}  // namespace jb::ref
