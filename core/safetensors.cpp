#include "core/safetensors.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/bf16.hpp"
#include "core/error.hpp"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian; the reader copies bytes as they are");

namespace jb {

using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

[[noreturn]] void format_error(const std::string& origin, const std::string& what) {
  fail(ErrorKind::Format, origin + ": " + what);
}

std::string squote(const std::string& s) {
  return "'" + s + "'";
}

// Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF. Returns
// the offset of the first bad byte or npos.
size_t first_invalid_utf8(const unsigned char* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
      cp = c & 0x1fu;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      cp = c & 0x0fu;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      cp = c & 0x07u;
    } else {
      return i;
    }
    if (n - i < len) return i;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xc0u) != 0x80u) return i;
      cp = (cp << 6) | (s[i + k] & 0x3fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return i;
    i += len;
  }
  return std::string::npos;
}

// Nesting depth of JSON text outside strings; the schemas here need at most 3, so deeper input
// is rejected before the DOM parser builds it (cheap protection against nesting bombs).
int max_json_depth(const char* s, size_t n) {
  int depth = 0, max_depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < n; ++i) {
    const char c = s[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      max_depth = std::max(max_depth, ++depth);
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return max_depth;
}

// Parses JSON text rejecting duplicate keys in any object: nlohmann's DOM parser would keep the
// last value silently (ecosystem.md §4.1), so keys are tracked per object with the parse
// callback.
json parse_json_unique_keys(const char* text, size_t n, const std::string& origin,
                            const char* what) {
  // nlohmann's lexer takes a NUL byte for the end of input, which would accept "{}\0garbage";
  // JSON has no raw NUL anywhere (in strings it must be escaped), so it is rejected here.
  if (const void* nul = std::memchr(text, 0, n))
    format_error(origin, std::string(what) + " is not valid JSON (NUL byte at offset " +
                             std::to_string(static_cast<const char*>(nul) - text) + ")");
  if (max_json_depth(text, n) > 16)
    format_error(origin, std::string(what) + " is nested too deeply");
  std::vector<std::set<std::string>> keys_per_object;
  std::string duplicate;
  json::parser_callback_t track = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        keys_per_object.emplace_back();
        break;
      case json::parse_event_t::key:
        if (!keys_per_object.empty() &&
            !keys_per_object.back().insert(parsed.get<std::string>()).second && duplicate.empty())
          duplicate = parsed.get<std::string>();
        break;
      case json::parse_event_t::object_end:
        if (!keys_per_object.empty()) keys_per_object.pop_back();
        break;
      default:
        break;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text, text + n, track, /*allow_exceptions=*/true);
  } catch (const json::exception& e) {
    format_error(origin, std::string(what) + " is not valid JSON (" + e.what() + ")");
  }
  if (!duplicate.empty())
    format_error(origin, "duplicate key " + squote(duplicate) + " in " + what);
  return j;
}

uint64_t get_u64(const json& v, bool& ok) {
  ok = v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0);
  return ok ? v.get<uint64_t>() : 0;
}

