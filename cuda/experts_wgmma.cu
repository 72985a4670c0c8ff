// Grouped expert GEMMs on Hopper's TMA and warpgroup MMA (GemmSchedule::Wgmma, bf16 weights,
// sm_90a): one launch computes every expert's gate/up GEMM with SwiGLU in its epilogue (act, the
// contract's one bf16 store; g and u never reach global memory), one launch every expert's down
// GEMM. Same rounding points as the cuBLAS schedules (cuda/experts.hpp): fp32 accumulation, g and
// u rounded to bf16, act = bf16(silu(g) * u), y rounded once.
//
// Why: with cuBLAS per expert (the Lanes schedule) the bf16 expert stage ran at 0.875 of one
// cuBLAS GEMM of the total shape at T = 4096 (H200, 2026-11-29e): ~512 rows per expert leave
// each GEMM's last wave partly idle (four streams recover part of it), and the [rows, 2I]
// gate/up output is written, read back and rewritten as act (~0.7 GB at T = 4096). Here one
// persistent grid walks every expert's tiles, and the SwiGLU happens in registers.
//
// Block: 3 warpgroups. Warpgroup 0 is the producer (one thread issues the TMA copies, its
// registers given to the others with setmaxnreg); warpgroups 1 and 2 each own 64 rows of the
// block's 128-row tile and issue wgmma m64n256k16 from shared memory. kStages stages of
// (A: 128 rows x 64 k, B: 256 weight rows x 64 k), 48 KB each, 128-byte swizzle written by TMA
// and named by the descriptors (both operands K-major: SBO = 1024, the next 8 rows; k-step of 16
// = 32 bytes along the swizzled row). full[s] completes when the producer's expected bytes have
// landed; empty[s] when all 8 consumer warps have retired the wgmmas that read stage s
// (wgmma.wait_group 1 after committing the next stage).
//
// Tiles: expert e with n_e rows has ceil(n_e / 128) row tiles; gate/up tiles cover 128 act
// columns (B = 128 gate rows then the 128 matching up rows, so a thread holds g and u of the
// same (row, column) in accumulators j and j + 16), down tiles 256 output columns. Tile index
// order: expert, then column block, then row tile, so the CTAs in flight share weight tiles
// (each read from HBM about once, the expert's rows staying in L2). A CTA's first tile is its
// index, the next ones come from a counter in index order (the producer claims one near the end
// of each tile's loads and names it to the consumers in the stage's slot). A warpgroup whose 64
// rows are all past the expert's end skips its wgmmas (a tile of <= 64 rows costs about half). Rows
// past the expert's end that TMA does load belong to the next expert or are zero fill; the epilogue
// stores only the expert's rows and the valid columns.
//
// Swap-AB tiles (kSwap): the weights are wgmma's A and the token rows its B (N = the tile's rows
// rounded up to 16, 16..160), so a tile pays for its rows to 16 instead of 64, and an expert's
// rows are split evenly over ceil(n_e / 160) tiles (270 rows: two tiles of 135 instead of 128 +
// 128 + 14). Each tile loads its weight slice whatever its rows, so a short tail tile costs
// nearly a full tile's loads: the even split removes the tails. Warpgroup ci owns 64 act
// columns (gate and up rows [64 ci, 64 ci + 64) of the stage, two m64 wgmmas per k-step) or 128
// output columns; stages of 160 token rows + 256 weight rows (52 KB). Used for every down GEMM
// and for the gate/up GEMM up to kSwapGateUpMaxRows rows per expert on average (above, the
// 128 x n256 tiles are a little faster); H200 (results/h200-2026-11-29j, call 8), expert stage
// ms at T = 1024 / 2048 / 4096 / 8192, same process:
//   128-row tiles for both       1.755 / 2.659 / 4.965 / 9.121
//   swap-AB down only            1.648 / 2.414 / 4.897 / 9.127
//   swap-AB for both             1.452 / 2.449 / 4.758 / 9.371
// Nsight Compute at T = 2048, DRAM read and time, gate/up then down: 4.16 GB 1.63 ms, 2.67 GB
// 871 us -> 3.85 GB 1.49 ms, 2.05 GB 734 us. (Swap-AB with 128-row tiles and the tail kept,
// call 7: no faster, 1.818 / 2.767 / 4.901 / 9.330 ms against 1.768 / 2.658 / 5.058 / 9.231.)
//
// Requires d % 8 == 0 and I % 8 == 0 (TMA row strides are multiples of 16 bytes), 16-byte
// aligned x, weights and y, E <= kMaxExperts, and a device of compute capability 9.0.
//
// Measured on an H200 with the 128-row tiles only, before the swap-AB tiles and the late claim
// (2026-11-29, Jamba-v0.1 widths, top-2 of 16, bench_moe BM_ExpertsPrefill, x_cublas = one
// cuBLAS GEMM of the total shape over ours, same run):
// T = 4096 / 8192: 0.87 / 0.93 (cuBLAS per expert on 4 lanes: 0.88 / 0.94); with the producer
// decoding each tile for the consumers (results/h200-2026-11-29i, call 3), T = 1024 / 2048 /
// 4096 / 8192: 0.56 / 0.78 / 0.88 / 0.94 (4 lanes: 0.56 / 0.83 / 0.88 / 0.94). Under Nsight
// Compute (clocks at 1.33 GHz) gate/up takes 3.23 ms and down 1.64 ms at T = 4096, tensor pipes
// ~87% busy; what is left is mostly the 64-row granularity of wgmma's M at ~512 rows per expert
// (T = 4096 loses ~6% to it, T = 8192 half that) and the SwiGLU epilogue, which the tensor cores
// wait for. Per clock these kernels beat cuBLAS per expert (Nsight Compute, serialised, 1.33
// GHz: 3.17 + 1.60 ms against ~5.5 ms for 16 experts' gate/up, act and down), but under the
// 700 W cap they do not (5.13 against 4.84 ms at T = 4096). At T = 4096 they read 9.3 GB from
// DRAM per call for 5.9 GB of weights and rows (at T = 1024 the gate/up launch reads 4.2 GB for
// 3.8 GB of weights). Computing the empty half of the <= 64-row tiles anyway, so that they keep
// the full tiles' pace on the weight slices they share, cut DRAM to 6.3 GB and was slower all
// the same: 0.85 / 0.93 against 0.87 / 0.94 (results/h200-2026-11-29g, call 10); pairing those
// tiles (below) kept the pace without the empty MMAs, left DRAM at 9.3 GB and was slower too.
// Tried and measured, in the order built:
//   - silu_exact in the epilogue: 6% slower than silu_fast (557 / 587 against 591 / 614
//     TFLOP/s);
//   - tiles at a static stride (t, t + grid, ...): 2-4% slower than the counter (568 / 595
//     against 581 / 621 TFLOP/s), DRAM traffic 44% / 65% of peak against 35% / 53%;
//   - L2 eviction hints on the copies (rows evict_last, or that and the weights evict_first):
//     within noise, and evict_first on the weights 3% slower;
//   - clusters of 2 CTAs over adjacent column blocks with the rows multicast by TMA (a third
//     less L2 -> SM traffic): no faster (gate/up 3.21 ms, down 1.63 ms under Nsight Compute;
//     0.86 / 0.92 in the benchmark). Consumers that released stages with a cluster-scope
//     release (mbarrier.arrive.release.cluster) ran at 0.55: the default CTA-scope arrive is
//     the one to use there;
//   - pair tiles (results/h200-2026-11-29h, call 2): an expert's tail of <= 64 rows as one tile
//     per two column blocks, each consumer warpgroup owning one block, stages alternating
//     between the two blocks' weights: slower, expert stage 0.43 / 0.84 / 0.92 at T = 1024 /
//     4096 / 8192 against 0.51 / 0.87 / 0.94 without (same run), DRAM at T = 4096 unchanged
//     (5.6 + 3.6 GB). A pair tile moves twice the bytes per MMA of a full tile;
//   - lockstep (call 3): the later row tiles of a weight slice request stage kb only once its
//     first row tile has requested kb - 4 (a global counter per slice): slower everywhere, 0.42
//     / 0.50 / 0.54 / 0.74 at T = 1024 / 2048 / 4096 / 8192 against 0.54 / 0.73 / 0.88 / 0.94,
//     with gate/up DRAM at T = 1024 up (4.7 against 4.2 GB). A CTA then claimed its next tile
//     when it started the current one, so a follower could wait most of a tile for a leader that
//     had not started. What fixed the drift instead (2026-11-29, results/h200-2026-11-29j): the
//     claim moved to the end of a tile's loads (the producer loop below), no waiting; DRAM read
//     at T = 1024 / 2048 down 7-17%, the expert stage 2-8% faster.
#include <cuda.h>
#include <cudaTypedefs.h>

