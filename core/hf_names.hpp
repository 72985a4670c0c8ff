// Maps the tensor names found in Jamba, Mixtral, Mistral and Llama checkpoints onto the canonical
// names of core/weights.hpp (jamba-spec §3.1, §7 item 18):
//   Jamba:   B_layernorm / C_layernorm -> b_layernorm / c_layernorm; transformers-v5 fused experts
//            feed_forward.experts.gate_up_proj [E, 2I, d] (gate rows first, then up rows) and
//            feed_forward.experts.down_proj [E, d, I] -> per-expert gate/up/down tensors.
//   Mixtral: block_sparse_moe.gate -> feed_forward.router; block_sparse_moe.experts.{e}.w1/w3/w2
//            -> feed_forward.experts.{e}.gate_proj/up_proj/down_proj; post_attention_layernorm
//            -> pre_ff_layernorm; model.norm -> model.final_layernorm.
//   Mistral/Llama: mlp.{gate,up,down}_proj -> feed_forward.*; post_attention_layernorm; model.norm.
// Rotary inv_freq buffers are ignored; any other name is an error, so a checkpoint of another
// architecture does not load silently.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.hpp"

namespace jb {

enum class HfNameKind {
  Rename,       // one on-disk tensor is one canonical tensor
  Ignore,       // rotary inv_freq buffers: derived, not weights
  FusedGateUp,  // v5 experts.gate_up_proj [E, 2I, d]
  FusedDown,    // v5 experts.down_proj [E, d, I]
};

struct HfName {
  HfNameKind kind = HfNameKind::Rename;
  // Rename: the canonical name. Fused: the canonical prefix
  // "model.layers.{i}.feed_forward.experts."
  std::string canonical;
};

// The mapping of one on-disk name; nullopt for a name this loader does not know.
std::optional<HfName> map_hf_name(const std::string& disk_name);

// One canonical tensor taken from a contiguous run of an on-disk tensor: `shape` elements
// starting at flat element `offset` of `source`.
struct HfPiece {
  std::string canonical;
  std::vector<int64_t> shape;
  std::string source;
  int64_t offset = 0;
};

// Plans the mapping of a whole checkpoint from its header (names and shapes), before any data
// is read. Error{Format} naming the unknown tensors (first few and the count), or two on-disk
// tensors mapping to the same canonical name; Error{Shape} for a malformed fused tensor.
// Pieces are sorted by canonical name.
std::vector<HfPiece> plan_hf_mapping(
    const std::vector<std::pair<std::string, std::vector<int64_t>>>& disk);

// Copies a planned piece out of its (already read) source tensor.
Tensor extract_hf_piece(const HfPiece& piece, const Tensor& source);

// Convenience for tensors already in memory: plan + extract.
std::map<std::string, Tensor> map_hf_tensors(const std::map<std::string, Tensor>& disk);

}  // namespace jb
