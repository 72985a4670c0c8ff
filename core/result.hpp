// One JSON result document per run, shared by every harness (ecosystem.md §3.6), with the run
// metadata of ecosystem.md §5.4, plus the small Markdown helpers the reports use.
//
//   {schema_version, run, device, model, benchmark: {kind, params}, results: [...], status, error}
//
// JSON has no NaN or infinity, and nlohmann::json writes both as null, which would hide a failed
// metric. Every number therefore goes through json_number(), and write_result() replaces any
// non-finite double that slipped in with the same strings ("nan", "inf", "-inf").
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace jb {

inline constexpr int kResultSchemaVersion = 1;

// Finite -> number; NaN -> "nan"; +inf -> "inf"; -inf -> "-inf".
nlohmann::json json_number(double v);
// Replaces every non-finite floating-point value inside `j` (recursively) as json_number does.
// Returns how many values were replaced.
int64_t sanitize_nonfinite(nlohmann::json& j);

// ---- run metadata (ecosystem.md §5.4) -------------------------------------------------------
const char* build_git_sha();  // baked in at configure time (core/metadata.cpp); "unknown" if none
bool build_git_dirty();
// Recorded in run.command_line; cli/main or a harness sets it once at start-up.
void set_command_line(const std::vector<std::string>& argv);
void set_command_line(int argc, char** argv);
// Recorded in run.seed (null until set).
void set_run_seed(uint64_t seed);
// Device information comes from the CUDA library, which core must not depend on: it registers a
// provider at start-up. Without one, "device" is {"present": false}.
void set_device_info_provider(std::function<nlohmann::json()> provider);
nlohmann::json device_info();
// {git_sha, git_dirty, build_type, compiler, cxx_flags, libraries, env, hostname, seed,
//  time_utc, command_line, cuda_build}
nlohmann::json run_metadata();
std::string utc_timestamp();  // ISO-8601, e.g. 2025-01-31T12:00:00Z

// ---- result document -----------------------------------------------------------------------
struct ResultDoc {
  int schema_version = kResultSchemaVersion;
  nlohmann::json run;                                // run_metadata()
  nlohmann::json device;                             // device_info()
  nlohmann::json model = nlohmann::json::object();   // config, sha256, dtype, quantization
  std::string kind;                                  // benchmark.kind
  nlohmann::json params = nlohmann::json::object();  // benchmark.params
  nlohmann::json results = nlohmann::json::array();  // one object per measurement
  std::string status = "ok";                         // ok | fail | error | skipped
  std::string error;                                 // message when status is error

  void add_result(nlohmann::json r) { results.push_back(std::move(r)); }
  nlohmann::json to_json() const;  // non-finite numbers already replaced
};

// Fills run and device metadata now.
ResultDoc make_result(const std::string& kind, nlohmann::json params = nlohmann::json::object());
// Writes doc.to_json() (indent 2) atomically: temporary file in the same directory, then rename.
// Creates the parent directory. Throws Error{Io}.
void write_result(const std::string& path, const ResultDoc& doc);
void write_text_file_atomic(const std::string& path, const std::string& text);

// ---- Markdown ---------------------------------------------------------------------------------
class MarkdownTable {
 public:
  // align: one of 'l', 'r', 'c' per column ('l' when not given).
  explicit MarkdownTable(std::vector<std::string> header, std::string align = "");
  MarkdownTable& add_row(std::vector<std::string> cells);  // Error{Internal} on wrong width
  std::string str() const;
  size_t rows() const { return rows_.size(); }

 private:
  std::vector<std::string> header_;
  std::string align_;
  std::vector<std::vector<std::string>> rows_;
};

std::string format_int(int64_t v);                 // 51,570,323,328
std::string format_fixed(double v, int decimals);  // 3.14; "nan" / "inf" when not finite
std::string format_bytes_gib(int64_t bytes, int decimals = 2);  // "4.00 GiB"
std::string format_bytes_auto(int64_t bytes);                   // B / KiB / MiB / GiB
std::string format_tokens(int64_t tokens);                      // 140K style (tokens / 1024)

// ---- reports: a list of sections that harnesses append to -------------------------------------
struct ReportSection {
  std::string id;        // "memory", "throughput", ...
  std::string title;     // "Memory: paper Table 1 and Figure 2"
  std::string markdown;  // body, without the title line
  nlohmann::json data = nlohmann::json::object();
};

struct Report {
  std::vector<ReportSection> sections;
  std::string to_markdown(const std::string& title) const;
  nlohmann::json to_json() const;  // [{id, title, data}, ...]
};

}  // namespace jb
