// ModelConfig: one decoder definition for Jamba and for the baselines (Mixtral, Mistral, Llama),
// read from / written to HuggingFace config.json (jamba-spec.md §3.2, §4). Baselines are the same
// decoder with every layer attention, RoPE on and (Mixtral) renormalised top-k routing.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace jb {

enum class Mixer { Attention, Mamba };
enum class Ffn { Mlp, Moe };

struct LayerSpec {
  Mixer mixer = Mixer::Mamba;
  Ffn ffn = Ffn::Mlp;
  int64_t num_experts = 1;  // 1 for a dense MLP (HF layers_num_experts)
};

struct ModelConfig {
  std::string name;        // preset name or the path it came from
  std::string model_type;  // "jamba", "mixtral", "mistral", "llama"

  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // hidden_size / num_attention_heads unless given
  double rms_norm_eps = 1e-6;

  // Layout (jamba-spec §1.1): attention iff i % attn_layer_period == attn_layer_offset; MoE iff
  // i % expert_layer_period == expert_layer_offset and num_experts > 1. Baselines: 1 / 0.
  int64_t attn_layer_period = 1;
  int64_t attn_layer_offset = 0;
  int64_t expert_layer_period = 1;
  int64_t expert_layer_offset = 0;
  int64_t num_experts = 1;
  int64_t num_experts_per_tok = 1;
  bool router_renormalize = false;  // Jamba: false; Mixtral: true (jamba-spec §2.7)

  // Mamba-1 mixer (d_inner = mamba_expand * hidden_size).
  int64_t mamba_d_state = 16;
  int64_t mamba_d_conv = 4;
  int64_t mamba_expand = 2;
  int64_t mamba_dt_rank = 0;  // "auto" -> ceil(hidden_size / 16)
  bool mamba_conv_bias = true;
  bool mamba_proj_bias = false;
  bool mamba_inner_norms = true;  // Jamba's dt/B/C RMSNorms; off only for ablations

  // Attention positions: Jamba has none; the baselines use rotate-half RoPE.
  bool use_rope = false;
  double rope_theta = 10000.0;
  std::optional<int64_t> sliding_window;

  bool tie_word_embeddings = false;
  int64_t max_position_embeddings = 0;
  int64_t pad_token_id = 0;
  int64_t bos_token_id = 1;
  std::vector<int64_t> eos_token_ids = {2};
  std::string torch_dtype = "bfloat16";

  // Fields of a preset that were derived rather than read from a published config.json
  // (jamba-spec §4.2: Jamba-1.5-Large's intermediate_size, dt_rank, layers, ...).
  std::vector<std::string> derived_fields;

  int64_t d_inner() const { return mamba_expand * hidden_size; }
  int64_t q_dim() const { return num_attention_heads * head_dim; }
  int64_t kv_dim() const { return num_key_value_heads * head_dim; }
  std::vector<LayerSpec> layers() const;  // exactly HF layers_block_type / layers_num_experts
  int64_t num_attention_layers() const;
  int64_t num_mamba_layers() const;
  int64_t num_moe_layers() const;
};

// Parses config.json text. Throws Error{Config} with one message per problem found (missing or
// mistyped field, offset >= period, heads not dividing hidden size, kv heads not dividing heads,
// zero or negative sizes, unknown model_type, not JSON, duplicate keys).
ModelConfig parse_config_json(const std::string& text, const std::string& origin = "config.json");
ModelConfig load_config_file(const std::string& path);
// Writes HF field names back (for our own checkpoints); parse_config_json(to_json(c)) == c.
std::string config_to_json(const ModelConfig& c);
// Throws Error{Config} if the config is inconsistent (used by parse and by presets/overrides).
void validate_config(const ModelConfig& c);

// Presets: jamba-v0.1, jamba-1.5-mini, jamba-1.5-large, mixtral-8x7b, mistral-7b, llama-2-7b,
// llama-2-13b, llama-2-70b, small test configs (jamba-tiny, jamba-small, mixtral-tiny, ...), and
// ablations made by overrides of a base (see config_presets.cpp for the list).
std::vector<std::string> preset_names();
ModelConfig preset(const std::string& name);  // Error{Usage} listing names if unknown
// "jamba-v0.1" or a path to a config.json / checkpoint directory.
ModelConfig resolve_model(const std::string& name_or_path);
// Applies "key=value" overrides using config.json field names (e.g. "num_experts=8").
ModelConfig apply_overrides(ModelConfig c, const std::vector<std::string>& overrides);
// True when every architecture field agrees (name and derived_fields are not compared); on a
// mismatch, `difference` (if given) names the first differing field and both values.
bool same_architecture(const ModelConfig& a, const ModelConfig& b,
                       std::string* difference = nullptr);

}  // namespace jb
