// CUDA attention: prefill (FlashAttention-2 style with mma.sync, plus a simple fp32 variant),
// split-KV decode, RoPE and KV append. Interfaces and numerics: cuda/attention.hpp.
#include "cuda/attention.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>

#include "core/error.hpp"
#include "cuda/device_util.cuh"

namespace jb::cuda {

namespace {

constexpr unsigned kFullMask = 0xffffffffu;
using dev::cp_async16;
using dev::cp_async_commit;
using dev::cp_async_wait;
using dev::kLog2e;
using dev::smem_addr;

// ---------------------------------------------------------------------------------------------
// PTX helpers (sm_80+): ldmatrix (asynchronous copies and the MMA: cuda/device_util.cuh).

__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2,
                                            uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t addr, uint32_t& r0, uint32_t& r1,
                                                  uint32_t& r2, uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}

// Two floats -> bf16x2 (round to nearest even), the lower column in the low half as mma expects.
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

__device__ __forceinline__ void unpack8(const uint4& raw, float (&f)[8]) {
  const __nv_bfloat162* p = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 x = __bfloat1622float2(p[i]);
    f[2 * i] = x.x;
    f[2 * i + 1] = x.y;
  }
}

// Sequence owning token t: the largest s with cu_new[s] <= t (cu_new is non-decreasing).
__device__ __forceinline__ int seq_of_token(const int* cu_new, int batch, int t) {
  int lo = 0, hi = batch - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (cu_new[mid] <= t)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

// ---------------------------------------------------------------------------------------------
// Prefill, mma variant. A block of WARPS warps owns 16*WARPS query rows of one head of one
// sequence; each warp owns 16 rows. K/V tiles of 64 rows are staged in shared memory with
// cp.async double buffering. Shared memory rows are hd*2 bytes; 16-byte chunk c of row r is
// stored at chunk c ^ (r & 7) so that the 8 row addresses of an ldmatrix hit 8 different bank
// groups (no conflicts).
//
// Fragment layouts (PTX ISA, mma.m16n8k16, g = lane/4, t = lane%4):
//   A regs a0..a3: (row g, cols 2t..2t+1), (row g+8, same), (row g, cols 2t+8..), (row g+8, ..)
//   B regs b0, b1: (k rows 2t..2t+1, col g), (k rows 2t+8.., col g)
//   C regs c0..c3: (row g, cols 2t, 2t+1), (row g+8, cols 2t, 2t+1)
// so the S accumulators of key tiles 2kk and 2kk+1 are exactly the A fragment of P for the
// k-step kk of P*V (no shuffles).

template <int CH>
__device__ __forceinline__ int swz(int row, int chunk) {
  return row * CH + (chunk ^ (row & 7));
}

template <int HD, int WARPS>
__global__ void __launch_bounds__(WARPS * 32)
    prefill_mma_kernel(const PrefillArgs a, const float scale_log2) {
  constexpr int BM = 16 * WARPS;
  constexpr int BN = 64;
  constexpr int CH = HD / 8;  // 16-byte chunks per row
  constexpr int THREADS = WARPS * 32;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  bf16* sQ = reinterpret_cast<bf16*>(smem_raw);
  bf16* sK = sQ + BM * HD;      // [2][BN][HD]
  bf16* sV = sK + 2 * BN * HD;  // [2][BN][HD]

  const int s = blockIdx.z;
  const int h = blockIdx.y;
  // Heaviest (latest) query tiles first: causal work grows with the tile index.
  const int m0 = (gridDim.x - 1 - blockIdx.x) * BM;
  const int q_begin = a.seqs.cu_new[s];
  const int new_len = a.seqs.cu_new[s + 1] - q_begin;
  if (m0 >= new_len) return;
  const int past = a.seqs.past_len[s];
  const int kv_len = past + new_len;
  const int kvh = h / (a.num_heads / a.kv.num_kv_heads);
  const int64_t slab = (static_cast<int64_t>(s) * a.kv.num_kv_heads + kvh) * a.kv.max_tokens * HD;
  const bf16* kbase = a.kv.k + slab;
  const bf16* vbase = a.kv.v + slab;
  // Keys any row of this block may see: 0 .. min(kv_len, past + m0 + BM) - 1.
  const int kv_end = min(kv_len, past + m0 + BM);
  const int n_tiles = (kv_end + BN - 1) / BN;

  const int tid = threadIdx.x;
  const int warp = tid >> 5;
  const int lane = tid & 31;

  for (int i = tid; i < BM * CH; i += THREADS) {
    const int r = i / CH, c = i % CH;
    const bool valid = m0 + r < new_len;
    const bf16* src =
        valid ? a.q + static_cast<int64_t>(q_begin + m0 + r) * a.q_stride + h * HD + c * 8 : a.q;
    cp_async16(smem_addr(sQ + swz<CH>(r, c) * 8), src, valid);
  }
  cp_async_commit();

  auto load_kv = [&](int tile, int buf) {
    const int n0 = tile * BN;
    bf16* dk = sK + buf * BN * HD;
    bf16* dv = sV + buf * BN * HD;
    for (int i = tid; i < BN * CH; i += THREADS) {
      const int r = i / CH, c = i % CH;
      const bool valid = n0 + r < kv_len;
      const int64_t off = static_cast<int64_t>(n0 + r) * HD + c * 8;
      cp_async16(smem_addr(dk + swz<CH>(r, c) * 8), valid ? kbase + off : kbase, valid);
      cp_async16(smem_addr(dv + swz<CH>(r, c) * 8), valid ? vbase + off : vbase, valid);
    }
    cp_async_commit();
  };

  uint32_t qf[HD / 16][4];
  float o[HD / 8][4];
#pragma unroll
  for (int d = 0; d < HD / 8; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.f;
  float m_run[2] = {-INFINITY, -INFINITY};
  float l_run[2] = {0.f, 0.f};  // per-thread partial row sums (reduced over the quad at the end)
  const int qpos0 = past + m0 + warp * 16 + (lane >> 2);  // absolute position of row g

  load_kv(0, 0);
  for (int it = 0; it < n_tiles; ++it) {
    if (it + 1 < n_tiles) {
      load_kv(it + 1, (it + 1) & 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (it == 0) {
#pragma unroll
      for (int kk = 0; kk < HD / 16; ++kk) {
        const int r = warp * 16 + (lane & 15);
        const int c = kk * 2 + (lane >> 4);
        ldmatrix_x4(smem_addr(sQ + swz<CH>(r, c) * 8), qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3]);
      }
    }
    const bf16* tK = sK + (it & 1) * BN * HD;
    const bf16* tV = sV + (it & 1) * BN * HD;

    // S = Q K^T for this warp's 16 rows and the tile's 64 keys.
    float sc[BN / 8][4];
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
#pragma unroll
      for (int jp = 0; jp < BN / 16; ++jp) {
        const int r = jp * 16 + (lane & 7) + ((lane >> 4) << 3);
        const int c = kk * 2 + ((lane >> 3) & 1);
        uint32_t b0, b1, b2, b3;
        ldmatrix_x4(smem_addr(tK + swz<CH>(r, c) * 8), b0, b1, b2, b3);
        dev::mma_bf16_16816(sc[2 * jp], qf[kk], b0, b1);
        dev::mma_bf16_16816(sc[2 * jp + 1], qf[kk], b2, b3);
      }
    }

    // Scale into the log2 domain; mask only tiles that cross the diagonal or the cache end.
    const int n0 = it * BN;
    const bool need_mask = (n0 + BN - 1 > past + m0) || (n0 + BN > kv_len);
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = sc[j][e] * scale_log2;
        if (need_mask) {
          const int key = n0 + j * 8 + 2 * (lane & 3) + (e & 1);
          const int qpos = qpos0 + (e >> 1) * 8;
          if (key > qpos || key >= kv_len) x = -INFINITY;
        }
        sc[j][e] = x;
      }
    }

    // Online softmax (fp32): new running max, rescale the running sum and the accumulators.
#pragma unroll
    for (int ri = 0; ri < 2; ++ri) {
      float mx = m_run[ri];
#pragma unroll
      for (int j = 0; j < BN / 8; ++j) mx = fmaxf(mx, fmaxf(sc[j][2 * ri], sc[j][2 * ri + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, 2));
      const float m_use = mx == -INFINITY ? 0.f : mx;  // a row with nothing visible yet
      const float alpha = exp2f(m_run[ri] - m_use);
      m_run[ri] = mx;
      float rs = 0.f;
#pragma unroll
      for (int j = 0; j < BN / 8; ++j) {
        const float p0 = exp2f(sc[j][2 * ri] - m_use);
        const float p1 = exp2f(sc[j][2 * ri + 1] - m_use);
        sc[j][2 * ri] = p0;
        sc[j][2 * ri + 1] = p1;
        rs += p0 + p1;
      }
      l_run[ri] = l_run[ri] * alpha + rs;
#pragma unroll
      for (int d = 0; d < HD / 8; ++d) {
        o[d][2 * ri] *= alpha;
        o[d][2 * ri + 1] *= alpha;
      }
    }

    // O += P V, P rounded to bf16 (the A operand), V via ldmatrix.trans (B is [key][hd]).
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      const uint32_t pa[4] = {pack_bf16x2(sc[2 * kk][0], sc[2 * kk][1]),
                              pack_bf16x2(sc[2 * kk][2], sc[2 * kk][3]),
                              pack_bf16x2(sc[2 * kk + 1][0], sc[2 * kk + 1][1]),
                              pack_bf16x2(sc[2 * kk + 1][2], sc[2 * kk + 1][3])};
#pragma unroll
      for (int dp = 0; dp < HD / 16; ++dp) {
        const int r = kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3);
        const int c = dp * 2 + (lane >> 4);
        uint32_t b0, b1, b2, b3;
        ldmatrix_x4_trans(smem_addr(tV + swz<CH>(r, c) * 8), b0, b1, b2, b3);
        dev::mma_bf16_16816(o[2 * dp], pa, b0, b1);
        dev::mma_bf16_16816(o[2 * dp + 1], pa, b2, b3);
      }
    }
    __syncthreads();  // the next iteration's copy overwrites this buffer
  }

