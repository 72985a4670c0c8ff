// Mamba-path registry entries with their CUDA kernels: CONV1D, CONV1D_UPDATE, SSM_SCAN,
// SSM_UPDATE, MAMBA_LAYER. The case grids, inputs and CPU references are in mamba_cases.hpp.
//
// Every kernel output is written into a jb::cuda::GuardedBuffer (poisoned with NaN, guard
// regions checked after the run). Inputs are the host-generated, bf16-rounded values, uploaded
// as they are; strided layouts (xstride, zstride, bcpad) put the tensor inside a wider buffer
// whose other columns are NaN, so a kernel reading the wrong columns fails loudly.
#include <cstring>

#include "compare/ops/mamba_cases.hpp"
#include "cuda/causal_conv1d.hpp"
#include "cuda/common.cuh"
#include "cuda/mamba_layer.hpp"
#include "cuda/selective_scan.hpp"
#include "cuda/selective_state_update.hpp"

namespace jb::cmp {

namespace {

using cuda::bf16;
using cuda::DeviceBuffer;
using cuda::GuardedBuffer;

// Uploads rows x cols values (row-major) into the columns [col0, col0 + cols) of a device
// buffer with row stride `stride`; every other element is NaN (bf16 0xFFFF).
DeviceBuffer<bf16> upload_strided(const std::vector<float>& v, int64_t rows, int64_t cols,
                                  int64_t stride, int64_t col0) {
  std::vector<float> host(static_cast<size_t>(rows * stride), std::nanf(""));
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(&host[r * stride + col0], &v[r * cols], static_cast<size_t>(cols) * sizeof(float));
  DeviceBuffer<bf16> d(host.size());
  d.upload(cuda::to_bf16(host));
  return d;
}

DeviceBuffer<float> upload_f32(const std::vector<float>& v) {
  DeviceBuffer<float> d(v.size());
  if (!v.empty()) d.upload(v);
  return d;
}

std::vector<float> bf16_body(const GuardedBuffer& g, size_t n) {
  const std::vector<uint8_t> bytes = g.download_body();
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) {
    uint16_t b;
    std::memcpy(&b, bytes.data() + 2 * i, 2);
    out[i] = bf16_bits_to_float(b);
  }
  return out;
}

std::vector<float> f32_body(const GuardedBuffer& g, size_t n) {
  const std::vector<uint8_t> bytes = g.download_body();
  std::vector<float> out(n);
  std::memcpy(out.data(), bytes.data(), n * sizeof(float));
  return out;
}

void upload_body_bf16(GuardedBuffer& g, const std::vector<float>& v) {
  const std::vector<bf16> b = cuda::to_bf16(v);
  JB_CUDA(cudaMemcpy(g.body(), b.data(), b.size() * sizeof(bf16), cudaMemcpyHostToDevice));
}

void upload_body_f32(GuardedBuffer& g, const std::vector<float>& v) {
  JB_CUDA(cudaMemcpy(g.body(), v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice));
}

// ---- CONV1D ---------------------------------------------------------------------------------

Outputs conv_kernel(const Case& c, KernelRun& run) {
  const mamba::ConvInputs in = mamba::conv_inputs(c, false);
  const int64_t B = in.B, L = in.L, D = in.D, K = in.K, xs = in.xstride;
  DeviceBuffer<bf16> x = upload_strided(in.x, B * L, D, xs * D, 0);
  DeviceBuffer<float> w = upload_f32(in.weight), bias = upload_f32(in.bias);
  DeviceBuffer<bf16> st_in(static_cast<size_t>(B * D * K));
  st_in.upload(cuda::to_bf16(in.state));
  const size_t ny = static_cast<size_t>(B * L * D), ns = static_cast<size_t>(B * D * K);
  GuardedBuffer y(ny * sizeof(bf16)), st_out(ns * sizeof(bf16));
  y.poison();
  st_out.poison();
  cuda::Conv1dArgs a;
  a.batch = B;
  a.seqlen = L;
  a.dim = D;
  a.width = static_cast<int>(K);
  a.x = x.get();
  a.x_row_stride = xs * D;
  a.weight = w.get();
  a.bias = bias.get();
  a.conv_state_in = in.has_state ? st_in.get() : nullptr;
  a.conv_state_out = static_cast<bf16*>(st_out.body());
  a.y = static_cast<bf16*>(y.body());
  run.variant = cuda::causal_conv1d_fwd(a);
  JB_CUDA(cudaDeviceSynchronize());
  run.guards_ok = y.guards_intact() && st_out.guards_intact();
  return {mamba::tensor("y", {B, L, D}, bf16_body(y, ny), CheckKind::Reduction, 1),
          mamba::tensor("conv_state", {B, D, K}, bf16_body(st_out, ns), CheckKind::State)};
}

// ---- CONV1D_UPDATE: `steps` calls of the update kernel, in place on a guarded state -------

Outputs conv_update_kernel(const Case& c, KernelRun& run) {
  const mamba::ConvInputs in = mamba::conv_inputs(c, true);
  const int64_t B = in.B, S = in.L, D = in.D, K = in.K;
  DeviceBuffer<bf16> x(in.x.size());
  x.upload(cuda::to_bf16(in.x));  // [B, steps, D]
  DeviceBuffer<float> w = upload_f32(in.weight), bias = upload_f32(in.bias);
  const size_t ny = static_cast<size_t>(B * S * D), ns = static_cast<size_t>(B * D * K);
  GuardedBuffer y(ny * sizeof(bf16)), st(ns * sizeof(bf16));
  y.poison();
  st.poison();
  upload_body_bf16(st, in.state);
  for (int64_t s = 0; s < S; ++s) {
    cuda::Conv1dUpdateArgs a;
    a.batch = B;
    a.dim = D;
    a.width = static_cast<int>(K);
    a.x = x.get() + s * D;
    a.x_row_stride = S * D;
    a.weight = w.get();
    a.bias = bias.get();
    a.conv_state = static_cast<bf16*>(st.body());
    a.y = static_cast<bf16*>(y.body()) + s * D;
    a.y_row_stride = S * D;
    cuda::causal_conv1d_update(a);
  }
  JB_CUDA(cudaDeviceSynchronize());
  run.variant = "thread_per_channel";
  run.guards_ok = y.guards_intact() && st.guards_intact();
  return {mamba::tensor("y", {B, S, D}, bf16_body(y, ny), CheckKind::Reduction, 1),
          mamba::tensor("conv_state", {B, D, K}, bf16_body(st, ns), CheckKind::State)};
}

// ---- SSM_SCAN -------------------------------------------------------------------------------

Outputs scan_kernel(const Case& c, KernelRun& run) {
  const mamba::ScanInputsHost in = mamba::scan_inputs(c, false);
  const int64_t B = in.B, L = in.L, D = in.D, N = in.N, zs = in.zstride, bp = in.bcpad;
  const int64_t bcw = bp + 2 * N;  // row width of the buffer holding B and C
  DeviceBuffer<bf16> u(in.u.size()), dt(in.dt.size());
  u.upload(cuda::to_bf16(in.u));
  dt.upload(cuda::to_bf16(in.dt));
  DeviceBuffer<bf16> z = upload_strided(in.z, B * L, D, zs * D, (zs - 1) * D);
  std::vector<float> bc(static_cast<size_t>(B * L * 2 * N));
  for (int64_t r = 0; r < B * L; ++r)
    for (int64_t n = 0; n < N; ++n) {
      bc[r * 2 * N + n] = in.Bm[r * N + n];
      bc[r * 2 * N + N + n] = in.Cm[r * N + n];
    }
  DeviceBuffer<bf16> bcbuf = upload_strided(bc, B * L, 2 * N, bcw, bp);
  DeviceBuffer<float> dt_bias = upload_f32(in.dt_bias), A_log = upload_f32(in.A_log),
                      Dskip = upload_f32(in.Dskip), st_in = upload_f32(in.state);
  const size_t ny = static_cast<size_t>(B * L * D), ns = static_cast<size_t>(B * D * N);
  GuardedBuffer y(ny * sizeof(bf16)), st_out(ns * sizeof(float));
  y.poison();
  st_out.poison();
  cuda::ScanArgs a;
  a.batch = B;
  a.seqlen = L;
  a.dim = D;
  a.dstate = N;
  a.u = u.get();
  a.dt = dt.get();
  a.dt_bias = dt_bias.get();
  a.A_log = A_log.get();
  a.B = bcbuf.get() + bp;
  a.B_row_stride = bcw;
  a.C = bcbuf.get() + bp + N;
  a.C_row_stride = bcw;
  a.D_skip = Dskip.get();
  a.z = z.get() + (zs - 1) * D;
  a.z_row_stride = zs * D;
  a.ssm_state_in = in.has_state ? st_in.get() : nullptr;
  a.ssm_state_out = static_cast<float*>(st_out.body());
  a.y = static_cast<bf16*>(y.body());
  const std::string v = mamba::get_or(c, "variant", "auto");
  if (v == "single")
    a.variant = cuda::ScanVariant::SinglePass;
  else if (v == "chunked")
    a.variant = cuda::ScanVariant::Chunked;
  else if (v != "auto")
    fail(ErrorKind::Usage, "SSM_SCAN: variant must be auto, single or chunked in " + c.str());
  a.tile = cuda::parse_scan_tile(mamba::get_or(c, "tile", "auto"));
  a.chunk_len = mamba::geti_or(c, "chunk", 0);
  run.variant = cuda::selective_scan_fwd(a);
  JB_CUDA(cudaDeviceSynchronize());
  run.guards_ok = y.guards_intact() && st_out.guards_intact();
  return {mamba::tensor("y", {B, L, D}, bf16_body(y, ny), CheckKind::Scan, 1),
          mamba::tensor("ssm_state", {B, D, N}, f32_body(st_out, ns), CheckKind::State)};
}

// ---- SSM_UPDATE: `steps` decode steps, state in place in a guarded buffer -----------------

Outputs update_kernel(const Case& c, KernelRun& run) {
  const mamba::ScanInputsHost in = mamba::scan_inputs(c, true);
  const int64_t B = in.B, S = in.L, D = in.D, N = in.N, zs = in.zstride, bp = in.bcpad;
  const int64_t bcw = bp + 2 * N;
  DeviceBuffer<bf16> x(in.u.size()), dt(in.dt.size());
  x.upload(cuda::to_bf16(in.u));
  dt.upload(cuda::to_bf16(in.dt));
  DeviceBuffer<bf16> z = upload_strided(in.z, B * S, D, zs * D, (zs - 1) * D);
  std::vector<float> bc(static_cast<size_t>(B * S * 2 * N));
  for (int64_t r = 0; r < B * S; ++r)
    for (int64_t n = 0; n < N; ++n) {
      bc[r * 2 * N + n] = in.Bm[r * N + n];
      bc[r * 2 * N + N + n] = in.Cm[r * N + n];
    }
  DeviceBuffer<bf16> bcbuf = upload_strided(bc, B * S, 2 * N, bcw, bp);
  DeviceBuffer<float> dt_bias = upload_f32(in.dt_bias), A_log = upload_f32(in.A_log),
                      Dskip = upload_f32(in.Dskip);
  const size_t ny = static_cast<size_t>(B * S * D), ns = static_cast<size_t>(B * D * N);
  GuardedBuffer y(ny * sizeof(bf16)), st(ns * sizeof(float));
  y.poison();
  st.poison();
  upload_body_f32(st, in.state);
  // Inputs are [B, steps, *]: step s of sequence b is row b * steps + s.
  for (int64_t s = 0; s < S; ++s) {
    cuda::StateUpdateArgs a;
    a.batch = B;
    a.dim = D;
    a.dstate = N;
    a.x = x.get() + s * D;
    a.x_row_stride = S * D;
    a.dt = dt.get() + s * D;
    a.dt_row_stride = S * D;
    a.dt_bias = dt_bias.get();
    a.A_log = A_log.get();
    a.B = bcbuf.get() + s * bcw + bp;
    a.B_row_stride = S * bcw;
    a.C = bcbuf.get() + s * bcw + bp + N;
    a.C_row_stride = S * bcw;
    a.D_skip = Dskip.get();
    a.z = z.get() + s * zs * D + (zs - 1) * D;
    a.z_row_stride = S * zs * D;
    a.state = static_cast<float*>(st.body());
    a.y = static_cast<bf16*>(y.body()) + s * D;
    a.y_row_stride = S * D;
    run.variant = cuda::selective_state_update(a);
  }
  JB_CUDA(cudaDeviceSynchronize());
  run.guards_ok = y.guards_intact() && st.guards_intact();
  return {mamba::tensor("y", {B, S, D}, bf16_body(y, ny), CheckKind::Scan, 1),
          mamba::tensor("ssm_state", {B, D, N}, f32_body(st, ns), CheckKind::State)};
}

// ---- MAMBA_LAYER: prefill L, then n decode steps ---------------------------------------------

cuda::MambaHostWeights host_weights(const mamba::LayerInputs& in) {
  cuda::MambaHostWeights w;
  w.in_proj = in.in_proj;
  w.conv_w = in.conv_w;
  w.conv_b = in.conv_b;
  w.x_proj = in.x_proj;
  w.dt_proj = in.dt_proj;
  w.dt_bias = in.dt_bias;
  w.A_log = in.A_log;
  w.D = in.D;
  w.out_proj = in.out_proj;
  w.dt_norm = in.dt_norm;
  w.b_norm = in.b_norm;
  w.c_norm = in.c_norm;
  return w;
}

Outputs layer_kernel(const Case& c, KernelRun& run) {
  const mamba::LayerInputs in = mamba::layer_inputs(c);
  const cuda::MambaDims dims = cuda::mamba_dims(in.cfg);
  const cuda::MambaLayerWeights w = cuda::upload_mamba_weights(host_weights(in), dims);
  const int64_t B = in.B, L = in.L, n = in.n, d = dims.d_model, Di = dims.d_inner, N = dims.d_state,
                K = dims.d_conv;
  // Prompt [B, L, d] and the decode tokens [n][B, d], cut from h [B, L + n, d].
  std::vector<float> prompt(static_cast<size_t>(B * L * d));
  for (int64_t b = 0; b < B; ++b)
    std::memcpy(&prompt[b * L * d], &in.h[b * (L + n) * d],
                static_cast<size_t>(L * d) * sizeof(float));
  DeviceBuffer<bf16> hp(prompt.size());
  hp.upload(cuda::to_bf16(prompt));
  cuda::MambaLayerState state = cuda::make_mamba_state(dims, B);
  cuda::MambaWorkspace ws;
  const size_t npre = static_cast<size_t>(B * L * d), ndec = static_cast<size_t>(B * n * d);
  GuardedBuffer pre(npre * sizeof(bf16)), dec(std::max<size_t>(ndec, 1) * sizeof(bf16));
  pre.poison();
  dec.poison();
  run.variant = "prefill:" +
                cuda::mamba_prefill(w, hp.get(), static_cast<bf16*>(pre.body()), B, L, state, ws);
  DeviceBuffer<bf16> ht(static_cast<size_t>(B * d)), ot(static_cast<size_t>(B * d));
  for (int64_t s = 0; s < n; ++s) {
    std::vector<float> tok(static_cast<size_t>(B * d));
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(&tok[b * d], &in.h[(b * (L + n) + L + s) * d],
                  static_cast<size_t>(d) * sizeof(float));
    ht.upload(cuda::to_bf16(tok));
    cuda::mamba_decode_step(w, ht.get(), ot.get(), state, ws);
    // Row b of this step goes to dec[b, s, :].
    JB_CUDA(cudaMemcpy2D(static_cast<bf16*>(dec.body()) + s * d, n * d * sizeof(bf16), ot.get(),
                         d * sizeof(bf16), d * sizeof(bf16), B, cudaMemcpyDeviceToDevice));
  }
  JB_CUDA(cudaDeviceSynchronize());
  run.guards_ok = pre.guards_intact() && dec.guards_intact();
  const std::vector<float> conv = cuda::from_bf16(state.conv.download());
  const std::vector<float> ssm = state.ssm.download();
  Outputs out;
  out.push_back(mamba::tensor("prefill_out", {B, L, d}, bf16_body(pre, npre), CheckKind::Scan, 1));
  if (n > 0)
    out.push_back(mamba::tensor("decode_out", {B, n, d}, bf16_body(dec, ndec), CheckKind::Scan, 1));
  out.push_back(mamba::tensor("conv_state", {B, Di, K}, conv, CheckKind::State));
  out.push_back(mamba::tensor("ssm_state", {B, Di, N}, ssm, CheckKind::State));
  return out;
}

}  // namespace

void register_mamba_ops(Registry& r) {
  for (OpInfo& op : mamba::listings()) {
    if (op.name == "CONV1D") op.kernel = conv_kernel;
    if (op.name == "CONV1D_UPDATE") op.kernel = conv_update_kernel;
    if (op.name == "SSM_SCAN") op.kernel = scan_kernel;
    if (op.name == "SSM_UPDATE") op.kernel = update_kernel;
    if (op.name == "MAMBA_LAYER") op.kernel = layer_kernel;
    r.add(std::move(op));
  }
}

}  // namespace jb::cmp
