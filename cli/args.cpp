#include "cli/args.hpp"

#include <algorithm>
#include <cstdlib>

#include "core/error.hpp"

namespace jb::cli {

Args::Args(const std::vector<std::string>& argv, const std::vector<std::string>& known,
           const std::vector<std::string>& flags) {
  auto is = [](const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
  };
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a.size() < 2 || a[0] != '-') {
      positional_.push_back(a);
      continue;
    }
    std::string key = a, value;
    bool inline_value = false;
    size_t eq = a.find('=');
    if (eq != std::string::npos && a.rfind("--", 0) == 0) {
      key = a.substr(0, eq);
      value = a.substr(eq + 1);
      inline_value = true;
    }
    if (is(flags, key)) {
      if (inline_value) fail(ErrorKind::Usage, "option " + key + " takes no value");
      values_.emplace(key, "1");
    } else if (is(known, key)) {
      if (!inline_value) {
        if (i + 1 >= argv.size()) fail(ErrorKind::Usage, "option " + key + " needs a value");
        value = argv[++i];
      }
      values_.emplace(key, value);
    } else {
      fail(ErrorKind::Usage, "unknown option " + key + " (see --help)");
    }
  }
}

bool Args::has(const std::string& opt) const {
  return values_.count(opt) != 0;
}

std::string Args::get(const std::string& opt, const std::string& def) const {
  auto it = values_.find(opt);
  return it == values_.end() ? def : it->second;
}

std::vector<std::string> Args::get_all(const std::string& opt) const {
  std::vector<std::string> out;
  auto range = values_.equal_range(opt);
  for (auto it = range.first; it != range.second; ++it) out.push_back(it->second);
  return out;
}

int64_t Args::get_int(const std::string& opt, int64_t def) const {
  if (!has(opt)) return def;
  const std::string s = get(opt);
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end)
    fail(ErrorKind::Usage, "option " + opt + " expects an integer, got '" + s + "'");
  return v;
}

double Args::get_double(const std::string& opt, double def) const {
  if (!has(opt)) return def;
  const std::string s = get(opt);
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end)
    fail(ErrorKind::Usage, "option " + opt + " expects a number, got '" + s + "'");
  return v;
}

}  // namespace jb::cli
