// CUDA attention: prefill (FlashAttention-2 style with mma.sync, plus a simple fp32 variant),
// split-KV decode (fp32 FMA and tensor-core variants), RoPE and KV append. Interfaces and
// numerics: cuda/attention.hpp.
#include "cuda/attention.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>

#include "core/error.hpp"
#include "cuda/attention_internal.cuh"
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

using dev::pack_bf16x2;

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
// Prefill, mma variants. A block of WARPS warps owns WM * WARPS query rows of one head of one
// sequence; each warp owns WM = 16 * MT rows (MT m-tiles of 16). K/V tiles of 64 rows are staged
// in shared memory with cp.async double buffering. Shared memory rows are hd*2 bytes; 16-byte
// chunk c of row r is stored at chunk c ^ (r & 7) so that the 8 row addresses of an ldmatrix hit
// 8 different bank groups (no conflicts).
//
// Why MT = 2 (variant mma128r32, FlashAttention-2's own split: 4 warps x 32 rows): every K or V
// fragment a warp loads from shared memory feeds MT m-tiles, so the ldmatrix bytes per mma halve.
// Per warp and 64-key tile at hd 128: MT = 1 issues 64 ldmatrix.x4 (32 KB) for 128 mma; MT = 2
// issues 32 + 32 for K and V plus 16 for Q (reloaded from shared memory at every k-step: keeping
// it in registers would add 64 to the ~230 the O and S accumulators already take) for 256 mma.
// An SM reads 128 bytes of shared memory per clock, so MT = 1 needs 4 clocks of ldmatrix per
// mma.m16n8k16 against the tensor pipe's ~4-6, and MT = 2 needs 2.5.
//
// Fragment layouts (PTX ISA, mma.m16n8k16, g = lane/4, t = lane%4):
//   A regs a0..a3: (row g, cols 2t..2t+1), (row g+8, same), (row g, cols 2t+8..), (row g+8, ..)
//   B regs b0, b1: (k rows 2t..2t+1, col g), (k rows 2t+8.., col g)
//   C regs c0..c3: (row g, cols 2t, 2t+1), (row g+8, cols 2t, 2t+1)
// so the S accumulators of key tiles 2kk and 2kk+1 are exactly the A fragment of P for the
// k-step kk of P*V (no shuffles).
//
// Softmax in the log2 domain with the scale folded in: the running max m is kept scaled
// (m = max(s) * scale_log2) and p = 2^(s * scale_log2 - m) is one FFMA and one MUFU.EX2
// (ex2.approx.ftz: exp2f adds a denormal fix-up of three instructions per element, for results
// below 2^-126 whose weight beside the row max's p = 1 is nil). A row's alpha = 2^(m_old -
// m_new) is exactly 1 while its max stands, and multiplying by 1 changes no bits, so the O
// rescale (2 * MT * hd / 4 FMULs per thread and tile) runs only when some row of the warp moved
// its max: the same result, cheaper.

template <int CH>
__device__ __forceinline__ int swz(int row, int chunk) {
  return row * CH + (chunk ^ (row & 7));
}

