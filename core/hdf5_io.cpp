#include "core/hdf5_io.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>

#include "core/bf16.hpp"
#include "core/error.hpp"

namespace jb::h5 {

namespace {

// HDF5 prints its own error stack to stderr by default; errors are reported as jb::Error
// instead, so the automatic printing is switched off once per process.
void quiet_hdf5() {
  static const bool done = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)done;
}

hid_t check_id(hid_t id, const std::string& file, const std::string& what) {
  if (id < 0) fail(ErrorKind::Io, file + ": HDF5: " + what + " failed");
  return id;
}

void check(herr_t status, const std::string& file, const std::string& what) {
  if (status < 0) fail(ErrorKind::Io, file + ": HDF5: " + what + " failed");
}

Dataspace make_space(const std::vector<int64_t>& shape, const std::string& file,
                     const std::string& object) {
  if (shape.empty())
    return Dataspace(check_id(H5Screate(H5S_SCALAR), file, "create scalar dataspace for " + object),
                     H5Sclose);
  std::vector<hsize_t> dims;
  for (int64_t d : shape) {
    if (d < 0)
      fail(ErrorKind::Shape, file + ": " + object + ": negative dimension in " + shape_str(shape));
    dims.push_back(static_cast<hsize_t>(d));
  }
  return Dataspace(check_id(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
                            file, "create dataspace for " + object),
                   H5Sclose);
}

Datatype vlen_string_type(const std::string& file) {
  Datatype t(check_id(H5Tcopy(H5T_C_S1), file, "copy string type"), H5Tclose);
  check(H5Tset_size(t.get(), H5T_VARIABLE), file, "set string size");
  check(H5Tset_cset(t.get(), H5T_CSET_UTF8), file, "set string charset");
  return t;
}

}  // namespace

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    closer_ = o.closer_;
    o.id_ = -1;
  }
  return *this;
}

void Handle::reset() {
  if (id_ >= 0 && closer_) closer_(id_);
  id_ = -1;
}

herr_t Handle::close() {
  herr_t status = 0;
  if (id_ >= 0 && closer_) status = closer_(id_);
  id_ = -1;
  return status;
}

// ---------------------------------------------------------------------------------------------
// Writer

Writer::Writer(const std::string& path)
    : path_(path), tmp_(path + ".tmp"), uncaught_at_start_(std::uncaught_exceptions()) {
  quiet_hdf5();
  // Default file-creation/access lists: H5F_LIBVER_EARLIEST, so older h5py can open the file.
  file_ = File(H5Fcreate(tmp_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
  if (!file_.valid()) fail(ErrorKind::Io, tmp_ + ": cannot create HDF5 file");
}

Writer::~Writer() {
  if (closed_) return;
  if (std::uncaught_exceptions() > uncaught_at_start_) {
    file_.reset();
    std::remove(tmp_.c_str());
    return;
  }
  try {
    close();
  } catch (...) {
    std::remove(tmp_.c_str());  // a destructor must not throw; the file is not published
  }
}

void Writer::close() {
  if (closed_) return;
  closed_ = true;
  if (file_.close() < 0) {
    std::remove(tmp_.c_str());
    fail(ErrorKind::Io, tmp_ + ": HDF5: closing the file failed");
  }
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp_.c_str());
    fail(ErrorKind::Io, path_ + ": cannot rename from " + tmp_ + ": " + why);
  }
}

void Writer::write_raw(const std::string& object, const std::vector<int64_t>& shape,
                       hid_t file_type, hid_t mem_type, const void* data) {
  if (closed_) fail(ErrorKind::Internal, path_ + ": write after close");
  const Dataspace space = make_space(shape, tmp_, object);
  // Intermediate groups ("/layer_07/mamba") are created with the dataset.
  const PropList lcpl(check_id(H5Pcreate(H5P_LINK_CREATE), tmp_, "create link property list"),
                      H5Pclose);
  check(H5Pset_create_intermediate_group(lcpl.get(), 1), tmp_, "set intermediate groups");
  const Dataset ds(H5Dcreate2(file_.get(), object.c_str(), file_type, space.get(), lcpl.get(),
                              H5P_DEFAULT, H5P_DEFAULT),
                   H5Dclose);
  if (!ds.valid())
    fail(ErrorKind::Io, tmp_ + ": HDF5: cannot create dataset " + object + " (exists already?)");
  int64_t n = 1;
  for (int64_t d : shape)
    if (__builtin_mul_overflow(n, d, &n)) fail(ErrorKind::Shape, object + ": shape overflows");
  if (n > 0)
    check(H5Dwrite(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), tmp_,
          "write dataset " + object);
}

