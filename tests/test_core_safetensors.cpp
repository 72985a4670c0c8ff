// safetensors reader/writer and sharded index: one handcrafted file per rejection reason of the
// reference format (ecosystem.md §4.1, §4.2, §5.1), built byte by byte in a temp directory, with
// the error kind and a message substring asserted; plus round trips of the writer.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "core/bf16.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "core/safetensors.hpp"

namespace fs = std::filesystem;
using jb::Dtype;
using jb::Error;
using jb::ErrorKind;

namespace {

// Runs `fn`, which must throw jb::Error of `kind` whose message contains every substring.
void expect_error(const std::function<void()>& fn, ErrorKind kind,
                  std::initializer_list<std::string> substrings) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(jb::error_kind_name(e.kind()), std::string(jb::error_kind_name(kind)))
        << "message: " << e.what();
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
            ("jb_h2_st_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good());
}

// 8-byte little-endian length + header text + data bytes, exactly as given.
std::string st_bytes(uint64_t declared_len, const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  std::memcpy(&out[0], &declared_len, 8);
  return out + header + data;
}
std::string st_bytes(const std::string& header, const std::string& data) {
  return st_bytes(header.size(), header, data);
}

// Writes a handcrafted file and opens it with the reader; the test expects the open to throw.
void expect_file_error(const std::string& bytes, ErrorKind kind,
                       std::initializer_list<std::string> substrings) {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  write_bytes(path, bytes);
  std::vector<std::string> subs(substrings);
  subs.push_back(path);  // every error names the file
  try {
    jb::SafetensorsFile f(path);
  } catch (const Error& e) {
    EXPECT_EQ(std::string(jb::error_kind_name(e.kind())), jb::error_kind_name(kind)) << e.what();
    for (const std::string& s : subs)
      EXPECT_NE(std::string(e.what()).find(s), std::string::npos)
          << "message '" << e.what() << "' lacks '" << s << "'";
    // The in-memory validator agrees with the file reader.
    expect_error([&] { jb::parse_safetensors_bytes(bytes, "mem"); }, kind, {});
    return;
  }
  ADD_FAILURE() << "no jb::Error thrown for the handcrafted file";
}

std::string f32_entry(const std::string& name, const std::string& shape, uint64_t b, uint64_t e,
                      const std::string& dtype = "F32") {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
         ",\"data_offsets\":[" + std::to_string(b) + "," + std::to_string(e) + "]}";
}

}  // namespace

// ---- rejection reasons ---------------------------------------------------------------------

TEST(SafetensorsReject, FileSmallerThanLengthField) {
  expect_file_error("abc", ErrorKind::Format, {"too small"});
  expect_file_error("", ErrorKind::Format, {"too small"});
}

TEST(SafetensorsReject, HeaderLongerThanFile) {
  // Declares 100 header bytes, holds 20: an out-of-bounds read if trusted.
  expect_file_error(st_bytes(100, "{\"a\":1}", "0123456789012"), ErrorKind::Format,
                    {"header length 100", "exceeds the file size"});
}

TEST(SafetensorsReject, HeaderLengthOverflowsWhenAddedToEight) {
  expect_file_error(st_bytes(UINT64_MAX - 3, "{}", ""), ErrorKind::Format, {"too large"});
}

TEST(SafetensorsReject, HeaderTooLarge) {
  // 200 MB declared: rejected before anything is allocated or read.
  expect_file_error(st_bytes(200000000, "{}", ""), ErrorKind::Format, {"too large", "100000000"});
}

TEST(SafetensorsReject, HeaderNotStartingWithBrace) {
  expect_file_error(st_bytes(" {}     ", ""), ErrorKind::Format, {"does not start with '{'"});
  expect_file_error(st_bytes("[]      ", ""), ErrorKind::Format, {"does not start with '{'"});
  expect_file_error(st_bytes("", ""), ErrorKind::Format, {"does not start with '{'"});
}