template <int HD, int WARPS, int MT>
__global__ void __launch_bounds__(WARPS * 32, MT == 2 ? 2 : 1)
    prefill_mma_kernel(const PrefillArgs a, const float scale_log2) {
  constexpr int WM = 16 * MT;  // query rows per warp
  constexpr int BM = WM * WARPS;
  constexpr int BN = attention_detail::kPrefillKeys;
  constexpr int CH = HD / 8;  // 16-byte chunks per row
  constexpr int THREADS = WARPS * 32;
  constexpr bool kQInRegs = MT == 1;  // MT = 2 reloads Q fragments per k-step (see above)
  extern __shared__ __align__(128) unsigned char smem_raw[];
  bf16* sQ = reinterpret_cast<bf16*>(smem_raw);
  bf16* sK = sQ + BM * HD;      // [2][BN][HD]
  bf16* sV = sK + 2 * BN * HD;  // [2][BN][HD]

  attention_detail::PrefillBlock blk;
  if (!attention_detail::prefill_block<HD>(a, BM, BN, blk)) return;
  const int h = blockIdx.y;
  const int m0 = blk.m0, q_begin = blk.q_begin, new_len = blk.new_len, past = blk.past;
  const int kv_len = blk.kv_len, n_tiles = blk.n_tiles;
  const bf16* kbase = blk.k;
  const bf16* vbase = blk.v;

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

  // K/V copies: thread tid moves chunk tid % CH of rows tid / CH + k * kCopyRows of each tile.
  // kCopyRows is a multiple of 8, so all of a thread's rows have the same r & 7 and its swizzled
  // chunk is one fixed offset: a copy is a constant offset and a bounds test, not a division and
  // a swizzle per chunk (which also kept ptxas spilling at MT = 2, hd 128).
  constexpr int kCopyRows = THREADS / CH;
  static_assert(kCopyRows % 8 == 0 && BN % kCopyRows == 0, "copy rows keep one swizzle");
  const int cp_row = tid / CH;
  const int cp_src = cp_row * HD + (tid % CH) * 8;
  const int cp_dst = swz<CH>(cp_row, tid % CH) * 8;
  auto load_kv = [&](int tile, int buf) {
    const int n0 = tile * BN;
    const bf16* ks = kbase + static_cast<int64_t>(n0) * HD + cp_src;
    const bf16* vs = vbase + static_cast<int64_t>(n0) * HD + cp_src;
    bf16* dk = sK + buf * BN * HD + cp_dst;
    bf16* dv = sV + buf * BN * HD + cp_dst;
#pragma unroll
    for (int k = 0; k < BN / kCopyRows; ++k) {
      const bool valid = n0 + cp_row + k * kCopyRows < kv_len;
      const int off = k * kCopyRows * HD;
      cp_async16(smem_addr(dk + off), valid ? ks + off : kbase, valid);
      cp_async16(smem_addr(dv + off), valid ? vs + off : vbase, valid);
    }
    cp_async_commit();
  };

  // ldmatrix address of this lane's row and chunk pair for Q's A fragment of m-tile mt, k-step 0
  // (k-step kk: chunk + 2 kk, see swz).
  auto q_frag = [&](int mt, int kk, uint32_t(&qa)[4]) {
    const int r = warp * WM + mt * 16 + (lane & 15);
    const int c = kk * 2 + (lane >> 4);
    ldmatrix_x4(smem_addr(sQ + swz<CH>(r, c) * 8), qa[0], qa[1], qa[2], qa[3]);
  };

  uint32_t qf[kQInRegs ? HD / 16 : 1][4];
  float o[MT][HD / 8][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int d = 0; d < HD / 8; ++d) o[mt][d][0] = o[mt][d][1] = o[mt][d][2] = o[mt][d][3] = 0.f;
  float m_run[MT][2];  // running row max, scaled into the log2 domain
  float l_run[MT][2];  // per-thread partial row sums (reduced over the quad at the end)
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
    m_run[mt][0] = m_run[mt][1] = -INFINITY, l_run[mt][0] = l_run[mt][1] = 0.f;
  // Absolute position of row g of m-tile 0 (m-tile mt adds 16 mt, row g + 8 adds 8).
  const int qpos0 = past + m0 + warp * WM + (lane >> 2);

  load_kv(0, 0);
  for (int it = 0; it < n_tiles; ++it) {
    if (it + 1 < n_tiles) {
      load_kv(it + 1, (it + 1) & 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (kQInRegs && it == 0) {
#pragma unroll
      for (int kk = 0; kk < HD / 16; ++kk) q_frag(0, kk, qf[kQInRegs ? kk : 0]);
    }
    // A warp whose rows all precede the tile's first key sees none of it (a causal block's last
    // tile for its first warps): P would be all zero, m and l unchanged, O += 0 * V. It skips
    // the tile, which also keeps a non-finite V in masked rows out of O.
    const int n0 = it * BN;
    if (n0 <= qpos0 + WM - 1 - (lane >> 2)) {
      const bf16* tK = sK + (it & 1) * BN * HD;
      const bf16* tV = sV + (it & 1) * BN * HD;

      // S = Q K^T for this warp's WM rows and the tile's 64 keys (raw scores).
      float sc[MT][BN / 8][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int j = 0; j < BN / 8; ++j)
          sc[mt][j][0] = sc[mt][j][1] = sc[mt][j][2] = sc[mt][j][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < HD / 16; ++kk) {
        uint32_t qa[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          if constexpr (kQInRegs) {
#pragma unroll
            for (int i = 0; i < 4; ++i) qa[mt][i] = qf[kQInRegs ? kk : 0][i];
          } else {
            q_frag(mt, kk, qa[mt]);
          }
        }
#pragma unroll
        for (int jp = 0; jp < BN / 16; ++jp) {
          const int r = jp * 16 + (lane & 7) + ((lane >> 4) << 3);
          const int c = kk * 2 + ((lane >> 3) & 1);
          uint32_t b0, b1, b2, b3;
          ldmatrix_x4(smem_addr(tK + swz<CH>(r, c) * 8), b0, b1, b2, b3);
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            dev::mma_bf16_16816(sc[mt][2 * jp], qa[mt], b0, b1);
            dev::mma_bf16_16816(sc[mt][2 * jp + 1], qa[mt], b2, b3);
          }
        }
      }

      // Mask only tiles that cross the diagonal or the cache end.
      if ((n0 + BN - 1 > past + m0) || (n0 + BN > kv_len)) {
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
          attention_detail::mask_scores(sc[mt], n0, qpos0 + mt * 16, kv_len, lane);
      }

      // Online softmax (fp32): new running max, P, the running sum; alpha per row.
      float alpha[MT][2];
      bool moved = false;
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
        attention_detail::softmax_scores(sc[mt], scale_log2, m_run[mt], l_run[mt], alpha[mt],
                                         moved);
      if (__any_sync(kFullMask, moved)) {
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) attention_detail::rescale_rows<HD>(o[mt], alpha[mt]);
      }

      // O += P V, P rounded to bf16 (the A operand), V via ldmatrix.trans (B is [key][hd]).
#pragma unroll
      for (int kk = 0; kk < BN / 16; ++kk) {
        uint32_t pa[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) attention_detail::p_fragment(sc[mt], kk, pa[mt]);
#pragma unroll
        for (int dp = 0; dp < HD / 16; ++dp) {
          const int r = kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3);
          const int c = dp * 2 + (lane >> 4);
          uint32_t b0, b1, b2, b3;
          ldmatrix_x4_trans(smem_addr(tV + swz<CH>(r, c) * 8), b0, b1, b2, b3);
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            dev::mma_bf16_16816(o[mt][2 * dp], pa[mt], b0, b1);
            dev::mma_bf16_16816(o[mt][2 * dp + 1], pa[mt], b2, b3);
          }
        }
      }
    }
    __syncthreads();  // the next iteration's copy overwrites this buffer
  }

