// ModelConfig: layout, config.json parsing/validation and writing (jamba-spec.md §1.1, §3.2, §4;
// ecosystem.md §5.1). Every problem found in a config.json is reported, not only the first, so a
// user fixing a hand-written file sees them all at once.
#include "core/config.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/hostdevice.hpp"

namespace jb {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

// ---------------------------------------------------------------------------------------------
// Layout (jamba-spec §1.1, HF JambaConfig.layers_block_type / layers_num_experts).

std::vector<LayerSpec> ModelConfig::layers() const {
  JB_CHECK(attn_layer_period > 0 && expert_layer_period > 0,
           "layers() needs positive periods (validate_config first)");
  std::vector<LayerSpec> out(static_cast<size_t>(std::max<int64_t>(num_hidden_layers, 0)));
  for (int64_t i = 0; i < num_hidden_layers; ++i) {
    LayerSpec& s = out[static_cast<size_t>(i)];
    s.mixer = (i % attn_layer_period == attn_layer_offset) ? Mixer::Attention : Mixer::Mamba;
    s.num_experts = (i % expert_layer_period == expert_layer_offset) ? num_experts : 1;
    s.ffn = s.num_experts > 1 ? Ffn::Moe : Ffn::Mlp;
  }
  return out;
}

int64_t ModelConfig::num_attention_layers() const {
  int64_t n = 0;
  for (const LayerSpec& s : layers()) n += s.mixer == Mixer::Attention;
  return n;
}

int64_t ModelConfig::num_mamba_layers() const {
  int64_t n = 0;
  for (const LayerSpec& s : layers()) n += s.mixer == Mixer::Mamba;
  return n;
}

int64_t ModelConfig::num_moe_layers() const {
  int64_t n = 0;
  for (const LayerSpec& s : layers()) n += s.ffn == Ffn::Moe;
  return n;
}

namespace {

const std::vector<std::string>& known_model_types() {
  static const std::vector<std::string> types = {"jamba", "mixtral", "mistral", "llama"};
  return types;
}

bool is_known_model_type(const std::string& t) {
  for (const std::string& k : known_model_types())
    if (k == t) return true;
  return false;
}

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? sep : "") + parts[i];
  return out;
}

const char* json_type_name(const json& v) {
  if (v.is_number_integer() || v.is_number_unsigned()) return "integer";
  return v.type_name();
}

// Typed field access over one config.json object. Each accessor records the field name it was
// asked for (so apply_overrides knows which keys mean something for this model_type) and appends
// one message per missing or mistyped field to `errors` instead of throwing at the first one.
class FieldReader {
 public:
  FieldReader(const json& obj, std::vector<std::string>& errors) : obj_(obj), errors_(errors) {}

  const std::set<std::string>& names() const { return names_; }

  // Present and not null.
  bool has(const std::string& key) {
    names_.insert(key);
    auto it = obj_.find(key);
    return it != obj_.end() && !it->is_null();
  }
  bool has_key(const std::string& key) {
    names_.insert(key);
    return obj_.find(key) != obj_.end();
  }
  const json& raw(const std::string& key) { return obj_.at(key); }

  // Integer field; `def` when absent (or null and null_ok); error when required and absent.
  int64_t integer(const std::string& key, std::optional<int64_t> def, bool null_ok = false) {
    names_.insert(key);
    auto it = obj_.find(key);
    if (it == obj_.end() || (null_ok && it->is_null())) {
      if (!def) errors_.push_back("missing field '" + key + "'");
      return def.value_or(0);
    }
    return as_integer(key, *it);
  }

