// Memory model: parameter counts and weight bytes (jamba-spec §5), KV and Mamba state bytes
// (jamba-spec §5.4), activation/workspace model of our engine, max-context search, and the
// paper's Table 1 / Figure 2 (jamba-spec §6.1, §6.2).
#include "core/memory_model.hpp"

#include <algorithm>
#include <cmath>
#include <map>

#include "core/error.hpp"

namespace jb {

using json = nlohmann::json;

namespace {

// Checked int64 arithmetic: a request too large to count in bytes does not fit any GPU.
int64_t mul(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r))
    fail(ErrorKind::OutOfMemory, "memory request overflows int64 bytes (" + std::to_string(a) +
                                     " x " + std::to_string(b) + ")");
  return r;
}
int64_t mul(int64_t a, int64_t b, int64_t c) {
  return mul(mul(a, b), c);
}
int64_t mul(int64_t a, int64_t b, int64_t c, int64_t d) {
  return mul(mul(a, b, c), d);
}
int64_t add(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r))
    fail(ErrorKind::OutOfMemory, "memory request overflows int64 bytes");
  return r;
}

const char* dtype_short(Dtype d) {
  switch (d) {
    case Dtype::F32:
      return "fp32";
    case Dtype::F16:
      return "fp16";
    case Dtype::BF16:
      return "bf16";
    case Dtype::I8:
      return "int8";
    case Dtype::F64:
      return "fp64";
    case Dtype::I32:
      return "int32";
    case Dtype::I64:
      return "int64";
    case Dtype::U8:
      return "uint8";
  }
  return "?";
}

}  // namespace

// ---- parameters ---------------------------------------------------------------------------------

ParamCounts count_params(const ModelConfig& c) {
  validate_config(c);
  const int64_t d = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const int64_t H = c.num_attention_heads, Hkv = c.num_key_value_heads, hd = c.head_dim;
  const int64_t E = c.num_experts, k = c.num_experts_per_tok;
  const int64_t Di = c.d_inner(), R = c.mamba_dt_rank, N = c.mamba_d_state, K = c.mamba_d_conv;

  ParamCounts p;
  // jamba-spec §5: attention d·H·hd + 2·d·Hkv·hd + H·hd·d (no biases).
  p.attention_layer = mul(d, H, hd) + mul(2, d, Hkv, hd) + mul(H, hd, d);
  // Mamba: in_proj 2·Di·d, conv Di·K (+Di bias), x_proj Di·(R+2N), dt_proj R·Di + Di, A_log Di·N,
  // D Di, out_proj Di·d, inner norms R + 2N; in/out_proj biases only if mamba_proj_bias.
  p.mamba_layer = mul(2, Di, d) + mul(Di, K) + (c.mamba_conv_bias ? Di : 0) + mul(Di, R + 2 * N) +
                  mul(R, Di) + Di + mul(Di, N) + Di + mul(Di, d) +
                  (c.mamba_inner_norms ? R + 2 * N : 0) + (c.mamba_proj_bias ? 2 * Di + d : 0);
  p.mlp = mul(3, d, I);
  p.moe_layer = mul(E, p.mlp) + mul(d, E);
  p.moe_layer_active = mul(k, p.mlp) + mul(d, E);
  p.layer_norms = 2 * d;
  p.embedding = mul(V, d);
  p.lm_head = c.tie_word_embeddings ? 0 : mul(V, d);
  p.final_norm = d;

  for (const LayerSpec& s : c.layers()) {
    if (s.mixer == Mixer::Attention)
      p.attention += p.attention_layer;
    else
      p.mamba += p.mamba_layer;
    if (s.ffn == Ffn::Moe) {
      p.moe += p.moe_layer;
      p.moe_active += p.moe_layer_active;
    } else {
      p.dense_mlp += p.mlp;
    }
    p.norms += p.layer_norms;
  }
  p.norms += p.final_norm;
  const int64_t shared = p.attention + p.mamba + p.dense_mlp + p.norms + p.embedding + p.lm_head;
  p.total = shared + p.moe;
  p.active = shared + p.moe_active;
  return p;
}

// ---- weights ------------------------------------------------------------------------------------

