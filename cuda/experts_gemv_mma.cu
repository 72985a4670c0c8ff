// Experts Gemv path, tensor-core variant (see cuda/experts.cu for when it runs).
#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>

#include "cuda/experts_internal.cuh"

namespace jb::cuda::experts_detail {
namespace {

// Gemv path (decode, <= 16 rows per expert), tensor-core variant. The FMA variant (experts.cu:
// one warp per gate/up row pair, fp32 FMA against every activation row) spends per int8 weight
// 2 conversion ops plus n FMAs plus 1/2 op converting activations: at n >= 4 rows per expert that
// exceeds the ~8 issue slots per weight an SM has at copy speed (16 B/clk/SM). Here the dot
// products run on the tensor cores (mma.m16n8k16, fp16 in, fp32 accumulate), so every
// activation row up to 8 (or 16) costs nothing more per weight. When it runs: cuda/experts.cu.
//
// Operands in fp16, not bf16. int8 -> fp16 is the 1024 + u trick: fp16 has 10 mantissa bits,
// so 0x6400 | u is exactly 1024 + u for a byte u = b ^ 0x80 = b + 128, and one f16x2 subtract of
// 1152 leaves b: per 4 weights one xor, two byte-permutes, two subtracts (3 ALU-pipe ops). bf16
// has 7 mantissa bits, so the same needs a detour through fp32: 11 ops per 4 weights (7 on the
// ALU pipe), and that variant (bf16 operands, until 2026-11-29) was conversion-bound: Nsight
// Compute at T = 16 showed the ALU pipe at 55% and 52% issue; on an H200 it ran at 0.68 / 0.72 /
// 0.75 / 0.77 / 0.72 / 0.69 of copy at T = 1 / 2 / 4 / 8 / 12 / 16, this one at 0.78 / 0.83 /
// 0.84 / 0.85 / 0.82 / 0.82 (same run). The activations then have to be fp16 too:
// to_f16_rows_kernel rescales each row of x and of act by a power of two 2^-s so that its
// largest element lies in [2^14, 2^15): nothing overflows, every bf16 value down to 2^-31 of the
// row's largest converts exactly, smaller ones round to within 2^-39 of it. The fp32 sums are
// multiplied by 2^s (exact) before the weight row scale. Compare cases with x ~ N(0, 1e12) and
// N(0, 1e-14) (gemv=mma,xstd=...) check the rescaling.
//
// Work split: a unit is 32 weight rows of one expert (gate/up: 16 intermediates, gate and up
// rows of each in the same thread; down: 32 output columns) over the whole reduction length K;
// the 8 warps of a block split K (warp w takes 128-byte chunks w, w + 8, ...: whole lines, see
// kStepElems), and their partial sums are added in warp order through shared memory (fixed
// order: deterministic). Blocks are
// persistent (an occupancy-sized grid), each takes a contiguous, balanced range of units and
// keeps two steps of weight loads in flight across unit boundaries, so no SM waits on a wave
// tail.
constexpr int kGemvThreads = 256;
constexpr int kGemvWarps = kGemvThreads / 32;
constexpr int kGemvBlocksPerSm = 2;  // __launch_bounds__: <= 128 registers
// 16-byte pieces per weight row per lane per step: 4 rows x 2 x 16 B = 128 B per lane, 4 KB per
// warp, two steps in flight: up to 64 KB per block, 128 KB per SM (copy speed needs ~32 KB per
// SM at ~1 us latency; the margin keeps the stream full when half the warps of an SM idle).
constexpr int kGemvPieces = 2;
constexpr int kUnitRows = 32;  // two m16 tiles

// int8 weights per 16-byte piece. (bf16 weights, 8 per piece passed through, ran slower than
// the FMA variant.)
constexpr int kPieceElems = 16;

// The operands: a 16-byte piece of int8 weights (elements 0..15 of a lane's k range) as 8
// words of fp16 pairs, word 2s + h feeding k step s (A registers a0/a1 for h = 0, a2/a3 for
// h = 1), and the MMA. The activations' fp16 pairs must hold the same elements.
struct OperandF16 {
  using XT = __half;
  // Word 2s: elements 4s, 4s + 2; word 2s + 1: 4s + 1, 4s + 3 (the interleave
  // to_f16_rows_kernel stores x and act in). Byte u = b ^ 0x80 = b + 128 under 0x64 is the fp16
  // 1024 + u; subtracting 1152 (0x6480) leaves b exactly.
  static __device__ __forceinline__ void to_pairs(const uint4& v, uint32_t (&o)[8]) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint32_t u = w[k] ^ 0x80808080u;
      o[2 * k + 0] = hsub2(__byte_perm(u, 0x64646464u, 0x4240), 0x64806480u);
      o[2 * k + 1] = hsub2(__byte_perm(u, 0x64646464u, 0x4341), 0x64806480u);
    }
  }
  static __device__ __forceinline__ uint32_t hsub2(uint32_t a, uint32_t b) {
    uint32_t d;
    asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
    return d;
  }
  static __device__ __forceinline__ void mma(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                             uint32_t a3, uint32_t b0, uint32_t b1) {
    dev::mma_f16_16816(d, a0, a1, a2, a3, b0, b1);
  }
};