#pragma unroll
  for (int ri = 0; ri < 2; ++ri) {
    float l = l_run[ri];
    l += __shfl_xor_sync(kFullMask, l, 1);
    l += __shfl_xor_sync(kFullMask, l, 2);
    const float inv = 1.f / l;
    const int row = m0 + warp * 16 + (lane >> 2) + ri * 8;
    if (row < new_len) {
      bf16* dst =
          a.out + static_cast<int64_t>(q_begin + row) * a.out_stride + h * HD + 2 * (lane & 3);
#pragma unroll
      for (int d = 0; d < HD / 8; ++d)
        *reinterpret_cast<uint32_t*>(dst + d * 8) =
            pack_bf16x2(o[d][2 * ri] * inv, o[d][2 * ri + 1] * inv);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Prefill, simple variant: one warp per (token, head); lane l holds dims l*HD/32 .. of q and of
// the accumulator; one key at a time, score reduced by an xor butterfly (every lane ends with
// the same bits), online softmax in fp32, P never rounded.
template <int HD>
__global__ void __launch_bounds__(128)
    prefill_simple_kernel(const PrefillArgs a, const float scale_log2) {
  constexpr int PER = HD / 32;
  const int64_t work = static_cast<int64_t>(blockIdx.x) * 4 + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (work >= static_cast<int64_t>(a.seqs.total_new) * a.num_heads) return;
  const int t = static_cast<int>(work / a.num_heads);
  const int h = static_cast<int>(work % a.num_heads);
  const int s = seq_of_token(a.seqs.cu_new, a.seqs.batch, t);
  const int qpos = a.seqs.past_len[s] + (t - a.seqs.cu_new[s]);
  const int kvh = h / (a.num_heads / a.kv.num_kv_heads);
  const int64_t slab = (static_cast<int64_t>(s) * a.kv.num_kv_heads + kvh) * a.kv.max_tokens * HD;
  const bf16* kb = a.kv.k + slab + lane * PER;
  const bf16* vb = a.kv.v + slab + lane * PER;
  float q[PER], acc[PER];
  const bf16* qp = a.q + static_cast<int64_t>(t) * a.q_stride + h * HD + lane * PER;
#pragma unroll
  for (int i = 0; i < PER; ++i) {
    q[i] = __bfloat162float(qp[i]) * scale_log2;
    acc[i] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  for (int key = 0; key <= qpos; ++key) {
    float dot = 0.f;
#pragma unroll
    for (int i = 0; i < PER; ++i)
      dot = fmaf(q[i], __bfloat162float(kb[static_cast<int64_t>(key) * HD + i]), dot);
#pragma unroll
    for (int off = 16; off >= 1; off >>= 1) dot += __shfl_xor_sync(kFullMask, dot, off);
    const float m_new = fmaxf(m, dot);
    const float alpha = exp2f(m - m_new);
    const float p = exp2f(dot - m_new);
    l = l * alpha + p;
#pragma unroll
    for (int i = 0; i < PER; ++i)
      acc[i] = fmaf(p, __bfloat162float(vb[static_cast<int64_t>(key) * HD + i]), acc[i] * alpha);
    m = m_new;
  }
  bf16* dst = a.out + static_cast<int64_t>(t) * a.out_stride + h * HD + lane * PER;
#pragma unroll
  for (int i = 0; i < PER; ++i) dst[i] = __float2bfloat16_rn(acc[i] / l);
}

// ---------------------------------------------------------------------------------------------
// Decode, split-KV. Block (split, kv head, sequence), 128 threads. The block's rows stream
// through shared memory in tiles of kDecTile K rows + kDecTile V rows, kDecStages deep with
// cp.async (up to kDecStages - 1 tiles in flight while one is computed: 48 KB in flight and
// 64 KB of buffers per block at hd 128, three blocks per SM). The first version loaded K/V straight
// into registers, 8 rows per step, and computed only after they arrived: at B=1 on an H200 it
// reached 2.2 TB/s at L=128K and 0.68 TB/s at 8K, where a serial final merge (one L2 round trip per
// split per element) added ~35 us. A row of hd bf16 is LPR = HD/8 16-byte chunks, read from shared
// memory by LPR consecutive lanes ("a row stream"); the block has 128/LPR streams, each taking rows
// stream, stream + STREAMS, ... of the tile with its own online-softmax state for the G query heads
// of the group. The streams are merged in shared memory, the block's partial (acc; max, sum) goes
// to global memory, and the last block of the (sequence, kv head) merges all partials in split
// order.
constexpr int kDecTile = 32;
constexpr int kDecStages = 4;
constexpr int kDecThreads = 128;

template <int HD, int G>
struct DecodeShape {
  static constexpr int LPR = HD / 8;
  static constexpr int STREAMS = kDecThreads / LPR;
  static constexpr int RPS = kDecTile / STREAMS;  // rows per stream per tile
  static constexpr int TILE = kDecTile * HD;      // bf16 elements of one K (or V) tile
  static constexpr size_t kPipe = size_t(kDecStages) * 2 * TILE * sizeof(bf16);
  static constexpr size_t kMerge = (size_t(2) * STREAMS * G + size_t(STREAMS) * G * HD) * 4;
  static constexpr size_t kFinal = (size_t(G) * kDecodeMaxSplits + G) * 4;
  static constexpr size_t kBytes = std::max({kPipe, kMerge, kFinal});
};

template <int HD, int G>
__global__ void __launch_bounds__(kDecThreads)
    decode_splitkv_kernel(const DecodeArgs a, float* __restrict__ part_acc,
                          float* __restrict__ part_ml, unsigned* __restrict__ counters,
                          const int num_splits, const int chunk, const float scale_log2) {
  using S = DecodeShape<HD, G>;
  constexpr int LPR = S::LPR, STREAMS = S::STREAMS, RPS = S::RPS, TILE = S::TILE;
  extern __shared__ __align__(16) unsigned char dsm[];
  bf16* pipe = reinterpret_cast<bf16*>(dsm);  // [stage][K, V][kDecTile][HD]

  const int split = blockIdx.x, kvh = blockIdx.y, s = blockIdx.z;
  const int len = a.kv_len[s];
  const int start = split * chunk;
  if (start >= len) return;  // this sequence is shorter; its merge counts only valid splits
  const int end = min(len, start + chunk);
  const int n_valid = (len + chunk - 1) / chunk;
  const int n_tiles = (end - start + kDecTile - 1) / kDecTile;
  const int H = a.num_heads;
  const int Hkv = a.kv.num_kv_heads;
  const int h0 = kvh * G;
  const int tid = threadIdx.x;
  const int stream = tid / LPR, c = tid % LPR;
  const int64_t slab = (static_cast<int64_t>(s) * Hkv + kvh) * a.kv.max_tokens * HD;
  const bf16* kslab = a.kv.k + slab;
  const bf16* vslab = a.kv.v + slab;

  // Tile `tile` -> stage tile % kDecStages; rows past `end` are zero-filled (see cp_async16).
  auto issue = [&](int tile) {
    bf16* ks = pipe + (tile % kDecStages) * 2 * TILE;
    bf16* vs = ks + TILE;
    const int row_base = start + tile * kDecTile;
#pragma unroll
    for (int idx = tid; idx < kDecTile * LPR; idx += kDecThreads) {
      const int r = idx / LPR, cc = idx % LPR;
      const bool ok = row_base + r < end;
      const int64_t off = static_cast<int64_t>(ok ? row_base + r : start) * HD + cc * 8;
      cp_async16(smem_addr(ks + r * HD + cc * 8), kslab + off, ok);
      cp_async16(smem_addr(vs + r * HD + cc * 8), vslab + off, ok);
    }
  };
#pragma unroll
  for (int t = 0; t < kDecStages - 1; ++t) {
    if (t < n_tiles) issue(t);
    cp_async_commit();  // empty groups keep the wait_group count uniform
  }

  float q[G][8];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    const uint4 raw = *reinterpret_cast<const uint4*>(a.q + static_cast<int64_t>(s) * a.q_stride +
                                                      (h0 + g) * HD + c * 8);
    unpack8(raw, q[g]);
#pragma unroll
    for (int i = 0; i < 8; ++i) q[g][i] *= scale_log2;
  }
  float m[G], l[G], acc[G][8];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.f;
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[g][i] = 0.f;
  }

  for (int t = 0; t < n_tiles; ++t) {
    cp_async_wait<kDecStages - 2>();  // tile t has landed (this thread's copies)
    __syncthreads();                  // ... everyone's; and stage (t-1) % S is free again
    if (t + kDecStages - 1 < n_tiles) issue(t + kDecStages - 1);
    cp_async_commit();
    const bf16* ks = pipe + (t % kDecStages) * 2 * TILE;
    const bf16* vs = ks + TILE;
    const int row_base = start + t * kDecTile;
    float sc[G][RPS];
#pragma unroll
    for (int j = 0; j < RPS; ++j) {
      float kf[8];
      unpack8(*reinterpret_cast<const uint4*>(ks + (stream + j * STREAMS) * HD + c * 8), kf);
#pragma unroll
      for (int g = 0; g < G; ++g) {
        float d = 0.f;
#pragma unroll
        for (int i = 0; i < 8; ++i) d = fmaf(q[g][i], kf[i], d);
        sc[g][j] = d;
      }
    }
#pragma unroll
    for (int off = LPR / 2; off >= 1; off >>= 1) {
#pragma unroll
      for (int g = 0; g < G; ++g)
#pragma unroll
        for (int j = 0; j < RPS; ++j) sc[g][j] += __shfl_xor_sync(kFullMask, sc[g][j], off);
    }
#pragma unroll
    for (int g = 0; g < G; ++g) {
      float mx = m[g];
#pragma unroll
      for (int j = 0; j < RPS; ++j) {
        if (row_base + stream + j * STREAMS >= end) sc[g][j] = -INFINITY;
        mx = fmaxf(mx, sc[g][j]);
      }
      const float m_use = mx == -INFINITY ? 0.f : mx;
      const float alpha = exp2f(m[g] - m_use);
      m[g] = mx;
      float ps = 0.f;
#pragma unroll
      for (int j = 0; j < RPS; ++j) {
        sc[g][j] = exp2f(sc[g][j] - m_use);
        ps += sc[g][j];
      }
      l[g] = l[g] * alpha + ps;
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[g][i] *= alpha;
    }
#pragma unroll
    for (int j = 0; j < RPS; ++j) {
      float vf[8];
      unpack8(*reinterpret_cast<const uint4*>(vs + (stream + j * STREAMS) * HD + c * 8), vf);
#pragma unroll
      for (int g = 0; g < G; ++g)
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[g][i] = fmaf(sc[g][j], vf[i], acc[g][i]);
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // the pipeline buffers are reused below

  // Merge the streams of this block (fixed order: stream 0, 1, ...).
  float* sm_m = reinterpret_cast<float*>(dsm);  // [STREAMS][G]
  float* sm_l = sm_m + STREAMS * G;             // [STREAMS][G]
  float* sm_acc = sm_l + STREAMS * G;           // [STREAMS][G][HD]
  __shared__ bool is_last;
  if (c == 0) {
#pragma unroll
    for (int g = 0; g < G; ++g) {
      sm_m[stream * G + g] = m[g];
      sm_l[stream * G + g] = l[g];
    }
  }
#pragma unroll
  for (int g = 0; g < G; ++g)
#pragma unroll
    for (int i = 0; i < 8; ++i) sm_acc[(stream * G + g) * HD + c * 8 + i] = acc[g][i];
  __syncthreads();
  const int64_t rec0 = static_cast<int64_t>(s) * H + h0;  // record row of query head h0
  for (int idx = tid; idx < G * HD; idx += kDecThreads) {
    const int g = idx / HD, d = idx % HD;
    float M = -INFINITY;
    for (int st = 0; st < STREAMS; ++st) M = fmaxf(M, sm_m[st * G + g]);
    float A = 0.f, L = 0.f;
    for (int st = 0; st < STREAMS; ++st) {
      const float mst = sm_m[st * G + g];
      const float w = mst == -INFINITY ? 0.f : exp2f(mst - M);
      A = fmaf(w, sm_acc[(st * G + g) * HD + d], A);
      L = fmaf(w, sm_l[st * G + g], L);
    }
    const int64_t rec = (rec0 + g) * num_splits + split;
    part_acc[rec * HD + d] = A;
    if (d == 0) {
      part_ml[rec * 2] = M;
      part_ml[rec * 2 + 1] = L;
    }
  }

  // The last block of this (sequence, kv head) merges: threadFenceReduction pattern.
  __threadfence();
  __syncthreads();
  if (tid == 0) {
    const unsigned prev = atomicAdd(&counters[s * Hkv + kvh], 1u);
    is_last = prev == static_cast<unsigned>(n_valid - 1);
  }
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  // Split weights w[g][sp] = 2^(M_sp - M_g) and the total sums, one warp per query head: the
  // lanes' fixed split assignment keeps the reductions' order (and bits) run to run. (max, sum)
  // pairs are read from L2 once (kept in registers: n_valid <= kDecodeMaxSplits = 8 x 32).
  float* sm_w = reinterpret_cast<float*>(dsm);  // [G][kDecodeMaxSplits]
  float* sm_sum = sm_w + G * kDecodeMaxSplits;  // [G]
  const int warp = tid >> 5, lane = tid & 31;
  constexpr int kPerLane = kDecodeMaxSplits / 32;
  for (int g = warp; g < G; g += kDecThreads / 32) {
    const float2* ml = reinterpret_cast<const float2*>(part_ml) + (rec0 + g) * num_splits;
    float2 v[kPerLane];
    float M = -INFINITY;
#pragma unroll
    for (int k = 0; k < kPerLane; ++k) {
      const int sp = lane + 32 * k;
      v[k] = sp < n_valid ? __ldcg(ml + sp) : make_float2(-INFINITY, 0.f);
      M = fmaxf(M, v[k].x);
    }
#pragma unroll
    for (int off = 16; off >= 1; off >>= 1) M = fmaxf(M, __shfl_xor_sync(kFullMask, M, off));
    float L = 0.f;
#pragma unroll
    for (int k = 0; k < kPerLane; ++k) {
      const int sp = lane + 32 * k;
      if (sp < n_valid) {
        const float w = exp2f(v[k].x - M);
        sm_w[g * kDecodeMaxSplits + sp] = w;
        L = fmaf(w, v[k].y, L);
      }
    }
#pragma unroll
    for (int off = 16; off >= 1; off >>= 1) L += __shfl_xor_sync(kFullMask, L, off);
    if (lane == 0) sm_sum[g] = L;
  }
  __syncthreads();
  // Weighted sum of the partial accumulators, 4 dims per thread: 16 splits per round, all 16
  // loads (16-byte, from L2) issued before the first use, so 43 splits cost 3 L2 round trips
  // (an 8-way unroll with a scalar remainder loop took 8).
  constexpr int kRound = 16;
  for (int v = tid; v < G * HD / 4; v += kDecThreads) {
    const int g = v / (HD / 4), d4 = v % (HD / 4);
    const float4* src =
        reinterpret_cast<const float4*>(part_acc + (rec0 + g) * num_splits * HD) + d4;
    const float* w = sm_w + g * kDecodeMaxSplits;
    float4 A = make_float4(0.f, 0.f, 0.f, 0.f);
    for (int sp0 = 0; sp0 < n_valid; sp0 += kRound) {
      float4 x[kRound];
#pragma unroll
      for (int k = 0; k < kRound; ++k)
        x[k] = sp0 + k < n_valid ? __ldcg(src + (sp0 + k) * (HD / 4))
                                 : make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
      for (int k = 0; k < kRound; ++k) {
        if (sp0 + k >= n_valid) break;
        const float wk = w[sp0 + k];
        A.x = fmaf(wk, x[k].x, A.x);
        A.y = fmaf(wk, x[k].y, A.y);
        A.z = fmaf(wk, x[k].z, A.z);
        A.w = fmaf(wk, x[k].w, A.w);
      }
    }
    const float L = sm_sum[g];
    uint2 packed;
    packed.x = pack_bf16x2(A.x / L, A.y / L);
    packed.y = pack_bf16x2(A.z / L, A.w / L);
    *reinterpret_cast<uint2*>(a.out + static_cast<int64_t>(s) * a.out_stride + (h0 + g) * HD +
                              d4 * 4) = packed;
  }
  if (tid == 0) counters[s * Hkv + kvh] = 0;  // every valid block has arrived: reset for reuse
}

// ---------------------------------------------------------------------------------------------
// RoPE (rotate-half) and KV append.

// cos/sin of pos * theta^(-2i/hd), the angle in double and reduced to [-pi, pi] before the fp32
// sincos (fp32 angles at position 256K would be off by ~1e-2 rad).
__device__ __forceinline__ void rope_cos_sin(int pos, int i, int hd, double log_theta, float& cs,
                                             float& sn) {
  const double inv_freq = exp(-(2.0 * i / hd) * log_theta);
  double ang = static_cast<double>(pos) * inv_freq;
  const double two_pi = 6.283185307179586;
  ang -= two_pi * rint(ang / two_pi);
  sincosf(static_cast<float>(ang), &sn, &cs);
}

// One thread per (token, rotation pair i), looping over heads (the angle is shared). Reads x from
// src (token-major) and writes to dst_at(token, seq, pos, head) + i / + i + hd/2.
template <class DstFn>
__global__ void rope_kernel(const bf16* src, int64_t src_stride, int num_heads, int head_dim,
                            const SeqBatch seqs, double log_theta, DstFn dst_at) {
  const int half = head_dim / 2;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= static_cast<int64_t>(seqs.total_new) * half) return;
  const int t = static_cast<int>(idx / half);
  const int i = static_cast<int>(idx % half);
  const int s = seq_of_token(seqs.cu_new, seqs.batch, t);
  const int pos = seqs.past_len[s] + (t - seqs.cu_new[s]);
  float cs, sn;
  rope_cos_sin(pos, i, head_dim, log_theta, cs, sn);
  for (int hh = 0; hh < num_heads; ++hh) {
    const bf16* x = src + static_cast<int64_t>(t) * src_stride + hh * head_dim;
    const float a0 = __bfloat162float(x[i]);
    const float b0 = __bfloat162float(x[i + half]);
    bf16* d = dst_at(t, s, pos, hh);
    d[i] = __float2bfloat16_rn(a0 * cs - b0 * sn);
    d[i + half] = __float2bfloat16_rn(b0 * cs + a0 * sn);
  }
}

struct InPlaceDst {
  bf16* x;
  int64_t stride;
  int head_dim;
  __device__ bf16* operator()(int t, int, int, int hh) const {
    return x + static_cast<int64_t>(t) * stride + hh * head_dim;
  }
};

struct CacheDst {
  bf16* cache;
  int num_kv_heads;
  int64_t max_tokens;
  int head_dim;
  __device__ bf16* operator()(int, int s, int pos, int hh) const {
    return cache + ((static_cast<int64_t>(s) * num_kv_heads + hh) * max_tokens + pos) * head_dim;
  }
};

// Plain copy of token-major rows into the cache: one thread per 16-byte chunk.
__global__ void append_copy_kernel(const bf16* src, int64_t src_stride, bf16* cache,
                                   int num_kv_heads, int64_t max_tokens, int head_dim,
                                   const SeqBatch seqs) {
  const int chunks_per_head = head_dim / 8;
  const int chunks_per_token = num_kv_heads * chunks_per_head;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= static_cast<int64_t>(seqs.total_new) * chunks_per_token) return;
  const int t = static_cast<int>(idx / chunks_per_token);
  const int rem = static_cast<int>(idx % chunks_per_token);
  const int hh = rem / chunks_per_head, c = rem % chunks_per_head;
  const int s = seq_of_token(seqs.cu_new, seqs.batch, t);
  const int pos = seqs.past_len[s] + (t - seqs.cu_new[s]);
  const uint4 v = *reinterpret_cast<const uint4*>(src + static_cast<int64_t>(t) * src_stride +
                                                  hh * head_dim + c * 8);
  *reinterpret_cast<uint4*>(
      cache + ((static_cast<int64_t>(s) * num_kv_heads + hh) * max_tokens + pos) * head_dim +
      c * 8) = v;
}

void check_head_dim(int hd, const char* who) {
  if (hd != 64 && hd != 128)
    fail(ErrorKind::Unsupported,
         std::string(who) + ": head_dim " + std::to_string(hd) + " (supported: 64, 128)");
}

void check_aligned16(const void* p, int64_t stride, const char* who) {
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0 || stride % 8 != 0)
    fail(ErrorKind::Unsupported,
         std::string(who) + ": pointers must be 16-byte aligned and row strides multiples of 8");
}