  int64_t as_integer(const std::string& key, const json& v) {
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_unsigned()) {
      uint64_t u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        errors_.push_back("field '" + key + "' is out of range (" + std::to_string(u) + ")");
        return 0;
      }
      return static_cast<int64_t>(u);
    }
    errors_.push_back("field '" + key + "' has type " + json_type_name(v) +
                      ", expected integer (got " + v.dump() + ")");
    return 0;
  }

  double number(const std::string& key, double def) {
    names_.insert(key);
    auto it = obj_.find(key);
    if (it == obj_.end()) return def;
    if (!it->is_number()) {
      errors_.push_back("field '" + key + "' has type " + json_type_name(*it) +
                        ", expected number (got " + it->dump() + ")");
      return def;
    }
    return it->get<double>();
  }

  bool boolean(const std::string& key, bool def) {
    names_.insert(key);
    auto it = obj_.find(key);
    if (it == obj_.end()) return def;
    if (!it->is_boolean()) {
      errors_.push_back("field '" + key + "' has type " + json_type_name(*it) +
                        ", expected boolean (got " + it->dump() + ")");
      return def;
    }
    return it->get<bool>();
  }

  std::string string(const std::string& key, const std::string& def, bool required = false) {
    names_.insert(key);
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) {
      if (required) errors_.push_back("missing field '" + key + "'");
      return def;
    }
    if (!it->is_string()) {
      errors_.push_back("field '" + key + "' has type " + json_type_name(*it) +
                        ", expected string (got " + it->dump() + ")");
      return def;
    }
    return it->get<std::string>();
  }

  void error(const std::string& msg) { errors_.push_back(msg); }

 private:
  const json& obj_;
  std::vector<std::string>& errors_;
  std::set<std::string> names_;
};

