// HDF5 failure dump of one compare case (core/hdf5_io.hpp). Inputs are not stored: they are a
// pure function of the case string through the counter-based RNG, so the case string replays
// them (`jambench compare -o '<case>'`).
#include <filesystem>
#include <system_error>

#include "compare/runner.hpp"
#include "core/error.hpp"
#include "core/hdf5_io.hpp"

namespace jb::cmp {

namespace {

// A file name from the case string: keep [A-Za-z0-9._=-], map everything else to '_'.
std::string file_stem(const std::string& case_str) {
  std::string s;
  for (char ch : case_str) {
    const bool keep = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                      (ch >= '0' && ch <= '9') || ch == '.' || ch == '=' || ch == '-';
    s += keep ? ch : '_';
  }
  while (!s.empty() && s.back() == '_') s.pop_back();
  return s;
}

void write_outputs(h5::Writer& w, const std::string& which, const Outputs& outs) {
  for (const NamedTensor& t : outs)
    w.write_f32("/" + t.name + "/" + which, t.shape, t.values.data());
}

}  // namespace

std::string write_dump(const std::string& dir, const CaseResult& r, const Outputs& kernel,
                       const Outputs& truth, const Outputs& lp) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail(ErrorKind::Io, "cannot create dump directory " + dir + ": " + ec.message());
  const std::string path = dir + "/" + file_stem(r.case_str) + ".h5";
  h5::Writer w(path);
  w.set_attr("/", "case", r.case_str);
  w.set_attr("/", "op", r.op);
  w.set_attr("/", "seed", static_cast<int64_t>(r.seed));
  w.set_attr("/", "variant", r.variant);
  w.set_attr("/", "status", status_name(r.status));
  w.set_attr("/", "reason", r.reason);
  w.set_attr("/", "replay", "jambench compare -o '" + r.case_str + "'");
  write_outputs(w, "truth", truth);
  write_outputs(w, "lp", lp);
  write_outputs(w, "kernel", kernel);  // empty when the kernel threw before returning
  w.close();
  return path;
}

}  // namespace jb::cmp
