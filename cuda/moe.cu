// MoE router, permutation and combine (see cuda/moe.hpp for the contract).
#include "cuda/moe.hpp"

#include <algorithm>

namespace jb::cuda {

namespace {

constexpr int kRouterThreads = 128;
constexpr int kRowThreads = 128;

// Tiled router (vectorised path): a warp owns kRouterTileExperts experts x TT tokens, a block at
// most kRouterTileWarps warps and kRouterTileMaxTokens tokens.
constexpr int kRouterTileExperts = 4;
constexpr int kRouterTileWarps = 8;
constexpr int kRouterTileMaxTokens = 64;
// Permutation: one block of up to 32 warps; ids are loaded kPermuteBatch steps ahead.
constexpr int kPermuteMaxWarps = 32;
constexpr int kPermuteBatch = 4;

__device__ __forceinline__ float bits_lo(uint32_t w) {
  return __uint_as_float(w << 16);
}
__device__ __forceinline__ float bits_hi(uint32_t w) {
  return __uint_as_float(w & 0xffff0000u);
}

// Softmax over all E in fp32 and the top-k of one token, exactly as reference/moe.cpp:
// max-subtracted exp, sum in expert order, divide; repeatedly take the largest p, the lower index
// winning ties (a strict > scan in ascending index). p holds the token's bf16-rounded logits and
// is overwritten with the probabilities; ids / weights point at the token's k slots. Both router
// kernels call this one function, so their per-token arithmetic cannot drift apart.
__device__ __forceinline__ void softmax_topk(float* p, int num_experts, int top_k, bool renormalize,
                                             int32_t* __restrict__ ids,
                                             float* __restrict__ weights) {
  float mx = p[0];
  for (int e = 1; e < num_experts; ++e) mx = (mx < p[e]) ? p[e] : mx;  // std::max
  float sum = 0.0f;
  for (int e = 0; e < num_experts; ++e) {
    p[e] = expf(p[e] - mx);  // now holds the unnormalised p
    sum += p[e];
  }
  for (int e = 0; e < num_experts; ++e) p[e] = __fdiv_rn(p[e], sum);
  uint64_t taken = 0;
  float w[kMaxTopK];
  int id[kMaxTopK];
#pragma unroll
  for (int r = 0; r < kMaxTopK; ++r) {
    if (r >= top_k) break;
    int best = -1;
    for (int e = 0; e < num_experts; ++e) {
      if ((taken >> e) & 1ull) continue;
      if (best < 0 || p[e] > p[best]) best = e;
    }
    taken |= 1ull << best;
    id[r] = best;
    w[r] = p[best];
  }
  if (renormalize) {  // Mixtral only (jamba-spec §7 item 1)
    float s = 0.0f;
#pragma unroll
    for (int r = 0; r < kMaxTopK; ++r)
      if (r < top_k) s += w[r];
#pragma unroll
    for (int r = 0; r < kMaxTopK; ++r)
      if (r < top_k) w[r] = __fdiv_rn(w[r], s);
  }
#pragma unroll
  for (int r = 0; r < kMaxTopK; ++r)
    if (r < top_k) {
      ids[r] = id[r];
      weights[r] = __bfloat162float(__float2bfloat16_rn(w[r]));  // .to(bf16)
    }
}

// Scalar router (d not a multiple of 8, or rows not 16-byte aligned): one block per token. Warp w
// computes logits of experts w, w + 4, ...: lane-strided fp32 FMA in a fixed order and a
// butterfly reduction (deterministic), rounded to bf16 like HF's bf16 router Linear. Thread 0
// then does the softmax and top-k.
__global__ void __launch_bounds__(kRouterThreads)
    router_topk_scalar_kernel(const bf16* __restrict__ x, const bf16* __restrict__ router,
                              int64_t d, int num_experts, int top_k, bool renormalize,
                              int32_t* __restrict__ ids, float* __restrict__ weights) {
  __shared__ float logits[kMaxExperts];
  const int64_t t = blockIdx.x;
  const bf16* xt = x + t * d;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int e = warp; e < num_experts; e += kRouterThreads / 32) {
    const bf16* re = router + int64_t(e) * d;
    float acc = 0.0f;
    for (int64_t c = lane; c < d; c += 32)
      acc = fmaf(__bfloat162float(xt[c]), __bfloat162float(re[c]), acc);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (lane == 0) logits[e] = __bfloat162float(__float2bfloat16_rn(acc));
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  softmax_topk(logits, num_experts, top_k, renormalize, ids + t * top_k, weights + t * top_k);
}

__device__ __forceinline__ void load_words(const bf16* p, uint32_t (&w)[4]) {
  const uint4 v = __ldg(reinterpret_cast<const uint4*>(p));
  w[0] = v.x;
  w[1] = v.y;
  w[2] = v.z;
  w[3] = v.w;
}

// Vectorised router (d a multiple of 8, 16-byte aligned rows). A block covers token_groups * TT
// tokens and every expert. Warp (tg, slot) computes the logits of tokens tg*TT .. tg*TT + TT - 1
// against expert groups slot, slot + slots, ... (kRouterTileExperts experts each) as TT x 4 fp32
// accumulators per lane, so each 16-byte router chunk a lane loads serves TT tokens and each x
// chunk 4 experts. One block per token (the old vectorised kernel) streamed the whole router
// matrix (E * d * 2 bytes, 128 KB at Jamba width) from L2 once per token, 512 MB at T = 4096,
// and unpacked both bf16 operands of every FMA; here the router is streamed once per block of
// token_groups * TT tokens (16 at E = 16, TT = 8) and an unpacked operand feeds 4 or TT FMAs.
// Same bits: every (token, expert) accumulator still sees the old sequence exactly. Lane l
// starts from 0 and adds the chunks c = 8l + 256m in ascending m, within a chunk the words in
// order, low half then high half, as fmaf(x, router, acc); then the xor butterfly 16, 8, 4, 2, 1
// and one bf16 rounding. Tokens past T and experts past E are clamped to the last one (their
// results are dropped), so the inner loop has no predication.
// After the barrier thread i does the softmax / top-k of the block's token i, so those serial
// scans of different tokens run in parallel instead of on one thread per token-block.
template <int TT>
__global__ void __launch_bounds__(kRouterTileWarps * 32)
    router_topk_tiled_kernel(const bf16* __restrict__ x, const bf16* __restrict__ router,
                             int64_t tokens, int64_t d, int num_experts, int top_k,
                             bool renormalize, int token_groups, int32_t* __restrict__ ids,
                             float* __restrict__ weights) {
  // Row stride E + 1 (odd for even E): the softmax threads, one row each, hit different banks.
  __shared__ float logits[kRouterTileMaxTokens * (kMaxExperts + 1)];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int ld = num_experts + 1;
  const int groups = (num_experts + kRouterTileExperts - 1) / kRouterTileExperts;
  const int slots = static_cast<int>(blockDim.x >> 5) / token_groups;
  const int tg = warp / slots, slot = warp % slots;
  const int64_t t_block = int64_t(blockIdx.x) * token_groups * TT;
  const int64_t t0 = t_block + int64_t(tg) * TT;
  if (t0 < tokens) {
    const bf16* xr[TT];
#pragma unroll
    for (int i = 0; i < TT; ++i) xr[i] = x + std::min<int64_t>(t0 + i, tokens - 1) * d;
    for (int g = slot; g < groups; g += slots) {
      const int e0 = g * kRouterTileExperts;
      const bf16* rr[kRouterTileExperts];
#pragma unroll
      for (int j = 0; j < kRouterTileExperts; ++j)
        rr[j] = router + int64_t(std::min(e0 + j, num_experts - 1)) * d;
      float acc[TT][kRouterTileExperts];
#pragma unroll
      for (int i = 0; i < TT; ++i)
#pragma unroll
        for (int j = 0; j < kRouterTileExperts; ++j) acc[i][j] = 0.0f;
      for (int64_t c = int64_t(lane) * 8; c < d; c += 32 * 8) {
        uint32_t a[TT][4], b[kRouterTileExperts][4];
#pragma unroll
        for (int i = 0; i < TT; ++i) load_words(xr[i] + c, a[i]);
#pragma unroll
        for (int j = 0; j < kRouterTileExperts; ++j) load_words(rr[j] + c, b[j]);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          float rl[kRouterTileExperts], rh[kRouterTileExperts];
#pragma unroll
          for (int j = 0; j < kRouterTileExperts; ++j) {
            rl[j] = bits_lo(b[j][k]);
            rh[j] = bits_hi(b[j][k]);
          }
#pragma unroll
          for (int i = 0; i < TT; ++i) {
            const float xl = bits_lo(a[i][k]), xh = bits_hi(a[i][k]);
#pragma unroll
            for (int j = 0; j < kRouterTileExperts; ++j) {
              acc[i][j] = fmaf(xl, rl[j], acc[i][j]);
              acc[i][j] = fmaf(xh, rh[j], acc[i][j]);
            }
          }
        }
      }
#pragma unroll
      for (int i = 0; i < TT; ++i)
#pragma unroll
        for (int j = 0; j < kRouterTileExperts; ++j) {
          float v = acc[i][j];
#pragma unroll
          for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
          if (lane == 0 && t0 + i < tokens && e0 + j < num_experts)
            logits[(tg * TT + i) * ld + e0 + j] = __bfloat162float(__float2bfloat16_rn(v));
        }
    }
  }
  __syncthreads();
  const int i = threadIdx.x;
  if (i < token_groups * TT && t_block + i < tokens) {
    const int64_t t = t_block + i;
    softmax_topk(logits + i * ld, num_experts, top_k, renormalize, ids + t * top_k,
                 weights + t * top_k);
  }
}

__device__ __forceinline__ int expert_key(int32_t e, int num_experts) {
  return (e >= 0 && e < num_experts) ? e : -1;
}

// Single-block counting sort of the T*k (token, expert) pairs in flat order p = t*k + j, by
// W <= 32 warps (the previous version, 128 threads each walking 64 pairs one at a time twice, was
// a chain of dependent loads and shared-memory updates on an otherwise idle GPU). Warp w owns the
// pairs [w*S*32, (w+1)*S*32) (S steps) and walks them 32 at a time, lane l on pair base + l;
// __match_any_sync groups a step's lanes by expert, and a lane's rank is the number of lower lanes
// in its group. cnt holds the count of each (expert e, warp w) at e * (W + 1) + w (the odd stride
// spreads one warp's experts over banks). An exclusive scan over cnt in (expert, warp) order gives
// each (expert, warp) its first row; the second pass hands out rows in step order, then lane
// order, so row(p) = offsets[e] + #{q < p : ids[q] == e}: the rows of an expert in ascending
// token order, the same rows as any chunked counting sort. Integer arithmetic and no atomics:
// deterministic.
__global__ void __launch_bounds__(kPermuteMaxWarps * 32)
    permute_kernel(const int32_t* __restrict__ ids, int64_t pairs, int top_k, int num_experts,
                   int32_t* __restrict__ offsets, int32_t* __restrict__ active,
                   int32_t* __restrict__ num_active, int32_t* __restrict__ perm_token,
                   int32_t* __restrict__ slot_row) {
  __shared__ int32_t cnt[kMaxExperts * (kPermuteMaxWarps + 1)];
  __shared__ int32_t warp_prefix[kPermuteMaxWarps];
  __shared__ int32_t s_total;
  constexpr unsigned kAll = 0xffffffffu;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = static_cast<int>(blockDim.x >> 5);
  const int E = num_experts, ldc = warps + 1;
  const unsigned below = (1u << lane) - 1u;
  const int64_t steps = (pairs + 32 * warps - 1) / (32 * warps);
  const int64_t first = int64_t(warp) * steps * 32;
  for (int f = threadIdx.x; f < E * ldc; f += blockDim.x) cnt[f] = 0;
  __syncthreads();
  int32_t* own = cnt + warp;  // (e, this warp) at own[e * ldc]

  // Expert of each lane's pair for kPermuteBatch steps from s0 (loads issued together); -1 for an
  // id outside [0, E) and for a pair past this warp's range or past the end.
  auto load_keys = [&](int64_t s0, int(&key)[kPermuteBatch]) {
#pragma unroll
    for (int b = 0; b < kPermuteBatch; ++b) {
      const int64_t p = first + (s0 + b) * 32 + lane;
      key[b] = (s0 + b < steps && p < pairs) ? expert_key(ids[p], E) : -1;
    }
  };

  for (int64_t s0 = 0; s0 < steps; s0 += kPermuteBatch) {  // pass 1: counts
    int key[kPermuteBatch];
    load_keys(s0, key);
#pragma unroll
    for (int b = 0; b < kPermuteBatch; ++b) {
      const unsigned same = __match_any_sync(kAll, key[b]);
      if (key[b] >= 0 && (same & below) == 0) own[key[b] * ldc] += __popc(same);
      __syncwarp();
    }
  }
  __syncthreads();

  // Exclusive scan over the E * W counts in (expert, warp) order: thread i owns the flat entries
  // [i * per, (i + 1) * per), a warp scan and a scan of the warp totals.
  const int entries = E * warps;
  const int per = (E + 31) / 32;  // E * W entries over 32 * W threads
  const int f0 = static_cast<int>(threadIdx.x) * per;
  const int f1 = std::min(f0 + per, entries);
  int32_t local = 0;
  for (int f = f0; f < f1; ++f) local += cnt[(f / warps) * ldc + f % warps];
  int32_t incl = local;
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const int32_t v = __shfl_up_sync(kAll, incl, off);
    if (lane >= off) incl += v;
  }
  if (lane == 31) warp_prefix[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    const int32_t own_total = lane < warps ? warp_prefix[lane] : 0;
    int32_t scan = own_total;
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
      const int32_t v = __shfl_up_sync(kAll, scan, off);
      if (lane >= off) scan += v;
    }
    if (lane < warps) warp_prefix[lane] = scan - own_total;
    if (lane == 31) s_total = scan;
  }
  __syncthreads();
  int32_t run = warp_prefix[warp] + incl - local;
  for (int f = f0; f < f1; ++f) {
    int32_t& c = cnt[(f / warps) * ldc + f % warps];
    const int32_t n = c;
    c = run;
    run += n;
  }
  __syncthreads();

  // Warp 0 reads only its own column of cnt, before its own second pass changes it.
  const int32_t total = s_total;
  if (warp == 0) {
    int na = 0;
    for (int base = 0; base < E; base += 32) {
      const int e = base + lane;
      bool nonempty = false;
      if (e < E) {
        const int32_t begin = cnt[e * ldc];
        const int32_t end = e + 1 < E ? cnt[(e + 1) * ldc] : total;
        offsets[e] = begin;
        nonempty = end > begin;
      }
      const unsigned m = __ballot_sync(kAll, nonempty);
      if (nonempty) active[na + __popc(m & below)] = e;
      na += __popc(m);
    }
    if (lane == 0) {
      offsets[E] = total;
      *num_active = na;
    }
    __syncwarp();
  }

  for (int64_t s0 = 0; s0 < steps; s0 += kPermuteBatch) {  // pass 2: rows
    int key[kPermuteBatch];
    load_keys(s0, key);
#pragma unroll
    for (int b = 0; b < kPermuteBatch; ++b) {
      const int64_t p = first + (s0 + b) * 32 + lane;
      const unsigned same = __match_any_sync(kAll, key[b]);
      if (s0 + b < steps && p < pairs) {
        int32_t row = -1;
        if (key[b] >= 0) {
          row = own[key[b] * ldc] + __popc(same & below);
          perm_token[row] = static_cast<int32_t>(p) / top_k;
        }
        slot_row[p] = row;
      }
      __syncwarp();
      if (key[b] >= 0 && (same & below) == 0) own[key[b] * ldc] += __popc(same);
      __syncwarp();
    }
  }
}