template <int HD, int WARPS>
void launch_prefill_mma(const PrefillArgs& a, float scale_log2, cudaStream_t stream) {
  constexpr int BM = 16 * WARPS;
  const size_t smem = static_cast<size_t>(BM * HD + 4 * 64 * HD) * sizeof(bf16);
  allow_dynamic_smem<prefill_mma_kernel<HD, WARPS>>(smem);
  const dim3 grid(ceil_div(a.seqs.max_new, BM), a.num_heads, a.seqs.batch);
  prefill_mma_kernel<HD, WARPS><<<grid, WARPS * 32, smem, stream>>>(a, scale_log2);
  JB_LAUNCH("prefill_mma_kernel");
}

template <int HD>
void launch_prefill_simple(const PrefillArgs& a, float scale_log2, cudaStream_t stream) {
  const int64_t warps = static_cast<int64_t>(a.seqs.total_new) * a.num_heads;
  const unsigned blocks = static_cast<unsigned>((warps + 3) / 4);
  prefill_simple_kernel<HD><<<blocks, 128, 0, stream>>>(a, scale_log2);
  JB_LAUNCH("prefill_simple_kernel");
}

// Opts the instantiation into its dynamic shared memory (64 KB at hd 128: above the 48 KB
// default); also needed before the occupancy query.
template <int HD, int G>
void prepare_decode() {
  allow_dynamic_smem<decode_splitkv_kernel<HD, G>>(DecodeShape<HD, G>::kBytes);
}

