// ModelConfig: parsing of HF config.json (jamba-spec §3.2, §4), the layer layout (§1.1), one test
// per rejection reason (ecosystem.md §5.1), presets, ablations and round trips.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/config.hpp"
#include "core/error.hpp"

namespace jb {
namespace {

using json = nlohmann::json;

// The in-library config.json of ai21labs/Jamba-v0.1 as listed in jamba-spec §4.1.
const char* kJambaV01Json = R"({
  "architectures": ["JambaForCausalLM"], "attention_dropout": 0.0, "attn_layer_offset": 4,
  "attn_layer_period": 8, "bos_token_id": 1, "eos_token_id": 2, "expert_layer_offset": 1,
  "expert_layer_period": 2, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
  "intermediate_size": 14336, "mamba_conv_bias": true, "mamba_d_conv": 4, "mamba_d_state": 16,
  "mamba_dt_rank": 256, "mamba_expand": 2, "mamba_proj_bias": false,
  "max_position_embeddings": 262144, "model_type": "jamba", "num_attention_heads": 32,
  "num_experts": 16, "num_experts_per_tok": 2, "num_hidden_layers": 32,
  "num_key_value_heads": 8, "num_logits_to_keep": 1, "output_router_logits": false,
  "pad_token_id": 0, "rms_norm_eps": 1e-06, "router_aux_loss_coef": 0.001,
  "sliding_window": null, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.40.1", "use_cache": true, "use_mamba_kernels": true,
  "vocab_size": 65536
})";

json jamba_json() {
  return json::parse(kJambaV01Json);
}

// Runs parse_config_json on `j`, expects Error{kind} whose message contains `substring`.
void expect_rejected(const std::string& text, ErrorKind kind, const std::string& substring) {
  try {
    (void)parse_config_json(text, "test.json");
    ADD_FAILURE() << "accepted a config that should fail with '" << substring << "'";
  } catch (const Error& e) {
    EXPECT_EQ(error_kind_name(e.kind()), std::string(error_kind_name(kind))) << e.what();
    EXPECT_NE(std::string(e.what()).find(substring), std::string::npos)
        << "message: " << e.what() << "\nexpected substring: " << substring;
  }
}

void expect_rejected(const json& j, const std::string& substring) {
  expect_rejected(j.dump(), ErrorKind::Config, substring);
}

TEST(Config, ParsesJambaV01) {
  ModelConfig c = parse_config_json(kJambaV01Json);
  EXPECT_EQ(c.model_type, "jamba");
  EXPECT_EQ(c.vocab_size, 65536);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.mamba_dt_rank, 256);
  EXPECT_EQ(c.d_inner(), 8192);
  EXPECT_FALSE(c.router_renormalize);
  EXPECT_FALSE(c.use_rope);
  EXPECT_TRUE(c.mamba_inner_norms);
  EXPECT_FALSE(c.sliding_window.has_value());
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{2});
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_TRUE(same_architecture(c, preset("jamba-v0.1")));
}

TEST(Config, LayoutJambaV01) {
  const ModelConfig c = preset("jamba-v0.1");
  const std::vector<LayerSpec> layers = c.layers();
  ASSERT_EQ(layers.size(), 32u);
  for (int i = 0; i < 32; ++i) {
    const bool attention = i == 4 || i == 12 || i == 20 || i == 28;
    EXPECT_EQ(layers[i].mixer == Mixer::Attention, attention) << "layer " << i;
    EXPECT_EQ(layers[i].ffn == Ffn::Moe, i % 2 == 1) << "layer " << i;
    EXPECT_EQ(layers[i].num_experts, i % 2 == 1 ? 16 : 1) << "layer " << i;
  }
  EXPECT_EQ(c.num_attention_layers(), 4);
  EXPECT_EQ(c.num_mamba_layers(), 28);
  EXPECT_EQ(c.num_moe_layers(), 16);
}

