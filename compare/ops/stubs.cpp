// CPU-only builds (no JAMBENCH_HAVE_CUDA): the registry's listing without kernels, so that
// `jambench compare --list` and the CPU tests see the ops, and every case reports "skipped: no
// CUDA in this build". RMS_NORM keeps its case grid and references (norm_cases.hpp). The other
// families are empty here until their owners add a listing (cases and references, no kernel).
#include "compare/ops/norm_cases.hpp"
#include "compare/registry.hpp"

namespace jb::cmp {

void register_norm_ops(Registry& r) {
  r.add(norm::rmsnorm_op_listing());
}
void register_mamba_ops(Registry&) {}
void register_attention_ops(Registry&) {}
void register_moe_ops(Registry&) {}

}  // namespace jb::cmp
