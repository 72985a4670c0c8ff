#include "cuda/common.cuh"

#include <cstring>

#include "core/bf16.hpp"
#include "core/result.hpp"

namespace jb::cuda {

void throw_cuda(cudaError_t err, const char* call, const char* file, int line) {
  ErrorKind kind = err == cudaErrorMemoryAllocation ? ErrorKind::OutOfMemory : ErrorKind::Cuda;
  fail(kind, std::string(call) + " failed at " + file + ":" + std::to_string(line) + ": " +
                 cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

void throw_cublas(cublasStatus_t st, const char* call, const char* file, int line) {
  fail(ErrorKind::Cuda, std::string(call) + " failed at " + file + ":" + std::to_string(line) +
                            ": " + cublasGetStatusName(st) + " (" + cublasGetStatusString(st) +
                            ")");
}

void* device_alloc(size_t bytes) {
  if (bytes == 0) bytes = 1;
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // allocation failure is not sticky: clear it
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    fail(ErrorKind::OutOfMemory, "cudaMalloc of " + std::to_string(bytes) +
                                     " bytes failed: " + std::to_string(free_b) +
                                     " bytes free of " + std::to_string(total_b) + " (short by " +
                                     std::to_string(bytes > free_b ? bytes - free_b : 0) + ")");
  }
  if (err != cudaSuccess) throw_cuda(err, "cudaMalloc", __FILE__, __LINE__);
  return p;
}

GuardedBuffer::GuardedBuffer(size_t body_bytes)
    : base_(body_bytes + 2 * kGuardBytes), body_bytes_(body_bytes) {
  poison();
}

void GuardedBuffer::poison() {
  JB_CUDA(cudaMemset(base_.get(), 0xA5, kGuardBytes));
  JB_CUDA(cudaMemset(base_.get() + kGuardBytes, 0xFF, body_bytes_));
  JB_CUDA(cudaMemset(base_.get() + kGuardBytes + body_bytes_, 0xA5, kGuardBytes));
}

bool GuardedBuffer::guards_intact() const {
  std::vector<uint8_t> g(kGuardBytes);
  JB_CUDA(cudaMemcpy(g.data(), base_.get(), kGuardBytes, cudaMemcpyDeviceToHost));
  for (uint8_t b : g)
    if (b != 0xA5) return false;
  JB_CUDA(cudaMemcpy(g.data(), base_.get() + kGuardBytes + body_bytes_, kGuardBytes,
                     cudaMemcpyDeviceToHost));
  for (uint8_t b : g)
    if (b != 0xA5) return false;
  return true;
}

std::vector<uint8_t> GuardedBuffer::download_body() const {
  std::vector<uint8_t> h(body_bytes_);
  JB_CUDA(cudaMemcpy(h.data(), body(), body_bytes_, cudaMemcpyDeviceToHost));
  return h;
}

bool device_available() {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return n > 0;
}

int sm_count() {
  static const int n = [] {
    int dev = 0, v = 0;
    JB_CUDA(cudaGetDevice(&dev));
    JB_CUDA(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev));
    return v;
  }();
  return n;
}

bool device_is_sm90() {
  static const bool ok = [] {
    int dev = 0, major = 0, minor = 0;
    JB_CUDA(cudaGetDevice(&dev));
    JB_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    JB_CUDA(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    return major == 9 && minor == 0;
  }();
  return ok;
}

std::string device_name() {
  if (!device_available()) return "none";
  cudaDeviceProp prop;
  JB_CUDA(cudaGetDeviceProperties(&prop, 0));
  return prop.name;
}

// GPU fields of the run metadata (ecosystem.md §5.4): name, memory, SM count, clocks, driver and
// runtime versions. Registered by every CUDA-enabled program before it writes a result.
nlohmann::json device_info() {
  nlohmann::json j;
  if (!device_available()) {
    j["present"] = false;
    return j;
  }
  cudaDeviceProp prop;
  JB_CUDA(cudaGetDeviceProperties(&prop, 0));
  int sm_clock_khz = 0, mem_clock_khz = 0, driver = 0, runtime = 0;
  JB_CUDA(cudaDeviceGetAttribute(&sm_clock_khz, cudaDevAttrClockRate, 0));
  JB_CUDA(cudaDeviceGetAttribute(&mem_clock_khz, cudaDevAttrMemoryClockRate, 0));
  JB_CUDA(cudaDriverGetVersion(&driver));
  JB_CUDA(cudaRuntimeGetVersion(&runtime));
  j["present"] = true;
  j["name"] = prop.name;
  j["memory_bytes"] = prop.totalGlobalMem;
  j["sm_count"] = prop.multiProcessorCount;
  j["compute_capability"] = std::to_string(prop.major) + "." + std::to_string(prop.minor);
  j["max_sm_clock_mhz"] = sm_clock_khz / 1000;
  j["max_mem_clock_mhz"] = mem_clock_khz / 1000;
  j["cuda_driver_version"] = driver;
  j["cuda_runtime_version"] = runtime;
  return j;
}

void register_device_info() {
  jb::set_device_info_provider(device_info);
}

std::vector<bf16> to_bf16(const std::vector<float>& v) {
  std::vector<bf16> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    uint16_t b = float_to_bf16_bits(v[i]);
    std::memcpy(static_cast<void*>(&out[i]), &b, 2);
  }
  return out;
}

std::vector<float> from_bf16(const std::vector<bf16>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    uint16_t b;
    std::memcpy(&b, static_cast<const void*>(&v[i]), 2);
    out[i] = bf16_bits_to_float(b);
  }
  return out;
}

cublasHandle_t cublas() {
  static cublasHandle_t h = [] {
    cublasHandle_t x;
    JB_CUBLAS(cublasCreate(&x));
    // Default math: fp32 GEMMs must pass CUBLAS_COMPUTE_32F explicitly (never the _FAST_TF32
    // compute types) so fp32 comparisons are meaningful (ecosystem.md §1.7).
    JB_CUBLAS(cublasSetMathMode(x, CUBLAS_DEFAULT_MATH));
    return x;
  }();
  return h;
}

cublasLtHandle_t cublaslt() {
  static cublasLtHandle_t h = [] {
    cublasLtHandle_t x;
    JB_CUBLAS(cublasLtCreate(&x));
    return x;
  }();
  return h;
}

}  // namespace jb::cuda
