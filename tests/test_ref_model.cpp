// Whole-model reference: weights from canonical names, prefill/decode/chunked consistency,
// independence of sequences, hidden states, greedy generation, bf16 emulation, float vs double.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "core/config.hpp"
#include "core/error.hpp"
#include "core/weights.hpp"
#include "reference/model.hpp"
#include "reference/rmsnorm.hpp"
#include "test_ref_util.hpp"

namespace jb::ref {
namespace {

using namespace jb::ref::testing;

constexpr uint64_t kSeed = 1234;

template <class T>
Model<T> make_model(const std::string& preset_name, Round r = Round::None) {
  const ModelConfig c = preset(preset_name);
  return Model<T>(c, make_model_weights<T>(random_weights(c, kSeed), c), r);
}

std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint64_t stream) {
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < n; ++i)
    ids.push_back(static_cast<int32_t>(rng_bits(kSeed, stream, static_cast<uint64_t>(i)) %
                                       static_cast<uint64_t>(vocab)));
  return ids;
}

// Largest per-position relative error of logits rows.
template <class A, class B>
double max_row_rel(const A& a, const B& b) {
  double worst = 0;
  for (int64_t t = 0; t < b.rows(); ++t)
    worst = std::max(worst, rel_l2(a.row(t).eval(), b.row(t).eval()));
  return worst;
}

class RefModelPresets : public ::testing::TestWithParam<const char*> {};

TEST_P(RefModelPresets, PrefillThenDecodeEqualsLongPrefill) {
  const Model<float> m = make_model<float>(GetParam());
  const int64_t L = 11, n = 6;
  const std::vector<int32_t> ids = random_ids(L + n, m.config().vocab_size, 1);
  SequenceCache<float> full_cache = SequenceCache<float>::fresh(m.config());
  const Mat<float> full = m.forward(ids, full_cache);
  ASSERT_EQ(full.rows(), L + n);
  ASSERT_EQ(full.cols(), m.config().vocab_size);

  SequenceCache<float> cache = SequenceCache<float>::fresh(m.config());
  Mat<float> steps(L + n, m.config().vocab_size);
  steps.topRows(L) = m.forward(std::vector<int32_t>(ids.begin(), ids.begin() + L), cache);
  for (int64_t t = L; t < L + n; ++t) steps.row(t) = m.forward({ids[t]}, cache);
  EXPECT_EQ(cache.length, L + n);
  const double err = max_row_rel(steps, full);
  std::printf("%s: prefill(%ld)+decode(%ld) vs prefill(%ld): max per-position rel %.2e\n",
              GetParam(), long(L), long(n), long(L + n), err);
  EXPECT_LT(err, 1e-5);
}

TEST_P(RefModelPresets, ChunkedPrefillEqualsOneShot) {
  const Model<float> m = make_model<float>(GetParam());
  const std::vector<int32_t> ids = random_ids(23, m.config().vocab_size, 2);
  SequenceCache<float> c0 = SequenceCache<float>::fresh(m.config());
  const Mat<float> one_shot = m.forward(ids, c0);
  for (int64_t chunk : {1, 7, 64}) {
    SequenceCache<float> c = SequenceCache<float>::fresh(m.config());
    const Mat<float> chunked = m.forward_chunked(ids, c, chunk);
    const double err = max_row_rel(chunked, one_shot);
    std::printf("%s: chunk %ld vs one-shot: max per-position rel %.2e\n", GetParam(), long(chunk),
                err);
    EXPECT_LT(err, 1e-5) << "chunk " << chunk;
    EXPECT_EQ(c.length, 23);
    // The caches end in the same state, so a following decode step agrees too.
    const Mat<float> next_a = m.forward({5}, c), next_b = m.forward({5}, c0);
    EXPECT_LT(rel_l2(next_a, next_b), 1e-5);
    c0 = SequenceCache<float>::fresh(m.config());
    m.forward(ids, c0);
  }
}