template <bool kVec8>
__global__ void gather_rows_kernel(const bf16* __restrict__ x, const int32_t* __restrict__ idx,
                                   int64_t d, bf16* __restrict__ out) {
  const int64_t r = blockIdx.x;
  const bf16* src = x + int64_t(idx[r]) * d;
  bf16* dst = out + r * d;
  if (kVec8) {
    for (int64_t c = int64_t(threadIdx.x) * 8; c < d; c += int64_t(blockDim.x) * 8)
      *reinterpret_cast<uint4*>(dst + c) = __ldg(reinterpret_cast<const uint4*>(src + c));
  } else {
    for (int64_t c = threadIdx.x; c < d; c += blockDim.x) dst[c] = src[c];
  }
}

// One block per token: thread 0 orders the token's slots by expert id (insertion sort, k <= 8),
// then every thread accumulates its columns in that order in fp32 and rounds once.
template <bool kVec8>
__global__ void combine_kernel(const bf16* __restrict__ y_rows, const int32_t* __restrict__ ids,
                               const float* __restrict__ w, const int32_t* __restrict__ slot_row,
                               int top_k, int64_t d, bf16* __restrict__ out) {
  __shared__ int32_t s_row[kMaxTopK];
  __shared__ float s_w[kMaxTopK];
  __shared__ int s_n;
  const int64_t t = blockIdx.x;
  if (threadIdx.x == 0) {
    int e_sorted[kMaxTopK];
    int n = 0;
    for (int j = 0; j < top_k; ++j) {
      const int32_t row = slot_row[t * top_k + j];
      if (row < 0) continue;
      const int e = ids[t * top_k + j];
      int p = n++;
      while (p > 0 && e_sorted[p - 1] > e) {
        e_sorted[p] = e_sorted[p - 1];
        s_row[p] = s_row[p - 1];
        s_w[p] = s_w[p - 1];
        --p;
      }
      e_sorted[p] = e;
      s_row[p] = row;
      s_w[p] = w[t * top_k + j];
    }
    s_n = n;
  }
  __syncthreads();
  const int n = s_n;
  bf16* o = out + t * d;
  if (kVec8) {
    for (int64_t c = int64_t(threadIdx.x) * 8; c < d; c += int64_t(blockDim.x) * 8) {
      float acc[8];
#pragma unroll
      for (int v = 0; v < 8; ++v) acc[v] = 0.0f;
      for (int s = 0; s < n; ++s) {
        const uint4 y = __ldg(reinterpret_cast<const uint4*>(y_rows + int64_t(s_row[s]) * d + c));
        const uint32_t yw[4] = {y.x, y.y, y.z, y.w};
        const float ws = s_w[s];
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          acc[2 * k] = fmaf(ws, bits_lo(yw[k]), acc[2 * k]);
          acc[2 * k + 1] = fmaf(ws, bits_hi(yw[k]), acc[2 * k + 1]);
        }
      }
      uint4 packed;
      uint32_t* pw = reinterpret_cast<uint32_t*>(&packed);
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const uint32_t lo = __bfloat16_as_ushort(__float2bfloat16_rn(acc[2 * k]));
        const uint32_t hi = __bfloat16_as_ushort(__float2bfloat16_rn(acc[2 * k + 1]));
        pw[k] = lo | (hi << 16);
      }
      *reinterpret_cast<uint4*>(o + c) = packed;
    }
  } else {
    for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
      float acc = 0.0f;
      for (int s = 0; s < n; ++s)
        acc = fmaf(s_w[s], __bfloat162float(y_rows[int64_t(s_row[s]) * d + c]), acc);
      o[c] = __float2bfloat16_rn(acc);
    }
  }
}