#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
    attention_detail::store_rows<HD>(a, o[mt], l_run[mt], q_begin,
                                     m0 + warp * WM + mt * 16 + (lane >> 2), new_len, h, lane);
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
// Decode, split-KV, tensor-core variant ("mma"). Same blocks (split, kv head, sequence), partial
// records, last-block merge protocol and results contract as decode_splitkv_kernel above; the
// dot products run on tensor cores. Why: the fma kernel issues about one warp instruction per
// 4 bytes of K/V (Nsight Compute, B = 1 L = 8K on an H200: 8.2 M warp-instructions for 33.5 MB,
// an issue floor of ~7.9 us by itself), while one mma.m16n8k16 here consumes a 16 x 16 bf16
// slab of K or V (512 bytes) for all G query heads of the group.
//
// Pipeline: tiles of kMmaDecTile = 64 K rows + 64 V rows, kMmaDecStages = 4 deep, cp.async.
//   hd 128: 16 KB + 16 KB per stage, 128 KB of buffers: one block per SM, three tiles (96 KB)
//   in flight while one is computed. An H200 streams ~4.2 TB/s with ~1 us of loaded DRAM
//   latency: ~4 MB in flight over 132 SMs, ~32 KB per SM (Little's law); 96 KB is three times
//   that. A tile takes ~1 us to arrive at an SM's share of the bandwidth and ~0.3 us of issue
//   (4 warps x ~150 instructions, mma chains of hd/16 steps), so the loads stay ahead.
//   hd 64: 8 KB + 8 KB per stage, 64 KB: three blocks per SM.
// Rows are stored with the prefill kernel's swizzle (16-byte chunk c of row r at c ^ (r & 7)),
// so cp.async writes and ldmatrix reads are free of bank conflicts; rows past the split's end
// are zero-filled (cp_async16 with valid = false: no NaN from unused cache rows) and their
// scores masked to -inf.
//
// Warp w owns keys 16w .. 16w+15 of every tile, with its own online-softmax state (m, l, O):
//   S (16 x 16 keys) = Q (16 x hd) K^T    hd/16 k-steps x 2 n-tiles: hd/8 mma (K: ldmatrix)
//   P = 2^(S * scale_log2 - m) in fp32, rounded to bf16 as the A operand of P V
//   O (16 x hd) += P (16 x 16 keys) V       hd/8 n-tiles, one k-step: hd/8 mma (V: ldmatrix.trans)
// Rows g < G of Q are the group's query heads h0 + g, the bf16 inputs as given (the 1/sqrt(hd)
// scale multiplies the fp32 scores instead); rows G .. 15 are zero. With the fragment layouts
// above, lane (g = lane/4, t = lane%4) holds row g of S for keys 2t, 2t+1 (n-tile 0: c0, c1) and
// 8+2t, 9+2t (n-tile 1): exactly the a0 and a2 registers of P's A fragment. a1 and a3 (rows
// g+8 >= 8 >= G) are zero, so O's c2, c3 stay zero and are never read; O's c0, c1 of n-tile d
// are head g, dims 8d + 2t and 8d + 2t + 1.
//
// Instruction budget per warp and tile at hd 128 (the warp's 16 keys: 8 KB of K and V): 16 + 16
// mma, 8 + 8 ldmatrix.x4, 16 cp.async with their addresses, ~35 softmax instructions (the O
// rescale is skipped while no row max moved): ~130 warp-instructions, ~16 per KB streamed
// against ~250 per KB for the fma kernel.
//
// End of the block: the four warps' states are merged in shared memory in warp order (fixed:
// the same bits every run); a sequence with a single split writes its output right there (no
// partial, no counter: the merge below would multiply by exactly 1), otherwise the block writes
// its partial record and the last block of the (sequence, kv head) merges all of them.
constexpr int kMmaDecTile = 64;
constexpr int kMmaDecStages = 4;
constexpr int kMmaDecWarps = 4;
constexpr int kMmaDecThreads = kMmaDecWarps * 32;
constexpr int kMmaDecWarpKeys = kMmaDecTile / kMmaDecWarps;  // 16 = one k-step of P V
// Partial records whose loads one round of the final merge keeps in flight (per thread: 16
// float4 + 16 float2 = 96 registers, below the main loop's needs at hd 128).
constexpr int kMergeBatch = 16;

template <int HD, int G>
struct MmaDecodeShape {
  static_assert(kMmaDecWarpKeys == 16, "a warp's keys must be one k-step of the P V mma");
  static_assert(G >= 1 && G <= 8, "the group's query heads are rows 0..7 of the mma");
  static constexpr int CH = HD / 8;         // 16-byte chunks per row
  static constexpr int ROW_BYTES = HD * 2;  // one K or V row in shared memory
  static constexpr int TILE_BYTES = kMmaDecTile * ROW_BYTES;
  static constexpr int STAGE_BYTES = 2 * TILE_BYTES;  // K tile, then V tile
  // Copies: thread tid moves chunk tid % CH of rows tid / CH + i * ROW_STEP, i < COPIES, of the
  // K tile and the same of the V tile. ROW_STEP is a multiple of 8, so all of a thread's rows
  // have the same r & 7: its swizzled chunk is one shared-memory column, a fixed offset.
  static constexpr int ROW_STEP = kMmaDecThreads / CH;  // 8 at hd 128, 16 at hd 64
  static constexpr int COPIES = kMmaDecTile / ROW_STEP;
  static_assert(ROW_STEP % 8 == 0 && kMmaDecTile % ROW_STEP == 0, "copy assignment");
  static constexpr size_t kPipe = size_t(kMmaDecStages) * STAGE_BYTES;
  // Warp merge: O [warp][G][HD], then m and l [warp][G] (reuses the pipeline buffers).
  static constexpr size_t kMerge = size_t(kMmaDecWarps) * G * (HD + 2) * sizeof(float);
  static constexpr size_t kBytes = std::max(kPipe, kMerge);
};

