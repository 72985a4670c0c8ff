// Shared CUDA helpers: checked calls (errors carry the call, file and line and become
// jb::Error{Cuda}), RAII device buffers, and guarded output buffers for the compare harness.
#pragma once
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/hostdevice.hpp"

namespace jb::cuda {

using bf16 = __nv_bfloat16;

[[noreturn]] void throw_cuda(cudaError_t err, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas(cublasStatus_t st, const char* call, const char* file, int line);

}  // namespace jb::cuda

#define JB_CUDA(call)                                                                       \
  do {                                                                                      \
    cudaError_t jb_err_ = (call);                                                           \
    if (jb_err_ != cudaSuccess) ::jb::cuda::throw_cuda(jb_err_, #call, __FILE__, __LINE__); \
  } while (0)

#define JB_CUBLAS(call)                                            \
  do {                                                             \
    cublasStatus_t jb_st_ = (call);                                \
    if (jb_st_ != CUBLAS_STATUS_SUCCESS)                           \
      ::jb::cuda::throw_cublas(jb_st_, #call, __FILE__, __LINE__); \
  } while (0)

// After every <<<>>> launch: catches bad launch configurations immediately.
#define JB_LAUNCH(name)                                                    \
  do {                                                                     \
    cudaError_t jb_err_ = cudaGetLastError();                              \
    if (jb_err_ != cudaSuccess)                                            \
      ::jb::cuda::throw_cuda(jb_err_, "launch " name, __FILE__, __LINE__); \
  } while (0)

namespace jb::cuda {

// Owning device allocation. Allocation failure becomes Error{OutOfMemory} with the size asked.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) { alloc(n); }
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      p_ = o.p_;
      n_ = o.n_;
      o.p_ = nullptr;
      o.n_ = 0;
    }
    return *this;
  }
  void alloc(size_t n);
  void reset() {
    if (p_) cudaFree(p_);
    p_ = nullptr;
    n_ = 0;
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }
  void upload(const std::vector<T>& h) {
    JB_CHECK(h.size() == n_, "upload size mismatch");
    JB_CUDA(cudaMemcpy(p_, h.data(), bytes(), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    JB_CUDA(cudaMemcpy(h.data(), p_, bytes(), cudaMemcpyDeviceToHost));
    return h;
  }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

void* device_alloc(size_t bytes);  // Error{OutOfMemory} with requested and free bytes

template <class T>
void DeviceBuffer<T>::alloc(size_t n) {
  reset();
  p_ = static_cast<T*>(device_alloc(n * sizeof(T)));
  n_ = n;
}

// An output buffer with guard regions before and after it (llama.cpp sentinels). The body is
// poisoned with 0xFF bytes (NaN in bf16/fp32) before a kernel runs; guards_intact() checks that
// nothing was written outside it.
class GuardedBuffer {
 public:
  static constexpr size_t kGuardBytes = 4096;
  explicit GuardedBuffer(size_t body_bytes);
  void* body() const { return base_.get() + kGuardBytes; }
  size_t body_bytes() const { return body_bytes_; }
  void poison();  // body := 0xFF.., guards := 0xA5..
  bool guards_intact() const;
  std::vector<uint8_t> download_body() const;

 private:
  DeviceBuffer<uint8_t> base_;
  size_t body_bytes_;
};

bool device_available();  // a CUDA device can be used (false on CI machines)
// The current device has compute capability 9.0, where the sm_90a kernels (wgmma, setmaxnreg)
// of this build run; elsewhere their compute_90 PTX has no wgmma and traps, so every launch of
// one is guarded by this (queried once per process).
bool device_is_sm90();
// A pointer fit for 16-byte vector loads and stores.
inline bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}
std::string device_name();
// SMs of the current device, queried once per process (launch heuristics call it per launch).
int sm_count();

// Blocks of `kernel` one SM holds at once at this block size and dynamic shared memory
// (occupancy API; at least 1, so a grid sized from it is never empty).
template <class Kernel>
int blocks_per_sm(Kernel kernel, int threads, size_t dynamic_smem = 0) {
  int n = 0;
  JB_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, dynamic_smem));
  return n > 1 ? n : 1;
}
// Opts kernel K into `bytes` of dynamic shared memory per block (required above 48 KB, and before
// an occupancy query at that size): once per kernel and process, thread-safe; a failure throws
// and the next call tries again. `bytes` must be the same at every call for one kernel.
template <auto K>
void allow_dynamic_smem(size_t bytes) {
  static std::once_flag once;
  std::call_once(once, [bytes] {
    JB_CUDA(cudaFuncSetAttribute(K, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(bytes)));
  });
}
// The value among `values` whose name(v) is s, for the parsers of the kernels' variant and path
// knobs (each name written once, in its name function); otherwise Error{Usage} "unknown <what>
// '<s>' (<every name>)".
template <class E, size_t N>
E parse_by_name(const std::string& s, const E (&values)[N], const char* (*name)(E),
                const char* what) {
  std::string names;
  for (E v : values) {
    if (s == name(v)) return v;
    names += (names.empty() ? "" : ", ") + std::string(name(v));
  }
  fail(ErrorKind::Usage, "unknown " + std::string(what) + " '" + s + "' (" + names + ")");
}
// Registers device_info() as core/result's GPU metadata provider (call once in main()).
void register_device_info();

// bf16 <-> float vectors (host side) for uploading inputs and reading outputs.
std::vector<bf16> to_bf16(const std::vector<float>& v);
std::vector<float> from_bf16(const std::vector<bf16>& v);

// Process-wide cuBLAS / cuBLASLt handles and a 32 MiB workspace on the default stream.
cublasHandle_t cublas();
cublasLtHandle_t cublaslt();

}  // namespace jb::cuda
