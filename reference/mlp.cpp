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
  Mat<T> gate = x * w.gate_proj.transpose();
  Mat<T> up = x * w.up_proj.transpose();
  // g and u are stored bf16 (HF's nn.Linear outputs in a bf16 model; the kernels' GEMMs write
  // them bf16); SiLU and the product are then taken in fp32 and stored bf16 once (HF rounds
  // silu(g) as well: one rounding fewer here, the kernels' choice).
  rnd_inplace(gate, r);
  rnd_inplace(up, r);
  Mat<T> act = gate.unaryExpr([](T g) { return silu(g); }).cwiseProduct(up);
  rnd_inplace(act, r);
  Mat<T> out = act * w.down_proj.transpose();
  rnd_inplace(out, r);
  return out;
}

template Mat<float> mlp<float>(const Mat<float>&, const MlpWeights<float>&, Round);
template Mat<double> mlp<double>(const Mat<double>&, const MlpWeights<double>&, Round);

}  // namespace jb::ref
