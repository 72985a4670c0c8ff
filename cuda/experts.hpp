// SwiGLU experts for a variable number of rows per expert (jamba-spec §2.6, §2.7), with bf16
// weights or ExpertsInt8 (W8A16: int8 weights with fp32 per-output-channel scales, bf16
// activations, fp32 accumulation; jamba-spec §6.6).
//
// Rounding points (the kernel contract, = reference/mlp.hpp with Round::Bf16):
//   g = bf16(x . gate_row), u = bf16(x . up_row)   fp32 accumulation, one bf16 store each;
//                                       int8: times the row scale in fp32 before the store
//   act = bf16(silu(g) * u)             silu and product in fp32, ONE bf16 store
//   y = bf16(act . down_row [* scale])  fp32 accumulation, one bf16 store
// g and u are rounded like HF's bf16 nn.Linear outputs (until 2026-11-28 they stayed fp32; the
// fp32 [n, 2I] GEMM output cost the prefill path ~13% of its time); HF also rounds silu(g),
// the contract does not.
//
// Two paths, same maths:
//   Gemv: for decode (<= 16 rows per expert), two launches (gate/up + act, then down), scale
//     applied once to each fp32 sum, deterministic reduction order. Two variants:
//     - FMA (cuda/experts.cu; all bf16, and int8 only when pinned with Int8Gemv::Fma, <= 8
//       rows per expert): one warp per weight row pair, fp32 FMA against every activation row,
//       kernels instantiated per bound on rows per expert (1, 2, 4, 8, 16) so that small bounds
//       get more warps per SM;
//     - tensor-core (cuda/experts_gemv_mma.cu; int8 under Auto at every bound): persistent
//       launches sized by occupancy, chained as programmatic dependent launches; weights
//       converted exactly to fp16 for mma.m16n8k16, activations rescaled per row by a power of
//       two into fp16, K split over the 8 warps of a block and the partial sums added in warp
//       order through shared memory.
//     This is the path with the hard target (>= 80% of copy bandwidth over the touched bytes).
//   Gemm: per non-empty expert, cuBLAS (bf16 output for gate/up; fp32 for int8, see below), or
//     when pinned (bf16, sm_90) our grouped TMA + wgmma GEMMs (GemmSchedule::Wgmma,
//     cuda/experts_wgmma.cu): two launches for every expert, offsets read on the device.
//     For int8 weights the expert's q values are first converted to a bf16 scratch copy (exact: |q|
//     <= 127) and the scales are applied to the fp32 GEMM output, so no bf16 rounding of q * scale
//     enters. Trade-off (documented in the report): this reads 1 byte and writes 2 bytes per
//     weight before the GEMM reads 2 bytes, i.e. about 5 bytes of traffic per weight per
//     expert call; negligible for long prefills (the GEMM is compute-bound at thousands of rows)
//     and the reason decode never takes this path. The cuBLAS schedules read the per-expert row
//     counts on the host (one device->host copy and stream sync per call), as cuBLAS needs
//     host-side shapes. Three schedules of the same GEMMs (GemmSchedule): Wgmma, Lanes (cuBLAS
//     per expert on concurrent streams) and Grouped (one cublasGemmGroupedBatchedEx call for
//     every expert's gate/up and one for every expert's down; bf16 weights only). All round at
//     the same points (fp32 accumulation, bf16 g, u, act and y), so they agree up to the
//     accumulation order and, for Wgmma, its silu_fast in act (a few fp32 ulp, see
//     cuda/experts_wgmma.cu).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <cuda_fp16.h>

#include "cuda/common.cuh"

