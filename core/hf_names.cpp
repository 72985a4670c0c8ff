#include "core/hf_names.hpp"

#include <algorithm>
#include <cstring>

#include "core/error.hpp"

namespace jb {

namespace {

bool starts_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(0, p.size(), p) == 0;
}

bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// A decimal index without sign or leading zeros ("07" would alias "7" after renaming).
bool parse_index(const std::string& s, size_t& pos, std::string& out) {
  size_t end = pos;
  while (end < s.size() && s[end] >= '0' && s[end] <= '9') ++end;
  if (end == pos || end - pos > 9 || (s[pos] == '0' && end - pos > 1)) return false;
  out = s.substr(pos, end - pos);
  pos = end;
  return true;
}

// Renames within one layer ("rest" is the part after "model.layers.{i}."); empty if unknown.
std::optional<HfName> map_layer_rest(const std::string& layer, const std::string& rest) {
  const std::string p = "model.layers." + layer + ".";
  auto rename = [&](const std::string& canonical_rest) {
    return HfName{HfNameKind::Rename, p + canonical_rest};
  };
  static const char* same[] = {
      "input_layernorm.weight",
      "pre_ff_layernorm.weight",
      "self_attn.q_proj.weight",
      "self_attn.k_proj.weight",
      "self_attn.v_proj.weight",
      "self_attn.o_proj.weight",
      "mamba.in_proj.weight",
      "mamba.in_proj.bias",
      "mamba.conv1d.weight",
      "mamba.conv1d.bias",
      "mamba.x_proj.weight",
      "mamba.dt_proj.weight",
      "mamba.dt_proj.bias",
      "mamba.A_log",
      "mamba.D",
      "mamba.out_proj.weight",
      "mamba.out_proj.bias",
      "mamba.dt_layernorm.weight",
      "mamba.b_layernorm.weight",
      "mamba.c_layernorm.weight",
      "feed_forward.gate_proj.weight",
      "feed_forward.up_proj.weight",
      "feed_forward.down_proj.weight",
      "feed_forward.router.weight",
  };
  for (const char* s : same)
    if (rest == s) return rename(rest);
  // Spellings of other producers (jamba-spec §3.1 notes, §7 item 18).
  static const std::pair<const char*, const char*> renamed[] = {
      {"mamba.B_layernorm.weight", "mamba.b_layernorm.weight"},
      {"mamba.C_layernorm.weight", "mamba.c_layernorm.weight"},
      {"post_attention_layernorm.weight", "pre_ff_layernorm.weight"},
      {"mlp.gate_proj.weight", "feed_forward.gate_proj.weight"},
      {"mlp.up_proj.weight", "feed_forward.up_proj.weight"},
      {"mlp.down_proj.weight", "feed_forward.down_proj.weight"},
      {"block_sparse_moe.gate.weight", "feed_forward.router.weight"},
  };
  for (const auto& r : renamed)
    if (rest == r.first) return rename(r.second);
  if (starts_with(rest, "self_attn.rotary_emb.") && ends_with(rest, "inv_freq"))
    return HfName{HfNameKind::Ignore, ""};

  // transformers-v5 fused experts (with or without a ".weight" suffix).
  if (rest == "feed_forward.experts.gate_up_proj" ||
      rest == "feed_forward.experts.gate_up_proj.weight")
    return HfName{HfNameKind::FusedGateUp, p + "feed_forward.experts."};
  if (rest == "feed_forward.experts.down_proj" || rest == "feed_forward.experts.down_proj.weight")
    return HfName{HfNameKind::FusedDown, p + "feed_forward.experts."};

  // Per-expert tensors: Jamba feed_forward.experts.{e}.{gate,up,down}_proj.weight and Mixtral
  // block_sparse_moe.experts.{e}.w1 (gate) / w3 (up) / w2 (down).
  for (const char* moe : {"feed_forward.experts.", "block_sparse_moe.experts."}) {
    if (!starts_with(rest, moe)) continue;
    size_t pos = std::strlen(moe);
    std::string e;
    if (!parse_index(rest, pos, e) || pos >= rest.size() || rest[pos] != '.') return std::nullopt;
    const std::string tail = rest.substr(pos + 1);
    const std::string q = "feed_forward.experts." + e + ".";
    if (moe[0] == 'f') {
      if (tail == "gate_proj.weight" || tail == "up_proj.weight" || tail == "down_proj.weight")
        return rename(q + tail);
    } else {
      if (tail == "w1.weight") return rename(q + "gate_proj.weight");
      if (tail == "w3.weight") return rename(q + "up_proj.weight");
      if (tail == "w2.weight") return rename(q + "down_proj.weight");
    }
    return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace

std::optional<HfName> map_hf_name(const std::string& n) {
  if (n == "model.embed_tokens.weight" || n == "model.final_layernorm.weight" ||
      n == "lm_head.weight")
    return HfName{HfNameKind::Rename, n};
  if (n == "model.norm.weight") return HfName{HfNameKind::Rename, "model.final_layernorm.weight"};
  if (ends_with(n, "rotary_emb.inv_freq")) return HfName{HfNameKind::Ignore, ""};
  const std::string layers = "model.layers.";
  if (!starts_with(n, layers)) return std::nullopt;
  size_t pos = layers.size();
  std::string layer;
  if (!parse_index(n, pos, layer) || pos >= n.size() || n[pos] != '.') return std::nullopt;
  return map_layer_rest(layer, n.substr(pos + 1));
}

std::vector<HfPiece> plan_hf_mapping(
    const std::vector<std::pair<std::string, std::vector<int64_t>>>& disk) {
  std::vector<std::string> unknown;
  std::map<std::string, HfPiece> pieces;
  auto add = [&](HfPiece piece) {
    const auto it = pieces.find(piece.canonical);
    if (it != pieces.end())
      fail(ErrorKind::Format, "checkpoint tensors '" + it->second.source + "' and '" +
                                  piece.source + "' both map to '" + piece.canonical + "'");
    pieces.emplace(piece.canonical, std::move(piece));
  };
  for (const auto& [name, shape] : disk) {
    const std::optional<HfName> m = map_hf_name(name);
    if (!m) {
      unknown.push_back(name);
      continue;
    }
    switch (m->kind) {
      case HfNameKind::Ignore:
        break;
      case HfNameKind::Rename:
        add(HfPiece{m->canonical, shape, name, 0});
        break;
      case HfNameKind::FusedGateUp: {
        // [E, 2I, d]: expert e's gate is rows [0, I) of slab e, its up is rows [I, 2I).
        if (shape.size() != 3 || shape[1] % 2 != 0)
          fail(ErrorKind::Shape, "fused tensor '" + name + "' has shape " + shape_str(shape) +
                                     ", expected [experts, 2 * intermediate, hidden]");
        const int64_t inter = shape[1] / 2, d = shape[2];
        const int64_t slab = shape_numel({shape[1], d});
        for (int64_t e = 0; e < shape[0]; ++e) {
          const std::string q = m->canonical + std::to_string(e) + ".";
          add(HfPiece{q + "gate_proj.weight", {inter, d}, name, e * slab});
          add(HfPiece{q + "up_proj.weight", {inter, d}, name, e * slab + inter * d});
        }
        break;
      }
      case HfNameKind::FusedDown: {
        // [E, d, I]: expert e's down_proj is slab e.
        if (shape.size() != 3)
          fail(ErrorKind::Shape, "fused tensor '" + name + "' has shape " + shape_str(shape) +
                                     ", expected [experts, hidden, intermediate]");
        const int64_t slab = shape_numel({shape[1], shape[2]});
        for (int64_t e = 0; e < shape[0]; ++e)
          add(HfPiece{m->canonical + std::to_string(e) + ".down_proj.weight",
                      {shape[1], shape[2]},
                      name,
                      e * slab});
        break;
      }
    }
  }
  if (!unknown.empty()) {
    std::sort(unknown.begin(), unknown.end());
    std::string msg = std::to_string(unknown.size()) +
                      " checkpoint tensor(s) with names this loader does not know (a checkpoint "
                      "of another architecture?): ";
    for (size_t i = 0; i < unknown.size() && i < 5; ++i)
      msg += (i ? ", '" : "'") + unknown[i] + "'";
    if (unknown.size() > 5) msg += ", ...";
    fail(ErrorKind::Format, msg);
  }
  std::vector<HfPiece> out;
  out.reserve(pieces.size());
  for (auto& kv : pieces) out.push_back(std::move(kv.second));
  return out;
}

Tensor extract_hf_piece(const HfPiece& piece, const Tensor& source) {
  const int64_t n = shape_numel(piece.shape);
  int64_t end;
  if (piece.offset < 0 || __builtin_add_overflow(piece.offset, n, &end) || end > source.numel())
    fail(ErrorKind::Internal,
         "piece '" + piece.canonical + "' lies outside '" + piece.source + "'");
  Tensor t;
  t.shape = piece.shape;
  t.source_dtype = source.source_dtype;
  t.data.assign(source.data.begin() + piece.offset, source.data.begin() + end);
  return t;
}

std::map<std::string, Tensor> map_hf_tensors(const std::map<std::string, Tensor>& disk) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  for (const auto& [name, t] : disk) shapes.emplace_back(name, t.shape);
  std::map<std::string, Tensor> out;
  for (const HfPiece& p : plan_hf_mapping(shapes))
    out.emplace(p.canonical, extract_hf_piece(p, disk.at(p.source)));
  return out;
}

}  // namespace jb