TEST(Config, LayoutJamba15Large) {
  const ModelConfig c = preset("jamba-1.5-large");
  const std::vector<LayerSpec> layers = c.layers();
  ASSERT_EQ(layers.size(), 72u);
  int attention = 0;
  for (int i = 0; i < 72; ++i) {
    if (layers[i].mixer == Mixer::Attention) {
      ++attention;
      EXPECT_EQ(i % 8, 4) << "layer " << i;
    }
  }
  EXPECT_EQ(attention, 9);
  EXPECT_EQ(c.num_mamba_layers(), 63);
  EXPECT_EQ(c.num_moe_layers(), 36);
  EXPECT_FALSE(c.derived_fields.empty());
}

TEST(Config, JambaTinyAndOddLayouts) {
  const ModelConfig tiny = preset("jamba-tiny");
  EXPECT_EQ(tiny.num_attention_layers(), 2);  // layers 2 and 6
  EXPECT_EQ(tiny.layers()[2].mixer, Mixer::Attention);
  EXPECT_EQ(tiny.layers()[6].mixer, Mixer::Attention);
  EXPECT_EQ(tiny.mamba_dt_rank, 4);  // ceil(64 / 16)
  const ModelConfig odd = preset("jamba-tiny-odd");
  EXPECT_EQ(odd.head_dim, 24);
  EXPECT_EQ(odd.mamba_dt_rank, 5);  // ceil(72 / 16)
  EXPECT_EQ(odd.layers()[1].mixer, Mixer::Attention);
  EXPECT_EQ(odd.layers()[1].ffn, Ffn::Moe);
}

TEST(Config, AcceptsOldCustomCodeKeysAutoRankAndNullKvHeads) {
  json j = jamba_json();
  j.erase("max_position_embeddings");
  j["n_ctx"] = 131072;
  j["mamba_inner_layernorms"] = true;
  j["calc_logits_for_entire_prompt"] = false;
  j["some_future_field"] = {{"nested", 1}};
  j["mamba_dt_rank"] = "auto";
  j["num_key_value_heads"] = nullptr;
  j["hidden_size"] = 4100;  // ceil(4100/16) = 257: "auto" rounds up
  j["num_attention_heads"] = 41;
  ModelConfig c = parse_config_json(j.dump());
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_EQ(c.mamba_dt_rank, 257);
  EXPECT_EQ(c.num_key_value_heads, 41);
  EXPECT_EQ(c.head_dim, 100);
}

TEST(Config, MambaInnerLayernormsFalseTurnsNormsOff) {
  json j = jamba_json();
  j["mamba_inner_layernorms"] = false;
  EXPECT_FALSE(parse_config_json(j.dump()).mamba_inner_norms);
}

TEST(Config, EosList) {
  json j = jamba_json();
  j["eos_token_id"] = {2, 518};
  EXPECT_EQ(parse_config_json(j.dump()).eos_token_ids, (std::vector<int64_t>{2, 518}));
}

TEST(Config, ParsesMixtralFieldNames) {
  const char* text = R"({"architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
    "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "num_local_experts": 8, "num_experts_per_tok": 2, "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-05, "max_position_embeddings": 32768, "sliding_window": null,
    "router_aux_loss_coef": 0.02, "tie_word_embeddings": false, "bos_token_id": 1,
    "eos_token_id": 2, "torch_dtype": "bfloat16"})";
  ModelConfig c = parse_config_json(text);
  EXPECT_EQ(c.num_experts, 8);
  EXPECT_EQ(c.num_experts_per_tok, 2);
  EXPECT_TRUE(c.router_renormalize);
  EXPECT_TRUE(c.use_rope);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.num_attention_layers(), 32);
  EXPECT_EQ(c.num_moe_layers(), 32);
  EXPECT_TRUE(same_architecture(c, preset("mixtral-8x7b")));
}