TEST_P(RefModelPresets, SequencesAreIndependentBitExact) {
  const Model<float> m = make_model<float>(GetParam());
  const int64_t V = m.config().vocab_size;
  const std::vector<int32_t> a = random_ids(9, V, 3), b = random_ids(9, V, 4);
  // Separately.
  SequenceCache<float> ca = SequenceCache<float>::fresh(m.config());
  SequenceCache<float> cb = SequenceCache<float>::fresh(m.config());
  std::vector<Mat<float>> sep_a, sep_b;
  sep_a.push_back(m.forward(a, ca));
  for (int i = 0; i < 3; ++i) sep_a.push_back(m.forward({a[i]}, ca));
  sep_b.push_back(m.forward(b, cb));
  for (int i = 0; i < 3; ++i) sep_b.push_back(m.forward({b[i]}, cb));
  // Interleaved in one loop, as a batch of two rows would be.
  SequenceCache<float> ia = SequenceCache<float>::fresh(m.config());
  SequenceCache<float> ib = SequenceCache<float>::fresh(m.config());
  std::vector<Mat<float>> int_a, int_b;
  int_a.push_back(m.forward(a, ia));
  int_b.push_back(m.forward(b, ib));
  for (int i = 0; i < 3; ++i) {
    int_a.push_back(m.forward({a[i]}, ia));
    int_b.push_back(m.forward({b[i]}, ib));
  }
  for (size_t i = 0; i < sep_a.size(); ++i) {
    EXPECT_TRUE(bitwise_equal(sep_a[i], int_a[i])) << "step " << i;
    EXPECT_TRUE(bitwise_equal(sep_b[i], int_b[i])) << "step " << i;
  }
  EXPECT_FALSE(bitwise_equal(sep_a[0], sep_b[0]));
}

TEST_P(RefModelPresets, FloatAgreesWithDouble) {
  const Model<float> mf = make_model<float>(GetParam());
  const Model<double> md = make_model<double>(GetParam());
  const std::vector<int32_t> ids = random_ids(16, mf.config().vocab_size, 5);
  SequenceCache<float> cf = SequenceCache<float>::fresh(mf.config());
  SequenceCache<double> cd = SequenceCache<double>::fresh(md.config());
  const double err = rel_l2(mf.forward(ids, cf), md.forward(ids, cd));
  std::printf("%s: float vs double logits rel_l2 %.2e\n", GetParam(), err);
  EXPECT_LT(err, 1e-5);
}

TEST_P(RefModelPresets, Bf16EmulationDiffersSlightly) {
  const Model<float> m = make_model<float>(GetParam());
  const Model<float> lp = make_model<float>(GetParam(), Round::Bf16);
  const std::vector<int32_t> ids = random_ids(16, m.config().vocab_size, 6);
  SequenceCache<float> c1 = SequenceCache<float>::fresh(m.config());
  SequenceCache<float> c2 = SequenceCache<float>::fresh(m.config());
  const Mat<float> exact = m.forward(ids, c1);
  const Mat<float> rounded = lp.forward(ids, c2);
  const double err = rel_l2(rounded, exact);
  std::printf("%s: bf16-emulating vs fp32 logits rel_l2 %.2e\n", GetParam(), err);
  EXPECT_GT(err, 1e-4);  // it must round somewhere
  EXPECT_LT(err, 5e-2);  // and stay close
  EXPECT_TRUE(
      bitwise_equal(rounded, rounded.unaryExpr([](float v) { return round_bf16(v); }).eval()));
}

