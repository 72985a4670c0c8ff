// Device-side fills from the counter-based RNG of core/rng.hpp. Element i of a fill gets the
// value of key (seed, stream, index_offset + i) through the same jb::rng_normal / rng_uniform
// functions the host uses (fma-based affine maps, correctly rounded on both sides), then one
// round-to-nearest-even store to bf16 where the destination is bf16, so a GPU fill equals the
// host's generation (and round_bf16) bit for bit.
//
// The rule of core/weights.hpp's random_weights(): the stream of a named tensor is
// jb::stream_id(name) and the index is the flat row-major element index, so
//   fill_normal(dst, n, seed, jb::stream_id("model.layers.0.mamba.in_proj.weight"), 0, 0.02f)
// regenerates that tensor on the GPU (Linear weights ~ N(0, 0.02)); uniform-initialised
// tensors use fill_uniform with the same bounds the host computed.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/weights.hpp"
#include "cuda/common.cuh"

namespace jb::cuda {

void fill_normal(bf16* dst, size_t n, uint64_t seed, uint64_t stream, float mean, float std,
                 uint64_t index_offset = 0, cudaStream_t s = nullptr);
void fill_normal(float* dst, size_t n, uint64_t seed, uint64_t stream, float mean, float std,
                 uint64_t index_offset = 0, cudaStream_t s = nullptr);
void fill_uniform(bf16* dst, size_t n, uint64_t seed, uint64_t stream, float lo, float hi,
                  uint64_t index_offset = 0, cudaStream_t s = nullptr);
void fill_uniform(float* dst, size_t n, uint64_t seed, uint64_t stream, float lo, float hi,
                  uint64_t index_offset = 0, cudaStream_t s = nullptr);
void fill_constant(bf16* dst, size_t n, float value, cudaStream_t s = nullptr);
void fill_constant(float* dst, size_t n, float value, cudaStream_t s = nullptr);

// The whole random_weights() rule for one tensor: Normal, Uniform and Constant are generated on
// the GPU; DtBias and ALog (double-precision host formulas, [Di] and [Di, N] only) are computed by
// jb::random_init_value on the host and uploaded, so every rule matches the host bit for bit.
// stream = jb::stream_id(canonical name), rule = jb::random_init_rule(name, config).
void fill_random_weight(bf16* dst, size_t n, uint64_t seed, uint64_t stream, const InitRule& rule,
                        cudaStream_t s = nullptr);
void fill_random_weight(float* dst, size_t n, uint64_t seed, uint64_t stream, const InitRule& rule,
                        cudaStream_t s = nullptr);

}  // namespace jb::cuda
