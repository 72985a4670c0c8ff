// Small RAII layer over the HDF5 1.10 C API for tensor dumps (ecosystem.md §4.3).
//
// One dataset per tensor at a slash path ("/layer_07/mamba/ssm_state"), intermediate groups
// created on the way; contiguous layout; little-endian IEEE / two's-complement file types
// (H5T_IEEE_F32LE, H5T_IEEE_F64LE, H5T_STD_I32LE, H5T_STD_I64LE, H5T_STD_U16LE) so h5py reads
// them as <f4, <f8, <i4, <i8, <u2. bf16 is stored as raw uint16 bits with the attribute
// source_dtype = "bfloat16" (HDF5 1.10 has no bf16 type). String attributes are variable-length
// UTF-8 (h5py gives str). Automatic HDF5 error printing is off; every failed call becomes
// Error{Io} naming the file and the object. Files are written to PATH.tmp and renamed on close,
// so a crashed writer never leaves a half-written PATH.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <hdf5.h>

#include "core/tensor.hpp"

namespace jb::h5 {

// Owns one hid_t and closes it with the matching H5*close.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  ~Handle() { reset(); }
  Handle(Handle&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset();
  // Closes now and reports a failed close (HDF5 flushes on file close).
  herr_t close();

 private:
  hid_t id_ = -1;
  Closer closer_ = nullptr;
};

// Typed wrappers: same handle, named for what they hold.
struct File : Handle {
  using Handle::Handle;
};
struct Group : Handle {
  using Handle::Handle;
};
struct Dataset : Handle {
  using Handle::Handle;
};
struct Dataspace : Handle {
  using Handle::Handle;
};
struct Attribute : Handle {
  using Handle::Handle;
};
struct Datatype : Handle {
  using Handle::Handle;
};
struct PropList : Handle {
  using Handle::Handle;
};

template <class T>
struct Array {
  std::vector<int64_t> shape;
  std::vector<T> data;
};

class Writer {
 public:
  explicit Writer(const std::string& path);  // creates PATH.tmp (truncating)
  // Commits (close + rename) unless an exception is unwinding, in which case PATH.tmp is removed.
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  void write_f32(const std::string& path, const std::vector<int64_t>& shape, const float* data);
  void write_f64(const std::string& path, const std::vector<int64_t>& shape, const double* data);
  void write_i32(const std::string& path, const std::vector<int64_t>& shape, const int32_t* data);
  void write_i64(const std::string& path, const std::vector<int64_t>& shape, const int64_t* data);
  // Raw bf16 bits as uint16, with attribute source_dtype = "bfloat16".
  void write_bf16_bits(const std::string& path, const std::vector<int64_t>& shape,
                       const uint16_t* data);
  void write_tensor(const std::string& path, const Tensor& t) { write_f32(path, t.shape, t.ptr()); }

  // Attributes on a dataset or group; "/" is the root group. Replaces an existing attribute.
  void set_attr(const std::string& object, const std::string& name, const std::string& value);
  void set_attr(const std::string& object, const std::string& name, const char* value) {
    set_attr(object, name, std::string(value));
  }
  void set_attr(const std::string& object, const std::string& name, double value);
  void set_attr(const std::string& object, const std::string& name, int64_t value);
  void set_attr(const std::string& object, const std::string& name, int value) {
    set_attr(object, name, static_cast<int64_t>(value));
  }

  // Closes the file and renames PATH.tmp to PATH. Error{Io} on failure.
  void close();
  const std::string& path() const { return path_; }

 private:
  void write_raw(const std::string& path, const std::vector<int64_t>& shape, hid_t file_type,
                 hid_t mem_type, const void* data);
  std::string path_, tmp_;
  File file_;
  bool closed_ = false;
  int uncaught_at_start_ = 0;
};

class Reader {
 public:
  explicit Reader(const std::string& path);  // Error{Io} if missing or not HDF5
  bool has(const std::string& path) const;   // a link of that path exists
  std::vector<int64_t> shape(const std::string& path) const;
  // Names of the members of a group ("/" for the root), sorted.
  std::vector<std::string> list(const std::string& group) const;

  // Floating-point datasets (converted by HDF5); Error{Format} for another type class.
  Array<float> read_f32(const std::string& path) const;
  Array<double> read_f64(const std::string& path) const;
  // Integer datasets; Error{Format} for another type class.
  Array<int32_t> read_i32(const std::string& path) const;
  Array<int64_t> read_i64(const std::string& path) const;
  Array<uint16_t> read_u16(const std::string& path) const;
  Tensor read_tensor(const std::string& path) const;  // fp32, source_dtype BF16 if so tagged

  bool has_attr(const std::string& object, const std::string& name) const;
  std::string attr_string(const std::string& object, const std::string& name) const;
  double attr_f64(const std::string& object, const std::string& name) const;
  int64_t attr_i64(const std::string& object, const std::string& name) const;

 private:
  template <class T>
  Array<T> read_array(const std::string& path, hid_t mem_type, bool want_float) const;
  Attribute open_attr(const std::string& object, const std::string& name) const;
  std::string path_;
  File file_;
};

}  // namespace jb::h5
