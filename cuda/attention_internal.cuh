// Internal interface between cuda/attention.cu (dispatch) and cuda/attention_wgmma.cu (the
// Hopper warpgroup-MMA prefill kernel). Not for other callers: cuda/attention.hpp is the API.
#pragma once
#include <cuda_runtime.h>

#include "cuda/attention.hpp"

namespace jb::cuda::attention_detail {

// The part of a causal prefill problem one block owns (blockIdx.x counts query tiles of `bm` rows,
// heaviest first; y: head; z: sequence), shared by the mma kernels (cuda/attention.cu) and the
// wgmma kernel: both schedule and bound their tiles the same way.
struct PrefillBlock {
  int m0;         // first query row of the block within its sequence's new tokens
  int q_begin;    // token index of the sequence's first new token
  int new_len;    // the sequence's new tokens
  int past;       // cache rows before them
  int kv_len;     // past + new_len
  int n_tiles;    // K/V tiles of `bn` rows the block reads: keys 0 .. min(kv_len, past + m0 + bm)
  const bf16* k;  // this (sequence, kv head)'s K slab [max_tokens, hd]
  const bf16* v;
};

// false: the block's query tile starts past its sequence's end (shorter sequences of a varlen
// batch), nothing to do.
template <int HD>
__device__ __forceinline__ bool prefill_block(const PrefillArgs& a, int bm, int bn,
                                              PrefillBlock& b) {
  const int s = blockIdx.z;
  const int h = blockIdx.y;
  // Heaviest (latest) query tiles first: causal work grows with the tile index.
  b.m0 = (gridDim.x - 1 - blockIdx.x) * bm;
  b.q_begin = a.seqs.cu_new[s];
  b.new_len = a.seqs.cu_new[s + 1] - b.q_begin;
  if (b.m0 >= b.new_len) return false;
  b.past = a.seqs.past_len[s];
  b.kv_len = b.past + b.new_len;
  const int kvh = h / (a.num_heads / a.kv.num_kv_heads);
  const int64_t slab = (static_cast<int64_t>(s) * a.kv.num_kv_heads + kvh) * a.kv.max_tokens * HD;
  b.k = a.kv.k + slab;
  b.v = a.kv.v + slab;
  const int kv_end = min(b.kv_len, b.past + b.m0 + bm);
  b.n_tiles = (kv_end + bn - 1) / bn;
  return true;
}

// Whether this build holds the wgmma kernel for the current device: sm_90a machine code exists
// only for compute capability 9.0 (H100 / H200); elsewhere the compute_90 PTX has no wgmma.
bool prefill_wgmma_supported();

// Causal prefill, head_dim 128, with wgmma (the PrefillVariant::Wgmma contract of
// attention.hpp). The caller has checked shapes and alignment.
void launch_prefill_wgmma(const PrefillArgs& a, float scale_log2, cudaStream_t stream);

}  // namespace jb::cuda::attention_detail
