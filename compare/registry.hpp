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
#include <type_traits>
#include <utility>
#include <vector>

namespace jb::cmp {

struct Case {
  std::string op;
  std::vector<std::pair<std::string, std::string>> params;  // in print order, seed excluded
  uint64_t seed = 1;

  std::string str() const;                  // OP(k=v,...,seed=S)
  static Case parse(const std::string& s);  // Error{Usage} on a malformed string
  bool has(const std::string& key) const;
  std::string get(const std::string& key) const;                          // Error{Usage} if missing
  std::string get(const std::string& key, const std::string& def) const;  // def if missing
  int64_t geti(const std::string& key) const;
  double getf(const std::string& key) const;
  Case& set(const std::string& key, const std::string& value);
  Case& set(const std::string& key, int64_t value);
  bool big() const;           // params has big=1 (excluded by --quick)
  std::string dtype() const;  // the "dtype" param, "bf16" if absent (selects the gate path)
  bool operator==(const Case& o) const;
};

// A case parameter's printed value: text as given, integers in decimal.
struct ParamValue {
  std::string text;
  ParamValue(const char* s) : text(s) {}
  ParamValue(std::string s) : text(std::move(s)) {}
  template <class I, std::enable_if_t<std::is_integral_v<I>, int> = 0>
  ParamValue(I v) : text(std::to_string(v)) {}
};
using CaseParams = std::vector<std::pair<std::string, ParamValue>>;

// A case from its op name and its parameters in print order: the case grids' shorthand.
Case make_case(std::string op, const CaseParams& params, uint64_t seed = 1);

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
// reference that rounds at the kernel contract's rounding points. For a dtype=fp32 case, Bf16
// means "the kernel contract's precision", i.e. the fp32 reference (reported, not gated on).
enum class Precision { Truth, Bf16 };

struct KernelRun {
  bool guards_ok = true;  // set false by the op if a guard region was overwritten
  std::string variant;    // kernel variant that ran (recorded in results)
  std::vector<std::string> notes;
};

struct OpInfo {
  std::string name;                          // "SSM_SCAN"
  std::string family;                        // "mamba", "attention", "moe", "norm", ...
  std::string description;                   // one line
  std::function<std::vector<Case>()> cases;  // the full grid
  std::function<Outputs(const Case&, Precision)> reference;  // CPU, same inputs
  std::function<Outputs(const Case&, KernelRun&)> kernel;    // GPU; empty if none
  // Non-empty: the kernel is allowed to differ bitwise between two runs (atomics, split-K).
  std::string nondeterministic_reason;
  // Cases too large for the CPU-side quick checks in CI (e.g. L=64K) carry "big=1".

  // Optional, for the kernel benchmarks (bench/): bytes moved and floating-point operations of
  // one kernel call of a case, for GB/s and TFLOP/s counters. Empty: not reported.
  std::function<double(const Case&)> bytes;
  std::function<double(const Case&)> flops;
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
// In CUDA builds, registry.cpp references mamba/attention/moe weakly: a family whose file does
// not exist yet is simply absent from the registry (see compare/README.md, "Weak families").
void register_norm_ops(Registry& r);
void register_mamba_ops(Registry& r);
void register_attention_ops(Registry& r);
void register_moe_ops(Registry& r);

}  // namespace jb::cmp
