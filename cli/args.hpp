// Minimal command-line parsing shared by the subcommands: --key value, --key=value, flags, and
// positionals. Unknown options are an Error{Usage} naming the option.
#pragma once
#include <map>
#include <string>
#include <vector>

namespace jb::cli {

class Args {
 public:
  // `flags`: options that take no value. Everything else starting with '-' takes one value.
  Args(const std::vector<std::string>& argv, const std::vector<std::string>& known_options,
       const std::vector<std::string>& flags);
  bool has(const std::string& opt) const;
  std::string get(const std::string& opt, const std::string& def = "") const;
  std::vector<std::string> get_all(const std::string& opt) const;  // repeatable options
  int64_t get_int(const std::string& opt, int64_t def) const;
  double get_double(const std::string& opt, double def) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::multimap<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

}  // namespace jb::cli
