// Causal GQA prefill attention on Hopper's warpgroup MMA (wgmma, sm_90a), head_dim 128: the
// PrefillVariant::Wgmma kernel (contract and numerics: cuda/attention.hpp, the same as the mma
// variants: fp32 scores and statistics, P rounded to bf16 for P V, one bf16 rounding at the end).
//
// Why: the mma.sync kernels (cuda/attention.cu) load every K and V fragment from shared memory
// into registers with ldmatrix, once per warp; at 16 query rows per warp that is 4 clocks of
// shared-memory bandwidth per mma.m16n8k16, and 32 rows per warp (mma128r32) needs ~230
// registers for O and S and still 2.5 clocks. wgmma reads B (K, V) straight from shared memory
// once for the 64 rows of a warpgroup, asynchronously, and A (Q) from shared memory too; P is
// the A operand from registers, in exactly the layout of the S accumulators (no shuffles).
//
// Block: 2 warpgroups (256 threads), 64 query rows each (128 per block) of one head of one
// sequence; K/V tiles of 64 keys, two cp.async stages shared by both warpgroups. Per warpgroup
// and tile: S (64 x 64, fp32, 32 registers per thread) = 8 wgmma m64n64k16 (Q and K from
// shared memory); mask, online softmax (the mma kernels' code: running max kept scaled, one
// FFMA and ex2.approx per element, O rescaled only when a row max moved); O (64 x 128, 64
// registers) += 4 wgmma m64n128k16 (P from registers, V from shared memory, N-major).
//
// Shared memory: Q [2][128 rows][128 B], each K and V stage [2][64][128 B]: a row's 256 bytes
// split into two 128-byte halves (64 columns), each half of 8 consecutive rows one 1024-byte
// swizzle atom, 16-byte chunk c of row r stored at chunk c ^ (r & 7) (the 128-byte swizzle the
// descriptors name; atoms 1024-byte aligned). Descriptors (PTX ISA, "matrix descriptor"):
// start address, leading byte offset (LBO), stride byte offset (SBO), swizzle mode 1 (128 B).
//   Q, K (K-major, the contraction over hd contiguous): SBO = 1024 (next 8 rows), LBO unused;
//     k-step kk (16 columns, 32 bytes) starts at half kk / 4, byte (kk % 4) * 32.
//   V (N-major for P V: the 128 output columns contiguous): LBO = 64 rows * 128 B (the next
//     64 columns, the other half), SBO = 1024 (next 8 keys); k-step kk (16 keys) at kk * 2048.
// Ordering: each thread's cp.async data, landed, is made visible to the async proxy (which
// wgmma reads through) by fence.proxy.async before the block barrier.
//
// Measured on an H200 (2026-11-29, 32:8, B = 1, bench_attention): 266 / 421 / 472 TFLOP/s at
// L = 2K / 8K / 32K, 1.47 / 1.35 / 1.38x torch SDPA in the same run (mma128r32: 187 / 300 /
// 330). 128 registers (the 2-blocks-per-SM bound; 12 bytes spilled), 2 x 96 KB of shared
// memory per SM. Not done (FlashAttention-3's further steps): the next tile's S issued before
// this tile's softmax (a second S buffer), warp-specialised producers with TMA copies, and
// explicit ping-pong between the two warpgroups; each warpgroup here waits on its own wgmma.
#include <cmath>
#include <cstdint>

#include "core/error.hpp"
#include "cuda/attention_internal.cuh"
#include "cuda/device_util.cuh"
#include "cuda/hopper.cuh"