namespace jb::cuda {

enum class WeightType { Bf16, Int8 };

// Stacked expert weights, experts contiguous (vLLM's fused w13 / w2 layout). For expert e:
//   gate_up[e]: [2I, d], rows [0, I) = gate_proj, rows [I, 2I) = up_proj (nn.Linear [out, in])
//   down[e]:    [d, I]
// Int8: the same shapes in int8 plus fp32 scales per output row: gate_up_scale [E, 2I],
// down_scale [E, d] (cuda/quant_int8.hpp produces them from bf16 weights).
struct ExpertWeights {
  WeightType type = WeightType::Bf16;
  int64_t num_experts = 0, d = 0, inter = 0;  // E, d_model, I
  const bf16* gate_up = nullptr;              // Bf16
  const bf16* down = nullptr;                 // Bf16
  const int8_t* gate_up_q = nullptr;          // Int8
  const float* gate_up_scale = nullptr;       // Int8
  const int8_t* down_q = nullptr;             // Int8
  const float* down_scale = nullptr;          // Int8
};

// Rows grouped by expert (cuda/moe.hpp builds this): expert e owns rows [offsets[e], offsets[e+1])
// of the row buffers; active[0 .. *num_active) lists the experts that own rows, ascending.
struct ExpertGroups {
  const int32_t* offsets = nullptr;     // device [E + 1]
  const int32_t* active = nullptr;      // device [E]
  const int32_t* num_active = nullptr;  // device [1]
  int64_t total_rows = 0;               // host: offsets[E]
  int64_t max_rows_per_expert = 0;      // host upper bound (e.g. the token count)
};

enum class ExpertsPath { Auto, Gemv, Gemm };
const char* experts_path_name(ExpertsPath p);
ExpertsPath parse_experts_path(const std::string& s);  // "auto" | "gemv" | "gemm"

// Largest rows-per-expert the Gemv path handles; Auto takes Gemv up to here.
constexpr int64_t kGemvMaxRows = 16;

// Which Gemv variant int8 weights take (benchmarks and compare cases pin one; Auto takes Mma,
// the faster at every row bound measured, see cuda/experts.cu):
//   Fma  fp32 FMA per weight and activation row (<= 8 rows per expert)
//   Mma  tensor cores with fp16 operands: int8 -> fp16 exactly (one xor, two byte-permutes and
//        two f16x2 subtracts per 4 weights), activations rescaled per row by a power of two
//        into fp16 (cuda/experts_gemv_mma.cu)
enum class Int8Gemv { Auto, Fma, Mma };
const char* int8_gemv_name(Int8Gemv v);
Int8Gemv parse_int8_gemv(const std::string& s);  // "auto" | "fma" | "mma"

// How the Gemm path issues the experts' GEMMs (benchmarks and compare cases pin one; Auto takes
// Wgmma where it can run, else Lanes). On an H200 (CUDA 13.0, bench_moe, x_cublas = one cuBLAS
// GEMM of the total shape over ours, same run): 2026-11-29, T = 1024 / 4096 / 8192, expert stage
// Lanes (4 lanes) 0.59 / 0.88 / 0.93, Wgmma 0.55 / 0.87 / 0.94 (T = 1024 is bound by streaming
// 16 experts' weights for ~128 rows each); Grouped 0.35 / 0.36 at T = 4096 / 8192. Auto took
// Lanes until Wgmma's swap-AB tiles (cuda/experts_wgmma.cu) made it the faster at every T
// measured: results/h200-2026-11-29j call 9, T = 1024 / 2048 / 4096 / 8192, expert stage Wgmma
// 0.70 / 0.88 / 0.89 / 0.94 against Lanes 0.59 / 0.84 / 0.88 / 0.93, whole block 0.68 / 0.86 /
// 0.88 / 0.92 against 0.54 / 0.79 / 0.86 / 0.92 (same process). Wgmma also needs no host sync
// (the block can be captured in a CUDA graph). One expert (the dense MLP: one plain GEMM each
// way, not measured against cuBLAS here) stays on Lanes under Auto:
//   Lanes    per expert with rows: gate/up GEMM, SwiGLU pass, down GEMM, the experts dealt to
//            gemm_lanes concurrent streams (ExpertLane), largest first
//   Grouped  one grouped cuBLAS call for every expert's gate/up, one SwiGLU pass over all rows,
//            one grouped call for every expert's down, all on the caller's stream; bf16 weights
//            only: int8 would need every touched expert's q converted to bf16 before the one
//            call (up to the whole stack at 2 bytes per weight, the memory ExpertsInt8 exists to
//            save), so int8 with Grouped pinned is Error{Unsupported} and Auto takes Lanes
//   Wgmma    our own grouped GEMMs on TMA and wgmma (cuda/experts_wgmma.cu): one launch for
//            every expert's gate/up with the SwiGLU in its epilogue (g and u never leave the
//            registers), one for every expert's down; no host sync. bf16 weights on a compute
//            capability 9.0 device, d and I multiples of 8, 16-byte aligned operands, at most
//            256 experts; otherwise Error{Unsupported}
enum class GemmSchedule { Auto, Lanes, Grouped, Wgmma };
const char* gemm_schedule_name(GemmSchedule s);
GemmSchedule parse_gemm_schedule(const std::string& s);  // "auto" | "lanes" | "grouped" | "wgmma"

// Host-side arguments of one cublasGemmGroupedBatchedEx call: one group of size 1 per expert
// with rows, column-major as in cuda/gemm.cu (rows of expert e are the n of its group).
struct GroupedGemmArgs {
  std::vector<cublasOperation_t> trans_a, trans_b;
  std::vector<int> m, n, k, lda, ldb, ldc, group_size;
  std::vector<float> alpha, beta;  // the scale type of CUBLAS_COMPUTE_32F, host pointer mode
};

// Scratch of the Grouped schedule, for every row of the call at once (grown, never shrunk).
struct GroupedGemmScratch {
  DeviceBuffer<bf16> gate_up;       // [total rows, 2I]
  DeviceBuffer<bf16> act;           // [total rows, I] (also the Wgmma schedule's)
  DeviceBuffer<int> tile_counters;  // Wgmma: the two launches' tile counters
  GroupedGemmArgs gate_up_args, down_args;
  // The A, B and C pointer arrays of both calls, groups entries each, in this order: gate/up A,
  // B, C, then down A, B, C. cuBLAS reads them from device memory; the host copy is the source
  // of the upload, kept here so it outlives the asynchronous copy.
  std::vector<void*> host_ptrs;
  DeviceBuffer<void*> ptrs;
};

// One concurrent stream of the Gemm path with its own cuBLAS handle and scratch (grown on
// demand, never shrunk). Experts on different lanes overlap, so one expert GEMM's last partial
// wave shares the GPU with the next expert's first.
struct ExpertLane {
  ExpertLane();  // creates the stream, the events and the handle
  ~ExpertLane();
  ExpertLane(const ExpertLane&) = delete;
  ExpertLane& operator=(const ExpertLane&) = delete;
  cudaStream_t stream = nullptr;
  cudaEvent_t fork = nullptr;  // recorded on the caller's stream (lane 0's is the one used)
  cudaEvent_t done = nullptr;  // recorded on this lane when its experts are issued
  cublasHandle_t blas = nullptr;
  DeviceBuffer<bf16> gate_up_bf16;  // bf16: [rows of one expert, 2I]
  DeviceBuffer<float> gate_up_f32;  // int8: [rows of one expert, 2I]
  DeviceBuffer<bf16> act;           // [rows of one expert, I]
  DeviceBuffer<float> down_f32;     // int8: [rows of one expert, d]
  DeviceBuffer<bf16> w_scratch;     // int8: one expert's q as bf16, [2I * d]
};

// Scratch reused across calls.
struct ExpertsWorkspace {
  DeviceBuffer<bf16> act;  // Gemv: [rows, I]
  Int8Gemv int8_gemv = Int8Gemv::Auto;
  // Mma: x and act as fp16 times 2^-s per row (pairs within each 4 elements interleaved
  // to match the weights' conversion), and 2^s per row.
  DeviceBuffer<__half> x_f16, act_f16;
  DeviceBuffer<float> x_f16_scale, act_f16_scale;
  // Gemm path: experts dealt to this many lanes, largest first onto the lane with the fewest
  // rows (1: everything on the caller's stream, largest expert first).
  int gemm_lanes = kDefaultGemmLanes;
  static constexpr int kDefaultGemmLanes = 4;
  std::vector<std::unique_ptr<ExpertLane>> lanes;
  std::vector<int32_t> host_offsets;
  GemmSchedule gemm_schedule = GemmSchedule::Auto;
  GroupedGemmScratch grouped;  // Grouped schedule (its cuBLAS handle is lane 0's)
};

// y_rows[r] = Expert_{e(r)}(x_rows[r]) (bf16 [total_rows, d]). Returns the variant that ran
// ("gemv_bf16", "gemv_int8", "gemv_mma_f16_int8", "gemm_bf16", "gemm_int8" (Lanes),
// "gemm_bf16_grouped", "gemm_bf16_wgmma"). ws.gemm_schedule applies to the Gemm path only. Gemv
// requires max_rows_per_expert <= kGemvMaxRows, d and I multiples of 16 and 16-byte aligned buffers
// (Error{Unsupported} otherwise when forced; Auto falls back to Gemm).
std::string run_experts(const ExpertWeights& w, const ExpertGroups& g, const bf16* x_rows,
                        bf16* y_rows, ExpertsPath path, ExpertsWorkspace& ws,
                        cudaStream_t stream = nullptr);

// y[M, N] (fp32) = x[M, K] (bf16) * W[N, K]^T (bf16), fp32 accumulation (CUBLAS_COMPUTE_32F),
// row-major with leading dimensions (0 = dense). Used for gate/up and the LM head's fp32 logits.
void linear_bf16_f32out(const bf16* x, int64_t ldx, const bf16* w, float* y, int64_t M, int64_t N,
                        int64_t K, cudaStream_t stream = nullptr, cublasHandle_t handle = nullptr);

}  // namespace jb::cuda