__global__ void single_group_kernel(int32_t* offsets, int32_t* active, int32_t* num_active,
                                    int32_t rows) {
  offsets[0] = 0;
  offsets[1] = rows;
  active[0] = 0;
  *num_active = rows > 0 ? 1 : 0;
}

template <class T>
void ensure(DeviceBuffer<T>& b, size_t n) {
  if (b.size() < n) b.alloc(n);
}

void check_grid(int64_t blocks, const char* what) {
  if (blocks > 2147483647)
    fail(ErrorKind::Unsupported, std::string(what) + ": more than 2^31 - 1 rows");
}

}  // namespace

void router_topk(const bf16* x, const bf16* router, int64_t tokens, int64_t d, int num_experts,
                 int top_k, bool renormalize, int32_t* topk_ids, float* topk_w,
                 cudaStream_t stream) {
  if (num_experts < 1 || num_experts > kMaxExperts)
    fail(ErrorKind::Unsupported, "router_topk: " + std::to_string(num_experts) +
                                     " experts (supported 1.." + std::to_string(kMaxExperts) + ")");
  if (top_k < 1 || top_k > num_experts || top_k > kMaxTopK)
    fail(ErrorKind::Config, "router_topk: top_k " + std::to_string(top_k) + " with " +
                                std::to_string(num_experts) + " experts (max " +
                                std::to_string(kMaxTopK) + ")");
  if (d <= 0) fail(ErrorKind::Shape, "router_topk: d must be positive");
  if (tokens <= 0) return;
  check_grid(tokens, "router_topk");
  if (d % 8 == 0 && aligned16(x) && aligned16(router)) {
    // One warp slot per group of 4 experts (at most the block's 8 warps; more groups loop), the
    // remaining warps on more token groups: E = 16 gives 4 slots x 2 token groups.
    const int groups = (num_experts + kRouterTileExperts - 1) / kRouterTileExperts;
    const int slots = std::min(groups, kRouterTileWarps);
    const int token_groups = kRouterTileWarps / slots;
    const int threads = slots * token_groups * 32;
    static_assert(kRouterTileWarps * 8 <= kRouterTileMaxTokens, "router tile rows");
    // Tokens per warp: the most of 8, 4, 2, 1 that still gives every SM a block. More tokens per
    // warp stream the router (E * d * 2 bytes from L2) fewer times and unpack each router bf16
    // for more FMAs; fewer give short inputs (decode, short prompts) more blocks and shorter
    // per-warp chains.
    auto blocks = [&](int tt) { return (tokens + tt * token_groups - 1) / (tt * token_groups); };
    const int64_t sms = sm_count();
    const int tt = blocks(8) >= sms ? 8 : blocks(4) >= sms ? 4 : blocks(2) >= sms ? 2 : 1;
    const unsigned grid = static_cast<unsigned>(blocks(tt));
    auto launch = [&](auto kernel) {
      kernel<<<grid, threads, 0, stream>>>(x, router, tokens, d, num_experts, top_k, renormalize,
                                           token_groups, topk_ids, topk_w);
    };
    if (tt == 8)
      launch(router_topk_tiled_kernel<8>);
    else if (tt == 4)
      launch(router_topk_tiled_kernel<4>);
    else if (tt == 2)
      launch(router_topk_tiled_kernel<2>);
    else
      launch(router_topk_tiled_kernel<1>);
  } else {
    router_topk_scalar_kernel<<<static_cast<unsigned>(tokens), kRouterThreads, 0, stream>>>(
        x, router, d, num_experts, top_k, renormalize, topk_ids, topk_w);
  }
  JB_LAUNCH("router_topk_kernel");
}

