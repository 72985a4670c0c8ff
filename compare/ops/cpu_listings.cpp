// CPU-only builds (no JAMBENCH_HAVE_CUDA): the registry's listing without kernels, so that
// `jambench compare --list` / `--list-cases` and the CPU tests see every op and case grid, and
// every case reports "skipped: no kernel in this build". RMS_NORM and the Mamba ops keep their
// CPU references too (norm_cases.hpp, mamba_cases.hpp); the attention and MoE listings carry
// names, descriptions and case grids (attention_cases.hpp, moe_cases.hpp; their inputs and
// references live with the kernels in attention.cpp and moe.cpp).
#include "compare/ops/attention_cases.hpp"
#include "compare/ops/mamba_cases.hpp"
#include "compare/ops/moe_cases.hpp"
#include "compare/ops/norm_cases.hpp"
#include "compare/registry.hpp"

namespace jb::cmp {

void register_norm_ops(Registry& r) {
  r.add(norm::rmsnorm_op_listing());
}
void register_mamba_ops(Registry& r) {
  for (OpInfo& op : mamba::listings()) r.add(std::move(op));
}
void register_attention_ops(Registry& r) {
  for (OpInfo& op : attn::listings()) r.add(std::move(op));
}
void register_moe_ops(Registry& r) {
  for (OpInfo& op : moe_grid::listings()) r.add(std::move(op));
}

}  // namespace jb::cmp