namespace jb::cuda::attention_detail {
namespace {

constexpr int kHd = 128;
static_assert(kHd % 64 == 0, "rows split into 64-column swizzle atoms");
constexpr int kWarpgroups = 2;
constexpr int kThreads = 128 * kWarpgroups;
constexpr int kBM = 64 * kWarpgroups;  // query rows per block
constexpr int kBN = kPrefillKeys;      // keys per tile
constexpr int kHalfBytes = 128;        // 64 bf16 columns: one swizzle atom's row
constexpr int kQBytes = 2 * kBM * kHalfBytes;
constexpr int kTileBytes = 2 * kBN * kHalfBytes;
constexpr int kSmemBytes = kQBytes + 4 * kTileBytes;  // Q + 2 stages x (K + V): 96 KB
#if JB_HAVE_SM90A
constexpr unsigned kFullMask = 0xffffffffu;

// Byte offset of 16-byte chunk c (0..15) of row r in a [2][ROWS][128 B] swizzled tile.
template <int ROWS>
__device__ __forceinline__ uint32_t sw128(int r, int c) {
  return (c >> 3) * (ROWS * kHalfBytes) + r * kHalfBytes + (((c & 7) ^ (r & 7)) << 4);
}

// D (64 x 64, fp32) = A (64 x 16, shared) * B (16 x 64, shared, K-major) [+ D if accumulate].
__device__ __forceinline__ void wgmma_m64n64k16_ss(float (&d)[8][4], uint64_t desc_a,
                                                   uint64_t desc_b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, "
      "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
      "%32, %33, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]),
        "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]),
        "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]),
        "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
        "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]),
        "+f"(d[7][2]), "+f"(d[7][3])
      : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}

// D (64 x 128, fp32) += A (64 x 16, registers: the mma.m16n8k16 A fragment of each warp's 16
// rows) * B (16 x 128, shared, N-major: imm-trans-b = 1).
__device__ __forceinline__ void wgmma_m64n128k16_rs_tb(float (&d)[16][4], const uint32_t (&a)[4],
                                                       uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, "
      "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, "
      "%38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, "
      "%56, %57, %58, %59, %60, %61, %62, %63}, "
      "{%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]),
        "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]),
        "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]),
        "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
        "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]),
        "+f"(d[7][2]), "+f"(d[7][3]), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]),
        "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), "+f"(d[10][0]), "+f"(d[10][1]),
        "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]),
        "+f"(d[11][3]), "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]),
        "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]), "+f"(d[14][0]),
        "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]),
        "+f"(d[15][2]), "+f"(d[15][3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));
}

#endif

