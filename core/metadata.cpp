// Build identity for the run metadata (ecosystem.md §5.4). core/CMakeLists passes JB_GIT_SHA and
// JB_GIT_DIRTY to this file only, so a new commit recompiles one object.
#include "core/result.hpp"

#ifndef JB_GIT_SHA
#define JB_GIT_SHA "unknown"
#endif
#ifndef JB_GIT_DIRTY
#define JB_GIT_DIRTY 0
#endif

namespace jb {

const char* build_git_sha() {
  return JB_GIT_SHA;
}
bool build_git_dirty() {
  return JB_GIT_DIRTY != 0;
}

}  // namespace jb