// Reads one config.json object into a ModelConfig without validating it. Field names and defaults
// follow the HF config classes: JambaConfig (jamba-spec §3.2), MixtralConfig, MistralConfig and
// LlamaConfig (jamba-spec §4.3). The core sizes are required for every model_type, because a
// silently defaulted hidden_size would describe a different model than the checkpoint.
ModelConfig read_config(const json& j, std::vector<std::string>& errors,
                        std::set<std::string>* known_names) {
  FieldReader f(j, errors);
  ModelConfig c;
  c.model_type = f.string("model_type", "", /*required=*/true);
  if (!c.model_type.empty() && !is_known_model_type(c.model_type)) {
    errors.push_back("unknown model_type '" + c.model_type +
                     "' (supported: " + join(known_model_types(), ", ") + ")");
  }
  if (!errors.empty()) return c;  // without a model_type the field names are unknown
  const bool jamba = c.model_type == "jamba";
  const bool mixtral = c.model_type == "mixtral";

  c.vocab_size = f.integer("vocab_size", std::nullopt);
  c.hidden_size = f.integer("hidden_size", std::nullopt);
  c.intermediate_size = f.integer("intermediate_size", std::nullopt);
  c.num_hidden_layers = f.integer("num_hidden_layers", std::nullopt);
  c.num_attention_heads = f.integer("num_attention_heads", std::nullopt);
  // null or absent -> one KV head per query head (JambaConfig, LlamaConfig, MistralConfig).
  c.num_key_value_heads = f.integer("num_key_value_heads", c.num_attention_heads, /*null_ok=*/true);
  c.rms_norm_eps = f.number("rms_norm_eps", jamba ? 1e-6 : (c.model_type == "llama" ? 1e-6 : 1e-5));

  // head_dim is not a Jamba config field (hidden / heads); newer Mistral/Llama configs carry it.
  if (f.has("head_dim")) {
    c.head_dim = f.integer("head_dim", std::nullopt);
  } else if (c.num_attention_heads > 0 && c.hidden_size > 0) {
    if (c.hidden_size % c.num_attention_heads != 0) {
      errors.push_back("num_attention_heads (" + std::to_string(c.num_attention_heads) +
                       ") does not divide hidden_size (" + std::to_string(c.hidden_size) + ")");
    }
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }

  if (jamba) {
    c.attn_layer_period = f.integer("attn_layer_period", 8);
    c.attn_layer_offset = f.integer("attn_layer_offset", 4);
    c.expert_layer_period = f.integer("expert_layer_period", 2);
    c.expert_layer_offset = f.integer("expert_layer_offset", 1);
    c.num_experts = f.integer("num_experts", 16);
    c.num_experts_per_tok = f.integer("num_experts_per_tok", 2);
    c.mamba_d_state = f.integer("mamba_d_state", 16);
    c.mamba_d_conv = f.integer("mamba_d_conv", 4);
    c.mamba_expand = f.integer("mamba_expand", 2);
    // "auto" (the JambaConfig default) -> ceil(hidden_size / 16).
    if (f.has_key("mamba_dt_rank") && f.raw("mamba_dt_rank").is_string()) {
      const std::string s = f.raw("mamba_dt_rank").get<std::string>();
      if (s != "auto")
        errors.push_back("field 'mamba_dt_rank' must be an integer or \"auto\" (got \"" + s +
                         "\")");
      c.mamba_dt_rank = c.hidden_size > 0 ? ceil_div(c.hidden_size, 16) : 0;
    } else if (f.has_key("mamba_dt_rank")) {
      c.mamba_dt_rank = f.integer("mamba_dt_rank", std::nullopt);
    } else {
      c.mamba_dt_rank = c.hidden_size > 0 ? ceil_div(c.hidden_size, 16) : 0;
    }
    c.mamba_conv_bias = f.boolean("mamba_conv_bias", true);
    c.mamba_proj_bias = f.boolean("mamba_proj_bias", false);
    // Our ablation switch; the original custom-code upload spelled it mamba_inner_layernorms.
    const bool old_inner = f.boolean("mamba_inner_layernorms", true);
    c.mamba_inner_norms = f.boolean("mamba_inner_norms", old_inner);
    c.router_renormalize = f.boolean("router_renormalize", false);
    c.use_rope = f.boolean("use_rope", false);
    c.rope_theta = f.number("rope_theta", 10000.0);
    // n_ctx is the custom-code spelling of max_position_embeddings (jamba-spec §4.1).
    const int64_t n_ctx = f.integer("n_ctx", 262144);
    c.max_position_embeddings = f.integer("max_position_embeddings", n_ctx);
    (void)f.boolean("calc_logits_for_entire_prompt", false);  // accepted, no effect
  } else {
    // Baselines: every layer attention; Mixtral has an MoE in every layer (jamba-spec §4.3).
    c.attn_layer_period = 1;
    c.attn_layer_offset = 0;
    c.expert_layer_period = 1;
    c.expert_layer_offset = 0;
    if (mixtral) {
      c.num_experts = f.integer("num_local_experts", 8);
      c.num_experts_per_tok = f.integer("num_experts_per_tok", 2);
    }
    c.router_renormalize = f.boolean("router_renormalize", mixtral);
    c.use_rope = f.boolean("use_rope", true);
    c.rope_theta = f.number("rope_theta", mixtral ? 1e6 : 10000.0);
    c.mamba_dt_rank = 0;  // no Mamba layers
    c.max_position_embeddings =
        f.integer("max_position_embeddings", c.model_type == "llama" ? 2048 : 32768);
  }

  if (f.has("sliding_window")) c.sliding_window = f.integer("sliding_window", std::nullopt);
  c.tie_word_embeddings = f.boolean("tie_word_embeddings", false);
  c.pad_token_id = f.integer("pad_token_id", 0, /*null_ok=*/true);
  c.bos_token_id = f.integer("bos_token_id", 1, /*null_ok=*/true);
  // eos_token_id: an integer or a list (Jamba-1.5 uses [2, 518]).
  c.eos_token_ids.clear();
  if (f.has("eos_token_id")) {
    const json& e = f.raw("eos_token_id");
    if (e.is_array()) {
      for (const json& x : e) c.eos_token_ids.push_back(f.as_integer("eos_token_id", x));
    } else {
      c.eos_token_ids.push_back(f.integer("eos_token_id", std::nullopt));
    }
  } else if (!f.has_key("eos_token_id")) {
    c.eos_token_ids = {2};
  }
  // transformers >= 4.56 writes "dtype"; older files "torch_dtype".
  c.torch_dtype = f.string("torch_dtype", f.string("dtype", "bfloat16"));
  if (known_names) *known_names = f.names();
  return c;
}

