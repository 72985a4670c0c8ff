#include "cuda/attention_layer.hpp"

#include <algorithm>
#include <numeric>
#include <string>

#include "core/error.hpp"
#include "cuda/gemm.hpp"

namespace jb::cuda {

AttentionLayer::AttentionLayer(const ModelConfig& c, int batch, int64_t max_tokens)
    : cfg_(c),
      cache_(batch, max_tokens, static_cast<int>(c.num_key_value_heads),
             static_cast<int>(c.head_dim)) {
  if (c.num_attention_heads <= 0 || c.num_key_value_heads <= 0 ||
      c.num_attention_heads % c.num_key_value_heads != 0)
    fail(ErrorKind::Config, "AttentionLayer: heads " + std::to_string(c.num_attention_heads) +
                                " not a multiple of kv heads " +
                                std::to_string(c.num_key_value_heads));
  if (c.sliding_window)
    fail(ErrorKind::Unsupported, "AttentionLayer: sliding_window is not implemented");
  // Partials for the larger of the two variants' split counts, so that decode_variant can be
  // changed after construction without capping the variant's own split count.
  const int H = static_cast<int>(c.num_attention_heads);
  const int Hkv = static_cast<int>(c.num_key_value_heads);
  const int hd = static_cast<int>(c.head_dim);
  const int rows = static_cast<int>(std::min<int64_t>(max_tokens, 1 << 30));
  const int max_splits = std::max(decode_num_splits(batch, H, Hkv, hd, rows, DecodeVariant::Fma),
                                  decode_num_splits(batch, H, Hkv, hd, rows, DecodeVariant::Mma));
  decode_workspace_init(ws_, batch, H, Hkv, hd, max_splits);
}

void AttentionLayer::reserve(int64_t tokens) {
  if (tokens <= reserved_) return;
  q_.alloc(static_cast<size_t>(tokens * cfg_.q_dim()));
  k_.alloc(static_cast<size_t>(tokens * cfg_.kv_dim()));
  v_.alloc(static_cast<size_t>(tokens * cfg_.kv_dim()));
  attn_.alloc(static_cast<size_t>(tokens * cfg_.q_dim()));
  reserved_ = tokens;
}

std::string AttentionLayer::forward(const bf16* x, bf16* out, const std::vector<int>& new_len,
                                    const AttentionLayerWeights& w, cudaStream_t stream) {
  const int64_t total = std::accumulate(new_len.begin(), new_len.end(), int64_t{0});
  if (total == 0) return "none";
  reserve(total);
  const int64_t d = cfg_.hidden_size, qd = cfg_.q_dim(), kvd = cfg_.kv_dim();
  linear_bf16(x, w.q_proj, q_.get(), total, qd, d, stream);
  linear_bf16(x, w.k_proj, k_.get(), total, kvd, d, stream);
  linear_bf16(x, w.v_proj, v_.get(), total, kvd, d, stream);
  const double theta = cfg_.use_rope ? cfg_.rope_theta : 0.0;
  const SeqBatch& seqs = cache_.append(k_.get(), kvd, v_.get(), kvd, new_len, theta, stream);
  if (cfg_.use_rope)
    rope_inplace(q_.get(), qd, static_cast<int>(cfg_.num_attention_heads),
                 static_cast<int>(cfg_.head_dim), seqs, theta, stream);
  const bool decode_step =
      std::all_of(new_len.begin(), new_len.end(), [](int n) { return n == 1; });
  std::string variant;
  if (decode_step) {
    DecodeArgs a;
    a.q = q_.get();
    a.q_stride = qd;
    a.out = attn_.get();
    a.out_stride = qd;
    a.num_heads = static_cast<int>(cfg_.num_attention_heads);
    a.kv = cache_.view();
    a.kv_len = cache_.device_lengths();
    a.max_kv_len = cache_.max_length();
    variant = attention_decode(a, ws_, decode_variant, stream);
  } else {
    PrefillArgs a;
    a.q = q_.get();
    a.q_stride = qd;
    a.out = attn_.get();
    a.out_stride = qd;
    a.num_heads = static_cast<int>(cfg_.num_attention_heads);
    a.kv = cache_.view();
    a.seqs = seqs;
    variant = attention_prefill(a, prefill_variant, stream);
  }
  linear_bf16(attn_.get(), w.o_proj, out, total, d, qd, stream);
  return variant;
}

}  // namespace jb::cuda
