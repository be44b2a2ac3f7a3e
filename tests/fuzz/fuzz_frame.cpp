// libFuzzer target for the frame layer (transport/frame.h): the 20-byte header and whole frames,
// and behind them every message decoder. Three views of each input:
//   1. the bytes as one whole frame (magic, version, type, flags, length, payload);
//   2. the bytes as a header alone, with a small and the default payload limit;
//   3. structure-aware: byte 0 picks a frame type, byte 1 the version (mostly ours), the rest is
//      the payload, wrapped in a valid header by encode_frame: the fuzzer gets past the magic and
//      length checks every time and spends its effort on the payload decoders.
// Any input must decode or throw meshlm::Error; decoded payloads re-encode to the same bytes.
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/error.h"
#include "transport/frame.h"
#include "message_payloads.h"

using namespace meshlm::transport;
using meshlm::fuzz::decode_payload;
using meshlm::fuzz::require;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  meshlm::fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> bytes(data, size);
  // 1. A whole frame.
  try {
    Frame f = decode_frame(bytes, 1 << 20);
    require(f.payload.size() == f.header.payload_size && f.payload.size() + kFrameHeaderSize == size);
    // Type and flags are checked for our version only (another one is the handshake's to report).
    if (f.header.version == kProtocolVersion) require(is_known_frame_type(f.header.type));
    decode_payload(f.type(), f.payload);
  } catch (const meshlm::Error&) {
  }
  // 2. A header alone.
  if (size >= kFrameHeaderSize) {
    for (uint64_t limit : {uint64_t{64}, kMaxPayload}) {
      try {
        FrameHeader h = decode_header(bytes.first(kFrameHeaderSize), limit);
        require(h.payload_size <= limit);
        if (h.version == kProtocolVersion) require(is_known_frame_type(h.type) && h.flags == 0);
        auto again = encode_header(h);
        require(std::equal(again.begin(), again.end(), data));  // canonical, flags included
      } catch (const meshlm::Error&) {
      }
    }
  }
  // 3. A valid header around a fuzzed payload.
  if (size >= 2) {
    const FrameType type = meshlm::fuzz::kAllFrameTypes[data[0] % meshlm::fuzz::kNumFrameTypes];
    const uint16_t version = data[1] < 0xf0 ? kProtocolVersion : uint16_t(data[1] - 0xf0);
    std::span<const uint8_t> payload = bytes.subspan(2);
    auto frame = encode_frame(type, payload, version);
    Frame f = decode_frame(frame);  // must accept what encode_frame wrote
    require(f.type() == type && f.header.version == version);
    require(std::equal(f.payload.begin(), f.payload.end(), payload.begin(), payload.end()));
    try {
      decode_payload(type, f.payload);
    } catch (const meshlm::Error&) {
    }
  }
  return 0;
}