// Programmatic dependent launch (sm_90): the gate/up kernel lets the down kernel's blocks start
// as its own blocks retire; those prefetch down weights (independent of act) and wait for the
// whole gate/up grid (and its act stores) before reading act. Both are no-ops when the kernel
// was launched without the attribute.
__device__ __forceinline__ void pdl_launch_dependents() {
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
}
__device__ __forceinline__ void pdl_wait_primary() {
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
}
enum class Stage { GateUp, Down };

// Per-stage geometry. GateUp: K = d; tile i0 = 16 * tile; m16 tile m holds gate rows i0 + 8m +
// [0, 8) then the matching up rows, so a thread's accumulators for row g and g + 8 are the g and
// u of one intermediate index. Down: K = I; tile = 32 output columns, rows past d masked.
template <class WT, Stage ST>
struct StageGeom {
  int64_t d, inter;
  __device__ int64_t k_len() const { return ST == Stage::GateUp ? d : inter; }
  __device__ int64_t rows_per_expert() const { return ST == Stage::GateUp ? 2 * inter : d; }
  __device__ int tiles_per_expert() const {
    return static_cast<int>(ST == Stage::GateUp ? inter / 16 : (d + kUnitRows - 1) / kUnitRows);
  }
  // Weight row (within the expert) of a thread's row slot j = 2m + h (A rows g and g + 8 of m16
  // tile m), or -1 when masked.
  __device__ int64_t weight_row(int tile, int j, int g) const {
    const int m = j >> 1, h = j & 1;
    if (ST == Stage::GateUp) return h * inter + int64_t(tile) * 16 + 8 * m + g;
    const int64_t r = int64_t(tile) * kUnitRows + 16 * m + 8 * h + g;
    return r < d ? r : -1;
  }
};

// The k order (A and B use the same permutation of k, so any order is a valid reduction order):
// a step covers kStepElems elements of every row, warp w takes the 128-byte chunk w of them
// (kGemvPieces = 2 pieces of 64 bytes, adjacent), and the 4 lanes of an mma thread group
// (q = lane % 4) the 4 16-byte pieces of each 64 bytes. So a warp reads whole 128-byte lines of
// its 32 rows. (Until 2026-11-29 the pieces u were 512 bytes apart, each warp reading 64 bytes
// of a line and another warp the other 64: 0.72-0.86 of copy at T = 1..16 in a sweep on an
// H200, against 0.87-0.98 for whole lines in the same run.)
constexpr int kStepElems = kGemvPieces * kGemvWarps * 4 * kPieceElems;  // k advanced per step
constexpr int kPieceStride = 4 * kPieceElems;                           // piece u + 1 - piece u

// This lane's first k (step 0, piece 0).
__device__ __forceinline__ int lane_k0() {
  return ((threadIdx.x >> 5) * kGemvPieces * 4 + (threadIdx.x & 3)) * kPieceElems;
}

