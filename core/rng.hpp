// Counter-based random numbers keyed by (seed, stream, index), identical on host and device and
// independent of thread count or evaluation order (ecosystem.md §1.8). Every value is a pure
// function of its key, so a tensor can be generated in any order, in parallel, on either side.
//
// uniform: a 24-bit integer k, u = (k + 0.5) * 2^-24 (exact, never 0 or 1).
// normal: Irwin-Hall sum of eight 16-bit uniforms, centred and scaled to unit variance. The sum
//   is an exact integer, so the only rounding is one multiply: host and device agree bit for bit
//   (Box-Muller would depend on each side's logf/cosf). Range is bounded by +-4.9 sigma, which is
//   what weight init wants anyway.
// Affine maps use fma, which is correctly rounded on both sides.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/hostdevice.hpp"

namespace jb {

JB_HD uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// 64 random bits for one key. Three rounds of mixing keep nearby keys uncorrelated.
JB_HD uint64_t rng_bits(uint64_t seed, uint64_t stream, uint64_t index) {
  return splitmix64(splitmix64(splitmix64(seed) ^ stream) ^ index);
}

JB_HD float jb_fma(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

// Uniform in (0, 1).
JB_HD float rng_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  const uint32_t k = static_cast<uint32_t>(rng_bits(seed, stream, index) >> 40);  // 24 bits
  return (static_cast<float>(k) + 0.5f) * (1.0f / 16777216.0f);
}

// Uniform in (lo, hi).
JB_HD float rng_uniform(uint64_t seed, uint64_t stream, uint64_t index, float lo, float hi) {
  return jb_fma(rng_uniform(seed, stream, index), hi - lo, lo);
}

// Approximately standard normal (Irwin-Hall of 8), exactly reproducible.
JB_HD float rng_normal(uint64_t seed, uint64_t stream, uint64_t index) {
  const uint64_t a = rng_bits(seed, stream, 2 * index);
  const uint64_t b = rng_bits(seed, stream, 2 * index + 1);
  int32_t sum = 0;
  for (int i = 0; i < 4; ++i) {
    sum += static_cast<int32_t>((a >> (16 * i)) & 0xffffu);
    sum += static_cast<int32_t>((b >> (16 * i)) & 0xffffu);
  }
  // Each uniform is (k + 0.5)/65536, so sum of eight is (sum + 4)/65536, mean 4, var 8/12.
  const int32_t centred = sum + 4 - 4 * 65536;
  const float scale = 1.2247448713915890f / 65536.0f;  // sqrt(12/8) / 65536
  return static_cast<float>(centred) * scale;
}

JB_HD float rng_normal(uint64_t seed, uint64_t stream, uint64_t index, float mean, float std) {
  return jb_fma(rng_normal(seed, stream, index), std, mean);
}

// Stable 64-bit id of a tensor name (FNV-1a), used as the stream of that tensor's values.
inline uint64_t stream_id(const char* name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const char* p = name; *p; ++p) {
    h ^= static_cast<unsigned char>(*p);
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace jb