#include <mutex>
#include <string>

#include "core/error.hpp"
#include "cuda/experts_internal.cuh"
#include "cuda/hopper.cuh"

namespace jb::cuda::experts_detail {
namespace {

constexpr int kBM = 128;  // rows per tile, 64 per consumer warpgroup
constexpr int kBN = 256;  // weight rows per tile (gate/up: 128 gate + 128 up)
constexpr int kBK = 64;   // k per stage: one 128-byte swizzle row of bf16
constexpr int kStages = 4;
constexpr int kThreads = 128 * 3;         // producer warpgroup + 2 consumer warpgroups
constexpr int kBoxBytes = 128 * kBK * 2;  // one TMA box of weights: 128 rows x 64 k
constexpr int kMaxExperts = 256;
constexpr int64_t kSwapGateUpMaxRows = 768;  // rows per expert on average (header)

struct TileCoord {
  int e;      // expert
  int row0;   // first row of the tile in x / out
  int rows;   // rows of the expert in this tile (1..128, swap-AB 1..160)
  int n_blk;  // column block
};

// Per-kernel layout: rows (tokens) per tile and stage sizes: 128-row tiles, stages of 16 + 32 KB;
// swap-AB tiles of up to 160 rows (an expert's rows split evenly over ceil(rows / 160) tiles,
// so no short tail tile), stages of 20 + 32 KB.
template <bool kSwap>
struct Layout {
  static constexpr int kTileRows = kSwap ? 160 : kBM;
  static constexpr int kABytes = kTileRows * kBK * 2;
  static constexpr int kStageBytes = kABytes + 2 * kBoxBytes;
  static constexpr size_t kSmemBytes = 1024 + size_t(kStages) * kStageBytes +
                                       2 * kStages * sizeof(uint64_t) +
                                       (2 * (kMaxExperts + 1)) * 4 + kStages * sizeof(TileCoord);
};
static_assert(Layout<true>::kSmemBytes <= 227 * 1024, "swap-AB stages fit in shared memory");

struct GemmDevArgs {
  const int32_t* offsets;  // [E + 1], expert e's rows [offsets[e], offsets[e + 1])
  int num_experts;
  int total_rows;
  int n_out;     // SwiGLU: I (act columns); plain: the output columns (rows of a weight matrix)
  int k;         // contraction length
  int w_rows;    // rows of one expert's weight matrix in tm_w (SwiGLU: 2I)
  int n_blocks;  // column blocks per expert
  bf16* out;
  int64_t ld_out;
  int* tile_counter;  // zero at launch: tiles handed out after each CTA's first
};

#if JB_HAVE_SM90A
constexpr int kConsumerWarps = 8;                       // 2 warpgroups
constexpr int kProducerRegs = 40, kConsumerRegs = 232;  // 128 * 40 + 256 * 232 <= 65536

// D (64 x 256, fp32) += A (64 x 16, shared, K-major) * B (16 x 256, shared, K-major). The
// accumulator layout is mma.m16n8's C fragment repeated over the 32 column groups of 8: d[4 j +
// i] is row 16 w + lane / 4 (+ 8 for i >= 2), column 8 j + 2 (lane % 4) + (i & 1).
__device__ __forceinline__ void wgmma_m64n256k16_ss(float (&d)[128], uint64_t desc_a,
                                                    uint64_t desc_b) {
  asm volatile(
      "{\n"
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19,"
      " %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, "
      "%38, %39,"
      " %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, "
      "%58, %59,"
      " %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, "
      "%78, %79,"
      " %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, "
      "%98, %99,"
      " %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, "
      "%115, %116, %117, %118, %119,"
      " %120, %121, %122, %123, %124, %125, %126, %127}, "
      "%128, %129, 1, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]),
        "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
        "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]),
        "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]),
        "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]),
        "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]),
        "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]),
        "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]),
        "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),
        "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]),
        "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]),
        "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]),
        "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
      : "l"(desc_a), "l"(desc_b));
}

// D (64 x N, fp32) += A (64 x 16, shared, K-major) * B (16 x N, shared, K-major) for the
// swap-AB tiles (weights as A, token rows as B): N = 16, 32, ..., 160 (the tile's tokens rounded
// up to 16). The accumulator layout is m64n256's over N / 8 column groups: d[4 j + i] is row
// 16 w + lane / 4 (+ 8 for i >= 2), column 8 j + 2 (lane % 4) + (i & 1).
template <int N>
__device__ __forceinline__ void wgmma_m64k16_ss(float (&d)[N / 2], uint64_t desc_a,
                                                uint64_t desc_b);

template <>
__device__ __forceinline__ void wgmma_m64k16_ss<16>(float (&d)[8], uint64_t desc_a,
                                                    uint64_t desc_b) {
  asm volatile(
      "{\n"
      "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7}, %8, "
      "%9, 1, 1, 1, 0, 0;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7])
      : "l"(desc_a), "l"(desc_b));
}

template <>
__device__ __forceinline__ void wgmma_m64k16_ss<32>(float (&d)[16], uint64_t desc_a,
                                                    uint64_t desc_b) {
  asm volatile(
      "{\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, "
      "%9, %10, %11, %12, %13, %14, %15}, %16, %17, 1, 1, 1, 0, 0;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15])
      : "l"(desc_a), "l"(desc_b));
}

template <>
__device__ __forceinline__ void wgmma_m64k16_ss<48>(float (&d)[24], uint64_t desc_a,
                                                    uint64_t desc_b) {
  asm volatile(
      "{\n"
      "wgmma.mma_async.sync.aligned.m64n48k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, "
      "%9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23}, %24, %25, 1, 1, "
      "1, 0, 0;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23])
      : "l"(desc_a), "l"(desc_b));
}

template <>
__device__ __forceinline__ void wgmma_m64k16_ss<64>(float (&d)[32], uint64_t desc_a,
                                                    uint64_t desc_b) {
  asm volatile(
      "{\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, "
      "%9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, "
      "%27, %28, %29, %30, %31}, %32, %33, 1, 1, 1, 0, 0;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(desc_a), "l"(desc_b));
}

template <>
__device__ __forceinline__ void wgmma_m64k16_ss<80>(float (&d)[40], uint64_t desc_a,
                                                    uint64_t desc_b) {
  asm volatile(
      "{\n"
      "wgmma.mma_async.sync.aligned.m64n80k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, "
      "%9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, "
      "%27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39}, %40, %41, 1, 1, 1, 0, 0;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]),
        "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39])
      : "l"(desc_a), "l"(desc_b));
}

template <>
__device__ __forceinline__ void wgmma_m64k16_ss<96>(float (&d)[48], uint64_t desc_a,
                                                    uint64_t desc_b) {
  asm volatile(
      "{\n"
      "wgmma.mma_async.sync.aligned.m64n96k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, "
      "%9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, "
      "%27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, "
      "%45, %46, %47}, %48, %49, 1, 1, 1, 0, 0;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]),
        "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
        "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47])
      : "l"(desc_a), "l"(desc_b));
}

template <>
__device__ __forceinline__ void wgmma_m64k16_ss<112>(float (&d)[56], uint64_t desc_a,
                                                     uint64_t desc_b) {
  asm volatile(
      "{\n"
      "wgmma.mma_async.sync.aligned.m64n112k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, "
      "%9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, "
      "%27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, "
      "%45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55}, %56, %57, 1, 1, 1, 0, 0;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]),
        "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
        "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55])
      : "l"(desc_a), "l"(desc_b));
}

template <>
__device__ __forceinline__ void wgmma_m64k16_ss<128>(float (&d)[64], uint64_t desc_a,
                                                     uint64_t desc_b) {
  asm volatile(
      "{\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, "
      "%9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, "
      "%27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, "
      "%45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, "
      "%63}, %64, %65, 1, 1, 1, 0, 0;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]),
        "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
        "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]),
        "+f"(d[63])
      : "l"(desc_a), "l"(desc_b));
}

template <>
__device__ __forceinline__ void wgmma_m64k16_ss<144>(float (&d)[72], uint64_t desc_a,
                                                     uint64_t desc_b) {
  asm volatile(
      "{\n"
      "wgmma.mma_async.sync.aligned.m64n144k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, "
      "%9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, "
      "%27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, "
      "%45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, "
      "%63, %64, %65, %66, %67, %68, %69, %70, %71}, %72, %73, 1, 1, 1, 0, 0;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]),
        "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
        "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]),
        "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]),
        "+f"(d[70]), "+f"(d[71])
      : "l"(desc_a), "l"(desc_b));
}

template <>
__device__ __forceinline__ void wgmma_m64k16_ss<160>(float (&d)[80], uint64_t desc_a,
                                                     uint64_t desc_b) {
  asm volatile(
      "{\n"
      "wgmma.mma_async.sync.aligned.m64n160k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, "
      "%9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, "
      "%27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, "
      "%45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, "
      "%63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79}, %80, "
      "%81, 1, 1, 1, 0, 0;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]),
        "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
        "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]),
        "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]),
        "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]),
        "+f"(d[77]), "+f"(d[78]), "+f"(d[79])
      : "l"(desc_a), "l"(desc_b));
}

// The expert and row tile of tile t: the last expert whose first tile is <= t (experts without
// rows have no tiles and are passed over).
template <bool kSwap>
__device__ __forceinline__ TileCoord decode_tile(int t, const int32_t* offsets,
                                                 const int32_t* tile_start, int num_experts,
                                                 int n_blocks) {
  int lo = 0, hi = num_experts;
  while (hi - lo > 1) {
    const int mid = (lo + hi) >> 1;
    if (tile_start[mid] <= t)
      lo = mid;
    else
      hi = mid;
  }
  const int rows_e = offsets[lo + 1] - offsets[lo];
  constexpr int kR = Layout<kSwap>::kTileRows;
  const int mt = (rows_e + kR - 1) / kR;
  const int local = t - tile_start[lo];
  TileCoord c;
  c.e = lo;
  c.n_blk = local / mt;
  const int m = local - c.n_blk * mt;
  if constexpr (kSwap) {  // even split: tile m gets base (+ 1 for the first `extra`) rows
    const int base = rows_e / mt, extra = rows_e - base * mt;
    c.row0 = offsets[lo] + m * base + min(m, extra);
    c.rows = base + (m < extra ? 1 : 0);
  } else {
    c.row0 = offsets[lo] + m * kBM;
    c.rows = min(kBM, rows_e - m * kBM);
  }
  return c;
}

__device__ __forceinline__ void store_bf16x2(bf16* p, uint32_t v) {
  *reinterpret_cast<uint32_t*>(p) = v;
}

// Plain epilogue: this thread's accumulators as bf16 (one rounding) into out.
__device__ __forceinline__ void store_plain(const float (&acc)[128], const GemmDevArgs& a,
                                            const TileCoord& tc, int r_lo) {
  bf16* base = a.out + int64_t(tc.row0) * a.ld_out;
  const int c0 = tc.n_blk * kBN + 2 * (threadIdx.x & 3);
#pragma unroll
  for (int j = 0; j < 32; ++j) {
    const int col = c0 + 8 * j;
    if (col >= a.n_out) continue;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = r_lo + 8 * h;
      if (r < tc.rows)
        store_bf16x2(base + int64_t(r) * a.ld_out + col,
                     dev::pack_bf16x2(acc[4 * j + 2 * h], acc[4 * j + 2 * h + 1]));
    }
  }
}

// SwiGLU epilogue: accumulators j < 16 are g, j + 16 the u of the same act column. silu_fast:
// with silu_exact (expf, IEEE division) the epilogue, which the tensor cores wait for, cost 6%
// (T = 4096 / 8192, H200, 557 / 587 against 591 / 614 TFLOP/s for the expert stage, bench_moe
// BM_ExpertsPrefill/bf16/wgmma, 2026-11-29). The lanes schedule's act pass keeps silu_exact, so
// the two can differ in the last bit of a few act values.
__device__ __forceinline__ void store_swiglu(const float (&acc)[128], const GemmDevArgs& a,
                                             const TileCoord& tc, int r_lo) {
  bf16* base = a.out + int64_t(tc.row0) * a.ld_out;
  const int c0 = tc.n_blk * (kBN / 2) + 2 * (threadIdx.x & 3);
#pragma unroll
  for (int j = 0; j < 16; ++j) {
    const int col = c0 + 8 * j;
    if (col >= a.n_out) continue;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = r_lo + 8 * h;
      if (r >= tc.rows) continue;
      const int gi = 4 * j + 2 * h, ui = gi + 64;
      const uint32_t lo = __bfloat16_as_ushort(swiglu_act<true>(acc[gi], acc[ui]));
      const uint32_t hi = __bfloat16_as_ushort(swiglu_act<true>(acc[gi + 1], acc[ui + 1]));
      store_bf16x2(base + int64_t(r) * a.ld_out + col, lo | (hi << 16));
    }
  }
}

// Swap-AB consumer: one tile of tc.rows <= N token rows. The weights are wgmma's A (64 rows
// each), the token rows its B (N of the stage's 160), so a tile pays for its rows rounded up to
// 16, not 64. Warpgroup ci owns 64 act columns (gate rows and up rows [64 ci,
// 64 ci + 64) of the stage: acc0 = g, acc1 = u) or 128 output columns (weight rows [128 ci,
// 128 ci + 128): acc0, acc1 the two halves). The epilogue pairs lanes l and l ^ 4 (adjacent
// weight rows, same tokens) so that each stores two adjacent columns of one token as 4 bytes.
template <int N, bool kSwiGLU>
__device__ __forceinline__ void swap_tile(const TileCoord& tc, const GemmDevArgs& a,
                                          uint32_t stage0, int nk, uint64_t* full, uint64_t* empty,
                                          int& s, uint32_t& phase, int& prev, int ci) {
  const int warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
  float acc0[N / 2], acc1[N / 2];
#pragma unroll
  for (int i = 0; i < N / 2; ++i) acc0[i] = acc1[i] = 0.f;
  for (int kb = 0; kb < nk; ++kb) {
    if (kb > 0) dev::mbar_wait(&full[s], phase);
    const uint32_t sx = stage0 + s * Layout<true>::kStageBytes, sw = sx + Layout<true>::kABytes;
    const uint32_t w0 = kSwiGLU ? sw + ci * 64 * 128 : sw + ci * 128 * 128;
    const uint32_t w1 = kSwiGLU ? w0 + kBoxBytes : w0 + 64 * 128;
    dev::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kBK / 16; ++kk) {
      const uint64_t db = dev::desc_sw128(sx + kk * 32, 16, 1024);
      wgmma_m64k16_ss<N>(acc0, dev::desc_sw128(w0 + kk * 32, 16, 1024), db);
      wgmma_m64k16_ss<N>(acc1, dev::desc_sw128(w1 + kk * 32, 16, 1024), db);
    }
    dev::wgmma_commit();
    dev::wgmma_wait_one();
    if (kb > 0 && lane == 0) dev::mbar_arrive(&empty[prev]);
    prev = s;
    if (++s == kStages) {
      s = 0;
      phase ^= 1;
    }
  }
  dev::wgmma_wait_all();
  if (lane == 0) dev::mbar_arrive(&empty[prev]);