// Where a block's load or compute stream is: unit (active slot x tile of 32 weight rows), step
// within the unit, the unit's expert and activation rows, and its pointers at this lane's first
// k: weight rows of the four row slots (null where masked) and activation rows t = g + 8 nt
// (valid where t < n). The pointers are computed once per unit; a step adds ks * kStepElems and
// the second piece is an immediate offset. (Computing row * K + k in 64 bits for every piece, as
// until 2026-11-29, took ~485 instructions per warp and step where the conversion and the
// products need ~190.)
template <class WT, int NT>
struct StreamPos {
  int unit, ks;
  int e, row0, n, tile;
  const WT* w[4];
  const __half* x[NT];
};

template <class WT, Stage ST, int NT>
__device__ __forceinline__ void locate_unit(StreamPos<WT, NT>& p, const GroupsDev& g,
                                            const StageGeom<WT, ST>& geo, int tpe,
                                            const WT* __restrict__ w,
                                            const __half* __restrict__ x) {
  const int slot = p.unit / tpe;
  p.tile = p.unit - slot * tpe;
  p.e = g.active[slot];
  p.row0 = g.offsets[p.e];
  p.n = g.offsets[p.e + 1] - p.row0;
  const int gl = (threadIdx.x & 31) >> 2;
  const int64_t K = geo.k_len();
  const int k0 = lane_k0();
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int64_t r = geo.weight_row(p.tile, j, gl);
    p.w[j] = r >= 0 ? w + (int64_t(p.e) * geo.rows_per_expert() + r) * K + k0 : nullptr;
  }
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) p.x[nt] = x + (int64_t(p.row0) + gl + 8 * nt) * K + k0;
}

template <class WT, Stage ST, int NT>
__device__ __forceinline__ void advance(StreamPos<WT, NT>& p, int steps, int unit_end,
                                        const GroupsDev& g, const StageGeom<WT, ST>& geo, int tpe,
                                        const WT* __restrict__ w, const __half* __restrict__ x) {
  if (++p.ks < steps) return;
  p.ks = 0;
  if (++p.unit < unit_end) locate_unit(p, g, geo, tpe, w, x);
}

// Weights of one step. Masked rows and pieces past K are not loaded: the buffer keeps stale
// bytes, which convert to finite fp16 values and meet either zero activations (k >= K) or
// accumulator rows that are never stored (masked rows).
template <class WT, Stage ST, int NT>
__device__ __forceinline__ void load_step(uint4 (&buf)[4][kGemvPieces], const StreamPos<WT, NT>& p,
                                          int unit_end, const StageGeom<WT, ST>& geo) {
  if (p.unit >= unit_end) return;
  const int64_t kstep = int64_t(p.ks) * kStepElems;
  const int64_t k = lane_k0() + kstep;
  const int64_t K = geo.k_len();
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    if (p.w[j] == nullptr) continue;
    const uint4* src = reinterpret_cast<const uint4*>(p.w[j] + kstep);
#pragma unroll
    for (int u = 0; u < kGemvPieces; ++u)
      // Weights are streamed once: evict-first, keep L1/L2 for the activations.
      if (k + u * kPieceStride < K)
        buf[j][u] = __ldcs(src + u * (kPieceStride * int(sizeof(WT)) / 16));
  }
}

