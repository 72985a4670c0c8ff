// Selective scan kernels (contract and variants: selective_scan.hpp).
//
// Work split: a block owns kCB = 64 channels of one sequence and one time range; each channel is
// handled by kG = 4 consecutive threads, each holding 4 of the (up to) 16 state entries in
// registers, so a B = 1, D = 8192 scan already has 128 blocks x 8 warps (one per SM). Two block
// organisations over that split: g4 (every thread stages, scans and stores in turn) and ws (8
// more warps stage and store while the 8 scan; TileG4 and kWsStagers below). The
// y = sum_n h C contraction: each thread's 4 terms per step; every 4 steps the 4 threads of a
// channel exchange them in a two-round reduce-scatter (reduce_scatter), after which each holds
// the full sum of one step, stored to shared memory one group late and added to D u when y is
// stored (fixed order: deterministic).
// Measured on an H200 (2026-11-28): 2 entries per thread (kG = 8, kCB = 32: twice the warps
// per SM at B = 1) was slower, 1318 -> 1356 us at B = 1 L = 8K and 14.9 -> 18.0 ms at B = 16
// (more instructions per entry: shuffles and per-step loads over 2 entries instead of 4). That
// session read it as "bound by instructions"; the profile of 2026-11-29 says latency (see
// kMinBlocksPerSm): the kG = 8 split raised latency hiding and instruction count together.
// Measured on an H200 (2026-11-29, B = 1 L = 2K / 8K / 32K / 128K, B = 16 L = 8K):
//   one shuffle and a shared-memory store of a pair sum per step (the loads of step t + 1 sat
//   behind step t's store, so the steps ran one after another):  366 / 1314 / 5198 / 20735 us,
//   13.16 ms
//   4-step groups, reduce-scatter, stored at once; fast SiLU in staging: 277 / 1032 / 4062 /
//   16236 us, 11.59 ms
//   the same, each group's store one group late: 260 / 968 / 3824 / 15253 us, 11.21 ms
//   the same with the polynomial softplus (ssm_math.cuh; staging ~490 -> ~330 instructions per
//   thread and tile): 242 / 907 / 3578 / 14268 us, 10.82 ms (g4 today)
//   ws for B = 1 (2026-11-29, later): 193 / 739 / 2910 / 11631 us (B = 16 stays on g4)
//   the decay's polynomial on |x| < 1/16 with a quadratic instead of 1/4 with a cubic
//   (ssm_math.cuh; one FMA less per state entry): 186 / 710 / 2796 / 11167 us, 10.38 ms
//   (results/h200-2026-11-29h, call 6)
//   the decay's select as a predicated ex2 (ssm_math.cuh; 47.2 -> 43.8 instructions per step in
//   ws's loop): ws at B = 1 L = 2K / 8K 179-181 / 685-686 us (results/h200-2026-11-29k, call 2)
//   rejected: two stages in shared memory (74.5 KB), the next tile staged in halves inside the
//   loop, one barrier per tile: 311 / 1162 / 4576 / 18272 us, 11.92 ms; an instance for one
//   block per SM (up to 255 registers) at B = 1: 1128 -> 1162 us at 8K (slower).
//
// Per time tile of kT = 32 steps, the block stages u, delta = softplus(dt + bias), delta * u,
// silu(z), B and C in shared memory as fp32 (computed once per (t, c), not per state entry);
// the next tile's raw bf16 is loaded into registers while the current one is computed, so its
// memory latency is hidden behind ~32 sequential steps. y is written back through shared memory
// as 16-byte stores.
#include "cuda/selective_scan.hpp"

#include <algorithm>
#include <mutex>

#include "cuda/hopper.cuh"
#include "cuda/ssm_math.cuh"

