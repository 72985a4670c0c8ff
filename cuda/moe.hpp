// MoE block on the GPU (jamba-spec §2.7, §7 items 1-3): router + softmax + top-k, a deterministic
// permutation of (token, expert) pairs into per-expert row groups, the experts
// (cuda/experts.hpp), and the combine. Dense MLP (§2.6) = the same experts with one expert.
//
// Rounding points (kernel contract):
//   logits = bf16(x . router_row)          fp32 accumulation (HF: the router Linear is bf16)
//   p = softmax(logits) in fp32 over ALL E, then top-k; ties -> the lower expert index
//   w = bf16(p) (or bf16(p / sum of the top-k p) with renormalisation, Mixtral only)
//   y_e = bf16(Expert_e(x))                (cuda/experts.hpp)
//   out[t] = bf16(sum over the token's experts in ASCENDING EXPERT INDEX of w * y_e), the sum
//            in fp32 (fma), ONE bf16 rounding. HF (and reference/moe.cpp with Round::Bf16)
//            rounds each w * y_e and each partial sum to bf16 instead; ours rounds less, so it is
//            at least as close to the fp64 truth that the compare policy measures against.
// Everything is run-to-run deterministic: no atomics; within an expert, rows are in ascending
// token order.
#pragma once
#include <cstdint>
#include <string>

#include "cuda/common.cuh"
#include "cuda/experts.hpp"

namespace jb::cuda {

constexpr int kMaxExperts = 64;
constexpr int kMaxTopK = 8;

// topk_ids [T, k] (int32, rank order: rank 0 = largest p), topk_w [T, k] (fp32 holding the
// bf16-rounded weights). x [T, d], router [E, d], bf16.
void router_topk(const bf16* x, const bf16* router, int64_t tokens, int64_t d, int num_experts,
                 int top_k, bool renormalize, int32_t* topk_ids, float* topk_w,
                 cudaStream_t stream = nullptr);

// Device outputs of the permutation, sized for T tokens, k slots, E experts.
struct MoePermutation {
  int32_t* offsets = nullptr;     // [E + 1] expert e owns rows [offsets[e], offsets[e+1])
  int32_t* active = nullptr;      // [E] experts with rows, ascending
  int32_t* num_active = nullptr;  // [1]
  int32_t* perm_token = nullptr;  // [T * k] token of each expert-sorted row
  int32_t* slot_row = nullptr;    // [T * k] row of (token t, slot j) at t * k + j
};

// Groups the T*k (token, expert) pairs by expert: counts, exclusive prefix sum, and rows in
// ascending token order within each expert (a single-block two-pass counting sort: no atomics).
// Ids outside [0, E) are a bug of the caller: they are counted nowhere and get slot_row -1.
void moe_permute(const int32_t* topk_ids, int64_t tokens, int top_k, int num_experts,
                 const MoePermutation& p, cudaStream_t stream = nullptr);

// out[r, :] = x[idx[r], :] for r < rows.
void gather_rows(const bf16* x, const int32_t* idx, int64_t rows, int64_t d, bf16* out,
                 cudaStream_t stream = nullptr);

// out[t, :] = bf16(sum over slots j of token t, in ascending expert id, of w[t, j] *
// y_rows[slot_row[t*k + j], :]) with fp32 accumulation.
void moe_combine(const bf16* y_rows, const int32_t* topk_ids, const float* topk_w,
                 const int32_t* slot_row, int64_t tokens, int top_k, int64_t d, bf16* out,
                 cudaStream_t stream = nullptr);

struct MoeLayer {
  const bf16* router = nullptr;  // [E, d]
  int top_k = 2;
  bool renormalize = false;  // Jamba: false (jamba-spec §7 item 1); Mixtral: true
  ExpertWeights experts;     // num_experts = E
};

// Scratch for moe_forward / mlp_forward, grown on demand.
struct MoeWorkspace {
  DeviceBuffer<int32_t> topk_ids;
  DeviceBuffer<float> topk_w;
  DeviceBuffer<int32_t> offsets, active, num_active, perm_token, slot_row;
  DeviceBuffer<bf16> x_rows, y_rows;
  ExpertsWorkspace experts;
};

// out [T, d] = MoE(x [T, d]). Returns the experts variant that ran (cuda/experts.hpp). Decode
// (T <= kGemvMaxRows, so no expert has more rows) takes the Gemv path without any host sync.
std::string moe_forward(const MoeLayer& layer, const bf16* x, int64_t tokens, bf16* out,
                        MoeWorkspace& ws, ExpertsPath path = ExpertsPath::Auto,
                        cudaStream_t stream = nullptr);

// Dense SwiGLU MLP: w.num_experts must be 1. out [T, d] = down(silu(gate x) * up x).
std::string mlp_forward(const ExpertWeights& w, const bf16* x, int64_t tokens, bf16* out,
                        MoeWorkspace& ws, ExpertsPath path = ExpertsPath::Auto,
                        cudaStream_t stream = nullptr);

}  // namespace jb::cuda