SafetensorsEntry parse_entry(const std::string& name, const json& v, const std::string& origin) {
  const std::string where = "tensor " + squote(name) + ": ";
  if (!v.is_object()) format_error(origin, where + "entry is not an object");
  SafetensorsEntry e;
  e.name = name;
  bool have_dtype = false, have_shape = false, have_offsets = false;
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string& key = it.key();
    const json& val = it.value();
    if (key == "dtype") {
      if (!val.is_string()) format_error(origin, where + "dtype is not a string");
      try {
        e.dtype = parse_dtype(val.get<std::string>());
      } catch (const Error& err) {
        fail(err.kind(), origin + ": " + where + err.what());
      }
      have_dtype = true;
    } else if (key == "shape") {
      if (!val.is_array()) format_error(origin, where + "shape is not an array");
      for (const json& d : val) {
        if (d.is_number_integer() && !d.is_number_unsigned() && d.get<int64_t>() < 0)
          format_error(origin,
                       where + "negative dimension " + d.dump() + " in shape " + val.dump());
        if (!d.is_number_unsigned())
          format_error(origin, where + "shape " + val.dump() + " is not a list of integers");
        const uint64_t u = d.get<uint64_t>();
        if (u > static_cast<uint64_t>(INT64_MAX))
          format_error(origin, where + "dimension " + d.dump() + " overflows int64");
        e.shape.push_back(static_cast<int64_t>(u));
      }
      have_shape = true;
    } else if (key == "data_offsets") {
      if (!val.is_array() || val.size() != 2)
        format_error(origin, where + "data_offsets is not a [begin, end] pair");
      bool ok0, ok1;
      e.begin = get_u64(val[0], ok0);
      e.end = get_u64(val[1], ok1);
      if (!ok0 || !ok1)
        format_error(origin,
                     where + "data_offsets " + val.dump() + " are not non-negative integers");
      have_offsets = true;
    } else {
      format_error(origin, where + "unexpected field " + squote(key));
    }
  }
  if (!have_dtype) format_error(origin, where + "missing dtype");
  if (!have_shape) format_error(origin, where + "missing shape");
  if (!have_offsets) format_error(origin, where + "missing data_offsets");
  return e;
}

std::string offsets_str(const SafetensorsEntry& e) {
  return "[" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
}

}  // namespace

const SafetensorsEntry* SafetensorsHeader::find(const std::string& name) const {
  for (const auto& e : tensors)
    if (e.name == name) return &e;
  return nullptr;
}

std::vector<std::string> SafetensorsHeader::names() const {
  std::vector<std::string> out;
  for (const auto& e : tensors) out.push_back(e.name);
  std::sort(out.begin(), out.end());
  return out;
}

SafetensorsHeader parse_safetensors_header(const char* header, uint64_t header_len,
                                           uint64_t file_size, const std::string& origin) {
  // (2) HeaderTooLarge, (3) InvalidHeaderLength with checked addition.
  if (header_len > kSafetensorsMaxHeader)
    format_error(origin, "header length " + std::to_string(header_len) + " is too large (limit " +
                             std::to_string(kSafetensorsMaxHeader) + " bytes)");
  uint64_t data_start;
  if (__builtin_add_overflow(uint64_t{8}, header_len, &data_start) || data_start > file_size)
    format_error(origin, "header length " + std::to_string(header_len) + " exceeds the file size " +
                             std::to_string(file_size) + " (truncated file?)");
  // (4) starts with '{', UTF-8, JSON of the expected schema, no duplicate keys.
  if (header_len == 0 || header[0] != '{') format_error(origin, "header does not start with '{'");
  const size_t bad = first_invalid_utf8(reinterpret_cast<const unsigned char*>(header),
                                        static_cast<size_t>(header_len));
  if (bad != std::string::npos)
    format_error(origin, "header is not valid UTF-8 (byte " + std::to_string(bad) + ")");
  const json j = parse_json_unique_keys(header, static_cast<size_t>(header_len), origin, "header");
  if (!j.is_object()) format_error(origin, "header is not a JSON object");

  SafetensorsHeader h;
  h.origin = origin;
  h.header_len = header_len;
  h.file_size = file_size;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it.value().is_object()) format_error(origin, "__metadata__ is not an object");
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        if (!m.value().is_string())
          format_error(origin, "__metadata__ value for " + squote(m.key()) + " is not a string");
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    h.tensors.push_back(parse_entry(it.key(), it.value(), origin));
  }

  // (5) Sorted by offsets, each tensor begins where the previous one ended (from 0): no holes
  // and no overlaps, so a small file cannot declare many tensors over the same bytes.
  std::sort(h.tensors.begin(), h.tensors.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
              if (a.begin != b.begin) return a.begin < b.begin;
              if (a.end != b.end) return a.end < b.end;
              return a.name < b.name;
            });
  uint64_t expected_begin = 0;
  for (const SafetensorsEntry& e : h.tensors) {
    const std::string where = "tensor " + squote(e.name) + ": ";
    if (e.end < e.begin)
      format_error(origin,
                   where + "invalid offset: data_offsets " + offsets_str(e) + " end before begin");
    if (e.begin < expected_begin)
      format_error(origin, where + "invalid offset: data_offsets " + offsets_str(e) +
                               " overlap the previous tensor, which ends at " +
                               std::to_string(expected_begin));
    if (e.begin > expected_begin)
      format_error(origin, where + "invalid offset: data_offsets " + offsets_str(e) +
                               " leave a hole in the byte buffer after offset " +
                               std::to_string(expected_begin));
    // (6) numel * dtype size with checked multiplication, equal to the span.
    uint64_t bytes = static_cast<uint64_t>(dtype_size(e.dtype));
    for (int64_t d : e.shape)
      if (__builtin_mul_overflow(bytes, static_cast<uint64_t>(d), &bytes))
        format_error(origin, where + "shape " + shape_str(e.shape) + " overflows the byte size");
    if (bytes != e.nbytes())
      format_error(origin, where + "size mismatch: shape " + shape_str(e.shape) + " of " +
                               dtype_name(e.dtype) + " needs " + std::to_string(bytes) +
                               " bytes but data_offsets " + offsets_str(e) + " span " +
                               std::to_string(e.nbytes()));
    expected_begin = e.end;
  }
  // (7) The buffer is entirely indexed: nothing missing, nothing trailing.
  uint64_t needed;
  if (__builtin_add_overflow(expected_begin, data_start, &needed))
    format_error(origin, "data offsets overflow");
  if (needed > file_size)
    format_error(origin, "file is truncated: the tensors need " + std::to_string(needed) +
                             " bytes, the file has " + std::to_string(file_size));
  if (needed < file_size)
    format_error(origin, std::to_string(file_size - needed) +
                             " trailing bytes after the last tensor (the byte buffer must be "
                             "entirely indexed)");
  return h;
}

