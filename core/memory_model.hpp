// Memory model (design.md "Memory model"; jamba-spec §5, §6.1, §6.2; ecosystem.md §3.3, §5.2):
// exact parameter counts, weight bytes per storage format, KV cache bytes (attention layers only),
// Mamba conv + SSM state bytes (constant in context), and an explicit per-buffer model of the
// activation and workspace memory of our GPU engine for prefill (one-shot or chunked) and decode.
// The KV table, the max-context search and the engine's pre-flight check all use predict_memory();
// reports print its breakdown next to measured peaks.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.hpp"
#include "core/dtype.hpp"
#include "core/result.hpp"

namespace jb {

// ---- parameters (jamba-spec §5) ---------------------------------------------------------------
struct ParamCounts {
  // One layer of each kind, for this config.
  int64_t attention_layer = 0;   // q, k, v, o projections (no biases)
  int64_t mamba_layer = 0;       // in_proj, conv (+bias), x_proj, dt_proj (+bias), A_log, D,
                                 // out_proj, inner dt/B/C norms
  int64_t mlp = 0;               // one SwiGLU MLP: 3·d·I
  int64_t moe_layer = 0;         // E·3·d·I + router d·E
  int64_t moe_layer_active = 0;  // k·3·d·I + router d·E
  int64_t layer_norms = 0;       // input + pre-FFN RMSNorm: 2·d
  // Whole model.
  int64_t embedding = 0;   // V·d
  int64_t lm_head = 0;     // V·d, 0 when tied
  int64_t final_norm = 0;  // d
  int64_t attention = 0;   // all attention layers
  int64_t mamba = 0;       // all Mamba layers
  int64_t dense_mlp = 0;   // all dense-MLP layers
  int64_t moe = 0;         // all MoE layers (every expert)
  int64_t moe_active = 0;  // all MoE layers, k experts each
  int64_t norms = 0;       // all layer norms + final norm
  int64_t total = 0;
  int64_t active = 0;  // per token: k experts per MoE layer
};
ParamCounts count_params(const ModelConfig& c);

// ---- weight storage ----------------------------------------------------------------------------
enum class WeightFormat {
  BF16,         // every tensor bf16
  FP32,         // every tensor fp32
  ExpertsInt8,  // int8 gate/up/down of every expert AND dense MLP, one fp32 scale per output row
                // (jamba-spec §6.6, P2 "MoE and MLP weights"); everything else bf16
  Int8Linear,   // additionally int8 attention q/k/v/o and Mamba in/x/dt/out projections (per-row
                // fp32 scales); embedding, LM head, router, norms, conv, A, D, biases stay bf16.
                // Our reading of "int8 weights" for a dense model such as Llama-2-70B.
};
const char* weight_format_name(WeightFormat f);          // "bf16", "fp32", "experts-int8", "int8"
WeightFormat parse_weight_format(const std::string& s);  // Error{Usage} if unknown

struct WeightBytes {
  int64_t int8_params = 0;  // parameters stored as int8
  int64_t int8_bytes = 0;   // = int8_params
  int64_t scale_bytes = 0;  // fp32 per-output-row scales of the int8 matrices
  int64_t other_bytes = 0;  // everything else at the format's float width
  int64_t total = 0;
};
WeightBytes weight_bytes(const ModelConfig& c, WeightFormat f);

// ---- caches ------------------------------------------------------------------------------------
// n_attention_layers · 2 (K and V) · Hkv · head_dim · sizeof(kv dtype) (jamba-spec §5.4). A
// sliding window is ignored: the cache holds the whole context (the paper's Table 1 convention).
int64_t kv_bytes_per_token(const ModelConfig& c, Dtype kv_dtype = Dtype::BF16);

// Per sequence, constant in context (jamba-spec §5.4): conv state [Di, d_conv] (HF keeps d_conv
// columns) and SSM state [Di, d_state], for every Mamba layer.
struct MambaStateBytes {
  int64_t conv = 0;
  int64_t ssm = 0;
  int64_t total = 0;
};
MambaStateBytes mamba_state_bytes(const ModelConfig& c, Dtype ssm_dtype,
                                  Dtype conv_dtype = Dtype::BF16);

// ---- whole-footprint prediction ----------------------------------------------------------------
struct MemoryPolicy {
  WeightFormat weights = WeightFormat::BF16;
  Dtype kv_dtype = Dtype::BF16;
  Dtype conv_state_dtype = Dtype::BF16;
  Dtype ssm_state_dtype = Dtype::F32;  // our engine keeps the SSM state in fp32 (design.md)
  Dtype activation_dtype = Dtype::BF16;
  // CUDA context and module images (about 0.5 GiB on an H100 with lazy loading), NCCL/driver
  // buffers and allocator fragmentation: memory the engine cannot use for tensors.
  int64_t reserved_bytes = int64_t{1} << 30;
  int64_t cublas_workspace_bytes = int64_t{32} << 20;  // cuBLASLt's recommendation for Hopper
  int64_t attention_decode_splits = 16;                // flash-decoding partitions of the KV length
};

struct MemoryRequest {
  int64_t batch = 1;
  int64_t context = 0;        // tokens per sequence held in the cache (prompt + generated)
  int64_t prefill_chunk = 0;  // tokens per prefill step; 0 = the whole context in one step
};

struct MemoryTerm {
  std::string name;      // e.g. "act.mamba.in_proj_out"
  std::string category;  // weights | kv_cache | mamba_state | activations | workspace | reserved
  std::string group;     // activations: persistent | mamba | attention | mlp | moe | head
  int64_t bytes = 0;
  std::string formula;  // shape and dtype, e.g. "[T, 2*Di] bf16"
  bool counted = true;  // false for activation groups that are not the peak group
};

struct MemoryBreakdown {
  std::string model;
  MemoryPolicy policy;
  MemoryRequest request;
  int64_t prefill_tokens = 0;  // tokens per sequence in one prefill step (chunk or context)
  int64_t weights = 0, kv_cache = 0, mamba_state = 0, activations = 0, workspace = 0, reserved = 0,
          total = 0;
  std::string peak_group;  // the activation group that sets the peak
  std::vector<MemoryTerm> terms;

