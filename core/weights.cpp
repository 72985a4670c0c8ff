#include "core/weights.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/error.hpp"
#include "core/hf_names.hpp"
#include "core/rng.hpp"
#include "core/safetensors.hpp"

namespace jb {

namespace fs = std::filesystem;

namespace {

bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// "auto" dt rank (jamba-spec §3.2) for hand-built configs that left it at 0.
int64_t dt_rank_of(const ModelConfig& c) {
  return c.mamba_dt_rank > 0 ? c.mamba_dt_rank : (c.hidden_size + 15) / 16;
}

}  // namespace

std::vector<TensorSpec> expected_tensors(const ModelConfig& c) {
  const int64_t d = c.hidden_size, V = c.vocab_size, I = c.intermediate_size;
  const int64_t Di = c.d_inner(), R = dt_rank_of(c), N = c.mamba_d_state, K = c.mamba_d_conv;
  std::vector<TensorSpec> out;
  out.push_back({"model.embed_tokens.weight", {V, d}});
  const std::vector<LayerSpec> layers = c.layers();
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    const LayerSpec& l = layers[i];
    out.push_back({p + "input_layernorm.weight", {d}});
    if (l.mixer == Mixer::Attention) {
      out.push_back({p + "self_attn.q_proj.weight", {c.q_dim(), d}});
      out.push_back({p + "self_attn.k_proj.weight", {c.kv_dim(), d}});
      out.push_back({p + "self_attn.v_proj.weight", {c.kv_dim(), d}});
      out.push_back({p + "self_attn.o_proj.weight", {d, c.q_dim()}});
    } else {
      const std::string m = p + "mamba.";
      out.push_back({m + "in_proj.weight", {2 * Di, d}});
      if (c.mamba_proj_bias) out.push_back({m + "in_proj.bias", {2 * Di}});
      out.push_back({m + "conv1d.weight", {Di, 1, K}});
      if (c.mamba_conv_bias) out.push_back({m + "conv1d.bias", {Di}});
      out.push_back({m + "x_proj.weight", {R + 2 * N, Di}});
      out.push_back({m + "dt_proj.weight", {Di, R}});
      out.push_back({m + "dt_proj.bias", {Di}});
      out.push_back({m + "A_log", {Di, N}});
      out.push_back({m + "D", {Di}});
      out.push_back({m + "out_proj.weight", {d, Di}});
      if (c.mamba_proj_bias) out.push_back({m + "out_proj.bias", {d}});
      if (c.mamba_inner_norms) {
        out.push_back({m + "dt_layernorm.weight", {R}});
        out.push_back({m + "b_layernorm.weight", {N}});
        out.push_back({m + "c_layernorm.weight", {N}});
      }
    }
    out.push_back({p + "pre_ff_layernorm.weight", {d}});
    const std::string f = p + "feed_forward.";
    if (l.ffn == Ffn::Mlp) {
      out.push_back({f + "gate_proj.weight", {I, d}});
      out.push_back({f + "up_proj.weight", {I, d}});
      out.push_back({f + "down_proj.weight", {d, I}});
    } else {
      out.push_back({f + "router.weight", {l.num_experts, d}});
      for (int64_t e = 0; e < l.num_experts; ++e) {
        const std::string x = f + "experts." + std::to_string(e) + ".";
        out.push_back({x + "gate_proj.weight", {I, d}});
        out.push_back({x + "up_proj.weight", {I, d}});
        out.push_back({x + "down_proj.weight", {d, I}});
      }
    }
  }
  out.push_back({"model.final_layernorm.weight", {d}});
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {V, d}});
  return out;
}

const Tensor& WeightStore::get(const std::string& name) const {
  const auto it = tensors.find(name);
  if (it == tensors.end()) fail(ErrorKind::Format, "missing tensor " + name);
  return it->second;
}

const Tensor& WeightStore::get(const std::string& name, const std::vector<int64_t>& shape) const {
  const Tensor& t = get(name);
  if (t.shape != shape)
    fail(ErrorKind::Shape,
         name + " has shape " + shape_str(t.shape) + ", expected " + shape_str(shape));
  return t;
}