namespace jb::cuda {
namespace {

using ssm_math::exp2_decay;
using ssm_math::kLog2e;
using ssm_math::softplus_f;

constexpr int kMaxN = 16;  // state entries per channel supported

// One block = kCB channels of one sequence over one time range; each channel is handled by kG
// consecutive threads holding kNPer = 16 / kG of its state entries; time tiles of kT steps are
// staged in shared memory. kMinBlocks is __launch_bounds__'s blocks per SM.
template <int CB, int G, int T, int MinBlocks>
struct Tile {
  static constexpr int kCB = CB, kG = G, kT = T, kMinBlocks = MinBlocks;
  static constexpr int kNPer = kMaxN / kG;
  static constexpr int kThreads = kCB * kG;   // scanning threads
  static constexpr int kVecPerRow = kCB / 8;  // 16-byte vectors per [L, D] tile row
  // ysum row padding: the kG steps a channel's threads store at once (rows r..r+kG-1, 32 / kG
  // channels per warp) land in distinct banks (row stride = kCB + 32 / kG = 32 / kG mod 32).
  static constexpr int kYPad = 32 / kG;
  static_assert(kNPer == 4, "4 state entries per thread (one float4 of B, C per step)");
  static_assert(kT % kG == 0, "whole step groups per tile");
};
// g4: 64 channels x 4 threads x 4 entries, 32-step tiles, 3 blocks per SM (<= 80 registers).
// The kernel is bound by latency, not issue slots (Nsight Compute on an H200, 2026-11-29, B = 16
// L = 8K: short-scoreboard (MUFU, shared loads) and fixed-latency stalls lead; 20% fewer
// instructions per step left the time unchanged at 63% issue), so warps per SM decide:
// measured B = 1 L = 2K / 8K / 32K / 128K, B = 16 L = 8K:
//   kT 64, 2 blocks (90-99 registers)  356 / 1348 / 5306 / 21178 us, 14.79 ms
//   kT 32, 3 blocks                     335 / 1331 / 5203 / 20740 us, 13.17 ms
//   kT 32, 4 blocks (64 registers, spills 8-16 bytes)  443 / 1480 / 5840 / 23222 us, 13.08 ms
// and again on the 4-step-group loop with the polynomial softplus (2026-11-29, same run):
//   3 blocks  241 / 906 / 3563 / 14205 us, 10.81 ms;  4 blocks (64 registers, spills 12-20 bytes)
//   261 / 992 / 3913 / 15612 us, 10.87 ms
// B = 16 runs 2048 blocks on 396 slots (5.2 waves): the last wave's 68 blocks run one per SM,
// and a lone block takes ~0.91 ms at L = 8K (the B = 1 row), so roughly that much of the 10.8 ms
// is a tail with most SMs idle (an estimate, not profiled).
// Rejected (H200, 2026-11-29): Tile<32, 8, 64, 2>, 8 threads of 2 entries per channel, twice
// the warps per SM at B = 1: 248 / 944 / 3722 / 14870 us, 14.41 ms against g4's 235 / 914 /
// 3604 / 14387 us, 10.85 ms in the same run. Doubling the warps did not speed up B = 1, so B = 1
// is not short of warps; what it lacks is overlap between a tile's phases (next paragraph).
using TileG4 = Tile<64, 4, 32, 3>;

// ws ("warp-specialised"): g4's 8 scanning warps plus 8 staging warps per block and two tile
// buffers. The stagers load and stage tile k + 1 and store tile k - 1's y while the scanners run
// tile k. In g4 one block does load, staging, scan and store in turn between __syncthreads,
// which other blocks on the SM overlap at B = 16 (3 per SM) but nothing does at B = 1 (one block
// per SM). Nsight Compute, H200, B = 1 L = 2K, g4 (2026-11-29): of the warp samples, 23.7% fall
// in staging (20% of them issuing), 65.4% in the scan loop (35% issuing) and 10.3% in the y
// store and the barrier before it (7% issuing: warps waiting for the block's slowest scanner).
// Measured on an H200, B = 1 L = 2K / 8K / 32K / 128K (2026-11-29; results/h200-2026-11-29f,
// calls 2, 6 and 7):
//   g4                                                    234 / 905 / 3561 / 14207 us
//   ws, 4 staging warps (2 vectors each), named barriers   239 / 915 / 3638 / 14513 us
//     (no faster: a bar.sync over all threads kept every scanner waiting for the slowest
//     scanner and for 4 stagers doing twice g4's per-thread staging)
//   ws, 8 staging warps, mbarriers (scanners wait only for the stagers and the reverse)
//                                                         195 / 747 / 2951 / 11781 us
//   the same, scanners on scan_tile_full_pipelined (this code)  193 / 739 / 2910 / 11631 us
//   the same with 4 staging warps at 2 blocks per SM      245 / 938 / 3718 / 14763 us
// and at B = 16 L = 8K (one ws block per SM; g4 runs 3): g4 10.79 ms, ws 11.79 ms, ws with 4
// staging warps at 2 blocks per SM 11.76 ms. Also rejected: (delta, delta u) interleaved as
// float2 for one 8-byte load per step: g4 +4% (it spilled), ws +1%.
// Rejected (H200, 2026-11-29, results/h200-2026-11-29j): the stagers computing the decays
// exp2_decay(delta A) of the next tile into shared memory (16-step tiles, 2 x 64 KB of decays),
// the scanners reading them with one 16-byte load per step instead of 4 exps (scanner loop 47 ->
// 21 instructions per step; same values, compare --quick SSM_SCAN and MAMBA_LAYER 49/49). At
// B = 1, per step: ws 86 ns; this 181 ns, and 144 ns with the raw inputs loaded two tiles ahead
// and a tile's 16 deltas read before its exps. Nsight Compute at L = 2K: 184 shared-memory
// wavefronts per step and SM (ws ~46: every decay is written and read once more), 0.44 issued
// warps per scheduler, stalls long and short scoreboard, then barrier. The exps are not
// movable at this width without moving their 8 bytes per state entry and step through shared
// memory.
// Rejected (H200, 2026-11-29, results/h200-2026-11-29k, call 2; the patch is there): ws with 2
// scanning threads of 8 entries per channel (Tile<64, 2, 32, 1>, 4 scanning warps; 81 against
// 2 x 43.8 instructions per channel and step): 282-303 us at B = 1 L = 2K and 1087-1162 us at 8K
// against ws's 179-189 / 685-709 in the same runs. One scanning warp per scheduler cannot hide
// the shared-load and MUFU latencies with its own 8 entries.
// The stagers take g4's staging split (Staging<TileG4>): one staging thread per g4 thread.
constexpr int kWsStagers = TileG4::kThreads;
constexpr int kWsThreads = TileG4::kThreads + kWsStagers;

enum class Mode { Full, ChunkState };

struct Params {
  int64_t seqlen, dim, dstate;
  const bf16* u;
  int64_t u_rs, u_bs;
  const bf16* dt;
  int64_t dt_rs, dt_bs;
  const float* dt_bias;
  bool softplus;
  const float* A_log;
  const bf16* B;
  int64_t B_rs, B_bs;
  const bf16* C;
  int64_t C_rs, C_bs;
  bool bc_vec;  // B and C rows are 16 aligned bf16 (N == 16, strides % 8 == 0)
  const float* D_skip;
  const bf16* z;
  int64_t z_rs, z_bs;
  // Initial state: state_in + ((b * state_in_chunks + chunk) * D + c) * N (null = zeros).
  const float* state_in;
  int64_t state_in_chunks;
  float* state_out;  // Full mode: [B, D, N] final state (null = not written)
  bf16* y;
  int64_t y_rs, y_bs;
  int64_t chunk_len;  // tokens per blockIdx.y
  // ChunkState mode outputs: local end state [B, chunks, D, N] and sum(delta) [B, chunks, D].
  float* ws_h;
  float* ws_s;
};

// clamp(x, 0, 8): how many of 8 consecutive elements are valid.
__device__ __forceinline__ int clamp8(int64_t x) {
  return x <= 0 ? 0 : x >= 8 ? 8 : static_cast<int>(x);
}

// 8 bf16 at p (elements [0, nvalid) valid, others 0) as raw bits.
template <bool kVec>
__device__ __forceinline__ uint4 load8(const bf16* p, int nvalid) {
  uint4 r = make_uint4(0, 0, 0, 0);
  if (kVec) {
    if (nvalid >= 8) r = __ldg(reinterpret_cast<const uint4*>(p));
  } else {
    uint16_t v[8];
#pragma unroll
    for (int i = 0; i < 8; ++i)
      v[i] = i < nvalid ? __bfloat16_as_ushort(p[i]) : static_cast<uint16_t>(0);
    r.x = v[0] | (uint32_t(v[1]) << 16);
    r.y = v[2] | (uint32_t(v[3]) << 16);
    r.z = v[4] | (uint32_t(v[5]) << 16);
    r.w = v[6] | (uint32_t(v[7]) << 16);
  }
  return r;
}

// One staged time tile.
template <class Tl>
struct Stage {
  float u[Tl::kT][Tl::kCB];
  float delta[Tl::kT][Tl::kCB];
  float du[Tl::kT][Tl::kCB];  // delta * u, the input term's common factor
  float gz[Tl::kT][Tl::kCB];  // silu(z)
  // y = sum_n h C per (t, c), summed in the loop (reduce_scatter).
  float ysum[Tl::kT][Tl::kCB + Tl::kYPad];
  float B[Tl::kT][kMaxN];
  float C[Tl::kT][kMaxN];
};

template <class Tl>
struct Smem {
  Stage<Tl> st;
  float bias[Tl::kCB];
  float d_skip[Tl::kCB];
};

struct WsSmem {
  Stage<TileG4> st[2];
  float bias[TileG4::kCB];
  float d_skip[TileG4::kCB];
  uint64_t full[2];  // stagers -> scanners: buffer i holds a staged tile
  uint64_t done[2];  // scanners -> stagers: buffer i is scanned (ysum written, inputs read)
};

// The staging work of a tile is split over Tl::kThreads threads (tid in [0, kThreads): g4's
// threads, or ws's stagers, as many): kDVec 16-byte vectors of each [L, D] tensor per thread,
// and one B or C half-row for threads below 4 kT.
template <class Tl>
struct Staging {
  static constexpr int kDVec = Tl::kT * Tl::kVecPerRow / Tl::kThreads;
  static_assert(kDVec >= 1 && kDVec * Tl::kThreads == Tl::kT * Tl::kVecPerRow,
                "whole vectors per thread");
  static_assert(Tl::kT * 2 * 2 <= Tl::kThreads,
                "at most one 16-byte B or C vector per thread per tile");
};

// Raw bf16 of one tile, held in registers between its load and its staging.
template <class Tl>
struct Prefetch {
  static constexpr int kDVec = Staging<Tl>::kDVec;
  uint4 u[kDVec], dt[kDVec], z[kDVec];
  uint4 bc;
};

template <class Tl, Mode kMode, bool kVec>
__device__ __forceinline__ void load_tile(const Params& p, int tid, int64_t b, int64_t c0,
                                          int64_t t0, int64_t t_end, Prefetch<Tl>& f) {
#pragma unroll
  for (int k = 0; k < Staging<Tl>::kDVec; ++k) {
    const int v = tid + k * Tl::kThreads;
    const int64_t t = t0 + v / Tl::kVecPerRow;
    const int64_t c = c0 + (v % Tl::kVecPerRow) * 8;
    const int nvalid = (t < t_end && c < p.dim) ? clamp8(p.dim - c) : 0;
    f.u[k] = load8<kVec>(p.u + b * p.u_bs + t * p.u_rs + c, nvalid);
    f.dt[k] = load8<kVec>(p.dt + b * p.dt_bs + t * p.dt_rs + c, nvalid);
    if (kMode == Mode::Full && p.z != nullptr)
      f.z[k] = load8<kVec>(p.z + b * p.z_bs + t * p.z_rs + c, nvalid);
  }
  // B rows by threads [0, 2 kT), C rows by [2 kT, 4 kT): row t, half h covers n in [8h, 8h + 8).
  const bool is_c = tid >= 2 * Tl::kT;
  if (tid >= 4 * Tl::kT || (kMode == Mode::ChunkState && is_c)) return;
  const int v = is_c ? tid - 2 * Tl::kT : tid;
  const int64_t t = t0 + v / 2;
  const int n0 = (v % 2) * 8;
  const int nvalid = t < t_end ? clamp8(p.dstate - n0) : 0;
  const bf16* src = is_c ? p.C + b * p.C_bs + t * p.C_rs : p.B + b * p.B_bs + t * p.B_rs;
  f.bc = p.bc_vec ? load8<true>(src + n0, nvalid) : load8<false>(src + n0, nvalid);
}

template <class Tl, Mode kMode>
__device__ __forceinline__ void stage_tile(const Params& p, int tid, int64_t t0, int64_t t_end,
                                           const Prefetch<Tl>& f, const float* bias, Stage<Tl>& s) {
#pragma unroll
  for (int k = 0; k < Staging<Tl>::kDVec; ++k) {
    const int v = tid + k * Tl::kThreads;
    const int row = v / Tl::kVecPerRow;
    const int col = (v % Tl::kVecPerRow) * 8;
    const bool valid_t = t0 + row < t_end;
    float uu[8], dd[8];
    dev::bf16x8_to_f32(f.u[k], uu);
    dev::bf16x8_to_f32(f.dt[k], dd);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const float pre = dd[i] + bias[col + i];
      // Steps past the end get delta = 0: exp(0 * A) = 1 and no input, so h is unchanged.
      dd[i] = valid_t ? (p.softplus ? softplus_f(pre) : pre) : 0.0f;
    }
    *reinterpret_cast<float4*>(&s.u[row][col]) = make_float4(uu[0], uu[1], uu[2], uu[3]);
    *reinterpret_cast<float4*>(&s.u[row][col + 4]) = make_float4(uu[4], uu[5], uu[6], uu[7]);
    *reinterpret_cast<float4*>(&s.delta[row][col]) = make_float4(dd[0], dd[1], dd[2], dd[3]);
    *reinterpret_cast<float4*>(&s.delta[row][col + 4]) = make_float4(dd[4], dd[5], dd[6], dd[7]);
    float du[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) du[i] = dd[i] * uu[i];
    *reinterpret_cast<float4*>(&s.du[row][col]) = make_float4(du[0], du[1], du[2], du[3]);
    *reinterpret_cast<float4*>(&s.du[row][col + 4]) = make_float4(du[4], du[5], du[6], du[7]);
    if (kMode == Mode::Full) {
      float zz[8];
      if (p.z != nullptr) {
        dev::bf16x8_to_f32(f.z[k], zz);
#pragma unroll
        for (int i = 0; i < 8; ++i) zz[i] = dev::silu_fast(zz[i]);  // only rounded into bf16 y
      } else {
#pragma unroll
        for (int i = 0; i < 8; ++i) zz[i] = 1.0f;
      }
      *reinterpret_cast<float4*>(&s.gz[row][col]) = make_float4(zz[0], zz[1], zz[2], zz[3]);
      *reinterpret_cast<float4*>(&s.gz[row][col + 4]) = make_float4(zz[4], zz[5], zz[6], zz[7]);
    }
  }
  const bool is_c = tid >= 2 * Tl::kT;
  if (tid >= 4 * Tl::kT || (kMode == Mode::ChunkState && is_c)) return;
  const int v = is_c ? tid - 2 * Tl::kT : tid;
  float bc[8];
  dev::bf16x8_to_f32(f.bc, bc);
  float* dst = is_c ? &s.C[v / 2][(v % 2) * 8] : &s.B[v / 2][(v % 2) * 8];
  *reinterpret_cast<float4*>(dst) = make_float4(bc[0], bc[1], bc[2], bc[3]);
  *reinterpret_cast<float4*>(dst + 4) = make_float4(bc[4], bc[5], bc[6], bc[7]);
}

template <class Tl, bool kVec>
__device__ __forceinline__ void store_y_tile(const Params& p, int tid, int64_t b, int64_t c0,
                                             int64_t t0, int64_t t_end, const float* d_skip,
                                             const Stage<Tl>& s) {
#pragma unroll
  for (int k = 0; k < Staging<Tl>::kDVec; ++k) {
    const int v = tid + k * Tl::kThreads;
    const int row = v / Tl::kVecPerRow;
    const int col = (v % Tl::kVecPerRow) * 8;
    const int64_t t = t0 + row;
    const int64_t c = c0 + col;
    if (t >= t_end || c >= p.dim) continue;
    bf16* dst = p.y + b * p.y_bs + t * p.y_rs + c;
    // y = (sum_n h C + D u) silu(z), jamba-spec §2.4 steps 10-11.
    float src[8];
#pragma unroll
    for (int i = 0; i < 8; ++i)
      src[i] = fmaf(d_skip[col + i], s.u[row][col + i], s.ysum[row][col + i]) * s.gz[row][col + i];
    if (kVec) {
      uint32_t w[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) w[i] = dev::pack_bf16x2(src[2 * i], src[2 * i + 1]);
      *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
    } else {
      const int nvalid = clamp8(p.dim - c);
#pragma unroll
      for (int i = 0; i < 8; ++i)
        if (i < nvalid) dst[i] = __float2bfloat16_rn(src[i]);
    }
  }
}

// 4 consecutive floats from shared memory (16-byte aligned).
__device__ __forceinline__ void load4(const float* p, float (&v)[4]) {
  const float4 q = *reinterpret_cast<const float4*>(p);
  v[0] = q.x;
  v[1] = q.y;
  v[2] = q.z;
  v[3] = q.w;
}

// One step of h = exp(delta A) h + delta B u for this thread's kN entries (jamba-spec §2.4
// steps 8-9), with du = delta * u from staging and A2 = A log2(e).
template <int kN>
__device__ __forceinline__ void advance_state(float d, float du, const float* B_row,
                                              const float (&A2)[kN], float (&h)[kN]) {
  float bv[kN];
  load4(B_row, bv);
#pragma unroll
  for (int j = 0; j < kN; ++j) h[j] = fmaf(exp2_decay(d * A2[j]), h[j], bv[j] * du);
}

// This thread's part of y = sum_n h C: its kN entries, in a fixed order.
template <int kN>
__device__ __forceinline__ float partial_y(const float* C_row, const float (&h)[kN]) {
  float cv[kN];
  load4(C_row, cv);
  float y = h[0] * cv[0];
#pragma unroll
  for (int j = 1; j < kN; ++j) y = fmaf(h[j], cv[j], y);
  return y;
}

// Which of kG consecutive steps thread g of a channel ends up holding in reduce_scatter: round
// i keeps the upper half of the live steps when bit i of g is set.
template <int kG>
__device__ __forceinline__ int reduce_step(int g) {
  int step = 0;
#pragma unroll
  for (int i = 0; (1 << i) < kG; ++i) step += ((g >> i) & 1) * (kG >> (i + 1));
  return step;
}

// The kG threads of a channel each hold partial sums yp[k] (their entries) for steps
// k = 0..kG-1; returns the full sum over all entries of step reduce_step(g). log2(kG) butterfly
// rounds (partner g ^ 2^i) that halve the live steps each time: kG - 1 shuffles instead of
// kG (kG - 1). Every step's sum is formed by one fixed tree whichever thread adds (a + b = b + a
// in IEEE), so the result is the same bits on every run.
template <int kG>
__device__ __forceinline__ float reduce_scatter(const float (&yp)[kG], int g) {
  float v[kG];
#pragma unroll
  for (int k = 0; k < kG; ++k) v[k] = yp[k];
#pragma unroll
  for (int i = 0; (1 << i) < kG; ++i) {
    const int half = kG >> (i + 1);
    const bool up = (g >> i) & 1;
#pragma unroll
    for (int j = 0; j < half; ++j) {
      const float r = __shfl_xor_sync(0xffffffffu, up ? v[j] : v[j + half], 1 << i);
      v[j] = (up ? v[j + half] : v[j]) + r;
    }
  }
  return v[0];
}

// The decay exp(delta A) and input delta B u of one step for this thread's kN entries.
template <int kN>
struct StepTerms {
  float a[kN], bu[kN];
};

template <class Tl>
__device__ __forceinline__ StepTerms<Tl::kNPer> step_terms(const Stage<Tl>& s, int tt, int cl,
                                                           int g, const float (&A2)[Tl::kNPer]) {
  StepTerms<Tl::kNPer> r;
  const float d = s.delta[tt][cl], du = s.du[tt][cl];
  float bv[Tl::kNPer];
  load4(&s.B[tt][g * Tl::kNPer], bv);
#pragma unroll
  for (int j = 0; j < Tl::kNPer; ++j) {
    r.a[j] = exp2_decay(d * A2[j]);
    r.bu[j] = bv[j] * du;
  }
  return r;
}

// scan_tile_full with the terms of group grp + 1 (shared loads, exps) written before group grp's
// state chain, shuffles and store, so that an in-order warp has the next group's independent
// work to issue while this group's dependent chain waits. The same operations on the same
// values as scan_tile_full: the same bits. Measured (H200, 2026-11-29): in ws 1-2% faster at
// B = 1 (747 -> 739 us at 8K); as g4's loop 2-3% faster at B = 1 but 0.5% slower at B = 16
// (10.79 -> 10.84 ms, 3 blocks per SM at <= 80 registers), so g4 keeps scan_tile_full.
template <class Tl>
__device__ __forceinline__ void scan_tile_full_pipelined(Stage<Tl>& s, int cl, int g,
                                                         const float (&A2)[Tl::kNPer],
                                                         float (&h)[Tl::kNPer]) {
  constexpr int kG = Tl::kG, kNPer = Tl::kNPer, kT = Tl::kT, kGroups = kT / kG;
  StepTerms<kNPer> cur[kG], nxt[kG];
#pragma unroll
  for (int k = 0; k < kG; ++k) cur[k] = step_terms(s, k, cl, g, A2);
  float ysum_prev = 0.0f;
#pragma unroll
  for (int grp = 0; grp < kGroups; ++grp) {
    if (grp + 1 < kGroups) {
#pragma unroll
      for (int k = 0; k < kG; ++k) nxt[k] = step_terms(s, (grp + 1) * kG + k, cl, g, A2);
    }
    float yp[kG];
#pragma unroll
    for (int k = 0; k < kG; ++k) {
#pragma unroll
      for (int j = 0; j < kNPer; ++j) h[j] = fmaf(cur[k].a[j], h[j], cur[k].bu[j]);
      yp[k] = partial_y(&s.C[grp * kG + k][g * kNPer], h);
    }
    if (grp > 0) s.ysum[(grp - 1) * kG + reduce_step<kG>(g)][cl] = ysum_prev;
    ysum_prev = reduce_scatter<kG>(yp, g);
#pragma unroll
    for (int k = 0; k < kG; ++k) cur[k] = nxt[k];
  }
  s.ysum[kT - kG + reduce_step<kG>(g)][cl] = ysum_prev;
}

// The kT steps of one staged tile for this thread's entries; writes each step's sum_n h C to
// s.ysum (Full mode).
template <class Tl>
__device__ __forceinline__ void scan_tile_full(Stage<Tl>& s, int cl, int g,
                                               const float (&A2)[Tl::kNPer],
                                               float (&h)[Tl::kNPer]) {
  constexpr int kG = Tl::kG, kNPer = Tl::kNPer, kT = Tl::kT;
  // Each group's sum is stored one group late, after the next group's loads and exps in
  // program order: stored at once, it would keep those loads behind it (and so behind its
  // shuffles) in the in-order issue.
  float ysum_prev = 0.0f;
#pragma unroll
  for (int grp = 0; grp < kT / kG; ++grp) {
    // kG steps in registers, then one reduction for all of them: no shared-memory store between
    // one step's loads and the next's, so the compiler can issue the loads and exps of all kG
    // steps ahead of the state chain (a per-step store had serialised the steps).
    float yp[kG];
#pragma unroll
    for (int k = 0; k < kG; ++k) {
      const int tt = grp * kG + k;
      advance_state(s.delta[tt][cl], s.du[tt][cl], &s.B[tt][g * kNPer], A2, h);
      yp[k] = partial_y(&s.C[tt][g * kNPer], h);
    }
    if (grp > 0) s.ysum[(grp - 1) * kG + reduce_step<kG>(g)][cl] = ysum_prev;
    ysum_prev = reduce_scatter<kG>(yp, g);
  }
  s.ysum[kT - kG + reduce_step<kG>(g)][cl] = ysum_prev;
}

// A2 = A * log2(e), A = -exp(A_log) in fp32 (jamba-spec §2.4 step 8), so that
// exp(delta * A) = 2^(delta * A2); entries n >= N get A2 = 0 and B = C = 0, so they stay 0 and
// contribute nothing. h = the chunk's initial state (zeros without one).
template <int kN>
__device__ __forceinline__ void init_state(const Params& p, int64_t b, int64_t chunk, int64_t c,
                                           int g, float (&A2)[kN], float (&h)[kN]) {
  const bool c_ok = c < p.dim;
  const int64_t sidx = c * p.dstate;
#pragma unroll
  for (int j = 0; j < kN; ++j) {
    const int n = g * kN + j;
    const bool ok = c_ok && n < p.dstate;
    A2[j] = ok ? -expf(p.A_log[sidx + n]) * kLog2e : 0.0f;
    h[j] = (ok && p.state_in != nullptr)
               ? p.state_in[((b * p.state_in_chunks + chunk) * p.dim + c) * p.dstate + n]
               : 0.0f;
  }
}

template <int kN>
__device__ __forceinline__ void write_state(const Params& p, int64_t b, int64_t c, int g,
                                            const float (&h)[kN]) {
  if (c >= p.dim || p.state_out == nullptr) return;
#pragma unroll
  for (int j = 0; j < kN; ++j) {
    const int n = g * kN + j;
    if (n < p.dstate) p.state_out[(b * p.dim + c) * p.dstate + n] = h[j];
  }
}

template <class Tl, Mode kMode, bool kVec>
__global__ void __launch_bounds__(Tl::kThreads, Tl::kMinBlocks) scan_kernel(Params p) {
  constexpr int kG = Tl::kG, kNPer = Tl::kNPer, kT = Tl::kT, kCB = Tl::kCB;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  Smem<Tl>& s = *reinterpret_cast<Smem<Tl>*>(smem_raw);
  const int tid = threadIdx.x;
  const int cl = tid / kG;  // channel within the block
  const int g = tid % kG;   // which kNPer state entries
  const int64_t b = blockIdx.z;
  const int64_t chunk = blockIdx.y;
  const int64_t c0 = int64_t(blockIdx.x) * kCB;
  const int64_t c = c0 + cl;
  const int64_t t_begin = chunk * p.chunk_len;
  const int64_t t_stop = min(p.seqlen, t_begin + p.chunk_len);

  if (tid < kCB) {
    const bool ok = c0 + tid < p.dim;
    s.bias[tid] = (p.dt_bias != nullptr && ok) ? p.dt_bias[c0 + tid] : 0.0f;
    s.d_skip[tid] = (kMode == Mode::Full && p.D_skip != nullptr && ok) ? p.D_skip[c0 + tid] : 0.0f;
  }
  float A2[kNPer], h[kNPer];
  init_state(p, b, chunk, c, g, A2, h);
  float delta_sum = 0.0f;

  Prefetch<Tl> f;
  load_tile<Tl, kMode, kVec>(p, tid, b, c0, t_begin, t_stop, f);
  for (int64_t t0 = t_begin; t0 < t_stop; t0 += kT) {
    __syncthreads();  // previous tile's compute and y store are done with shared memory
    stage_tile<Tl, kMode>(p, tid, t0, t_stop, f, s.bias, s.st);
    __syncthreads();
    if (t0 + kT < t_stop) load_tile<Tl, kMode, kVec>(p, tid, b, c0, t0 + kT, t_stop, f);
    if (kMode == Mode::Full) {
      scan_tile_full<Tl>(s.st, cl, g, A2, h);
      __syncthreads();
      store_y_tile<Tl, kVec>(p, tid, b, c0, t0, t_stop, s.d_skip, s.st);
    } else {
#pragma unroll 4
      for (int tt = 0; tt < kT; ++tt) {
        const float d = s.st.delta[tt][cl];
        advance_state(d, s.st.du[tt][cl], &s.st.B[tt][g * kNPer], A2, h);
        delta_sum += d;
      }
    }
  }

  if (kMode == Mode::Full) {
    write_state(p, b, c, g, h);
  } else if (c < p.dim) {
    const int64_t nchunks = gridDim.y;
    const int64_t w = (b * nchunks + chunk) * p.dim + c;
#pragma unroll
    for (int j = 0; j < kNPer; ++j) {
      const int n = g * kNPer + j;
      if (n < p.dstate) p.ws_h[w * p.dstate + n] = h[j];
    }
    if (g == 0) p.ws_s[w] = delta_sum;
  }
}

// Full mode only (single pass, and pass 3 of the chunked scan). Warps 0-7 scan exactly as g4's
// threads do (same entries per thread, same order of operations: the same bits); warps 8-15
// stage, one (t, c) vector each per tile as in g4. Tile k uses buffer k % 2: the stagers fill it
// once tile k - 2 has been scanned and its y stored, so they run one tile ahead. mbarriers, not
// named barriers: a scanner warp waits for the stagers only, never for the other scanners, and
// the reverse.
template <bool kVec>
__global__ void __launch_bounds__(kWsThreads, 1) scan_ws_kernel(Params p) {
  using Tl = TileG4;
  constexpr int kG = Tl::kG, kNPer = Tl::kNPer, kT = Tl::kT, kCB = Tl::kCB;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  WsSmem& s = *reinterpret_cast<WsSmem*>(smem_raw);
  const int tid = threadIdx.x;
  const int64_t b = blockIdx.z;
  const int64_t chunk = blockIdx.y;
  const int64_t c0 = int64_t(blockIdx.x) * kCB;
  const int64_t t_begin = chunk * p.chunk_len;
  const int64_t t_stop = min(p.seqlen, t_begin + p.chunk_len);
  const int ntiles = static_cast<int>((t_stop - t_begin + kT - 1) / kT);

  if (tid < kCB) {
    const bool ok = c0 + tid < p.dim;
    s.bias[tid] = (p.dt_bias != nullptr && ok) ? p.dt_bias[c0 + tid] : 0.0f;
    s.d_skip[tid] = (p.D_skip != nullptr && ok) ? p.D_skip[c0 + tid] : 0.0f;
  }
  if (tid == 0) {
    for (int i = 0; i < 2; ++i) {
      dev::mbar_init(&s.full[i], kWsStagers);
      dev::mbar_init(&s.done[i], Tl::kThreads);
    }
  }
  __syncthreads();

  if (tid < Tl::kThreads) {  // scanners
    const int cl = tid / kG, g = tid % kG;
    const int64_t c = c0 + cl;
    float A2[kNPer], h[kNPer];
    init_state(p, b, chunk, c, g, A2, h);
    for (int k = 0; k < ntiles; ++k) {
      dev::mbar_wait(&s.full[k & 1], (k >> 1) & 1);
      scan_tile_full_pipelined<Tl>(s.st[k & 1], cl, g, A2, h);
      dev::mbar_arrive(&s.done[k & 1]);
    }
    write_state(p, b, c, g, h);
    return;
  }

  // Stagers. Each reads (for its y store) and writes (staging) the same (row, column) vector of
  // a buffer, and the B / C rows it stages are not read by the store, so no barrier among them.
  const int st = tid - Tl::kThreads;
  auto store = [&](int k) {  // y of tile k, once the scanners are done with it
    dev::mbar_wait(&s.done[k & 1], (k >> 1) & 1);
    store_y_tile<Tl, kVec>(p, st, b, c0, t_begin + int64_t(k) * kT, t_stop, s.d_skip, s.st[k & 1]);
  };
  Prefetch<Tl> f;
  load_tile<Tl, Mode::Full, kVec>(p, st, b, c0, t_begin, t_stop, f);
  for (int k = 0; k < ntiles; ++k) {
    const int64_t t0 = t_begin + int64_t(k) * kT;
    if (k >= 2) store(k - 2);
    stage_tile<Tl, Mode::Full>(p, st, t0, t_stop, f, s.bias, s.st[k & 1]);
    if (k + 1 < ntiles) load_tile<Tl, Mode::Full, kVec>(p, st, b, c0, t0 + kT, t_stop, f);
    dev::mbar_arrive(&s.full[k & 1]);
  }
  for (int k = max(0, ntiles - 2); k < ntiles; ++k) store(k);
}

// Pass 2 of the chunked scan: one thread per (b, c, n), sequential over chunks. Turns each
// chunk's local end state into the chunk's true initial state (in place) and writes the final
// state: h_k+1 = exp(A * sum_k delta) * h_k + h_local_k.
__global__ void scan_combine_kernel(int64_t batch, int64_t dim, int64_t dstate, int64_t nchunks,
                                    const float* A_log, const float* state_in, float* state_out,
                                    float* ws_h, const float* ws_s) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= batch * dim * dstate) return;
  const int64_t n = i % dstate;
  const int64_t c = (i / dstate) % dim;
  const int64_t b = i / (dstate * dim);
  const float a2 = -expf(A_log[c * dstate + n]) * kLog2e;
  float h = state_in != nullptr ? state_in[i] : 0.0f;
  for (int64_t k = 0; k < nchunks; ++k) {
    const int64_t w = (b * nchunks + k) * dim + c;
    const float local = ws_h[w * dstate + n];
    ws_h[w * dstate + n] = h;
    h = fmaf(exp2_decay(a2 * ws_s[w]), h, local);
  }
  if (state_out != nullptr) state_out[i] = h;
}