const char* weight_format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::BF16:
      return "bf16";
    case WeightFormat::FP32:
      return "fp32";
    case WeightFormat::ExpertsInt8:
      return "experts-int8";
    case WeightFormat::Int8Linear:
      return "int8";
  }
  return "?";
}

WeightFormat parse_weight_format(const std::string& s) {
  for (WeightFormat f : {WeightFormat::BF16, WeightFormat::FP32, WeightFormat::ExpertsInt8,
                         WeightFormat::Int8Linear})
    if (s == weight_format_name(f)) return f;
  fail(ErrorKind::Usage,
       "unknown weight format '" + s + "' (expected bf16, fp32, experts-int8 or int8)");
}

WeightBytes weight_bytes(const ModelConfig& c, WeightFormat f) {
  const ParamCounts p = count_params(c);
  WeightBytes w;
  if (f == WeightFormat::BF16 || f == WeightFormat::FP32) {
    w.other_bytes = mul(p.total, f == WeightFormat::FP32 ? 4 : 2);
    w.total = w.other_bytes;
    return w;
  }
  const int64_t d = c.hidden_size, I = c.intermediate_size, E = c.num_experts;
  const int64_t Di = c.d_inner(), R = c.mamba_dt_rank, N = c.mamba_d_state;
  // One fp32 scale per output row (symmetric per-output-channel, jamba-spec §6.6): gate [I, d]
  // and up [I, d] have I rows each, down [d, I] has d rows.
  const int64_t mlp_rows = 2 * I + d;
  int64_t scale_rows = 0;
  for (const LayerSpec& s : c.layers()) {
    if (s.ffn == Ffn::Moe) {
      w.int8_params += mul(E, p.mlp);  // the router stays bf16
      scale_rows += mul(E, mlp_rows);
    } else {
      w.int8_params += p.mlp;
      scale_rows += mlp_rows;
    }
    if (f == WeightFormat::Int8Linear) {
      if (s.mixer == Mixer::Attention) {
        w.int8_params += p.attention_layer;
        scale_rows += c.q_dim() + 2 * c.kv_dim() + d;  // q, k, v, o output rows
      } else {
        // in_proj [2Di, d], x_proj [R+2N, Di], dt_proj [Di, R], out_proj [d, Di].
        w.int8_params += mul(2, Di, d) + mul(Di, R + 2 * N) + mul(R, Di) + mul(Di, d);
        scale_rows += 2 * Di + (R + 2 * N) + Di + d;
      }
    }
  }
  w.int8_bytes = w.int8_params;
  w.scale_bytes = mul(scale_rows, 4);
  w.other_bytes = mul(p.total - w.int8_params, 2);
  w.total = w.int8_bytes + w.scale_bytes + w.other_bytes;
  return w;
}

// ---- caches -------------------------------------------------------------------------------------

int64_t kv_bytes_per_token(const ModelConfig& c, Dtype kv_dtype) {
  validate_config(c);
  return mul(c.num_attention_layers(), 2, c.kv_dim(), dtype_size(kv_dtype));
}

MambaStateBytes mamba_state_bytes(const ModelConfig& c, Dtype ssm_dtype, Dtype conv_dtype) {
  validate_config(c);
  MambaStateBytes m;
  const int64_t n = c.num_mamba_layers();
  m.conv = mul(n, c.d_inner(), c.mamba_d_conv, dtype_size(conv_dtype));
  m.ssm = mul(n, c.d_inner(), c.mamba_d_state, dtype_size(ssm_dtype));
  m.total = m.conv + m.ssm;
  return m;
}

// ---- prediction ---------------------------------------------------------------------------------