SafetensorsHeader parse_safetensors_bytes(const std::string& bytes, const std::string& origin) {
  if (bytes.size() < 8)
    format_error(origin, "file is too small (" + std::to_string(bytes.size()) +
                             " bytes) to hold the 8-byte header length");
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  // parse_safetensors_header checks n against the size before it reads any header byte.
  return parse_safetensors_header(bytes.data() + 8, n, bytes.size(), origin);
}

// ---------------------------------------------------------------------------------------------
// SafetensorsFile

namespace {

void pread_all(int fd, void* dst, uint64_t count, uint64_t offset, const std::string& path) {
  char* p = static_cast<char*>(dst);
  while (count > 0) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(count, uint64_t{1} << 30));
    const ssize_t got = ::pread(fd, p, chunk, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      fail(ErrorKind::Io, path + ": read failed: " + std::strerror(errno));
    }
    if (got == 0) fail(ErrorKind::Io, path + ": unexpected end of file (file changed?)");
    p += got;
    count -= static_cast<uint64_t>(got);
    offset += static_cast<uint64_t>(got);
  }
}

uint64_t fd_size(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) fail(ErrorKind::Io, path + ": fstat failed: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail(ErrorKind::Io, path + ": not a regular file");
  return static_cast<uint64_t>(st.st_size);
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) fail(ErrorKind::Io, path + ": cannot open: " + std::strerror(errno));
  try {
    const uint64_t size = fd_size(fd_, path);
    // (1) HeaderTooSmall.
    if (size < 8)
      format_error(path, "file is too small (" + std::to_string(size) +
                             " bytes) to hold the 8-byte header length");
    uint64_t n;
    pread_all(fd_, &n, 8, 0, path);
    // Bounds first (checks 2 and 3), before allocating n bytes for the text.
    if (n > kSafetensorsMaxHeader || n > size - 8) parse_safetensors_header(nullptr, n, size, path);
    std::string text(static_cast<size_t>(n), '\0');
    if (n > 0) pread_all(fd_, text.data(), n, 8, path);
    header_ = parse_safetensors_header(text.data(), n, size, path);
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (fd_ >= 0) ::close(fd_);
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept
    : fd_(other.fd_), header_(std::move(other.header_)) {
  other.fd_ = -1;
}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    header_ = std::move(other.header_);
    other.fd_ = -1;
  }
  return *this;
}

