// Internal interface between cuda/attention.cu (dispatch) and cuda/attention_wgmma.cu (the
// Hopper warpgroup-MMA prefill kernel). Not for other callers: cuda/attention.hpp is the API.
#pragma once
#include <cuda_runtime.h>

#include "cuda/attention.hpp"
#include "cuda/device_util.cuh"

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

// One m-tile of scores (16 query rows x kPrefillKeys keys) in the mma.m16n8 C layout, which is
// also each warp's share of a wgmma m64nN accumulator: element [j][e] of lane (g = lane / 4,
// t = lane % 4) is row g + 8 (e >> 1), key 8 j + 2 t + (e & 1). The online-softmax steps below
// are shared by the mma and the wgmma prefill kernels, so both round at the same points.
constexpr int kPrefillKeys = 64;  // keys per K/V tile
using ScoreTile = float[kPrefillKeys / 8][4];

// -inf where the key is after the row's position or past the cache end (p = 2^-inf = +0).
// key0: the tile's first key; qpos_g: the position of this lane's row g.
__device__ __forceinline__ void mask_scores(ScoreTile& sc, int key0, int qpos_g, int kv_len,
                                            int lane) {
#pragma unroll
  for (int j = 0; j < kPrefillKeys / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int key = key0 + j * 8 + 2 * (lane & 3) + (e & 1);
      const int qpos = qpos_g + (e >> 1) * 8;
      if (key > qpos || key >= kv_len) sc[j][e] = -INFINITY;
    }
}

// Online softmax of this lane's two rows (fp32, log2 domain with the scale folded in): m_run
// (kept scaled) moves to the new max, sc becomes P = 2^(s * scale_log2 - m), l_run takes
// alpha = 2^(m_old - m_new) and this tile's row sums. `moved` is or-ed with whether either
// row's max moved (alpha is exactly 1 for a row whose max stands, so its O rescale changes no
// bits).
__device__ __forceinline__ void softmax_scores(ScoreTile& sc, float scale_log2, float (&m_run)[2],
                                               float (&l_run)[2], float (&alpha)[2], bool& moved) {
#pragma unroll
  for (int ri = 0; ri < 2; ++ri) {
    float mx = -INFINITY;
#pragma unroll
    for (int j = 0; j < kPrefillKeys / 8; ++j)
      mx = fmaxf(mx, fmaxf(sc[j][2 * ri], sc[j][2 * ri + 1]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = fmaxf(m_run[ri], mx * scale_log2);
    const float m_use = m_new == -INFINITY ? 0.f : m_new;  // nothing visible yet
    moved |= m_new != m_run[ri];
    alpha[ri] = dev::ex2_approx(m_run[ri] - m_use);
    m_run[ri] = m_new;
    float rs = 0.f;
#pragma unroll
    for (int j = 0; j < kPrefillKeys / 8; ++j) {
      const float p0 = dev::ex2_approx(fmaf(sc[j][2 * ri], scale_log2, -m_use));
      const float p1 = dev::ex2_approx(fmaf(sc[j][2 * ri + 1], scale_log2, -m_use));
      sc[j][2 * ri] = p0;
      sc[j][2 * ri + 1] = p1;
      rs += p0 + p1;
    }
    l_run[ri] = l_run[ri] * alpha[ri] + rs;
  }
}

// O's two rows times their alpha (O in the same C layout, hd / 8 blocks of 8 columns).
template <int HD>
__device__ __forceinline__ void rescale_rows(float (&o)[HD / 8][4], const float (&alpha)[2]) {
#pragma unroll
  for (int d = 0; d < HD / 8; ++d) {
    o[d][0] *= alpha[0];
    o[d][1] *= alpha[0];
    o[d][2] *= alpha[1];
    o[d][3] *= alpha[1];
  }
}

// P rounded to bf16 as the A fragment of k-step kk (keys 16 kk ..): blocks 2 kk and 2 kk + 1.
__device__ __forceinline__ void p_fragment(const ScoreTile& sc, int kk, uint32_t (&pa)[4]) {
  pa[0] = dev::pack_bf16x2(sc[2 * kk][0], sc[2 * kk][1]);
  pa[1] = dev::pack_bf16x2(sc[2 * kk][2], sc[2 * kk][3]);
  pa[2] = dev::pack_bf16x2(sc[2 * kk + 1][0], sc[2 * kk + 1][1]);
  pa[3] = dev::pack_bf16x2(sc[2 * kk + 1][2], sc[2 * kk + 1][3]);
}

// out row = O / (the quad's row sum), rounded to bf16 once; rows row_g and row_g + 8 of the
// block's sequence (new-token index), those before new_len.
template <int HD>
__device__ __forceinline__ void store_rows(const PrefillArgs& a, const float (&o)[HD / 8][4],
                                           const float (&l_run)[2], int q_begin, int row_g,
                                           int new_len, int h, int lane) {
#pragma unroll
  for (int ri = 0; ri < 2; ++ri) {
    float l = l_run[ri];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const float inv = 1.f / l;
    const int row = row_g + ri * 8;
    if (row < new_len) {
      bf16* dst =
          a.out + static_cast<int64_t>(q_begin + row) * a.out_stride + h * HD + 2 * (lane & 3);
#pragma unroll
      for (int d = 0; d < HD / 8; ++d)
        *reinterpret_cast<uint32_t*>(dst + d * 8) =
            dev::pack_bf16x2(o[d][2 * ri] * inv, o[d][2 * ri + 1] * inv);
    }
  }
}

// Causal prefill, head_dim 128, with wgmma (the PrefillVariant::Wgmma contract of
// attention.hpp). The caller has checked shapes and alignment.
void launch_prefill_wgmma(const PrefillArgs& a, float scale_log2, cudaStream_t stream);

}  // namespace jb::cuda::attention_detail
