#pragma once
#include "core/config.hpp"
#include "reference/common.hpp"

namespace jb::ref {

// Weights of one Mamba-1 mixer with Jamba's inner norms (jamba-spec §2.4 table).
template <class T>
struct MambaWeights {
  Mat<T> in_proj;        // [2*Di, d]; rows [0, Di) = x, [Di, 2Di) = z
  Vec<T> in_proj_bias;   // [2*Di] or size 0
  Mat<T> conv_w;         // [Di, K]  (conv1d.weight [Di, 1, K] squeezed)
  Vec<T> conv_b;         // [Di] or size 0
  Mat<T> x_proj;         // [R + 2N, Di]; output split dt, B, C
  Mat<T> dt_proj;        // [Di, R]
  Vec<T> dt_bias;        // [Di]
  Mat<T> A_log;          // [Di, N]
  Vec<T> D;              // [Di]
  Mat<T> out_proj;       // [d, Di]
  Vec<T> out_proj_bias;  // [d] or size 0
  Vec<T> dt_norm;        // [R]  dt_layernorm.weight (size 0 when the config has no inner norms)
  Vec<T> b_norm;         // [N]
  Vec<T> c_norm;         // [N]
};

// Per-sequence recurrent state of one Mamba layer: constant size in context length.
template <class T>
struct MambaState {
  Mat<T> conv;  // [Di, K] last K pre-conv inputs x, oldest first (HF conv_state)
  Mat<T> ssm;   // [Di, N] fp32 (T) state
  static MambaState zeros(const ModelConfig& c);
};

// The Mamba mixer on one sequence's normalised input h [L, d] -> [L, d]. Always continues from
// `state` (zeros for a fresh sequence) and leaves the state after the last token in it, so
// prefill, chunked prefill and decode are all this one function.
// Round::Bf16 rounds each stored intermediate as the CUDA path does (in_proj output, conv output,
// x_proj output, normed dt/B/C, dt_proj output, scan output y, out_proj output).
template <class T>
Mat<T> mamba_layer(const Mat<T>& h, const MambaWeights<T>& w, const ModelConfig& c,
                   MambaState<T>& state, Round r);

}  // namespace jb::ref
