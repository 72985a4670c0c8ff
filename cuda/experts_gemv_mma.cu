// Experts Gemv path, tensor-core variant (see cuda/experts.cu for when it runs).
#include <algorithm>

#include "cuda/experts_internal.cuh"

namespace jb::cuda::experts_detail {
namespace {

// Gemv path (decode, <= 16 rows per expert), tensor-core variant. The FMA variant (experts.cu:
// one warp per gate/up row pair, fp32 FMA against every activation row) spends per int8 weight
// 2 conversion ops plus n FMAs plus 1/2 op converting activations: at n >= 4 rows per expert that
// exceeds the ~8 issue slots per weight an SM has at copy speed (16 B/clk/SM). Here the dot
// products run on the tensor cores (mma.m16n8k16, bf16 in, fp32 accumulate): the weights are
// converted to bf16 once (exact, |q| <= 127) and every activation row up to 8 (or 16) costs
// nothing more, ~2.75 ALU ops per int8 weight at every n. It runs only for int8 with more than
// 8 rows per expert (the host's bound), where it measured faster: the comparison is at the top
// of cuda/experts.cu. Why it stays below copy speed (Nsight Compute, H200, 2026-11-29, T = 16):
// the ALU pipe at 55% (the byte permutes of the int8 -> bf16 conversion), 52% issue, and
// long-scoreboard stalls 1.9-2.5 of 6.9 cycles per instruction: both conversion work and memory
// latency.
//
// Work split: a unit is 32 weight rows of one expert (gate/up: 16 intermediates, gate and up
// rows of each in the same thread; down: 32 output columns) over the whole reduction length K;
// the 8 warps of a block split K (warp w takes 64-byte chunks w, w + 8, ...), and their partial
// sums are added in warp order through shared memory (fixed order: deterministic). Blocks are
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

using dev::mma_bf16_16816;

// A 16-byte weight piece as bf16 pairs, in k order: word j holds elements 2j (low half) and
// 2j + 1. The conversion is exact.
template <class WT>
struct WPiece;

// (A bf16 specialisation, 8 elements passed through, ran slower than the FMA variant.)
template <>
struct WPiece<int8_t> {
  static constexpr int kElems = 16;
  // int8x4_to_f32 gives b exactly as a float; b (8 significant bits) is exact in bf16, so the
  // upper half of each float is bf16(b): two more byte-permutes per 4 weights.
  static __device__ __forceinline__ void to_bf16x2(const uint4& v, uint32_t (&o)[8]) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      float f[4];
      int8x4_to_f32(w[k], f);
      o[2 * k + 0] = __byte_perm(__float_as_uint(f[0]), __float_as_uint(f[1]), 0x7632);
      o[2 * k + 1] = __byte_perm(__float_as_uint(f[2]), __float_as_uint(f[3]), 0x7632);
    }
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

// Where a block's load or compute stream is: unit (active slot x tile of 32 weight rows), step
// within the unit, and the unit's expert and activation rows.
struct UnitPos {
  int unit, ks;
  int e, row0, n, tile;
};

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

__device__ __forceinline__ void locate_unit(UnitPos& p, const GroupsDev& g, int tiles_per_expert) {
  const int slot = p.unit / tiles_per_expert;
  p.tile = p.unit - slot * tiles_per_expert;
  p.e = g.active[slot];
  p.row0 = g.offsets[p.e];
  p.n = g.offsets[p.e + 1] - p.row0;
}

__device__ __forceinline__ void advance(UnitPos& p, int steps, int unit_end, const GroupsDev& g,
                                        int tiles_per_expert) {
  if (++p.ks < steps) return;
  p.ks = 0;
  if (++p.unit < unit_end) locate_unit(p, g, tiles_per_expert);
}

// Element offset in a row of this lane's 16-byte piece u of step ks: 64-byte chunks are dealt
// to the warps round-robin, and the 4 lanes of an mma thread group (q = lane % 4) take the 4
// pieces of a chunk. A and B use the same permutation of k, so any order of k is a valid
// reduction order.
template <class WT>
__device__ __forceinline__ int64_t piece_k(int ks, int u) {
  const int warp = threadIdx.x >> 5, q = threadIdx.x & 3;
  return ((int64_t(ks) * kGemvPieces + u) * kGemvWarps * 4 + warp * 4 + q) * WPiece<WT>::kElems;
}

template <class WT, Stage ST>
__device__ __forceinline__ void load_step(uint4 (&buf)[4][kGemvPieces], const UnitPos& p,
                                          int unit_end, const WT* __restrict__ w,
                                          const StageGeom<WT, ST>& geo) {
  const int g = (threadIdx.x & 31) >> 2;
  const int64_t K = geo.k_len();
  const bool unit_ok = p.unit < unit_end && p.n > 0;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int64_t r = unit_ok ? geo.weight_row(p.tile, j, g) : -1;
    const WT* row = w + (int64_t(p.e) * geo.rows_per_expert() + r) * K;
#pragma unroll
    for (int u = 0; u < kGemvPieces; ++u) {
      const int64_t k = piece_k<WT>(p.ks, u);
      buf[j][u] = make_uint4(0u, 0u, 0u, 0u);
      // Weights are streamed once: evict-first, keep L1/L2 for the activations.
      if (r >= 0 && k < K) buf[j][u] = __ldcs(reinterpret_cast<const uint4*>(row + k));
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

template <class WT, Stage ST, int NT>
__device__ __forceinline__ void compute_step(const uint4 (&buf)[4][kGemvPieces], const UnitPos& p,
                                             const bf16* __restrict__ x,
                                             const StageGeom<WT, ST>& geo, float (&acc)[2][NT][4]) {
  constexpr int V = WPiece<WT>::kElems;
  const int g = (threadIdx.x & 31) >> 2;
  const int64_t K = geo.k_len();
#pragma unroll
  for (int u = 0; u < kGemvPieces; ++u) {
    const int64_t k = piece_k<WT>(p.ks, u);
    // B fragments: activation row t = g + 8 nt at the same k as this lane's weight piece.
    uint32_t xb[NT][V / 2];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const int t = g + 8 * nt;
      const bool ok = t < p.n && k < K;  // (t >= n: zeros, no load)
      const uint4* src = reinterpret_cast<const uint4*>(x + (int64_t(p.row0) + t) * K + k);
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
      WPiece<WT>::to_bf16x2(buf[2 * m][u], a0);
      WPiece<WT>::to_bf16x2(buf[2 * m + 1][u], a1);
      // k step s covers piece elements 4s..4s+3: thread k slots (2q, 2q + 1) <- 4s, 4s + 1 and
      // (2q + 8, 2q + 9) <- 4s + 2, 4s + 3, for A and B alike.
#pragma unroll
      for (int s = 0; s < V / 4; ++s)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
          // Tiles past the expert's rows hold zeros: skip their products (a uniform branch: n is
          // the unit's). With NT = 2 (the host's bound > 8 rows) most experts still have <= 8.
          if (nt == 0 || p.n > 8 * nt)
            mma_bf16_16816(acc[m][nt], a0[2 * s], a1[2 * s], a0[2 * s + 1], a1[2 * s + 1],
                           xb[nt][2 * s], xb[nt][2 * s + 1]);
    }
  }
}

// End of a unit: partial sums to shared memory, one barrier, fixed-order sums, the row scale
// once on the fp32 sum, and the contract's store point.
template <class WT, Stage ST, int NT>
__device__ __forceinline__ void finish_unit(float (&acc)[2][NT][4], GemvSmem<NT>& sm, int& par,
                                            const UnitPos& p, const float* __restrict__ scale,
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
      out[(int64_t(p.row0) + t) * geo.inter + i] =
          swiglu_act(unit_sum(sm, par, r, t) * sg, unit_sum(sm, par, r + 8, t) * su);
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
        out[(int64_t(p.row0) + t) * geo.d + c] = __float2bfloat16_rn(unit_sum(sm, par, cl, t) * s);
      }
    }
  }
  par ^= 1;
}

