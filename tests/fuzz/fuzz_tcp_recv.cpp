// libFuzzer target: the receiving side of a TCP link (transport/tcp_transport.h,
// TcpConnection::recv) as a hostile peer drives it: the bytes arrive on a real socket (a socketpair; the peer's end is
// shut after them, so nothing blocks), read in pieces with the buffer growth that guards against
// lying lengths, and, on an encrypted link, opened as a stream kSealChunk bytes at a time.
// Byte 0 picks the mode:
//   bit 0 clear: plain link, the rest is raw bytes. Each frame recv() returns must be exactly the
//     next header + payload of the input (as decode_header reads it), and the first malformed or
//     truncated one must end it with meshlm::Error (ConnectionError at the end of the bytes).
//   bit 0 set: encrypted link (enable_aead with keys known to the harness), structure-aware:
//     the rest is a list of frames [type byte][u8 length][payload] that the harness seals as the
//     peer would; byte 1 optionally names one bit of the sealed stream to flip. Untouched frames
//     open to exactly what was sealed, in order; from a touched frame on nothing opens again.
//   bit 1: the payload limit is 1 MiB instead of kMaxPayload (1 GiB).
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/error.h"
#include "transport/aead.h"
#include "transport/frame.h"
#include "transport/tcp_transport.h"
#include "fuzz_common.h"

using namespace meshlm::transport;
using meshlm::fuzz::require;

namespace {

AeadKeys keys(bool client_side) {
  static const uint8_t client_nonce[32] = {7, 8, 9};
  static const uint8_t server_nonce[32] = {10, 11, 12};
  return derive_aead_keys("fuzz-secret", client_nonce, server_nonce, client_side);
}

// Receives every frame the connection yields until it throws; returns them.
std::vector<Frame> drain(TcpConnection& conn, uint64_t max_payload, bool& ended_with_error) {
  std::vector<Frame> frames;
  for (;;) {
    try {
      frames.push_back(conn.recv(/*timeout_ms=*/0, max_payload));
    } catch (const meshlm::Error&) {  // ConnectionError and TimeoutError are meshlm::Errors
      ended_with_error = true;
      return frames;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  meshlm::fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool sealed = data[0] & 1;
  const uint64_t max_payload = (data[0] & 2) ? (1 << 20) : kMaxPayload;
  std::span<const uint8_t> rest(data + 1, size - 1);

  // What the peer writes, and what recv() must return.
  std::vector<uint8_t> wire;
  std::vector<Frame> expected;
  size_t touched_frame = SIZE_MAX;  // index of the first frame with a flipped bit
  const AeadKeys client = keys(true), server = keys(false);
  if (!sealed) {
    wire.assign(rest.begin(), rest.end());
    std::span<const uint8_t> left = rest;
    while (left.size() >= kFrameHeaderSize) {
      FrameHeader h;
      try {
        h = decode_header(left.first(kFrameHeaderSize), max_payload);
      } catch (const meshlm::Error&) {
        break;
      }
      if (left.size() - kFrameHeaderSize < h.payload_size) break;
      Frame f;
      f.header = h;
      f.payload.assign(left.begin() + kFrameHeaderSize,
                       left.begin() + kFrameHeaderSize + static_cast<ptrdiff_t>(h.payload_size));
      expected.push_back(std::move(f));
      left = left.subspan(kFrameHeaderSize + h.payload_size);
    }
  } else {
    if (rest.empty()) return 0;
    const uint8_t flip = rest[0];
    rest = rest.subspan(1);
    AeadStream sealer(client.cipher, client.send, true);
    std::vector<size_t> frame_end;  // offset in `wire` where each sealed frame ends
    while (rest.size() >= 2) {
      const FrameType type = meshlm::fuzz::kAllFrameTypes[rest[0] % meshlm::fuzz::kNumFrameTypes];
      const size_t n = std::min<size_t>(rest[1], rest.size() - 2);
      std::span<const uint8_t> payload = rest.subspan(2, n);
      auto bytes = seal_frame(sealer, type, payload);
      wire.insert(wire.end(), bytes.begin(), bytes.end());
      frame_end.push_back(wire.size());
      Frame f;
      f.header.type = static_cast<uint16_t>(type);
      f.header.payload_size = n;
      f.payload.assign(payload.begin(), payload.end());
      expected.push_back(std::move(f));
      rest = rest.subspan(2 + n);
    }
    if (flip != 0 && !wire.empty()) {  // flip bit `flip * 7` of the stream (spread over it)
      const size_t bit = (size_t(flip) * 7) % (wire.size() * 8);
      wire[bit / 8] ^= uint8_t(1u << (bit % 8));
      touched_frame = 0;
      while (frame_end[touched_frame] <= bit / 8) ++touched_frame;
    }
  }

  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) __builtin_trap();
  size_t off = 0;
  while (off < wire.size()) {  // the input is far smaller than the socket buffer
    ssize_t w = ::write(fds[1], wire.data() + off, wire.size() - off);
    if (w <= 0) __builtin_trap();
    off += static_cast<size_t>(w);
  }
  ::shutdown(fds[1], SHUT_WR);
  TcpConnection conn(fds[0], "fuzz-peer:1");
  if (sealed) require(conn.enable_aead(server));
  bool ended_with_error = false;
  std::vector<Frame> got = drain(conn, max_payload, ended_with_error);
  ::close(fds[1]);
  require(ended_with_error);  // the bytes end, so recv() ends with an error

  const size_t good = std::min(expected.size(), touched_frame);
  if (!sealed) {
    require(got.size() == expected.size());
  } else {
    require(got.size() == good);  // nothing opens from a touched frame on
  }
  for (size_t i = 0; i < got.size() && i < expected.size(); ++i) {
    require(got[i].header.type == expected[i].header.type);
    require(got[i].header.payload_size == got[i].payload.size());
    require(got[i].payload == expected[i].payload);
  }
  return 0;
}