template <class WT, Stage ST, int NT>
__device__ __forceinline__ void compute_step(const uint4 (&buf)[4][kGemvPieces],
                                             const StreamPos<WT, NT>& p,
                                             const StageGeom<WT, ST>& geo, float (&acc)[2][NT][4]) {
  constexpr int V = kPieceElems;
  const int g = (threadIdx.x & 31) >> 2;
  const int64_t kstep = int64_t(p.ks) * kStepElems;
  const int64_t k = lane_k0() + kstep;
  const int64_t K = geo.k_len();
#pragma unroll
  for (int u = 0; u < kGemvPieces; ++u) {
    uint32_t xb[NT][V / 2];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      // B fragments: activation row t = g + 8 nt at the same k as this lane's weight piece;
      // zeros past K (they meet stale weights) and for t >= n (no load).
      const bool ok = g + 8 * nt < p.n && k + u * kPieceStride < K;
      const uint4* src =
          reinterpret_cast<const uint4*>(p.x[nt] + kstep) + u * (kPieceStride * 2 / 16);
#pragma unroll
      for (int h = 0; h < V / 8; ++h) {
        const uint4 v = ok ? __ldg(src + h) : make_uint4(0u, 0u, 0u, 0u);
        xb[nt][4 * h + 0] = v.x;
        xb[nt][4 * h + 1] = v.y;
        xb[nt][4 * h + 2] = v.z;
        xb[nt][4 * h + 3] = v.w;
      }
    }
#pragma unroll
    for (int m = 0; m < 2; ++m) {
      uint32_t a0[V / 2], a1[V / 2];  // rows g and g + 8 of m16 tile m
      OperandF16::to_pairs(buf[2 * m][u], a0);
      OperandF16::to_pairs(buf[2 * m + 1][u], a1);
      // k step s covers piece elements 4s..4s+3: thread k slots (2q, 2q + 1) <- word 2s and
      // (2q + 8, 2q + 9) <- word 2s + 1 (OperandF16's pairing), for A and B alike.
#pragma unroll
      for (int s = 0; s < V / 4; ++s)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
          // Tiles past the expert's rows hold zeros: skip their products (a uniform branch: n is
          // the unit's). With NT = 2 (the host's bound > 8 rows) most experts still have <= 8.
          if (nt == 0 || p.n > 8 * nt)
            OperandF16::mma(acc[m][nt], a0[2 * s], a1[2 * s], a0[2 * s + 1], a1[2 * s + 1],
                            xb[nt][2 * s], xb[nt][2 * s + 1]);
    }
  }
}

// The reduction across the 8 warps: [parity][warp][m][n tile][register][lane] floats.
template <int NT>
struct GemvSmem {
  float part[2][kGemvWarps][2][NT][4][32];
};

// Sum over the warps, in warp order, of the accumulator of A row `r` (0..31 of the unit) and
// activation row t (C fragment: register 2h + (t & 1) of lane 4g + (t & 7) / 2).
template <int NT>
__device__ __forceinline__ float unit_sum(const GemvSmem<NT>& sm, int par, int r, int t) {
  const int m = r >> 4, g = r & 7, h = (r >> 3) & 1;
  const int nt = t >> 3, reg = 2 * h + (t & 1), lane = 4 * g + ((t & 7) >> 1);
  float s = 0.0f;
#pragma unroll
  for (int w = 0; w < kGemvWarps; ++w) s += sm.part[par][w][m][nt][reg][lane];
  return s;
}

// End of a unit: partial sums to shared memory, one barrier, fixed-order sums, the activation
// row's factor (fp16 operands: 2^s, exact) and the weight row scale once on the fp32 sum, and
// the contract's store point.
template <class WT, Stage ST, int NT, class Pos>
__device__ __forceinline__ void finish_unit(float (&acc)[2][NT][4], GemvSmem<NT>& sm, int& par,
                                            const Pos& p, const float* __restrict__ scale,
                                            const float* __restrict__ x_scale,
                                            const StageGeom<WT, ST>& geo, bf16* __restrict__ out) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int m = 0; m < 2; ++m)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        sm.part[par][warp][m][nt][r][lane] = acc[m][nt][r];
        acc[m][nt][r] = 0.0f;
      }
  // One barrier per unit: the parity buffer written next (unit + 2) is only written after every
  // thread passed the barrier of unit + 1, i.e. finished reading this one.
  __syncthreads();
  const int n = min(p.n, 8 * NT);
  if (ST == Stage::GateUp) {
    // 16 intermediates x 16 rows: one (i, t) per thread.
    const int il = threadIdx.x & 15, t = threadIdx.x >> 4;
    if (t < n) {
      const int r = (il >> 3) * 16 + (il & 7);  // gate row; up is r + 8
      const int64_t i = int64_t(p.tile) * 16 + il;
      float sg = 1.0f, su = 1.0f;
      if (scale != nullptr) {
        sg = scale[int64_t(p.e) * 2 * geo.inter + i];
        su = scale[int64_t(p.e) * 2 * geo.inter + geo.inter + i];
      }
      const float xs = x_scale[p.row0 + t];
      out[(int64_t(p.row0) + t) * geo.inter + i] =
          swiglu_act(unit_sum(sm, par, r, t) * xs * sg, unit_sum(sm, par, r + 8, t) * xs * su);
    }
  } else {
    // 32 columns x 16 rows: two (c, t) per thread.
    const int cl = threadIdx.x & 31;
    const int64_t c = int64_t(p.tile) * kUnitRows + cl;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int t = (threadIdx.x >> 5) + 8 * half;
      if (t < n && c < geo.d) {
        const float s = scale != nullptr ? scale[int64_t(p.e) * geo.d + c] : 1.0f;
        const float xs = x_scale[p.row0 + t];
        out[(int64_t(p.row0) + t) * geo.d + c] =
            __float2bfloat16_rn(unit_sum(sm, par, cl, t) * xs * s);
      }
    }
  }
  par ^= 1;
}