// Parses text, rejecting duplicate keys at any depth. nlohmann's DOM keeps the last value of a
// duplicated key silently, so the keys of each open object are tracked in the parser callback.
json parse_strict(const std::string& text, const std::string& origin) {
  std::vector<std::set<std::string>> open_objects;
  std::vector<std::string> duplicates;
  json::parser_callback_t track_keys = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case json::parse_event_t::key:
        if (!open_objects.empty() && parsed.is_string() &&
            !open_objects.back().insert(parsed.get<std::string>()).second)
          duplicates.push_back(parsed.get<std::string>());
        break;
      case json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      default:
        break;
    }
    return true;
  };
  json j = json::parse(text, track_keys, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    // Parse again only to recover the position and reason for the message.
    std::string why = "parse error";
    try {
      json again = json::parse(text);
      (void)again;
    } catch (const json::parse_error& e) {
      why = e.what();
    }
    fail(ErrorKind::Config, origin + ": not JSON: " + why);
  }
  if (!duplicates.empty()) {
    std::vector<std::string> quoted;
    for (const std::string& d : duplicates) quoted.push_back("'" + d + "'");
    fail(ErrorKind::Config, origin + ": duplicate key " + join(quoted, ", ") +
                                " (a JSON parser would silently keep only one value)");
  }
  if (!j.is_object()) {
    fail(ErrorKind::Config,
         origin + ": config.json must be a JSON object, got " + std::string(j.type_name()));
  }
  return j;
}

ModelConfig parse_object(const json& j, const std::string& origin,
                         std::set<std::string>* known_names) {
  std::vector<std::string> errors;
  ModelConfig c = read_config(j, errors, known_names);
  if (!errors.empty()) fail(ErrorKind::Config, origin + ": " + join(errors, "; "));
  c.name = origin;
  validate_config(c);
  return c;
}

void check_positive(std::vector<std::string>& errors, const char* field, int64_t v) {
  if (v <= 0)
    errors.push_back(std::string(field) + " must be positive (got " + std::to_string(v) + ")");
}

