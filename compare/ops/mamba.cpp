#include "compare/registry.hpp"
namespace jb::cmp {
void register_mamba_ops(Registry&) {}
}  // namespace jb::cmp
