#pragma once
#include <optional>
#include <vector>

#include "core/config.hpp"
#include "core/weights.hpp"
#include "reference/attention.hpp"
#include "reference/mamba_layer.hpp"
#include "reference/mlp.hpp"
#include "reference/moe.hpp"

namespace jb::ref {

template <class T>
struct LayerWeights {
  Vec<T> input_norm;   // input_layernorm [d]
  Vec<T> pre_ff_norm;  // pre_ff_layernorm [d]
  std::optional<AttentionWeights<T>> attn;
  std::optional<MambaWeights<T>> mamba;
  std::optional<MlpWeights<T>> mlp;
  std::optional<MoeWeights<T>> moe;
};

template <class T>
struct ModelWeights {
  Mat<T> embed;  // [V, d]
  std::vector<LayerWeights<T>> layers;
  Vec<T> final_norm;
  Mat<T> lm_head;  // [V, d] (the embedding when tie_word_embeddings)
};

// Builds typed weights from canonical names (core/weights.hpp), checking every shape.
template <class T>
ModelWeights<T> make_model_weights(const WeightStore& store, const ModelConfig& c);

// All caches of one sequence: KV for attention layers, conv+SSM state for Mamba layers.
template <class T>
struct SequenceCache {
  std::vector<KvCache<T>> kv;        // one per layer (empty for Mamba layers)
  std::vector<MambaState<T>> mamba;  // one per layer (empty for attention layers)
  int64_t length = 0;                // tokens consumed so far
  static SequenceCache fresh(const ModelConfig& c);
};

// The whole decoder (jamba-spec §1.2-1.3). forward() consumes `ids` after whatever the cache
// already holds, so prefill, chunked prefill and decode are the same call.
template <class T>
class Model {
 public:
  // Round::Bf16 rounds every weight to bf16 here (A_log, D, dt bias and norm weights included:
  // the GPU holds them bf16), and in forward() also the embedding output, the residual stream
  // after each add, and the logits, besides each component's own rounding points.
  Model(ModelConfig config, ModelWeights<T> weights, Round round = Round::None);

  // Returns logits [L, V] for every new position (or only the last if last_only).
  // hidden (optional) receives HF's output_hidden_states for this call: the embedding output,
  // then the output of each layer but the last, then the final-normed output (n_layers + 1).
  Mat<T> forward(const std::vector<int32_t>& ids, SequenceCache<T>& cache, bool last_only = false,
                 std::vector<Mat<T>>* hidden = nullptr) const;
  // Prefill in chunks of `chunk` tokens carrying all caches; logits of every position.
  Mat<T> forward_chunked(const std::vector<int32_t>& ids, SequenceCache<T>& cache,
                         int64_t chunk) const;
  // Greedy decoding: prefill the prompt then n_new argmax steps (ties -> lowest id).
  std::vector<int32_t> generate_greedy(const std::vector<int32_t>& prompt, int64_t n_new) const;

  const ModelConfig& config() const { return config_; }

 private:
  ModelConfig config_;
  ModelWeights<T> w_;
  Round round_;
};

}  // namespace jb::ref
