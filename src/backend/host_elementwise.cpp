// Element-wise host ops shared by the cpu and ref backends (host_backends.h). Built with
// -ffp-contract=off (CMakeLists.txt): each multiply and add rounds on its own on every compiler
// and target, so both backends and every batch shape give the same bits.
#include "backend/host_backends.h"

#include <cstring>

#include "core/error.h"
#include "formats/quants.h"

namespace meshlm::backend {

void add_scaled_host(float* dst, const float* src, float scale, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] += scale * src[i];
}

void store_kv_host(void* dst, WeightType type, const float* src, int64_t n) {
  if (type == WeightType::F32) {
    std::memcpy(dst, src, size_t(n) * sizeof(float));
    return;
  }
  try {
    formats::quantize_row(type, src, n, dst);
  } catch (const Error& e) {
    throw Error("kv", std::string("cannot store a key/value in the ") +
                          std::string(formats::name(type)) + " cache: " + e.message());
  }
}

}  // namespace meshlm::backend