void moe_permute(const int32_t* topk_ids, int64_t tokens, int top_k, int num_experts,
                 const MoePermutation& p, cudaStream_t stream) {
  if (num_experts < 1 || num_experts > kMaxExperts)
    fail(ErrorKind::Unsupported, "moe_permute: " + std::to_string(num_experts) + " experts");
  if (tokens < 0 || tokens * top_k > 2147483647)
    fail(ErrorKind::Unsupported, "moe_permute: tokens * top_k exceeds int32");
  // One warp per 32 pairs up to 32 warps: decode launches a single warp, prefill the full block.
  const int64_t pairs = std::max<int64_t>(0, tokens * top_k);
  const int warps = static_cast<int>(std::clamp<int64_t>((pairs + 31) / 32, 1, kPermuteMaxWarps));
  permute_kernel<<<1, warps * 32, 0, stream>>>(topk_ids, pairs, top_k, num_experts, p.offsets,
                                               p.active, p.num_active, p.perm_token, p.slot_row);
  JB_LAUNCH("permute_kernel");
}

void gather_rows(const bf16* x, const int32_t* idx, int64_t rows, int64_t d, bf16* out,
                 cudaStream_t stream) {
  if (rows <= 0 || d <= 0) return;
  check_grid(rows, "gather_rows");
  const unsigned grid = static_cast<unsigned>(rows);
  if (d % 8 == 0 && aligned16(x) && aligned16(out))
    gather_rows_kernel<true><<<grid, kRowThreads, 0, stream>>>(x, idx, d, out);
  else
    gather_rows_kernel<false><<<grid, kRowThreads, 0, stream>>>(x, idx, d, out);
  JB_LAUNCH("gather_rows_kernel");
}

