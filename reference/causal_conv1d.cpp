// Causal depthwise conv1d (jamba-spec §2.4 step 3, §2.5 and §7 item 20): cross-correlation with
// left history (zeros or the HF conv_state), weight[c, j] against input t-(K-1)+j, no flip.
#include "reference/causal_conv1d.hpp"

#include <string>

#include "core/error.hpp"

namespace jb::ref {

template <class T>
Mat<T> causal_conv1d(const Mat<T>& x, const Mat<T>& weight, const Vec<T>& bias, Mat<T>* conv_state,
                     bool silu_act, Round r) {
  const int64_t L = x.rows();
  const int64_t D = x.cols();
  const int64_t K = weight.cols();
  if (weight.rows() != D || K < 1)
    fail(ErrorKind::Shape, "causal_conv1d: weight is [" + std::to_string(weight.rows()) + ", " +
                               std::to_string(K) + "], input has " + std::to_string(D) +
                               " channels");
  if (bias.size() != 0 && bias.size() != D)
    fail(ErrorKind::Shape, "causal_conv1d: bias has " + std::to_string(bias.size()) +
                               " elements, expected " + std::to_string(D));
  if (conv_state && (conv_state->rows() != D || conv_state->cols() != K))
    fail(ErrorKind::Shape, "causal_conv1d: conv_state is [" + std::to_string(conv_state->rows()) +
                               ", " + std::to_string(conv_state->cols()) + "], expected [" +
                               std::to_string(D) + ", " + std::to_string(K) + "]");

  // ext holds the K inputs before this call (oldest first) followed by this call's L inputs,
  // token-major: ext row K + t is x row t. Output t uses ext rows t+1 .. t+K.
  Mat<T> ext = Mat<T>::Zero(K + L, D);
  if (conv_state) ext.topRows(K) = conv_state->transpose();
  ext.bottomRows(L) = x;

  Mat<T> y(L, D);
  for (int64_t t = 0; t < L; ++t) {
    for (int64_t c = 0; c < D; ++c) {
      T acc = bias.size() ? bias(c) : T(0);
      for (int64_t j = 0; j < K; ++j) acc += weight(c, j) * ext(t + 1 + j, c);
      y(t, c) = rnd(silu_act ? silu(acc) : acc, r);
    }
  }
  // The new state: the last K inputs including this call's (zero/old history if L < K).
  if (conv_state) *conv_state = ext.bottomRows(K).transpose();
  return y;
}

template Mat<float> causal_conv1d<float>(const Mat<float>&, const Mat<float>&, const Vec<float>&,
                                         Mat<float>*, bool, Round);
template Mat<double> causal_conv1d<double>(const Mat<double>&, const Mat<double>&,
                                           const Vec<double>&, Mat<double>*, bool, Round);

}  // namespace jb::ref