  const bool odd = (lane >> 2) & 1;  // this thread's weight row is the odd one of its pair
  const int tok_base = 2 * (lane & 3) + (odd ? 1 : 0);
#pragma unroll
  for (int q = 0; q < (kSwiGLU ? 1 : 2); ++q) {
    const float* acc = q ? acc1 : acc0;
    const int col_base =
        kSwiGLU ? tc.n_blk * (kBN / 2) + ci * 64 : tc.n_blk * kBN + ci * 128 + q * 64;
#pragma unroll
    for (int j = 0; j < N / 8; ++j) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int i0 = 4 * j + 2 * h;  // tokens 8 j + 2 (lane % 4) and the next
        uint32_t v0, v1;
        if constexpr (kSwiGLU) {
          v0 = __bfloat16_as_ushort(swiglu_act<true>(acc0[i0], acc1[i0]));
          v1 = __bfloat16_as_ushort(swiglu_act<true>(acc0[i0 + 1], acc1[i0 + 1]));
        } else {
          v0 = __bfloat16_as_ushort(__float2bfloat16_rn(acc[i0]));
          v1 = __bfloat16_as_ushort(__float2bfloat16_rn(acc[i0 + 1]));
        }
        const uint32_t recv = __shfl_xor_sync(0xffffffffu, odd ? v0 : v1, 4);
        const uint32_t packed = odd ? (recv | (v1 << 16)) : (v0 | (recv << 16));
        const int tok = 8 * j + tok_base;
        const int col = col_base + ((16 * warp + (lane >> 2) + 8 * h) & ~1);
        if (tok < tc.rows && col < a.n_out)
          store_bf16x2(a.out + int64_t(tc.row0 + tok) * a.ld_out + col, packed);
      }
    }
  }
}
#endif