TEST(Config, LlamaKvHeadsDefaultToHeadsAndHeadDimField) {
  const char* text = R"({"model_type": "llama", "vocab_size": 32000, "hidden_size": 4096,
    "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
    "max_position_embeddings": 4096, "rms_norm_eps": 1e-05})";
  ModelConfig c = parse_config_json(text);
  EXPECT_EQ(c.num_key_value_heads, 32);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_TRUE(c.use_rope);
  EXPECT_EQ(c.num_moe_layers(), 0);
  EXPECT_EQ(c.num_attention_layers(), 32);

  json j = json::parse(text);
  j["head_dim"] = 96;  // explicit head_dim wins over hidden / heads (Mistral-Nemo style)
  EXPECT_EQ(parse_config_json(j.dump()).head_dim, 96);
}

// ---- one test per rejection reason
// ---------------------------------------------------------------

TEST(ConfigReject, MissingField) {
  json j = jamba_json();
  j.erase("hidden_size");
  expect_rejected(j, "missing field 'hidden_size'");
}

TEST(ConfigReject, MistypedField) {
  json j = jamba_json();
  j["num_hidden_layers"] = "32";
  expect_rejected(j, "field 'num_hidden_layers' has type string, expected integer");
  j = jamba_json();
  j["mamba_conv_bias"] = 1;
  expect_rejected(j, "field 'mamba_conv_bias' has type integer, expected boolean");
  j = jamba_json();
  j["hidden_size"] = 4096.5;
  expect_rejected(j, "field 'hidden_size' has type number, expected integer");
}

TEST(ConfigReject, OffsetNotLessThanPeriod) {
  json j = jamba_json();
  j["attn_layer_offset"] = 8;
  expect_rejected(j, "attn_layer_offset (8) must be less than attn_layer_period (8)");
  j = jamba_json();
  j["expert_layer_offset"] = 3;
  expect_rejected(j, "expert_layer_offset (3) must be less than expert_layer_period (2)");
}

TEST(ConfigReject, HeadsDoNotDivideHidden) {
  json j = jamba_json();
  j["num_attention_heads"] = 30;
  j["num_key_value_heads"] = 6;
  expect_rejected(j, "num_attention_heads (30) does not divide hidden_size (4096)");
}

TEST(ConfigReject, KvHeadsDoNotDivideHeads) {
  json j = jamba_json();
  j["num_key_value_heads"] = 5;
  expect_rejected(j, "num_key_value_heads (5) does not divide num_attention_heads (32)");
}

TEST(ConfigReject, ZeroSize) {
  json j = jamba_json();
  j["intermediate_size"] = 0;
  expect_rejected(j, "intermediate_size must be positive (got 0)");
  j = jamba_json();
  j["attn_layer_period"] = 0;
  expect_rejected(j, "attn_layer_period must be positive (got 0)");
}

TEST(ConfigReject, NegativeSize) {
  json j = jamba_json();
  j["vocab_size"] = -5;
  expect_rejected(j, "vocab_size must be positive (got -5)");
  j = jamba_json();
  j["mamba_d_state"] = -16;
  expect_rejected(j, "mamba_d_state must be positive (got -16)");
}

TEST(ConfigReject, UnknownModelType) {
  json j = jamba_json();
  j["model_type"] = "mamba2";
  expect_rejected(j, "unknown model_type 'mamba2'");
}

TEST(ConfigReject, NotJson) {
  expect_rejected("{\"model_type\": \"jamba\", ", ErrorKind::Config, "not JSON");
  expect_rejected("[1, 2, 3]", ErrorKind::Config, "must be a JSON object");
}