// One stage over all active experts. NT = activation-row tiles of 8 (1: <= 8 rows per expert,
// 2: <= 16). Gate/up reads the fp16 copy of x_rows and writes act; down reads the fp16 copy of
// act and writes y. x_scale: the factors 2^s of those fp16 rows.
template <class WT, Stage ST, int NT>
__global__ void __launch_bounds__(kGemvThreads, kGemvBlocksPerSm)
    gemv_stage_kernel(const WT* __restrict__ w, const float* __restrict__ scale,
                      const __half* __restrict__ x, const float* __restrict__ x_scale, GroupsDev g,
                      int64_t d, int64_t inter, bf16* __restrict__ out) {
  __shared__ GemvSmem<NT> sm;
  if (ST == Stage::GateUp) pdl_launch_dependents();
  const StageGeom<WT, ST> geo{d, inter};
  const int tpe = geo.tiles_per_expert();
  const int steps = static_cast<int>((geo.k_len() + kStepElems - 1) / kStepElems);
  // The routing (num_active, active, offsets) comes from kernels before the first launch of the
  // chain (the one launched without the programmatic attribute), so it is complete here, before
  // pdl_wait_primary.
  const int64_t units = int64_t(*g.num_active) * tpe;
  const int unit_begin = static_cast<int>(units * blockIdx.x / gridDim.x);
  const int unit_end = static_cast<int>(units * (blockIdx.x + 1) / gridDim.x);
  if (unit_begin >= unit_end) return;
  StreamPos<WT, NT> ld;
  ld.unit = unit_begin;
  ld.ks = 0;
  locate_unit(ld, g, geo, tpe, w, x);
  StreamPos<WT, NT> cp = ld;
  const int64_t total = int64_t(unit_end - unit_begin) * steps;

  float acc[2][NT][4];
#pragma unroll
  for (int m = 0; m < 2; ++m)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[m][nt][r] = 0.0f;
  int par = 0;

  // Two register buffers, two steps in flight: a buffer is refilled right after its step's
  // products are issued. Zeroed once so that slots never loaded (masked rows, k >= K) hold
  // defined bytes.
  uint4 wa[4][kGemvPieces], wb[4][kGemvPieces];
#pragma unroll
  for (int j = 0; j < 4; ++j)
#pragma unroll
    for (int u = 0; u < kGemvPieces; ++u) wa[j][u] = wb[j][u] = make_uint4(0u, 0u, 0u, 0u);
  load_step(wa, ld, unit_end, geo);
  advance(ld, steps, unit_end, g, geo, tpe, w, x);
  load_step(wb, ld, unit_end, geo);
  advance(ld, steps, unit_end, g, geo, tpe, w, x);
  // x (the fp16 copy of x or of act) is complete from here on.
  pdl_wait_primary();

  // The two register buffers alternate by name, not by index, so they stay in registers (the
  // two halves of the loop body are the same step on wa and on wb).
  // (Issuing the refill before a unit's end, so that the stream goes on during the barrier,
  // measured slower on an H200: 0.67-0.77 of copy against 0.78-0.85.)
  for (int64_t s = 0; s < total; s += 2) {
    compute_step<WT, ST, NT>(wa, cp, geo, acc);
    if (cp.ks == steps - 1) finish_unit<WT, ST, NT>(acc, sm, par, cp, scale, x_scale, geo, out);
    advance(cp, steps, unit_end, g, geo, tpe, w, x);
    if (s + 2 < total) {
      load_step(wa, ld, unit_end, geo);
      advance(ld, steps, unit_end, g, geo, tpe, w, x);
    }
    if (s + 1 >= total) break;
    compute_step<WT, ST, NT>(wb, cp, geo, acc);
    if (cp.ks == steps - 1) finish_unit<WT, ST, NT>(acc, sm, par, cp, scale, x_scale, geo, out);
    advance(cp, steps, unit_end, g, geo, tpe, w, x);
    if (s + 3 < total) {
      load_step(wb, ld, unit_end, geo);
      advance(ld, steps, unit_end, g, geo, tpe, w, x);
    }
  }
}

