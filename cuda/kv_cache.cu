#include "cuda/kv_cache.hpp"

#include <algorithm>
#include <string>

#include "core/error.hpp"

namespace jb::cuda {

void SeqBatchBuffer::set(const std::vector<int>& new_len, const std::vector<int>& past_len,
                         cudaStream_t stream) {
  const int B = static_cast<int>(new_len.size());
  if (past_len.size() != new_len.size())
    fail(ErrorKind::Shape, "SeqBatchBuffer: " + std::to_string(new_len.size()) +
                               " new lengths for " + std::to_string(past_len.size()) +
                               " past lengths");
  host_.assign(static_cast<size_t>(3 * B + 1), 0);
  int max_new = 0;
  max_kv_len_ = 0;
  for (int s = 0; s < B; ++s) {
    if (new_len[s] < 0 || past_len[s] < 0)
      fail(ErrorKind::Shape, "SeqBatchBuffer: negative length for sequence " + std::to_string(s));
    host_[s + 1] = host_[s] + new_len[s];
    host_[B + 1 + s] = past_len[s];
    host_[2 * B + 1 + s] = past_len[s] + new_len[s];
    max_new = std::max(max_new, new_len[s]);
    max_kv_len_ = std::max(max_kv_len_, past_len[s] + new_len[s]);
  }
  if (buf_.size() < host_.size()) buf_.alloc(std::max<size_t>(host_.size(), 64));
  JB_CUDA(cudaMemcpyAsync(buf_.get(), host_.data(), host_.size() * sizeof(int),
                          cudaMemcpyHostToDevice, stream));
  // The host vector must outlive the asynchronous copy of pageable memory: cudaMemcpyAsync from
  // pageable memory returns once the data is staged, so reusing host_ afterwards is safe.
  view_.batch = B;
  view_.cu_new = buf_.get();
  view_.past_len = buf_.get() + B + 1;
  view_.max_new = max_new;
  view_.total_new = host_[B];
  kv_len_ = buf_.get() + 2 * B + 1;
}

KvCache::KvCache(int batch, int64_t max_tokens, int num_kv_heads, int head_dim) {
  if (batch <= 0 || max_tokens <= 0 || num_kv_heads <= 0 || head_dim <= 0 || head_dim % 8 != 0)
    fail(ErrorKind::Shape, "KvCache: batch " + std::to_string(batch) + ", max_tokens " +
                               std::to_string(max_tokens) + ", kv heads " +
                               std::to_string(num_kv_heads) + ", head_dim " +
                               std::to_string(head_dim));
  const size_t n = static_cast<size_t>(batch) * num_kv_heads * max_tokens * head_dim;
  k_.alloc(n);
  v_.alloc(n);
  view_ = KvView{k_.get(), v_.get(), batch, num_kv_heads, max_tokens, head_dim};
  lengths_.assign(static_cast<size_t>(batch), 0);
  set_lengths(lengths_);
}

void KvCache::reset() {
  set_lengths(std::vector<int>(lengths_.size(), 0));
}

void KvCache::set_lengths(const std::vector<int>& lengths, cudaStream_t stream) {
  if (static_cast<int>(lengths.size()) != batch())
    fail(ErrorKind::Shape, "KvCache::set_lengths: " + std::to_string(lengths.size()) +
                               " lengths for a batch of " + std::to_string(batch()));
  for (int len : lengths)
    if (len < 0 || len > max_tokens())
      fail(ErrorKind::Shape, "KvCache::set_lengths: length " + std::to_string(len) +
                                 " outside 0.." + std::to_string(max_tokens()));
  lengths_ = lengths;
  seqs_.set(std::vector<int>(lengths.size(), 0), lengths_, stream);
}

int KvCache::max_length() const {
  return lengths_.empty() ? 0 : *std::max_element(lengths_.begin(), lengths_.end());
}

const SeqBatch& KvCache::append(const bf16* k_new, int64_t k_stride, const bf16* v_new,
                                int64_t v_stride, const std::vector<int>& new_len,
                                double rope_theta, cudaStream_t stream) {
  if (static_cast<int>(new_len.size()) != batch())
    fail(ErrorKind::Shape, "KvCache::append: " + std::to_string(new_len.size()) +
                               " sequences for a cache of batch " + std::to_string(batch()));
  for (int s = 0; s < batch(); ++s)
    if (static_cast<int64_t>(lengths_[s]) + new_len[s] > max_tokens())
      fail(ErrorKind::OutOfMemory,
           "KvCache::append: sequence " + std::to_string(s) + " would hold " +
               std::to_string(static_cast<int64_t>(lengths_[s]) + new_len[s]) +
               " tokens; the cache was sized for " + std::to_string(max_tokens()) + " (" +
               std::to_string(bytes()) + " bytes)");
  seqs_.set(new_len, lengths_, stream);
  kv_append(k_new, k_stride, v_new, v_stride, view_, seqs_.view(), rope_theta, stream);
  for (int s = 0; s < batch(); ++s) lengths_[s] += new_len[s];
  return seqs_.view();
}

}  // namespace jb::cuda