TEST_P(RefModelPresets, HiddenStatesFollowHfSemantics) {
  const Model<double> m = make_model<double>(GetParam());
  const ModelConfig& c = m.config();
  const std::vector<int32_t> ids = random_ids(5, c.vocab_size, 7);
  SequenceCache<double> cache = SequenceCache<double>::fresh(c);
  std::vector<Mat<double>> hidden;
  const Mat<double> logits = m.forward(ids, cache, false, &hidden);
  ASSERT_EQ(static_cast<int64_t>(hidden.size()), c.num_hidden_layers + 1);
  // Entry 0 is the embedding output (no scaling).
  const WeightStore ws = random_weights(c, kSeed);
  const Tensor& emb = ws.get("model.embed_tokens.weight");
  for (size_t t = 0; t < ids.size(); ++t)
    for (int64_t j = 0; j < c.hidden_size; ++j)
      EXPECT_EQ(hidden[0](static_cast<int64_t>(t), j), emb.data[ids[t] * c.hidden_size + j]);
  // The last entry is the final-normed output, which lm_head maps to the logits.
  const Mat<double> lm =
      Eigen::Map<const Mat<float>>(ws.get("lm_head.weight").ptr(), c.vocab_size, c.hidden_size)
          .cast<double>();
  EXPECT_LT(rel_l2(Mat<double>(hidden.back() * lm.transpose()), logits), 1e-14);
  // It is not the un-normed layer output (RMS ~0.02 with these weights): its rows have RMS
  // sqrt(ms / (ms + eps)) with the final norm weight 1, just below 1 because eps = 1e-6 is not
  // negligible against ms ~ 4e-4.
  for (int64_t t = 0; t < 5; ++t) {
    const double rms = hidden.back().row(t).norm() / std::sqrt(double(c.hidden_size));
    EXPECT_LE(rms, 1.0);
    EXPECT_GT(rms, 0.99);
  }
  // The entries in between are layer outputs, not normed: they change from layer to layer.
  for (size_t i = 1; i + 1 < hidden.size(); ++i)
    EXPECT_GT(rel_l2(hidden[i], hidden[i - 1]), 1e-3) << "entry " << i;
}

TEST_P(RefModelPresets, LastOnlyIsTheLastRow) {
  const Model<float> m = make_model<float>(GetParam());
  const std::vector<int32_t> ids = random_ids(8, m.config().vocab_size, 8);
  SequenceCache<float> c1 = SequenceCache<float>::fresh(m.config());
  SequenceCache<float> c2 = SequenceCache<float>::fresh(m.config());
  const Mat<float> all = m.forward(ids, c1);
  const Mat<float> last = m.forward(ids, c2, /*last_only=*/true);
  ASSERT_EQ(last.rows(), 1);
  EXPECT_LT(rel_l2(last, all.bottomRows(1).eval()), 1e-6);  // GEMV vs GEMM summation order
}

TEST_P(RefModelPresets, GreedyGenerationMatchesArgmaxOfFullForward) {
  const Model<double> m = make_model<double>(GetParam());
  const std::vector<int32_t> prompt = random_ids(6, m.config().vocab_size, 9);
  const std::vector<int32_t> gen = m.generate_greedy(prompt, 5);
  ASSERT_EQ(gen.size(), 5u);
  // Recompute each step from scratch with a full forward over prompt + generated so far.
  std::vector<int32_t> seq = prompt;
  for (int i = 0; i < 5; ++i) {
    SequenceCache<double> c = SequenceCache<double>::fresh(m.config());
    const Mat<double> logits = m.forward(seq, c);
    Eigen::Index best;
    logits.row(logits.rows() - 1).maxCoeff(&best);
    EXPECT_EQ(gen[i], static_cast<int32_t>(best)) << "step " << i;
    seq.push_back(gen[i]);
  }
  EXPECT_TRUE(m.generate_greedy(prompt, 0).empty());
}

INSTANTIATE_TEST_SUITE_P(Presets, RefModelPresets,
                         ::testing::Values("jamba-tiny", "jamba-tiny-odd", "mixtral-tiny"));

TEST(RefModel, GreedyTiesGoToLowestId) {
  // A zero LM head makes every logit 0: the argmax must be token 0.
  const ModelConfig c = preset("jamba-tiny");
  ModelWeights<float> w = make_model_weights<float>(random_weights(c, kSeed), c);
  w.lm_head.setZero();
  const Model<float> m(c, std::move(w));
  EXPECT_EQ(m.generate_greedy({3, 4, 5}, 3), (std::vector<int32_t>{0, 0, 0}));
}

