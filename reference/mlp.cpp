// SwiGLU MLP (jamba-spec §2.6).
#include "reference/mlp.hpp"

#include <string>

#include "core/error.hpp"

namespace jb::ref {

template <class T>
Mat<T> mlp(const Mat<T>& x, const MlpWeights<T>& w, Round r) {
  if (w.gate_proj.cols() != x.cols() || w.up_proj.rows() != w.gate_proj.rows() ||
      w.up_proj.cols() != x.cols() || w.down_proj.cols() != w.gate_proj.rows())
    fail(ErrorKind::Shape, "mlp: weights do not fit input width " + std::to_string(x.cols()));
  const Mat<T> gate = x * w.gate_proj.transpose();
  const Mat<T> up = x * w.up_proj.transpose();
  // The fused kernel applies SiLU and the product in fp32 and stores the result bf16.
  Mat<T> act = gate.unaryExpr([](T g) { return silu(g); }).cwiseProduct(up);
  rnd_inplace(act, r);
  Mat<T> out = act * w.down_proj.transpose();
  rnd_inplace(out, r);
  return out;
}

template Mat<float> mlp<float>(const Mat<float>&, const MlpWeights<float>&, Round);
template Mat<double> mlp<double>(const Mat<double>&, const MlpWeights<double>&, Round);

}  // namespace jb::ref