void Writer::write_f32(const std::string& p, const std::vector<int64_t>& s, const float* d) {
  write_raw(p, s, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, d);
}
void Writer::write_f64(const std::string& p, const std::vector<int64_t>& s, const double* d) {
  write_raw(p, s, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, d);
}
void Writer::write_i32(const std::string& p, const std::vector<int64_t>& s, const int32_t* d) {
  write_raw(p, s, H5T_STD_I32LE, H5T_NATIVE_INT32, d);
}
void Writer::write_i64(const std::string& p, const std::vector<int64_t>& s, const int64_t* d) {
  write_raw(p, s, H5T_STD_I64LE, H5T_NATIVE_INT64, d);
}
void Writer::write_bf16_bits(const std::string& p, const std::vector<int64_t>& s,
                             const uint16_t* d) {
  write_raw(p, s, H5T_STD_U16LE, H5T_NATIVE_UINT16, d);
  set_attr(p, "source_dtype", "bfloat16");
}

namespace {

// Creates (replacing) a scalar attribute of `type` on `object` and writes `value`.
void put_attr(hid_t file, const std::string& fname, const std::string& object,
              const std::string& name, hid_t file_type, hid_t mem_type, const void* value) {
  const std::string what = "attribute " + name + " on " + object;
  const htri_t exists = H5Aexists_by_name(file, object.c_str(), name.c_str(), H5P_DEFAULT);
  check(exists, fname, "look up " + what + " (no such object?)");
  if (exists > 0)
    check(H5Adelete_by_name(file, object.c_str(), name.c_str(), H5P_DEFAULT), fname,
          "replace " + what);
  const Dataspace space(check_id(H5Screate(H5S_SCALAR), fname, "scalar dataspace"), H5Sclose);
  const Attribute attr(
      check_id(H5Acreate_by_name(file, object.c_str(), name.c_str(), file_type, space.get(),
                                 H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
               fname, "create " + what),
      H5Aclose);
  check(H5Awrite(attr.get(), mem_type, value), fname, "write " + what);
}

}  // namespace

void Writer::set_attr(const std::string& object, const std::string& name,
                      const std::string& value) {
  const Datatype t = vlen_string_type(tmp_);
  const char* p = value.c_str();
  put_attr(file_.get(), tmp_, object, name, t.get(), t.get(), &p);
}

void Writer::set_attr(const std::string& object, const std::string& name, double value) {
  put_attr(file_.get(), tmp_, object, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

void Writer::set_attr(const std::string& object, const std::string& name, int64_t value) {
  put_attr(file_.get(), tmp_, object, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

// ---------------------------------------------------------------------------------------------
// Reader

Reader::Reader(const std::string& path) : path_(path) {
  quiet_hdf5();
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    fail(ErrorKind::Io, path + ": no such HDF5 file");
  file_ = File(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!file_.valid()) fail(ErrorKind::Io, path + ": cannot open as an HDF5 file");
}

bool Reader::has(const std::string& path) const {
  // H5Lexists needs every intermediate link to exist, so walk the path one component at a time.
  std::string prefix = path.size() && path[0] == '/' ? "/" : "";
  size_t pos = prefix.size();
  while (pos < path.size()) {
    size_t slash = path.find('/', pos);
    if (slash == std::string::npos) slash = path.size();
    if (slash > pos) {
      prefix += path.substr(pos, slash - pos);
      const htri_t e = H5Lexists(file_.get(), prefix.c_str(), H5P_DEFAULT);
      if (e <= 0) return false;
      prefix += "/";
    }
    pos = slash + 1;
  }
  return true;
}

std::vector<int64_t> Reader::shape(const std::string& path) const {
  const Dataset ds(
      check_id(H5Dopen2(file_.get(), path.c_str(), H5P_DEFAULT), path_, "open dataset " + path),
      H5Dclose);
  const Dataspace space(check_id(H5Dget_space(ds.get()), path_, "dataspace of " + path), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  check(rank, path_, "rank of " + path);
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (rank > 0)
    check(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr), path_, "dims of " + path);
  return std::vector<int64_t>(dims.begin(), dims.end());
}

std::vector<std::string> Reader::list(const std::string& group) const {
  const Group g(
      check_id(H5Gopen2(file_.get(), group.c_str(), H5P_DEFAULT), path_, "open group " + group),
      H5Gclose);
  H5G_info_t info;
  check(H5Gget_info(g.get(), &info), path_, "group info of " + group);
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t len =
        H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    check(static_cast<herr_t>(len < 0 ? -1 : 0), path_, "member name in " + group);
    std::string name(static_cast<size_t>(len) + 1, '\0');
    check(static_cast<herr_t>(H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i,
                                                 name.data(), name.size(), H5P_DEFAULT) < 0
                                  ? -1
                                  : 0),
          path_, "member name in " + group);
    name.resize(static_cast<size_t>(len));
    names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

template <class T>
Array<T> Reader::read_array(const std::string& path, hid_t mem_type, bool want_float) const {
  const Dataset ds(
      check_id(H5Dopen2(file_.get(), path.c_str(), H5P_DEFAULT), path_, "open dataset " + path),
      H5Dclose);
  const Datatype type(check_id(H5Dget_type(ds.get()), path_, "type of " + path), H5Tclose);
  const H5T_class_t cls = H5Tget_class(type.get());
  if (cls != (want_float ? H5T_FLOAT : H5T_INTEGER))
    fail(ErrorKind::Format, path_ + ": dataset " + path + " is not of " +
                                (want_float ? "floating-point" : "integer") + " type");
  Array<T> out;
  out.shape = shape(path);
  const int64_t n = shape_numel(out.shape);
  out.data.resize(static_cast<size_t>(n));
  if (n > 0)
    check(H5Dread(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data.data()), path_,
          "read dataset " + path);
  return out;
}

Array<float> Reader::read_f32(const std::string& p) const {
  return read_array<float>(p, H5T_NATIVE_FLOAT, true);
}
Array<double> Reader::read_f64(const std::string& p) const {
  return read_array<double>(p, H5T_NATIVE_DOUBLE, true);
}
Array<int32_t> Reader::read_i32(const std::string& p) const {
  return read_array<int32_t>(p, H5T_NATIVE_INT32, false);
}
Array<int64_t> Reader::read_i64(const std::string& p) const {
  return read_array<int64_t>(p, H5T_NATIVE_INT64, false);
}
Array<uint16_t> Reader::read_u16(const std::string& p) const {
  return read_array<uint16_t>(p, H5T_NATIVE_UINT16, false);
}

Tensor Reader::read_tensor(const std::string& path) const {
  Tensor t;
  if (has_attr(path, "source_dtype") && attr_string(path, "source_dtype") == "bfloat16") {
    Array<uint16_t> bits = read_u16(path);
    t.shape = bits.shape;
    t.data.resize(bits.data.size());
    for (size_t i = 0; i < bits.data.size(); ++i) t.data[i] = bf16_bits_to_float(bits.data[i]);
    t.source_dtype = Dtype::BF16;
    return t;
  }
  Array<float> a = read_f32(path);
  t.shape = std::move(a.shape);
  t.data = std::move(a.data);
  return t;
}

bool Reader::has_attr(const std::string& object, const std::string& name) const {
  const htri_t e = H5Aexists_by_name(file_.get(), object.c_str(), name.c_str(), H5P_DEFAULT);
  check(e, path_, "look up attribute " + name + " on " + object + " (no such object?)");
  return e > 0;
}

Attribute Reader::open_attr(const std::string& object, const std::string& name) const {
  if (!has_attr(object, name))
    fail(ErrorKind::Format, path_ + ": " + object + " has no attribute " + name);
  return Attribute(
      check_id(H5Aopen_by_name(file_.get(), object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT),
               path_, "open attribute " + name + " on " + object),
      H5Aclose);
}

std::string Reader::attr_string(const std::string& object, const std::string& name) const {
  const Attribute attr = open_attr(object, name);
  const std::string what = "attribute " + name + " on " + object;
  const Datatype type(check_id(H5Aget_type(attr.get()), path_, "type of " + what), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_STRING)
    fail(ErrorKind::Format, path_ + ": " + what + " is not a string");
  const htri_t vlen = H5Tis_variable_str(type.get());
  check(vlen, path_, "string kind of " + what);
  if (vlen > 0) {
    const Datatype mem = vlen_string_type(path_);
    char* p = nullptr;
    check(H5Aread(attr.get(), mem.get(), &p), path_, "read " + what);
    std::string s = p ? p : "";
    H5free_memory(p);
    return s;
  }
  const size_t size = H5Tget_size(type.get());
  if (size == 0) fail(ErrorKind::Io, path_ + ": size of " + what);
  const Datatype mem(check_id(H5Tcopy(H5T_C_S1), path_, "copy string type"), H5Tclose);
  check(H5Tset_size(mem.get(), size), path_, "set string size");
  std::string s(size, '\0');
  check(H5Aread(attr.get(), mem.get(), s.data()), path_, "read " + what);
  s.resize(std::strlen(s.c_str()));
  return s;
}

double Reader::attr_f64(const std::string& object, const std::string& name) const {
  const Attribute attr = open_attr(object, name);
  const Datatype type(check_id(H5Aget_type(attr.get()), path_, "attribute type"), H5Tclose);
  const H5T_class_t cls = H5Tget_class(type.get());
  if (cls != H5T_FLOAT && cls != H5T_INTEGER)
    fail(ErrorKind::Format, path_ + ": attribute " + name + " on " + object + " is not numeric");
  double v = 0;
  check(H5Aread(attr.get(), H5T_NATIVE_DOUBLE, &v), path_, "read attribute " + name);
  return v;
}

int64_t Reader::attr_i64(const std::string& object, const std::string& name) const {
  const Attribute attr = open_attr(object, name);
  const Datatype type(check_id(H5Aget_type(attr.get()), path_, "attribute type"), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_INTEGER)
    fail(ErrorKind::Format, path_ + ": attribute " + name + " on " + object + " is not an integer");
  int64_t v = 0;
  check(H5Aread(attr.get(), H5T_NATIVE_INT64, &v), path_, "read attribute " + name);
  return v;
}

}  // namespace jb::h5
