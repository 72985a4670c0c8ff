// The CPU half of the MoE-family registry entries (ROUTER_TOPK, MOE, MLP, EXPERT_INT8,
// QUANT_INT8, EMBEDDING, LM_HEAD): names, descriptions and case grids, shared by
// compare/ops/moe.cpp (CUDA builds: adds inputs, references and kernels) and
// compare/ops/cpu_listings.cpp (CPU-only builds: the listing). Parameters and distributions: see
// moe.cpp's header.
#pragma once
#include <cstdint>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "compare/registry.hpp"

namespace jb::cmp::moe_grid {

inline std::vector<Case> router_cases() {
  std::vector<Case> v;
  for (int64_t d : {int64_t(4096), int64_t(100)})
    for (int64_t T : {1, 7, 257, 8192}) {
      v.push_back(make_case(
          "ROUTER_TOPK",
          {{"T", T}, {"d", d}, {"E", "16"}, {"k", "2"}, {"renorm", "0"}, {"route", "rand"}}));
      if (T == 8192) continue;
      v.push_back(make_case(
          "ROUTER_TOPK",
          {{"T", T}, {"d", d}, {"E", "16"}, {"k", "1"}, {"renorm", "0"}, {"route", "rand"}}));
      v.push_back(make_case(
          "ROUTER_TOPK",
          {{"T", T}, {"d", d}, {"E", "8"}, {"k", "2"}, {"renorm", "1"}, {"route", "rand"}}));
      for (const char* route : {"one", "skip", "tie"})
        for (const char* k : {"1", "2"})
          v.push_back(make_case(
              "ROUTER_TOPK",
              {{"T", T}, {"d", d}, {"E", "16"}, {"k", k}, {"renorm", "0"}, {"route", route}}));
    }
  return v;
}

inline Case moe_case(int64_t T, int64_t d, int64_t inter, int64_t E, int k, int renorm,
                     const char* route, const char* weights, const char* path) {
  return make_case("MOE", {{"T", T},
                           {"d", d},
                           {"I", inter},
                           {"E", E},
                           {"k", k},
                           {"renorm", renorm},
                           {"route", route},
                           {"weights", weights},
                           {"path", path}});
}

inline std::vector<Case> moe_cases() {
  std::vector<Case> v;
  // Small widths: the token sweep, bf16 and int8.
  for (int64_t T : {1, 2, 7, 16, 64, 257, 1024, 8192})
    v.push_back(moe_case(T, 128, 256, 16, 2, 0, "rand", "bf16", "auto"));
  for (int64_t T : {1, 7, 16, 257, 1024})
    v.push_back(moe_case(T, 128, 256, 16, 2, 0, "rand", "int8", "auto"));
  // Both expert paths on the same decode shapes.
  for (const char* w : {"bf16", "int8"}) {
    v.push_back(moe_case(7, 128, 256, 16, 2, 0, "rand", w, "gemm"));
    v.push_back(moe_case(16, 128, 256, 16, 2, 0, "rand", w, "gemv"));
  }
  // Routing extremes: every token to one expert (16 rows on one expert: the largest Gemv tile),
  // an expert without tokens, constructed ties; top-1; Mixtral's renormalised top-2 over 8.
  for (int k : {1, 2}) {
    v.push_back(moe_case(16, 128, 256, 16, k, 0, "one", "int8", "auto"));
    v.push_back(moe_case(257, 128, 256, 16, k, 0, "one", "bf16", "auto"));
    v.push_back(moe_case(7, 128, 256, 16, k, 0, "tie", "bf16", "auto"));
    v.push_back(moe_case(257, 128, 256, 16, k, 0, "tie", "int8", "auto"));
  }
  v.push_back(moe_case(64, 128, 256, 16, 2, 0, "skip", "bf16", "auto"));
  v.push_back(moe_case(5, 128, 256, 16, 2, 0, "skip", "int8", "auto"));
  for (int64_t T : {7, 257}) v.push_back(moe_case(T, 128, 256, 16, 1, 0, "rand", "bf16", "auto"));
  for (int64_t T : {1, 64, 257})
    v.push_back(moe_case(T, 128, 256, 8, 2, 1, "rand", "bf16", "auto"));
  // Widths that are not multiples of 16 (Gemm path, cuBLAS on unaligned rows) or of 8 (scalar
  // router / gather / combine).
  v.push_back(moe_case(7, 200, 264, 8, 2, 0, "rand", "bf16", "auto"));
  v.push_back(moe_case(7, 100, 136, 8, 2, 0, "rand", "int8", "auto"));
  v.push_back(moe_case(257, 100, 136, 8, 2, 0, "rand", "bf16", "auto"));
  // Mid widths: several 16-byte iterations per row with a partial tail (2064 = 16 * 129).
  for (const char* w : {"bf16", "int8"})
    for (int64_t T : {1, 7, 16, 33})
      v.push_back(moe_case(T, 2064, 4112, 4, 2, 0, "rand", w, "auto"));
  // The fp16 tensor-core Gemv (int8) inside the whole block: mixed rows per expert, one tile
  // and two.
  for (int64_t T : {7, 16})
    v.push_back(moe_case(T, 128, 256, 16, 2, 0, "rand", "int8", "gemv").set("gemv", "mma"));
  v.push_back(moe_case(16, 128, 256, 16, 1, 0, "one", "int8", "gemv").set("gemv", "mma"));
  // The Gemm path's grouped schedule pinned (sched=, cuda/experts.hpp GemmSchedule; bf16 only):
  // experts without rows and odd row counts (T=7 over 16 experts), one expert with every
  // token's top-1 (257 rows), an expert never selected, more rows per expert, and widths that
  // are not multiples of 16.
  const Case grouped[] = {moe_case(7, 128, 256, 16, 2, 0, "rand", "bf16", "gemm"),
                          moe_case(257, 128, 256, 16, 1, 0, "one", "bf16", "gemm"),
                          moe_case(257, 128, 256, 16, 2, 0, "one", "bf16", "gemm"),
                          moe_case(64, 128, 256, 16, 2, 0, "skip", "bf16", "gemm"),
                          moe_case(1024, 128, 256, 16, 2, 0, "rand", "bf16", "gemm"),
                          moe_case(257, 200, 264, 8, 2, 0, "rand", "bf16", "gemm")};
  for (const Case& c : grouped) v.push_back(Case(c).set("sched", "grouped"));
  // Our grouped wgmma GEMMs (sched=wgmma, bf16, sm_90a) on the same cases, plus tiles over long
  // contractions (d = 1024: 16 k-stages, I = 1544: 25, the last one partly zero fill), act
  // column blocks and down column blocks with a partial last one, experts with 1-3 row tiles.
  for (const Case& c : grouped) v.push_back(Case(c).set("sched", "wgmma"));
  v.push_back(moe_case(300, 1024, 1544, 8, 2, 0, "rand", "bf16", "gemm").set("sched", "wgmma"));
  v.push_back(moe_case(513, 136, 392, 3, 2, 1, "rand", "bf16", "gemm").set("sched", "wgmma"));
  // I not a multiple of 8: the scalar SwiGLU pass of the Gemm path, in both schedules.
  for (const char* sched : {"lanes", "grouped"})
    v.push_back(moe_case(33, 64, 100, 8, 2, 0, "rand", "bf16", "gemm").set("sched", sched));
  // Reference-consistency case: the streaming reference (used for big cases) on a small case.
  v.push_back(moe_case(64, 128, 256, 16, 2, 0, "rand", "int8", "auto").set("ref", "stream"));
  // Jamba-v0.1 MoE layer: 4096 x 14336, 16 experts, top-2, no renormalisation.
  for (const char* w : {"bf16", "int8"}) {
    for (int64_t T : {1, 2, 16})
      v.push_back(moe_case(T, 4096, 14336, 16, 2, 0, "rand", w, "auto").set("big", "1"));
    for (int64_t T : {1024, 8192})
      v.push_back(
          moe_case(T, 4096, 14336, 16, 2, 0, "rand", w, "auto").set("rows", "32").set("big", "1"));
  }
  for (const char* sched : {"grouped", "wgmma"})
    v.push_back(moe_case(1024, 4096, 14336, 16, 2, 0, "rand", "bf16", "gemm")
                    .set("sched", sched)
                    .set("rows", "32")
                    .set("big", "1"));
  v.push_back(moe_case(8192, 4096, 14336, 16, 2, 0, "rand", "bf16", "gemm")
                  .set("sched", "wgmma")
                  .set("rows", "32")
                  .set("big", "1"));
  return v;
}

inline Case mlp_case(const char* op, int64_t T, int64_t d, int64_t inter, const char* path) {
  return make_case(op, {{"T", T}, {"d", d}, {"I", inter}, {"path", path}});
}

inline std::vector<Case> mlp_cases() {
  std::vector<Case> v;
  for (int64_t T : {1, 2, 7, 16, 64, 257, 1024}) v.push_back(mlp_case("MLP", T, 128, 256, "auto"));
  v.push_back(mlp_case("MLP", 7, 128, 256, "gemm"));
  v.push_back(mlp_case("MLP", 16, 128, 256, "gemm"));
  for (int64_t T : {1, 16, 64}) v.push_back(mlp_case("MLP", T, 2064, 4112, "auto"));
  v.push_back(mlp_case("MLP", 7, 100, 136, "auto"));
  for (int64_t T : {1, 16}) v.push_back(mlp_case("MLP", T, 4096, 14336, "auto").set("big", "1"));
  v.push_back(mlp_case("MLP", 8192, 4096, 14336, "auto").set("rows", "32").set("big", "1"));
  return v;
}

inline std::vector<Case> expert_int8_cases() {
  std::vector<Case> v;
  for (int64_t T : {1, 2, 3, 4, 5, 8, 9, 16, 17, 257})
    v.push_back(mlp_case("EXPERT_INT8", T, 128, 256, "auto"));
  v.push_back(mlp_case("EXPERT_INT8", 7, 128, 256, "gemm"));
  for (int64_t T : {1, 4, 16, 64}) v.push_back(mlp_case("EXPERT_INT8", T, 2064, 4112, "auto"));
  v.push_back(mlp_case("EXPERT_INT8", 7, 100, 136, "auto"));
  // Every int8 Gemv variant pinned (gemv=, cuda/experts.hpp Int8Gemv) on one activation tile
  // (<= 8 rows) and two, and the fp16 one's per-row rescaling on activations far outside fp16's
  // range (xstd=1e6: |x| up to ~5e6 > 65504; xstd=1e-7: below fp16's smallest normal 6e-5).
  for (const char* gemv : {"fma", "mma"})
    for (int64_t T : {1, 5, 8, 9, 16}) {
      if (T > 8 && std::string(gemv) == "fma") continue;
      v.push_back(mlp_case("EXPERT_INT8", T, 128, 256, "gemv").set("gemv", gemv));
    }
  for (int64_t T : {1, 16})
    v.push_back(mlp_case("EXPERT_INT8", T, 2064, 4112, "gemv").set("gemv", "mma"));
  for (const char* xstd : {"1e6", "1e-7"})
    for (int64_t T : {4, 16})
      v.push_back(
          mlp_case("EXPERT_INT8", T, 128, 256, "gemv").set("gemv", "mma").set("xstd", xstd));
  for (int64_t T : {1, 16})
    v.push_back(mlp_case("EXPERT_INT8", T, 4096, 14336, "auto").set("big", "1"));
  // Both variants at Jamba widths (Auto takes mma: the FMA variant runs only when pinned).
  for (const char* gemv : {"mma", "fma"})
    for (int64_t T : {2, 8})
      v.push_back(
          mlp_case("EXPERT_INT8", T, 4096, 14336, "gemv").set("gemv", gemv).set("big", "1"));
  return v;
}

inline std::vector<Case> quant_cases() {
  std::vector<Case> v;
  const std::pair<int64_t, int64_t> shapes[] = {{1, 1}, {37, 100}, {64, 4096}, {300, 14336}};
  for (auto [rows, cols] : shapes)
    v.push_back(make_case("QUANT_INT8", {{"rows", rows}, {"cols", cols}}));
  // A whole Jamba-v0.1 expert's fused gate/up [2I, d].
  v.push_back(make_case("QUANT_INT8", {{"rows", "28672"}, {"cols", "4096"}, {"big", "1"}}));
  return v;
}

inline std::vector<Case> emb_cases() {
  std::vector<Case> v;
  for (int64_t n : {1, 7, 1024}) {
    v.push_back(make_case("EMBEDDING", {{"n", n}, {"V", "65536"}, {"d", "256"}}));
    v.push_back(make_case("EMBEDDING", {{"n", n}, {"V", "1000"}, {"d", "4096"}}));
    v.push_back(make_case("EMBEDDING", {{"n", n}, {"V", "1000"}, {"d", "100"}}));
  }
  return v;
}

inline std::vector<Case> head_cases() {
  std::vector<Case> v;
  for (int64_t B : {1, 4})
    for (int64_t L : {1, 7}) {
      v.push_back(make_case("LM_HEAD", {{"B", B}, {"L", L}, {"d", "256"}, {"V", "1000"}}));
      v.push_back(make_case("LM_HEAD", {{"B", B}, {"L", L}, {"d", "4096"}, {"V", "4000"}}));
    }
  v.push_back(make_case("LM_HEAD", {{"B", "1"}, {"L", "3"}, {"d", "100"}, {"V", "999"}}));
  v.push_back(
      make_case("LM_HEAD", {{"B", "16"}, {"L", "2"}, {"d", "4096"}, {"V", "65536"}, {"big", "1"}}));
  return v;
}

inline std::vector<OpInfo> listings() {
  const std::pair<const char*, const char*> names[] = {
      {"ROUTER_TOPK",
       "router logits, fp32 softmax over all experts, top-k (ties -> lower index), optional "
       "renormalisation, bf16 weights (jamba-spec §2.7)"},
      {"MOE",
       "MoE block: router, permutation, SwiGLU experts (bf16 or int8 W8A16), combine in "
       "ascending expert order (jamba-spec §2.7)"},
      {"MLP", "dense SwiGLU MLP = the expert kernels with one expert (jamba-spec §2.6)"},
      {"EXPERT_INT8",
       "one ExpertsInt8 SwiGLU expert (W8A16) vs the reference dequantising the same int8 "
       "values and scales (jamba-spec §6.6)"},
      {"QUANT_INT8",
       "ExpertsInt8 quantiser: int8 values and scales bitwise equal to the reference "
       "(ecosystem.md §1.8)"},
      {"EMBEDDING", "token embedding lookup, bounds-checked (jamba-spec §2.1)"},
      {"LM_HEAD",
       "final RMSNorm + LM head on the last position of each sequence, fp32 logits (jamba-spec "
       "§2.8)"}};
  std::vector<Case> (*const grids[])() = {router_cases, moe_cases, mlp_cases, expert_int8_cases,
                                          quant_cases,  emb_cases, head_cases};
  std::vector<OpInfo> ops;
  for (size_t i = 0; i < std::size(names); ++i) {
    OpInfo op;
    op.name = names[i].first;
    op.family = "moe";
    op.description = names[i].second;
    op.cases = grids[i];
    ops.push_back(std::move(op));
  }
  return ops;
}

}  // namespace jb::cmp::moe_grid
