// Named host weights under canonical names, loaders and seeded random init.
//
// Canonical names are HuggingFace Jamba's on-disk names (jamba-spec §3.1), for every model:
//   model.embed_tokens.weight, model.final_layernorm.weight, lm_head.weight,
//   model.layers.{i}.input_layernorm.weight, model.layers.{i}.pre_ff_layernorm.weight,
//   model.layers.{i}.self_attn.{q,k,v,o}_proj.weight,
//   model.layers.{i}.mamba.{in_proj.weight, conv1d.weight [Di,1,K], conv1d.bias, x_proj.weight,
//       dt_proj.weight, dt_proj.bias, A_log, D, out_proj.weight, dt_layernorm.weight,
//       b_layernorm.weight, c_layernorm.weight}   (+ in_proj.bias / out_proj.bias if proj bias)
//   model.layers.{i}.feed_forward.{gate_proj,up_proj,down_proj}.weight          (dense MLP)
//   model.layers.{i}.feed_forward.router.weight                                  (MoE)
//   model.layers.{i}.feed_forward.experts.{e}.{gate_proj,up_proj,down_proj}.weight
// Loaders map other spellings onto these: Jamba's B_layernorm/C_layernorm, transformers-v5 fused
// experts (gate_up_proj [E, 2I, d], down_proj [E, d, I]); Mixtral's block_sparse_moe.gate /
// experts.{e}.w1 (gate) w3 (up) w2 (down), post_attention_layernorm, model.norm; Llama/Mistral
// mlp.{gate,up,down}_proj.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/tensor.hpp"

namespace jb {

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
};

// Every tensor a config needs, canonical names and shapes, in a stable order.
std::vector<TensorSpec> expected_tensors(const ModelConfig& c);

struct WeightStore {
  std::map<std::string, Tensor> tensors;
  // Non-fatal findings of the loader (e.g. an index whose total_size disagrees with the shards).
  std::vector<std::string> warnings;

  bool has(const std::string& name) const { return tensors.count(name) != 0; }
  // Error{Format} "missing tensor NAME" / Error{Shape} "NAME has shape [..], expected [..]".
  const Tensor& get(const std::string& name, const std::vector<int64_t>& shape) const;
  const Tensor& get(const std::string& name) const;
};

// Loads a checkpoint directory (model.safetensors or model.safetensors.index.json + shards)
// with its names mapped to canonical ones, and checks it against the config: every expected
// tensor present with the right shape (Error{Format}/Error{Shape} naming the first problem).
WeightStore load_checkpoint(const std::string& dir, const ModelConfig& c);
// Writes canonical-named weights as HF-style checkpoint: config.json + model.safetensors
// (values stored as `dtype`: F32 or BF16).
void save_checkpoint(const std::string& dir, const ModelConfig& c, const WeightStore& w,
                     const std::string& dtype = "F32");

// Seeded random weights from the counter-based RNG: every element is a pure function of
// (seed, stream_id(name), index), so the GPU generates the same values. Magnitudes
// (random_init_rule): Linear weights ~ N(0, 0.02); norms = 1; conv1d.weight ~ U(-1/sqrt(K),
// 1/sqrt(K)), conv1d.bias ~ U(-1/sqrt(K), 1/sqrt(K)); dt_proj.weight ~ U(-R^-0.5, R^-0.5);
// dt_proj.bias = softplus^-1(dt), dt = exp(U[log 1e-3, log 1e-1]) (computed in double);
// A_log[c, n] = log(n + 1); D = 1.
WeightStore random_weights(const ModelConfig& c, uint64_t seed);
// Same values with an explicit worker count (0 = hardware threads); the bits never depend on it.
WeightStore random_weights(const ModelConfig& c, uint64_t seed, int num_threads);

// The rule random_weights applies to one canonical tensor, so another implementation (the GPU
// engine) can regenerate the same values. With u = rng_uniform(seed, stream_id(name), i) and
// g = rng_normal(seed, stream_id(name), i) for flat element index i:
//   Normal:   fma(g, a, 0)          (a = std; Linear/embedding/router weights, a = 0.02)
//   Uniform:  fma(u, b - a, a)      (conv1d weight and bias, dt_proj.weight)
//   Constant: a                     (norms 1, D 1, projection biases 0)
//   DtBias:   element c uses u_c = rng_uniform(seed, stream, c); in double,
//             dt = max(exp(log(1e-3) + u_c * (log(1e-1) - log(1e-3))), 1e-4),
//             value = float(dt + log(-expm1(-dt)))   (softplus^-1(dt), rounded once)
//   ALog:     element (c, n) = float(log(double(n + 1))), n = i % period (period = d_state)
struct InitRule {
  enum Kind { Normal, Uniform, Constant, DtBias, ALog } kind = Constant;
  float a = 0.0f;
  float b = 0.0f;
  int64_t period = 1;
};
InitRule random_init_rule(const std::string& canonical_name, const ModelConfig& c);
// The value of flat element `index` of tensor `name` under `rule` (host side of the rule above).
float random_init_value(const InitRule& rule, uint64_t seed, uint64_t stream, int64_t index);

// Checks a store against expected_tensors(c): Error{Format} "missing tensor NAME" or
// "unexpected tensor NAME", Error{Shape} "NAME has shape [..], expected [..]" (first problem).
void validate_weights(const WeightStore& w, const ModelConfig& c);

}  // namespace jb
