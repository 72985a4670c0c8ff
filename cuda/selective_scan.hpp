// Mamba-1 selective scan, prefill (jamba-spec §2.4 steps 7-11; kernel contract §7.1):
//   delta = softplus(dt + dt_bias)      threshold 20: v <= 20 ? log1p(exp(v)) : v   (fp32)
//   A     = -exp(A_log)                 fp32, computed in the kernel
//   h_t   = exp(delta*A) * h_{t-1} + delta * B_t * u_t        fp32 state
//   y_t   = (sum_n h_t[n] C_t[n] + D * u_t) * silu(z_t)       fp32, one bf16 rounding at the end
// bf16 u, dt, B, C, z, y; fp32 dt_bias, A_log, D, state.
//
// Layouts (token-major, row = token): u, dt, z, y [B, L, D]; B, C [B, L, N]; each with its own
// row stride (elements between tokens; 0 = dense) and batch stride (0 = L * row stride), so the
// z half of in_proj's output (row stride 2D) and the B / C columns of x_proj's output (row stride
// R + 2N) are read in place. ssm_state [B, D, N] fp32 (in and out may be the same buffer).
//
// Variants (KernelRun.variant):
//   "single"         one pass, one block = 64 channels x 4 threads (tile g4 or ws below),
//                    sequential over all of L; time tiles staged in shared memory, the next tile
//                    prefetched into registers during compute.
//   "chunked(c=...)" L split in chunks run by different blocks: (1) each chunk's end state from
//                    zero and sum(delta); (2) a sequential combine over chunks gives each chunk
//                    its true initial state (h = exp(A * sum delta) * h + h_local); (3) the
//                    single-pass kernel per chunk from that state. Twice the exp work, used only
//                    when batch x channel blocks cannot fill the GPU.
// followed by the tile (",g4" or ",ws"; a chunked scan pinned to ws runs its pass 1 on g4).
// Supported: d_state <= 16, any L, any D, batch <= 65535. Deterministic (no atomics).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "cuda/common.cuh"

namespace jb::cuda {

enum class ScanVariant { Auto, SinglePass, Chunked };
// Block organisation (selective_scan.cu), both over 64 channels x 4 threads of 4 state entries
// and 32-step tiles: g4, every thread stages, scans and stores in turn (3 blocks per SM); ws,
// 8 more warps stage the next tile and store the last one while 8 warps scan (two tile buffers,
// one block per SM). Auto: ws for a single pass of at most one block per SM (batch 1 at
// d_inner 8192), g4 otherwise. The same bits either way.
enum class ScanTile { Auto, G4, WS };
const char* scan_tile_name(ScanTile t);
ScanTile parse_scan_tile(const std::string& s);  // Error{Usage} if unknown

struct ScanArgs {
  int64_t batch = 1, seqlen = 0, dim = 0, dstate = 16;
  const bf16* u = nullptr;
  int64_t u_row_stride = 0, u_batch_stride = 0;
  const bf16* dt = nullptr;
  int64_t dt_row_stride = 0, dt_batch_stride = 0;
  const float* dt_bias = nullptr;  // [D] or null
  bool delta_softplus = true;
  const float* A_log = nullptr;  // [D, N]
  const bf16* B = nullptr;       // [B, L, N]
  int64_t B_row_stride = 0, B_batch_stride = 0;
  const bf16* C = nullptr;
  int64_t C_row_stride = 0, C_batch_stride = 0;
  const float* D_skip = nullptr;  // [D] or null
  const bf16* z = nullptr;        // [B, L, D] or null (no gate)
  int64_t z_row_stride = 0, z_batch_stride = 0;
  const float* ssm_state_in = nullptr;  // [B, D, N] or null (zeros)
  float* ssm_state_out = nullptr;       // [B, D, N] or null
  bf16* y = nullptr;
  int64_t y_row_stride = 0, y_batch_stride = 0;

  ScanVariant variant = ScanVariant::Auto;
  ScanTile tile = ScanTile::Auto;
  // Chunked: tokens per chunk (rounded up to a multiple of 32); 0 = heuristic.
  int64_t chunk_len = 0;
  // Chunked scratch (selective_scan_workspace_bytes); null = an internal grow-only buffer
  // (not safe to share between host threads or to grow during graph capture).
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

// What runs: variant and tile with Auto resolved, and the chunk length (one chunk = single pass).
struct ScanPlan {
  ScanVariant variant = ScanVariant::SinglePass;
  ScanTile tile = ScanTile::G4;
  int64_t chunk_len = 0;
};
ScanPlan selective_scan_pick(const ScanArgs& a);
size_t selective_scan_workspace_bytes(const ScanArgs& a);

// Runs the scan on `stream`; returns what ran ("single,ws", "chunked(c=512),g4", with ",scalar"
// when the layout needs the unvectorised loads).
std::string selective_scan_fwd(const ScanArgs& a, cudaStream_t stream = nullptr);

}  // namespace jb::cuda
