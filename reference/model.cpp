// The whole Jamba decoder (jamba-spec §1.2-1.3, §2.1, §2.8) on the Eigen reference components.
#include "reference/model.hpp"

#include <string>

#include "core/error.hpp"
#include "reference/rmsnorm.hpp"

namespace jb::ref {

namespace {

std::string layer_prefix(size_t i) {
  return "model.layers." + std::to_string(i) + ".";
}

template <class T>
Mat<T> to_mat(const Tensor& t, int64_t rows, int64_t cols) {
  return Eigen::Map<const Mat<float>>(t.ptr(), rows, cols).template cast<T>();
}
template <class T>
Vec<T> to_vec(const Tensor& t) {
  return Eigen::Map<const Vec<float>>(t.ptr(), t.numel()).template cast<T>();
}
template <class T>
Mat<T> get_mat(const WeightStore& s, const std::string& name, int64_t rows, int64_t cols) {
  return to_mat<T>(s.get(name, {rows, cols}), rows, cols);
}
template <class T>
Vec<T> get_vec(const WeightStore& s, const std::string& name, int64_t n) {
  return to_vec<T>(s.get(name, {n}));
}
template <class T>
MlpWeights<T> get_mlp(const WeightStore& s, const std::string& p, int64_t d, int64_t I) {
  MlpWeights<T> m;
  m.gate_proj = get_mat<T>(s, p + "gate_proj.weight", I, d);
  m.up_proj = get_mat<T>(s, p + "up_proj.weight", I, d);
  m.down_proj = get_mat<T>(s, p + "down_proj.weight", d, I);
  return m;
}

int64_t dt_rank(const ModelConfig& c) {
  return c.mamba_dt_rank > 0 ? c.mamba_dt_rank : (c.hidden_size + 15) / 16;  // "auto"
}

// Weights are bf16 on the GPU: the bf16-emulating model holds their rounded values.
template <class T>
void round_all(Mat<T>& m) {
  rnd_inplace(m, Round::Bf16);
}
template <class T>
void round_all(Vec<T>& v) {
  rnd_inplace(v, Round::Bf16);
}
template <class T>
void round_all(MlpWeights<T>& m) {
  round_all(m.gate_proj);
  round_all(m.up_proj);
  round_all(m.down_proj);
}
template <class T>
void round_all(ModelWeights<T>& w) {
  round_all(w.embed);
  round_all(w.final_norm);
  round_all(w.lm_head);
  for (LayerWeights<T>& l : w.layers) {
    round_all(l.input_norm);
    round_all(l.pre_ff_norm);
    if (l.attn) {
      round_all(l.attn->q_proj);
      round_all(l.attn->k_proj);
      round_all(l.attn->v_proj);
      round_all(l.attn->o_proj);
    }
    if (l.mamba) {
      MambaWeights<T>& m = *l.mamba;
      for (Mat<T>* p : {&m.in_proj, &m.conv_w, &m.x_proj, &m.dt_proj, &m.A_log, &m.out_proj})
        round_all(*p);
      for (Vec<T>* p : {&m.in_proj_bias, &m.conv_b, &m.dt_bias, &m.D, &m.out_proj_bias, &m.dt_norm,
                        &m.b_norm, &m.c_norm})
        round_all(*p);
    }
    if (l.mlp) round_all(*l.mlp);
    if (l.moe) {
      round_all(l.moe->router);
      for (MlpWeights<T>& e : l.moe->experts) round_all(e);
    }
  }
}

}  // namespace

template <class T>
ModelWeights<T> make_model_weights(const WeightStore& s, const ModelConfig& c) {
  const int64_t d = c.hidden_size, V = c.vocab_size, I = c.intermediate_size;
  ModelWeights<T> w;
  w.embed = get_mat<T>(s, "model.embed_tokens.weight", V, d);
  w.final_norm = get_vec<T>(s, "model.final_layernorm.weight", d);
  w.lm_head = c.tie_word_embeddings ? w.embed : get_mat<T>(s, "lm_head.weight", V, d);
  const std::vector<LayerSpec> specs = c.layers();
  for (size_t i = 0; i < specs.size(); ++i) {
    const std::string p = layer_prefix(i);
    LayerWeights<T> l;
    l.input_norm = get_vec<T>(s, p + "input_layernorm.weight", d);
    l.pre_ff_norm = get_vec<T>(s, p + "pre_ff_layernorm.weight", d);
    if (specs[i].mixer == Mixer::Attention) {
      AttentionWeights<T> a;
      const std::string q = p + "self_attn.";
      a.q_proj = get_mat<T>(s, q + "q_proj.weight", c.q_dim(), d);
      a.k_proj = get_mat<T>(s, q + "k_proj.weight", c.kv_dim(), d);
      a.v_proj = get_mat<T>(s, q + "v_proj.weight", c.kv_dim(), d);
      a.o_proj = get_mat<T>(s, q + "o_proj.weight", d, c.q_dim());
      l.attn = std::move(a);
    } else {
      MambaWeights<T> m;
      const std::string q = p + "mamba.";
      const int64_t Di = c.d_inner(), N = c.mamba_d_state, K = c.mamba_d_conv, R = dt_rank(c);
      m.in_proj = get_mat<T>(s, q + "in_proj.weight", 2 * Di, d);
      // conv1d.weight is stored [Di, 1, K] (depthwise); squeeze the middle dim.
      m.conv_w = to_mat<T>(s.get(q + "conv1d.weight", {Di, 1, K}), Di, K);
      if (c.mamba_conv_bias) m.conv_b = get_vec<T>(s, q + "conv1d.bias", Di);
      m.x_proj = get_mat<T>(s, q + "x_proj.weight", R + 2 * N, Di);
      m.dt_proj = get_mat<T>(s, q + "dt_proj.weight", Di, R);
      m.dt_bias = get_vec<T>(s, q + "dt_proj.bias", Di);
      m.A_log = get_mat<T>(s, q + "A_log", Di, N);
      m.D = get_vec<T>(s, q + "D", Di);
      m.out_proj = get_mat<T>(s, q + "out_proj.weight", d, Di);
      if (c.mamba_proj_bias) {
        m.in_proj_bias = get_vec<T>(s, q + "in_proj.bias", 2 * Di);
        m.out_proj_bias = get_vec<T>(s, q + "out_proj.bias", d);
      }
      if (c.mamba_inner_norms) {
        m.dt_norm = get_vec<T>(s, q + "dt_layernorm.weight", R);
        m.b_norm = get_vec<T>(s, q + "b_layernorm.weight", N);
        m.c_norm = get_vec<T>(s, q + "c_layernorm.weight", N);
      }
      l.mamba = std::move(m);
    }
    const std::string f = p + "feed_forward.";
    if (specs[i].ffn == Ffn::Moe) {
      MoeWeights<T> moe;
      const int64_t E = specs[i].num_experts;
      moe.router = get_mat<T>(s, f + "router.weight", E, d);
      for (int64_t e = 0; e < E; ++e)
        moe.experts.push_back(get_mlp<T>(s, f + "experts." + std::to_string(e) + ".", d, I));
      l.moe = std::move(moe);
    } else {
      l.mlp = get_mlp<T>(s, f, d, I);
    }
    w.layers.push_back(std::move(l));
  }
  return w;
}

template <class T>
SequenceCache<T> SequenceCache<T>::fresh(const ModelConfig& c) {
  SequenceCache<T> sc;
  const std::vector<LayerSpec> specs = c.layers();
  sc.kv.resize(specs.size());
  sc.mamba.resize(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].mixer == Mixer::Mamba) {
      sc.mamba[i] = MambaState<T>::zeros(c);
    } else {
      sc.kv[i].k = Mat<T>::Zero(0, c.kv_dim());
      sc.kv[i].v = Mat<T>::Zero(0, c.kv_dim());
    }
  }
  return sc;
}

