// One function per `jambench` subcommand, each in cli/cmd_<name>.cpp. Each takes the arguments
// after the subcommand name, prints a short human summary, writes its JSON result, and returns
// the exit code (errors are thrown as jb::Error and printed as one line by main).
#pragma once
#include <string>
#include <vector>

namespace jb::cli {

using Argv = std::vector<std::string>;

struct Command {
  const char* name;
  const char* summary;
  int (*run)(const Argv& args);
};

int cmd_memory(const Argv& args);    // KV/state/weight memory, Table 1, predicted Figure 2
int cmd_report(const Argv& args);    // the main job: everything this machine can run
int cmd_generate(const Argv& args);  // greedy generation of a checkpoint on the CPU reference
int cmd_compare(const Argv& args);   // CUDA vs reference over the op registry

const std::vector<Command>& commands();

}  // namespace jb::cli
