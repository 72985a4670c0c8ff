// Jamba's Mamba-1 mixer (jamba-spec §2.4 prefill and §2.5 decode as one function: the conv and
// the scan always continue from MambaState, which is zero for a fresh sequence).
#include "reference/mamba_layer.hpp"

#include <string>

#include "core/error.hpp"
#include "reference/causal_conv1d.hpp"
#include "reference/rmsnorm.hpp"
#include "reference/selective_scan.hpp"

namespace jb::ref {

template <class T>
MambaState<T> MambaState<T>::zeros(const ModelConfig& c) {
  MambaState<T> s;
  s.conv = Mat<T>::Zero(c.d_inner(), c.mamba_d_conv);
  s.ssm = Mat<T>::Zero(c.d_inner(), c.mamba_d_state);
  return s;
}

namespace {

// y = x W^T (+ b): a Linear layer (PyTorch [out, in] weight), rounded as a GEMM output store.
template <class T>
Mat<T> linear(const Mat<T>& x, const Mat<T>& w, const Vec<T>& b, Round r) {
  Mat<T> y = x * w.transpose();
  if (b.size()) y.rowwise() += b.transpose();
  rnd_inplace(y, r);
  return y;
}

}  // namespace

template <class T>
Mat<T> mamba_layer(const Mat<T>& h, const MambaWeights<T>& w, const ModelConfig& c,
                   MambaState<T>& state, Round r) {
  const int64_t Di = c.d_inner();
  const int64_t N = c.mamba_d_state;
  const int64_t R = c.mamba_dt_rank > 0 ? c.mamba_dt_rank : (c.hidden_size + 15) / 16;  // "auto"
  if (w.in_proj.rows() != 2 * Di || w.x_proj.rows() != R + 2 * N || w.dt_proj.cols() != R)
    fail(ErrorKind::Shape, "mamba_layer: weights do not match the config (d_inner " +
                               std::to_string(Di) + ", dt_rank " + std::to_string(R) +
                               ", d_state " + std::to_string(N) + ")");
  if (state.conv.rows() != Di || state.ssm.rows() != Di)
    fail(ErrorKind::Shape, "mamba_layer: state does not match the config (use MambaState::zeros)");

  // 1. in_proj and split: first Di channels are x (SSM input), last Di are z (gate), §7 item 7.
  const Mat<T> xz = linear(h, w.in_proj, w.in_proj_bias, r);
  const Mat<T> x = xz.leftCols(Di);
  const Mat<T> z = xz.rightCols(Di);

  // 3. causal depthwise conv + bias + SiLU, continuing from (and updating) the conv state.
  const Mat<T> xc = causal_conv1d(x, w.conv_w, w.conv_b, &state.conv, /*silu_act=*/true, r);

  // 5. x_proj, split in the order dt (R), B (N), C (N).
  const Mat<T> x_dbl = linear(xc, w.x_proj, Vec<T>(), r);
  Mat<T> dt_low = x_dbl.leftCols(R);
  Mat<T> Bm = x_dbl.middleCols(R, N);
  Mat<T> Cm = x_dbl.rightCols(N);

  // 6. Jamba's inner RMSNorms, on the R-dim dt_low BEFORE dt_proj (§7 item 6).
  if (c.mamba_inner_norms) {
    dt_low = rmsnorm(dt_low, w.dt_norm, c.rms_norm_eps, r);
    Bm = rmsnorm(Bm, w.b_norm, c.rms_norm_eps, r);
    Cm = rmsnorm(Cm, w.c_norm, c.rms_norm_eps, r);
  }

  // 7-11. dt_proj without its bias (the scan adds it in T before softplus), A = -exp(A_log)
  // in T, then the selective scan with D skip and SiLU(z) gate.
  ScanInputs<T> in;
  in.x = xc;
  in.dt = linear(dt_low, w.dt_proj, Vec<T>(), r);
  in.dt_bias = w.dt_bias;
  in.A = -(w.A_log.array().exp()).matrix();
  in.B = std::move(Bm);
  in.C = std::move(Cm);
  in.Dskip = w.D;
  in.z = z;
  const Mat<T> y = selective_scan(in, &state.ssm, r);

  // 12. out_proj.
  return linear(y, w.out_proj, w.out_proj_bias, r);
}

template struct MambaState<float>;
template struct MambaState<double>;
template Mat<float> mamba_layer<float>(const Mat<float>&, const MambaWeights<float>&,
                                       const ModelConfig&, MambaState<float>&, Round);
template Mat<double> mamba_layer<double>(const Mat<double>&, const MambaWeights<double>&,
                                         const ModelConfig&, MambaState<double>&, Round);

}  // namespace jb::ref
