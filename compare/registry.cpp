#include "compare/registry.hpp"

#include <cerrno>
#include <cstdlib>

#include "core/error.hpp"

namespace jb::cmp {

namespace {

bool is_key_char(char ch) {
  return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
         ch == '_';
}

// Values may hold anything that does not break the OP(k=v,...) grammar.
bool is_value_char(char ch) {
  return ch != ',' && ch != '(' && ch != ')' && ch != '=' && ch != ' ' && ch != '\t' &&
         ch != '\n' && ch != '\r' && ch != '\0';
}

[[noreturn]] void bad_case(const std::string& s, const std::string& why) {
  fail(ErrorKind::Usage, "malformed case string '" + s + "': " + why +
                             " (expected OP(k=v,...,seed=S), e.g. RMS_NORM(rows=7,n=16,seed=1))");
}

uint64_t parse_seed(const std::string& s, const std::string& v) {
  if (v.empty() || v[0] == '-' || v[0] == '+')
    bad_case(s, "seed '" + v + "' is not an unsigned integer");
  char* end = nullptr;
  errno = 0;
  unsigned long long x = std::strtoull(v.c_str(), &end, 10);
  if (*end || errno == ERANGE) bad_case(s, "seed '" + v + "' is not an unsigned 64-bit integer");
  return static_cast<uint64_t>(x);
}

}  // namespace

std::string Case::str() const {
  std::string s = op + "(";
  for (const auto& kv : params) s += kv.first + "=" + kv.second + ",";
  s += "seed=" + std::to_string(seed) + ")";
  return s;
}

Case make_case(std::string op, const CaseParams& params, uint64_t seed) {
  Case c;
  c.op = std::move(op);
  for (const auto& [key, value] : params) c.params.emplace_back(key, value.text);
  c.seed = seed;
  return c;
}

Case Case::parse(const std::string& s) {
  Case c;
  size_t i = 0;
  while (i < s.size() && is_key_char(s[i])) ++i;
  if (i == 0) bad_case(s, "missing op name");
  c.op = s.substr(0, i);
  if (i >= s.size() || s[i] != '(') bad_case(s, "missing '(' after the op name");
  ++i;
  if (s.back() != ')') bad_case(s, "missing ')' at the end");
  const size_t close = s.size() - 1;
  bool seen_seed = false;
  if (i == close) return c;  // OP(): no params, seed 1
  while (true) {
    size_t k0 = i;
    while (i < close && is_key_char(s[i])) ++i;
    if (i == k0) bad_case(s, "empty or invalid parameter name at offset " + std::to_string(k0));
    std::string key = s.substr(k0, i - k0);
    if (i >= close || s[i] != '=') bad_case(s, "parameter '" + key + "' has no '='");
    ++i;
    size_t v0 = i;
    while (i < close && is_value_char(s[i])) ++i;
    if (i == v0) bad_case(s, "parameter '" + key + "' has an empty value");
    std::string value = s.substr(v0, i - v0);
    if (key == "seed") {
      if (seen_seed) bad_case(s, "seed given twice");
      seen_seed = true;
      c.seed = parse_seed(s, value);
    } else {
      if (c.has(key)) bad_case(s, "parameter '" + key + "' given twice");
      c.params.emplace_back(key, value);
    }
    if (i == close) break;
    if (s[i] != ',')
      bad_case(s, std::string("unexpected '") + s[i] + "' at offset " + std::to_string(i));
    ++i;
    if (i == close) bad_case(s, "trailing ','");
  }
  return c;
}

bool Case::has(const std::string& key) const {
  for (const auto& kv : params)
    if (kv.first == key) return true;
  return false;
}

std::string Case::get(const std::string& key) const {
  for (const auto& kv : params)
    if (kv.first == key) return kv.second;
  fail(ErrorKind::Usage, "case " + str() + " has no parameter '" + key + "'");
}

std::string Case::get(const std::string& key, const std::string& def) const {
  for (const auto& kv : params)
    if (kv.first == key) return kv.second;
  return def;
}

int64_t Case::geti(const std::string& key) const {
  const std::string v = get(key);
  char* end = nullptr;
  errno = 0;
  long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end || errno == ERANGE)
    fail(ErrorKind::Usage,
         "case " + str() + ": parameter '" + key + "' = '" + v + "' is not an integer");
  return x;
}

double Case::getf(const std::string& key) const {
  const std::string v = get(key);
  char* end = nullptr;
  double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end)
    fail(ErrorKind::Usage,
         "case " + str() + ": parameter '" + key + "' = '" + v + "' is not a number");
  return x;
}

Case& Case::set(const std::string& key, const std::string& value) {
  if (key == "seed") {
    seed = parse_seed(key + "=" + value, value);
    return *this;
  }
  for (auto& kv : params)
    if (kv.first == key) {
      kv.second = value;
      return *this;
    }
  params.emplace_back(key, value);
  return *this;
}

Case& Case::set(const std::string& key, int64_t value) {
  return set(key, std::to_string(value));
}

bool Case::big() const {
  return get("big", "0") == "1";
}

std::string Case::dtype() const {
  return get("dtype", "bf16");
}

bool Case::operator==(const Case& o) const {
  return op == o.op && params == o.params && seed == o.seed;
}

const char* check_kind_name(CheckKind k) {
  switch (k) {
    case CheckKind::Elementwise:
      return "elementwise";
    case CheckKind::Reduction:
      return "reduction";
    case CheckKind::Scan:
      return "scan";
    case CheckKind::State:
      return "state";
    case CheckKind::Cache:
      return "cache";
    case CheckKind::Exact:
      return "exact";
  }
  return "unknown";
}

void Registry::add(OpInfo op) {
  if (op.name.empty()) fail(ErrorKind::Internal, "registry: op with an empty name");
  for (char ch : op.name)
    if (!is_key_char(ch))
      fail(ErrorKind::Internal, "registry: op name '" + op.name + "' is not [A-Za-z0-9_]+");
  if (find(op.name)) fail(ErrorKind::Internal, "registry: op " + op.name + " registered twice");
  if (!op.cases) fail(ErrorKind::Internal, "registry: op " + op.name + " has no case grid");
  ops_.push_back(std::move(op));
}

const OpInfo* Registry::find(const std::string& name) const {
  for (const OpInfo& op : ops_)
    if (op.name == name) return &op;
  return nullptr;
}

}  // namespace jb::cmp

// Weak families (compare/README.md): in CUDA builds the mamba/attention/moe families live in files
// written by their owners; until such a file exists its register function is a null weak symbol
// and the family is skipped, so the build links with any subset. jb_compare is an OBJECT library
// so that existing files are always linked (an archive member is never pulled in by a weak
// reference). Without CUDA, ops/cpu_listings.cpp defines all four strongly.
#if defined(JAMBENCH_HAVE_CUDA)
namespace jb::cmp {
void register_mamba_ops(Registry& r) __attribute__((weak));
void register_attention_ops(Registry& r) __attribute__((weak));
void register_moe_ops(Registry& r) __attribute__((weak));
}  // namespace jb::cmp
#endif

namespace jb::cmp {

const Registry& registry() {
  static const Registry reg = [] {
    Registry r;
    register_norm_ops(r);
    using RegisterFn = void (*)(Registry&);
    const RegisterFn weak_families[] = {&register_mamba_ops, &register_attention_ops,
                                        &register_moe_ops};
    for (RegisterFn fn : weak_families)
      if (fn) fn(r);
    return r;
  }();
  return reg;
}

}  // namespace jb::cmp