template <class T>
Model<T>::Model(ModelConfig config, ModelWeights<T> weights, Round round)
    : config_(std::move(config)), w_(std::move(weights)), round_(round) {
  // Single-threaded products: results must not depend on the thread count (ecosystem.md §1.8).
  Eigen::setNbThreads(1);
  const std::vector<LayerSpec> specs = config_.layers();
  if (specs.size() != w_.layers.size())
    fail(ErrorKind::Shape, "Model: " + std::to_string(w_.layers.size()) + " layer weights for " +
                               std::to_string(specs.size()) + " layers");
  for (size_t i = 0; i < specs.size(); ++i) {
    const LayerWeights<T>& l = w_.layers[i];
    const bool attn = specs[i].mixer == Mixer::Attention, moe = specs[i].ffn == Ffn::Moe;
    if (attn != l.attn.has_value() || !attn != l.mamba.has_value() || moe != l.moe.has_value() ||
        moe == l.mlp.has_value())
      fail(ErrorKind::Shape,
           "Model: layer " + std::to_string(i) + " weights do not match the config's layer type");
  }
  if (round_ == Round::Bf16) round_all(w_);
}

template <class T>
Mat<T> Model<T>::forward(const std::vector<int32_t>& ids, SequenceCache<T>& cache, bool last_only,
                         std::vector<Mat<T>>* hidden) const {
  const ModelConfig& c = config_;
  const int64_t L = static_cast<int64_t>(ids.size());
  if (L == 0) fail(ErrorKind::Usage, "Model::forward: no tokens");
  if (cache.kv.size() != w_.layers.size() || cache.mamba.size() != w_.layers.size())
    fail(ErrorKind::Shape,
         "Model::forward: cache is not for this model (use SequenceCache::fresh)");
  const Round r = round_;

  // Embedding: a plain row lookup, no scaling, no positions (jamba-spec §2.1).
  Mat<T> h(L, c.hidden_size);
  for (int64_t t = 0; t < L; ++t) {
    const int32_t id = ids[static_cast<size_t>(t)];
    if (id < 0 || id >= w_.embed.rows())
      fail(ErrorKind::Usage, "token id " + std::to_string(id) + " outside the vocabulary [0, " +
                                 std::to_string(w_.embed.rows()) + ")");
    h.row(t) = w_.embed.row(id);
  }
  rnd_inplace(h, r);
  if (hidden) {
    hidden->clear();
    hidden->push_back(h);
  }

  const std::vector<LayerSpec> specs = c.layers();
  for (size_t i = 0; i < specs.size(); ++i) {
    const LayerWeights<T>& l = w_.layers[i];
    // Pre-norm residual block (jamba-spec §1.3); the residual stream is bf16 on the GPU.
    const Mat<T> normed = rmsnorm(h, l.input_norm, c.rms_norm_eps, r);
    const Mat<T> mixed = l.attn ? attention_layer(normed, *l.attn, c, cache.kv[i], r)
                                : mamba_layer(normed, *l.mamba, c, cache.mamba[i], r);
    h += mixed;
    rnd_inplace(h, r);
    const Mat<T> normed_ff = rmsnorm(h, l.pre_ff_norm, c.rms_norm_eps, r);
    const Mat<T> ff = l.moe ? moe(normed_ff, *l.moe, static_cast<int>(c.num_experts_per_tok),
                                  c.router_renormalize, r)
                            : mlp(normed_ff, *l.mlp, r);
    h += ff;
    rnd_inplace(h, r);
    if (hidden && i + 1 < specs.size()) hidden->push_back(h);
  }
  cache.length += L;

  // Final norm and LM head (jamba-spec §2.8); HF's last hidden state is the final-normed one.
  const Mat<T> final_h = rmsnorm(h, w_.final_norm, c.rms_norm_eps, r);
  if (hidden) hidden->push_back(final_h);
  Mat<T> logits = last_only ? Mat<T>(final_h.bottomRows(1) * w_.lm_head.transpose())
                            : Mat<T>(final_h * w_.lm_head.transpose());
  rnd_inplace(logits, r);
  return logits;
}

