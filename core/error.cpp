#include "core/error.hpp"

namespace jb {

const char* error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::Usage:
      return "usage";
    case ErrorKind::Config:
      return "config";
    case ErrorKind::Format:
      return "format";
    case ErrorKind::Shape:
      return "shape";
    case ErrorKind::Dtype:
      return "dtype";
    case ErrorKind::Io:
      return "io";
    case ErrorKind::OutOfMemory:
      return "out-of-memory";
    case ErrorKind::Cuda:
      return "cuda";
    case ErrorKind::Unsupported:
      return "unsupported";
    case ErrorKind::Internal:
      return "internal";
  }
  return "unknown";
}

// Exit codes: 2 usage, 3 bad input (config/format/shape/dtype/io), 4 does not fit, 5 CUDA,
// 6 unsupported, 70 internal (EX_SOFTWARE).
int error_exit_code(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::Usage:
      return 2;
    case ErrorKind::Config:
    case ErrorKind::Format:
    case ErrorKind::Shape:
    case ErrorKind::Dtype:
    case ErrorKind::Io:
      return 3;
    case ErrorKind::OutOfMemory:
      return 4;
    case ErrorKind::Cuda:
      return 5;
    case ErrorKind::Unsupported:
      return 6;
    case ErrorKind::Internal:
      return 70;
  }
  return 1;
}

void fail(ErrorKind kind, const std::string& message) {
  throw Error(kind, message);
}

}  // namespace jb
