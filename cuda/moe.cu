// MoE router, permutation and combine (see cuda/moe.hpp for the contract).
#include "cuda/moe.hpp"

#include <algorithm>

namespace jb::cuda {

namespace {

constexpr int kRouterThreads = 128;
constexpr int kPermuteThreads = 128;
constexpr int kRowThreads = 128;

__device__ __forceinline__ float bits_lo(uint32_t w) {
  return __uint_as_float(w << 16);
}
__device__ __forceinline__ float bits_hi(uint32_t w) {
  return __uint_as_float(w & 0xffff0000u);
}

// One block per token. Warp w computes logits of experts w, w + 4, ...: lane-strided fp32 FMA in
// a fixed order and a butterfly reduction (deterministic), rounded to bf16 like HF's bf16 router
// Linear. Thread 0 then does the softmax over all E in fp32 and the top-k exactly as
// reference/moe.cpp: max-subtracted exp, sum in expert order, divide; repeatedly take the
// largest p, the lower index winning ties (a strict > scan in ascending index).
template <bool kVec8>
__global__ void __launch_bounds__(kRouterThreads)
    router_topk_kernel(const bf16* __restrict__ x, const bf16* __restrict__ router, int64_t d,
                       int num_experts, int top_k, bool renormalize, int32_t* __restrict__ ids,
                       float* __restrict__ weights) {
  __shared__ float logits[kMaxExperts];
  const int64_t t = blockIdx.x;
  const bf16* xt = x + t * d;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int e = warp; e < num_experts; e += kRouterThreads / 32) {
    const bf16* re = router + int64_t(e) * d;
    float acc = 0.0f;
    if (kVec8) {
      for (int64_t c = int64_t(lane) * 8; c < d; c += 32 * 8) {
        const uint4 a = __ldg(reinterpret_cast<const uint4*>(xt + c));
        const uint4 b = __ldg(reinterpret_cast<const uint4*>(re + c));
        const uint32_t wa[4] = {a.x, a.y, a.z, a.w}, wb[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          acc = fmaf(bits_lo(wa[k]), bits_lo(wb[k]), acc);
          acc = fmaf(bits_hi(wa[k]), bits_hi(wb[k]), acc);
        }
      }
    } else {
      for (int64_t c = lane; c < d; c += 32)
        acc = fmaf(__bfloat162float(xt[c]), __bfloat162float(re[c]), acc);
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (lane == 0) logits[e] = __bfloat162float(__float2bfloat16_rn(acc));
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  float mx = logits[0];
  for (int e = 1; e < num_experts; ++e) mx = (mx < logits[e]) ? logits[e] : mx;  // std::max
  float sum = 0.0f;
  for (int e = 0; e < num_experts; ++e) {
    logits[e] = expf(logits[e] - mx);  // now holds the unnormalised p
    sum += logits[e];
  }
  for (int e = 0; e < num_experts; ++e) logits[e] = __fdiv_rn(logits[e], sum);
  uint64_t taken = 0;
  float w[kMaxTopK];
  int id[kMaxTopK];
#pragma unroll
  for (int r = 0; r < kMaxTopK; ++r) {
    if (r >= top_k) break;
    int best = -1;
    for (int e = 0; e < num_experts; ++e) {
      if ((taken >> e) & 1ull) continue;
      if (best < 0 || logits[e] > logits[best]) best = e;
    }
    taken |= 1ull << best;
    id[r] = best;
    w[r] = logits[best];
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
      ids[t * top_k + r] = id[r];
      weights[t * top_k + r] = __bfloat162float(__float2bfloat16_rn(w[r]));  // .to(bf16)
    }
}

// Single-block counting sort of the T*k (token, expert) pairs. Thread i owns the token chunk
// [i*chunk, (i+1)*chunk). cnt[e * kPermuteThreads + i] counts thread i's pairs for expert e; an
// exclusive scan over cnt in (expert, thread) order gives each (expert, thread) its first row, so
// rows of an expert come out in ascending token order. Integer arithmetic only: deterministic.
__global__ void __launch_bounds__(kPermuteThreads)
    permute_kernel(const int32_t* __restrict__ ids, int64_t tokens, int top_k, int num_experts,
                   int32_t* __restrict__ offsets, int32_t* __restrict__ active,
                   int32_t* __restrict__ num_active, int32_t* __restrict__ perm_token,
                   int32_t* __restrict__ slot_row) {
  __shared__ int32_t cnt[kMaxExperts * kPermuteThreads];
  __shared__ int32_t partial[kPermuteThreads];
  const int i = threadIdx.x;
  const int64_t chunk = (tokens + kPermuteThreads - 1) / kPermuteThreads;
  const int64_t t_begin = std::min<int64_t>(tokens, i * chunk);
  const int64_t t_end = std::min<int64_t>(tokens, t_begin + chunk);
  for (int e = 0; e < num_experts; ++e) cnt[e * kPermuteThreads + i] = 0;
  for (int64_t t = t_begin; t < t_end; ++t)
    for (int j = 0; j < top_k; ++j) {
      const int e = ids[t * top_k + j];
      if (e >= 0 && e < num_experts) ++cnt[e * kPermuteThreads + i];
    }
  __syncthreads();
  // Exclusive scan over the flattened cnt; thread i scans entries [i*E, (i+1)*E).
  const int seg = num_experts;
  int32_t local = 0;
  for (int f = i * seg; f < (i + 1) * seg; ++f) local += cnt[f];
  partial[i] = local;
  __syncthreads();
  for (int off = 1; off < kPermuteThreads; off <<= 1) {  // Hillis-Steele inclusive scan
    const int32_t v = i >= off ? partial[i - off] : 0;
    __syncthreads();
    partial[i] += v;
    __syncthreads();
  }
  int32_t run = partial[i] - local;  // exclusive prefix of this segment
  for (int f = i * seg; f < (i + 1) * seg; ++f) {
    const int32_t c = cnt[f];
    cnt[f] = run;
    run += c;
  }
  __syncthreads();
  if (i == 0) {
    int na = 0;
    const int32_t total = partial[kPermuteThreads - 1];
    for (int e = 0; e < num_experts; ++e) {
      const int32_t begin = cnt[e * kPermuteThreads];
      const int32_t end = e + 1 < num_experts ? cnt[(e + 1) * kPermuteThreads] : total;
      offsets[e] = begin;
      if (end > begin) active[na++] = e;
    }
    offsets[num_experts] = total;
    *num_active = na;
  }
  for (int64_t t = t_begin; t < t_end; ++t)
    for (int j = 0; j < top_k; ++j) {
      const int e = ids[t * top_k + j];
      int32_t row = -1;
      if (e >= 0 && e < num_experts) {
        row = cnt[e * kPermuteThreads + i]++;
        perm_token[row] = static_cast<int32_t>(t);
      }
      slot_row[t * top_k + j] = row;
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

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
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
  const unsigned grid = static_cast<unsigned>(tokens);
  if (d % 8 == 0 && aligned16(x) && aligned16(router)) {
    router_topk_kernel<true><<<grid, kRouterThreads, 0, stream>>>(x, router, d, num_experts, top_k,
                                                                  renormalize, topk_ids, topk_w);
  } else {
    router_topk_kernel<false><<<grid, kRouterThreads, 0, stream>>>(x, router, d, num_experts, top_k,
                                                                   renormalize, topk_ids, topk_w);
  }
  JB_LAUNCH("router_topk_kernel");
}

void moe_permute(const int32_t* topk_ids, int64_t tokens, int top_k, int num_experts,
                 const MoePermutation& p, cudaStream_t stream) {
  if (num_experts < 1 || num_experts > kMaxExperts)
    fail(ErrorKind::Unsupported, "moe_permute: " + std::to_string(num_experts) + " experts");
  if (tokens < 0 || tokens * top_k > 2147483647)
    fail(ErrorKind::Unsupported, "moe_permute: tokens * top_k exceeds int32");
  permute_kernel<<<1, kPermuteThreads, 0, stream>>>(topk_ids, tokens, top_k, num_experts, p.offsets,
                                                    p.active, p.num_active, p.perm_token,
                                                    p.slot_row);
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