MemoryBreakdown predict_memory(const ModelConfig& c, const MemoryPolicy& policy,
                               const MemoryRequest& r) {
  if (r.batch < 1)
    fail(ErrorKind::Usage, "batch must be >= 1 (got " + std::to_string(r.batch) + ")");
  if (r.context < 0 || r.prefill_chunk < 0)
    fail(ErrorKind::Usage, "context and prefill chunk must be >= 0");
  validate_config(c);

  MemoryBreakdown b;
  b.model = c.name;
  b.policy = policy;
  b.request = r;
  const int64_t B = r.batch;
  // Tokens per sequence processed in one step: the whole prompt (one-shot), or one chunk; at least
  // one token, which is also the decode step.
  int64_t L = r.prefill_chunk > 0 ? std::min(r.prefill_chunk, r.context) : r.context;
  L = std::max<int64_t>(L, 1);
  b.prefill_tokens = L;
  const int64_t T = mul(B, L);  // tokens in flight
  const int64_t a = dtype_size(policy.activation_dtype);
  const std::string at = dtype_short(policy.activation_dtype);
  const int64_t d = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const int64_t H = c.num_attention_heads, hd = c.head_dim;
  const int64_t E = c.num_experts, k = c.num_experts_per_tok;
  const int64_t Di = c.d_inner(), R = c.mamba_dt_rank, N = c.mamba_d_state;
  const int64_t n_attn = c.num_attention_layers(), n_mamba = c.num_mamba_layers();
  const int64_t n_moe = c.num_moe_layers(), n_dense = c.num_hidden_layers - n_moe;

  auto term = [&](const std::string& name, const std::string& category, const std::string& group,
                  int64_t bytes, const std::string& formula) {
    b.terms.push_back(MemoryTerm{name, category, group, bytes, formula, true});
  };

  // Weights, resident for the whole run.
  const WeightBytes w = weight_bytes(c, policy.weights);
  term("weights", "weights", "", w.total,
       std::string(weight_format_name(policy.weights)) + " (int8 " + std::to_string(w.int8_bytes) +
           " B + fp32 scales " + std::to_string(w.scale_bytes) + " B + other " +
           std::to_string(w.other_bytes) + " B)");

  // KV cache: allocated for the full context up front, attention layers only
  // [n_attn, B, context, 2, Hkv, hd] (ecosystem.md §3.3: counting Mamba layers here
  // over-allocates).
  term("kv_cache", "kv_cache", "", mul(mul(B, r.context), kv_bytes_per_token(c, policy.kv_dtype)),
       "[n_attn=" + std::to_string(n_attn) + ", B, context, 2, Hkv, hd] " +
           dtype_short(policy.kv_dtype));

  // Mamba state per sequence, constant in context: conv [Di, d_conv] and SSM [Di, N] per layer.
  const MambaStateBytes ms = mamba_state_bytes(c, policy.ssm_state_dtype, policy.conv_state_dtype);
  term("mamba_conv_state", "mamba_state", "", mul(B, ms.conv),
       "[n_mamba=" + std::to_string(n_mamba) + ", B, Di, d_conv] " +
           dtype_short(policy.conv_state_dtype));
  term("mamba_ssm_state", "mamba_state", "", mul(B, ms.ssm),
       "[n_mamba, B, Di, d_state] " + std::string(dtype_short(policy.ssm_state_dtype)));

  // Activations. The engine runs one layer at a time and reuses one set of scratch buffers for
  // every layer, so the peak is the buffers live across layers ("persistent") plus the largest
  // per-layer group (a Mamba mixer, an attention mixer, a dense MLP, an MoE block, or the head).
  // T = B x L tokens are in flight, where L is the prefill chunk (chunked) or the whole prompt
  // (one-shot); decode is the same with L = 1 and never exceeds prefill.
  const std::string TT = "[T=" + std::to_string(T);
  // Residual stream h (jamba-spec §1.3): the residual stays in the model dtype.
  term("act.residual", "activations", "persistent", mul(T, d, a), TT + ", d] " + at);
  // input_layernorm / pre_ff_layernorm output that feeds the mixer or the FFN.
  term("act.normed", "activations", "persistent", mul(T, d, a), TT + ", d] " + at);
  // Mixer or FFN output before the residual add (out_proj / o_proj / down_proj output).
  term("act.block_out", "activations", "persistent", mul(T, d, a), TT + ", d] " + at);

  if (n_mamba > 0) {
    // in_proj output: x and z halves (jamba-spec §2.4).
    term("act.mamba.in_proj_out", "activations", "mamba", mul(T, 2 * Di, a), TT + ", 2*Di] " + at);
    // causal conv1d + SiLU output, the scan input u.
    term("act.mamba.conv_out", "activations", "mamba", mul(T, Di, a), TT + ", Di] " + at);
    // x_proj output (dt | B | C), then the dt/B/C RMSNorm outputs of the same size.
    term("act.mamba.x_proj_out", "activations", "mamba", mul(T, R + 2 * N, a),
         TT + ", R+2N] " + at);
    if (c.mamba_inner_norms)
      term("act.mamba.inner_norm_out", "activations", "mamba", mul(T, R + 2 * N, a),
           TT + ", R+2N] " + at);
    // dt_proj GEMM output; bias and softplus are applied in fp32 inside the scan (jamba-spec §7
    // item 10), so no fp32 [T, Di] copy is kept.
    term("act.mamba.dt", "activations", "mamba", mul(T, Di, a), TT + ", Di] " + at);
    // Scan output y, gated by SiLU(z) in the scan kernel; out_proj writes act.block_out.
    term("act.mamba.scan_out", "activations", "mamba", mul(T, Di, a), TT + ", Di] " + at);
  }
  if (n_attn > 0) {
    // q projection; new k, v are projected into a staging buffer and then copied into the cache.
    term("act.attn.q", "activations", "attention", mul(T, c.q_dim(), a), TT + ", H*hd] " + at);
    term("act.attn.kv_new", "activations", "attention", mul(T, 2 * c.kv_dim(), a),
         TT + ", 2*Hkv*hd] " + at);
    // Attention output before o_proj.
    term("act.attn.out", "activations", "attention", mul(T, c.q_dim(), a), TT + ", H*hd] " + at);
    // Flash-attention style prefill keeps only the softmax log-sum-exp per row, never the
    // [L, context] score matrix.
    term("act.attn.lse", "activations", "attention", mul(T, H, 4), TT + ", H] fp32");
    // Flash-decoding partial outputs and (max, sum) per KV split; decode only, counted always.
    term("act.attn.decode_partials", "activations", "attention",
         mul(B, H, policy.attention_decode_splits, (hd + 2) * 4),
         "[B, H, splits=" + std::to_string(policy.attention_decode_splits) + ", hd+2] fp32");
  }
  if (n_dense > 0) {
    // SwiGLU: gate and up projections, then silu(gate) * up; down_proj writes act.block_out.
    term("act.mlp.gate_up", "activations", "mlp", mul(T, 2 * I, a), TT + ", 2*I] " + at);
    term("act.mlp.hidden", "activations", "mlp", mul(T, I, a), TT + ", I] " + at);
  }
  if (n_moe > 0) {
    const int64_t Tk = mul(T, k);
    const std::string TK = "[T*k=" + std::to_string(Tk);
    // Router logits and softmax in fp32 (jamba-spec §2.7).
    term("act.moe.router_logits", "activations", "moe", mul(T, E, 4), TT + ", E] fp32");
    // Top-k expert ids (int32) and weights (fp32).
    term("act.moe.topk", "activations", "moe", mul(T, k, 8), TT + ", k] int32+fp32");
    // Token order sorted by expert and its inverse, plus per-expert offsets.
    term("act.moe.permutation", "activations", "moe", mul(Tk, 8) + (E + 1) * 4,
         TK + "] int32 x2 + [E+1] int32");
    // Tokens gathered into expert-contiguous order (the grouped GEMM input).
    term("act.moe.x_sorted", "activations", "moe", mul(Tk, d, a), TK + ", d] " + at);
    term("act.moe.gate_up", "activations", "moe", mul(Tk, 2 * I, a), TK + ", 2*I] " + at);
    term("act.moe.hidden", "activations", "moe", mul(Tk, I, a), TK + ", I] " + at);
    // Expert outputs before the weighted combine into act.block_out.
    term("act.moe.expert_out", "activations", "moe", mul(Tk, d, a), TK + ", d] " + at);
  }
  // Final norm and LM head at the last position only (num_logits_to_keep = 1), fp32 logits.
  term("act.head.final_norm", "activations", "head", mul(B, d, a), "[B, d] " + at);
  term("act.head.logits", "activations", "head", mul(B, V, 4), "[B, V] fp32");

  term("cublas_workspace", "workspace", "", policy.cublas_workspace_bytes,
       "cuBLAS/cuBLASLt workspace, one stream");
  term("reserved", "reserved", "", policy.reserved_bytes,
       "CUDA context, module images, allocator fragmentation");

  // Sum: the activation peak is persistent + the largest group.
  std::map<std::string, int64_t> group_bytes;
  for (const MemoryTerm& t : b.terms)
    if (t.category == "activations" && t.group != "persistent")
      group_bytes[t.group] = add(group_bytes[t.group], t.bytes);
  int64_t peak = -1;
  for (const auto& [g, bytes] : group_bytes)
    if (bytes > peak) {
      peak = bytes;
      b.peak_group = g;
    }
  for (MemoryTerm& t : b.terms) {
    if (t.category == "activations" && t.group != "persistent") t.counted = t.group == b.peak_group;
    if (!t.counted) continue;
    int64_t* slot = t.category == "weights"       ? &b.weights
                    : t.category == "kv_cache"    ? &b.kv_cache
                    : t.category == "mamba_state" ? &b.mamba_state
                    : t.category == "activations" ? &b.activations
                    : t.category == "workspace"   ? &b.workspace
                                                  : &b.reserved;
    *slot = add(*slot, t.bytes);
  }
  b.total = add(add(add(b.weights, b.kv_cache), add(b.mamba_state, b.activations)),
                add(b.workspace, b.reserved));
  return b;
}