template <int HD, int G>
void launch_decode(const DecodeArgs& a, DecodeWorkspace& ws, int splits, int chunk,
                   float scale_log2, cudaStream_t stream) {
  prepare_decode<HD, G>();
  const dim3 grid(splits, a.kv.num_kv_heads, a.kv.batch);
  float* part_acc = ws.partials.get();
  float* part_ml = part_acc + static_cast<size_t>(ws.batch) * ws.num_heads * ws.max_splits * HD;
  decode_splitkv_kernel<HD, G><<<grid, kDecThreads, DecodeShape<HD, G>::kBytes, stream>>>(
      a, part_acc, part_ml, ws.counters.get(), splits, chunk, scale_log2);
  JB_LAUNCH("decode_splitkv_kernel");
}

template <int HD>
void launch_decode_hd(const DecodeArgs& a, DecodeWorkspace& ws, int group, int splits, int chunk,
                      float scale_log2, cudaStream_t stream) {
  switch (group) {
    case 1:
      return launch_decode<HD, 1>(a, ws, splits, chunk, scale_log2, stream);
    case 2:
      return launch_decode<HD, 2>(a, ws, splits, chunk, scale_log2, stream);
    case 4:
      return launch_decode<HD, 4>(a, ws, splits, chunk, scale_log2, stream);
    case 8:
      return launch_decode<HD, 8>(a, ws, splits, chunk, scale_log2, stream);
    default:
      fail(ErrorKind::Unsupported,
           "attention_decode: H/Hkv = " + std::to_string(group) + " (supported: 1, 2, 4, 8)");
  }
}

}  // namespace

