// The single registry of compared components (llama.cpp test-backend-ops is the model). GPU
// tests, `jambench compare` and the kernel benchmarks all enumerate these ops and cases.
//
// A case is printed and parsed as OP(k=v,...,seed=S), e.g. SSM_SCAN(L=4097,D=8192,N=16,B=1,
// dtype=bf16,seed=7); pasting it to `jambench compare -o '<case>'` replays exactly that case,
// because every input is drawn from the counter-based RNG keyed by the seed (core/rng.hpp).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace jb::cmp {

struct Case {
  std::string op;
  std::vector<std::pair<std::string, std::string>> params;  // in print order, seed excluded
  uint64_t seed = 1;

  std::string str() const;  // OP(k=v,...,seed=S)
  static Case parse(const std::string& s);  // Error{Usage} on a malformed string
  bool has(const std::string& key) const;
  std::string get(const std::string& key) const;  // Error{Usage} if missing
  int64_t geti(const std::string& key) const;
  double getf(const std::string& key) const;
  Case& set(const std::string& key, const std::string& value);
  Case& set(const std::string& key, int64_t value);
};

// What kind of computation produced a tensor: selects the gate of the tolerance policy
// (ecosystem.md §1.8): factor 2 over the bf16-emulating reference's own error, 3 for the
// scan/decode state path and KV-cache ops; Exact for bit-for-bit outputs (quantiser, routing).
enum class CheckKind { Elementwise, Reduction, Scan, State, Cache, Exact };
const char* check_kind_name(CheckKind k);

struct NamedTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;
  CheckKind kind = CheckKind::Reduction;
  // For Scan outputs laid out [..., L, D]: the axis index of positions, for the per-position
  // error curve (-1: none).
  int position_axis = -1;
};
using Outputs = std::vector<NamedTensor>;

// Which reference: Truth = fp64 (or fp32 with fp64 accumulation); Bf16 = the bf16-emulating
// reference that rounds at the kernel contract's rounding points.
enum class Precision { Truth, Bf16 };

struct KernelRun {
  bool guards_ok = true;       // set false by the op if a guard region was overwritten
  std::string variant;         // kernel variant that ran (recorded in results)
  std::vector<std::string> notes;
};

struct OpInfo {
  std::string name;         // "SSM_SCAN"
  std::string family;       // "mamba", "attention", "moe", "norm", ...
  std::string description;  // one line
  std::function<std::vector<Case>()> cases;                       // the full grid
  std::function<Outputs(const Case&, Precision)> reference;       // CPU, same inputs
  std::function<Outputs(const Case&, KernelRun&)> kernel;         // GPU; empty if none
  // Non-empty: the kernel is allowed to differ bitwise between two runs (atomics, split-K).
  std::string nondeterministic_reason;
  // Cases too large for the CPU-side quick checks in CI (e.g. L=64K) carry "big=1".
};

class Registry {
 public:
  void add(OpInfo op);
  const std::vector<OpInfo>& ops() const { return ops_; }
  const OpInfo* find(const std::string& name) const;

 private:
  std::vector<OpInfo> ops_;
};

// The process-wide registry, filled on first use by the register_*_ops functions below.
const Registry& registry();

// One per family, each in compare/ops/<family>.cpp. The CUDA families are compiled only when
// JAMBENCH_HAVE_CUDA; without CUDA their ops are still listed but have no kernel.
void register_norm_ops(Registry& r);
void register_mamba_ops(Registry& r);
void register_attention_ops(Registry& r);
void register_moe_ops(Registry& r);

}  // namespace jb::cmp
