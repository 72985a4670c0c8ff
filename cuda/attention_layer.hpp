// The attention mixer of one layer on the GPU (jamba-spec §2.3): q/k/v projections (cuBLAS,
// bf16 in/out, fp32 accumulation), RoPE on q and k when the config asks for it (baselines only,
// jamba-spec §4.3; Jamba has none, §7 item 4), append to the layer's KV cache, causal GQA
// attention over the cache (prefill kernel for calls with several tokens per sequence, split-KV
// decode kernel when every sequence brings exactly one), o_proj.
#pragma once
#include <cstdint>
#include <vector>

#include "core/config.hpp"
#include "cuda/attention.hpp"
#include "cuda/common.cuh"
#include "cuda/kv_cache.hpp"

namespace jb::cuda {

// Device weights in PyTorch nn.Linear layout [out, in], bf16 (not owned).
struct AttentionLayerWeights {
  const bf16* q_proj = nullptr;  // [H*hd, d]
  const bf16* k_proj = nullptr;  // [Hkv*hd, d]
  const bf16* v_proj = nullptr;  // [Hkv*hd, d]
  const bf16* o_proj = nullptr;  // [d, H*hd]
};

class AttentionLayer {
 public:
  // Allocates the KV cache (batch x max_tokens) and the decode workspace.
  AttentionLayer(const ModelConfig& c, int batch, int64_t max_tokens);

  // x [sum(new_len), d] token-major, sequence after sequence; out the same shape. Sequence s
  // brings new_len[s] tokens (0 allowed) at positions cache.lengths()[s] ... Returns the kernel
  // variant that ran ("mma64", "splitkv_mma", ...).
  std::string forward(const bf16* x, bf16* out, const std::vector<int>& new_len,
                      const AttentionLayerWeights& w, cudaStream_t stream = nullptr);
  // Prefill of one sequence batch (any lengths) and one decode step (one token per sequence).
  std::string prefill(const bf16* x, bf16* out, const std::vector<int>& new_len,
                      const AttentionLayerWeights& w, cudaStream_t stream = nullptr) {
    return forward(x, out, new_len, w, stream);
  }
  std::string decode(const bf16* x, bf16* out, const AttentionLayerWeights& w,
                     cudaStream_t stream = nullptr) {
    return forward(x, out, std::vector<int>(static_cast<size_t>(cache_.batch()), 1), w, stream);
  }

  KvCache& cache() { return cache_; }
  const KvCache& cache() const { return cache_; }
  PrefillVariant prefill_variant = PrefillVariant::Auto;
  DecodeVariant decode_variant = DecodeVariant::Auto;  // the workspace fits either variant

 private:
  void reserve(int64_t tokens);
  ModelConfig cfg_;
  KvCache cache_;
  DecodeWorkspace ws_;
  DeviceBuffer<bf16> q_, k_, v_, attn_;
  int64_t reserved_ = 0;
};

}  // namespace jb::cuda
