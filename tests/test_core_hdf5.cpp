// HDF5 RAII layer (core/hdf5_io.hpp, ecosystem.md §4.3): round trips of every dataset type and
// attribute kind, nested group paths, atomic tmp+rename, and errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>

#include "core/bf16.hpp"
#include "core/error.hpp"
#include "core/hdf5_io.hpp"
#include "core/rng.hpp"

namespace fs = std::filesystem;
using jb::Error;
using jb::ErrorKind;

namespace {

void expect_error(const std::function<void()>& fn, ErrorKind kind,
                  std::initializer_list<std::string> substrings) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(jb::error_kind_name(e.kind())), jb::error_kind_name(kind)) << e.what();
    for (const std::string& s : substrings)
      EXPECT_NE(std::string(e.what()).find(s), std::string::npos)
          << "message '" << e.what() << "' lacks '" << s << "'";
    return;
  }
  ADD_FAILURE() << "no jb::Error thrown";
}

class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::path(testing::TempDir()) /
            ("jb_h2_h5_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

}  // namespace

TEST(Hdf5, RoundTripAllTypesAndAttributes) {
  TempDir dir;
  const std::string path = dir.file("dump.h5");
  std::vector<float> f32(2 * 3 * 4);
  for (size_t i = 0; i < f32.size(); ++i) f32[i] = jb::rng_normal(1, 2, i);
  const std::vector<double> f64 = {1.0 / 3.0, -2.5e-300, 1e300};
  const std::vector<int32_t> i32 = {-2147483647 - 1, 0, 7, 2147483647};
  const std::vector<int64_t> i64 = {INT64_MIN, -1, 0, INT64_MAX, 42, 43};
  std::vector<uint16_t> bf16(5);
  for (size_t i = 0; i < bf16.size(); ++i) bf16[i] = jb::float_to_bf16_bits(f32[i]);
  {
    jb::h5::Writer w(path);
    w.write_f32("/layer_07/mamba/ssm_state", {2, 3, 4}, f32.data());
    w.write_f64("/layer_07/mamba/dt", {3}, f64.data());
    w.write_i32("/tokens", {2, 2}, i32.data());
    w.write_i64("/meta/ids", {3, 2}, i64.data());
    w.write_bf16_bits("/layer_00/attn/out", {5}, bf16.data());
    const float scalar = 3.25f;
    w.write_f32("/scalar", {}, &scalar);
    w.write_f32("/empty", {0, 4}, nullptr);
    w.set_attr("/", "git_sha", "abc123");
    w.set_attr("/", "schema_version", 2);
    w.set_attr("/layer_07/mamba/ssm_state", "seed", int64_t{1234567890123});
    w.set_attr("/layer_07/mamba/ssm_state", "layout", "row-major");
    w.set_attr("/layer_07/mamba/dt", "tolerance", 1e-5);
    w.set_attr("/layer_07/mamba/dt", "tolerance", 2e-5);  // replaces
    w.set_attr("/layer_07", "kind", "group attribute");
    EXPECT_TRUE(fs::exists(path + ".tmp"));
    EXPECT_FALSE(fs::exists(path)) << "published only on close";
    w.close();
  }
  EXPECT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  jb::h5::Reader r(path);
  const auto a = r.read_f32("/layer_07/mamba/ssm_state");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(a.data, f32);
  const auto b = r.read_f64("/layer_07/mamba/dt");
  EXPECT_EQ(b.data, f64);
  EXPECT_EQ(r.read_i32("/tokens").data, i32);
  const auto ids = r.read_i64("/meta/ids");
  EXPECT_EQ(ids.shape, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(ids.data, i64);
  EXPECT_EQ(r.read_u16("/layer_00/attn/out").data, bf16);
  EXPECT_EQ(r.attr_string("/layer_00/attn/out", "source_dtype"), "bfloat16");
  const jb::Tensor t = r.read_tensor("/layer_00/attn/out");
  EXPECT_EQ(t.source_dtype, jb::Dtype::BF16);
  for (size_t i = 0; i < bf16.size(); ++i) EXPECT_EQ(t.data[i], jb::round_bf16(f32[i]));
  const auto s = r.read_f32("/scalar");
  EXPECT_TRUE(s.shape.empty());
  EXPECT_EQ(s.data, (std::vector<float>{3.25f}));
  const auto e = r.read_f32("/empty");
  EXPECT_EQ(e.shape, (std::vector<int64_t>{0, 4}));
  EXPECT_TRUE(e.data.empty());
  // f32 read of an f64 dataset converts (HDF5 does the rounding).
  EXPECT_EQ(r.read_f32("/layer_07/mamba/dt").data[0], static_cast<float>(1.0 / 3.0));

  EXPECT_EQ(r.attr_string("/", "git_sha"), "abc123");
  EXPECT_EQ(r.attr_i64("/", "schema_version"), 2);
  EXPECT_EQ(r.attr_i64("/layer_07/mamba/ssm_state", "seed"), 1234567890123);
  EXPECT_EQ(r.attr_string("/layer_07/mamba/ssm_state", "layout"), "row-major");
  EXPECT_EQ(r.attr_f64("/layer_07/mamba/dt", "tolerance"), 2e-5);
  EXPECT_EQ(r.attr_string("/layer_07", "kind"), "group attribute");
  EXPECT_TRUE(r.has_attr("/", "git_sha"));
  EXPECT_FALSE(r.has_attr("/", "nope"));

  EXPECT_TRUE(r.has("/layer_07/mamba/ssm_state"));
  EXPECT_TRUE(r.has("/layer_07"));
  EXPECT_FALSE(r.has("/layer_07/mamba/conv_state"));
  EXPECT_FALSE(r.has("/layer_99/mamba/ssm_state"));
  EXPECT_EQ(r.list("/"), (std::vector<std::string>{"empty", "layer_00", "layer_07", "meta",
                                                   "scalar", "tokens"}));
  EXPECT_EQ(r.list("/layer_07/mamba"), (std::vector<std::string>{"dt", "ssm_state"}));
}

TEST(Hdf5, TensorHelper) {
  TempDir dir;
  const std::string path = dir.file("t.h5");
  jb::Tensor t({3, 2});
  for (int64_t i = 0; i < t.numel(); ++i) t.data[i] = 0.5f * static_cast<float>(i);
  {
    jb::h5::Writer w(path);
    w.write_tensor("/logits", t);
  }  // the destructor commits when no exception is in flight
  jb::h5::Reader r(path);
  const jb::Tensor back = r.read_tensor("/logits");
  EXPECT_EQ(back.shape, t.shape);
  EXPECT_EQ(back.data, t.data);
}

TEST(Hdf5, ExceptionWhileWritingLeavesNoFile) {
  TempDir dir;
  const std::string path = dir.file("abandoned.h5");
  try {
    jb::h5::Writer w(path);
    const float v = 1.0f;
    w.write_f32("/x", {1}, &v);
    throw std::runtime_error("simulated failure");
  } catch (const std::runtime_error&) {
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST(Hdf5, Errors) {
  TempDir dir;
  expect_error([&] { jb::h5::Reader r(dir.file("missing.h5")); }, ErrorKind::Io, {"missing.h5"});
  { std::ofstream(dir.file("not.h5")) << "this is not an HDF5 file"; }
  expect_error([&] { jb::h5::Reader r(dir.file("not.h5")); }, ErrorKind::Io, {"not.h5"});
  expect_error([&] { jb::h5::Writer w(dir.file("no_such_dir/x.h5")); }, ErrorKind::Io,
               {"no_such_dir/x.h5.tmp"});

  const std::string path = dir.file("e.h5");
  {
    jb::h5::Writer w(path);
    const float v[2] = {1, 2};
    const int32_t k[2] = {1, 2};
    w.write_f32("/a/x", {2}, v);
    w.write_i32("/a/k", {2}, k);
    expect_error([&] { w.write_f32("/a/x", {2}, v); }, ErrorKind::Io, {"/a/x", "exists"});
    expect_error([&] { w.set_attr("/nope", "k", "v"); }, ErrorKind::Io, {"/nope"});
    expect_error([&] { w.write_f32("/neg", {-1}, v); }, ErrorKind::Shape, {"negative"});
    w.close();
    expect_error([&] { w.write_f32("/late", {2}, v); }, ErrorKind::Internal, {"after close"});
  }
  jb::h5::Reader r(path);
  expect_error([&] { r.read_f32("/a/missing"); }, ErrorKind::Io, {"/a/missing", "e.h5"});
  expect_error([&] { r.read_i32("/a/x"); }, ErrorKind::Format, {"/a/x", "integer"});
  expect_error([&] { r.read_f32("/a/k"); }, ErrorKind::Format, {"/a/k", "floating-point"});
  expect_error([&] { r.attr_string("/a/x", "nope"); }, ErrorKind::Format, {"nope"});
}

// h5py readability (ecosystem.md §4.3): checked only where python3 with h5py is installed.
TEST(Hdf5, ReadableByH5py) {
  std::string python;
  for (const char* py : {"python3", "/usr/bin/python3"})
    if (std::system((std::string(py) + " -c 'import h5py' >/dev/null 2>&1").c_str()) == 0) {
      python = py;
      break;
    }
  if (python.empty()) GTEST_SKIP() << "no python3 with h5py installed";
  TempDir dir;
  const std::string path = dir.file("py.h5");
  {
    jb::h5::Writer w(path);
    const float v[4] = {1.5f, -2.0f, 0.25f, 8.0f};
    const uint16_t b[2] = {0x3f80, 0xc000};
    w.write_f32("/layer_07/mamba/ssm_state", {2, 2}, v);
    w.write_bf16_bits("/w", {2}, b);
    w.set_attr("/", "git_sha", "abc");
  }
  const std::string script = dir.file("check.py");
  std::ofstream(script) << "import h5py, sys\n"
                           "f = h5py.File(sys.argv[1], 'r')\n"
                           "x = f['/layer_07/mamba/ssm_state'][...]\n"
                           "assert x.dtype.str == '<f4', x.dtype\n"
                           "assert x.shape == (2, 2) and x[1, 0] == 0.25, x\n"
                           "assert f['/w'].dtype.str == '<u2'\n"
                           "assert f['/w'].attrs['source_dtype'] == 'bfloat16'\n"
                           "assert f.attrs['git_sha'] == 'abc'\n";
  EXPECT_EQ(std::system((python + " " + script + " " + path).c_str()), 0);
}

// A file written by h5py (tools/make_goldens.py), not by us.
TEST(Hdf5, ReadsH5pyWrittenGolden) {
  const std::string path = std::string(JB_TEST_DATA_DIR) + "/goldens/jamba-tiny-a/golden.h5";
  if (!fs::exists(path)) GTEST_SKIP() << path << " not present";
  jb::h5::Reader r(path);
  const auto ids = r.read_i64("/input_ids");
  ASSERT_EQ(ids.shape.size(), 2u);
  EXPECT_EQ(static_cast<int64_t>(ids.data.size()), ids.shape[0] * ids.shape[1]);
  const auto logits = r.read_f32("/logits");
  ASSERT_EQ(logits.shape.size(), 3u);
  EXPECT_EQ(logits.shape[0], ids.shape[0]);
  EXPECT_EQ(logits.shape[1], ids.shape[1]);
  EXPECT_TRUE(r.has("/logits"));
  EXPECT_FALSE(r.list("/").empty());
}
