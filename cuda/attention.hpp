// CUDA attention kernels (jamba-spec §2.3): causal GQA prefill over a batch of sequences of
// different lengths (FlashAttention-2 style, tensor cores via mma.sync m16n8k16 bf16 or, on
// H100 / H200, warpgroup wgmma (cuda/attention_wgmma.cu), fp32 accumulation, online softmax in
// registers, no L x L matrix), split-KV decode (flash-decoding),
// and rotate-half RoPE for the baselines (jamba-spec §4.3; Jamba itself has no positional
// encoding, §7 item 4).
//
// KV cache layout (per attention layer, k and v separate): [B, Hkv, Tmax, hd] bf16, i.e. one
// contiguous [Tmax, hd] slab per (sequence, kv head). Chosen for decode, which is memory-bound:
// a split-KV block streams one contiguous run of rows of one kv head (16-byte loads, whole
// 128-byte lines), and the prefill kernel's 64-row K/V tiles are one contiguous 16 KB copy. It is
// also HF's layout (jamba-spec §2.3 "KV cache layout"). cuda/kv_cache.hpp owns the buffers.
//
// Softmax numerics (jamba-spec §7 item 14): scores in fp32, scaled by 1/sqrt(hd) (applied as a
// multiplication, folded into exp2 with log2(e)), running max and sum in fp32, output divided by
// the row sum at the end and rounded to bf16 once. The mma variants round the unnormalised
// probabilities P to bf16 before the P*V product (as FlashAttention-2 does); the simple variant
// keeps P in fp32. Decode: the fma variant keeps P in fp32 (q is multiplied by the scale in fp32
// before the dot products); the mma variant takes q exactly as the bf16 input (the scale
// multiplies the fp32 scores after the Q*K^T product), rounds P to bf16 before P*V like the
// prefill mma variants, keeps the row sums of the unrounded fp32 P, and merges warps and splits
// in fp32 in a fixed order. Both stay within the compare policy's factor 2 over the
// bf16-emulating reference (which keeps P in fp32): rounding P costs about one more bf16
// rounding's worth of relative error, the output rounding being the other.
#pragma once
#include <cstdint>
#include <string>

#include "cuda/common.cuh"

