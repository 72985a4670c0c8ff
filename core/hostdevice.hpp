// JB_HD marks functions compiled for both host and device (the RNG and bf16 helpers must give
// the same bits on both sides).
#pragma once
#if defined(__CUDACC__)
#define JB_HD __host__ __device__ __forceinline__
#else
#define JB_HD inline
#endif

#include <type_traits>

namespace jb {

// ceil(a / b) for a >= 0, b > 0 (grid sizes, tile counts).
template <class A, class B>
JB_HD constexpr std::common_type_t<A, B> ceil_div(A a, B b) {
  return (a + b - 1) / b;
}

}  // namespace jb
