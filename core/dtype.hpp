#pragma once
#include <cstdint>
#include <string>

namespace jb {

// Element types jambench reads and writes. Names follow safetensors ("BF16", "F32", ...).
enum class Dtype { F32, F16, BF16, I8, F64, I32, I64, U8 };

const char* dtype_name(Dtype d);  // "BF16"
int64_t dtype_size(Dtype d);      // bytes per element
// Parses a safetensors dtype string. Known-but-unsupported names (F8_E4M3, BOOL, ...) and
// unknown names both throw Error{Dtype} naming the string.
Dtype parse_dtype(const std::string& name);

}  // namespace jb
