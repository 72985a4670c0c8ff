// Result schema (ecosystem.md §3.6), run metadata (§5.4), NaN handling, atomic writes, Markdown.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include <gtest/gtest.h>

#include "core/error.hpp"
#include "core/result.hpp"

namespace jb {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::path temp_dir(const std::string& tag) {
  fs::path d =
      fs::temp_directory_path() / ("jb_test_result_" + tag + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d;
}

TEST(JsonNumber, NonFiniteBecomeStrings) {
  EXPECT_EQ(json_number(1.5), json(1.5));
  EXPECT_EQ(json_number(std::nan("")), json("nan"));
  EXPECT_EQ(json_number(std::numeric_limits<double>::infinity()), json("inf"));
  EXPECT_EQ(json_number(-std::numeric_limits<double>::infinity()), json("-inf"));
  // nlohmann itself would write null: the reason this helper exists.
  EXPECT_EQ(json(std::nan("")).dump(), "null");
}

TEST(ResultDoc, WriterNeverTurnsNanIntoNull) {
  ResultDoc doc = make_result("kernel_check", {{"op", "selective_scan"}});
  doc.add_result({{"max_abs_err", std::nan("")},
                  {"nested", {{"list", {1.0, std::numeric_limits<double>::infinity()}}}},
                  {"ok", json_number(0.25)}});
  const fs::path dir = temp_dir("nan");
  const fs::path path = dir / "sub" / "result.json";
  write_result(path.string(), doc);
  const std::string text = read_file(path);
  const json back = json::parse(text);
  EXPECT_EQ(back["results"].dump().find("null"), std::string::npos) << text;
  EXPECT_EQ(back["results"][0]["max_abs_err"], "nan");
  EXPECT_EQ(back["results"][0]["nested"]["list"][1], "inf");
  EXPECT_EQ(back["results"][0]["ok"], 0.25);
  // No temporary left behind.
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir / "sub")) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1);
  fs::remove_all(dir);
}

TEST(ResultDoc, SchemaAndMetadataFields) {
  set_run_seed(1234);
  set_command_line({"jambench", "memory", "--out", "x"});
  ResultDoc doc = make_result("kv_memory", {{"batch", 1}});
  const json j = doc.to_json();
  for (const char* key :
       {"schema_version", "run", "device", "model", "benchmark", "results", "status", "error"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["schema_version"], kResultSchemaVersion);
  EXPECT_EQ(j["benchmark"]["kind"], "kv_memory");
  EXPECT_EQ(j["benchmark"]["params"]["batch"], 1);
  EXPECT_EQ(j["status"], "ok");
  EXPECT_TRUE(j["error"].is_null());
  const json& run = j["run"];
  for (const char* key : {"git_sha", "git_dirty", "build_type", "compiler", "libraries", "env",
                          "hostname", "seed", "time_utc", "command_line", "cuda_build"})
    EXPECT_TRUE(run.contains(key)) << key;
  EXPECT_TRUE(run["git_sha"].is_string());
  EXPECT_FALSE(run["git_sha"].get<std::string>().empty());
  EXPECT_TRUE(run["git_dirty"].is_boolean());
  EXPECT_EQ(run["seed"], 1234);
  EXPECT_EQ(run["command_line"][1], "memory");
  for (const char* var : {"CUDA_VISIBLE_DEVICES", "CUBLAS_WORKSPACE_CONFIG", "NVIDIA_TF32_OVERRIDE",
                          "OMP_NUM_THREADS"})
    EXPECT_TRUE(run["env"].contains(var)) << var;
  for (const char* lib : {"eigen", "hdf5", "nlohmann_json"})
    EXPECT_TRUE(run["libraries"][lib].is_string()) << lib;
  EXPECT_EQ(run["libraries"]["eigen"].get<std::string>().rfind("3.", 0), 0u);
  // ISO-8601 UTC: 2025-01-31T12:00:00Z
  const std::string t = run["time_utc"];
  ASSERT_EQ(t.size(), 20u) << t;
  EXPECT_EQ(t[4], '-');
  EXPECT_EQ(t[10], 'T');
  EXPECT_EQ(t[19], 'Z');
  // Without a registered provider the device is absent.
  EXPECT_EQ(j["device"]["present"], false);
}

TEST(ResultDoc, DeviceProviderIsUsedAndFailuresRecorded) {
  set_device_info_provider([] { return json{{"present", true}, {"name", "Fake GPU"}}; });
  EXPECT_EQ(make_result("x").device["name"], "Fake GPU");
  set_device_info_provider([]() -> json { throw std::runtime_error("no driver"); });
  const json d = make_result("x").device;
  EXPECT_EQ(d["present"], false);
  EXPECT_EQ(d["error"], "no driver");
  set_device_info_provider(nullptr);
  EXPECT_EQ(make_result("x").device["present"], false);
}

TEST(WriteResult, UnwritableDirectoryIsIoError) {
  try {
    write_text_file_atomic("/proc/definitely/not/here.json", "{}");
    FAIL() << "wrote to /proc";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Io);
  }
}

TEST(Markdown, TableAndFormatting) {
  MarkdownTable t({"model", "params"}, "lr");
  t.add_row({"jamba", "52B"}).add_row({"a|b", "1"});
  const std::string s = t.str();
  EXPECT_NE(s.find("| model | params |"), std::string::npos) << s;
  EXPECT_NE(s.find("| ----- | -----: |"), std::string::npos) << s;
  EXPECT_NE(s.find("a\\|b"), std::string::npos) << s;
  EXPECT_THROW(t.add_row({"only one"}), Error);
  EXPECT_EQ(format_int(51570323328), "51,570,323,328");
  EXPECT_EQ(format_int(-1000), "-1,000");
  EXPECT_EQ(format_int(999), "999");
  EXPECT_EQ(format_bytes_gib(int64_t{4} << 30), "4.00 GiB");
  EXPECT_EQ(format_fixed(std::nan(""), 2), "nan");
  EXPECT_EQ(format_tokens(143360), "140.0K");
}

TEST(Report, SectionsInOrder) {
  Report r;
  r.sections.push_back({"a", "First", "body one\n", {{"x", 1}}});
  r.sections.push_back({"b", "Second", "body two", json::object()});
  const std::string md = r.to_markdown("Title");
  EXPECT_EQ(md.rfind("# Title\n", 0), 0u);
  EXPECT_LT(md.find("## First"), md.find("## Second"));
  const json j = r.to_json();
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["id"], "a");
  EXPECT_EQ(j[0]["data"]["x"], 1);
}

}  // namespace
}  // namespace jb