const char* prefill_variant_name(PrefillVariant v) {
  switch (v) {
    case PrefillVariant::Auto:
      return "auto";
    case PrefillVariant::Simple:
      return "simple";
    case PrefillVariant::Mma64:
      return "mma64";
    case PrefillVariant::Mma128:
      return "mma128";
  }
  return "?";
}

PrefillVariant parse_prefill_variant(const std::string& s) {
  if (s == "auto" || s.empty()) return PrefillVariant::Auto;
  if (s == "simple") return PrefillVariant::Simple;
  if (s == "mma64") return PrefillVariant::Mma64;
  if (s == "mma128") return PrefillVariant::Mma128;
  fail(ErrorKind::Usage, "unknown prefill variant '" + s + "' (auto, simple, mma64, mma128)");
}

std::string attention_prefill(const PrefillArgs& a, PrefillVariant v, cudaStream_t stream) {
  const int hd = a.kv.head_dim;
  check_head_dim(hd, "attention_prefill");
  if (a.num_heads <= 0 || a.kv.num_kv_heads <= 0 || a.num_heads % a.kv.num_kv_heads != 0)
    fail(ErrorKind::Shape, "attention_prefill: " + std::to_string(a.num_heads) +
                               " query heads for " + std::to_string(a.kv.num_kv_heads) +
                               " kv heads");
  if (a.seqs.batch != a.kv.batch)
    fail(ErrorKind::Shape, "attention_prefill: batch of the call differs from the cache's");
  if (a.seqs.total_new == 0) return "none";
  check_aligned16(a.q, a.q_stride, "attention_prefill q");
  check_aligned16(a.kv.k, 0, "attention_prefill k cache");
  check_aligned16(a.kv.v, 0, "attention_prefill v cache");
  const float scale_log2 = kLog2e / std::sqrt(static_cast<float>(hd));
  if (v == PrefillVariant::Auto) {
    // 128-row blocks halve the K/V shared-memory traffic per FLOP; with short sequences they
    // leave SMs idle, so use them only when there are enough of them to fill the GPU twice.
    const int64_t blocks128 =
        static_cast<int64_t>(ceil_div(a.seqs.max_new, 128)) * a.num_heads * a.seqs.batch;
    v = (hd == 128 && blocks128 >= 2 * sm_count()) ? PrefillVariant::Mma128 : PrefillVariant::Mma64;
  }
  switch (v) {
    case PrefillVariant::Simple:
      if (hd == 128)
        launch_prefill_simple<128>(a, scale_log2, stream);
      else
        launch_prefill_simple<64>(a, scale_log2, stream);
      break;
    case PrefillVariant::Mma128:
      if (hd == 128)
        launch_prefill_mma<128, 8>(a, scale_log2, stream);
      else
        launch_prefill_mma<64, 8>(a, scale_log2, stream);
      break;
    default:
      if (hd == 128)
        launch_prefill_mma<128, 4>(a, scale_log2, stream);
      else
        launch_prefill_mma<64, 4>(a, scale_log2, stream);
      v = PrefillVariant::Mma64;
      break;
  }
  return prefill_variant_name(v);
}