// Q's A fragments for every k-step kk: qa[kk][0] = a0 = head g, dims 16kk + 2t, +1 and
// qa[kk][2] = a2 = dims 16kk + 8 + 2t, +1 (32-bit loads, lower dim in the low half as in
// memory); zero for rows g >= G. a1 and a3 (rows g + 8) are zero; they are kept as registers of
// the tuple (the mma reads A from four consecutive registers; zeros passed at each call made
// ptxas rebuild the tuple with moves at every k-step).
template <int HD, int G>
__device__ __forceinline__ void mma_dec_load_q(const bf16* q_group, int lane,
                                               uint32_t (&qa)[HD / 16][4]) {
  const int g = lane >> 2, t = lane & 3;
  const uint32_t* row = reinterpret_cast<const uint32_t*>(q_group + g * HD + 2 * t);
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk) {
    qa[kk][0] = g < G ? row[kk * 8] : 0u;
    qa[kk][1] = 0u;
    qa[kk][2] = g < G ? row[kk * 8 + 4] : 0u;
    qa[kk][3] = 0u;
  }
}

// One warp, one tile: S for its 16 keys (absolute rows key0 .. key0 + 15), online softmax of
// row g, O += P V. k_lane / v_lane: this lane's ldmatrix row address inside a tile with the
// chunk pair of k-step (n-tile pair) 0; the pair kk is at (lane offset) ^ (kk << 5): the 16-byte
// chunk 2kk + b of row r sits at (2kk + b) ^ (r & 7) = 2kk ^ (b ^ (r & 7)), and the row offset
// (a multiple of 128 bytes) has none of the bits the XOR touches.
template <int HD>
__device__ __forceinline__ void mma_dec_tile(uint32_t k_tile, uint32_t v_tile, uint32_t k_lane,
                                             uint32_t v_lane, const uint32_t (&qa)[HD / 16][4],
                                             int key0, int end, float scale_log2, int t,
                                             float& m_run, float& l_run, float (&o)[HD / 8][4]) {
  float sc[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk) {
    uint32_t b0, b1, b2, b3;  // keys 0-7: b0, b1 (dims 16kk.., 16kk+8..); keys 8-15: b2, b3
    ldmatrix_x4(k_tile + (k_lane ^ (kk << 5)), b0, b1, b2, b3);
    dev::mma_bf16_16816(sc[0], qa[kk], b0, b1);
    dev::mma_bf16_16816(sc[1], qa[kk], b2, b3);
  }
  // Row g: keys key0 + 2t, +1 (n-tile 0) and key0 + 8 + 2t, +1 (n-tile 1), in the log2 domain.
  float x[4] = {sc[0][0] * scale_log2, sc[0][1] * scale_log2, sc[1][0] * scale_log2,
                sc[1][1] * scale_log2};
  if (key0 + kMmaDecWarpKeys > end) {
#pragma unroll
    for (int i = 0; i < 4; ++i)
      if (key0 + (i >> 1) * 8 + 2 * t + (i & 1) >= end) x[i] = -INFINITY;
  }
  float mx = fmaxf(m_run, fmaxf(fmaxf(x[0], x[1]), fmaxf(x[2], x[3])));
  mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, 1));  // the quad holds row g's 16 keys
  mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, 2));
  // ex2.approx.ftz, one MUFU op (exp2f adds three instructions for results below 2^-126, whose
  // weight next to the row max's p = 1 is nil); 2^-inf = +0.
  const float m_use = mx == -INFINITY ? 0.f : mx;  // nothing visible yet: p = alpha = 0
  const float alpha = dev::ex2_approx(m_run - m_use);
  m_run = mx;
  float p[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) p[i] = dev::ex2_approx(x[i] - m_use);
  l_run = l_run * alpha + ((p[0] + p[1]) + (p[2] + p[3]));  // this lane's keys; quad sum at the end
  // alpha is exactly 1 while row g's max stands (the usual case after the first tiles), and a
  // product with 1 changes no bits: skipping the rescale then gives the same result, cheaper.
  if (__any_sync(kFullMask, alpha != 1.f)) {
#pragma unroll
    for (int d = 0; d < HD / 8; ++d) {
      o[d][0] *= alpha;
      o[d][1] *= alpha;
    }
  }
  const uint32_t pa0 = pack_bf16x2(p[0], p[1]);  // A fragment a0: row g, keys 2t, 2t+1
  const uint32_t pa2 = pack_bf16x2(p[2], p[3]);  // a2: row g, keys 8+2t, 9+2t
#pragma unroll
  for (int dp = 0; dp < HD / 16; ++dp) {
    uint32_t b0, b1, b2, b3;  // dims 16dp..+7: b0, b1 (keys 0-7, 8-15); dims 16dp+8..: b2, b3
    ldmatrix_x4_trans(v_tile + (v_lane ^ (dp << 5)), b0, b1, b2, b3);
    dev::mma_bf16_16816(o[2 * dp], pa0, 0u, pa2, 0u, b0, b1);
    dev::mma_bf16_16816(o[2 * dp + 1], pa0, 0u, pa2, 0u, b2, b3);
  }
}

// out[0..3] = A / L rounded to bf16 once (the fma kernel's final rounding).
__device__ __forceinline__ void store_out4(bf16* dst, const float4& A, float L) {
  uint2 packed;
  packed.x = pack_bf16x2(A.x / L, A.y / L);
  packed.y = pack_bf16x2(A.z / L, A.w / L);
  *reinterpret_cast<uint2*>(dst) = packed;
}

__device__ __forceinline__ void fma4(float w, const float4& x, float4& A) {
  A.x = fmaf(w, x.x, A.x);
  A.y = fmaf(w, x.y, A.y);
  A.z = fmaf(w, x.z, A.z);
  A.w = fmaf(w, x.w, A.w);
}

// Weight of a state with max m when the common max is M (an empty state, m = -inf, weighs 0).
__device__ __forceinline__ float merge_weight(float m, float M) {
  return m == -INFINITY ? 0.f : exp2f(m - M);
}