const SafetensorsEntry& SafetensorsFile::entry(const std::string& name) const {
  const SafetensorsEntry* e = header_.find(name);
  if (!e) format_error(path(), "no tensor " + squote(name));
  return *e;
}

void SafetensorsFile::read_bytes(const SafetensorsEntry& e, void* dst) const {
  // The header was validated against the size seen at open; a file that has since changed
  // could make the offsets point past its end or at other data.
  if (fd_size(fd_, path()) != header_.file_size)
    fail(ErrorKind::Io, path() + ": file size changed since it was opened");
  pread_all(fd_, dst, e.nbytes(), header_.data_start() + e.begin, path());
}

void convert_to_f32(Dtype d, const uint8_t* src, int64_t count, float* dst) {
  for (int64_t i = 0; i < count; ++i) {
    switch (d) {
      case Dtype::F32: {
        std::memcpy(&dst[i], src + 4 * i, 4);
        break;
      }
      case Dtype::BF16: {
        uint16_t b;
        std::memcpy(&b, src + 2 * i, 2);
        dst[i] = bf16_bits_to_float(b);
        break;
      }
      case Dtype::F16: {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = f16_bits_to_float(h);
        break;
      }
      case Dtype::F64: {
        double v;
        std::memcpy(&v, src + 8 * i, 8);
        dst[i] = static_cast<float>(v);
        break;
      }
      case Dtype::I8:
        dst[i] = static_cast<float>(static_cast<int8_t>(src[i]));
        break;
      case Dtype::U8:
        dst[i] = static_cast<float>(src[i]);
        break;
      case Dtype::I32: {
        int32_t v;
        std::memcpy(&v, src + 4 * i, 4);
        dst[i] = static_cast<float>(v);
        break;
      }
      case Dtype::I64: {
        int64_t v;
        std::memcpy(&v, src + 8 * i, 8);
        dst[i] = static_cast<float>(v);
        break;
      }
    }
  }
}

Tensor SafetensorsFile::read(const std::string& name) const {
  const SafetensorsEntry& e = entry(name);
  Tensor t(e.shape);
  t.source_dtype = e.dtype;
  if (e.dtype == Dtype::F32) {
    if (e.nbytes() > 0) read_bytes(e, t.data.data());
    return t;
  }
  std::vector<uint8_t> raw(static_cast<size_t>(e.nbytes()));
  if (!raw.empty()) read_bytes(e, raw.data());
  convert_to_f32(e.dtype, raw.data(), t.numel(), t.data.data());
  return t;
}

std::vector<uint8_t> SafetensorsFile::read_raw(const std::string& name) const {
  const SafetensorsEntry& e = entry(name);
  std::vector<uint8_t> raw(static_cast<size_t>(e.nbytes()));
  if (!raw.empty()) read_bytes(e, raw.data());
  return raw;
}

// ---------------------------------------------------------------------------------------------
// Writer

std::vector<uint8_t> encode_from_f32(Dtype dtype, const float* values, int64_t count) {
  std::vector<uint8_t> out(static_cast<size_t>(count * dtype_size(dtype)));
  uint8_t* p = out.data();
  for (int64_t i = 0; i < count; ++i) {
    switch (dtype) {
      case Dtype::F32:
        std::memcpy(p + 4 * i, &values[i], 4);
        break;
      case Dtype::BF16: {
        const uint16_t b = float_to_bf16_bits(values[i]);
        std::memcpy(p + 2 * i, &b, 2);
        break;
      }
      case Dtype::F16: {
        const uint16_t h = float_to_f16_bits(values[i]);
        std::memcpy(p + 2 * i, &h, 2);
        break;
      }
      case Dtype::F64: {
        const double v = values[i];
        std::memcpy(p + 8 * i, &v, 8);
        break;
      }
      default:
        fail(ErrorKind::Dtype, std::string("cannot encode fp32 values as ") + dtype_name(dtype) +
                                   " (store integer tensors with add_raw)");
    }
  }
  return out;
}