TEST(SafetensorsReject, InvalidJson) {
  expect_file_error(st_bytes("{\"a\": ", ""), ErrorKind::Format, {"not valid JSON"});
  expect_file_error(st_bytes("{} x", ""), ErrorKind::Format, {"not valid JSON"});
  // A padding byte other than JSON whitespace.
  expect_file_error(st_bytes(std::string("{}\0\0\0\0\0\0", 8), ""), ErrorKind::Format,
                    {"not valid JSON"});
}

TEST(SafetensorsReject, InvalidUtf8) {
  expect_file_error(st_bytes("{\"a\xff\":{}}", ""), ErrorKind::Format, {"not valid UTF-8"});
  // Overlong encoding of '/' and a UTF-16 surrogate are invalid UTF-8 too.
  expect_file_error(st_bytes("{\"a\xc0\xaf\":{}}", ""), ErrorKind::Format, {"not valid UTF-8"});
  expect_file_error(st_bytes("{\"a\xed\xa0\x80\":{}}", ""), ErrorKind::Format, {"not valid UTF-8"});
}

TEST(SafetensorsReject, NotAnObjectOrBadSchema) {
  expect_file_error(st_bytes("{\"a\":1}", ""), ErrorKind::Format, {"'a'", "not an object"});
  expect_file_error(st_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", ""), ErrorKind::Format,
                    {"'a'", "missing data_offsets"});
  expect_file_error(
      st_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", "abcd"),
      ErrorKind::Format, {"'a'", "not a list of integers"});
  expect_file_error(
      st_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", "abcd"),
      ErrorKind::Format, {"'a'", "data_offsets"});
  expect_file_error(
      st_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", "abcd"),
      ErrorKind::Format, {"'a'", "unexpected field 'x'"});
  expect_file_error(st_bytes("{\"__metadata__\":{\"k\":1}}", ""), ErrorKind::Format,
                    {"__metadata__", "'k'", "not a string"});
}

TEST(SafetensorsReject, OverlappingOffsets) {
  // Two tensors over the same 4 bytes: the memory-amplification attack.
  expect_file_error(
      st_bytes("{" + f32_entry("a", "[1]", 0, 4) + "," + f32_entry("b", "[1]", 0, 4) + "}", "abcd"),
      ErrorKind::Format, {"'b'", "overlap"});
  expect_file_error(
      st_bytes("{" + f32_entry("a", "[2]", 0, 8) + "," + f32_entry("b", "[1]", 4, 8) + "}",
               "abcdefgh"),
      ErrorKind::Format, {"overlap"});
}

TEST(SafetensorsReject, GappedOffsets) {
  expect_file_error(
      st_bytes("{" + f32_entry("a", "[1]", 0, 4) + "," + f32_entry("b", "[1]", 8, 12) + "}",
               "abcdefghijkl"),
      ErrorKind::Format, {"'b'", "hole"});
  // The first tensor must begin at 0.
  expect_file_error(st_bytes("{" + f32_entry("a", "[1]", 4, 8) + "}", "abcdefgh"),
                    ErrorKind::Format, {"'a'", "hole"});
}

TEST(SafetensorsReject, EndBeforeBegin) {
  expect_file_error(st_bytes("{" + f32_entry("a", "[1]", 8, 4) + "}", "abcdefgh"),
                    ErrorKind::Format, {"'a'", "end before begin"});
}

TEST(SafetensorsReject, TrailingBytes) {
  expect_file_error(st_bytes("{" + f32_entry("a", "[1]", 0, 4) + "}", "abcdEXTRA"),
                    ErrorKind::Format, {"5 trailing bytes"});
  // No tensors and a non-empty buffer: the bytes are not indexed either.
  expect_file_error(st_bytes("{}", "xx"), ErrorKind::Format, {"trailing bytes"});
}

TEST(SafetensorsReject, TruncatedData) {
  expect_file_error(st_bytes("{" + f32_entry("a", "[2]", 0, 8) + "}", "abcd"), ErrorKind::Format,
                    {"truncated"});
}