void check_max(std::vector<std::string>& errors, const char* field, int64_t v, int64_t max) {
  if (v > max)
    errors.push_back(std::string(field) + " (" + std::to_string(v) + ") exceeds the sanity bound " +
                     std::to_string(max));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Validation (ecosystem.md §5.1): every divisor > 0, offsets < periods, heads divide, top-k <=
// experts, sane upper bounds so that no later size product can overflow int64.

void validate_config(const ModelConfig& c) {
  std::vector<std::string> errors;
  if (!is_known_model_type(c.model_type)) {
    errors.push_back("unknown model_type '" + c.model_type +
                     "' (supported: " + join(known_model_types(), ", ") + ")");
  }
  check_positive(errors, "vocab_size", c.vocab_size);
  check_positive(errors, "hidden_size", c.hidden_size);
  check_positive(errors, "intermediate_size", c.intermediate_size);
  check_positive(errors, "num_hidden_layers", c.num_hidden_layers);
  check_positive(errors, "num_attention_heads", c.num_attention_heads);
  check_positive(errors, "num_key_value_heads", c.num_key_value_heads);
  if (c.num_attention_heads > 0) check_positive(errors, "head_dim", c.head_dim);
  check_positive(errors, "attn_layer_period", c.attn_layer_period);
  check_positive(errors, "expert_layer_period", c.expert_layer_period);
  check_positive(errors, "num_experts", c.num_experts);
  check_positive(errors, "num_experts_per_tok", c.num_experts_per_tok);

  // Upper bounds: ecosystem.md §5.1 (d_state, experts, vocab, layers) plus widths large enough for
  // any published model but small enough that V*d*E*... products stay far from int64 overflow.
  check_max(errors, "vocab_size", c.vocab_size, int64_t{1} << 24);
  check_max(errors, "num_hidden_layers", c.num_hidden_layers, 1024);
  check_max(errors, "num_experts", c.num_experts, 1024);
  check_max(errors, "hidden_size", c.hidden_size, int64_t{1} << 20);
  check_max(errors, "intermediate_size", c.intermediate_size, int64_t{1} << 22);
  check_max(errors, "num_attention_heads", c.num_attention_heads, 4096);
  check_max(errors, "head_dim", c.head_dim, 4096);

  if (c.attn_layer_offset < 0)
    errors.push_back("attn_layer_offset must be >= 0 (got " + std::to_string(c.attn_layer_offset) +
                     ")");
  if (c.expert_layer_offset < 0)
    errors.push_back("expert_layer_offset must be >= 0 (got " +
                     std::to_string(c.expert_layer_offset) + ")");
  // HF's JambaConfig rejects offset >= period (jamba-spec §1.1).
  if (c.attn_layer_period > 0 && c.attn_layer_offset >= c.attn_layer_period)
    errors.push_back("attn_layer_offset (" + std::to_string(c.attn_layer_offset) +
                     ") must be less than attn_layer_period (" +
                     std::to_string(c.attn_layer_period) + ")");
  if (c.expert_layer_period > 0 && c.expert_layer_offset >= c.expert_layer_period)
    errors.push_back("expert_layer_offset (" + std::to_string(c.expert_layer_offset) +
                     ") must be less than expert_layer_period (" +
                     std::to_string(c.expert_layer_period) + ")");

  if (c.num_attention_heads > 0 && c.num_key_value_heads > 0 &&
      c.num_attention_heads % c.num_key_value_heads != 0)
    errors.push_back("num_key_value_heads (" + std::to_string(c.num_key_value_heads) +
                     ") does not divide num_attention_heads (" +
                     std::to_string(c.num_attention_heads) + ")");
  // Jamba's attention reshapes hidden_size into heads (no head_dim field): they must agree.
  if (c.model_type == "jamba" && c.num_attention_heads > 0 && c.head_dim > 0 &&
      c.num_attention_heads * c.head_dim != c.hidden_size)
    errors.push_back("num_attention_heads (" + std::to_string(c.num_attention_heads) +
                     ") does not divide hidden_size (" + std::to_string(c.hidden_size) +
                     ") into head_dim " + std::to_string(c.head_dim));
  if (c.num_experts > 0 && c.num_experts_per_tok > c.num_experts)
    errors.push_back("num_experts_per_tok (" + std::to_string(c.num_experts_per_tok) +
                     ") exceeds num_experts (" + std::to_string(c.num_experts) + ")");

  if (c.model_type == "jamba") {
    check_positive(errors, "mamba_d_state", c.mamba_d_state);
    check_positive(errors, "mamba_d_conv", c.mamba_d_conv);
    check_positive(errors, "mamba_expand", c.mamba_expand);
    check_positive(errors, "mamba_dt_rank", c.mamba_dt_rank);
    check_max(errors, "mamba_d_state", c.mamba_d_state, 256);
    check_max(errors, "mamba_d_conv", c.mamba_d_conv, 64);
    check_max(errors, "mamba_expand", c.mamba_expand, 64);
    check_max(errors, "mamba_dt_rank", c.mamba_dt_rank, int64_t{1} << 20);
  } else if (is_known_model_type(c.model_type)) {
    // The baselines are all-attention by definition; hybrids are written as model_type jamba, so
    // that config_to_json can round-trip every config with HF field names.
    if (c.attn_layer_period != 1 || c.attn_layer_offset != 0 || c.expert_layer_period != 1 ||
        c.expert_layer_offset != 0)
      errors.push_back("model_type '" + c.model_type +
                       "' has attention and the same FFN in every layer (period 1, offset 0); "
                       "use model_type 'jamba' for hybrid layouts");
    if (c.model_type != "mixtral" && c.num_experts != 1)
      errors.push_back("model_type '" + c.model_type + "' is dense (num_experts must be 1, got " +
                       std::to_string(c.num_experts) + "); use 'mixtral' or 'jamba' for MoE");
  }
  if (!(c.rms_norm_eps > 0.0) || !std::isfinite(c.rms_norm_eps))
    errors.push_back("rms_norm_eps must be a positive finite number");
  if (c.use_rope && (!(c.rope_theta > 0.0) || !std::isfinite(c.rope_theta)))
    errors.push_back("rope_theta must be a positive finite number when use_rope is set");
  if (c.sliding_window && *c.sliding_window <= 0)
    errors.push_back("sliding_window must be positive or null (got " +
                     std::to_string(*c.sliding_window) + ")");
  if (c.max_position_embeddings < 0) errors.push_back("max_position_embeddings must be >= 0");
  for (int64_t id : c.eos_token_ids)
    if (id < 0) errors.push_back("eos_token_id must be >= 0 (got " + std::to_string(id) + ")");

  if (!errors.empty()) {
    fail(ErrorKind::Config,
         (c.name.empty() ? std::string("model config") : c.name) + ": " + join(errors, "; "));
  }
}

ModelConfig parse_config_json(const std::string& text, const std::string& origin) {
  json j = parse_strict(text, origin);
  return parse_object(j, origin, nullptr);
}

ModelConfig load_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorKind::Io, "cannot open config file '" + path + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(ErrorKind::Io, "cannot read config file '" + path + "'");
  return parse_config_json(ss.str(), path);
}

