// Embedding lookup, final norm and LM head (jamba-spec §2.1, §2.8).
//
// LM head logits are fp32: cuBLAS accumulates in fp32 and stores fp32, with no bf16 rounding of
// the logits (HF keeps them in the model dtype; an fp32 store is strictly closer to the truth
// and the top-1 / KL gates of ecosystem.md §1.8 are computed on logits). During decode only the
// last position of each sequence is projected (HF's logits_to_keep = 1).
#pragma once
#include <cstdint>

#include "cuda/common.cuh"

namespace jb::cuda {

// out[i, :] = table[ids[i], :] (bf16 [vocab, d] table, [n, d] out). An id outside [0, vocab)
// never reads out of bounds: it is clamped into range and recorded in error[0..1] (device int32:
// error[0] = number of bad ids, error[1] = the lowest position holding one; reset by the caller
// to {0, INT32_MAX} — embedding_lookup_checked does all of this).
void embedding_lookup(const int32_t* ids, int64_t n, const bf16* table, int64_t vocab, int64_t d,
                      bf16* out, int32_t* error, cudaStream_t stream = nullptr);

// As above with its own error flag; synchronises the stream and throws Error{Usage} naming the
// first bad position and id when any id is out of range (the output then holds clamped rows).
void embedding_lookup_checked(const int32_t* ids, int64_t n, const bf16* table, int64_t vocab,
                              int64_t d, bf16* out, cudaStream_t stream = nullptr);

// logits[b, V] (fp32) = hidden_row(b) . W_lm^T for b < rows, where hidden_row(b) = hidden +
// b * row_stride (elements). With hidden laid out [B, L, d], the last position of each sequence is
// hidden + (L - 1) * d with row_stride = L * d: no gather needed.
void lm_head(const bf16* hidden, int64_t rows, int64_t row_stride, int64_t d, const bf16* w_lm,
             int64_t vocab, float* logits, cudaStream_t stream = nullptr);

// Final norm + LM head for the last position of each of `batch` sequences of length seq_len in
// hidden [batch, seq_len, d]: normed [batch, d] (bf16 scratch, caller-provided) =
// rmsnorm(last rows) (cuda/rmsnorm.hpp, one bf16 rounding), then logits [batch, vocab] fp32.
void final_norm_lm_head(const bf16* hidden, int64_t batch, int64_t seq_len, int64_t d,
                        const bf16* norm_weight, float eps, const bf16* w_lm, int64_t vocab,
                        bf16* normed, float* logits, cudaStream_t stream = nullptr);

}  // namespace jb::cuda