TEST(RefModel, WeightShapesAndNamesAreChecked) {
  const ModelConfig c = preset("jamba-tiny");
  WeightStore ws = random_weights(c, kSeed);
  EXPECT_NO_THROW(make_model_weights<float>(ws, c));
  WeightStore missing = ws;
  missing.tensors.erase("model.layers.1.mamba.conv1d.bias");
  EXPECT_THROW(make_model_weights<float>(missing, c), Error);
  WeightStore wrong = ws;
  wrong.tensors["model.layers.2.self_attn.k_proj.weight"] = Tensor({c.kv_dim() + 1, c.hidden_size});
  EXPECT_THROW(make_model_weights<float>(wrong, c), Error);
  // conv1d.weight must be [Di, 1, K], not [Di, K].
  WeightStore squeezed = ws;
  squeezed.tensors["model.layers.0.mamba.conv1d.weight"] = Tensor({c.d_inner(), c.mamba_d_conv});
  EXPECT_THROW(make_model_weights<float>(squeezed, c), Error);
}

TEST(RefModel, CheckpointRoundTripGivesTheSameLogits) {
  // save_checkpoint -> load_checkpoint (safetensors, canonical names) -> make_model_weights.
  const ModelConfig c = preset("jamba-tiny-odd");
  const WeightStore ws = random_weights(c, kSeed);
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("jb_test_ref_ckpt_" + std::to_string(::getpid()));
  save_checkpoint(dir.string(), c, ws, "F32");
  const WeightStore loaded = load_checkpoint(dir.string(), c);
  std::filesystem::remove_all(dir);
  const Model<float> a(c, make_model_weights<float>(ws, c));
  const Model<float> b(c, make_model_weights<float>(loaded, c));
  const std::vector<int32_t> ids = random_ids(7, c.vocab_size, 10);
  SequenceCache<float> ca = SequenceCache<float>::fresh(c), cb = SequenceCache<float>::fresh(c);
  EXPECT_TRUE(bitwise_equal(a.forward(ids, ca), b.forward(ids, cb)));
}

TEST(RefModel, TiedEmbeddings) {
  ModelConfig c = preset("jamba-tiny");
  c.tie_word_embeddings = true;
  WeightStore ws = random_weights(c, kSeed);
  ws.tensors.erase("lm_head.weight");
  const ModelWeights<float> w = make_model_weights<float>(ws, c);
  EXPECT_TRUE(bitwise_equal(w.lm_head, w.embed));
}

TEST(RefModel, BadInputsThrow) {
  const Model<float> m = make_model<float>("jamba-tiny");
  SequenceCache<float> c = SequenceCache<float>::fresh(m.config());
  EXPECT_THROW(m.forward({}, c), Error);
  EXPECT_THROW(m.forward({static_cast<int32_t>(m.config().vocab_size)}, c), Error);
  EXPECT_THROW(m.forward({-1}, c), Error);
  EXPECT_THROW(m.generate_greedy({}, 3), Error);
  // Weights for a different layout.
  const ModelConfig other = preset("mixtral-tiny");
  EXPECT_THROW(Model<float>(m.config(), make_model_weights<float>(random_weights(other, 1), other)),
               Error);
}

TEST(RefModel, InnerNormAblationLoadsWithoutNormTensors) {
  ModelConfig c = preset("jamba-tiny");
  c.mamba_inner_norms = false;
  const Model<float> m(c, make_model_weights<float>(random_weights(c, kSeed), c));
  SequenceCache<float> cache = SequenceCache<float>::fresh(c);
  const Mat<float> logits = m.forward({1, 2, 3}, cache);
  EXPECT_TRUE(logits.allFinite());
}

}  // namespace
}  // namespace jb::ref