TEST(SafetensorsReject, SizeMismatch) {
  expect_file_error(st_bytes("{" + f32_entry("a", "[3]", 0, 8) + "}", "abcdefgh"),
                    ErrorKind::Format, {"'a'", "size mismatch", "needs 12 bytes"});
  expect_file_error(st_bytes("{" + f32_entry("a", "[2]", 0, 8, "BF16") + "}", "abcdefgh"),
                    ErrorKind::Format, {"'a'", "size mismatch"});
}

TEST(SafetensorsReject, UnknownDtype) {
  expect_file_error(st_bytes("{" + f32_entry("w", "[1]", 0, 4, "Q7") + "}", "abcd"),
                    ErrorKind::Dtype, {"'w'", "unknown dtype", "Q7"});
}

TEST(SafetensorsReject, UnsupportedDtype) {
  expect_file_error(st_bytes("{" + f32_entry("w", "[4]", 0, 4, "F8_E4M3") + "}", "abcd"),
                    ErrorKind::Dtype, {"'w'", "unsupported dtype", "F8_E4M3"});
}

TEST(SafetensorsReject, DuplicateNames) {
  expect_file_error(
      st_bytes("{" + f32_entry("a", "[1]", 0, 4) + "," + f32_entry("a", "[1]", 4, 8) + "}",
               "abcdefgh"),
      ErrorKind::Format, {"duplicate key 'a'"});
  // Duplicates inside one entry are caught too.
  expect_file_error(
      st_bytes("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
               "abcd"),
      ErrorKind::Format, {"duplicate key 'dtype'"});
}

TEST(SafetensorsReject, ShapeOverflow) {
  // 2^32 * 2^32 elements overflows 64 bits; checked multiplication must catch it.
  expect_file_error(st_bytes("{" + f32_entry("a", "[4294967296,4294967296]", 0, 4) + "}", "abcd"),
                    ErrorKind::Format, {"'a'", "overflows"});
  expect_file_error(st_bytes("{" + f32_entry("a", "[18446744073709551615]", 0, 4) + "}", "abcd"),
                    ErrorKind::Format, {"'a'", "overflows"});
}

TEST(SafetensorsReject, NegativeShape) {
  expect_file_error(st_bytes("{" + f32_entry("a", "[-1]", 0, 4) + "}", "abcd"), ErrorKind::Format,
                    {"'a'", "negative dimension"});
}

TEST(SafetensorsReject, DeepNesting) {
  expect_file_error(st_bytes("{\"a\":" + std::string(100, '[') + std::string(100, ']') + "}", ""),
                    ErrorKind::Format, {"nested too deeply"});
}

TEST(SafetensorsReject, MissingFileIsIoError) {
  TempDir dir;
  expect_error([&] { jb::SafetensorsFile f(dir.file("nope.safetensors")); }, ErrorKind::Io,
               {"nope.safetensors"});
  expect_error([&] { jb::SafetensorsCheckpoint::open(dir.str()); }, ErrorKind::Io,
               {"no model.safetensors"});
}

// ---- accepted files ------------------------------------------------------------------------

