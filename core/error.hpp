// Error type shared by every part of jambench. Loaders and validators throw jb::Error, never
// abort; the command-line program turns it into one line and a non-zero exit code.
#pragma once
#include <stdexcept>
#include <string>

namespace jb {

enum class ErrorKind {
  Usage,        // bad command line
  Config,       // config.json missing field, mistyped, inconsistent
  Format,       // malformed safetensors / index / HDF5 / JSON
  Shape,        // tensor shape does not match the config
  Dtype,        // unknown or unsupported dtype
  Io,           // file cannot be opened, read or written
  OutOfMemory,  // a request does not fit (host or GPU), with the numbers
  Cuda,         // a CUDA or cuBLAS call failed
  Unsupported,  // a feature the current build or device does not have
  Internal,     // a bug: an invariant of our own code did not hold
};

const char* error_kind_name(ErrorKind kind);
int error_exit_code(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

[[noreturn]] void fail(ErrorKind kind, const std::string& message);

}  // namespace jb

// Internal invariant check that throws (never aborts) with file and line.
#define JB_CHECK(cond, msg)                                                              \
  do {                                                                                   \
    if (!(cond))                                                                         \
      ::jb::fail(::jb::ErrorKind::Internal,                                              \
                 std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " + (msg)); \
  } while (0)