template <int HD, int G>
int decode_blocks_per_sm_of() {
  prepare_decode<HD, G>();
  return blocks_per_sm(decode_splitkv_kernel<HD, G>, kDecThreads, DecodeShape<HD, G>::kBytes);
}

// Decode blocks of this (head_dim, group) that one SM holds at once (occupancy API; at hd 128
// the 64 KB of pipeline buffers decide it: 3 blocks). Unsupported shapes give 1; the launch
// itself reports them.
int decode_blocks_per_sm(int head_dim, int group) {
  static const std::array<int, 8> table = [] {
    return std::array<int, 8>{decode_blocks_per_sm_of<64, 1>(),  decode_blocks_per_sm_of<64, 2>(),
                              decode_blocks_per_sm_of<64, 4>(),  decode_blocks_per_sm_of<64, 8>(),
                              decode_blocks_per_sm_of<128, 1>(), decode_blocks_per_sm_of<128, 2>(),
                              decode_blocks_per_sm_of<128, 4>(), decode_blocks_per_sm_of<128, 8>()};
  }();
  const int gi = group == 1 ? 0 : group == 2 ? 1 : group == 4 ? 2 : group == 8 ? 3 : -1;
  if (gi < 0 || (head_dim != 64 && head_dim != 128)) return 1;
  return table[(head_dim == 128 ? 4 : 0) + gi];
}

