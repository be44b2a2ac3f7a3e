// libFuzzer target for the encrypted framing (transport/aead.h): what a hostile peer or a machine
// in the middle can send on a link that was set up with a secret. Three views of each input:
//   1. the bytes as a sealed frame from the peer: must throw meshlm::Error (a malformed header)
//      or ConnectionError (not authenticated) and never open;
//   2. structure-aware: byte 0 picks a frame type, the rest is a payload sealed with the real
//      key; then bytes 1..3 of the input pick a bit to flip in the sealed frame (or none): an
//      untouched frame opens to the same payload, a touched one never opens;
//   3. ordering: two frames sealed in order open in order, and the second one opened first
//      (a reordered or replayed frame) is refused.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/error.h"
#include "transport/aead.h"
#include "transport/frame.h"
#include "transport/transport.h"
#include "fuzz_common.h"

using namespace meshlm::transport;
using meshlm::fuzz::require;

namespace {

AeadKeys keys(bool client_side) {
  static const uint8_t client_nonce[32] = {1, 2, 3};
  static const uint8_t server_nonce[32] = {4, 5, 6};
  return derive_aead_keys("fuzz-secret", client_nonce, server_nonce, client_side);
}

bool opens(AeadStream& opener, std::span<const uint8_t> bytes, Frame& out) {
  try {
    out = open_frame(opener, bytes, "fuzz peer", 1 << 20);
    return true;
  } catch (const meshlm::Error&) {  // ConnectionError is one
    return false;
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  meshlm::fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const AeadKeys client = keys(true), server = keys(false);
  std::span<const uint8_t> bytes(data, size);
  Frame f;
  // 1. Raw bytes as a sealed frame: no key is known to the fuzzer, so nothing may open.
  {
    AeadStream opener(server.cipher, server.recv, false);
    require(!opens(opener, bytes, f));
  }
  if (size < 1) return 0;
  const FrameType type = meshlm::fuzz::kAllFrameTypes[data[0] % meshlm::fuzz::kNumFrameTypes];
  std::span<const uint8_t> payload = bytes.subspan(1);
  // 2. A real sealed frame, maybe with one bit flipped.
  {
    AeadStream sealer(client.cipher, client.send, true);
    AeadStream opener(server.cipher, server.recv, false);
    std::vector<uint8_t> sealed = seal_frame(sealer, type, payload);
    require(sealed.size() == kFrameHeaderSize + payload.size() + kAeadTagSize);
    size_t flip = size >= 4 ? (size_t(data[1]) | size_t(data[2]) << 8 | size_t(data[3]) << 16) : 0;
    const bool touched = flip != 0 && flip - 1 < sealed.size() * 8;
    if (touched) sealed[(flip - 1) / 8] ^= uint8_t(1u << ((flip - 1) % 8));
    const bool ok = opens(opener, sealed, f);
    if (touched) {
      require(!ok);
    } else {
      require(ok && f.type() == type && f.payload.size() == payload.size() &&
              std::equal(payload.begin(), payload.end(), f.payload.begin()));
    }
  }
  // 3. Two frames: in order they open; the second first (reordered/replayed) does not.
  {
    AeadStream sealer(client.cipher, client.send, true);
    auto first = seal_frame(sealer, type, payload);
    auto second = seal_frame(sealer, FrameType::Ping, payload.first(payload.size() / 2));
    AeadStream in_order(server.cipher, server.recv, false);
    require(opens(in_order, first, f) && opens(in_order, second, f));
    AeadStream swapped(server.cipher, server.recv, false);
    require(!opens(swapped, second, f));
    // A frame sent back to its sender (the other direction's key) never opens either.
    AeadStream reflected(client.cipher, client.recv, false);
    require(!opens(reflected, first, f));
  }
  return 0;
}