TEST(ConfigReject, DuplicateKeys) {
  std::string text = kJambaV01Json;
  // The second hidden_size would silently win in a DOM parser.
  text.insert(text.find("\"hidden_size\""), "\"hidden_size\": 1024, ");
  expect_rejected(text, ErrorKind::Config, "duplicate key 'hidden_size'");
  // Nested objects have their own key sets: the same key in two objects is fine...
  json j = jamba_json();
  j["a"] = {{"x", 1}};
  j["b"] = {{"x", 2}};
  EXPECT_NO_THROW(parse_config_json(j.dump()));
  // ...but a duplicate inside a nested object is still caught.
  std::string nested = j.dump();
  nested.insert(nested.find("\"x\":1"), "\"x\":3,");
  expect_rejected(nested, ErrorKind::Config, "duplicate key 'x'");
}

TEST(ConfigReject, TopKExceedsExperts) {
  json j = jamba_json();
  j["num_experts_per_tok"] = 17;
  expect_rejected(j, "num_experts_per_tok (17) exceeds num_experts (16)");
}

TEST(ConfigReject, SanityBounds) {
  json j = jamba_json();
  j["mamba_d_state"] = 512;
  expect_rejected(j, "mamba_d_state (512) exceeds the sanity bound 256");
  j = jamba_json();
  j["num_hidden_layers"] = 2048;
  expect_rejected(j, "num_hidden_layers (2048) exceeds the sanity bound 1024");
  j = jamba_json();
  j["vocab_size"] = (1 << 24) + 1;
  expect_rejected(j, "vocab_size (16777217) exceeds the sanity bound 16777216");
  j = jamba_json();
  j["num_experts"] = 1025;
  expect_rejected(j, "num_experts (1025) exceeds the sanity bound 1024");
}

TEST(ConfigReject, ReportsEveryProblem) {
  json j = jamba_json();
  j["num_key_value_heads"] = 5;
  j["num_experts_per_tok"] = 17;
  try {
    (void)parse_config_json(j.dump());
    FAIL() << "accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("num_key_value_heads (5)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("num_experts_per_tok (17)"), std::string::npos) << msg;
  }
}

TEST(ConfigReject, MissingFileIsIoError) {
  try {
    (void)load_config_file("/nonexistent/dir/config.json");
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Io);
  }
}

// ---- presets, round trips, overrides
// --------------------------------------------------------------

TEST(ConfigPresets, EveryPresetValidatesAndRoundTrips) {
  const std::vector<std::string> names = preset_names();
  EXPECT_GE(names.size(), 14u);
  for (const std::string& name : names) {
    SCOPED_TRACE(name);
    const ModelConfig c = preset(name);
    EXPECT_EQ(c.name, name);
    EXPECT_NO_THROW(validate_config(c));
    const ModelConfig back = parse_config_json(config_to_json(c), name);
    std::string diff;
    EXPECT_TRUE(same_architecture(c, back, &diff)) << diff;
  }
}

TEST(ConfigPresets, PublishedShapes) {
  const ModelConfig l13 = preset("llama-2-13b");
  EXPECT_EQ(l13.hidden_size, 5120);
  EXPECT_EQ(l13.intermediate_size, 13824);
  EXPECT_EQ(l13.num_hidden_layers, 40);
  EXPECT_EQ(l13.num_key_value_heads, 40);
  const ModelConfig l70 = preset("llama-2-70b");
  EXPECT_EQ(l70.num_key_value_heads, 8);
  EXPECT_EQ(l70.intermediate_size, 28672);
  const ModelConfig large = preset("jamba-1.5-large");
  EXPECT_EQ(large.mamba_dt_rank, 512);
  EXPECT_EQ(large.intermediate_size, 24576);
  const ModelConfig mistral = preset("mistral-7b");
  ASSERT_TRUE(mistral.sliding_window.has_value());
  EXPECT_EQ(*mistral.sliding_window, 4096);
  EXPECT_EQ(preset("jamba-1.5-mini").eos_token_ids, (std::vector<int64_t>{2, 518}));
}

