// Per-layer KV cache on the GPU (jamba-spec §2.3, §5.4): preallocated for a batch of sequences
// and a maximum number of tokens per sequence; only attention layers own one (Mamba layers keep
// conv/SSM state instead). Layout [batch, num_kv_heads, max_tokens, head_dim] bf16 for k and v
// (why: cuda/attention.hpp). Keys are stored as the attention kernels use them: raw k_proj output
// for Jamba, rotated for the RoPE baselines.
//
// Interface contract (what a later paged variant must keep): append() takes token-major k/v of
// this call's new tokens plus the per-sequence counts, writes them at each sequence's current
// length and returns the SeqBatch (device offsets, past lengths) that the prefill kernel needs;
// view() gives the kernels their addressing; device_lengths() holds the rows per sequence after
// the last append (the decode kernel's kv_len). A paged cache would change KvView (a block table
// instead of one slab per (sequence, kv head)) and the kernels' address computation, not callers.
#pragma once
#include <cstdint>
#include <vector>

#include "cuda/attention.hpp"
#include "cuda/common.cuh"

namespace jb::cuda {

// Device copy of one call's batch description: cu_new [B+1], past_len [B], kv_len [B] in one
// int buffer, uploaded on the caller's stream (ordered before the kernels that read it).
class SeqBatchBuffer {
 public:
  // new_len[s] tokens of sequence s after past_len[s] cached rows. Sizes must agree.
  void set(const std::vector<int>& new_len, const std::vector<int>& past_len,
           cudaStream_t stream = nullptr);
  const SeqBatch& view() const { return view_; }
  const int* kv_len() const { return kv_len_; }  // device: past_len + new_len
  int max_kv_len() const { return max_kv_len_; }

 private:
  DeviceBuffer<int> buf_;
  std::vector<int> host_;
  SeqBatch view_;
  const int* kv_len_ = nullptr;
  int max_kv_len_ = 0;
};

class KvCache {
 public:
  KvCache() = default;
  // Error{OutOfMemory} (from the allocation) with the bytes asked when it does not fit.
  KvCache(int batch, int64_t max_tokens, int num_kv_heads, int head_dim);

  int batch() const { return view_.batch; }
  int64_t max_tokens() const { return view_.max_tokens; }
  int num_kv_heads() const { return view_.num_kv_heads; }
  int head_dim() const { return view_.head_dim; }
  int64_t bytes() const { return 2 * static_cast<int64_t>(k_.bytes()); }
  const KvView& view() const { return view_; }

  // Rows held per sequence (host mirror).
  const std::vector<int>& lengths() const { return lengths_; }
  // Forget every sequence (the memory is not cleared; rows >= length are never read).
  void reset();
  // For tests and benchmarks that write the slabs directly: declare the rows now held.
  void set_lengths(const std::vector<int>& lengths, cudaStream_t stream = nullptr);

  // Appends new_len[s] rows per sequence (token-major k/v of the new tokens, sequence after
  // sequence; kv head h at columns h*hd ..). rope_theta > 0 rotates the keys on the way (keys at
  // positions length[s] ..). Error{OutOfMemory} if a sequence would exceed max_tokens, with the
  // numbers. Returns the batch description of this call (valid until the next append).
  const SeqBatch& append(const bf16* k_new, int64_t k_stride, const bf16* v_new, int64_t v_stride,
                         const std::vector<int>& new_len, double rope_theta = 0,
                         cudaStream_t stream = nullptr);
  // Device rows per sequence after the last append / set_lengths (decode's kv_len).
  const int* device_lengths() const { return seqs_.kv_len(); }
  int max_length() const;

 private:
  DeviceBuffer<bf16> k_, v_;
  KvView view_;
  std::vector<int> lengths_;
  SeqBatchBuffer seqs_;
};

}  // namespace jb::cuda
