// The Mamba-1 mixer on the GPU (jamba-spec §2.4 prefill, §2.5 decode), with the rounding points
// of the reference's Round::Bf16 path (reference/mamba_layer.hpp): bf16 in_proj output, conv
// output, x_proj output, normed dt/B/C, dt_proj output, scan output y and out_proj output; fp32
// dt bias, softplus, A = -exp(A_log), SSM state, D skip and gate.
//
// GEMMs through cuBLAS (cuda/gemm.hpp), inner norms through cuda/rmsnorm.hpp (strided, in the
// columns of x_proj's output), conv and scan through cuda/causal_conv1d.hpp and
// cuda/selective_scan.hpp; decode uses the conv update and selective state update kernels.
//
// State per sequence: conv [Di, K] bf16 (exact: it holds copies of bf16 inputs; HF layout, oldest
// first) and ssm [Di, N] fp32. Prefill always continues from the state and leaves the state
// after its last token, so prefill(L) then decode(n) equals prefill(L + n), and chunked prefill
// is plain repeated prefill (jamba-spec §2.5: more correct than HF, which restarts).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "cuda/common.cuh"

namespace jb::cuda {

struct MambaDims {
  int64_t d_model = 0, d_inner = 0, d_state = 16, d_conv = 4, dt_rank = 0;
  bool conv_bias = true;
  bool inner_norms = true;
  float eps = 1e-6f;
};
// From a config: dt_rank "auto" (0) = ceil(hidden / 16). Error{Unsupported} for mamba_proj_bias
// (no Jamba config has it) or d_state > 16 / d_conv > 4.
MambaDims mamba_dims(const ModelConfig& c);

// Host weights as fp32 values in the reference layout (ref::MambaWeights, HF names in brackets):
// in_proj [2Di, d], conv_w [Di, K] (conv1d.weight squeezed), conv_b [Di] (or empty),
// x_proj [R+2N, Di], dt_proj [Di, R], dt_bias [Di], A_log [Di, N], D [Di], out_proj [d, Di],
// dt_norm [R], b_norm [N], c_norm [N] (empty without inner norms).
struct MambaHostWeights {
  std::vector<float> in_proj, conv_w, conv_b, x_proj, dt_proj, dt_bias, A_log, D, out_proj, dt_norm,
      b_norm, c_norm;
};

// Device weights: bf16 matrices and norm weights (rounded to nearest even at upload), fp32
// conv weight/bias, dt_bias, A_log and D.
struct MambaLayerWeights {
  MambaDims dims;
  DeviceBuffer<bf16> in_proj, x_proj, dt_proj, out_proj, dt_norm, b_norm, c_norm;
  DeviceBuffer<float> conv_w, conv_b, dt_bias, A_log, D;
};
// Error{Shape} naming the first tensor whose size does not match dims.
MambaLayerWeights upload_mamba_weights(const MambaHostWeights& w, const MambaDims& dims);

struct MambaLayerState {
  int64_t batch = 0;
  DeviceBuffer<bf16> conv;  // [B, Di, K]
  DeviceBuffer<float> ssm;  // [B, Di, N]
};
MambaLayerState make_mamba_state(const MambaDims& dims, int64_t batch);  // zeros
void zero_mamba_state(MambaLayerState& s, cudaStream_t stream = nullptr);

// Intermediate buffers, grown on demand to the largest token count seen.
class MambaWorkspace {
 public:
  void reserve(const MambaDims& dims, int64_t tokens);
  bf16* xz() const { return xz_.get(); }      // [T, 2Di]
  bf16* xc() const { return xc_.get(); }      // [T, Di]
  bf16* xdbl() const { return xdbl_.get(); }  // [T, R + 2N]
  bf16* xdbl_normed() const { return xdbl_n_.get(); }
  bf16* dt() const { return dt_.get(); }  // [T, Di]
  bf16* y() const { return y_.get(); }    // [T, Di]

 private:
  int64_t tokens_ = 0;
  DeviceBuffer<bf16> xz_, xc_, xdbl_, xdbl_n_, dt_, y_;
};

// Prefill L tokens for each of `batch` sequences: h, out [batch, L, d] bf16 (token-major).
// Continues from `state` and updates it. Returns the scan variant that ran.
std::string mamba_prefill(const MambaLayerWeights& w, const bf16* h, bf16* out, int64_t batch,
                          int64_t seqlen, MambaLayerState& state, MambaWorkspace& ws,
                          cudaStream_t stream = nullptr,
                          int scan_variant = 0 /* 0 auto, 1 single, 2 chunked */);

// One decode step: h, out [batch, d]; state updated in place.
void mamba_decode_step(const MambaLayerWeights& w, const bf16* h, bf16* out, MambaLayerState& state,
                       MambaWorkspace& ws, cudaStream_t stream = nullptr);

}  // namespace jb::cuda