template <class Tl, Mode kMode, bool kVec>
void launch_scan(const Params& p, dim3 grid, cudaStream_t stream) {
  // (45.5 KB, under the 48 KB default; kept so a larger tile keeps working.)
  allow_dynamic_smem<scan_kernel<Tl, kMode, kVec>>(sizeof(Smem<Tl>));
  scan_kernel<Tl, kMode, kVec><<<grid, Tl::kThreads, sizeof(Smem<Tl>), stream>>>(p);
  JB_LAUNCH("scan_kernel");
}

template <bool kVec>
void launch_scan_ws(const Params& p, dim3 grid, cudaStream_t stream) {
  allow_dynamic_smem<scan_ws_kernel<kVec>>(sizeof(WsSmem));  // 91 KB
  scan_ws_kernel<kVec><<<grid, kWsThreads, sizeof(WsSmem), stream>>>(p);
  JB_LAUNCH("scan_ws_kernel");
}

// ws has no ChunkState kernel: the chunked scan's pass 1 runs g4 (same tile shape and steps).
template <Mode kMode>
void launch_scan(const Params& p, ScanTile tile, bool vec, dim3 grid, cudaStream_t stream) {
  if (kMode == Mode::Full && tile == ScanTile::WS)
    vec ? launch_scan_ws<true>(p, grid, stream) : launch_scan_ws<false>(p, grid, stream);
  else
    vec ? launch_scan<TileG4, kMode, true>(p, grid, stream)
        : launch_scan<TileG4, kMode, false>(p, grid, stream);
}

