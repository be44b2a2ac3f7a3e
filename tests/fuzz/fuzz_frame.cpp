// libFuzzer target for the frame and message decoders: any bytes must either decode or throw
// meshlm::Error, never crash, hang or read out of bounds. Decoded messages are re-encoded and
// decoded again to check that the round trip is stable.
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/error.h"
#include "dist/frame.h"
#include "dist/messages.h"

using namespace meshlm::dist;

namespace {

void decode_payload(uint16_t type, std::span<const uint8_t> p) {
  switch (static_cast<FrameType>(type)) {
    case FrameType::Hello: encode_hello(decode_hello(p)); break;
    case FrameType::Challenge: encode_challenge(decode_challenge(p)); break;
    case FrameType::Auth: encode_auth(decode_auth(p)); break;
    case FrameType::Load: decode_load(encode_load(decode_load(p))); break;
    case FrameType::Loaded: decode_loaded(p); break;
    case FrameType::Forward: {
      ForwardMsg m = decode_forward(p);
      auto again = encode_forward(m);
      if (again.size() != p.size()) __builtin_trap();  // a canonical encoding
      decode_forward(again);
      break;
    }
    case FrameType::Result: decode_result(encode_result(decode_result(p))); break;
    case FrameType::Release: decode_release(p); break;
    case FrameType::Ping:
    case FrameType::Pong: decode_u64(p); break;
    case FrameType::Error: decode_text(p); break;
    default: break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> bytes(data, size);
  // As a whole frame (header + payload) ...
  try {
    Frame f = decode_frame(bytes, 1 << 20);
    decode_payload(f.header.type, f.payload);
  } catch (const meshlm::Error&) {
  }
  // ... and as a bare payload of the type named by the first byte, so that the fuzzer reaches
  // the message decoders without first having to find the magic.
  if (size >= 1) {
    static const uint16_t kTypes[] = {1, 2, 3, 10, 11, 20, 21, 22, 30, 40};
    uint16_t type = kTypes[data[0] % (sizeof(kTypes) / sizeof(kTypes[0]))];
    try {
      decode_payload(type, bytes.subspan(1));
    } catch (const meshlm::Error&) {
    }
  }
  return 0;
}
