// bfloat16 as raw uint16 bits, with round-to-nearest-even conversion that matches
// __float2bfloat16_rn bit for bit (NaN stays NaN, quietened). Usable on host and device.
#pragma once
#include <cstdint>
#include <cstring>

#include "core/hostdevice.hpp"

namespace jb {

JB_HD uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

JB_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

JB_HD uint16_t float_to_bf16_bits(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // NaN
  uint32_t lsb = (u >> 16) & 1u;
  u += 0x7fffu + lsb;  // round half to even
  return static_cast<uint16_t>(u >> 16);
}

JB_HD float bf16_bits_to_float(uint16_t b) {
  return bits_float(static_cast<uint32_t>(b) << 16);
}

// The value a bf16 store of f would hold: the rounding points of the bf16-emulating reference.
JB_HD float round_bf16(float f) {
  return bf16_bits_to_float(float_to_bf16_bits(f));
}

// IEEE half (F16) <-> float on the host, for safetensors F16 tensors (RNE, subnormals, inf/NaN).
float f16_bits_to_float(uint16_t h);
uint16_t float_to_f16_bits(float f);

}  // namespace jb
