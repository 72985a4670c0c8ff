// Presets: the published models (jamba-spec §4), small test configs, and architecture ablations
// made by config overrides of a base (design.md "Baselines are configurations, not separate
// code"). An ablation is named "<base>+<variant>[+<variant>...]"; any composition of the variants
// below is accepted by preset(), and the standard ones are listed by preset_names().
#include <functional>

#include "core/config.hpp"
#include "core/error.hpp"

namespace jb {
namespace {

ModelConfig jamba_base() {
  ModelConfig c;
  c.model_type = "jamba";
  c.rms_norm_eps = 1e-6;
  c.attn_layer_period = 8;
  c.attn_layer_offset = 4;
  c.expert_layer_period = 2;
  c.expert_layer_offset = 1;
  c.num_experts = 16;
  c.num_experts_per_tok = 2;
  c.router_renormalize = false;  // jamba-spec §2.7: Jamba does not renormalise top-k weights
  c.mamba_d_state = 16;
  c.mamba_d_conv = 4;
  c.mamba_expand = 2;
  c.mamba_conv_bias = true;
  c.mamba_proj_bias = false;
  c.mamba_inner_norms = true;
  c.use_rope = false;  // jamba-spec §1.2: no positional encoding
  c.max_position_embeddings = 262144;
  c.pad_token_id = 0;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

int64_t dt_rank_auto(int64_t hidden) {
  return (hidden + 15) / 16;
}

// jamba-spec §4.1 (config.json of ai21labs/Jamba-v0.1, main).
ModelConfig jamba_v01() {
  ModelConfig c = jamba_base();
  c.vocab_size = 65536;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_hidden_layers = 32;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 8;
  c.head_dim = 128;
  c.mamba_dt_rank = 256;
  return c;
}

// jamba-spec §4.1: "Treat everything except the eos list as identical" (config.json not read).
ModelConfig jamba_15_mini() {
  ModelConfig c = jamba_v01();
  c.eos_token_ids = {2, 518};
  c.derived_fields = {"vocab_size",          "hidden_size",         "intermediate_size",
                      "num_hidden_layers",   "num_attention_heads", "num_key_value_heads",
                      "attn_layer_period",   "attn_layer_offset",   "expert_layer_period",
                      "expert_layer_offset", "num_experts",         "mamba_dt_rank",
                      "eos_token_id"};
  return c;
}

// jamba-spec §4.2: hidden 8192, 64 q / 8 kv heads, 9 blocks of 8, 16 experts top-2 are from P2;
// the rest is derived (I = 24576 reproduces 398B / 94B; offsets assumed equal to Mini's).
ModelConfig jamba_15_large() {
  ModelConfig c = jamba_base();
  c.vocab_size = 65536;
  c.hidden_size = 8192;
  c.intermediate_size = 24576;
  c.num_hidden_layers = 72;
  c.num_attention_heads = 64;
  c.num_key_value_heads = 8;
  c.head_dim = 128;
  c.mamba_dt_rank = dt_rank_auto(8192);
  c.eos_token_ids = {2, 518};
  c.derived_fields = {
      "num_hidden_layers", "intermediate_size", "mamba_dt_rank",       "head_dim",
      "vocab_size",        "attn_layer_offset", "expert_layer_offset", "mamba_d_state",
      "mamba_d_conv",      "mamba_expand",      "eos_token_id"};
  return c;
}

// Baselines: jamba-spec §4.3 (all attention, RoPE, SwiGLU, no biases).
ModelConfig attention_base(const std::string& type) {
  ModelConfig c;
  c.model_type = type;
  c.attn_layer_period = 1;
  c.attn_layer_offset = 0;
  c.expert_layer_period = 1;
  c.expert_layer_offset = 0;
  c.num_experts = 1;
  c.num_experts_per_tok = 1;
  c.router_renormalize = false;
  c.use_rope = true;
  c.rope_theta = 10000.0;
  c.rms_norm_eps = 1e-5;
  c.mamba_dt_rank = 0;
  c.vocab_size = 32000;
  c.pad_token_id = 0;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

ModelConfig mixtral_8x7b() {
  ModelConfig c = attention_base("mixtral");
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_hidden_layers = 32;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 8;
  c.head_dim = 128;
  c.num_experts = 8;
  c.num_experts_per_tok = 2;
  c.router_renormalize = true;  // jamba-spec §2.7: Mixtral renormalises its top-2 weights
  c.rope_theta = 1e6;
  c.max_position_embeddings = 32768;
  return c;
}

ModelConfig mistral_7b() {
  ModelConfig c = attention_base("mistral");
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_hidden_layers = 32;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 8;
  c.head_dim = 128;
  c.max_position_embeddings = 32768;
  c.sliding_window = 4096;
  return c;
}

ModelConfig llama(int64_t hidden, int64_t inter, int64_t layers, int64_t heads, int64_t kv) {
  ModelConfig c = attention_base("llama");
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv;
  c.head_dim = hidden / heads;
  c.max_position_embeddings = 4096;
  return c;
}

// Small configs for unit tests and CPU comparisons. jamba-tiny keeps Jamba's structure at a
// scale where the attention:Mamba ratio 1:3 and MoE every other layer still show up in 8 layers.
ModelConfig jamba_tiny() {
  ModelConfig c = jamba_base();
  c.vocab_size = 512;
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_hidden_layers = 8;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.attn_layer_period = 4;
  c.attn_layer_offset = 2;
  c.expert_layer_period = 2;
  c.expert_layer_offset = 1;
  c.num_experts = 4;
  c.num_experts_per_tok = 2;
  c.mamba_dt_rank = dt_rank_auto(64);  // 4
  c.max_position_embeddings = 4096;
  return c;
}

// Odd sizes everywhere that a kernel may assume a multiple of 8/16/32: hidden 72, 3 heads of 24,
// 1 KV head, I = 100, vocab 509 (prime), 3 experts, dt_rank 5. Attention at 1 and 4 with MoE on
// odd layers, so layer 1 is an attention + MoE layer (a combination Jamba itself never has).
ModelConfig jamba_tiny_odd() {
  ModelConfig c = jamba_base();
  c.vocab_size = 509;
  c.hidden_size = 72;
  c.intermediate_size = 100;
  c.num_hidden_layers = 6;
  c.num_attention_heads = 3;
  c.num_key_value_heads = 1;
  c.head_dim = 24;
  c.attn_layer_period = 3;
  c.attn_layer_offset = 1;
  c.expert_layer_period = 2;
  c.expert_layer_offset = 1;
  c.num_experts = 3;
  c.num_experts_per_tok = 2;
  c.mamba_dt_rank = dt_rank_auto(72);  // 5
  c.max_position_embeddings = 4096;
  return c;
}

// The released layout (period 8, offset 4) at a width that benchmarks quickly.
ModelConfig jamba_small() {
  ModelConfig c = jamba_base();
  c.vocab_size = 4096;
  c.hidden_size = 512;
  c.intermediate_size = 1024;
  c.num_hidden_layers = 16;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 2;
  c.head_dim = 64;
  c.num_experts = 8;
  c.num_experts_per_tok = 2;
  c.mamba_dt_rank = dt_rank_auto(512);  // 32
  c.max_position_embeddings = 65536;
  return c;
}

// ai21labs/Jamba-tiny-random (jamba-spec §4.4): for loading that checkpoint's shapes.
ModelConfig jamba_tiny_random() {
  ModelConfig c = jamba_base();
  c.vocab_size = 65536;
  c.hidden_size = 128;
  c.intermediate_size = 14336;
  c.num_hidden_layers = 8;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 64;
  c.attn_layer_period = 4;
  c.attn_layer_offset = 2;
  c.num_experts = 4;
  c.num_experts_per_tok = 2;
  c.mamba_dt_rank = 8;
  return c;
}

ModelConfig mixtral_tiny() {
  ModelConfig c = attention_base("mixtral");
  c.vocab_size = 512;
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.num_experts = 4;
  c.num_experts_per_tok = 2;
  c.router_renormalize = true;
  c.rope_theta = 1e6;
  c.max_position_embeddings = 4096;
  return c;
}

ModelConfig llama_tiny() {
  ModelConfig c = llama(64, 128, 4, 4, 2);
  c.vocab_size = 512;
  return c;
}

struct BasePreset {
  const char* name;
  ModelConfig (*make)();
  bool list_ablations;  // the standard ablation set is listed for these bases
};

const std::vector<BasePreset>& base_presets() {
  static const std::vector<BasePreset> bases = {
      {"jamba-v0.1", jamba_v01, true},
      {"jamba-1.5-mini", jamba_15_mini, false},
      {"jamba-1.5-large", jamba_15_large, false},
      {"mixtral-8x7b", mixtral_8x7b, false},
      {"mistral-7b", mistral_7b, false},
      {"llama-2-7b", [] { return llama(4096, 11008, 32, 32, 32); }, false},
      {"llama-2-13b", [] { return llama(5120, 13824, 40, 40, 40); }, false},
      {"llama-2-70b", [] { return llama(8192, 28672, 80, 64, 8); }, false},
      {"jamba-tiny", jamba_tiny, true},
      {"jamba-tiny-odd", jamba_tiny_odd, false},
      {"jamba-small", jamba_small, true},
      {"jamba-tiny-random", jamba_tiny_random, false},
      {"mixtral-tiny", mixtral_tiny, false},
      {"llama-tiny", llama_tiny, false},
  };
  return bases;
}

struct Variant {
  const char* name;
  const char* what;
  std::function<std::vector<std::string>(const ModelConfig&)> overrides;
};

// Ablations of P1 §6 (jamba-spec §6.5) as config overrides.
const std::vector<Variant>& variants() {
  using V = std::vector<std::string>;
  static const std::vector<Variant> vs = {
      {"attn-only", "pure attention: every layer attention",
       [](const ModelConfig&) {
         return V{"attn_layer_period=1", "attn_layer_offset=0"};
       }},
      // period L+1, offset L: valid under HF's offset < period rule and matches no layer < L.
      {"mamba-only", "pure Mamba: no attention layer",
       [](const ModelConfig& c) {
         return V{"attn_layer_period=" + std::to_string(c.num_hidden_layers + 1),
                  "attn_layer_offset=" + std::to_string(c.num_hidden_layers)};
       }},
      {"a1m3", "attention:Mamba 1:3 (period 4, offset 2)",
       [](const ModelConfig&) {
         return V{"attn_layer_period=4", "attn_layer_offset=2"};
       }},
      {"a1m7", "attention:Mamba 1:7 (period 8, offset 4)",
       [](const ModelConfig&) {
         return V{"attn_layer_period=8", "attn_layer_offset=4"};
       }},
      {"no-moe", "dense MLP in every layer",
       [](const ModelConfig&) {
         return V{"num_experts=1", "num_experts_per_tok=1"};
       }},
      {"moe-every-layer", "MoE in every layer (expert period 1, offset 0)",
       [](const ModelConfig&) {
         return V{"expert_layer_period=1", "expert_layer_offset=0"};
       }},
      {"top1", "top-1 routing", [](const ModelConfig&) { return V{"num_experts_per_tok=1"}; }},
      {"8-experts", "8 experts per MoE layer",
       [](const ModelConfig&) { return V{"num_experts=8"}; }},
      {"16-experts", "16 experts per MoE layer",
       [](const ModelConfig&) { return V{"num_experts=16"}; }},
      {"rope", "RoPE in the attention layers",
       [](const ModelConfig&) { return V{"use_rope=true"}; }},
      {"no-rope", "no positional encoding in the attention layers",
       [](const ModelConfig&) { return V{"use_rope=false"}; }},
      {"no-inner-norms", "no dt/B/C RMSNorms inside the Mamba mixer",
       [](const ModelConfig&) { return V{"mamba_inner_norms=false"}; }},
  };
  return vs;
}

// Variants listed per ablation base ("no-rope" is the released Jamba already, so it is only
// reachable by composition, e.g. for a baseline).
const std::vector<std::string>& standard_variants() {
  static const std::vector<std::string> names = {
      "attn-only", "mamba-only", "a1m3",       "a1m7", "no-moe",        "moe-every-layer",
      "top1",      "8-experts",  "16-experts", "rope", "no-inner-norms"};
  return names;
}

[[noreturn]] void unknown_preset(const std::string& name, const std::string& why) {
  std::string list;
  for (const BasePreset& b : base_presets()) list += std::string(list.empty() ? "" : ", ") + b.name;
  std::string vlist;
  for (const Variant& v : variants()) vlist += std::string(vlist.empty() ? "" : ", ") + v.name;
  fail(ErrorKind::Usage, why + " '" + name + "' (presets: " + list + "; ablations: <preset>+" +
                             "<variant>, variants: " + vlist + ")");
}

}  // namespace

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const BasePreset& b : base_presets()) names.push_back(b.name);
  for (const BasePreset& b : base_presets()) {
    if (!b.list_ablations) continue;
    for (const std::string& v : standard_variants()) names.push_back(std::string(b.name) + "+" + v);
  }
  return names;
}

ModelConfig preset(const std::string& name) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t plus = name.find('+', start);
    parts.push_back(
        name.substr(start, plus == std::string::npos ? std::string::npos : plus - start));
    if (plus == std::string::npos) break;
    start = plus + 1;
  }
  const BasePreset* base = nullptr;
  for (const BasePreset& b : base_presets())
    if (parts[0] == b.name) base = &b;
  if (!base) unknown_preset(name, "unknown model preset");
  ModelConfig c = base->make();
  c.name = parts[0];
  validate_config(c);
  for (size_t i = 1; i < parts.size(); ++i) {
    const Variant* variant = nullptr;
    for (const Variant& v : variants())
      if (parts[i] == v.name) variant = &v;
    if (!variant) unknown_preset(name, "unknown ablation variant '" + parts[i] + "' in");
    c = apply_overrides(c, variant->overrides(c));
  }
  c.name = name;
  return c;
}

}  // namespace jb