void SafetensorsWriter::add(const std::string& name, const Tensor& values, Dtype dtype) {
  if (values.numel() != shape_numel(values.shape))
    fail(ErrorKind::Shape, "tensor " + squote(name) + " holds " + std::to_string(values.numel()) +
                               " values for shape " + shape_str(values.shape));
  add_raw(name, dtype, values.shape, encode_from_f32(dtype, values.ptr(), values.numel()));
}

void SafetensorsWriter::add_raw(const std::string& name, Dtype dtype,
                                const std::vector<int64_t>& shape, std::vector<uint8_t> bytes) {
  if (name == "__metadata__") fail(ErrorKind::Format, "'__metadata__' is not a tensor name");
  if (items_.count(name)) fail(ErrorKind::Format, "tensor " + squote(name) + " added twice");
  int64_t need;
  if (__builtin_mul_overflow(shape_numel(shape), dtype_size(dtype), &need) ||
      static_cast<uint64_t>(need) != bytes.size())
    fail(ErrorKind::Shape, "tensor " + squote(name) + ": " + std::to_string(bytes.size()) +
                               " bytes for shape " + shape_str(shape) + " of " + dtype_name(dtype));
  items_[name] = Item{dtype, shape, std::move(bytes)};
}

void SafetensorsWriter::write(const std::string& path) const {
  json header = json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const auto& [name, item] : items_) {  // std::map: sorted by name
    const uint64_t end = offset + item.bytes.size();
    header[name] = {
        {"dtype", dtype_name(item.dtype)}, {"shape", item.shape}, {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-byte aligned
  const uint64_t n = text.size();

  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(ErrorKind::Io, tmp + ": cannot create: " + std::strerror(errno));
    out.write(reinterpret_cast<const char*>(&n), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& kv : items_)
      out.write(reinterpret_cast<const char*>(kv.second.bytes.data()),
                static_cast<std::streamsize>(kv.second.bytes.size()));
    out.flush();
    if (!out) {
      out.close();
      std::remove(tmp.c_str());
      fail(ErrorKind::Io, tmp + ": write failed");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    fail(ErrorKind::Io, path + ": cannot rename from " + tmp + ": " + why);
  }
}

// ---------------------------------------------------------------------------------------------
// Sharded index

SafetensorsIndex parse_safetensors_index(const std::string& text, const std::string& origin) {
  const json j = parse_json_unique_keys(text.data(), text.size(), origin, "index");
  if (!j.is_object()) format_error(origin, "index is not a JSON object");
  SafetensorsIndex idx;
  const auto wm = j.find("weight_map");
  if (wm == j.end() || !wm->is_object()) format_error(origin, "missing \"weight_map\" object");
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    const std::string& tensor = it.key();
    if (!it.value().is_string())
      format_error(origin, "weight_map entry for " + squote(tensor) + " is not a file name");
    const std::string file = it.value().get<std::string>();
    // A shard name must be a plain file next to the index: anything else could read files
    // outside the checkpoint directory.
    if (file.empty() || file == "." || file == ".." || file.find('/') != std::string::npos ||
        file.find('\\') != std::string::npos || file.find('\0') != std::string::npos)
      format_error(origin, "path traversal: weight_map entry for " + squote(tensor) + " is " +
                               squote(file) + ", not a plain file name");
    idx.weight_map[tensor] = file;
  }
  const auto meta = j.find("metadata");
  if (meta != j.end()) {
    if (!meta->is_object()) {
      idx.warnings.push_back(origin + ": \"metadata\" is not an object; ignored");
    } else {
      const auto ts = meta->find("total_size");
      if (ts != meta->end()) {
        bool ok;
        idx.total_size = get_u64(*ts, ok);
        idx.has_total_size = ok;
        if (!ok)
          idx.warnings.push_back(origin + ": metadata.total_size " + ts->dump() +
                                 " is not a non-negative integer; ignored");
      }
    }
  }
  return idx;
}

namespace {

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorKind::Io, path + ": cannot open: " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(ErrorKind::Io, path + ": read failed");
  return ss.str();
}

}  // namespace

