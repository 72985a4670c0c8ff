// jambench: one program, one subcommand per harness (design.md "One command-line program").
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "core/error.hpp"
#if defined(JAMBENCH_HAVE_CUDA)
#include "cuda/common.cuh"
#endif

namespace jb::cli {

const std::vector<Command>& commands() {
  static const std::vector<Command> cmds = {
      {"report", "run what this machine can run and write the report (default: memory report)",
       cmd_report},
      {"memory", "weights / KV cache / Mamba state memory, paper Table 1 and predicted Figure 2",
       cmd_memory},
      {"generate", "greedy generation of a checkpoint directory on the CPU reference",
       cmd_generate},
      {"compare", "check CUDA components against the reference (the op registry)", cmd_compare},
  };
  return cmds;
}

static void print_usage() {
  std::printf("usage: jambench <command> [options]   (jambench <command> --help for details)\n\n");
  for (const Command& c : commands()) std::printf("  %-10s %s\n", c.name, c.summary);
}

}  // namespace jb::cli

int main(int argc, char** argv) {
  using namespace jb::cli;
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    print_usage();
    return argc < 2 ? 2 : 0;
  }
#if defined(JAMBENCH_HAVE_CUDA)
  jb::cuda::register_device_info();  // GPU name, memory and clocks in every result's metadata
#endif
  const std::string name = argv[1];
  Argv rest(argv + 2, argv + argc);
  for (const Command& c : commands()) {
    if (name != c.name) continue;
    try {
      return c.run(rest);
    } catch (const jb::Error& e) {
      std::fprintf(stderr, "jambench %s: %s error: %s\n", c.name, jb::error_kind_name(e.kind()),
                   e.what());
      return jb::error_exit_code(e.kind());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "jambench %s: error: %s\n", c.name, e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "jambench: unknown command '%s' (jambench --help lists them)\n",
               name.c_str());
  return 2;
}
