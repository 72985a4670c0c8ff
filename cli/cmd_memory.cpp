// `jambench memory`: weights / KV cache / Mamba state memory, the Jamba paper's Table 1 and the
// predicted Figure 2 (jamba-spec §6.1, §6.2), from the memory model in core/memory_model.hpp.
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "core/error.hpp"
#include "core/memory_model.hpp"
#include "core/result.hpp"

namespace jb::cli {

namespace {

const char* kMemoryHelp =
    "usage: jambench memory [options]\n"
    "\n"
    "Prints the Jamba paper's Table 1 (parameters and KV cache at 256K tokens, 16-bit) with our\n"
    "exact numbers next to the paper's, the Mamba state per sequence, and the predicted Figure 2\n"
    "(largest context on one GPU with int8 weights, one-shot and chunked prefill). Writes\n"
    "DIR/memory.json (result schema) and DIR/memory.md.\n"
    "\n"
    "options:\n"
    "  --out DIR          output directory (default out/)\n"
    "  --gpu-mem-gib X    GPU memory in GiB for Figure 2 (default 80)\n"
    "  --models A,B,...   presets or config paths for both tables (default: Llama-2-7B, "
    "Mistral-7B,\n"
    "                     Mixtral-8x7B, Jamba-v0.1, Jamba-1.5-Large, Llama-2-70B; Figure 2:\n"
    "                     Jamba-v0.1, Mixtral-8x7B, Llama-2-70B)\n"
    "  --chunk N          prefill chunk for the chunked column (default 8192)\n"
    "  --batch N          sequences for Figure 2 (default 1)\n"
    "  --reserved-gib X   reserved runtime overhead in GiB (default 1)\n"
    "  --help             this text\n";

std::vector<std::string> split_list(const std::vector<std::string>& values) {
  std::vector<std::string> out;
  for (const std::string& v : values) {
    size_t start = 0;
    while (start <= v.size()) {
      size_t comma = v.find(',', start);
      std::string item =
          v.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (!item.empty()) out.push_back(item);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  return out;
}

}  // namespace

// Shared with `jambench report`: parses the memory options out of `args`.
MemoryReportOptions memory_options_from(const Args& args) {
  MemoryReportOptions opt;
  opt.models = split_list(args.get_all("--models"));
  opt.gpu_mem_gib = args.get_double("--gpu-mem-gib", 80.0);
  opt.prefill_chunk = args.get_int("--chunk", 8192);
  opt.batch = args.get_int("--batch", 1);
  const double reserved_gib = args.get_double("--reserved-gib", 1.0);
  if (!(reserved_gib >= 0.0)) fail(ErrorKind::Usage, "--reserved-gib must be >= 0");
  opt.policy.reserved_bytes = static_cast<int64_t>(reserved_gib * 1073741824.0);
  if (opt.batch < 1) fail(ErrorKind::Usage, "--batch must be >= 1");
  return opt;
}

int cmd_memory(const Argv& argv) {
  Args args(argv, {"--out", "--gpu-mem-gib", "--models", "--chunk", "--batch", "--reserved-gib"},
            {"--help", "-h"});
  if (args.has("--help") || args.has("-h")) {
    std::fputs(kMemoryHelp, stdout);
    return 0;
  }
  if (!args.positional().empty())
    fail(ErrorKind::Usage, "unexpected argument '" + args.positional()[0] + "' (see --help)");
  std::vector<std::string> cmdline = {"jambench", "memory"};
  cmdline.insert(cmdline.end(), argv.begin(), argv.end());
  set_command_line(cmdline);

  const MemoryReportOptions opt = memory_options_from(args);
  const std::string out_dir = args.get("--out", "out/");
  const MemoryReport rep = memory_report(opt);

  ResultDoc doc = make_result("kv_memory", rep.section.data);
  doc.params.erase("models");
  for (const nlohmann::json& r : rep.results) doc.add_result(r);
  const std::string json_path = (std::filesystem::path(out_dir) / "memory.json").string();
  const std::string md_path = (std::filesystem::path(out_dir) / "memory.md").string();
  write_result(json_path, doc);
  Report report;
  report.sections.push_back(rep.section);
  write_text_file_atomic(md_path, report.to_markdown("jambench memory"));

  // stdout gets the tables and assumptions; the per-term breakdowns are in the Markdown file.
  std::printf("Table 1 (Jamba paper): parameters and KV cache at 256K tokens, 16-bit\n\n%s\n",
              rep.table1_markdown.c_str());
  std::printf("Figure 2 (predicted): largest context on one %.0f GiB GPU, int8 weights\n\n%s\n",
              opt.gpu_mem_gib, rep.figure2_markdown.c_str());
  std::printf("Assumptions:\n%s\n", rep.assumptions_markdown.c_str());
  std::printf("wrote %s and %s\n", json_path.c_str(), md_path.c_str());
  return 0;
}

}  // namespace jb::cli