namespace jb::cuda {

// A batch of sequences in one call. Sequence s owns new tokens cu_new[s] .. cu_new[s+1]-1 of the
// token-major activations, its queries sit at absolute positions past_len[s] ..
// past_len[s] + new_len[s] - 1, and it attends to cache rows 0 .. (its position) (causal).
// All three arrays live on the device; batch is their length (cu_new has batch + 1 entries).
struct SeqBatch {
  int batch = 0;
  const int* cu_new = nullptr;    // [batch + 1], cu_new[0] = 0
  const int* past_len = nullptr;  // [batch] cache rows before this call's tokens
  int max_new = 0;                // host copy of max_s new_len[s] (grid size)
  int total_new = 0;              // host copy of cu_new[batch]
};

// Device view of one layer's KV cache, layout [batch, num_kv_heads, max_tokens, head_dim].
struct KvView {
  bf16* k = nullptr;
  bf16* v = nullptr;
  int batch = 0;
  int num_kv_heads = 0;
  int64_t max_tokens = 0;
  int head_dim = 0;
};

enum class PrefillVariant {
  Auto,       // hd 128: wgmma on CC 9.0, else mma128r32 at >= 4 waves of blocks; else mma64
  Simple,     // one warp per (query row, head), fp32 FMAs, P kept in fp32: the correctness anchor
  Mma64,      // 4 warps, 64 query rows per block
  Mma128,     // 8 warps, 128 query rows per block
  Mma128R32,  // 4 warps x 32 query rows (two m-tiles each), 128 rows per block
  Wgmma,      // hd 128 only, compute capability 9.0 only (sm_90a wgmma): 2 warpgroups x 64 rows
};
const char* prefill_variant_name(PrefillVariant v);
PrefillVariant parse_prefill_variant(const std::string& s);  // Error{Usage} if unknown

struct PrefillArgs {
  const bf16* q = nullptr;  // [total_new, q_stride] token-major; head h at columns h*hd ..
  int64_t q_stride = 0;     // elements between tokens (>= num_heads * head_dim)
  bf16* out = nullptr;      // [total_new, out_stride], same head layout as q
  int64_t out_stride = 0;
  int num_heads = 0;  // query heads H; kv head of query head j is j / (H / Hkv)
  KvView kv;          // must already hold this call's keys/values (kv_append first)
  SeqBatch seqs;
};

// Causal attention of every new token over its sequence's cache rows. head_dim 64 or 128
// (Error{Unsupported} otherwise); any H / Hkv ratio that is an integer. Returns the name of the
// variant that ran ("mma64", "mma128", "mma128r32", "wgmma", "simple").
std::string attention_prefill(const PrefillArgs& a, PrefillVariant v = PrefillVariant::Auto,
                              cudaStream_t stream = nullptr);

// Split-KV decode: one query token per sequence, keys 0 .. kv_len[s]-1 (the new token's own key
// already appended). Each block streams one chunk of one (sequence, kv head) slab and computes
// partial (max, sum, acc) for all H/Hkv query heads that share the kv head (each K/V row is read
// once per group); the last block of a (sequence, kv head) to finish merges the partials in
// split order (a fixed order: the result does not depend on which block finishes last).
// Two kernels with this contract and the same shapes (head_dim 64 / 128, H/Hkv 1, 2, 4, 8):
enum class DecodeVariant {
  Auto,  // mma, for every supported shape
  Fma,   // fp32 FMAs on CUDA cores, P in fp32, 2-3 blocks per SM at hd 128 (the A/B baseline)
  Mma,   // tensor cores (mma.sync m16n8k16 bf16), P in bf16, 1 block per SM at hd 128
};
const char* decode_variant_name(DecodeVariant v);          // "auto", "fma", "mma"
DecodeVariant parse_decode_variant(const std::string& s);  // Error{Usage} if unknown
// The variant attention_decode runs when asked for v (Auto -> Mma; Fma and Mma as given).
DecodeVariant resolve_decode_variant(DecodeVariant v);
struct DecodeArgs {
  const bf16* q = nullptr;  // [batch, q_stride]
  int64_t q_stride = 0;
  bf16* out = nullptr;  // [batch, out_stride]
  int64_t out_stride = 0;
  int num_heads = 0;
  KvView kv;
  const int* kv_len = nullptr;  // device [batch], >= 1
  int max_kv_len = 0;           // host copy of max_s kv_len[s]
  int num_splits = 0;           // 0: decode_num_splits (shape, variant, SM count)
};

// Workspace for attention_decode: fp32 partials (acc [batch, H, splits, hd], then max and sum
// [batch, H, splits, 2]) and one counter per (sequence, kv head). The counters must be zero before
// the first call (decode_workspace_init); every call leaves them zero again.
struct DecodeWorkspace {
  DeviceBuffer<float> partials;
  DeviceBuffer<unsigned> counters;
  int batch = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0, max_splits = 0;
};
void decode_workspace_init(DecodeWorkspace& ws, int batch, int num_heads, int num_kv_heads,
                           int head_dim, int max_splits);
// The split count attention_decode uses for this shape and variant (also the workspace size to
// ask for): one whole wave of that variant's blocks on this GPU, so it depends on the variant
// (at hd 128 the mma kernel holds one block per SM, the fma kernel two or three). A workspace sized
// for one variant and used with another caps the split count at its max_splits (correct, maybe
// slower). Needs a CUDA device.
int decode_num_splits(int batch, int num_heads, int num_kv_heads, int head_dim, int max_kv_len,
                      DecodeVariant v = DecodeVariant::Auto);
constexpr int kDecodeMaxSplits = 256;
// What a launch really runs for `requested` splits: capped at the workspace's max_splits, then
// whole 64-row tiles per split (chunk rows each), which can leave fewer splits than asked (both
// variants' tiles divide 64 rows: fma 32, mma 64).
struct DecodeSplit {
  int splits, chunk;
};
DecodeSplit decode_split(int max_kv_len, int requested, int max_splits);

// Returns the name of the kernel that ran ("splitkv_fma", "splitkv_mma").
std::string attention_decode(const DecodeArgs& a, DecodeWorkspace& ws,
                             DecodeVariant v = DecodeVariant::Auto, cudaStream_t stream = nullptr);

// Rotate-half RoPE in place on x [total_new, stride] (heads at columns h*hd ..), token t of
// sequence s at position past_len[s] + (t - cu_new[s]). inv_freq_i = theta^(-2i/hd) and the angle
// are computed in double (positions up to 256K would lose ~1e-2 rad in fp32), cos/sin of the
// reduced angle in fp32, the products in fp32, one bf16 rounding of each output.
void rope_inplace(bf16* x, int64_t stride, int num_heads, int head_dim, const SeqBatch& seqs,
                  double theta, cudaStream_t stream = nullptr);

// Writes this call's keys and values (token-major [total_new, stride], kv head h at columns
// h*hd ..) into the cache at rows past_len[s] .. past_len[s] + new_len[s] - 1. With rope_theta
// > 0 the keys are rotated on the way (same arithmetic as rope_inplace); values never are. The
// caller checks capacity (KvCache::append does).
void kv_append(const bf16* k_new, int64_t k_stride, const bf16* v_new, int64_t v_stride,
               const KvView& kv, const SeqBatch& seqs, double rope_theta,
               cudaStream_t stream = nullptr);

}  // namespace jb::cuda