void moe_combine(const bf16* y_rows, const int32_t* topk_ids, const float* topk_w,
                 const int32_t* slot_row, int64_t tokens, int top_k, int64_t d, bf16* out,
                 cudaStream_t stream) {
  if (tokens <= 0 || d <= 0) return;
  if (top_k < 1 || top_k > kMaxTopK) fail(ErrorKind::Config, "moe_combine: bad top_k");
  check_grid(tokens, "moe_combine");
  const unsigned grid = static_cast<unsigned>(tokens);
  if (d % 8 == 0 && aligned16(y_rows) && aligned16(out))
    combine_kernel<true>
        <<<grid, kRowThreads, 0, stream>>>(y_rows, topk_ids, topk_w, slot_row, top_k, d, out);
  else
    combine_kernel<false>
        <<<grid, kRowThreads, 0, stream>>>(y_rows, topk_ids, topk_w, slot_row, top_k, d, out);
  JB_LAUNCH("combine_kernel");
}

std::string moe_forward(const MoeLayer& layer, const bf16* x, int64_t tokens, bf16* out,
                        MoeWorkspace& ws, ExpertsPath path, cudaStream_t stream) {
  const int64_t E = layer.experts.num_experts, d = layer.experts.d;
  const int k = layer.top_k;
  if (tokens < 0) fail(ErrorKind::Shape, "moe_forward: negative token count");
  if (tokens == 0) return "empty";
  if (E < 1 || E > kMaxExperts)
    fail(ErrorKind::Unsupported, "moe_forward: " + std::to_string(E) + " experts (supported 1.." +
                                     std::to_string(kMaxExperts) + ")");
  const int64_t pairs = tokens * k;
  ensure(ws.topk_ids, pairs);
  ensure(ws.topk_w, pairs);
  ensure(ws.offsets, E + 1);
  ensure(ws.active, E);
  ensure(ws.num_active, 1);
  ensure(ws.perm_token, pairs);
  ensure(ws.slot_row, pairs);
  ensure(ws.x_rows, pairs * d);
  ensure(ws.y_rows, pairs * d);
  router_topk(x, layer.router, tokens, d, static_cast<int>(E), k, layer.renormalize,
              ws.topk_ids.get(), ws.topk_w.get(), stream);
  MoePermutation p;
  p.offsets = ws.offsets.get();
  p.active = ws.active.get();
  p.num_active = ws.num_active.get();
  p.perm_token = ws.perm_token.get();
  p.slot_row = ws.slot_row.get();
  moe_permute(ws.topk_ids.get(), tokens, k, static_cast<int>(E), p, stream);
  gather_rows(x, ws.perm_token.get(), pairs, d, ws.x_rows.get(), stream);
  ExpertGroups g;
  g.offsets = p.offsets;
  g.active = p.active;
  g.num_active = p.num_active;
  g.total_rows = pairs;
  g.max_rows_per_expert = tokens;  // a token picks an expert at most once
  const std::string variant =
      run_experts(layer.experts, g, ws.x_rows.get(), ws.y_rows.get(), path, ws.experts, stream);
  moe_combine(ws.y_rows.get(), ws.topk_ids.get(), ws.topk_w.get(), ws.slot_row.get(), tokens, k, d,
              out, stream);
  return variant;
}