int decode_num_splits(int batch, int num_heads, int num_kv_heads, int head_dim, int max_kv_len) {
  const int slabs = std::max(1, batch * num_kv_heads);
  const int group = num_kv_heads > 0 ? num_heads / num_kv_heads : 1;
  // One whole wave: as many blocks as the GPU holds at once, never a partial second wave, which
  // would leave most SMs idle while it runs (measured on an H200 at hd 128, 32:8, B 1,
  // L 128K: the earlier "4 blocks per SM" rule made 66 x 8 = 528 blocks for 3 x 132 = 396
  // slots, two waves, 1.39 TB/s). At least 64 rows per split.
  const int capacity = decode_blocks_per_sm(head_dim, group) * sm_count();
  const int want = std::max(1, capacity / slabs);
  const int by_len = std::max(1, ceil_div(std::max(1, max_kv_len), 64));
  return std::min({want, by_len, kDecodeMaxSplits});
}

void decode_workspace_init(DecodeWorkspace& ws, int batch, int num_heads, int num_kv_heads,
                           int head_dim, int max_splits) {
  max_splits = std::max(1, std::min(max_splits, kDecodeMaxSplits));
  // Accumulators [batch, H, splits, hd], then (max, sum) [batch, H, splits, 2]: the accumulators
  // stay 16-byte aligned for the final merge's float4 reads.
  ws.partials.alloc(static_cast<size_t>(batch) * num_heads * max_splits * (head_dim + 2));
  ws.counters.alloc(static_cast<size_t>(batch) * num_kv_heads);
  JB_CUDA(cudaMemset(ws.counters.get(), 0, ws.counters.bytes()));
  ws.batch = batch;
  ws.num_heads = num_heads;
  ws.num_kv_heads = num_kv_heads;
  ws.head_dim = head_dim;
  ws.max_splits = max_splits;
}

