// libFuzzer target: every wire message decoder (handshake hello / challenge / auth / welcome
// node info, load, loaded, forward, result, release, model sync manifest-request / manifest /
// tensor-request / tensor-data, text and u64 frames) on a bare payload. The first byte picks the
// message type, so the fuzzer reaches each decoder without first building a frame header (that is
// fuzz_frame's job). Any payload must decode or throw meshlm::Error; what decodes re-encodes to
// the same bytes (message_payloads.h).
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "message_payloads.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  using namespace meshlm::fuzz;
  auto type = kAllFrameTypes[data[0] % kNumFrameTypes];
  try {
    decode_payload(type, {data + 1, size - 1});
  } catch (const meshlm::Error&) {
  }
  return 0;
}