TEST(ConfigPresets, Ablations) {
  for (const std::string base : {"jamba-v0.1", "jamba-tiny"}) {
    SCOPED_TRACE(base);
    const ModelConfig b = preset(base);
    const int64_t L = b.num_hidden_layers;
    EXPECT_EQ(preset(base + "+attn-only").num_attention_layers(), L);
    EXPECT_EQ(preset(base + "+mamba-only").num_attention_layers(), 0);
    EXPECT_EQ(preset(base + "+mamba-only").num_mamba_layers(), L);
    EXPECT_EQ(preset(base + "+a1m3").num_attention_layers(), L / 4);
    EXPECT_EQ(preset(base + "+a1m7").num_attention_layers(), L / 8);
    EXPECT_EQ(preset(base + "+no-moe").num_moe_layers(), 0);
    EXPECT_EQ(preset(base + "+moe-every-layer").num_moe_layers(), L);
    EXPECT_EQ(preset(base + "+top1").num_experts_per_tok, 1);
    EXPECT_EQ(preset(base + "+8-experts").num_experts, 8);
    EXPECT_EQ(preset(base + "+16-experts").num_experts, 16);
    EXPECT_TRUE(preset(base + "+rope").use_rope);
    EXPECT_FALSE(preset(base + "+no-inner-norms").mamba_inner_norms);
    // Compositions are accepted even if not listed.
    const ModelConfig both = preset(base + "+top1+rope");
    EXPECT_EQ(both.num_experts_per_tok, 1);
    EXPECT_TRUE(both.use_rope);
  }
}

TEST(ConfigPresets, UnknownPresetIsUsageErrorListingNames) {
  try {
    (void)preset("jamba-v9");
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_NE(std::string(e.what()).find("jamba-v0.1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(preset("jamba-tiny+no-such-variant"), Error);
}

TEST(ConfigOverrides, AppliesAndValidates) {
  ModelConfig c = apply_overrides(preset("jamba-tiny"), {"num_experts=8", "use_rope=true"});
  EXPECT_EQ(c.num_experts, 8);
  EXPECT_TRUE(c.use_rope);
  EXPECT_EQ(c.name, "jamba-tiny");
  // hidden_size changes re-derive head_dim; dt_rank accepts "auto".
  c = apply_overrides(preset("jamba-tiny"), {"hidden_size=128", "mamba_dt_rank=auto"});
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.mamba_dt_rank, 8);
  try {
    (void)apply_overrides(preset("jamba-tiny"), {"num_experts_per_tok=9"});
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Config);
    EXPECT_NE(std::string(e.what()).find("exceeds num_experts"), std::string::npos) << e.what();
  }
  try {
    (void)apply_overrides(preset("llama-tiny"), {"mamba_d_state=32"});
    FAIL() << "accepted a Mamba field on a llama config";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Config);
    EXPECT_NE(std::string(e.what()).find("not a config field"), std::string::npos) << e.what();
  }
  EXPECT_THROW(apply_overrides(preset("jamba-tiny"), {"no_equals_sign"}), Error);
}

TEST(ConfigResolve, PresetFileAndDirectory) {
  EXPECT_EQ(resolve_model("jamba-tiny").hidden_size, 64);
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("jb_test_config_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  {
    std::ofstream out(dir / "config.json");
    out << kJambaV01Json;
  }
  EXPECT_EQ(resolve_model(dir.string()).num_hidden_layers, 32);
  EXPECT_EQ(resolve_model((dir / "config.json").string()).num_hidden_layers, 32);
  fs::remove_all(dir);
  EXPECT_THROW(resolve_model("not-a-preset-or-path"), Error);
}

TEST(ConfigCompare, SameArchitectureReportsDifference) {
  ModelConfig a = preset("jamba-tiny");
  ModelConfig b = a;
  b.mamba_d_conv = 3;
  std::string diff;
  EXPECT_FALSE(same_architecture(a, b, &diff));
  EXPECT_NE(diff.find("mamba_d_conv"), std::string::npos) << diff;
}

}  // namespace
}  // namespace jb