// Both tiles scan 64-channel blocks in 32-step tiles.
constexpr int kBlockChannels = TileG4::kCB;
constexpr int kTileSteps = TileG4::kT;

struct InternalWorkspace {
  std::mutex mu;
  DeviceBuffer<unsigned char> buf;
};
InternalWorkspace& internal_ws() {
  static InternalWorkspace* w = new InternalWorkspace();  // never freed: outlives the context
  return *w;
}

}  // namespace

const char* scan_tile_name(ScanTile t) {
  switch (t) {
    case ScanTile::G4:
      return "g4";
    case ScanTile::WS:
      return "ws";
    default:
      return "auto";
  }
}

ScanTile parse_scan_tile(const std::string& s) {
  static constexpr ScanTile all[] = {ScanTile::Auto, ScanTile::G4, ScanTile::WS};
  return parse_by_name(s, all, scan_tile_name, "scan tile");
}

ScanPlan selective_scan_pick(const ScanArgs& a) {
  const int64_t blocks = a.batch * ceil_div(a.dim, kBlockChannels);
  const int64_t tiles = ceil_div(std::max<int64_t>(a.seqlen, 1), kTileSteps);
  ScanVariant v = a.variant;
  if (v == ScanVariant::Auto) {
    // Single pass does half the exp work; chunking only pays when single-pass blocks would
    // leave most SMs idle (e.g. small D at batch 1) and there are enough tiles to split.
    v = (2 * blocks <= sm_count() && tiles >= 4) ? ScanVariant::Chunked : ScanVariant::SinglePass;
  }
  ScanPlan plan;
  plan.variant = ScanVariant::SinglePass;
  plan.chunk_len = tiles * kTileSteps;
  if (v == ScanVariant::Chunked && tiles >= 2) {
    int64_t len = a.chunk_len;
    if (len <= 0) {
      // About 4 blocks per SM in passes 1 and 3.
      const int64_t want_chunks = std::max<int64_t>(2, ceil_div(4 * sm_count(), blocks));
      len = ceil_div(tiles, std::min(want_chunks, tiles)) * kTileSteps;
    }
    len = ceil_div(len, kTileSteps) * kTileSteps;
    if (len < a.seqlen) {
      plan.variant = ScanVariant::Chunked;
      plan.chunk_len = len;
    }
  }
  plan.tile = a.tile;
  if (plan.tile == ScanTile::Auto) {
    // ws for a single pass of at most one g4 block per SM, where nothing overlaps g4's phases
    // (batch 1 at d_inner 8192: 128 blocks); g4 otherwise, including the chunked scan's pass
    // 3, which is sized for ~4 blocks per SM. (At B = 16, L = 8K: g4 10.79 ms, ws 11.79 ms.)
    plan.tile = plan.variant == ScanVariant::SinglePass && blocks <= sm_count() ? ScanTile::WS
                                                                                : ScanTile::G4;
  }
  return plan;
}

