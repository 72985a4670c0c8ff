// Hopper (sm_90) PTX wrappers shared by the kernels that use them: mbarriers (the selective
// scan's warp-specialised block, the grouped expert GEMM), the tensor-memory accelerator's 2-D
// tile copy, and the warpgroup MMA (wgmma) plumbing: fences, commit and wait, shared-memory
// matrix descriptors, register reallocation (attention prefill, the grouped expert GEMM).
//
// mbarrier and the TMA copy are sm_90; wgmma and setmaxnreg are sm_90a only, so they exist only
// where JB_HAVE_SM90A is 1 (the 90a-real build); the compute_90 PTX of a kernel that needs them
// traps, and the host keeps launches away with a compute-capability check.
#pragma once
#include <cstdint>

#include "cuda/device_util.cuh"

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define JB_HAVE_SM90A 1
#else
#define JB_HAVE_SM90A 0
#endif

namespace jb::cuda::dev {

// ---- mbarriers in shared memory (PTX ISA: mbarrier). arrive has release and try_wait acquire
// semantics at CTA scope, so the shared-memory writes before an arrive are visible after the
// wait that observes its phase.
__device__ __forceinline__ void mbar_init(uint64_t* bar, unsigned count) {
  asm volatile("mbarrier.init.shared.b64 [%0], %1;" ::"r"(smem_addr(bar)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile("{ .reg .b64 st; mbarrier.arrive.shared.b64 st, [%0]; }" ::"r"(smem_addr(bar))
               : "memory");
}
// Waits until the phase with this parity (0, 1, 0, ... for its 1st, 2nd, 3rd completion) is done
// (try_wait suspends the warp for a while in hardware instead of spinning on issue slots).
__device__ __forceinline__ void mbar_wait(uint64_t* bar, unsigned parity) {
  uint32_t done = 0;
  while (!done)
    asm volatile(
        "{ .reg .pred p; mbarrier.try_wait.parity.shared.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
        : "=r"(done)
        : "r"(smem_addr(bar)), "r"(parity)
        : "memory");
}
// One arrival that also announces `bytes` of asynchronous (TMA) writes: the phase completes when
// every arrival is in and that many bytes have landed.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("{ .reg .b64 st; mbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1; }" ::"r"(
                   smem_addr(bar)),
               "r"(bytes)
               : "memory");
}
// Makes initialised mbarriers visible to the async proxy (TMA completes transactions on them).
__device__ __forceinline__ void fence_mbarrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}

// ---- TMA: a 2-D box of the tensor map's tile shape from coordinates (c0 innermost, c1) into
// shared memory at dst, completing `bytes` on bar (the whole box counts, out-of-range elements
// are written as zeros). tmap is the address of a __grid_constant__ CUtensorMap parameter.
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const void* tmap, int c0, int c1,
                                            uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3}], [%4];" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(tmap)), "r"(c0), "r"(c1), "r"(smem_addr(bar))
      : "memory");
}

// Makes this thread's generic-proxy shared-memory writes (st.shared, landed cp.async) visible to
// the async proxy that wgmma reads through; a block barrier must follow.
__device__ __forceinline__ void fence_proxy_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// Shared-memory matrix descriptor (PTX ISA, "matrix descriptor"), 128-byte swizzle (mode 1):
// start address, leading byte offset, stride byte offset, all in bytes here.
__device__ __forceinline__ uint64_t desc_sw128(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return uint64_t((addr & 0x3FFFFu) >> 4) | (uint64_t((lbo >> 4) & 0x3FFFu) << 16) |
         (uint64_t((sbo >> 4) & 0x3FFFu) << 32) | (uint64_t(1) << 62);
}

#if JB_HAVE_SM90A
__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_wait_all() {
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
}
// Waits until at most one committed wgmma group of this warpgroup is still in flight.
__device__ __forceinline__ void wgmma_wait_one() {
  asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
}
// Register reallocation between warpgroups (every warp of the warpgroup executes it).
template <int kRegs>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}
template <int kRegs>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}
#endif

}  // namespace jb::cuda::dev
