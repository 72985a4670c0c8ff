// JB_HD marks functions compiled for both host and device (the RNG and bf16 helpers must give
// the same bits on both sides).
#pragma once
#if defined(__CUDACC__)
#define JB_HD __host__ __device__ __forceinline__
#else
#define JB_HD inline
#endif