DecodeSplit decode_split(int max_kv_len, int requested, int max_splits) {
  const int splits = std::max(1, std::min(requested, max_splits));
  const int chunk = ceil_div(ceil_div(max_kv_len, splits), 64) * 64;
  return {ceil_div(max_kv_len, chunk), chunk};
}

std::string attention_decode(const DecodeArgs& a, DecodeWorkspace& ws, cudaStream_t stream) {
  const int hd = a.kv.head_dim;
  check_head_dim(hd, "attention_decode");
  if (a.num_heads <= 0 || a.kv.num_kv_heads <= 0 || a.num_heads % a.kv.num_kv_heads != 0)
    fail(ErrorKind::Shape, "attention_decode: " + std::to_string(a.num_heads) +
                               " query heads for " + std::to_string(a.kv.num_kv_heads) +
                               " kv heads");
  if (a.kv.batch == 0) return "none";
  if (a.max_kv_len < 1 || a.max_kv_len > a.kv.max_tokens)
    fail(ErrorKind::Shape, "attention_decode: max_kv_len " + std::to_string(a.max_kv_len) +
                               " outside 1.." + std::to_string(a.kv.max_tokens));
  if (ws.batch < a.kv.batch || ws.num_heads != a.num_heads ||
      ws.num_kv_heads != a.kv.num_kv_heads || ws.head_dim != hd)
    fail(ErrorKind::Internal, "attention_decode: workspace made for another shape");
  check_aligned16(a.q, a.q_stride, "attention_decode q");
  // The kernel stores 4 dims (8 bytes) at a time; the check asks for the 16 bytes every other
  // buffer here needs (stricter than necessary, one rule for all).
  check_aligned16(a.out, a.out_stride, "attention_decode out");
  check_aligned16(a.kv.k, 0, "attention_decode k cache");
  check_aligned16(a.kv.v, 0, "attention_decode v cache");
  const int splits = a.num_splits > 0 ? a.num_splits
                                      : decode_num_splits(a.kv.batch, a.num_heads,
                                                          a.kv.num_kv_heads, hd, a.max_kv_len);
  const DecodeSplit sp = decode_split(a.max_kv_len, splits, ws.max_splits);
  const float scale_log2 = kLog2e / std::sqrt(static_cast<float>(hd));
  const int group = a.num_heads / a.kv.num_kv_heads;
  if (hd == 128)
    launch_decode_hd<128>(a, ws, group, sp.splits, sp.chunk, scale_log2, stream);
  else
    launch_decode_hd<64>(a, ws, group, sp.splits, sp.chunk, scale_log2, stream);
  return "splitkv";
}

void rope_inplace(bf16* x, int64_t stride, int num_heads, int head_dim, const SeqBatch& seqs,
                  double theta, cudaStream_t stream) {
  if (seqs.total_new == 0) return;
  if (head_dim % 2 != 0 || theta <= 0)
    fail(ErrorKind::Shape, "rope_inplace: odd head_dim or theta <= 0");
  const int64_t n = static_cast<int64_t>(seqs.total_new) * (head_dim / 2);
  const unsigned blocks = static_cast<unsigned>((n + 255) / 256);
  rope_kernel<<<blocks, 256, 0, stream>>>(x, stride, num_heads, head_dim, seqs, std::log(theta),
                                          InPlaceDst{x, stride, head_dim});
  JB_LAUNCH("rope_kernel");
}

void kv_append(const bf16* k_new, int64_t k_stride, const bf16* v_new, int64_t v_stride,
               const KvView& kv, const SeqBatch& seqs, double rope_theta, cudaStream_t stream) {
  if (seqs.total_new == 0) return;
  check_aligned16(k_new, k_stride, "kv_append k");
  check_aligned16(v_new, v_stride, "kv_append v");
  const int64_t chunks = static_cast<int64_t>(seqs.total_new) * kv.num_kv_heads * kv.head_dim / 8;
  const unsigned blocks = static_cast<unsigned>((chunks + 255) / 256);
  append_copy_kernel<<<blocks, 256, 0, stream>>>(v_new, v_stride, kv.v, kv.num_kv_heads,
                                                 kv.max_tokens, kv.head_dim, seqs);
  JB_LAUNCH("append_copy_kernel(v)");
  if (rope_theta > 0) {
    const int64_t n = static_cast<int64_t>(seqs.total_new) * (kv.head_dim / 2);
    rope_kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream>>>(
        k_new, k_stride, kv.num_kv_heads, kv.head_dim, seqs, std::log(rope_theta),
        CacheDst{kv.k, kv.num_kv_heads, kv.max_tokens, kv.head_dim});
    JB_LAUNCH("rope_kernel(k -> cache)");
  } else {
    append_copy_kernel<<<blocks, 256, 0, stream>>>(k_new, k_stride, kv.k, kv.num_kv_heads,
                                                   kv.max_tokens, kv.head_dim, seqs);
    JB_LAUNCH("append_copy_kernel(k)");
  }
}

}  // namespace jb::cuda