template <bool kSwiGLU, bool kSwap>
__global__ void __launch_bounds__(kThreads, 1)
    grouped_gemm_kernel(const __grid_constant__ CUtensorMap tm_x,
                        const __grid_constant__ CUtensorMap tm_w, const GemmDevArgs a) {
#if JB_HAVE_SM90A
  extern __shared__ unsigned char smem_raw[];
  unsigned char* smem = reinterpret_cast<unsigned char*>(
      (reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  const uint32_t stage0 = dev::smem_addr(smem);
  using L = Layout<kSwap>;
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + kStages * L::kStageBytes);
  uint64_t* empty = full + kStages;
  int32_t* offsets = reinterpret_cast<int32_t*>(empty + kStages);  // [E + 1]
  int32_t* tile_start = offsets + kMaxExperts + 1;                 // [E + 1]
  // [kStages]: the tile a stage starts, decoded once by the producer (e < 0: the end mark)
  TileCoord* stage_tile = reinterpret_cast<TileCoord*>(tile_start + kMaxExperts + 1);
  const int tid = threadIdx.x, E = a.num_experts;

  // Offsets clamped into [0, total_rows] and made non-decreasing, so that a corrupt table can
  // cost wrong rows but never a store outside out.
  for (int e = tid; e <= E; e += kThreads) offsets[e] = min(max(a.offsets[e], 0), a.total_rows);
  if (tid == 0) {
    for (int s = 0; s < kStages; ++s) {
      dev::mbar_init(&full[s], 1);
      dev::mbar_init(&empty[s], kConsumerWarps);
    }
    dev::fence_mbarrier_init();
  }
  __syncthreads();
  if (tid == 0) {
    tile_start[0] = 0;
    for (int e = 0; e < E; ++e) {
      offsets[e + 1] = max(offsets[e + 1], offsets[e]);
      const int rows_e = offsets[e + 1] - offsets[e];
      tile_start[e + 1] = tile_start[e] + (rows_e + L::kTileRows - 1) / L::kTileRows * a.n_blocks;
    }
  }
  __syncthreads();
  const int total_tiles = tile_start[E];
  const int nk = (a.k + kBK - 1) / kBK;
  // Warp-uniform to the compiler (a shuffle from lane 0): wgmma in a branch the compiler thinks
  // divergent is serialised (ptxas C7518).
  const int wg = __shfl_sync(0xffffffffu, tid >> 7, 0);

  if (wg == 0) {  // producer
    dev::setmaxnreg_dec<kProducerRegs>();
    if (tid != 0) return;
    int s = 0;
    uint32_t phase = 0;
    // First tile blockIdx.x, then the next unclaimed one from the counter, so that tiles start
    // in index order and the CTAs sharing a weight tile read it at about the same time (a static
    // stride lets CTAs drift apart, and the weights in flight outgrow L2).
    for (int t = blockIdx.x;;) {
      const bool done = t >= total_tiles;
      // The next tile is claimed after the loads of this tile's second-to-last stage: claims
      // then come in the order the CTAs will start their tiles, so the row tiles of one weight
      // slice (adjacent indices) start within a stage or so of each other and the later ones
      // find the slice in L2. Claimed at this tile's first stage (until 2026-11-29), a tile
      // waited a whole tile before it started, and the CTAs sharing a slice drifted apart by up
      // to that much. Nsight Compute, H200, DRAM read / time, gate/up then down: T = 1024 4.12
      // GB 1.18 ms, 2.55 GB 658 us -> 3.85 GB 1.16 ms, 2.22 GB 596 us; T = 2048 4.59 GB 1.67
      // ms, 3.23 GB 909 us -> 4.16 GB 1.63 ms, 2.67 GB 871 us (results/h200-2026-11-29j,
      // call 5). One stage before the last load (the atomic's latency then shows) was slower at
      // T = 1024 (1.80 against 1.74 ms); eight stages, the same as two.
      const int claim_kb = max(nk - 2, 0);
      int next = 0;
      TileCoord tc{-1, 0, 0, 0};
      int w0 = 0, w1 = 0;
      if (!done) {
        tc = decode_tile<kSwap>(t, offsets, tile_start, E, a.n_blocks);
        w0 = tc.e * a.w_rows + tc.n_blk * (kSwiGLU ? kBN / 2 : kBN);
        w1 = w0 + (kSwiGLU ? a.n_out : kBN / 2);  // up rows, or the second half
      }
      for (int kb = 0; kb < (done ? 1 : nk); ++kb) {
        dev::mbar_wait(&empty[s], phase ^ 1);
        if (kb == 0) stage_tile[s] = tc;  // published by the arrive below (release)
        if (done) {
          dev::mbar_arrive(&full[s]);  // no copies: the consumers read the end mark and stop
        } else {
          dev::mbar_arrive_expect_tx(&full[s], L::kStageBytes);
          const uint32_t sa = stage0 + s * L::kStageBytes, sb = sa + L::kABytes;
          dev::tma_load_2d(sa, &tm_x, kb * kBK, tc.row0, &full[s]);
          dev::tma_load_2d(sb, &tm_w, kb * kBK, w0, &full[s]);
          dev::tma_load_2d(sb + kBoxBytes, &tm_w, kb * kBK, w1, &full[s]);
          if (kb == claim_kb) next = atomicAdd(a.tile_counter, 1) + static_cast<int>(gridDim.x);
        }
        if (++s == kStages) {
          s = 0;
          phase ^= 1;
        }
      }
      if (done) return;
      t = next;
    }
  }

  dev::setmaxnreg_inc<kConsumerRegs>();
  if constexpr (kSwap) {
    int s = 0, prev = 0;
    uint32_t phase = 0;
    for (;;) {
      dev::mbar_wait(&full[s], phase);  // the tile's first stage, which names the tile
      const TileCoord tc = stage_tile[s];
      if (tc.e < 0) return;
      // Warp-uniform to the compiler (see wg above): the wgmmas are in the branches.
      const int ncls = __shfl_sync(0xffffffffu, (tc.rows + 15) >> 4, 0);
      const int ci = wg - 1;
      switch (ncls) {
        case 1:
          swap_tile<16, kSwiGLU>(tc, a, stage0, nk, full, empty, s, phase, prev, ci);
          break;
        case 2:
          swap_tile<32, kSwiGLU>(tc, a, stage0, nk, full, empty, s, phase, prev, ci);
          break;
        case 3:
          swap_tile<48, kSwiGLU>(tc, a, stage0, nk, full, empty, s, phase, prev, ci);
          break;
        case 4:
          swap_tile<64, kSwiGLU>(tc, a, stage0, nk, full, empty, s, phase, prev, ci);
          break;
        case 5:
          swap_tile<80, kSwiGLU>(tc, a, stage0, nk, full, empty, s, phase, prev, ci);
          break;
        case 6:
          swap_tile<96, kSwiGLU>(tc, a, stage0, nk, full, empty, s, phase, prev, ci);
          break;
        case 7:
          swap_tile<112, kSwiGLU>(tc, a, stage0, nk, full, empty, s, phase, prev, ci);
          break;
        case 8:
          swap_tile<128, kSwiGLU>(tc, a, stage0, nk, full, empty, s, phase, prev, ci);
          break;
        case 9:
          swap_tile<144, kSwiGLU>(tc, a, stage0, nk, full, empty, s, phase, prev, ci);
          break;
        default:
          swap_tile<160, kSwiGLU>(tc, a, stage0, nk, full, empty, s, phase, prev, ci);
          break;
      }
    }
  }
  const int ci = wg - 1;  // consumer: rows [64 ci, 64 ci + 64) of a tile
  const int warp = (tid >> 5) & 3, lane = tid & 31;
  const int r_lo = ci * 64 + warp * 16 + (lane >> 2);  // this thread's rows: r_lo, r_lo + 8
  int s = 0, prev = 0;
  uint32_t phase = 0;
  float acc[128];
  for (;;) {
    dev::mbar_wait(&full[s], phase);  // the tile's first stage, which names the tile
    const TileCoord tc = stage_tile[s];
    if (tc.e < 0) return;
    const bool active = __shfl_sync(0xffffffffu, tc.rows > ci * 64, 0);
#pragma unroll
    for (int i = 0; i < 128; ++i) acc[i] = 0.f;
    for (int kb = 0; kb < nk; ++kb) {
      if (kb > 0) dev::mbar_wait(&full[s], phase);
      if (active) {
        const uint32_t sa = stage0 + s * L::kStageBytes + ci * 64 * 128,
                       sb = stage0 + s * L::kStageBytes + L::kABytes;
        dev::wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < kBK / 16; ++kk)
          wgmma_m64n256k16_ss(acc, dev::desc_sw128(sa + kk * 32, 16, 1024),
                              dev::desc_sw128(sb + kk * 32, 16, 1024));
        dev::wgmma_commit();
        dev::wgmma_wait_one();  // the previous stage's wgmmas are done: release it
      }
      if (kb > 0 && lane == 0) dev::mbar_arrive(&empty[prev]);
      prev = s;
      if (++s == kStages) {
        s = 0;
        phase ^= 1;
      }
    }
    dev::wgmma_wait_all();  // (no group in flight when inactive: returns at once)
    if (lane == 0) dev::mbar_arrive(&empty[prev]);
    if (active) {
      if constexpr (kSwiGLU)
        store_swiglu(acc, a, tc, r_lo);
      else
        store_plain(acc, a, tc, r_lo);
    }
  }
#else
  __trap();  // compute_90 PTX (no wgmma): grouped_wgmma_refusal() keeps launches away
#endif
}

