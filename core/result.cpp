// Result documents, run metadata, atomic writes and Markdown helpers (ecosystem.md §3.6, §5.4).
#include "core/result.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>

#include <hdf5.h>
#include <Eigen/Core>

#include "core/error.hpp"

namespace jb {

using json = nlohmann::json;

json json_number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return v;
}

int64_t sanitize_nonfinite(json& j) {
  int64_t replaced = 0;
  if (j.is_number_float()) {
    const double v = j.get<double>();
    if (!std::isfinite(v)) {
      j = json_number(v);
      ++replaced;
    }
  } else if (j.is_object() || j.is_array()) {
    for (json& child : j) replaced += sanitize_nonfinite(child);
  }
  return replaced;
}

// ---- run metadata -----------------------------------------------------------------------------
namespace {

struct MetadataState {
  std::mutex mutex;
  std::vector<std::string> command_line;
  std::optional<uint64_t> seed;
  std::function<json()> device_provider;
};

MetadataState& state() {
  static MetadataState s;
  return s;
}

json env_or_null(const char* name) {
  const char* v = std::getenv(name);
  return v ? json(v) : json(nullptr);
}

std::string compiler_id() {
#if defined(__clang__)
  return "clang";
#elif defined(__GNUC__)
  return "gcc";
#else
  return "unknown";
#endif
}

}  // namespace

void set_command_line(const std::vector<std::string>& argv) {
  std::lock_guard<std::mutex> lock(state().mutex);
  state().command_line = argv;
}

void set_command_line(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 0; i < argc; ++i) args.emplace_back(argv[i] ? argv[i] : "");
  set_command_line(args);
}

void set_run_seed(uint64_t seed) {
  std::lock_guard<std::mutex> lock(state().mutex);
  state().seed = seed;
}

void set_device_info_provider(std::function<json()> provider) {
  std::lock_guard<std::mutex> lock(state().mutex);
  state().device_provider = std::move(provider);
}

json device_info() {
  std::function<json()> provider;
  {
    std::lock_guard<std::mutex> lock(state().mutex);
    provider = state().device_provider;
  }
  if (!provider) return json{{"present", false}};
  try {
    json d = provider();
    if (!d.is_object())
      return json{{"present", false}, {"error", "device provider returned non-object"}};
    return d;
  } catch (const std::exception& e) {
    // Metadata must never stop a run from writing its result; record why it is missing.
    return json{{"present", false}, {"error", e.what()}};
  }
}

std::string utc_timestamp() {
  std::time_t now = std::time(nullptr);
  std::tm tm_utc{};
  gmtime_r(&now, &tm_utc);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm_utc);
  return buf;
}

json run_metadata() {
  json run;
  run["git_sha"] = build_git_sha();
  run["git_dirty"] = build_git_dirty();
  // CMAKE_BUILD_TYPE is not passed to the sources; what matters for the numbers is whether the
  // code was optimised, has assertions, or was built with fast-math (the reference must not be).
#if defined(__OPTIMIZE__) && defined(NDEBUG)
  run["build_type"] = "Release";
#elif defined(__OPTIMIZE__)
  run["build_type"] = "RelWithAssertions";
#else
  run["build_type"] = "Debug";
#endif
#if defined(__FAST_MATH__)
  const bool fast_math = true;
#else
  const bool fast_math = false;
#endif
  run["compiler"] = {{"id", compiler_id()}, {"version", __VERSION__}, {"cplusplus", __cplusplus}};
  run["flags"] = {
    {"fast_math", fast_math},
#if defined(__OPTIMIZE__)
    {"optimize", true},
#else
    {"optimize", false},
#endif
    {"fp_contract", "off"}
  };
#if defined(JAMBENCH_HAVE_CUDA)
  run["cuda_build"] = true;
#else
  run["cuda_build"] = false;
#endif
  unsigned h5_major = 0, h5_minor = 0, h5_release = 0;
  H5get_libversion(&h5_major, &h5_minor, &h5_release);
  run["libraries"] = {
      {"eigen", std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) +
                    "." + std::to_string(EIGEN_MINOR_VERSION)},
      {"hdf5", std::to_string(h5_major) + "." + std::to_string(h5_minor) + "." +
                   std::to_string(h5_release)},
      {"nlohmann_json", std::to_string(NLOHMANN_JSON_VERSION_MAJOR) + "." +
                            std::to_string(NLOHMANN_JSON_VERSION_MINOR) + "." +
                            std::to_string(NLOHMANN_JSON_VERSION_PATCH)},
  };
  run["env"] = {{"CUDA_VISIBLE_DEVICES", env_or_null("CUDA_VISIBLE_DEVICES")},
                {"CUBLAS_WORKSPACE_CONFIG", env_or_null("CUBLAS_WORKSPACE_CONFIG")},
                {"NVIDIA_TF32_OVERRIDE", env_or_null("NVIDIA_TF32_OVERRIDE")},
                {"OMP_NUM_THREADS", env_or_null("OMP_NUM_THREADS")}};
  char host[256] = {0};
  run["hostname"] = gethostname(host, sizeof host - 1) == 0 ? json(host) : json(nullptr);
  {
    std::lock_guard<std::mutex> lock(state().mutex);
    run["seed"] = state().seed ? json(*state().seed) : json(nullptr);
    run["command_line"] = state().command_line;
  }
  run["time_utc"] = utc_timestamp();
  return run;
}

// ---- result document --------------------------------------------------------------------------