// ---------------------------------------------------------------------------------------------
// Writing: HF field names for the model_type, plus our extension fields when they differ from the
// type's default, so that parse_config_json(config_to_json(c)) reproduces c.

std::string config_to_json(const ModelConfig& c) {
  ojson j;
  const bool jamba = c.model_type == "jamba";
  const bool mixtral = c.model_type == "mixtral";
  const char* arch = jamba                       ? "JambaForCausalLM"
                     : mixtral                   ? "MixtralForCausalLM"
                     : c.model_type == "mistral" ? "MistralForCausalLM"
                                                 : "LlamaForCausalLM";
  j["architectures"] = ojson::array({arch});
  j["model_type"] = c.model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  const bool head_dim_derived = c.num_attention_heads > 0 &&
                                c.hidden_size % c.num_attention_heads == 0 &&
                                c.head_dim == c.hidden_size / c.num_attention_heads;
  if (!head_dim_derived) j["head_dim"] = c.head_dim;
  j["hidden_act"] = "silu";
  j["rms_norm_eps"] = c.rms_norm_eps;
  if (jamba) {
    j["attn_layer_period"] = c.attn_layer_period;
    j["attn_layer_offset"] = c.attn_layer_offset;
    j["expert_layer_period"] = c.expert_layer_period;
    j["expert_layer_offset"] = c.expert_layer_offset;
    j["num_experts"] = c.num_experts;
    j["num_experts_per_tok"] = c.num_experts_per_tok;
    j["mamba_d_state"] = c.mamba_d_state;
    j["mamba_d_conv"] = c.mamba_d_conv;
    j["mamba_expand"] = c.mamba_expand;
    j["mamba_dt_rank"] = c.mamba_dt_rank;
    j["mamba_conv_bias"] = c.mamba_conv_bias;
    j["mamba_proj_bias"] = c.mamba_proj_bias;
    if (!c.mamba_inner_norms) j["mamba_inner_norms"] = false;
    if (c.router_renormalize) j["router_renormalize"] = true;
    if (c.use_rope) j["use_rope"] = true;
    if (c.use_rope || c.rope_theta != 10000.0) j["rope_theta"] = c.rope_theta;
  } else {
    if (mixtral) {
      j["num_local_experts"] = c.num_experts;
      j["num_experts_per_tok"] = c.num_experts_per_tok;
    }
    if (c.router_renormalize != mixtral) j["router_renormalize"] = c.router_renormalize;
    if (!c.use_rope) j["use_rope"] = false;
    j["rope_theta"] = c.rope_theta;
  }
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["sliding_window"] = c.sliding_window ? ojson(*c.sliding_window) : ojson(nullptr);
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["pad_token_id"] = c.pad_token_id;
  j["bos_token_id"] = c.bos_token_id;
  if (c.eos_token_ids.size() == 1)
    j["eos_token_id"] = c.eos_token_ids[0];
  else if (c.eos_token_ids.empty())
    j["eos_token_id"] = nullptr;
  else
    j["eos_token_id"] = c.eos_token_ids;
  j["torch_dtype"] = c.torch_dtype;
  return j.dump(2) + "\n";
}