// cuTensorMapEncodeTiled from the driver, through the runtime (no -lcuda link).
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q{};
    JB_CUDA(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault,
                                             &q));
    if (q != cudaDriverEntryPointSuccess || p == nullptr)
      fail(ErrorKind::Unsupported, "grouped wgmma gemm: the driver has no cuTensorMapEncodeTiled");
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
  }();
  return fn;
}

// Row-major bf16 [rows, cols] in boxes of 128 rows x 64 columns, 128-byte swizzle, zero fill.
CUtensorMap tensor_map_2d(const bf16* base, int64_t rows, int64_t cols, int box_rows,
                          const char* what) {
  CUtensorMap m;
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(cols), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(cols) * sizeof(bf16)};
  const cuuint32_t box[2] = {kBK, static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t elem_strides[2] = {1, 1};
  const CUresult r = tensor_map_encoder()(
      &m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<bf16*>(base), dims, strides, box,
      elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
      CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    fail(ErrorKind::Cuda, std::string("grouped wgmma gemm: cuTensorMapEncodeTiled for ") + what +
                              " [" + std::to_string(rows) + ", " + std::to_string(cols) +
                              "] failed with CUresult " + std::to_string(static_cast<int>(r)));
  return m;
}

template <bool kSwiGLU, bool kSwap>
void launch_grouped(const bf16* x, int64_t k, const bf16* w, int64_t w_rows, int64_t n_out,
                    const ExpertGroups& g, int64_t num_experts, bf16* out, int* tile_counter,
                    cudaStream_t stream) {
  allow_dynamic_smem<grouped_gemm_kernel<kSwiGLU, kSwap>>(Layout<kSwap>::kSmemBytes);
  const CUtensorMap tx = tensor_map_2d(x, g.total_rows, k, Layout<kSwap>::kTileRows, "the rows");
  const CUtensorMap tw = tensor_map_2d(w, num_experts * w_rows, k, 128, "the weights");
  GemmDevArgs a;
  a.offsets = g.offsets;
  a.num_experts = static_cast<int>(num_experts);
  a.total_rows = static_cast<int>(g.total_rows);
  a.n_out = static_cast<int>(n_out);
  a.k = static_cast<int>(k);
  a.w_rows = static_cast<int>(w_rows);
  const int64_t cols_per_block = kSwiGLU ? kBN / 2 : kBN;
  a.n_blocks = static_cast<int>((n_out + cols_per_block - 1) / cols_per_block);
  a.out = out;
  a.ld_out = n_out;
  a.tile_counter = tile_counter;
  // At most ceil(rows / 128) + E row tiles in all; a CTA without a tile returns at once.
  const int64_t max_tiles = ((g.total_rows + kBM - 1) / kBM + num_experts) * a.n_blocks;
  const int grid = static_cast<int>(std::min<int64_t>(sm_count(), max_tiles));
  grouped_gemm_kernel<kSwiGLU, kSwap>
      <<<grid, kThreads, Layout<kSwap>::kSmemBytes, stream>>>(tx, tw, a);
  JB_LAUNCH("grouped_gemm_kernel");
}

}  // namespace

