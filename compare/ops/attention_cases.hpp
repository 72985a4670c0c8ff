// The CPU half of the attention registry entries: the ops' names, descriptions and case grids,
// shared by compare/ops/attention.cpp (CUDA builds: adds inputs, references and kernels) and
// compare/ops/cpu_listings.cpp (CPU-only builds: the listing). Parameters: see attention.cpp's
// header.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "compare/registry.hpp"

namespace jb::cmp::attn {

inline std::vector<Case> prefill_cases() {
  std::vector<Case> v;
  auto add = [&](const CaseParams& p) { v.push_back(make_case("ATTN_PREFILL", p)); };
  // Small heads (4:1): the length grid around the 64-row tiles, every row compared.
  for (const char* L : {"1", "2", "17", "63", "64", "65", "127", "128", "129", "1000"})
    add({{"H", "4"}, {"Hkv", "1"}, {"hd", "128"}, {"L", L}});
  add({{"H", "4"}, {"Hkv", "1"}, {"hd", "128"}, {"L", "2049"}, {"rows", "sampled"}});
  add({{"H", "4"}, {"Hkv", "1"}, {"hd", "128"}, {"L", "1000"}, {"qscale", "4"}});
  for (const char* L : {"1", "17", "129", "1000"})
    add({{"H", "4"}, {"Hkv", "1"}, {"hd", "64"}, {"L", L}});
  // Jamba 32:8 (jamba-spec §4.1), Llama-2-7B 32:32, Llama-2-70B 64:8 (§4.3).
  add({{"H", "32"}, {"Hkv", "8"}, {"hd", "128"}, {"L", "1"}});
  add({{"H", "32"}, {"Hkv", "8"}, {"hd", "128"}, {"L", "17"}});
  add({{"H", "32"}, {"Hkv", "8"}, {"hd", "128"}, {"L", "129"}});
  add({{"H", "32"}, {"Hkv", "8"}, {"hd", "128"}, {"L", "1000"}, {"rows", "sampled"}});
  add({{"H", "32"}, {"Hkv", "8"}, {"hd", "128"}, {"L", "2049"}, {"rows", "sampled"}});
  add({{"H", "32"}, {"Hkv", "8"}, {"hd", "128"}, {"L", "8192"}, {"rows", "sampled"}});
  add({{"H", "32"},
       {"Hkv", "8"},
       {"hd", "128"},
       {"L", "32768"},
       {"rows", "sampled"},
       {"big", "1"}});
  add({{"H", "32"}, {"Hkv", "32"}, {"hd", "128"}, {"L", "129"}});
  add({{"H", "32"}, {"Hkv", "32"}, {"hd", "128"}, {"L", "2049"}, {"rows", "sampled"}});
  add({{"H", "64"}, {"Hkv", "8"}, {"hd", "128"}, {"L", "129"}});
  add({{"H", "64"}, {"Hkv", "8"}, {"hd", "128"}, {"L", "1000"}, {"rows", "sampled"}});
  // RoPE (baselines): positions after a cache, large theta.
  add({{"H", "32"}, {"Hkv", "8"}, {"hd", "128"}, {"L", "129"}, {"rope", "1"}, {"theta", "10000"}});
  add({{"H", "4"},
       {"Hkv", "1"},
       {"hd", "128"},
       {"L", "300"},
       {"past", "3000"},
       {"rope", "1"},
       {"theta", "1000000"}});
  add({{"H", "4"}, {"Hkv", "2"}, {"hd", "64"}, {"L", "100"}, {"rope", "1"}, {"theta", "10000"}});
  // Prefill after an existing cache, and batches of mixed lengths (varlen).
  add({{"H", "32"}, {"Hkv", "8"}, {"hd", "128"}, {"L", "129"}, {"past", "1000"}});
  add({{"H", "4"}, {"Hkv", "1"}, {"hd", "128"}, {"L", "70"}, {"past", "33"}});
  add({{"H", "8"}, {"Hkv", "2"}, {"hd", "128"}, {"lens", "5+129+1000"}});
  add({{"H", "8"}, {"Hkv", "2"}, {"hd", "128"}, {"lens", "1+64+300"}, {"past", "100+0+2000"}});
  add({{"H", "4"}, {"Hkv", "1"}, {"hd", "64"}, {"lens", "17+1+200"}, {"past", "7+70+0"}});
  // Each variant on its own.
  for (const char* var : {"simple", "mma64", "mma128", "mma128r32"}) {
    add({{"H", "4"}, {"Hkv", "1"}, {"hd", "128"}, {"L", "200"}, {"past", "5"}, {"variant", var}});
    add({{"H", "4"}, {"Hkv", "2"}, {"hd", "64"}, {"lens", "3+150"}, {"variant", var}});
  }
  add({{"H", "32"},
       {"Hkv", "8"},
       {"hd", "128"},
       {"L", "2049"},
       {"rows", "sampled"},
       {"variant", "mma64"}});
  add({{"H", "32"},
       {"Hkv", "8"},
       {"hd", "128"},
       {"L", "2049"},
       {"rows", "sampled"},
       {"variant", "mma128r32"}});
  add({{"H", "8"}, {"Hkv", "2"}, {"hd", "128"}, {"lens", "5+129+1000"}, {"variant", "mma128r32"}});
  add({{"H", "4"},
       {"Hkv", "1"},
       {"hd", "128"},
       {"L", "1000"},
       {"qscale", "4"},
       {"variant", "mma128r32"}});
  add({{"H", "32"},
       {"Hkv", "8"},
       {"hd", "128"},
       {"L", "8192"},
       {"rows", "sampled"},
       {"variant", "mma128r32"}});
  // wgmma (hd 128, compute capability 9.0): the length grid around its 128-row blocks and 64-key
  // tiles, GQA 4:1 and 1:1, a cache before the new tokens, varlen, a sharp softmax, 2K and 8K.
  for (const char* L : {"1", "17", "64", "65", "127", "128", "129", "1000"})
    add({{"H", "4"}, {"Hkv", "1"}, {"hd", "128"}, {"L", L}, {"variant", "wgmma"}});
  add({{"H", "4"}, {"Hkv", "1"}, {"hd", "128"}, {"L", "200"}, {"past", "5"}, {"variant", "wgmma"}});
  add({{"H", "32"}, {"Hkv", "32"}, {"hd", "128"}, {"L", "129"}, {"variant", "wgmma"}});
  add({{"H", "8"}, {"Hkv", "2"}, {"hd", "128"}, {"lens", "5+129+1000"}, {"variant", "wgmma"}});
  add({{"H", "8"},
       {"Hkv", "2"},
       {"hd", "128"},
       {"lens", "1+64+300"},
       {"past", "100+0+2000"},
       {"variant", "wgmma"}});
  add({{"H", "4"},
       {"Hkv", "1"},
       {"hd", "128"},
       {"L", "1000"},
       {"qscale", "4"},
       {"variant", "wgmma"}});
  for (const char* L : {"2049", "8192"})
    add({{"H", "32"},
         {"Hkv", "8"},
         {"hd", "128"},
         {"L", L},
         {"rows", "sampled"},
         {"variant", "wgmma"}});
  return v;
}

inline std::vector<Case> decode_cases() {
  // Lengths 1 and odd, around the mma kernel's 16-key warp slices and 64-row tiles, mixed-length
  // batches, one split and 7 requested, G = 1 / 2 / 4 / 8, hd 64 and 128, a sharp softmax
  // (qscale), 8K to 128K.
  const std::vector<CaseParams> shapes = {
      {{"H", "32"}, {"Hkv", "8"}, {"hd", "128"}, {"lens", "1"}},
      {{"H", "32"}, {"Hkv", "8"}, {"hd", "128"}, {"lens", "17"}},
      {{"H", "32"}, {"Hkv", "8"}, {"hd", "128"}, {"lens", "1000"}},
      {{"H", "32"}, {"Hkv", "8"}, {"hd", "128"}, {"lens", "8192"}},
      {{"H", "32"}, {"Hkv", "8"}, {"hd", "128"}, {"lens", "32768"}},
      {{"H", "32"}, {"Hkv", "8"}, {"hd", "128"}, {"lens", "131072"}, {"big", "1"}},
      {{"H", "32"}, {"Hkv", "8"}, {"hd", "128"}, {"lens", "1+100+5000+20000"}},
      {{"H", "32"}, {"Hkv", "8"}, {"hd", "128"}, {"lens", "1+100+5000+70000"}, {"big", "1"}},
      {{"H", "32"}, {"Hkv", "8"}, {"hd", "128"}, {"lens", "1000"}, {"splits", "1"}},
      {{"H", "32"}, {"Hkv", "8"}, {"hd", "128"}, {"lens", "1000"}, {"splits", "7"}},
      {{"H", "32"}, {"Hkv", "8"}, {"hd", "128"}, {"lens", "5000"}, {"qscale", "4"}},
      {{"H", "64"}, {"Hkv", "8"}, {"hd", "128"}, {"lens", "5000"}},
      {{"H", "32"}, {"Hkv", "32"}, {"hd", "128"}, {"lens", "1000+3"}},
      {{"H", "16"}, {"Hkv", "8"}, {"hd", "128"}, {"lens", "333"}},
      {{"H", "8"}, {"Hkv", "2"}, {"hd", "128"}, {"lens", "15+16+63+64+65+129"}},
      {{"H", "4"}, {"Hkv", "1"}, {"hd", "64"}, {"lens", "1+17+1000"}},
      {{"H", "8"}, {"Hkv", "1"}, {"hd", "64"}, {"lens", "4097"}},
      {{"H", "2"}, {"Hkv", "2"}, {"hd", "64"}, {"lens", "77+3001"}},
      {{"H", "4"}, {"Hkv", "2"}, {"hd", "64"}, {"lens", "1+999"}},
  };
  // Every shape under Auto, which runs the mma kernel (resolve_decode_variant; the host test
  // AttentionDecodeVariant.NamesParseAndAuto pins it), and under the fma kernel. Should Auto
  // change, list variant=mma here instead: the same inputs under the same kernel twice would
  // only double the work (the big cases' CPU references take minutes).
  std::vector<Case> v;
  for (const char* var : {"", "fma"})
    for (CaseParams p : shapes) {
      if (*var) p.push_back({"variant", var});
      v.push_back(make_case("ATTN_DECODE", p));
    }
  return v;
}

inline std::vector<Case> layer_cases() {
  std::vector<Case> v;
  auto add = [&](const CaseParams& p) { v.push_back(make_case("ATTN_LAYER", p)); };
  add({{"d", "512"}, {"H", "4"}, {"Hkv", "1"}, {"hd", "128"}, {"L", "200"}, {"n", "5"}});
  add({{"d", "256"}, {"H", "2"}, {"Hkv", "1"}, {"hd", "128"}, {"L", "1"}, {"n", "3"}});
  add({{"d", "512"},
       {"H", "4"},
       {"Hkv", "2"},
       {"hd", "128"},
       {"L", "100"},
       {"n", "4"},
       {"rope", "1"},
       {"theta", "10000"}});
  add({{"d", "256"}, {"H", "4"}, {"Hkv", "2"}, {"hd", "64"}, {"L", "70"}, {"n", "3"}});
  // Jamba-v0.1 width (jamba-spec §4.1) at a modest length.
  add({{"d", "4096"}, {"H", "32"}, {"Hkv", "8"}, {"hd", "128"}, {"L", "64"}, {"n", "3"}});
  return v;
}

inline std::vector<OpInfo> listings() {
  std::vector<OpInfo> ops(3);
  ops[0].name = "ATTN_PREFILL";
  ops[0].description =
      "causal GQA prefill over the KV cache (varlen batch, optional RoPE), jamba-spec §2.3";
  ops[0].cases = prefill_cases;
  ops[1].name = "ATTN_DECODE";
  ops[1].description =
      "split-KV decode (fma or tensor-core kernel), one token per sequence, GQA, jamba-spec §2.3";
  ops[1].cases = decode_cases;
  ops[2].name = "ATTN_LAYER";
  ops[2].description =
      "attention mixer: projections + RoPE + cache + attention + o_proj; GPU prefill(L) then "
      "decode(n) vs reference prefill(L+n), jamba-spec §2.3";
  ops[2].cases = layer_cases;
  for (OpInfo& op : ops) op.family = "attention";
  return ops;
}

}  // namespace jb::cmp::attn