json MemoryBreakdown::to_json() const {
  json terms_json = json::array();
  for (const MemoryTerm& t : terms)
    terms_json.push_back({{"name", t.name},
                          {"category", t.category},
                          {"group", t.group},
                          {"bytes", t.bytes},
                          {"formula", t.formula},
                          {"counted", t.counted}});
  return {{"model", model},
          {"weights_format", weight_format_name(policy.weights)},
          {"kv_dtype", dtype_short(policy.kv_dtype)},
          {"ssm_state_dtype", dtype_short(policy.ssm_state_dtype)},
          {"conv_state_dtype", dtype_short(policy.conv_state_dtype)},
          {"activation_dtype", dtype_short(policy.activation_dtype)},
          {"batch", request.batch},
          {"context", request.context},
          {"prefill_chunk", request.prefill_chunk},
          {"prefill_tokens", prefill_tokens},
          {"weights_bytes", weights},
          {"kv_bytes", kv_cache},
          {"mamba_state_bytes", mamba_state},
          {"activation_bytes", activations},
          {"workspace_bytes", workspace},
          {"reserved_bytes", reserved},
          {"total_bytes", total},
          {"activation_peak_group", peak_group},
          {"terms", terms_json}};
}

std::string MemoryBreakdown::to_markdown() const {
  MarkdownTable t({"term", "category", "group", "bytes", "GiB", "shape / note", "counted"},
                  "lllrrlc");
  for (const MemoryTerm& m : terms)
    t.add_row({m.name, m.category, m.group, format_int(m.bytes),
               format_fixed(m.bytes / 1073741824.0, 3), m.formula, m.counted ? "yes" : "no"});
  t.add_row({"**total**", "", "", format_int(total), format_fixed(total / 1073741824.0, 3),
             "activation peak group: " + peak_group, ""});
  return t.str();
}