std::string grouped_wgmma_refusal(const ExpertWeights& w, const bf16* x_rows, const bf16* y_rows,
                                  int64_t total_rows) {
  if (w.type != WeightType::Bf16) return "it takes bf16 weights only";
  if (!device_is_sm90()) return "it needs a compute capability 9.0 device (sm_90a)";
  if (w.num_experts > kMaxExperts)
    return "it takes at most " + std::to_string(kMaxExperts) + " experts (got " +
           std::to_string(w.num_experts) + ")";
  if (w.d % 8 != 0 || w.inter % 8 != 0)
    return "d and I must be multiples of 8 (d=" + std::to_string(w.d) +
           ", I=" + std::to_string(w.inter) + ")";
  if (!aligned16(x_rows) || !aligned16(y_rows) || !aligned16(w.gate_up) || !aligned16(w.down))
    return "rows and weights must be 16-byte aligned";
  const int64_t lim = 2147483647;
  if (total_rows > lim || w.num_experts * 2 * w.inter > lim || w.num_experts * w.d > lim)
    return "row counts above 2^31";
  return "";
}

void launch_grouped_experts_wgmma(const ExpertWeights& w, const ExpertGroups& g, const bf16* x_rows,
                                  bf16* act, bf16* y_rows, int* tile_counters,
                                  cudaStream_t stream) {
  JB_CUDA(cudaMemsetAsync(tile_counters, 0, 2 * sizeof(int), stream));
  // Swap-AB for the gate/up GEMM only up to kSwapGateUpMaxRows rows per expert on average (see
  // the header: at 1024 rows per expert the 128 x n256 tiles were 2.7% faster, at 512 swap-AB
  // 2.8% faster; the threshold sits between the two measured points).
  const bool swap_gate_up = g.total_rows <= kSwapGateUpMaxRows * w.num_experts;
  if (swap_gate_up)
    launch_grouped<true, true>(x_rows, w.d, w.gate_up, 2 * w.inter, w.inter, g, w.num_experts, act,
                               tile_counters, stream);
  else
    launch_grouped<true, false>(x_rows, w.d, w.gate_up, 2 * w.inter, w.inter, g, w.num_experts, act,
                                tile_counters, stream);
  launch_grouped<false, true>(act, w.inter, w.down, w.d, w.d, g, w.num_experts, y_rows,
                              tile_counters + 1, stream);
}

}  // namespace jb::cuda::experts_detail