TEST(SafetensorsRead, HandcraftedValidFile) {
  // Space-padded header, a rank-0 tensor, a zero-size tensor, BF16/F16/I8 values, metadata.
  const uint16_t bf16[2] = {0x3f80, 0xc000};  // 1, -2
  const uint16_t f16[1] = {0x3c00};           // 1
  const int8_t i8[3] = {-128, 0, 127};
  const float scalar = 2.5f;
  std::string data;
  data.append(reinterpret_cast<const char*>(bf16), 4);
  data.append(reinterpret_cast<const char*>(f16), 2);
  data.append(reinterpret_cast<const char*>(i8), 3);
  data.append(reinterpret_cast<const char*>(&scalar), 4);
  const std::string header =
      "{\"__metadata__\":{\"format\":\"pt\"}," + f32_entry("b", "[2]", 0, 4, "BF16") + "," +
      f32_entry("h", "[1]", 4, 6, "F16") + "," + f32_entry("q", "[3]", 6, 9, "I8") + "," +
      f32_entry("s", "[]", 9, 13) + "," + f32_entry("z", "[0,5]", 13, 13) + "}      ";
  TempDir dir;
  const std::string path = dir.file("ok.safetensors");
  write_bytes(path, st_bytes(header, data));
  jb::SafetensorsFile f(path);
  EXPECT_EQ(f.header().metadata.at("format"), "pt");
  EXPECT_EQ(f.header().names(), (std::vector<std::string>{"b", "h", "q", "s", "z"}));
  const jb::Tensor b = f.read("b");
  EXPECT_EQ(b.source_dtype, Dtype::BF16);
  EXPECT_EQ(b.data, (std::vector<float>{1.0f, -2.0f}));
  EXPECT_EQ(f.read("h").data, (std::vector<float>{1.0f}));
  EXPECT_EQ(f.read("q").data, (std::vector<float>{-128.0f, 0.0f, 127.0f}));
  EXPECT_EQ(f.read_raw("q"), (std::vector<uint8_t>{0x80, 0x00, 0x7f}));
  const jb::Tensor s = f.read("s");
  EXPECT_TRUE(s.shape.empty());
  EXPECT_EQ(s.data, (std::vector<float>{2.5f}));
  const jb::Tensor z = f.read("z");
  EXPECT_EQ(z.shape, (std::vector<int64_t>{0, 5}));
  EXPECT_EQ(z.numel(), 0);
  expect_error([&] { f.read("missing"); }, ErrorKind::Format, {"'missing'"});
}

TEST(SafetensorsRead, FileChangedAfterOpen) {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  write_bytes(path, st_bytes("{" + f32_entry("a", "[1]", 0, 4) + "}", "abcd"));
  jb::SafetensorsFile f(path);
  {
    std::ofstream app(path, std::ios::binary | std::ios::app);
    app << "more";
  }
  expect_error([&] { f.read("a"); }, ErrorKind::Io, {"changed"});
}

// ---- writer round trips --------------------------------------------------------------------