// Final merge of one (query head, 4 dims) column over its n_valid partial records, in split
// order: acc[sp * acc_stride] (float4) and ml[sp] = (max, sum). kMergeBatch records per round,
// all their loads issued before the first use: up to 16 splits cost one L2 round trip (the
// (max, sum) pairs travel with the accumulators instead of in a round of their own). Between
// rounds the running (A, L) moves to the new max (a factor of exactly 1 when it did not move).
__device__ __forceinline__ void merge_split_column(const float4* acc, int acc_stride,
                                                   const float2* ml, int n_valid, float4& A,
                                                   float& L) {
  float M = -INFINITY;
  A = make_float4(0.f, 0.f, 0.f, 0.f);
  L = 0.f;
  for (int sp0 = 0; sp0 < n_valid; sp0 += kMergeBatch) {
    float2 mk[kMergeBatch];
    float4 xk[kMergeBatch];
#pragma unroll
    for (int k = 0; k < kMergeBatch; ++k) {
      const bool ok = sp0 + k < n_valid;
      mk[k] = ok ? __ldcg(ml + sp0 + k) : make_float2(-INFINITY, 0.f);
      xk[k] = ok ? __ldcg(acc + static_cast<int64_t>(sp0 + k) * acc_stride)
                 : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    float M_new = M;
#pragma unroll
    for (int k = 0; k < kMergeBatch; ++k) M_new = fmaxf(M_new, mk[k].x);
    const float r = merge_weight(M, M_new);
    A = make_float4(A.x * r, A.y * r, A.z * r, A.w * r);
    L *= r;
#pragma unroll
    for (int k = 0; k < kMergeBatch; ++k) {
      const float w = merge_weight(mk[k].x, M_new);  // 0 for the padding past n_valid
      fma4(w, xk[k], A);
      L = fmaf(w, mk[k].y, L);
    }
    M = M_new;
  }
}

template <int HD, int G>
__global__ void __launch_bounds__(kMmaDecThreads, 1)
    decode_splitkv_mma_kernel(const DecodeArgs a, float* __restrict__ part_acc,
                              float* __restrict__ part_ml, unsigned* __restrict__ counters,
                              const int num_splits, const int chunk, const float scale_log2) {
  using Shape = MmaDecodeShape<HD, G>;
  extern __shared__ __align__(128) unsigned char dsm[];

  const int split = blockIdx.x, kvh = blockIdx.y, s = blockIdx.z;
  const int len = a.kv_len[s];
  const int start = split * chunk;
  if (start >= len) return;  // this sequence is shorter; its merge counts only valid splits
  const int end = min(len, start + chunk);
  const int n_valid = (len + chunk - 1) / chunk;
  const int n_tiles = (end - start + kMmaDecTile - 1) / kMmaDecTile;
  const int Hkv = a.kv.num_kv_heads;
  const int h0 = kvh * G;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int64_t slab = (static_cast<int64_t>(s) * Hkv + kvh) * a.kv.max_tokens * HD;

  // Copies (MmaDecodeShape): chunk cc of rows r0 + i * ROW_STEP; sources from row `start`
  // (a valid address even for the zero-filled copies, which read nothing).
  const int cc = tid % Shape::CH, r0 = tid / Shape::CH;
  const uint32_t pipe = smem_addr(dsm);
  const uint32_t copy_off = (r0 * Shape::CH + (cc ^ (r0 & 7))) * 16;
  const bf16* k_src = a.kv.k + slab + static_cast<int64_t>(start) * HD + cc * 8;
  const bf16* v_src = a.kv.v + slab + static_cast<int64_t>(start) * HD + cc * 8;
  // Tiles inside the split (all but maybe the last) take the unchecked path: one pointer per
  // tensor and constant offsets, ~1 instruction per copy instead of ~9 with a per-row check.
  auto issue = [&](int tile) {
    const uint32_t k_dst = pipe + (tile % kMmaDecStages) * Shape::STAGE_BYTES + copy_off;
    const int row = tile * kMmaDecTile + r0;  // this thread's first row, relative to start
    constexpr int kStep = Shape::ROW_STEP * HD;
    constexpr int kDstStep = Shape::ROW_STEP * Shape::ROW_BYTES;
    if (start + (tile + 1) * kMmaDecTile <= end) {
      const bf16* k_row = k_src + static_cast<int64_t>(row) * HD;
      const bf16* v_row = v_src + static_cast<int64_t>(row) * HD;
#pragma unroll
      for (int i = 0; i < Shape::COPIES; ++i) {
        cp_async16(k_dst + i * kDstStep, k_row + i * kStep, true);
        cp_async16(k_dst + Shape::TILE_BYTES + i * kDstStep, v_row + i * kStep, true);
      }
      return;
    }
#pragma unroll
    for (int i = 0; i < Shape::COPIES; ++i) {
      const int r = row + i * Shape::ROW_STEP;
      const bool ok = start + r < end;
      const int64_t off = ok ? static_cast<int64_t>(r) * HD : 0;
      cp_async16(k_dst + i * kDstStep, k_src + off, ok);
      cp_async16(k_dst + Shape::TILE_BYTES + i * kDstStep, v_src + off, ok);
    }
  };
#pragma unroll
  for (int tile = 0; tile < kMmaDecStages - 1; ++tile) {
    if (tile < n_tiles) issue(tile);
    cp_async_commit();  // empty groups keep the wait_group count uniform
  }

  uint32_t qa[HD / 16][4];
  mma_dec_load_q<HD, G>(a.q + static_cast<int64_t>(s) * a.q_stride + h0 * HD, lane, qa);
  // ldmatrix rows (see mma_dec_tile). K, non-transposed x4: lanes 0-7 / 8-15 / 16-23 / 24-31
  // address keys 0-7 chunk 0 / keys 0-7 chunk 1 / keys 8-15 chunk 0 / keys 8-15 chunk 1 of the
  // warp's 16 keys and the k-step's chunk pair. V, transposed x4: keys 0-7 chunk 0 / keys 8-15
  // chunk 0 / keys 0-7 chunk 1 / keys 8-15 chunk 1 (then b0, b1 and b2, b3 are the B fragments
  // of the n-tile pair's two 8-dim tiles).
  const int key_row = warp * kMmaDecWarpKeys + (lane & 7);
  const uint32_t k_lane =
      (key_row + ((lane >> 4) << 3)) * Shape::ROW_BYTES + ((((lane >> 3) & 1) ^ (lane & 7)) << 4);
  const uint32_t v_lane =
      (key_row + (((lane >> 3) & 1) << 3)) * Shape::ROW_BYTES + (((lane >> 4) ^ (lane & 7)) << 4);

  float m_run = -INFINITY, l_run = 0.f;
  float o[HD / 8][4];
#pragma unroll
  for (int d = 0; d < HD / 8; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.f;
  for (int tile = 0; tile < n_tiles; ++tile) {
    cp_async_wait<kMmaDecStages - 2>();  // tile `tile` has landed (this thread's copies)
    __syncthreads();                     // ... everyone's; and stage (tile-1) % S is free again
    if (tile + kMmaDecStages - 1 < n_tiles) issue(tile + kMmaDecStages - 1);
    cp_async_commit();
    const uint32_t k_tile = pipe + (tile % kMmaDecStages) * Shape::STAGE_BYTES;
    mma_dec_tile<HD>(k_tile, k_tile + Shape::TILE_BYTES, k_lane, v_lane, qa,
                     start + tile * kMmaDecTile + warp * kMmaDecWarpKeys, end, scale_log2, lane & 3,
                     m_run, l_run, o);
  }
  cp_async_wait<0>();
  __syncthreads();  // the pipeline buffers are reused below

  // Warp states -> shared memory: lanes of row g < G (the quad's l partial sums reduced first).
  float* sm_acc = reinterpret_cast<float*>(dsm);  // [warp][G][HD]
  float* sm_m = sm_acc + kMmaDecWarps * G * HD;   // [warp][G]
  float* sm_l = sm_m + kMmaDecWarps * G;          // [warp][G]
  l_run += __shfl_xor_sync(kFullMask, l_run, 1);
  l_run += __shfl_xor_sync(kFullMask, l_run, 2);
  {
    const int g = lane >> 2, t = lane & 3;
    if (g < G) {
      float* dst = sm_acc + (warp * G + g) * HD + 2 * t;
#pragma unroll
      for (int d = 0; d < HD / 8; ++d)
        *reinterpret_cast<float2*>(dst + 8 * d) = make_float2(o[d][0], o[d][1]);
      if (t == 0) {
        sm_m[warp * G + g] = m_run;
        sm_l[warp * G + g] = l_run;
      }
    }
  }
  __syncthreads();

  // Merge the warps (order 0..3), 4 dims per thread: the output, or this split's record.
  const int64_t rec0 = static_cast<int64_t>(s) * a.num_heads + h0;  // record row of head h0
  for (int v = tid; v < G * HD / 4; v += kMmaDecThreads) {
    const int g = v / (HD / 4), d4 = v % (HD / 4);
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kMmaDecWarps; ++w) M = fmaxf(M, sm_m[w * G + g]);
    float4 A = make_float4(0.f, 0.f, 0.f, 0.f);
    float L = 0.f;
#pragma unroll
    for (int w = 0; w < kMmaDecWarps; ++w) {
      const float wt = merge_weight(sm_m[w * G + g], M);
      fma4(wt, *reinterpret_cast<const float4*>(sm_acc + (w * G + g) * HD + 4 * d4), A);
      L = fmaf(wt, sm_l[w * G + g], L);
    }
    if (n_valid == 1) {
      store_out4(a.out + static_cast<int64_t>(s) * a.out_stride + (h0 + g) * HD + 4 * d4, A, L);
    } else {
      const int64_t rec = (rec0 + g) * num_splits + split;
      *reinterpret_cast<float4*>(part_acc + rec * HD + 4 * d4) = A;
      if (d4 == 0) *reinterpret_cast<float2*>(part_ml + rec * 2) = make_float2(M, L);
    }
  }
  if (n_valid == 1) return;  // the only split of its sequence: no partials, counter untouched

  // The last block of this (sequence, kv head) merges: threadFenceReduction pattern.
  __shared__ bool is_last;
  __threadfence();
  __syncthreads();
  if (tid == 0) {
    const unsigned prev = atomicAdd(&counters[s * Hkv + kvh], 1u);
    is_last = prev == static_cast<unsigned>(n_valid - 1);
  }
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  for (int v = tid; v < G * HD / 4; v += kMmaDecThreads) {
    const int g = v / (HD / 4), d4 = v % (HD / 4);
    float4 A;
    float L;
    merge_split_column(
        reinterpret_cast<const float4*>(part_acc + (rec0 + g) * num_splits * HD) + d4, HD / 4,
        reinterpret_cast<const float2*>(part_ml) + (rec0 + g) * num_splits, n_valid, A, L);
    store_out4(a.out + static_cast<int64_t>(s) * a.out_stride + (h0 + g) * HD + 4 * d4, A, L);
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

template <int HD, int WARPS, int MT>
void launch_prefill_mma(const PrefillArgs& a, float scale_log2, cudaStream_t stream) {
  constexpr int BM = 16 * MT * WARPS;
  const size_t smem = static_cast<size_t>(BM * HD + 4 * 64 * HD) * sizeof(bf16);
  allow_dynamic_smem<prefill_mma_kernel<HD, WARPS, MT>>(smem);
  const dim3 grid(ceil_div(a.seqs.max_new, BM), a.num_heads, a.seqs.batch);
  prefill_mma_kernel<HD, WARPS, MT><<<grid, WARPS * 32, smem, stream>>>(a, scale_log2);
  JB_LAUNCH("prefill_mma_kernel");
}

template <int HD>
void launch_prefill_simple(const PrefillArgs& a, float scale_log2, cudaStream_t stream) {
  const int64_t warps = static_cast<int64_t>(a.seqs.total_new) * a.num_heads;
  const unsigned blocks = static_cast<unsigned>((warps + 3) / 4);
  prefill_simple_kernel<HD><<<blocks, 128, 0, stream>>>(a, scale_log2);
  JB_LAUNCH("prefill_simple_kernel");
}

// The kernel of each decode variant with its block size and dynamic shared memory (fma: 64 KB
// at hd 128, 2-3 blocks per SM; mma: 128 KB at hd 128, one block per SM, 64 KB at hd 64).
template <int HD, int G, DecodeVariant V>
struct DecodeKernel {
  static constexpr bool kMma = V == DecodeVariant::Mma;
  static constexpr int kThreads = kMma ? kMmaDecThreads : kDecThreads;
  static constexpr size_t kSmem = kMma ? MmaDecodeShape<HD, G>::kBytes : DecodeShape<HD, G>::kBytes;
  static constexpr auto fn() {
    if constexpr (kMma)
      return decode_splitkv_mma_kernel<HD, G>;
    else
      return decode_splitkv_kernel<HD, G>;
  }
  // Opts the instantiation into its dynamic shared memory (above the 48 KB default); also
  // needed before the occupancy query.
  static void prepare() { allow_dynamic_smem<fn()>(kSmem); }
  static int blocks_per_sm() {
    prepare();
    return jb::cuda::blocks_per_sm(fn(), kThreads, kSmem);
  }
  static void launch(const DecodeArgs& a, DecodeWorkspace& ws, int splits, int chunk,
                     float scale_log2, cudaStream_t stream) {
    prepare();
    const dim3 grid(splits, a.kv.num_kv_heads, a.kv.batch);
    float* part_acc = ws.partials.get();
    float* part_ml = part_acc + static_cast<size_t>(ws.batch) * ws.num_heads * ws.max_splits * HD;
    fn()<<<grid, kThreads, kSmem, stream>>>(a, part_acc, part_ml, ws.counters.get(), splits, chunk,
                                            scale_log2);
    if constexpr (kMma)
      JB_LAUNCH("decode_splitkv_mma_kernel");
    else
      JB_LAUNCH("decode_splitkv_kernel");
  }
};

// `v` is already resolved (Fma or Mma).
template <int HD, int G>
void launch_decode_variant(const DecodeArgs& a, DecodeWorkspace& ws, DecodeVariant v, int splits,
                           int chunk, float scale_log2, cudaStream_t stream) {
  if (v == DecodeVariant::Mma)
    DecodeKernel<HD, G, DecodeVariant::Mma>::launch(a, ws, splits, chunk, scale_log2, stream);
  else
    DecodeKernel<HD, G, DecodeVariant::Fma>::launch(a, ws, splits, chunk, scale_log2, stream);
}

template <int HD>
void launch_decode_hd(const DecodeArgs& a, DecodeWorkspace& ws, DecodeVariant v, int group,
                      int splits, int chunk, float scale_log2, cudaStream_t stream) {
  switch (group) {
    case 1:
      return launch_decode_variant<HD, 1>(a, ws, v, splits, chunk, scale_log2, stream);
    case 2:
      return launch_decode_variant<HD, 2>(a, ws, v, splits, chunk, scale_log2, stream);
    case 4:
      return launch_decode_variant<HD, 4>(a, ws, v, splits, chunk, scale_log2, stream);
    case 8:
      return launch_decode_variant<HD, 8>(a, ws, v, splits, chunk, scale_log2, stream);
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
    case PrefillVariant::Mma128R32:
      return "mma128r32";
    case PrefillVariant::Wgmma:
      return "wgmma";
  }
  return "?";
}

PrefillVariant parse_prefill_variant(const std::string& s) {
  if (s.empty()) return PrefillVariant::Auto;
  const PrefillVariant all[] = {PrefillVariant::Auto,      PrefillVariant::Simple,
                                PrefillVariant::Mma64,     PrefillVariant::Mma128,
                                PrefillVariant::Mma128R32, PrefillVariant::Wgmma};
  return parse_by_name(s, all, prefill_variant_name, "prefill variant");
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
    // hd 128 on an H100 / H200: wgmma. Measured on an H200 (32:8, B = 1, 2026-11-29, TFLOP/s
    // mma64 / mma128 / mma128r32 / wgmma): L = 2K 202 / 192 / 187 / 266; 8K 271 / 276 / 300 /
    // 421; 32K 290 / 299 / 330 / 472. Elsewhere (no sm_90a code) hd 128 takes 4 warps x 32 rows
    // once there are >= 4 waves of its 128-row blocks (2 per SM); below that the last partial
    // wave costs more than it saves and 64-row blocks win. hd 64 keeps mma64 (mma128r32 at hd
    // 64 has compare cases but was not timed).
    const int64_t blocks128 =
        static_cast<int64_t>(ceil_div(a.seqs.max_new, 128)) * a.num_heads * a.seqs.batch;
    if (hd == 128 && device_is_sm90())
      v = PrefillVariant::Wgmma;
    else
      v = (hd == 128 && blocks128 >= 8 * sm_count()) ? PrefillVariant::Mma128R32
                                                     : PrefillVariant::Mma64;
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
        launch_prefill_mma<128, 8, 1>(a, scale_log2, stream);
      else
        launch_prefill_mma<64, 8, 1>(a, scale_log2, stream);
      break;
    case PrefillVariant::Mma128R32:
      if (hd == 128)
        launch_prefill_mma<128, 4, 2>(a, scale_log2, stream);
      else
        launch_prefill_mma<64, 4, 2>(a, scale_log2, stream);
      break;
    case PrefillVariant::Wgmma:
      if (hd != 128 || !device_is_sm90())
        fail(ErrorKind::Unsupported,
             "attention_prefill: the wgmma variant needs head_dim 128 (got " + std::to_string(hd) +
                 ") and a compute capability 9.0 GPU (H100 / H200)");
      attention_detail::launch_prefill_wgmma(a, scale_log2, stream);
      break;
    default:
      if (hd == 128)
        launch_prefill_mma<128, 4, 1>(a, scale_log2, stream);
      else
        launch_prefill_mma<64, 4, 1>(a, scale_log2, stream);
      v = PrefillVariant::Mma64;
      break;
  }
  return prefill_variant_name(v);
}

template <int HD, int G>
int decode_blocks_per_sm_of(DecodeVariant v) {
  return v == DecodeVariant::Mma ? DecodeKernel<HD, G, DecodeVariant::Mma>::blocks_per_sm()
                                 : DecodeKernel<HD, G, DecodeVariant::Fma>::blocks_per_sm();
}

// [hd 64: G 1, 2, 4, 8; hd 128: G 1, 2, 4, 8] for one resolved variant.
std::array<int, 8> decode_occupancy_table(DecodeVariant v) {
  return {decode_blocks_per_sm_of<64, 1>(v),  decode_blocks_per_sm_of<64, 2>(v),
          decode_blocks_per_sm_of<64, 4>(v),  decode_blocks_per_sm_of<64, 8>(v),
          decode_blocks_per_sm_of<128, 1>(v), decode_blocks_per_sm_of<128, 2>(v),
          decode_blocks_per_sm_of<128, 4>(v), decode_blocks_per_sm_of<128, 8>(v)};
}

// Decode blocks of this (head_dim, group) and variant that one SM holds at once (occupancy API:
// fma at hd 128, 64 KB of shared memory -> 3 blocks, 2 at G 8 whose 239 registers decide; mma,
// 128 KB at hd 128 -> 1, 64 KB at hd 64 -> 3). Unsupported shapes give 1; the launch itself
// reports them.
int decode_blocks_per_sm(int head_dim, int group, DecodeVariant v) {
  const int gi = group == 1 ? 0 : group == 2 ? 1 : group == 4 ? 2 : group == 8 ? 3 : -1;
  if (gi < 0 || (head_dim != 64 && head_dim != 128)) return 1;
  const int idx = (head_dim == 128 ? 4 : 0) + gi;
  if (resolve_decode_variant(v) == DecodeVariant::Mma) {
    static const std::array<int, 8> mma = decode_occupancy_table(DecodeVariant::Mma);
    return mma[idx];
  }
  static const std::array<int, 8> fma = decode_occupancy_table(DecodeVariant::Fma);
  return fma[idx];
}

int decode_num_splits(int batch, int num_heads, int num_kv_heads, int head_dim, int max_kv_len,
                      DecodeVariant v) {
  const int slabs = std::max(1, batch * num_kv_heads);
  const int group = num_kv_heads > 0 ? num_heads / num_kv_heads : 1;
  // One whole wave: as many blocks as the GPU holds at once, never a partial second wave, which
  // would leave most SMs idle while it runs (measured on an H200 at hd 128, 32:8, B 1,
  // L 128K: the earlier "4 blocks per SM" rule made 66 x 8 = 528 blocks for 3 x 132 = 396
  // slots, two waves, 1.39 TB/s). At least 64 rows per split. The mma variant holds one block
  // per SM at hd 128, so it gets a third of the fma variant's splits (16 instead of 49 at B 1
  // 32:8 on 132 SMs): fewer, longer splits, and a final merge of 16 records instead of 43.
  const int capacity = decode_blocks_per_sm(head_dim, group, v) * sm_count();
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

const char* decode_variant_name(DecodeVariant v) {
  switch (v) {
    case DecodeVariant::Auto:
      return "auto";
    case DecodeVariant::Fma:
      return "fma";
    case DecodeVariant::Mma:
      return "mma";
  }
  return "?";
}

DecodeVariant parse_decode_variant(const std::string& s) {
  if (s.empty()) return DecodeVariant::Auto;
  const DecodeVariant all[] = {DecodeVariant::Auto, DecodeVariant::Fma, DecodeVariant::Mma};
  return parse_by_name(s, all, decode_variant_name, "decode variant");
}

DecodeVariant resolve_decode_variant(DecodeVariant v) {
  return v == DecodeVariant::Auto ? DecodeVariant::Mma : v;
}

std::string attention_decode(const DecodeArgs& a, DecodeWorkspace& ws, DecodeVariant variant,
                             cudaStream_t stream) {
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
  const DecodeVariant v = resolve_decode_variant(variant);
  const int splits = a.num_splits > 0 ? a.num_splits
                                      : decode_num_splits(a.kv.batch, a.num_heads,
                                                          a.kv.num_kv_heads, hd, a.max_kv_len, v);
  const DecodeSplit sp = decode_split(a.max_kv_len, splits, ws.max_splits);
  const float scale_log2 = kLog2e / std::sqrt(static_cast<float>(hd));
  const int group = a.num_heads / a.kv.num_kv_heads;
  if (hd == 128)
    launch_decode_hd<128>(a, ws, v, group, sp.splits, sp.chunk, scale_log2, stream);
  else
    launch_decode_hd<64>(a, ws, v, group, sp.splits, sp.chunk, scale_log2, stream);
  return v == DecodeVariant::Mma ? "splitkv_mma" : "splitkv_fma";
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