// Rows of x [rows, cols] (cols % 8 == 0) as fp16 for OperandF16: out = x * 2^-s_r with s_r =
// e_r - 14, where 2^e_r <= max_c |x[r, c]| < 2^(e_r + 1) (clamped to [-100, 100]; 0 for a row
// of zeros or with an infinity), so every |out| < 2^15 and bf16 values down to 2^-31 of the row
// maximum convert exactly; row_scale[r] = 2^s_r. Elements 4j..4j+3 are stored in the order 4j,
// 4j + 2, 4j + 1, 4j + 3 (OperandF16's pairing). One block per row; a programmatic dependent
// (waits for x before reading it).
constexpr int kToF16Threads = 256;

__global__ void __launch_bounds__(kToF16Threads)
    to_f16_rows_kernel(const bf16* __restrict__ x, int64_t cols, __half* __restrict__ out,
                       float* __restrict__ row_scale) {
  pdl_launch_dependents();
  pdl_wait_primary();
  __shared__ float warp_max[kToF16Threads / 32];
  const int64_t r = blockIdx.x;
  const uint4* src = reinterpret_cast<const uint4*>(x + r * cols);
  const int64_t n8 = cols / 8;
  float m = 0.0f;  // fmaxf skips NaN: a NaN element stays NaN in fp16 and in the sums
  for (int64_t j = threadIdx.x; j < n8; j += kToF16Threads) {
    float f[8];
    dev::bf16x8_to_f32(src[j], f);
#pragma unroll
    for (int k = 0; k < 8; ++k) m = fmaxf(m, fabsf(f[k]));
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
  if ((threadIdx.x & 31) == 0) warp_max[threadIdx.x >> 5] = m;
  __syncthreads();
  m = warp_max[0];
#pragma unroll
  for (int k = 1; k < kToF16Threads / 32; ++k) m = fmaxf(m, warp_max[k]);
  // ilogbf(m) = e_r (floor of log2, subnormals included).
  const int s = m > 0.0f && isfinite(m) ? min(max(ilogbf(m) - 14, -100), 100) : 0;
  const float down = ldexpf(1.0f, -s);
  uint4* dst = reinterpret_cast<uint4*>(out + r * cols);
  for (int64_t j = threadIdx.x; j < n8; j += kToF16Threads) {
    float f[8];
    dev::bf16x8_to_f32(src[j], f);
#pragma unroll
    for (int k = 0; k < 8; ++k) f[k] *= down;
    const __half2 h[4] = {__floats2half2_rn(f[0], f[2]), __floats2half2_rn(f[1], f[3]),
                          __floats2half2_rn(f[4], f[6]), __floats2half2_rn(f[5], f[7])};
    uint4 o;
    static_assert(sizeof(h) == sizeof(o));
    memcpy(&o, h, sizeof(o));
    dst[j] = o;
  }
  if (threadIdx.x == 0) row_scale[r] = ldexpf(1.0f, s);
}

// Blocks of one gemv stage kernel that fit on the device at once (queried once per instance).
template <class WT, Stage ST, int NT>
int64_t gemv_grid_capacity() {
  static const int64_t cap =
      int64_t(blocks_per_sm(gemv_stage_kernel<WT, ST, NT>, kGemvThreads)) * sm_count();
  return cap;
}

// A launch with the programmatic-stream-serialization attribute (sm_90 programmatic dependent
// launch; captured into graphs as a programmatic edge): the kernel may start before the previous
// one in the stream finishes, and must griddepcontrol.wait before reading its outputs.
template <class... KArgs, class... Args>
void launch_pdl(void (*kernel)(KArgs...), unsigned grid, int threads, cudaStream_t stream,
                Args... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(grid);
  cfg.blockDim = dim3(threads);
  cfg.dynamicSmemBytes = 0;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  JB_CUDA(cudaLaunchKernelEx(&cfg, kernel, static_cast<KArgs>(args)...));
}

template <class WT, int NT>
void launch_gemv_nt(const WT* gate_up, const float* gu_scale, const WT* down, const float* d_scale,
                    const ExpertWeights& w, const ExpertGroups& g, const bf16* x_rows, bf16* act,
                    bf16* y_rows, const F16Operands& f16, cudaStream_t stream) {
  const GroupsDev gd{g.offsets, g.active, g.num_active};
  // Each active expert owns at least one row, so at most min(E, rows) slots are used; the
  // kernels read the actual count and balance the units over the grid.
  const int64_t slots = std::min<int64_t>(w.num_experts, g.total_rows);
  const int64_t gu_units = slots * (w.inter / 16);
  const int64_t dn_units = slots * ((w.d + kUnitRows - 1) / kUnitRows);
  if (std::max(gu_units, dn_units) > 2147483647)
    fail(ErrorKind::Unsupported, "experts gemv path: too many units for 32-bit indices");
  const auto grid = [](int64_t units, int64_t cap) {
    return static_cast<unsigned>(std::max<int64_t>(1, std::min(units, cap)));
  };
  const unsigned rows = static_cast<unsigned>(g.total_rows);
  const unsigned gu_grid = grid(gu_units, gemv_grid_capacity<WT, Stage::GateUp, NT>());
  const unsigned dn_grid = grid(dn_units, gemv_grid_capacity<WT, Stage::Down, NT>());
  // Chain: x -> fp16 (a plain launch: everything before it, the routing included, is complete
  // when it starts), then gate/up, act -> fp16 and down, each a programmatic dependent of the
  // one before: its blocks fill the SMs its predecessor's tail frees and start streaming
  // weights before the predecessor's outputs are complete.
  to_f16_rows_kernel<<<rows, kToF16Threads, 0, stream>>>(x_rows, w.d, f16.x, f16.x_scale);
  JB_LAUNCH("to_f16_rows_kernel(x)");
  launch_pdl(gemv_stage_kernel<WT, Stage::GateUp, NT>, gu_grid, kGemvThreads, stream, gate_up,
             gu_scale, static_cast<const __half*>(f16.x), static_cast<const float*>(f16.x_scale),
             gd, w.d, w.inter, act);
  launch_pdl(to_f16_rows_kernel, rows, kToF16Threads, stream, static_cast<const bf16*>(act),
             w.inter, f16.act, f16.act_scale);
  launch_pdl(gemv_stage_kernel<WT, Stage::Down, NT>, dn_grid, kGemvThreads, stream, down, d_scale,
             static_cast<const __half*>(f16.act), static_cast<const float*>(f16.act_scale), gd, w.d,
             w.inter, y_rows);
}

}  // namespace