json ResultDoc::to_json() const {
  json j;
  j["schema_version"] = schema_version;
  j["run"] = run;
  j["device"] = device;
  j["model"] = model;
  j["benchmark"] = {{"kind", kind}, {"params", params}};
  j["results"] = results;
  j["status"] = status;
  j["error"] = error.empty() ? json(nullptr) : json(error);
  sanitize_nonfinite(j);
  return j;
}

ResultDoc make_result(const std::string& kind, json params) {
  ResultDoc doc;
  doc.kind = kind;
  doc.params = params.is_null() ? json::object() : std::move(params);
  doc.run = run_metadata();
  doc.device = device_info();
  return doc;
}

void write_text_file_atomic(const std::string& path, const std::string& text) {
  namespace fs = std::filesystem;
  fs::path target(path);
  std::error_code ec;
  if (target.has_parent_path()) {
    fs::create_directories(target.parent_path(), ec);
    if (ec)
      fail(ErrorKind::Io,
           "cannot create directory '" + target.parent_path().string() + "': " + ec.message());
  }
  // Same directory, so the rename stays on one file system and is atomic; pid keeps concurrent
  // writers of the same file from sharing a temporary.
  const std::string tmp = path + ".tmp." + std::to_string(static_cast<long>(getpid()));
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(ErrorKind::Io, "cannot write '" + tmp + "'");
    out << text;
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      fail(ErrorKind::Io, "write failed for '" + tmp + "' (disk full?)");
    }
  }
  fs::rename(tmp, target, ec);
  if (ec) {
    std::remove(tmp.c_str());
    fail(ErrorKind::Io, "cannot rename '" + tmp + "' to '" + path + "': " + ec.message());
  }
}

void write_result(const std::string& path, const ResultDoc& doc) {
  write_text_file_atomic(path, doc.to_json().dump(2) + "\n");
}

// ---- Markdown ---------------------------------------------------------------------------------

MarkdownTable::MarkdownTable(std::vector<std::string> header, std::string align)
    : header_(std::move(header)), align_(std::move(align)) {
  align_.resize(header_.size(), 'l');
}

MarkdownTable& MarkdownTable::add_row(std::vector<std::string> cells) {
  JB_CHECK(cells.size() == header_.size(), "Markdown row has " + std::to_string(cells.size()) +
                                               " cells, header has " +
                                               std::to_string(header_.size()));
  rows_.push_back(std::move(cells));
  return *this;
}

namespace {
std::string escape_cell(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '|')
      out += "\\|";
    else if (ch == '\n')
      out += ' ';
    else
      out += ch;
  }
  return out;
}
}  // namespace

std::string MarkdownTable::str() const {
  std::vector<size_t> width(header_.size(), 3);
  auto measure = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size(); ++i)
      width[i] = std::max(width[i], escape_cell(row[i]).size());
  };
  measure(header_);
  for (const auto& r : rows_) measure(r);
  auto line = [&](const std::vector<std::string>& row) {
    std::string s = "|";
    for (size_t i = 0; i < row.size(); ++i) {
      std::string cell = escape_cell(row[i]);
      std::string pad(width[i] - cell.size(), ' ');
      s += " " + (align_[i] == 'r' ? pad + cell : cell + pad) + " |";
    }
    return s + "\n";
  };
  std::string out = line(header_);
  out += "|";
  for (size_t i = 0; i < header_.size(); ++i) {
    std::string dashes(width[i], '-');
    if (align_[i] == 'r') dashes.back() = ':';
    if (align_[i] == 'c') dashes.front() = dashes.back() = ':';
    out += " " + dashes + " |";
  }
  out += "\n";
  for (const auto& r : rows_) out += line(r);
  return out;
}

std::string format_int(int64_t v) {
  const bool neg = v < 0;
  std::string digits = std::to_string(v);
  if (neg) digits.erase(0, 1);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return neg ? "-" + out : out;
}

std::string format_fixed(double v, int decimals) {
  if (!std::isfinite(v)) return json_number(v).get<std::string>();
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string format_bytes_gib(int64_t bytes, int decimals) {
  return format_fixed(static_cast<double>(bytes) / 1073741824.0, decimals) + " GiB";
}

std::string format_bytes_auto(int64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (bytes < 1024) return std::to_string(bytes) + " B";
  if (bytes < (int64_t{1} << 20)) return format_fixed(b / 1024.0, 2) + " KiB";
  if (bytes < (int64_t{1} << 30)) return format_fixed(b / 1048576.0, 2) + " MiB";
  return format_fixed(b / 1073741824.0, 2) + " GiB";
}

std::string format_tokens(int64_t tokens) {
  if (tokens >= 1024 * 1024) return format_fixed(tokens / 1048576.0, 2) + "M";
  if (tokens >= 1024) return format_fixed(tokens / 1024.0, 1) + "K";
  return std::to_string(tokens);
}

// ---- reports ----------------------------------------------------------------------------------

std::string Report::to_markdown(const std::string& title) const {
  std::string out = "# " + title + "\n\n";
  const json run = run_metadata();
  out += "Generated " + run["time_utc"].get<std::string>() + " by jambench at git " +
         std::string(build_git_sha()) + (build_git_dirty() ? " (dirty)" : "") + ", " +
         run["build_type"].get<std::string>() + " build.\n\n";
  for (const ReportSection& s : sections) {
    out += "## " + s.title + "\n\n" + s.markdown;
    if (!s.markdown.empty() && s.markdown.back() != '\n') out += "\n";
    out += "\n";
  }
  return out;
}

json Report::to_json() const {
  json arr = json::array();
  for (const ReportSection& s : sections)
    arr.push_back({{"id", s.id}, {"title", s.title}, {"data", s.data}});
  return arr;
}

}  // namespace jb