// One stage over all active experts. NT = activation-row tiles of 8 (1: <= 8 rows per expert,
// 2: <= 16). Gate/up writes act (x = x_rows); down reads act (x = act) and writes y.
template <class WT, Stage ST, int NT>
__global__ void __launch_bounds__(kGemvThreads, kGemvBlocksPerSm)
    gemv_stage_kernel(const WT* __restrict__ w, const float* __restrict__ scale,
                      const bf16* __restrict__ x, GroupsDev g, int64_t d, int64_t inter,
                      bf16* __restrict__ out) {
  __shared__ GemvSmem<NT> sm;
  if (ST == Stage::GateUp) pdl_launch_dependents();
  const StageGeom<WT, ST> geo{d, inter};
  const int tpe = geo.tiles_per_expert();
  // 64-byte chunks per row, dealt to 8 warps x kGemvPieces per step.
  const int64_t chunks = (geo.k_len() * int64_t(sizeof(WT)) + 63) / 64;
  const int steps =
      static_cast<int>((chunks + kGemvWarps * kGemvPieces - 1) / (kGemvWarps * kGemvPieces));
  // The routing (num_active, active, offsets) comes from kernels before the gate/up stage, so
  // the down stage may read it before pdl_wait_primary.
  const int64_t units = int64_t(*g.num_active) * tpe;
  const int unit_begin = static_cast<int>(units * blockIdx.x / gridDim.x);
  const int unit_end = static_cast<int>(units * (blockIdx.x + 1) / gridDim.x);
  if (unit_begin >= unit_end) return;
  UnitPos ld{unit_begin, 0, 0, 0, 0, 0};
  locate_unit(ld, g, tpe);
  UnitPos cp = ld;
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
  // products are issued.
  uint4 wa[4][kGemvPieces], wb[4][kGemvPieces];
  load_step(wa, ld, unit_end, w, geo);
  advance(ld, steps, unit_end, g, tpe);
  load_step(wb, ld, unit_end, w, geo);
  advance(ld, steps, unit_end, g, tpe);
  if (ST == Stage::Down) pdl_wait_primary();  // act is complete from here on

  // The two register buffers alternate by name, not by index, so they stay in registers (the
  // two halves of the loop body are the same step on wa and on wb).
  for (int64_t s = 0; s < total; s += 2) {
    compute_step<WT, ST, NT>(wa, cp, x, geo, acc);
    if (cp.ks == steps - 1) finish_unit<WT, ST, NT>(acc, sm, par, cp, scale, geo, out);
    advance(cp, steps, unit_end, g, tpe);
    if (s + 2 < total) {
      load_step(wa, ld, unit_end, w, geo);
      advance(ld, steps, unit_end, g, tpe);
    }
    if (s + 1 >= total) break;
    compute_step<WT, ST, NT>(wb, cp, x, geo, acc);
    if (cp.ks == steps - 1) finish_unit<WT, ST, NT>(acc, sm, par, cp, scale, geo, out);
    advance(cp, steps, unit_end, g, tpe);
    if (s + 3 < total) {
      load_step(wb, ld, unit_end, w, geo);
      advance(ld, steps, unit_end, g, tpe);
    }
  }
}