std::string mlp_forward(const ExpertWeights& w, const bf16* x, int64_t tokens, bf16* out,
                        MoeWorkspace& ws, ExpertsPath path, cudaStream_t stream) {
  if (w.num_experts != 1)
    fail(ErrorKind::Internal,
         "mlp_forward: expects one expert, got " + std::to_string(w.num_experts));
  if (tokens < 0) fail(ErrorKind::Shape, "mlp_forward: negative token count");
  if (tokens == 0) return "empty";
  if (tokens > 2147483647) fail(ErrorKind::Unsupported, "mlp_forward: more than 2^31 tokens");
  ensure(ws.offsets, 2);
  ensure(ws.active, 1);
  ensure(ws.num_active, 1);
  single_group_kernel<<<1, 1, 0, stream>>>(ws.offsets.get(), ws.active.get(), ws.num_active.get(),
                                           static_cast<int32_t>(tokens));
  JB_LAUNCH("single_group_kernel");
  ExpertGroups g;
  g.offsets = ws.offsets.get();
  g.active = ws.active.get();
  g.num_active = ws.num_active.get();
  g.total_rows = tokens;
  g.max_rows_per_expert = tokens;
  return run_experts(w, g, x, out, path, ws.experts, stream);
}

}  // namespace jb::cuda