__global__ void __launch_bounds__(kThreads, 2)
    prefill_wgmma_kernel(const PrefillArgs a, const float scale_log2) {
#if JB_HAVE_SM90A
  extern __shared__ __align__(1024) unsigned char smem[];
  const uint32_t sQ = dev::smem_addr(smem);
  const uint32_t sKV = sQ + kQBytes;  // stage s: K at sKV + 2 s kTileBytes, V kTileBytes after

  PrefillBlock blk;
  if (!prefill_block<kHd>(a, kBM, kBN, blk)) return;
  const int h = blockIdx.y;
  const int m0 = blk.m0, q_begin = blk.q_begin, new_len = blk.new_len, past = blk.past;
  const int kv_len = blk.kv_len, n_tiles = blk.n_tiles;
  const bf16* kbase = blk.k;
  const bf16* vbase = blk.v;

  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int wg = tid >> 7;        // warpgroup
  const int wq = (tid >> 5) & 3;  // warp within the warpgroup
  // Copies: chunk tid % 16 of rows tid / 16 + 16 i; all of a thread's rows share r & 7.
  const int cp_c = tid & 15, cp_r = tid >> 4;

#pragma unroll
  for (int i = 0; i < kBM / 16; ++i) {
    const int r = cp_r + 16 * i;
    const bool valid = m0 + r < new_len;
    const bf16* src =
        valid ? a.q + static_cast<int64_t>(q_begin + m0 + r) * a.q_stride + h * kHd + cp_c * 8
              : a.q;
    dev::cp_async16(sQ + sw128<kBM>(r, cp_c), src, valid);
  }
  dev::cp_async_commit();

  auto load_kv = [&](int tile, int stage) {
    const int n0 = tile * kBN;
    const uint32_t dk = sKV + stage * 2 * kTileBytes, dv = dk + kTileBytes;
#pragma unroll
    for (int i = 0; i < kBN / 16; ++i) {
      const int r = cp_r + 16 * i;
      const bool valid = n0 + r < kv_len;
      const int64_t off = static_cast<int64_t>(n0 + r) * kHd + cp_c * 8;
      dev::cp_async16(dk + sw128<kBN>(r, cp_c), valid ? kbase + off : kbase, valid);
      dev::cp_async16(dv + sw128<kBN>(r, cp_c), valid ? vbase + off : vbase, valid);
    }
    dev::cp_async_commit();
  };

  float o[kHd / 8][4];  // O, this warp's 16 rows: the C layout of attention_internal.cuh
#pragma unroll
  for (int d = 0; d < kHd / 8; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.f;
  float m_run[2] = {-INFINITY, -INFINITY};  // running row max, scaled into the log2 domain
  float l_run[2] = {0.f, 0.f};              // per-thread partial row sums (quad-reduced at the end)
  const int row0 = m0 + wg * 64 + wq * 16 + (lane >> 2);  // this thread's rows: row0, row0 + 8
  const int qpos0 = past + row0;
  const int wg_first = past + m0 + wg * 64;  // positions of the warpgroup's first and last rows
  const int wg_last = wg_first + 63;

  load_kv(0, 0);
  for (int it = 0; it < n_tiles; ++it) {
    if (it + 1 < n_tiles) {
      load_kv(it + 1, (it + 1) & 1);
      dev::cp_async_wait<1>();
    } else {
      dev::cp_async_wait<0>();
    }
    dev::fence_proxy_async();
    __syncthreads();
    const int n0 = it * kBN;
    // A warpgroup whose rows all precede the tile's first key sees none of it (see the mma
    // kernels): it skips the tile.
    if (n0 <= wg_last) {
      const uint32_t sK = sKV + (it & 1) * 2 * kTileBytes, sV = sK + kTileBytes;
      ScoreTile sc;  // this warp's 16 rows of S
#pragma unroll
      for (int j = 0; j < kBN / 8; ++j) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.f;
      dev::wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kHd / 16; ++kk) {
        const uint32_t qa =
            sQ + (kk >> 2) * (kBM * kHalfBytes) + wg * 64 * kHalfBytes + (kk & 3) * 32;
        const uint32_t kb = sK + (kk >> 2) * (kBN * kHalfBytes) + (kk & 3) * 32;
        wgmma_m64n64k16_ss(sc, dev::desc_sw128(qa, 16, 1024), dev::desc_sw128(kb, 16, 1024),
                           kk > 0);
      }
      dev::wgmma_commit();
      dev::wgmma_wait_all();

      // Mask only tiles that cross the warpgroup's diagonal or the cache end. mask_scores()
      // with this kernel's flat index: the same predicate, but mask_scores() itself compiles
      // here to reordered predicate ORs, and the SASS tested on the GPU is this loop's (the
      // shared helper can replace it once a GPU run checks the kernel again).
      if ((n0 + kBN - 1 > wg_first) || (n0 + kBN > kv_len)) {
#pragma unroll
        for (int i = 0; i < 32; ++i) {
          const int key = n0 + (i >> 2) * 8 + 2 * (lane & 3) + (i & 1);
          const int qpos = qpos0 + ((i >> 1) & 1) * 8;
          if (key > qpos || key >= kv_len) sc[i >> 2][i & 3] = -INFINITY;
        }
      }
      float alpha[2];
      bool moved = false;
      softmax_scores(sc, scale_log2, m_run, l_run, alpha, moved);
      if (__any_sync(kFullMask, moved)) rescale_rows<kHd>(o, alpha);
      uint32_t pa[kBN / 16][4];
#pragma unroll
      for (int kk = 0; kk < kBN / 16; ++kk) p_fragment(sc, kk, pa[kk]);
      dev::wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kBN / 16; ++kk)
        wgmma_m64n128k16_rs_tb(o, pa[kk],
                               dev::desc_sw128(sV + kk * 16 * kHalfBytes, kBN * kHalfBytes, 1024));
      dev::wgmma_commit();
      dev::wgmma_wait_all();
    }
    __syncthreads();  // the next iteration's copy overwrites this stage
  }

  store_rows<kHd>(a, o, l_run, q_begin, row0, new_len, h, lane);
#else
  __trap();  // compute_90 PTX (no wgmma): attention.cu launches it only where device_is_sm90()
#endif
}

}  // namespace

void launch_prefill_wgmma(const PrefillArgs& a, float scale_log2, cudaStream_t stream) {
  allow_dynamic_smem<prefill_wgmma_kernel>(kSmemBytes);
  const dim3 grid((a.seqs.max_new + kBM - 1) / kBM, a.num_heads, a.seqs.batch);
  prefill_wgmma_kernel<<<grid, kThreads, kSmemBytes, stream>>>(a, scale_log2);
  JB_LAUNCH("prefill_wgmma_kernel");
}

}  // namespace jb::cuda::attention_detail
