// Element-wise host ops shared by the cpu and ref backends (host_backends.h). Built with
// -ffp-contract=off (CMakeLists.txt): each multiply and add rounds on its own on every compiler
// and target, so both backends and every batch shape give the same bits.
#include "backend/host_backends.h"

namespace meshlm::backend {

void add_scaled_host(float* dst, const float* src, float scale, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] += scale * src[i];
}

}  // namespace meshlm::backend
