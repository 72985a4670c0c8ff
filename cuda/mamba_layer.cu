#include "cuda/mamba_layer.hpp"

#include "cuda/causal_conv1d.hpp"
#include "cuda/gemm.hpp"
#include "cuda/rmsnorm.hpp"
#include "cuda/selective_scan.hpp"
#include "cuda/selective_state_update.hpp"

namespace jb::cuda {

MambaDims mamba_dims(const ModelConfig& c) {
  MambaDims d;
  d.d_model = c.hidden_size;
  d.d_inner = c.d_inner();
  d.d_state = c.mamba_d_state;
  d.d_conv = c.mamba_d_conv;
  d.dt_rank = c.mamba_dt_rank > 0 ? c.mamba_dt_rank : (c.hidden_size + 15) / 16;
  d.conv_bias = c.mamba_conv_bias;
  d.inner_norms = c.mamba_inner_norms;
  d.eps = static_cast<float>(c.rms_norm_eps);
  if (c.mamba_proj_bias)
    fail(ErrorKind::Unsupported, "CUDA Mamba layer: mamba_proj_bias=true is not supported");
  if (d.d_state < 1 || d.d_state > 16)
    fail(ErrorKind::Unsupported,
         "CUDA Mamba layer: d_state " + std::to_string(d.d_state) + " (supported 1..16)");
  if (d.d_conv < 1 || d.d_conv > 4)
    fail(ErrorKind::Unsupported,
         "CUDA Mamba layer: d_conv " + std::to_string(d.d_conv) + " (supported 1..4)");
  return d;
}

namespace {

void check_size(const std::vector<float>& v, int64_t want, const char* name) {
  if (static_cast<int64_t>(v.size()) != want)
    fail(ErrorKind::Shape, std::string("upload_mamba_weights: ") + name + " has " +
                               std::to_string(v.size()) + " elements, expected " +
                               std::to_string(want));
}

void up_bf16(DeviceBuffer<bf16>& d, const std::vector<float>& h) {
  d.alloc(h.size());
  if (!h.empty()) d.upload(to_bf16(h));
}
void up_f32(DeviceBuffer<float>& d, const std::vector<float>& h) {
  d.alloc(h.size());
  if (!h.empty()) d.upload(h);
}

}  // namespace

MambaLayerWeights upload_mamba_weights(const MambaHostWeights& w, const MambaDims& m) {
  const int64_t d = m.d_model, Di = m.d_inner, N = m.d_state, K = m.d_conv, R = m.dt_rank;
  check_size(w.in_proj, 2 * Di * d, "in_proj");
  check_size(w.conv_w, Di * K, "conv_w");
  check_size(w.conv_b, m.conv_bias ? Di : 0, "conv_b");
  check_size(w.x_proj, (R + 2 * N) * Di, "x_proj");
  check_size(w.dt_proj, Di * R, "dt_proj");
  check_size(w.dt_bias, Di, "dt_bias");
  check_size(w.A_log, Di * N, "A_log");
  check_size(w.D, Di, "D");
  check_size(w.out_proj, d * Di, "out_proj");
  check_size(w.dt_norm, m.inner_norms ? R : 0, "dt_norm");
  check_size(w.b_norm, m.inner_norms ? N : 0, "b_norm");
  check_size(w.c_norm, m.inner_norms ? N : 0, "c_norm");
  MambaLayerWeights g;
  g.dims = m;
  up_bf16(g.in_proj, w.in_proj);
  up_f32(g.conv_w, w.conv_w);
  up_f32(g.conv_b, w.conv_b);
  up_bf16(g.x_proj, w.x_proj);
  up_bf16(g.dt_proj, w.dt_proj);
  up_f32(g.dt_bias, w.dt_bias);
  up_f32(g.A_log, w.A_log);
  up_f32(g.D, w.D);
  up_bf16(g.out_proj, w.out_proj);
  up_bf16(g.dt_norm, w.dt_norm);
  up_bf16(g.b_norm, w.b_norm);
  up_bf16(g.c_norm, w.c_norm);
  return g;
}

MambaLayerState make_mamba_state(const MambaDims& m, int64_t batch) {
  MambaLayerState s;
  s.batch = batch;
  s.conv.alloc(static_cast<size_t>(batch * m.d_inner * m.d_conv));
  s.ssm.alloc(static_cast<size_t>(batch * m.d_inner * m.d_state));
  zero_mamba_state(s);
  return s;
}

void zero_mamba_state(MambaLayerState& s, cudaStream_t stream) {
  JB_CUDA(cudaMemsetAsync(s.conv.get(), 0, s.conv.bytes(), stream));
  JB_CUDA(cudaMemsetAsync(s.ssm.get(), 0, s.ssm.bytes(), stream));
}

void MambaWorkspace::reserve(const MambaDims& m, int64_t tokens) {
  if (tokens <= tokens_) return;
  const size_t T = static_cast<size_t>(tokens);
  const size_t Di = static_cast<size_t>(m.d_inner);
  const size_t W = static_cast<size_t>(m.dt_rank + 2 * m.d_state);
  xz_.alloc(T * 2 * Di);
  xc_.alloc(T * Di);
  xdbl_.alloc(T * W);
  xdbl_n_.alloc(T * W);
  dt_.alloc(T * Di);
  y_.alloc(T * Di);
  tokens_ = tokens;
}

namespace {

// x_proj, the three inner RMSNorms (jamba-spec §2.4 step 6: dt_low over R, B and C over N, each
// in its columns of x_proj's output) and dt_proj (without its bias: the scan adds it in fp32).
// Returns the buffer holding [dt_low | B | C] (normed when the config has the norms).
const bf16* selective_params(const MambaLayerWeights& w, int64_t T, MambaWorkspace& ws,
                             cudaStream_t stream) {
  const MambaDims& m = w.dims;
  const int64_t R = m.dt_rank, N = m.d_state, W = R + 2 * N;
  linear_bf16(ws.xc(), w.x_proj.get(), ws.xdbl(), T, W, m.d_inner, stream);
  const bf16* p = ws.xdbl();
  if (m.inner_norms) {
    bf16* o = ws.xdbl_normed();
    rmsnorm_bf16_strided(ws.xdbl(), W, w.dt_norm.get(), o, W, T, R, m.eps, stream);
    rmsnorm_bf16_strided(ws.xdbl() + R, W, w.b_norm.get(), o + R, W, T, N, m.eps, stream);
    rmsnorm_bf16_strided(ws.xdbl() + R + N, W, w.c_norm.get(), o + R + N, W, T, N, m.eps, stream);
    p = o;
  }
  GemmArgs g;
  g.M = T;
  g.N = m.d_inner;
  g.K = R;
  g.x = p;
  g.ldx = W;
  g.w = w.dt_proj.get();
  g.y = ws.dt();
  gemm_bf16(g, stream);
  return p;
}

}  // namespace

std::string mamba_prefill(const MambaLayerWeights& w, const bf16* h, bf16* out, int64_t batch,
                          int64_t seqlen, MambaLayerState& state, MambaWorkspace& ws,
                          cudaStream_t stream, int scan_variant) {
  const MambaDims& m = w.dims;
  if (state.batch != batch)
    fail(ErrorKind::Shape, "mamba_prefill: state has batch " + std::to_string(state.batch) +
                               ", input has " + std::to_string(batch));
  if (seqlen == 0) return "empty";
  const int64_t T = batch * seqlen, Di = m.d_inner, N = m.d_state, W = m.dt_rank + 2 * N;
  ws.reserve(m, T);
  // 1. in_proj: xz [T, 2Di]; x = columns [0, Di), z = [Di, 2Di) (jamba-spec §7 item 7).
  linear_bf16(h, w.in_proj.get(), ws.xz(), T, 2 * Di, m.d_model, stream);
  // 3. conv + bias + SiLU over the x half, continuing from and updating the conv state.
  Conv1dArgs ca;
  ca.batch = batch;
  ca.seqlen = seqlen;
  ca.dim = Di;
  ca.width = static_cast<int>(m.d_conv);
  ca.x = ws.xz();
  ca.x_row_stride = 2 * Di;
  ca.weight = w.conv_w.get();
  ca.bias = m.conv_bias ? w.conv_b.get() : nullptr;
  ca.conv_state_in = state.conv.get();
  ca.conv_state_out = state.conv.get();
  ca.y = ws.xc();
  causal_conv1d_fwd(ca, stream);
  // 5-7. x_proj, inner norms, dt_proj.
  const bf16* sel = selective_params(w, T, ws, stream);
  // 7-11. scan from the ssm state, writing the final state back in place.
  ScanArgs sa;
  sa.batch = batch;
  sa.seqlen = seqlen;
  sa.dim = Di;
  sa.dstate = N;
  sa.u = ws.xc();
  sa.dt = ws.dt();
  sa.dt_bias = w.dt_bias.get();
  sa.A_log = w.A_log.get();
  sa.B = sel + m.dt_rank;
  sa.B_row_stride = W;
  sa.C = sel + m.dt_rank + N;
  sa.C_row_stride = W;
  sa.D_skip = w.D.get();
  sa.z = ws.xz() + Di;
  sa.z_row_stride = 2 * Di;
  sa.ssm_state_in = state.ssm.get();
  sa.ssm_state_out = state.ssm.get();
  sa.y = ws.y();
  sa.variant = scan_variant == 1   ? ScanVariant::SinglePass
               : scan_variant == 2 ? ScanVariant::Chunked
                                   : ScanVariant::Auto;
  const std::string variant = selective_scan_fwd(sa, stream);
  // 12. out_proj.
  linear_bf16(ws.y(), w.out_proj.get(), out, T, m.d_model, Di, stream);
  return variant;
}

void mamba_decode_step(const MambaLayerWeights& w, const bf16* h, bf16* out, MambaLayerState& state,
                       MambaWorkspace& ws, cudaStream_t stream) {
  const MambaDims& m = w.dims;
  const int64_t B = state.batch, Di = m.d_inner, N = m.d_state, W = m.dt_rank + 2 * N;
  ws.reserve(m, B);
  linear_bf16(h, w.in_proj.get(), ws.xz(), B, 2 * Di, m.d_model, stream);
  Conv1dUpdateArgs cu;
  cu.batch = B;
  cu.dim = Di;
  cu.width = static_cast<int>(m.d_conv);
  cu.x = ws.xz();
  cu.x_row_stride = 2 * Di;
  cu.weight = w.conv_w.get();
  cu.bias = m.conv_bias ? w.conv_b.get() : nullptr;
  cu.conv_state = state.conv.get();
  cu.y = ws.xc();
  causal_conv1d_update(cu, stream);
  const bf16* sel = selective_params(w, B, ws, stream);
  StateUpdateArgs su;
  su.batch = B;
  su.dim = Di;
  su.dstate = N;
  su.x = ws.xc();
  su.dt = ws.dt();
  su.dt_bias = w.dt_bias.get();
  su.A_log = w.A_log.get();
  su.B = sel + m.dt_rank;
  su.B_row_stride = W;
  su.C = sel + m.dt_rank + N;
  su.C_row_stride = W;
  su.D_skip = w.D.get();
  su.z = ws.xz() + Di;
  su.z_row_stride = 2 * Di;
  su.state = state.ssm.get();
  su.y = ws.y();
  selective_state_update(su, stream);
  linear_bf16(ws.y(), w.out_proj.get(), out, B, m.d_model, Di, stream);
}

}  // namespace jb::cuda