SafetensorsCheckpoint SafetensorsCheckpoint::open(const std::string& path) {
  std::error_code ec;
  std::string single, index;
  if (fs::is_directory(path, ec)) {
    const fs::path dir(path);
    if (fs::is_regular_file(dir / "model.safetensors", ec))
      single = (dir / "model.safetensors").string();
    else if (fs::is_regular_file(dir / "model.safetensors.index.json", ec))
      index = (dir / "model.safetensors.index.json").string();
    else
      fail(ErrorKind::Io, path + ": no model.safetensors or model.safetensors.index.json");
  } else if (fs::is_regular_file(path, ec)) {
    const std::string suffix = ".index.json";
    if (path.size() >= suffix.size() &&
        path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0)
      index = path;
    else
      single = path;
  } else {
    fail(ErrorKind::Io, path + ": no such checkpoint file or directory");
  }

  SafetensorsCheckpoint ck;
  if (!single.empty()) {
    ck.files_.push_back(std::make_unique<SafetensorsFile>(single));
    for (const auto& e : ck.files_[0]->header().tensors) ck.where_[e.name] = 0;
    return ck;
  }

  SafetensorsIndex idx = parse_safetensors_index(read_text_file(index), index);
  ck.warnings_ = idx.warnings;
  const fs::path dir = fs::path(index).parent_path();
  // Each shard's header is loaded once, in the order shards are first named.
  std::map<std::string, size_t> shard_of_file;
  for (const auto& [tensor, file] : idx.weight_map) {
    if (shard_of_file.count(file)) continue;
    const fs::path shard = dir / file;
    if (!fs::is_regular_file(shard, ec))
      format_error(index,
                   "missing shard " + squote(file) + " (listed for tensor " + squote(tensor) + ")");
    shard_of_file[file] = ck.files_.size();
    ck.files_.push_back(std::make_unique<SafetensorsFile>(shard.string()));
  }
  uint64_t total = 0;
  for (const auto& [file, i] : shard_of_file) {
    for (const SafetensorsEntry& e : ck.files_[i]->header().tensors) {
      const auto it = idx.weight_map.find(e.name);
      if (it == idx.weight_map.end())
        format_error(index, "tensor " + squote(e.name) + " in shard " + squote(file) +
                                " is not in the weight_map");
      if (it->second != file)
        format_error(index, "tensor " + squote(e.name) + " is in shard " + squote(file) +
                                " but the weight_map says " + squote(it->second));
      total += e.nbytes();  // no overflow: each shard's sizes were checked against its file
      ck.where_[e.name] = i;
    }
  }
  for (const auto& [tensor, file] : idx.weight_map)
    if (!ck.where_.count(tensor))
      format_error(index, "weight_map lists tensor " + squote(tensor) + " in shard " +
                              squote(file) + ", which does not contain it");
  if (idx.has_total_size && idx.total_size != total)
    ck.warnings_.push_back(index + ": metadata.total_size is " + std::to_string(idx.total_size) +
                           " but the shards hold " + std::to_string(total) + " tensor bytes");
  return ck;
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  for (const auto& kv : where_) out.push_back(kv.first);
  return out;
}

const SafetensorsEntry& SafetensorsCheckpoint::entry(const std::string& name) const {
  const auto it = where_.find(name);
  if (it == where_.end()) fail(ErrorKind::Format, "checkpoint has no tensor " + squote(name));
  return files_[it->second]->entry(name);
}

Tensor SafetensorsCheckpoint::read(const std::string& name) const {
  const auto it = where_.find(name);
  if (it == where_.end()) fail(ErrorKind::Format, "checkpoint has no tensor " + squote(name));
  return files_[it->second]->read(name);
}

std::vector<uint8_t> SafetensorsCheckpoint::read_raw(const std::string& name) const {
  const auto it = where_.find(name);
  if (it == where_.end()) fail(ErrorKind::Format, "checkpoint has no tensor " + squote(name));
  return files_[it->second]->read_raw(name);
}

}  // namespace jb