bool same_architecture(const ModelConfig& a, const ModelConfig& b, std::string* difference) {
  auto differ = [&](const char* field, const std::string& x, const std::string& y) {
    if (difference) *difference = std::string(field) + ": " + x + " vs " + y;
    return false;
  };
#define JB_SAME(field)                         \
  if (!(a.field == b.field)) {                 \
    std::ostringstream xs, ys;                 \
    xs.precision(17);                          \
    ys.precision(17);                          \
    xs << a.field;                             \
    ys << b.field;                             \
    return differ(#field, xs.str(), ys.str()); \
  }
  JB_SAME(model_type);
  JB_SAME(vocab_size);
  JB_SAME(hidden_size);
  JB_SAME(intermediate_size);
  JB_SAME(num_hidden_layers);
  JB_SAME(num_attention_heads);
  JB_SAME(num_key_value_heads);
  JB_SAME(head_dim);
  JB_SAME(rms_norm_eps);
  JB_SAME(attn_layer_period);
  JB_SAME(attn_layer_offset);
  JB_SAME(expert_layer_period);
  JB_SAME(expert_layer_offset);
  JB_SAME(num_experts);
  JB_SAME(num_experts_per_tok);
  JB_SAME(router_renormalize);
  JB_SAME(mamba_d_state);
  JB_SAME(mamba_d_conv);
  JB_SAME(mamba_expand);
  JB_SAME(mamba_dt_rank);
  JB_SAME(mamba_conv_bias);
  JB_SAME(mamba_proj_bias);
  JB_SAME(mamba_inner_norms);
  JB_SAME(use_rope);
  JB_SAME(rope_theta);
  JB_SAME(tie_word_embeddings);
  JB_SAME(max_position_embeddings);
  JB_SAME(pad_token_id);
  JB_SAME(bos_token_id);
  JB_SAME(torch_dtype);
#undef JB_SAME
  if (a.sliding_window != b.sliding_window)
    return differ("sliding_window", a.sliding_window ? std::to_string(*a.sliding_window) : "null",
                  b.sliding_window ? std::to_string(*b.sliding_window) : "null");
  if (a.eos_token_ids != b.eos_token_ids)
    return differ("eos_token_ids", std::to_string(a.eos_token_ids.size()) + " ids",
                  std::to_string(b.eos_token_ids.size()) + " ids");
  return true;
}

// ---------------------------------------------------------------------------------------------
// Overrides: "key=value" with config.json field names, applied to the JSON form and re-parsed,
// so an override goes through exactly the checks a config.json would.

ModelConfig apply_overrides(ModelConfig c, const std::vector<std::string>& overrides) {
  if (overrides.empty()) return c;
  json j = json::parse(config_to_json(c));
  std::set<std::string> known;
  {
    std::vector<std::string> errors;
    (void)read_config(j, errors, &known);
  }
  known.insert("model_type");
  for (const std::string& ov : overrides) {
    const size_t eq = ov.find('=');
    if (eq == std::string::npos || eq == 0)
      fail(ErrorKind::Usage, "override '" + ov + "' is not of the form key=value");
    const std::string key = ov.substr(0, eq);
    const std::string text = ov.substr(eq + 1);
    if (!known.count(key)) {
      fail(ErrorKind::Config,
           "override '" + ov + "': '" + key + "' is not a config field for model_type '" +
               c.model_type + "' (known: " +
               join(std::vector<std::string>(known.begin(), known.end()), ", ") + ")");
    }
    // JSON literals (numbers, true/false, null, lists) keep their type; anything else is a string
    // (so mamba_dt_rank=auto works without quotes).
    json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (value.is_discarded()) value = text;
    j[key] = value;
  }
  std::string origin = c.name;
  for (const std::string& ov : overrides) origin += " " + ov;
  ModelConfig out = parse_object(j, origin, nullptr);
  out.name = c.name;
  out.derived_fields = c.derived_fields;
  return out;
}

ModelConfig resolve_model(const std::string& name_or_path) {
  namespace fs = std::filesystem;
  for (const std::string& n : preset_names())
    if (n == name_or_path) return preset(n);
  std::error_code ec;
  fs::path p(name_or_path);
  if (fs::is_directory(p, ec)) {
    fs::path cfg = p / "config.json";
    if (!fs::exists(cfg, ec))
      fail(ErrorKind::Io, "directory '" + name_or_path + "' has no config.json");
    return load_config_file(cfg.string());
  }
  if (fs::is_regular_file(p, ec)) return load_config_file(p.string());
  // Not a listed name and not a path: preset() also accepts composed ablations
  // ("jamba-tiny+top1+rope") and lists the names when it does not know the base.
  return preset(name_or_path);
}

}  // namespace jb