template <class T>
Mat<T> Model<T>::forward_chunked(const std::vector<int32_t>& ids, SequenceCache<T>& cache,
                                 int64_t chunk) const {
  if (chunk < 1) fail(ErrorKind::Usage, "forward_chunked: chunk must be >= 1");
  Mat<T> logits(static_cast<int64_t>(ids.size()), config_.vocab_size);
  for (size_t start = 0; start < ids.size(); start += static_cast<size_t>(chunk)) {
    const size_t end = std::min(ids.size(), start + static_cast<size_t>(chunk));
    const std::vector<int32_t> part(ids.begin() + static_cast<std::ptrdiff_t>(start),
                                    ids.begin() + static_cast<std::ptrdiff_t>(end));
    logits.middleRows(static_cast<int64_t>(start), static_cast<int64_t>(end - start)) =
        forward(part, cache);
  }
  return logits;
}

template <class T>
std::vector<int32_t> Model<T>::generate_greedy(const std::vector<int32_t>& prompt,
                                               int64_t n_new) const {
  if (prompt.empty()) fail(ErrorKind::Usage, "generate_greedy: empty prompt");
  std::vector<int32_t> out;
  if (n_new <= 0) return out;
  SequenceCache<T> cache = SequenceCache<T>::fresh(config_);
  Mat<T> logits = forward(prompt, cache, /*last_only=*/true);
  for (int64_t step = 0; step < n_new; ++step) {
    // argmax, ties -> the lowest id (strict > keeps the first maximum).
    int32_t best = 0;
    for (int64_t v = 1; v < logits.cols(); ++v)
      if (logits(0, v) > logits(0, best)) best = static_cast<int32_t>(v);
    out.push_back(best);
    if (step + 1 < n_new) logits = forward({best}, cache, /*last_only=*/true);
  }
  return out;
}

template ModelWeights<float> make_model_weights<float>(const WeightStore&, const ModelConfig&);
template ModelWeights<double> make_model_weights<double>(const WeightStore&, const ModelConfig&);
template struct SequenceCache<float>;
template struct SequenceCache<double>;
template class Model<float>;
template class Model<double>;

}  // namespace jb::ref
