// safetensors reader/writer and the HuggingFace sharded index (ecosystem.md §4.1, §4.2, §5.1).
//
// The reader applies every validation of the reference implementation with checked integer
// arithmetic, so a hostile or truncated file raises jb::Error instead of reading out of bounds:
//   1. file >= 8 bytes; 2. header length N <= 100,000,000; 3. 8 + N <= file size;
//   4. header starts with '{' (right-padding with spaces allowed), is valid UTF-8 and JSON of the
//      schema {NAME: {dtype, shape, data_offsets}, "__metadata__": {str: str}} with no duplicate
//      keys; 5. sorted by offsets the tensors tile the byte buffer from 0 with no hole or overlap;
//   6. numel * dtype size (checked) == END - BEGIN; 7. last END + 8 + N == file size.
// Every error names the file and, where there is one, the tensor.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.hpp"
#include "core/tensor.hpp"

namespace jb {

// Largest header the reference accepts (HeaderTooLarge).
constexpr uint64_t kSafetensorsMaxHeader = 100000000;

struct SafetensorsEntry {
  std::string name;
  Dtype dtype = Dtype::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets relative to the start of the byte buffer; end is one past
  uint64_t end = 0;
  uint64_t nbytes() const { return end - begin; }
};

struct SafetensorsHeader {
  std::string origin;       // file path (for messages)
  uint64_t header_len = 0;  // N
  uint64_t file_size = 0;   // bytes
  uint64_t data_start() const { return 8 + header_len; }
  std::vector<SafetensorsEntry> tensors;  // in byte-buffer order
  std::map<std::string, std::string> metadata;

  const SafetensorsEntry* find(const std::string& name) const;  // nullptr if absent
  std::vector<std::string> names() const;                       // sorted
};

// Validates the N header bytes of a file of `file_size` bytes (checks 2-7; the caller has read
// the 8-byte length). Throws Error{Format} (Error{Dtype} for dtypes) naming `origin`.
SafetensorsHeader parse_safetensors_header(const char* header, uint64_t header_len,
                                           uint64_t file_size, const std::string& origin);
// Validates a whole file held in memory (all checks, 1-7); for tests and fuzzing.
SafetensorsHeader parse_safetensors_bytes(const std::string& bytes,
                                          const std::string& origin = "<memory>");

// An open, validated safetensors file. Reads tensors with pread; fails if the file size changes
// after the header was validated.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);  // Error{Io} if unreadable, else validates
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const SafetensorsHeader& header() const { return header_; }
  const std::string& path() const { return header_.origin; }
  const SafetensorsEntry& entry(const std::string& name) const;  // Error{Format} if absent

  // Values converted to fp32: BF16 and F16 exactly, I8/U8/I32 exactly, F64/I64 rounded.
  // Tensor::source_dtype is the stored dtype.
  Tensor read(const std::string& name) const;
  // The stored little-endian bytes (e.g. I8 weights with their own scales).
  std::vector<uint8_t> read_raw(const std::string& name) const;

 private:
  void read_bytes(const SafetensorsEntry& e, void* dst) const;
  int fd_ = -1;
  SafetensorsHeader header_;
};

// Converts `count` elements of dtype `d` stored little-endian at `src` to fp32.
void convert_to_f32(Dtype d, const uint8_t* src, int64_t count, float* dst);

// Collects tensors and writes one safetensors file: header with "__metadata__", padded with
// spaces to a multiple of 8, tensors laid out sorted by name, written to PATH.tmp and renamed.
class SafetensorsWriter {
 public:
  // Stores fp32 `values` as `dtype` (F32, BF16 with round-to-nearest-even, F16, F64). The tensor
  // is copied.
  void add(const std::string& name, const Tensor& values, Dtype dtype);
  // Stores raw little-endian bytes (e.g. I8); the size must equal numel * dtype size.
  void add_raw(const std::string& name, Dtype dtype, const std::vector<int64_t>& shape,
               std::vector<uint8_t> bytes);
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  void write(const std::string& path) const;

 private:
  struct Item {
    Dtype dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::map<std::string, Item> items_;
  std::map<std::string, std::string> metadata_;
};

// Encodes fp32 values as `dtype` bytes (F32, BF16 RNE, F16 RNE, F64). Error{Dtype} otherwise.
std::vector<uint8_t> encode_from_f32(Dtype dtype, const float* values, int64_t count);

// model.safetensors.index.json (ecosystem.md §4.2).
struct SafetensorsIndex {
  std::map<std::string, std::string> weight_map;  // tensor -> shard file name (plain)
  bool has_total_size = false;
  uint64_t total_size = 0;
  std::vector<std::string> warnings;
};
// Parses and validates the index text: JSON object, weight_map string->string with no duplicate
// keys, every file name plain (no '/', '\\', "..", absolute or empty: Error{Format} "path
// traversal"). Unknown keys are informational; a malformed total_size is a warning.
SafetensorsIndex parse_safetensors_index(const std::string& text, const std::string& origin);

// A checkpoint: one model.safetensors, or an index plus its shards (each header loaded once,
// cross-checked against the weight_map both ways; total_size mismatch is a warning).
class SafetensorsCheckpoint {
 public:
  // `path`: a directory holding model.safetensors or model.safetensors.index.json, or one of
  // those files itself. Error{Io} if none is found.
  static SafetensorsCheckpoint open(const std::string& path);

  std::vector<std::string> names() const;  // sorted
  bool has(const std::string& name) const { return where_.count(name) != 0; }
  const SafetensorsEntry& entry(const std::string& name) const;
  Tensor read(const std::string& name) const;
  std::vector<uint8_t> read_raw(const std::string& name) const;
  const std::vector<std::string>& warnings() const { return warnings_; }
  size_t num_files() const { return files_.size(); }

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> where_;  // tensor -> index into files_
  std::vector<std::string> warnings_;
};

}  // namespace jb
