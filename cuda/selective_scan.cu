// Selective scan kernels (contract and variants: selective_scan.hpp).
//
// Work split: a block owns kCB = 64 channels of one sequence and one time range; each channel is
// handled by kG = 4 consecutive threads, each holding 4 of the (up to) 16 state entries in
// registers, so a B = 1, D = 8192 scan already has 128 blocks x 8 warps (one per SM). The
// y = sum_n h C contraction: each thread's 4 terms per step; every 4 steps the 4 threads of a
// channel exchange them in a two-round reduce-scatter (reduce_scatter4), after which each holds
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
//   thread and tile): 242 / 907 / 3578 / 14268 us, 10.82 ms (this code)
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

#include "cuda/ssm_math.cuh"

namespace jb::cuda {
namespace {

using ssm_math::exp2_decay;
using ssm_math::kLog2e;
using ssm_math::softplus_f;

constexpr int kCB = 64;             // channels per block
constexpr int kG = 4;               // threads per channel
constexpr int kNPer = 4;            // state entries per thread
constexpr int kMaxN = kG * kNPer;   // 16
constexpr int kThreads = kCB * kG;  // 256
constexpr int kT = 32;              // time steps per tile
// Blocks per SM in __launch_bounds__ (<= 80 registers, no spills; 45.5 KB of shared memory).
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
constexpr int kMinBlocksPerSm = 3;
constexpr int kVecPerRow = kCB / 8;                // 16-byte vectors per token row of a [L, D] tile
constexpr int kDVec = kT * kVecPerRow / kThreads;  // vectors per thread per [L, D] tensor
static_assert(kDVec * kThreads == kT * kVecPerRow, "whole vectors per thread");
static_assert(kT * 2 * 2 <= kThreads, "at most one 16-byte B or C vector per thread per tile");

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

struct Smem {
  float u[kT][kCB];
  float delta[kT][kCB];
  float du[kT][kCB];  // delta * u, the input term's common factor
  float gz[kT][kCB];  // silu(z)
  // y = sum_n h C per (t, c), summed in the loop (reduce_scatter4). +8 columns: the four steps a
  // warp stores at once land in distinct banks (row stride 72 = 8 mod 32 banks).
  float ysum[kT][kCB + 8];
  float B[kT][kMaxN];
  float C[kT][kMaxN];
  float bias[kCB];
  float d_skip[kCB];
};

// Raw bf16 of one tile, held in registers between its load and its staging.
struct Prefetch {
  uint4 u[kDVec], dt[kDVec], z[kDVec];
  uint4 bc;
};

template <Mode kMode, bool kVec>
__device__ __forceinline__ void load_tile(const Params& p, int64_t b, int64_t c0, int64_t t0,
                                          int64_t t_end, Prefetch& f) {
  const int tid = threadIdx.x;
#pragma unroll
  for (int k = 0; k < kDVec; ++k) {
    const int v = tid + k * kThreads;
    const int64_t t = t0 + v / kVecPerRow;
    const int64_t c = c0 + (v % kVecPerRow) * 8;
    const int nvalid = (t < t_end && c < p.dim) ? clamp8(p.dim - c) : 0;
    f.u[k] = load8<kVec>(p.u + b * p.u_bs + t * p.u_rs + c, nvalid);
    f.dt[k] = load8<kVec>(p.dt + b * p.dt_bs + t * p.dt_rs + c, nvalid);
    if (kMode == Mode::Full && p.z != nullptr)
      f.z[k] = load8<kVec>(p.z + b * p.z_bs + t * p.z_rs + c, nvalid);
  }
  // B rows by threads [0, 128), C rows by [128, 256): row t, half h covers n in [8h, 8h + 8).
  const bool is_c = tid >= 2 * kT;
  if (tid >= 4 * kT || (kMode == Mode::ChunkState && is_c)) return;
  const int v = is_c ? tid - 2 * kT : tid;
  const int64_t t = t0 + v / 2;
  const int n0 = (v % 2) * 8;
  const int nvalid = t < t_end ? clamp8(p.dstate - n0) : 0;
  const bf16* src = is_c ? p.C + b * p.C_bs + t * p.C_rs : p.B + b * p.B_bs + t * p.B_rs;
  f.bc = p.bc_vec ? load8<true>(src + n0, nvalid) : load8<false>(src + n0, nvalid);
}

template <Mode kMode>
__device__ __forceinline__ void stage_tile(const Params& p, int64_t t0, int64_t t_end,
                                           const Prefetch& f, Smem& s) {
  const int tid = threadIdx.x;
#pragma unroll
  for (int k = 0; k < kDVec; ++k) {
    const int v = tid + k * kThreads;
    const int row = v / kVecPerRow;
    const int col = (v % kVecPerRow) * 8;
    const bool valid_t = t0 + row < t_end;
    float uu[8], dd[8];
    dev::bf16x8_to_f32(f.u[k], uu);
    dev::bf16x8_to_f32(f.dt[k], dd);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const float pre = dd[i] + s.bias[col + i];
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
  const bool is_c = tid >= 2 * kT;
  if (tid >= 4 * kT || (kMode == Mode::ChunkState && is_c)) return;
  const int v = is_c ? tid - 2 * kT : tid;
  float bc[8];
  dev::bf16x8_to_f32(f.bc, bc);
  float* dst = is_c ? &s.C[v / 2][(v % 2) * 8] : &s.B[v / 2][(v % 2) * 8];
  *reinterpret_cast<float4*>(dst) = make_float4(bc[0], bc[1], bc[2], bc[3]);
  *reinterpret_cast<float4*>(dst + 4) = make_float4(bc[4], bc[5], bc[6], bc[7]);
}

template <bool kVec>
__device__ __forceinline__ void store_y_tile(const Params& p, int64_t b, int64_t c0, int64_t t0,
                                             int64_t t_end, const Smem& s) {
  const int tid = threadIdx.x;
#pragma unroll
  for (int k = 0; k < kDVec; ++k) {
    const int v = tid + k * kThreads;
    const int row = v / kVecPerRow;
    const int col = (v % kVecPerRow) * 8;
    const int64_t t = t0 + row;
    const int64_t c = c0 + col;
    if (t >= t_end || c >= p.dim) continue;
    bf16* dst = p.y + b * p.y_bs + t * p.y_rs + c;
    // y = (sum_n h C + D u) silu(z), jamba-spec §2.4 steps 10-11.
    float src[8];
#pragma unroll
    for (int i = 0; i < 8; ++i)
      src[i] =
          fmaf(s.d_skip[col + i], s.u[row][col + i], s.ysum[row][col + i]) * s.gz[row][col + i];
    if (kVec) {
      uint32_t w[4];
#pragma unroll
      for (int i = 0; i < 4; ++i)
        w[i] = uint32_t(__bfloat16_as_ushort(__float2bfloat16_rn(src[2 * i]))) |
               (uint32_t(__bfloat16_as_ushort(__float2bfloat16_rn(src[2 * i + 1]))) << 16);
      *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
    } else {
      const int nvalid = clamp8(p.dim - c);
#pragma unroll
      for (int i = 0; i < 8; ++i)
        if (i < nvalid) dst[i] = __float2bfloat16_rn(src[i]);
    }
  }
}

// One step of h = exp(delta A) h + delta B u for this thread's kNPer entries (jamba-spec §2.4
// steps 8-9), with du = delta * u from staging and A2 = A log2(e).
__device__ __forceinline__ void advance_state(float d, float du, const float* B_row,
                                              const float (&A2)[kNPer], float (&h)[kNPer]) {
  const float4 b4 = *reinterpret_cast<const float4*>(B_row);
  const float bv[kNPer] = {b4.x, b4.y, b4.z, b4.w};
#pragma unroll
  for (int j = 0; j < kNPer; ++j) h[j] = fmaf(exp2_decay(d * A2[j]), h[j], bv[j] * du);
}

// Which of kG = 4 consecutive steps thread g of a channel ends up holding in reduce_scatter4.
__device__ __forceinline__ int reduce_step(int g) {
  return (g & 1) * 2 + (g >> 1);
}

// The 4 threads of a channel each hold partial sums yp[k] (their 4 state entries) for steps
// k = 0..3; returns the full sum over all 16 entries of step reduce_step(g). Two butterfly rounds
// that halve the steps each time (3 shuffles instead of 4 per 4 steps), summed as (g0 + g1) +
// (g2 + g3) whichever thread adds, so the result is the same bits on every thread and run.
__device__ __forceinline__ float reduce_scatter4(const float (&yp)[kG], int g) {
  static_assert(kG == 4, "two rounds for four threads");
  const bool odd = g & 1;  // round 1, partner g ^ 1: even keeps steps 0, 1, odd keeps 2, 3
  const float r0 = __shfl_xor_sync(0xffffffffu, odd ? yp[0] : yp[2], 1);
  const float r1 = __shfl_xor_sync(0xffffffffu, odd ? yp[1] : yp[3], 1);
  const float a0 = (odd ? yp[2] : yp[0]) + r0;  // this pair's sum for its first kept step
  const float a1 = (odd ? yp[3] : yp[1]) + r1;
  const bool hi = g & 2;  // round 2, partner g ^ 2 (the other pair): lo keeps a0, hi keeps a1
  const float r = __shfl_xor_sync(0xffffffffu, hi ? a0 : a1, 2);
  return (hi ? a1 : a0) + r;
}

template <Mode kMode, bool kVec>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSm) scan_kernel(Params p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  Smem& s = *reinterpret_cast<Smem*>(smem_raw);
  const int tid = threadIdx.x;
  const int cl = tid / kG;  // channel within the block
  const int g = tid % kG;   // which 4 state entries
  const int64_t b = blockIdx.z;
  const int64_t chunk = blockIdx.y;
  const int64_t c0 = int64_t(blockIdx.x) * kCB;
  const int64_t c = c0 + cl;
  const bool c_ok = c < p.dim;
  const int64_t t_begin = chunk * p.chunk_len;
  const int64_t t_stop = min(p.seqlen, t_begin + p.chunk_len);

  if (tid < kCB) {
    const bool ok = c0 + tid < p.dim;
    s.bias[tid] = (p.dt_bias != nullptr && ok) ? p.dt_bias[c0 + tid] : 0.0f;
    s.d_skip[tid] = (kMode == Mode::Full && p.D_skip != nullptr && ok) ? p.D_skip[c0 + tid] : 0.0f;
  }

  // A2 = A * log2(e), A = -exp(A_log) in fp32 (jamba-spec §2.4 step 8), so that
  // exp(delta * A) = 2^(delta * A2); entries n >= N get A2 = 0 and
  // B = C = 0, so they stay 0 and contribute nothing.
  float A2[kNPer], h[kNPer];
  const int64_t sidx = c * p.dstate;
#pragma unroll
  for (int j = 0; j < kNPer; ++j) {
    const int n = g * kNPer + j;
    const bool ok = c_ok && n < p.dstate;
    A2[j] = ok ? -expf(p.A_log[sidx + n]) * kLog2e : 0.0f;
    h[j] = (ok && p.state_in != nullptr)
               ? p.state_in[((b * p.state_in_chunks + chunk) * p.dim + c) * p.dstate + n]
               : 0.0f;
  }
  float delta_sum = 0.0f;

  Prefetch f;
  load_tile<kMode, kVec>(p, b, c0, t_begin, t_stop, f);
  for (int64_t t0 = t_begin; t0 < t_stop; t0 += kT) {
    __syncthreads();  // previous tile's compute and y store are done with shared memory
    stage_tile<kMode>(p, t0, t_stop, f, s);
    __syncthreads();
    if (t0 + kT < t_stop) load_tile<kMode, kVec>(p, b, c0, t0 + kT, t_stop, f);
    if (kMode == Mode::Full) {
      // Each group's sum is stored one group late, after the next group's loads and exps in
      // program order: stored at once, it would keep those loads behind it (and so behind its
      // shuffles) in the in-order issue.
      float ysum_prev = 0.0f;
#pragma unroll
      for (int grp = 0; grp < kT / kG; ++grp) {
        // kG steps in registers, then one reduction for all of them: no shared-memory store
        // between one step's loads and the next's, so the compiler can issue the loads and exps
        // of all kG steps ahead of the state chain (the per-step store had serialised the steps).
        float yp[kG];
#pragma unroll
        for (int k = 0; k < kG; ++k) {
          const int tt = grp * kG + k;
          advance_state(s.delta[tt][cl], s.du[tt][cl], &s.B[tt][g * kNPer], A2, h);
          const float4 c4 = *reinterpret_cast<const float4*>(&s.C[tt][g * kNPer]);
          float y = h[0] * c4.x;
          y = fmaf(h[1], c4.y, y);
          y = fmaf(h[2], c4.z, y);
          yp[k] = fmaf(h[3], c4.w, y);
        }
        if (grp > 0) s.ysum[(grp - 1) * kG + reduce_step(g)][cl] = ysum_prev;
        ysum_prev = reduce_scatter4(yp, g);
      }
      s.ysum[kT - kG + reduce_step(g)][cl] = ysum_prev;
    } else {
#pragma unroll 4
      for (int tt = 0; tt < kT; ++tt) {
        const float d = s.delta[tt][cl];
        advance_state(d, s.du[tt][cl], &s.B[tt][g * kNPer], A2, h);
        delta_sum += d;
      }
    }
    if (kMode == Mode::Full) {
      __syncthreads();
      store_y_tile<kVec>(p, b, c0, t0, t_stop, s);
    }
  }

  if (!c_ok) return;
  if (kMode == Mode::Full) {
    if (p.state_out != nullptr) {
#pragma unroll
      for (int j = 0; j < kNPer; ++j) {
        const int n = g * kNPer + j;
        if (n < p.dstate) p.state_out[(b * p.dim + c) * p.dstate + n] = h[j];
      }
    }
  } else {
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

bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

template <Mode kMode, bool kVec>
void launch_scan(const Params& p, dim3 grid, cudaStream_t stream) {
  // (45.5 KB since kT = 32, under the 48 KB default; kept so a larger tile keeps working.)
  allow_dynamic_smem<scan_kernel<kMode, kVec>>(sizeof(Smem));
  scan_kernel<kMode, kVec><<<grid, kThreads, sizeof(Smem), stream>>>(p);
  JB_LAUNCH("scan_kernel");
}

template <Mode kMode>
void launch_scan(const Params& p, bool vec, dim3 grid, cudaStream_t stream) {
  if (vec)
    launch_scan<kMode, true>(p, grid, stream);
  else
    launch_scan<kMode, false>(p, grid, stream);
}

struct InternalWorkspace {
  std::mutex mu;
  DeviceBuffer<unsigned char> buf;
};
InternalWorkspace& internal_ws() {
  static InternalWorkspace* w = new InternalWorkspace();  // never freed: outlives the context
  return *w;
}

}  // namespace

ScanVariant selective_scan_pick(const ScanArgs& a, int64_t* chunk_len) {
  const int64_t blocks = a.batch * ceil_div(a.dim, kCB);
  const int64_t tiles = ceil_div(std::max<int64_t>(a.seqlen, 1), kT);
  ScanVariant v = a.variant;
  if (v == ScanVariant::Auto) {
    // Single pass does half the exp work; chunking only pays when single-pass blocks would
    // leave most SMs idle (e.g. small D at batch 1) and there are enough tiles to split.
    v = (2 * blocks <= sm_count() && tiles >= 4) ? ScanVariant::Chunked : ScanVariant::SinglePass;
  }
  if (v == ScanVariant::SinglePass || tiles < 2) {
    *chunk_len = tiles * kT;
    return ScanVariant::SinglePass;
  }
  int64_t len = a.chunk_len;
  if (len <= 0) {
    // About 4 blocks per SM in passes 1 and 3.
    const int64_t want_chunks = std::max<int64_t>(2, ceil_div(4 * sm_count(), blocks));
    len = ceil_div(tiles, std::min(want_chunks, tiles)) * kT;
  }
  len = ceil_div(len, kT) * kT;
  if (len >= a.seqlen) {
    *chunk_len = tiles * kT;
    return ScanVariant::SinglePass;
  }
  *chunk_len = len;
  return ScanVariant::Chunked;
}

size_t selective_scan_workspace_bytes(const ScanArgs& a) {
  int64_t len = 0;
  if (selective_scan_pick(a, &len) != ScanVariant::Chunked) return 0;
  const int64_t nchunks = ceil_div(a.seqlen, len);
  return static_cast<size_t>(a.batch * nchunks * a.dim * (a.dstate + 1)) * sizeof(float);
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

  int64_t len = 0;
  const ScanVariant v = selective_scan_pick(a, &len);
  const unsigned cblocks = static_cast<unsigned>(ceil_div(a.dim, kCB));
  const std::string io = vec ? "" : ",scalar";
  if (v == ScanVariant::SinglePass) {
    p.state_in = a.ssm_state_in;
    p.state_in_chunks = 1;
    p.state_out = a.ssm_state_out;
    p.chunk_len = len;
    launch_scan<Mode::Full>(p, vec, dim3(cblocks, 1, static_cast<unsigned>(a.batch)), stream);
    return "single" + io;
  }

  const int64_t nchunks = ceil_div(a.seqlen, len);
  if (nchunks > 65535) fail(ErrorKind::Unsupported, "selective_scan_fwd: too many chunks");
  const size_t ws_bytes =
      static_cast<size_t>(a.batch * nchunks * a.dim * (a.dstate + 1)) * sizeof(float);
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
  launch_scan<Mode::ChunkState>(p, vec, grid, stream);
  // Pass 2: true initial state of every chunk, and the final state.
  const int64_t n2 = a.batch * a.dim * a.dstate;
  scan_combine_kernel<<<static_cast<unsigned>(ceil_div(n2, 256)), 256, 0, stream>>>(
      a.batch, a.dim, a.dstate, nchunks, a.A_log, a.ssm_state_in, a.ssm_state_out, p.ws_h, p.ws_s);
  JB_LAUNCH("scan_combine_kernel");
  // Pass 3: every chunk from its true initial state, producing y.
  p.state_in = p.ws_h;
  p.state_in_chunks = nchunks;
  p.state_out = nullptr;
  launch_scan<Mode::Full>(p, vec, grid, stream);
  return "chunked(c=" + std::to_string(len) + ")" + io;
}

}  // namespace jb::cuda
