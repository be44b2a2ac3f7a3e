// libFuzzer target: the safetensors header parser must reject any malformed input with an Error.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto tensors = meshlm::model::parse_safetensors_header(data, size, "fuzz", 0);
    for (const auto& t : tensors)
      if (t.offset + t.nbytes > size) __builtin_trap();  // a validated tensor must lie inside the file
  } catch (const meshlm::Error&) {
  }
  return 0;
}