namespace {

// Compares names and shapes (from a store or a checkpoint header) with what the config needs.
void check_specs(const std::map<std::string, std::vector<int64_t>>& have, const ModelConfig& c,
                 const std::string& origin) {
  const std::string pre = origin.empty() ? "" : origin + ": ";
  const std::vector<TensorSpec> want = expected_tensors(c);
  std::map<std::string, const TensorSpec*> wanted;
  for (const TensorSpec& s : want) {
    wanted[s.name] = &s;
    const auto it = have.find(s.name);
    if (it == have.end()) fail(ErrorKind::Format, pre + "missing tensor " + s.name);
    if (it->second != s.shape)
      fail(ErrorKind::Shape, pre + s.name + " has shape " + shape_str(it->second) + ", expected " +
                                 shape_str(s.shape));
  }
  for (const auto& kv : have)
    if (!wanted.count(kv.first))
      fail(ErrorKind::Format, pre + "unexpected tensor " + kv.first + " (not used by a " +
                                  (c.model_type.empty() ? std::string("model") : c.model_type) +
                                  " with this config)");
}

}  // namespace

void validate_weights(const WeightStore& w, const ModelConfig& c) {
  std::map<std::string, std::vector<int64_t>> have;
  for (const auto& kv : w.tensors) {
    if (kv.second.numel() != shape_numel(kv.second.shape))
      fail(ErrorKind::Internal, kv.first + " holds " + std::to_string(kv.second.numel()) +
                                    " values for shape " + shape_str(kv.second.shape));
    have[kv.first] = kv.second.shape;
  }
  check_specs(have, c, "");
}

WeightStore load_checkpoint(const std::string& dir, const ModelConfig& c) {
  const SafetensorsCheckpoint ck = SafetensorsCheckpoint::open(dir);
  std::vector<std::pair<std::string, std::vector<int64_t>>> disk;
  for (const std::string& name : ck.names()) disk.emplace_back(name, ck.entry(name).shape);
  const std::vector<HfPiece> pieces = plan_hf_mapping(disk);

  // Names and shapes are checked against the config before any tensor data is read or
  // allocated (ecosystem.md §5.1).
  std::map<std::string, std::vector<int64_t>> planned;
  for (const HfPiece& p : pieces) planned[p.canonical] = p.shape;
  check_specs(planned, c, dir);

  std::map<std::string, std::vector<const HfPiece*>> by_source;
  for (const HfPiece& p : pieces) by_source[p.source].push_back(&p);
  WeightStore w;
  w.warnings = ck.warnings();
  for (const auto& [source, list] : by_source) {
    Tensor t = ck.read(source);
    if (list.size() == 1 && list[0]->offset == 0 && list[0]->shape == t.shape) {
      w.tensors.emplace(list[0]->canonical, std::move(t));
      continue;
    }
    for (const HfPiece* p : list) w.tensors.emplace(p->canonical, extract_hf_piece(*p, t));
  }
  return w;
}

namespace {

void write_text_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(ErrorKind::Io, tmp + ": cannot create: " + std::strerror(errno));
    out << text;
    out.flush();
    if (!out) {
      out.close();
      std::remove(tmp.c_str());
      fail(ErrorKind::Io, tmp + ": write failed");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    fail(ErrorKind::Io, path + ": cannot rename from " + tmp + ": " + why);
  }
}

}  // namespace

void save_checkpoint(const std::string& dir, const ModelConfig& c, const WeightStore& w,
                     const std::string& dtype) {
  const Dtype dt = parse_dtype(dtype);
  if (dt != Dtype::F32 && dt != Dtype::BF16 && dt != Dtype::F16)
    fail(ErrorKind::Dtype, "checkpoints are saved as F32, BF16 or F16, not " + dtype);
  validate_weights(w, c);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(ErrorKind::Io, dir + ": cannot create directory: " + ec.message());
  SafetensorsWriter writer;
  writer.set_metadata("format", "pt");
  writer.set_metadata("producer", "jambench");
  for (const auto& [name, t] : w.tensors) writer.add(name, t, dt);
  writer.write((fs::path(dir) / "model.safetensors").string());
  write_text_atomic((fs::path(dir) / "config.json").string(), config_to_json(c));
}

// ---------------------------------------------------------------------------------------------
// Seeded random weights (jamba-spec §2.9, mamba_ssm's dt init).

