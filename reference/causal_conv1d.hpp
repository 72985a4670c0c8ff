#pragma once
#include "reference/common.hpp"

namespace jb::ref {

// Causal depthwise conv1d + bias (+ SiLU), jamba-spec §2.4 step 3 and §2.5:
//   y[t,c] = act(bias[c] + sum_{j<K} w[c,j] * x[t-(K-1)+j, c])
// x: [L, D] token-major; weight: [D, K]; bias: [D] (size 0 = no bias).
// conv_state: [D, K] holding the last K inputs before this call, oldest in column 0 (HF layout;
// zeros for a fresh sequence). If non-null it supplies the history and is updated to the last K
// inputs including this call's, so prefill, chunked prefill and the decode step (L = 1) are
// one function. Null = zero history, state not returned.
template <class T>
Mat<T> causal_conv1d(const Mat<T>& x, const Mat<T>& weight, const Vec<T>& bias, Mat<T>* conv_state,
                     bool silu_act, Round r);

}  // namespace jb::ref
