// `jambench generate`: greedy generation on the Eigen CPU reference (reference/model.hpp) from a
// checkpoint directory, a config.json, or a preset with seeded random weights.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "core/config.hpp"
#include "core/error.hpp"
#include "core/result.hpp"
#include "core/weights.hpp"
#include "reference/model.hpp"

namespace jb::cli {

namespace {

const char* kGenerateHelp =
    "usage: jambench generate --model DIR_OR_PRESET --prompt-ids 1,2,3 [options]\n"
    "\n"
    "Greedy decoding (argmax, ties to the lowest id) of a model on the CPU reference: prefill of\n"
    "the prompt, then one token per step with the KV / Mamba caches. Prints the new token ids and\n"
    "optionally writes a JSON result.\n"
    "\n"
    "options:\n"
    "  --model M            checkpoint directory (config.json + safetensors), a config.json path\n"
    "                       (weights from its directory), or a preset name (random weights)\n"
    "  --prompt-ids LIST    comma-separated token ids of the prompt (required)\n"
    "  --max-new-tokens N   tokens to generate (default 16)\n"
    "  --seed S             seed of the random weights for presets (default 0)\n"
    "  --dtype fp32|fp64    reference precision (default fp32)\n"
    "  --out FILE           write the result JSON there\n"
    "  --help               this text\n";

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = text.find(',', start);
    const std::string item =
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || v < 0 || v > INT32_MAX)
      fail(ErrorKind::Usage, "--prompt-ids: '" + item + "' is not a token id");
    ids.push_back(static_cast<int32_t>(v));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return ids;
}

// Refuses models whose fp32 weights plus the typed copy would not fit in this machine's memory
// (e.g. a random-weight jamba-v0.1 needs ~400 GB), instead of dying in the allocator.
void check_host_memory(const ModelConfig& c, int64_t bytes_per_value) {
  int64_t values = 0;
  for (const TensorSpec& s : expected_tensors(c)) values += shape_numel(s.shape);
  const int64_t need = values * (4 + bytes_per_value);
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && page > 0 && need > static_cast<int64_t>(pages) * page)
    fail(ErrorKind::OutOfMemory, "model " + c.name + " has " + std::to_string(values) +
                                     " weights: the CPU reference needs " +
                                     std::to_string(need >> 20) + " MiB, this machine has " +
                                     std::to_string((static_cast<int64_t>(pages) * page) >> 20) +
                                     " MiB");
}

template <class T>
std::vector<int32_t> run_generate(const ModelConfig& c, const WeightStore& ws,
                                  const std::vector<int32_t>& prompt, int64_t n_new) {
  const ref::Model<T> model(c, ref::make_model_weights<T>(ws, c));
  return model.generate_greedy(prompt, n_new);
}

std::string join_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s;
}

}  // namespace

int cmd_generate(const Argv& argv) {
  Args args(argv, {"--model", "--prompt-ids", "--max-new-tokens", "--seed", "--dtype", "--out"},
            {"--help", "-h"});
  if (args.has("--help") || args.has("-h")) {
    std::fputs(kGenerateHelp, stdout);
    return 0;
  }
  if (!args.positional().empty())
    fail(ErrorKind::Usage, "unexpected argument '" + args.positional()[0] + "' (see --help)");
  if (!args.has("--model")) fail(ErrorKind::Usage, "--model is required (see --help)");
  if (!args.has("--prompt-ids")) fail(ErrorKind::Usage, "--prompt-ids is required (see --help)");
  std::vector<std::string> cmdline = {"jambench", "generate"};
  cmdline.insert(cmdline.end(), argv.begin(), argv.end());
  set_command_line(cmdline);

  const std::string model_arg = args.get("--model");
  const std::vector<int32_t> prompt = parse_ids(args.get("--prompt-ids"));
  const int64_t n_new = args.get_int("--max-new-tokens", 16);
  if (n_new < 0) fail(ErrorKind::Usage, "--max-new-tokens must be >= 0");
  const int64_t seed_arg = args.get_int("--seed", 0);
  if (seed_arg < 0) fail(ErrorKind::Usage, "--seed must be >= 0");
  const uint64_t seed = static_cast<uint64_t>(seed_arg);
  const std::string dtype = args.get("--dtype", "fp32");
  if (dtype != "fp32" && dtype != "fp64")
    fail(ErrorKind::Usage, "--dtype must be fp32 or fp64, not '" + dtype + "'");

  const ModelConfig c = resolve_model(model_arg);
  for (int32_t id : prompt)
    if (id >= c.vocab_size)
      fail(ErrorKind::Usage, "--prompt-ids: token " + std::to_string(id) +
                                 " is outside the vocabulary of " + std::to_string(c.vocab_size));
  check_host_memory(c, dtype == "fp64" ? 8 : 4);

  // A directory or a config.json file: real weights next to it; otherwise a preset name.
  namespace fs = std::filesystem;
  std::error_code ec;
  std::string weights_source;
  WeightStore ws;
  if (fs::is_directory(model_arg, ec)) {
    ws = load_checkpoint(model_arg, c);
    weights_source = "checkpoint";
  } else if (fs::is_regular_file(model_arg, ec)) {
    const fs::path dir = fs::path(model_arg).parent_path();
    ws = load_checkpoint(dir.empty() ? std::string(".") : dir.string(), c);
    weights_source = "checkpoint";
  } else {
    set_run_seed(seed);
    ws = random_weights(c, seed);
    weights_source = "random";
  }

  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<int32_t> out = dtype == "fp64" ? run_generate<double>(c, ws, prompt, n_new)
                                                   : run_generate<float>(c, ws, prompt, n_new);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::printf("%s\n", join_ids(out).c_str());
  std::fprintf(stderr, "generated %zu tokens with %s (%s weights%s, %s reference) in %.3f s\n",
               out.size(), c.name.c_str(), weights_source.c_str(),
               weights_source == "random" ? (", seed " + std::to_string(seed)).c_str() : "",
               dtype.c_str(), seconds);

  if (args.has("--out")) {
    nlohmann::json params = {{"prompt_ids", prompt},
                             {"max_new_tokens", n_new},
                             {"dtype", dtype},
                             {"decoding", "greedy"},
                             {"engine", "cpu_reference"}};
    ResultDoc doc = make_result("generate", params);
    doc.model = {{"name", c.name},
                 {"source", model_arg},
                 {"weights", weights_source},
                 {"config", nlohmann::json::parse(config_to_json(c))}};
    if (weights_source == "random") doc.model["seed"] = seed;
    doc.add_result({{"new_ids", out},
                    {"n_new", static_cast<int64_t>(out.size())},
                    {"seconds", json_number(seconds)}});
    write_result(args.get("--out"), doc);
    std::fprintf(stderr, "wrote %s\n", args.get("--out").c_str());
  }
  return 0;
}

}  // namespace jb::cli
