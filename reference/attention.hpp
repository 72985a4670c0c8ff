#pragma once
#include "core/config.hpp"
#include "reference/common.hpp"

namespace jb::ref {

template <class T>
struct AttentionWeights {
  Mat<T> q_proj;  // [H*hd, d]
  Mat<T> k_proj;  // [Hkv*hd, d]
  Mat<T> v_proj;  // [Hkv*hd, d]
  Mat<T> o_proj;  // [d, H*hd]
};

// KV cache of one attention layer for one sequence: keys and values as projected (no positional
// encoding in Jamba, so cached keys never change; with RoPE the cached keys are rotated).
template <class T>
struct KvCache {
  Mat<T> k;  // [T, Hkv*hd], rows 0..len-1 valid
  Mat<T> v;  // [T, Hkv*hd]
  int64_t len = 0;
  void append(const Mat<T>& k_new, const Mat<T>& v_new);
};

// Rotate-half RoPE (HF convention) on x [L, heads*hd] for positions pos0..pos0+L-1, in place.
template <class T>
void apply_rope(Mat<T>& x, int64_t heads, int64_t head_dim, int64_t pos0, double theta);

// Scaled dot-product attention with GQA: query head j uses kv head j / (H / Hkv).
// q [Lq, H*hd], k/v [Tk, Hkv*hd]. Query row i sits at absolute position q_pos0 + i; with causal,
// it sees keys 0..q_pos0+i. Softmax in fp32/T with max subtraction; scale = 1/sqrt(hd).
// Round::Bf16 rounds the output only (flash kernels keep P in registers; jamba-spec §2.3).
// window > 0 (sliding-window baselines, config.sliding_window): query at position p also drops
// keys at positions <= p - window (HF masking rule: key visible iff p - key_pos < window).
template <class T>
Mat<T> attention(const Mat<T>& q, const Mat<T>& k, const Mat<T>& v, int64_t num_heads,
                 int64_t num_kv_heads, int64_t q_pos0, bool causal, Round r, int64_t window = 0);

// Whole attention mixer on normalised h [L, d]: projections, RoPE if c.use_rope, append to the
// cache, attention over the whole cache, o_proj.
template <class T>
Mat<T> attention_layer(const Mat<T>& h, const AttentionWeights<T>& w, const ModelConfig& c,
                       KvCache<T>& cache, Round r);

}  // namespace jb::ref
