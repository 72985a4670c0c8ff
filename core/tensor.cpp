#include "core/tensor.hpp"

#include "core/error.hpp"

namespace jb {

Tensor::Tensor(std::vector<int64_t> shape_, float fill) : shape(std::move(shape_)) {
  data.assign(static_cast<size_t>(shape_numel(shape)), fill);
}

int64_t shape_numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) fail(ErrorKind::Shape, "negative dimension in shape " + shape_str(shape));
    if (__builtin_mul_overflow(n, d, &n))
      fail(ErrorKind::Shape, "element count of shape " + shape_str(shape) + " overflows int64");
  }
  return n;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

const char* dtype_name(Dtype d) {
  switch (d) {
    case Dtype::F32:
      return "F32";
    case Dtype::F16:
      return "F16";
    case Dtype::BF16:
      return "BF16";
    case Dtype::I8:
      return "I8";
    case Dtype::F64:
      return "F64";
    case Dtype::I32:
      return "I32";
    case Dtype::I64:
      return "I64";
    case Dtype::U8:
      return "U8";
  }
  return "?";
}

int64_t dtype_size(Dtype d) {
  switch (d) {
    case Dtype::F32:
      return 4;
    case Dtype::F16:
      return 2;
    case Dtype::BF16:
      return 2;
    case Dtype::I8:
      return 1;
    case Dtype::F64:
      return 8;
    case Dtype::I32:
      return 4;
    case Dtype::I64:
      return 8;
    case Dtype::U8:
      return 1;
  }
  return 0;
}

Dtype parse_dtype(const std::string& name) {
  if (name == "F32") return Dtype::F32;
  if (name == "F16") return Dtype::F16;
  if (name == "BF16") return Dtype::BF16;
  if (name == "I8") return Dtype::I8;
  if (name == "F64") return Dtype::F64;
  if (name == "I32") return Dtype::I32;
  if (name == "I64") return Dtype::I64;
  if (name == "U8") return Dtype::U8;
  static const char* known[] = {"BOOL",        "I16",     "U16",     "U32",     "U64",
                                "C64",         "F8_E4M3", "F8_E5M2", "F8_E8M0", "F8_E4M3FNUZ",
                                "F8_E5M2FNUZ", "F4",      "F6_E2M3", "F6_E3M2"};
  for (const char* k : known)
    if (name == k)
      fail(ErrorKind::Dtype, "unsupported dtype '" + name +
                                 "' (jambench reads F32, F16, BF16, I8, F64, I32, I64, U8)");
  fail(ErrorKind::Dtype, "unknown dtype '" + name + "'");
}

}  // namespace jb