namespace {
// The chunked scan's workspace: every chunk's local end state h [B, chunks, D, N] (ws_h) and
// its sum of delta over the chunk, whose exp(A sum) carries the state across it [B, chunks, D]
// (ws_s).
size_t chunk_workspace_bytes(const ScanArgs& a, int64_t nchunks) {
  return static_cast<size_t>(a.batch * nchunks * a.dim * (a.dstate + 1)) * sizeof(float);
}
}  // namespace

size_t selective_scan_workspace_bytes(const ScanArgs& a) {
  const ScanPlan plan = selective_scan_pick(a);
  if (plan.variant != ScanVariant::Chunked) return 0;
  return chunk_workspace_bytes(a, ceil_div(a.seqlen, plan.chunk_len));
}

std::string selective_scan_fwd(const ScanArgs& a, cudaStream_t stream) {
  if (a.batch < 1 || a.batch > 65535 || a.dim < 1 || a.dstate < 1 || a.seqlen < 0)
    fail(ErrorKind::Unsupported, "selective_scan_fwd: batch " + std::to_string(a.batch) + ", dim " +
                                     std::to_string(a.dim) + ", seqlen " +
                                     std::to_string(a.seqlen) + " out of range");
  if (a.dstate > kMaxN)
    fail(ErrorKind::Unsupported,
         "selective_scan_fwd: d_state " + std::to_string(a.dstate) + " > 16 is not supported");
  if (a.seqlen == 0) {
    if (a.ssm_state_out != nullptr && a.ssm_state_out != a.ssm_state_in) {
      const size_t bytes = static_cast<size_t>(a.batch * a.dim * a.dstate) * sizeof(float);
      if (a.ssm_state_in)
        JB_CUDA(cudaMemcpyAsync(a.ssm_state_out, a.ssm_state_in, bytes, cudaMemcpyDeviceToDevice,
                                stream));
      else
        JB_CUDA(cudaMemsetAsync(a.ssm_state_out, 0, bytes, stream));
    }
    return "empty";
  }
  Params p{};
  p.seqlen = a.seqlen;
  p.dim = a.dim;
  p.dstate = a.dstate;
  p.u = a.u;
  p.u_rs = a.u_row_stride ? a.u_row_stride : a.dim;
  p.u_bs = a.u_batch_stride ? a.u_batch_stride : a.seqlen * p.u_rs;
  p.dt = a.dt;
  p.dt_rs = a.dt_row_stride ? a.dt_row_stride : a.dim;
  p.dt_bs = a.dt_batch_stride ? a.dt_batch_stride : a.seqlen * p.dt_rs;
  p.dt_bias = a.dt_bias;
  p.softplus = a.delta_softplus;
  p.A_log = a.A_log;
  p.B = a.B;
  p.B_rs = a.B_row_stride ? a.B_row_stride : a.dstate;
  p.B_bs = a.B_batch_stride ? a.B_batch_stride : a.seqlen * p.B_rs;
  p.C = a.C;
  p.C_rs = a.C_row_stride ? a.C_row_stride : a.dstate;
  p.C_bs = a.C_batch_stride ? a.C_batch_stride : a.seqlen * p.C_rs;
  p.bc_vec = a.dstate == kMaxN && p.B_rs % 8 == 0 && p.B_bs % 8 == 0 && p.C_rs % 8 == 0 &&
             p.C_bs % 8 == 0 && aligned16(a.B) && aligned16(a.C);
  p.D_skip = a.D_skip;
  p.z = a.z;
  p.z_rs = a.z_row_stride ? a.z_row_stride : a.dim;
  p.z_bs = a.z_batch_stride ? a.z_batch_stride : a.seqlen * p.z_rs;
  p.y = a.y;
  p.y_rs = a.y_row_stride ? a.y_row_stride : a.dim;
  p.y_bs = a.y_batch_stride ? a.y_batch_stride : a.seqlen * p.y_rs;
  bool vec = a.dim % 8 == 0 && p.u_rs % 8 == 0 && p.u_bs % 8 == 0 && p.dt_rs % 8 == 0 &&
             p.dt_bs % 8 == 0 && p.y_rs % 8 == 0 && p.y_bs % 8 == 0 && aligned16(a.u) &&
             aligned16(a.dt) && aligned16(a.y);
  if (a.z) vec = vec && p.z_rs % 8 == 0 && p.z_bs % 8 == 0 && aligned16(a.z);

  const ScanPlan plan = selective_scan_pick(a);
  const int64_t len = plan.chunk_len;
  const unsigned cblocks = static_cast<unsigned>(ceil_div(a.dim, kBlockChannels));
  const std::string io = std::string(",") + scan_tile_name(plan.tile) + (vec ? "" : ",scalar");
  if (plan.variant == ScanVariant::SinglePass) {
    p.state_in = a.ssm_state_in;
    p.state_in_chunks = 1;
    p.state_out = a.ssm_state_out;
    p.chunk_len = len;
    launch_scan<Mode::Full>(p, plan.tile, vec, dim3(cblocks, 1, static_cast<unsigned>(a.batch)),
                            stream);
    return "single" + io;
  }

  const int64_t nchunks = ceil_div(a.seqlen, len);
  if (nchunks > 65535) fail(ErrorKind::Unsupported, "selective_scan_fwd: too many chunks");
  const size_t ws_bytes = chunk_workspace_bytes(a, nchunks);
  float* ws = static_cast<float*>(a.workspace);
  std::unique_lock<std::mutex> lock;
  if (ws == nullptr) {
    InternalWorkspace& iw = internal_ws();
    lock = std::unique_lock<std::mutex>(iw.mu);
    if (iw.buf.size() < ws_bytes) iw.buf.alloc(ws_bytes);
    ws = reinterpret_cast<float*>(iw.buf.get());
  } else if (a.workspace_bytes < ws_bytes) {
    fail(ErrorKind::Internal, "selective_scan_fwd: workspace of " +
                                  std::to_string(a.workspace_bytes) + " bytes, need " +
                                  std::to_string(ws_bytes));
  }
  p.ws_h = ws;
  p.ws_s = ws + a.batch * nchunks * a.dim * a.dstate;
  p.chunk_len = len;
  const dim3 grid(cblocks, static_cast<unsigned>(nchunks), static_cast<unsigned>(a.batch));
  // Pass 1: local end states from zero.
  p.state_in = nullptr;
  p.state_in_chunks = 1;
  p.state_out = nullptr;
  launch_scan<Mode::ChunkState>(p, plan.tile, vec, grid, stream);
  // Pass 2: true initial state of every chunk, and the final state.
  const int64_t n2 = a.batch * a.dim * a.dstate;
  scan_combine_kernel<<<static_cast<unsigned>(ceil_div(n2, 256)), 256, 0, stream>>>(
      a.batch, a.dim, a.dstate, nchunks, a.A_log, a.ssm_state_in, a.ssm_state_out, p.ws_h, p.ws_s);
  JB_LAUNCH("scan_combine_kernel");
  // Pass 3: every chunk from its true initial state, producing y.
  p.state_in = p.ws_h;
  p.state_in_chunks = nchunks;
  p.state_out = nullptr;
  launch_scan<Mode::Full>(p, plan.tile, vec, grid, stream);
  return "chunked(c=" + std::to_string(len) + ")" + io;
}

}  // namespace jb::cuda