int64_t max_context(const ModelConfig& c, const MemoryPolicy& policy, int64_t gpu_bytes,
                    int64_t batch, int64_t prefill_chunk, int64_t limit) {
  if (limit < 1) fail(ErrorKind::Usage, "max_context limit must be >= 1");
  auto fits = [&](int64_t context) {
    try {
      return predict_memory(c, policy, MemoryRequest{batch, context, prefill_chunk}).total <=
             gpu_bytes;
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::OutOfMemory) return false;  // too large to even count
      throw;
    }
  };
  if (!fits(1)) return 0;
  if (fits(limit)) return limit;
  // The total is non-decreasing in context, so the largest fitting context is found by bisection
  // with the invariant fits(lo) && !fits(hi).
  int64_t lo = 1, hi = limit;
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    (fits(mid) ? lo : hi) = mid;
  }
  return lo;
}

// ---- paper reproduction -------------------------------------------------------------------------

namespace {

struct PaperRow {
  const char* preset;
  const char* label;
  const char* total;  // as printed in the paper
  const char* active;
  const char* kv;  // KV cache at 256K, 16-bit
  const char* source;
};

// jamba-spec §6.1 (P1 Table 1) and §6.6 (P2 Table 1 for Jamba-1.5-Large).
const std::vector<PaperRow>& paper_table1() {
  static const std::vector<PaperRow> rows = {
      {"llama-2-7b", "LLAMA-2 6.7B", "6.7B", "6.7B", "128GB", "P1 Table 1"},
      {"mistral-7b", "Mistral 7.2B", "7.2B", "7.2B", "32GB", "P1 Table 1"},
      {"mixtral-8x7b", "Mixtral 8x7B", "46.7B", "12.9B", "32GB", "P1 Table 1"},
      {"jamba-v0.1", "Jamba (v0.1 / 1.5-Mini)", "52B", "12B", "4GB", "P1 Table 1"},
      {"jamba-1.5-large", "Jamba-1.5-Large", "398B", "94B", "9GB", "P2 Table 1 [secondary]"},
      // Not in P1's table; P2's Table 1 lists Llama-3.1-70B (same 80 layers x 8 KV heads x 128).
      {"llama-2-70b", "Llama-2-70B", "-", "-", "(80GB: Llama-3.1-70B, P2)",
       "P2 Table 1, Llama-3.1-70B [secondary]"},
      {"llama-2-13b", "Llama-2-13B", "-", "-", "-", "not in P1 Table 1"},
  };
  return rows;
}

struct PaperBar {
  const char* preset;
  const char* bar;
};
// jamba-spec §6.2: bar values from secondary sources only.
const std::vector<PaperBar>& paper_figure2() {
  static const std::vector<PaperBar> bars = {
      {"jamba-v0.1", "140K"}, {"mixtral-8x7b", "64K"}, {"llama-2-70b", "16K [secondary]"}};
  return bars;
}

const PaperRow* find_paper_row(const std::string& preset) {
  for (const PaperRow& r : paper_table1())
    if (preset == r.preset) return &r;
  return nullptr;
}

std::string billions(int64_t n) {
  return format_fixed(n / 1e9, 2) + "B";
}

}  // namespace

