#pragma once
#include "reference/common.hpp"

namespace jb::ref {

// Inputs of the Mamba-1 selective scan for one sequence (jamba-spec §2.4 steps 7-11).
template <class T>
struct ScanInputs {
  Mat<T> x;        // [L, D]  u: the conv output (after SiLU)
  Mat<T> dt;       // [L, D]  dt_proj(dt_low) WITHOUT its bias
  Vec<T> dt_bias;  // [D]     added in fp32 before softplus (kernel contract, jamba-spec §7 item 10)
  Mat<T> A;        // [D, N]  A = -exp(A_log), already computed
  Mat<T> B;        // [L, N]  after b_layernorm
  Mat<T> C;        // [L, N]  after c_layernorm
  Vec<T> Dskip;    // [D]
  Mat<T> z;        // [L, D]  gate; size 0 = no gate
};

// Sequential scan:
//   delta = softplus(dt + dt_bias)   (threshold 20)
//   h_t = exp(delta*A) * h_{t-1} + delta * B_t * x_t;  y_t = sum_n h_t C_t + Dskip * x_t
//   y_t *= silu(z_t)
// ssm_state [D, N]: if non-null, the scan starts from it and it receives the final state
// (prefill from an initial state, chunked prefill, and the decode step with L = 1).
// Round::Bf16: inputs are taken as given (the caller rounds stored tensors), the state and all
// arithmetic stay in fp32/T, the output y is rounded once.
template <class T>
Mat<T> selective_scan(const ScanInputs<T>& in, Mat<T>* ssm_state, Round r);

}  // namespace jb::ref