namespace {

jb::Tensor random_tensor(std::vector<int64_t> shape, uint64_t stream) {
  jb::Tensor t(std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t.data[i] = jb::rng_normal(7, stream, i, 0.0f, 3.0f);
  return t;
}

}  // namespace

TEST(SafetensorsWrite, RoundTripF32Bf16F16AndRawI8) {
  TempDir dir;
  const jb::Tensor a = random_tensor({3, 5}, 1);
  const jb::Tensor b = random_tensor({7}, 2);
  const jb::Tensor c = random_tensor({2, 2, 2}, 3);
  jb::Tensor special({5});
  special.data = {INFINITY, -INFINITY, 0.0f, -0.0f, 1e-40f};
  const std::vector<uint8_t> q = {1, 2, 255, 128};
  jb::SafetensorsWriter w;
  w.add("zeta.f32", a, Dtype::F32);
  w.add("alpha.bf16", b, Dtype::BF16);
  w.add("mid.f16", c, Dtype::F16);
  w.add("special.bf16", special, Dtype::BF16);
  w.add_raw("q.i8", Dtype::I8, {2, 2}, q);
  w.set_metadata("format", "pt");
  const std::string path = dir.file("rt.safetensors");
  w.write(path);
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  jb::SafetensorsFile f(path);
  EXPECT_EQ((8 + f.header().header_len) % 8, 0u) << "header padded to a multiple of 8";
  EXPECT_EQ(f.header().metadata.at("format"), "pt");
  // Data laid out sorted by name.
  std::vector<std::string> order;
  for (const auto& e : f.header().tensors) order.push_back(e.name);
  EXPECT_EQ(order, (std::vector<std::string>{"alpha.bf16", "mid.f16", "q.i8", "special.bf16",
                                             "zeta.f32"}));

  const jb::Tensor ra = f.read("zeta.f32");
  EXPECT_EQ(ra.shape, a.shape);
  EXPECT_EQ(ra.data, a.data);
  const jb::Tensor rb = f.read("alpha.bf16");
  ASSERT_EQ(rb.numel(), b.numel());
  int changed = 0;
  for (int64_t i = 0; i < b.numel(); ++i) {
    EXPECT_EQ(rb.data[i], jb::round_bf16(b.data[i])) << i;
    changed += rb.data[i] != b.data[i];
  }
  EXPECT_GT(changed, 0) << "bf16 storage should round random fp32 values";
  const jb::Tensor rc = f.read("mid.f16");
  for (int64_t i = 0; i < c.numel(); ++i)
    EXPECT_EQ(rc.data[i], jb::f16_bits_to_float(jb::float_to_f16_bits(c.data[i])));
  const jb::Tensor rs = f.read("special.bf16");
  EXPECT_EQ(rs.data[0], INFINITY);
  EXPECT_EQ(rs.data[1], -INFINITY);
  EXPECT_TRUE(std::signbit(rs.data[3]));
  EXPECT_EQ(f.read_raw("q.i8"), q);
  EXPECT_EQ(f.read("q.i8").data, (std::vector<float>{1, 2, -1, -128}));
}

TEST(SafetensorsWrite, RejectsBadInput) {
  jb::SafetensorsWriter w;
  expect_error([&] { w.add_raw("q", Dtype::I8, {3}, {1, 2}); }, ErrorKind::Shape, {"'q'"});
  expect_error([&] { w.add("__metadata__", jb::Tensor({1}), Dtype::F32); }, ErrorKind::Format,
               {"__metadata__"});
  expect_error([&] { w.add("i", jb::Tensor({1}), Dtype::I32); }, ErrorKind::Dtype, {"I32"});
  w.add("x", jb::Tensor({1}), Dtype::F32);
  expect_error([&] { w.add("x", jb::Tensor({1}), Dtype::F32); }, ErrorKind::Format, {"twice"});
}

TEST(SafetensorsWrite, EmptyFileRoundTrips) {
  TempDir dir;
  jb::SafetensorsWriter w;
  w.write(dir.file("e.safetensors"));
  jb::SafetensorsFile f(dir.file("e.safetensors"));
  EXPECT_TRUE(f.header().tensors.empty());
}

// ---- sharded index -------------------------------------------------------------------------

namespace {

// Two shards: "model-00001-of-00002.safetensors" holds a (F32 [2,3]) and b (BF16 [4]);
// "model-00002-of-00002.safetensors" holds c (F32 [5]).
struct ShardedFixture {
  TempDir dir;
  jb::Tensor a = random_tensor({2, 3}, 11), b = random_tensor({4}, 12), c = random_tensor({5}, 13);
  const std::string s1 = "model-00001-of-00002.safetensors";
  const std::string s2 = "model-00002-of-00002.safetensors";
  static constexpr uint64_t kTotal = 2 * 3 * 4 + 4 * 2 + 5 * 4;