// One activation tile for bounds <= 8 rows per expert, two up to 16.
template <class WT>
void launch_gemv_mma(const WT* gate_up, const float* gu_scale, const WT* down, const float* d_scale,
                     const ExpertWeights& w, const ExpertGroups& g, const bf16* x_rows, bf16* act,
                     bf16* y_rows, const F16Operands& f16, cudaStream_t stream) {
  if (g.max_rows_per_expert < 1 || g.max_rows_per_expert > 16)
    fail(ErrorKind::Internal, "experts mma gemv: row bound " +
                                  std::to_string(g.max_rows_per_expert) + " outside [1, 16]");
  if (g.max_rows_per_expert <= 8)
    launch_gemv_nt<WT, 1>(gate_up, gu_scale, down, d_scale, w, g, x_rows, act, y_rows, f16, stream);
  else
    launch_gemv_nt<WT, 2>(gate_up, gu_scale, down, d_scale, w, g, x_rows, act, y_rows, f16, stream);
}

template void launch_gemv_mma<int8_t>(const int8_t*, const float*, const int8_t*, const float*,
                                      const ExpertWeights&, const ExpertGroups&, const bf16*, bf16*,
                                      bf16*, const F16Operands&, cudaStream_t);
// bf16 weights work here too but measured slower than the FMA variant at every T (experts.cu);
// not instantiated.

}  // namespace jb::cuda::experts_detail