// Blocks of one gemv stage kernel that fit on the device at once (queried once per instance).
template <class WT, Stage ST, int NT>
int64_t gemv_grid_capacity() {
  static const int64_t cap =
      int64_t(blocks_per_sm(gemv_stage_kernel<WT, ST, NT>, kGemvThreads)) * sm_count();
  return cap;
}

template <class WT, int NT>
void launch_gemv_nt(const WT* gate_up, const float* gu_scale, const WT* down, const float* d_scale,
                    const ExpertWeights& w, const ExpertGroups& g, const bf16* x_rows, bf16* act,
                    bf16* y_rows, cudaStream_t stream) {
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
  gemv_stage_kernel<WT, Stage::GateUp, NT>
      <<<grid(gu_units, gemv_grid_capacity<WT, Stage::GateUp, NT>()), kGemvThreads, 0, stream>>>(
          gate_up, gu_scale, x_rows, gd, w.d, w.inter, act);
  JB_LAUNCH("gemv_stage_kernel(gate_up)");
  // Down as a programmatic dependent launch (captured into graphs as a programmatic edge): its
  // blocks fill the SMs the gate/up tail frees and start streaming down weights early.
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(grid(dn_units, gemv_grid_capacity<WT, Stage::Down, NT>()));
  cfg.blockDim = dim3(kGemvThreads);
  cfg.dynamicSmemBytes = 0;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  JB_CUDA(cudaLaunchKernelEx(&cfg, gemv_stage_kernel<WT, Stage::Down, NT>, down, d_scale,
                             static_cast<const bf16*>(act), gd, w.d, w.inter, y_rows));
}

}  // namespace

// Two activation tiles (up to 16 rows per expert): the caller (run_experts) sends bounds <= 8
// to the FMA variant, so NT = 1 is not instantiated.
template <class WT>
void launch_gemv_mma(const WT* gate_up, const float* gu_scale, const WT* down, const float* d_scale,
                     const ExpertWeights& w, const ExpertGroups& g, const bf16* x_rows, bf16* act,
                     bf16* y_rows, cudaStream_t stream) {
  launch_gemv_nt<WT, 2>(gate_up, gu_scale, down, d_scale, w, g, x_rows, act, y_rows, stream);
}

template void launch_gemv_mma<int8_t>(const int8_t*, const float*, const int8_t*, const float*,
                                      const ExpertWeights&, const ExpertGroups&, const bf16*, bf16*,
                                      bf16*, cudaStream_t);
// bf16 weights work here too but measured slower than the FMA variant at every T (experts.cu);
// not instantiated.

}  // namespace jb::cuda::experts_detail
