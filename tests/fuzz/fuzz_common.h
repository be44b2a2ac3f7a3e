// Shared helpers of the libFuzzer targets (tests/fuzz/README.md).
//
// Each target catches only the exceptions its parser documents (meshlm::Error and its subclasses,
// server::ApiError for request bodies): anything else (std::out_of_range, nlohmann's
// json::exception, std::bad_alloc, ...) escapes, and libFuzzer reports it as a crash with the input.
// __builtin_trap() marks a broken invariant (a decoded message that does not re-encode to the
// same bytes, a validated tensor outside its file, ...).
#pragma once

#include <algorithm>
#include <functional>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/log.h"
#include "transport/frame.h"
#include "transport/transport.h"

namespace meshlm::fuzz {

// The library logs refusals at warn level: silence it, a fuzzer runs millions of them.
inline void quiet_logs() { log::set_level("off"); }

inline void require(bool ok) {
  if (!ok) __builtin_trap();
}

inline void require_same(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  require(a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin()));
}

inline std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Every frame type the protocol defines, for targets that pick one with a byte.
inline constexpr transport::FrameType kAllFrameTypes[] = {transport::FrameType::Hello,
                                                          transport::FrameType::Challenge,
                                                          transport::FrameType::Auth,
                                                          transport::FrameType::Welcome,
                                                          transport::FrameType::Load,
                                                          transport::FrameType::Loaded,
                                                          transport::FrameType::ManifestRequest,
                                                          transport::FrameType::Manifest,
                                                          transport::FrameType::TensorRequest,
                                                          transport::FrameType::TensorData,
                                                          transport::FrameType::TensorsDone,
                                                          transport::FrameType::SyncRefused,
                                                          transport::FrameType::Forward,
                                                          transport::FrameType::Result,
                                                          transport::FrameType::Release,
                                                          transport::FrameType::Ping,
                                                          transport::FrameType::Pong,
                                                          transport::FrameType::Error,
                                                          transport::FrameType::Shutdown,
                                                          transport::FrameType::Collective};
inline constexpr size_t kNumFrameTypes = sizeof(kAllFrameTypes) / sizeof(kAllFrameTypes[0]);

// A Connection with no socket behind it: recv() asks `next_frame` for what the peer sends (it may
// look at what was sent so far, to answer like a peer would), send() keeps the frames.
class ScriptedConnection : public transport::Connection {
 public:
  struct Sent {
    transport::FrameType type;
    std::vector<uint8_t> payload;
  };
  using NextFrame = std::function<bool(ScriptedConnection&, transport::Frame&)>;

  explicit ScriptedConnection(NextFrame next) : next_(std::move(next)) {}

  void send_pieces(transport::FrameType type,
                   std::span<const std::span<const uint8_t>> pieces) override {
    if (closed_) throw transport::ConnectionError("fuzz: send on a closed connection");
    Sent s{type, {}};
    for (auto p : pieces) s.payload.insert(s.payload.end(), p.begin(), p.end());
    sent.push_back(std::move(s));
  }
  transport::Frame recv(int, uint64_t max_payload) override {
    if (closed_) throw transport::ConnectionError("fuzz: recv on a closed connection");
    transport::Frame f;
    if (!next_(*this, f)) throw transport::ConnectionError("fuzz: the peer closed the connection");
    // What a real transport guarantees before handing a frame over (decode_header's checks).
    if (f.payload.size() > max_payload) throw Error("protocol", "fuzz: frame too large");
    f.header.payload_size = f.payload.size();
    return f;
  }
  void close() override { closed_ = true; }
  std::string peer() const override { return "fuzz-peer:1"; }

  std::vector<Sent> sent;

 private:
  NextFrame next_;
  bool closed_ = false;
};

}  // namespace meshlm::fuzz