  ShardedFixture() {
    jb::SafetensorsWriter w1, w2;
    w1.add("a", a, Dtype::F32);
    w1.add("b", b, Dtype::BF16);
    w2.add("c", c, Dtype::F32);
    w1.write(dir.file(s1));
    w2.write(dir.file(s2));
  }
  void write_index(const std::string& text) {
    write_bytes(dir.file("model.safetensors.index.json"), text);
  }
  std::string index(const std::string& map, uint64_t total = kTotal) const {
    return "{\"metadata\":{\"total_size\":" + std::to_string(total) +
           ",\"total_parameters\":15},\"weight_map\":{" + map + "}}";
  }
  std::string good_map() const {
    return "\"a\":\"" + s1 + "\",\"b\":\"" + s1 + "\",\"c\":\"" + s2 + "\"";
  }
};

}  // namespace

TEST(SafetensorsIndex, LoadsShardsAndReadsTensors) {
  ShardedFixture fx;
  fx.write_index(fx.index(fx.good_map()));
  const auto ck = jb::SafetensorsCheckpoint::open(fx.dir.str());
  EXPECT_EQ(ck.num_files(), 2u);
  EXPECT_TRUE(ck.warnings().empty());
  EXPECT_EQ(ck.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(ck.read("a").data, fx.a.data);
  EXPECT_EQ(ck.read("c").data, fx.c.data);
  EXPECT_EQ(ck.read("b").data[1], jb::round_bf16(fx.b.data[1]));
  // Opening the index file itself works the same.
  EXPECT_EQ(jb::SafetensorsCheckpoint::open(fx.dir.file("model.safetensors.index.json")).names(),
            ck.names());
}

TEST(SafetensorsIndex, TotalSizeMismatchIsAWarning) {
  ShardedFixture fx;
  fx.write_index(fx.index(fx.good_map(), ShardedFixture::kTotal + 1));
  const auto ck = jb::SafetensorsCheckpoint::open(fx.dir.str());
  ASSERT_EQ(ck.warnings().size(), 1u);
  EXPECT_NE(ck.warnings()[0].find("total_size"), std::string::npos) << ck.warnings()[0];
}

TEST(SafetensorsIndex, PathTraversalRejected) {
  for (const std::string bad : {"../x.safetensors", "/abs/x.safetensors", "a/b.safetensors", "..",
                                "sub\\\\x.safetensors", ""}) {
    ShardedFixture fx;
    fx.write_index(fx.index(fx.good_map() + ",\"d\":\"" + bad + "\""));
    expect_error([&] { jb::SafetensorsCheckpoint::open(fx.dir.str()); }, ErrorKind::Format,
                 {"path traversal", "'d'"});
  }
}

TEST(SafetensorsIndex, MissingShard) {
  ShardedFixture fx;
  fx.write_index(fx.index(fx.good_map() + ",\"d\":\"model-00003-of-00002.safetensors\""));
  expect_error([&] { jb::SafetensorsCheckpoint::open(fx.dir.str()); }, ErrorKind::Format,
               {"missing shard", "model-00003-of-00002.safetensors"});
}

TEST(SafetensorsIndex, TensorInShardButNotInWeightMap) {
  ShardedFixture fx;
  fx.write_index(fx.index("\"a\":\"" + fx.s1 + "\",\"c\":\"" + fx.s2 + "\""));
  expect_error([&] { jb::SafetensorsCheckpoint::open(fx.dir.str()); }, ErrorKind::Format,
               {"'b'", "not in the weight_map"});
}

TEST(SafetensorsIndex, WeightMapPointsAtWrongShard) {
  ShardedFixture fx;
  fx.write_index(fx.index("\"a\":\"" + fx.s1 + "\",\"b\":\"" + fx.s1 + "\",\"c\":\"" + fx.s1 +
                          "\",\"x\":\"" + fx.s2 + "\""));
  expect_error([&] { jb::SafetensorsCheckpoint::open(fx.dir.str()); }, ErrorKind::Format,
               {"'c'", "weight_map says"});
}

TEST(SafetensorsIndex, WeightMapListsTensorTheShardLacks) {
  ShardedFixture fx;
  fx.write_index(fx.index(fx.good_map() + ",\"ghost\":\"" + fx.s2 + "\""));
  expect_error([&] { jb::SafetensorsCheckpoint::open(fx.dir.str()); }, ErrorKind::Format,
               {"'ghost'", "does not contain"});
}

TEST(SafetensorsIndex, DuplicateKeysInWeightMap) {
  ShardedFixture fx;
  fx.write_index(fx.index(fx.good_map() + ",\"a\":\"" + fx.s2 + "\""));
  expect_error([&] { jb::SafetensorsCheckpoint::open(fx.dir.str()); }, ErrorKind::Format,
               {"duplicate key 'a'"});
}

TEST(SafetensorsIndex, MalformedIndex) {
  expect_error([] { jb::parse_safetensors_index("{\"metadata\":{}}", "idx"); }, ErrorKind::Format,
               {"idx", "weight_map"});
  expect_error([] { jb::parse_safetensors_index("not json", "idx"); }, ErrorKind::Format,
               {"not valid JSON"});
  expect_error([] { jb::parse_safetensors_index("{\"weight_map\":{\"a\":3}}", "idx"); },
               ErrorKind::Format, {"'a'"});
  // total_size of the wrong type is only a warning.
  const auto idx =
      jb::parse_safetensors_index("{\"metadata\":{\"total_size\":\"big\"},\"weight_map\":{}}", "i");
  EXPECT_FALSE(idx.has_total_size);
  EXPECT_EQ(idx.warnings.size(), 1u);
}
