// `jambench report`: the main job. Runs every section this machine can run and writes
// DIR/report.md and DIR/report.json. Sections are a list: a later harness adds one entry to
// report_sections() (a builder returning its ReportSection, or nothing when it cannot run here).
#include <cstdio>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "core/error.hpp"
#include "core/memory_model.hpp"
#include "core/result.hpp"

namespace jb::cli {

MemoryReportOptions memory_options_from(const Args& args);  // cli/cmd_memory.cpp

namespace {

const char* kReportHelp =
    "usage: jambench report [options]\n"
    "\n"
    "Runs what this machine can run and writes DIR/report.md and DIR/report.json. Sections:\n"
    "  memory   paper Table 1, Mamba state, predicted Figure 2 (always)\n"
    "\n"
    "options:\n"
    "  --out DIR          output directory (default out/)\n"
    "  --gpu-mem-gib X    GPU memory in GiB for the memory section (default 80)\n"
    "  --models A,B,...   models for the memory section (see jambench memory --help)\n"
    "  --chunk N          prefill chunk for the chunked max-context column (default 8192)\n"
    "  --help             this text\n";

struct ReportContext {
  const Args& args;
  std::vector<nlohmann::json> results;  // appended to report.json results[]
  std::string summary;                  // printed to stdout after the run
};

struct SectionBuilder {
  const char* id;
  std::function<std::optional<ReportSection>(ReportContext&)> build;
};

const std::vector<SectionBuilder>& report_sections() {
  static const std::vector<SectionBuilder> builders = {
      {"memory",
       [](ReportContext& ctx) -> std::optional<ReportSection> {
         const MemoryReport rep = memory_report(memory_options_from(ctx.args));
         for (const nlohmann::json& r : rep.results) ctx.results.push_back(r);
         ctx.summary += "Table 1 (Jamba paper; ours vs paper):\n\n" + rep.table1_markdown +
                        "\nPredicted Figure 2 (largest context, int8 weights):\n\n" +
                        rep.figure2_markdown + "\n";
         return rep.section;
       }},
  };
  return builders;
}

}  // namespace

int cmd_report(const Argv& argv) {
  Args args(argv, {"--out", "--gpu-mem-gib", "--models", "--chunk"}, {"--help", "-h"});
  if (args.has("--help") || args.has("-h")) {
    std::fputs(kReportHelp, stdout);
    return 0;
  }
  if (!args.positional().empty())
    fail(ErrorKind::Usage, "unexpected argument '" + args.positional()[0] + "' (see --help)");
  std::vector<std::string> cmdline = {"jambench", "report"};
  cmdline.insert(cmdline.end(), argv.begin(), argv.end());
  set_command_line(cmdline);
  const std::string out_dir = args.get("--out", "out/");

  ReportContext ctx{args, {}, {}};
  Report report;
  std::vector<std::string> ran;
  for (const SectionBuilder& b : report_sections()) {
    std::optional<ReportSection> s = b.build(ctx);
    if (!s) continue;
    report.sections.push_back(std::move(*s));
    ran.push_back(b.id);
  }

  ResultDoc doc = make_result("report", {{"sections", ran},
                                         {"out", out_dir},
                                         {"gpu_mem_gib", args.get_double("--gpu-mem-gib", 80.0)}});
  for (nlohmann::json& r : ctx.results) doc.add_result(std::move(r));
  nlohmann::json j = doc.to_json();
  j["sections"] = report.to_json();
  sanitize_nonfinite(j);
  const std::string json_path = (std::filesystem::path(out_dir) / "report.json").string();
  const std::string md_path = (std::filesystem::path(out_dir) / "report.md").string();
  write_text_file_atomic(json_path, j.dump(2) + "\n");
  write_text_file_atomic(md_path, report.to_markdown("jambench report"));

  std::printf("%s", ctx.summary.c_str());
  std::printf("wrote %s and %s (sections: ", md_path.c_str(), json_path.c_str());
  for (size_t i = 0; i < ran.size(); ++i) std::printf("%s%s", i ? ", " : "", ran[i].c_str());
  std::printf(")\n");
  return 0;
}

}  // namespace jb::cli