  nlohmann::json to_json() const;
  std::string to_markdown() const;  // one row per term
};

// Peak device memory of one run: weights + KV + Mamba state + activations + workspace +
// reserved. Activations are the peak over layers of the buffers live at the same time; see
// memory_model.cpp for every buffer and why it is there.
MemoryBreakdown predict_memory(const ModelConfig& c, const MemoryPolicy& policy,
                               const MemoryRequest& request);

// Largest context (tokens per sequence) whose predicted total fits in gpu_bytes; 0 when even one
// token does not fit; `limit` when everything up to limit fits. prefill_chunk = 0: one-shot.
int64_t max_context(const ModelConfig& c, const MemoryPolicy& policy, int64_t gpu_bytes,
                    int64_t batch, int64_t prefill_chunk, int64_t limit = int64_t{1} << 26);

// ---- paper reproduction: Table 1 and predicted Figure 2 (jamba-spec §6.1, §6.2) -----------------
struct MemoryReportOptions {
  std::vector<std::string> models;  // empty: the paper's set plus Jamba-1.5-Large, Llama-2-70B
  double gpu_mem_gib = 80.0;        // "80GB" GPU = 80 GiB = 81,920 MiB (A100/H100 80GB nominal)
  int64_t prefill_chunk = 8192;     // for the chunked-prefill column
  int64_t batch = 1;
  MemoryPolicy policy;  // weights field ignored: the figure uses int8 weights
};

struct MemoryReport {
  ReportSection section;        // title, full Markdown body, data
  std::string table1_markdown;  // Table 1 only (printed by `jambench report`)
  std::string figure2_markdown;
  std::string assumptions_markdown;     // bullet list of every assumption behind Figure 2
  std::vector<nlohmann::json> results;  // one per model (ecosystem.md §3.6 key names)
};
MemoryReport memory_report(const MemoryReportOptions& options);

}  // namespace jb