InitRule random_init_rule(const std::string& name, const ModelConfig& c) {
  InitRule r;
  const std::string leaf = name.substr(name.rfind('.') + 1);  // "weight", "bias", "A_log", "D"
  if (ends_with(name, "mamba.A_log")) {
    r.kind = InitRule::ALog;
    r.period = c.mamba_d_state;
  } else if (ends_with(name, "mamba.D")) {
    r.kind = InitRule::Constant;
    r.a = 1.0f;
  } else if (ends_with(name, "mamba.dt_proj.bias")) {
    r.kind = InitRule::DtBias;
  } else if (ends_with(name, "mamba.dt_proj.weight")) {
    // U(-R^-0.5, R^-0.5), the bound computed in double and rounded once.
    const float bound = static_cast<float>(1.0 / std::sqrt(static_cast<double>(dt_rank_of(c))));
    r.kind = InitRule::Uniform;
    r.a = -bound;
    r.b = bound;
  } else if (ends_with(name, "mamba.conv1d.weight") || ends_with(name, "mamba.conv1d.bias")) {
    // PyTorch Conv1d default: fan_in = (in_channels / groups) * K = K for the depthwise conv.
    const float bound = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.mamba_d_conv)));
    r.kind = InitRule::Uniform;
    r.a = -bound;
    r.b = bound;
  } else if (ends_with(name, "layernorm.weight")) {
    r.kind = InitRule::Constant;
    r.a = 1.0f;
  } else if (ends_with(name, "_proj.bias")) {
    r.kind = InitRule::Constant;  // HF: biases 0
    r.a = 0.0f;
  } else if (leaf == "weight") {
    // Linear, embedding and router weights: N(0, 0.02) (HF initializer_range).
    r.kind = InitRule::Normal;
    r.a = 0.02f;
  } else {
    fail(ErrorKind::Internal, "no random init rule for tensor " + name);
  }
  return r;
}

float random_init_value(const InitRule& r, uint64_t seed, uint64_t stream, int64_t index) {
  const uint64_t i = static_cast<uint64_t>(index);
  switch (r.kind) {
    case InitRule::Normal:
      return rng_normal(seed, stream, i, 0.0f, r.a);
    case InitRule::Uniform:
      return rng_uniform(seed, stream, i, r.a, r.b);
    case InitRule::Constant:
      return r.a;
    case InitRule::DtBias: {
      // mamba_ssm: dt = exp(U[log 1e-3, log 1e-1]) clamped >= 1e-4; bias = softplus^-1(dt)
      // = dt + log(1 - exp(-dt)). Double precision, one rounding to float at the end.
      const double u = static_cast<double>(rng_uniform(seed, stream, i));
      const double lo = std::log(1e-3), hi = std::log(1e-1);
      const double dt = std::max(std::exp(lo + u * (hi - lo)), 1e-4);
      return static_cast<float>(dt + std::log(-std::expm1(-dt)));
    }
    case InitRule::ALog:
      // A = -[1..N] broadcast over channels (S4D-real init): A_log[c, n] = log(n + 1).
      return static_cast<float>(std::log(static_cast<double>(index % r.period + 1)));
  }
  return 0.0f;
}

WeightStore random_weights(const ModelConfig& c, uint64_t seed) {
  return random_weights(c, seed, 0);
}

WeightStore random_weights(const ModelConfig& c, uint64_t seed, int num_threads) {
  WeightStore w;
  struct Job {
    Tensor* t;
    InitRule rule;
    uint64_t stream;
    int64_t begin, end;
  };
  std::vector<Job> jobs;
  constexpr int64_t kChunk = int64_t{1} << 16;
  for (const TensorSpec& s : expected_tensors(c)) {
    Tensor& t = w.tensors[s.name];
    t = Tensor(s.shape);
    const InitRule rule = random_init_rule(s.name, c);
    const uint64_t stream = stream_id(s.name.c_str());
    for (int64_t b = 0; b < t.numel(); b += kChunk)
      jobs.push_back({&t, rule, stream, b, std::min(t.numel(), b + kChunk)});
  }
  // Every value is a pure function of (seed, stream, index), so the split into chunks and the
  // number of workers cannot change any bit.
  std::atomic<size_t> next{0};
  auto work = [&]() {
    for (size_t j = next++; j < jobs.size(); j = next++) {
      const Job& job = jobs[j];
      float* out = job.t->ptr();
      for (int64_t i = job.begin; i < job.end; ++i)
        out[i] = random_init_value(job.rule, seed, job.stream, i);
    }
  };
  int threads =
      num_threads > 0 ? num_threads : static_cast<int>(std::thread::hardware_concurrency());
  threads = std::max(1, std::min<int>(threads, static_cast<int>(jobs.size())));
  std::vector<std::thread> pool;
  for (int k = 1; k < threads; ++k) pool.emplace_back(work);
  work();
  for (std::thread& th : pool) th.join();
  return w;
}

}  // namespace jb