MemoryReport memory_report(const MemoryReportOptions& opt) {
  if (!(opt.gpu_mem_gib > 0.0) || !std::isfinite(opt.gpu_mem_gib))
    fail(ErrorKind::Usage, "GPU memory must be a positive number of GiB");
  if (opt.prefill_chunk < 1) fail(ErrorKind::Usage, "prefill chunk must be >= 1");
  const std::vector<std::string> table_models =
      opt.models.empty() ? std::vector<std::string>{"llama-2-7b", "mistral-7b",      "mixtral-8x7b",
                                                    "jamba-v0.1", "jamba-1.5-large", "llama-2-70b"}
                         : opt.models;
  const std::vector<std::string> fig_models =
      opt.models.empty() ? std::vector<std::string>{"jamba-v0.1", "mixtral-8x7b", "llama-2-70b"}
                         : opt.models;
  const int64_t ctx256k = 262144;
  const int64_t gpu_bytes = static_cast<int64_t>(std::llround(opt.gpu_mem_gib * 1073741824.0));

  MemoryReport rep;
  std::map<std::string, json> per_model;

  // ---- Table 1.
  MarkdownTable t1(
      {"model", "total params (ours)", "paper", "active params (ours)", "paper", "KV bytes/token",
       "KV @256K, 16-bit (ours)", "paper", "Mamba state/seq bf16", "Mamba state/seq (fp32 SSM)"},
      "lrrrrrrrrr");
  for (const std::string& name : table_models) {
    const ModelConfig c = resolve_model(name);
    const ParamCounts p = count_params(c);
    const int64_t kv_tok = kv_bytes_per_token(c, Dtype::BF16);
    const int64_t kv256 = mul(kv_tok, ctx256k);
    const MambaStateBytes st16 = mamba_state_bytes(c, Dtype::BF16, Dtype::BF16);
    const MambaStateBytes st32 = mamba_state_bytes(c, Dtype::F32, Dtype::BF16);
    const PaperRow* paper = find_paper_row(name);
    t1.add_row(
        {paper ? paper->label : name, billions(p.total) + " (" + format_int(p.total) + ")",
         paper ? paper->total : "-", billions(p.active) + " (" + format_int(p.active) + ")",
         paper ? paper->active : "-", format_int(kv_tok),
         format_fixed(kv256 / 1073741824.0, 2) + " GiB", paper ? paper->kv : "-",
         st16.total ? format_int(st16.total) + " B (" + format_bytes_auto(st16.total) + ")" : "0",
         st32.total ? format_bytes_auto(st32.total) : "0"});
    json& m = per_model[name];
    m["model"] = name;
    m["params_total"] = p.total;
    m["params_active"] = p.active;
    m["params_breakdown"] = {{"attention_layer", p.attention_layer},
                             {"mamba_layer", p.mamba_layer},
                             {"mlp", p.mlp},
                             {"moe_layer", p.moe_layer},
                             {"moe_layer_active", p.moe_layer_active},
                             {"embedding", p.embedding},
                             {"lm_head", p.lm_head}};
    m["layers"] = {{"attention", c.num_attention_layers()},
                   {"mamba", c.num_mamba_layers()},
                   {"moe", c.num_moe_layers()}};
    m["kv_bytes_per_token"] = kv_tok;
    m["kv_bytes"] = kv256;
    m["kv_context"] = ctx256k;
    m["mamba_state_bytes"] = st16.total;
    m["mamba_state_bytes_fp32_ssm"] = st32.total;
    json wb = json::object();
    for (WeightFormat f : {WeightFormat::BF16, WeightFormat::FP32, WeightFormat::ExpertsInt8,
                           WeightFormat::Int8Linear})
      wb[weight_format_name(f)] = weight_bytes(c, f).total;
    m["weights_bytes"] = wb;
    if (paper)
      m["paper"] = {{"total", paper->total},
                    {"active", paper->active},
                    {"kv_256k", paper->kv},
                    {"source", paper->source}};
  }
  rep.table1_markdown = t1.str();

  // ---- Figure 2.
  MarkdownTable f2({"model", "paper bar", "weights experts-int8", "one-shot prefill",
                    "chunked prefill (" + std::to_string(opt.prefill_chunk) + ")",
                    "weights int8 (all linear)", "one-shot prefill", "chunked prefill"},
                   "lrrrrrrr");
  std::string breakdowns;
  for (const std::string& name : fig_models) {
    const ModelConfig c = resolve_model(name);
    std::string bar = "-";
    for (const PaperBar& pb : paper_figure2())
      if (name == pb.preset) bar = pb.bar;
    json& m = per_model[name];
    m["model"] = name;
    json mc = json::object();
    std::vector<std::string> cells = {name, bar};
    for (WeightFormat f : {WeightFormat::ExpertsInt8, WeightFormat::Int8Linear}) {
      MemoryPolicy pol = opt.policy;
      pol.weights = f;
      const int64_t one_shot = max_context(c, pol, gpu_bytes, opt.batch, 0);
      const int64_t chunked = max_context(c, pol, gpu_bytes, opt.batch, opt.prefill_chunk);
      cells.push_back(format_bytes_gib(weight_bytes(c, f).total));
      cells.push_back(one_shot ? format_int(one_shot) + " (" + format_tokens(one_shot) + ")"
                               : "does not fit");
      cells.push_back(chunked ? format_int(chunked) + " (" + format_tokens(chunked) + ")"
                              : "does not fit");
      mc[weight_format_name(f)] = {{"one_shot", one_shot}, {"chunked", chunked}};
      if (f == WeightFormat::ExpertsInt8 && one_shot > 0) {
        const MemoryBreakdown b = predict_memory(c, pol, MemoryRequest{opt.batch, one_shot, 0});
        m["breakdown_at_one_shot_limit"] = b.to_json();
        breakdowns += "#### " + name + ": experts-int8 weights, one-shot prefill of " +
                      format_int(one_shot) + " tokens\n\n" + b.to_markdown() + "\n";
      }
    }
    m["max_context"] = mc;
    f2.add_row(cells);
  }
  rep.figure2_markdown = f2.str();

  const MemoryPolicy& pol = opt.policy;
  std::string assumptions;
  assumptions += "- GPU memory: " + format_fixed(opt.gpu_mem_gib, 2) +
                 " GiB = " + format_int(gpu_bytes) +
                 " bytes (an \"80GB\" A100/H100 is 80 GiB = 81,920 MiB nominal; the whole amount "
                 "is the budget, from which the reserve below is taken).\n";
  assumptions += "- Reserved runtime overhead: " + format_bytes_auto(pol.reserved_bytes) +
                 " (CUDA context and module images, allocator fragmentation) plus a " +
                 format_bytes_auto(pol.cublas_workspace_bytes) + " cuBLAS workspace.\n";
  assumptions += "- Batch " + std::to_string(opt.batch) + "; KV cache " +
                 dtype_short(pol.kv_dtype) + ", full context (no sliding window), attention " +
                 "layers only; Mamba conv state " + dtype_short(pol.conv_state_dtype) +
                 " [Di, d_conv] and SSM state " + dtype_short(pol.ssm_state_dtype) +
                 " [Di, d_state] per Mamba layer and sequence; activations " +
                 dtype_short(pol.activation_dtype) + ".\n";
  assumptions +=
      "- Weights: experts-int8 = int8 gate/up/down of every expert and every dense MLP with one "
      "fp32 scale per output row, everything else bf16 (ExpertsInt8, jamba-spec §6.6); int8 (all "
      "linear) = additionally int8 attention q/k/v/o and Mamba in/x/dt/out projections; "
      "embedding, LM head, router, norms, conv, A, D and biases stay bf16.\n";
  assumptions +=
      "- Activations: our engine's buffers, one layer at a time with scratch reused across "
      "layers: residual, normed input and block output [T, d] live throughout, plus the largest "
      "of the Mamba group ([T, 2Di] in_proj, [T, Di] conv, dt and scan outputs, [T, R+2N] x_proj "
      "and inner norms), the attention group (q, staged k/v, output, fp32 log-sum-exp; "
      "flash-attention style, no score matrix), the dense MLP group ([T, 2I], [T, I]) and the "
      "MoE group ([T*k, d] gathered tokens, [T*k, 2I], [T*k, I], [T*k, d] expert outputs, fp32 "
      "router logits); fp32 logits at the last position only. T = batch x tokens per prefill "
      "step: the whole prompt for one-shot prefill, the chunk for chunked prefill.\n";
  assumptions +=
      "- Context = tokens held in the cache; 256K = 262,144 tokens; K in this table = 1,024 "
      "tokens; the paper's \"GB\" in Table 1 equals GiB.\n";
  assumptions +=
      "- The paper's Figure 2 bars come from AI21's implementation (not ours) and from "
      "secondary sources (jamba-spec §6.2); KV memory alone would allow far longer contexts, "
      "so the limits are set by activation memory, which is implementation-specific.\n";

  rep.assumptions_markdown = assumptions;
  std::string md;
  md += "### Table 1: parameters and KV cache at 256K tokens, 16-bit (Jamba paper, P1)\n\n";
  md += rep.table1_markdown + "\n";
  md +=
      "Total/active parameters counted exactly from the configs (jamba-spec §5); KV bytes/token "
      "= attention layers x 2 x KV heads x head_dim x 2 B. The Mamba state is constant in "
      "context and not part of the paper's KV column.\n\n";
  md += "### Figure 2 (predicted): largest context on one " + format_fixed(opt.gpu_mem_gib, 0) +
        " GiB GPU with int8 weights\n\n";
  md += rep.figure2_markdown + "\n";
  md += "Assumptions:\n\n" + assumptions + "\n";
  md += "### Predicted memory breakdown at the one-shot limit\n\n" + breakdowns;

  rep.section.id = "memory";
  rep.section.title = "Memory: paper Table 1 and predicted Figure 2";
  rep.section.markdown = md;
  json models_json = json::array();
  for (const auto& name : table_models) models_json.push_back(per_model[name]);
  for (const auto& name : fig_models)
    if (std::find(table_models.begin(), table_models.end(), name) == table_models.end())
      models_json.push_back(per_model[name]);
  for (const json& m : models_json) rep.results.push_back(m);
  rep.section.data = {{"gpu_mem_bytes", gpu_bytes},
                      {"gpu_mem_gib", opt.gpu_mem_gib},
                      {"prefill_chunk", opt.prefill_chunk},
                      {"batch", opt.batch},
                      {"reserved_bytes", pol.reserved_bytes},
                      {"cublas_workspace_bytes", pol.cublas_workspace_bytes},
                      {"models", models_json},
                      {"assumptions", assumptions}};
  return rep;
}

}  // namespace jb
