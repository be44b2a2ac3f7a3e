// Wire frames between pipeline stages: a fixed 20-byte little-endian header followed by a
// payload. The header layout never changes between protocol versions, so a peer can always read
// the version and refuse with a clear message.
//
//   offset size field
//   0      4    magic "MLMF"
//   4      2    protocol version
//   6      2    frame type (FrameType)
//   8      4    flags (reserved, 0)
//   12     8    payload length in bytes (<= kMaxPayload)
//
// PayloadWriter / PayloadReader encode the fields inside a payload. The reader checks every
// length and count against the bytes that remain before using it and throws
// Error("protocol", ...) on anything malformed, so a hostile frame cannot crash the process.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace meshlm::transport {

static_assert(std::endian::native == std::endian::little,
              "meshlm's wire format copies f32 arrays verbatim and assumes a little-endian host");

inline constexpr uint32_t kFrameMagic = 0x464D4C4Du;  // "MLMF" as bytes on the wire
inline constexpr uint16_t kProtocolVersion = 13;  // 2: welcome carries NodeInfo; 3: model sync; 4: stage times; 5: heartbeats, prompt_tokens in sampling, AEAD-sealed frames after a handshake with a secret; 6: model sync of GGUF and MLX models (manifest format + GGUF part headers, U32 entries); 7: token masks in forward frames (structured outputs); 8: per-stage queue and send times in forward and result frames; 9: tensor-parallel groups in load frames; 10: prefix-cache operations in forward frames; 11: the KV cache type in load frames; 12: top_logits / top_log_z per chunk in forward frames; 13: tensor-parallel groups as later pipeline stages (workers of rank 0, member ids with the group's first layer; NodeInfo::read_bytes_per_s)
inline constexpr size_t kFrameHeaderSize = 20;
inline constexpr uint64_t kMaxPayload = uint64_t{1} << 30;  // 1 GiB
inline constexpr uint64_t kMaxHandshakePayload = 64 * 1024;  // before the peer is authenticated
// A loaded worker sends a pong to its coordinator this often, and the coordinator a ping to each
// worker, whatever else they are doing: silence means the peer is gone (remote_pipeline.h).
inline constexpr int kHeartbeatIntervalMs = 1000;

enum class FrameType : uint16_t {
  Hello = 1,      // client -> server: version, role, model fingerprint, nonce
  Challenge = 2,  // server -> client: version, fingerprint, nonce, server proof
  Auth = 3,       // client -> server: client proof
  Welcome = 4,    // server -> client: handshake accepted
  Load = 10,      // coordinator -> worker: model dir, layer range, next stage
  Loaded = 11,    // worker -> coordinator: stage ready
  // Model sync during a load (model_sync.h): the worker asks, the coordinator answers.
  ManifestRequest = 12,  // worker -> coordinator: layer range
  Manifest = 13,         // coordinator -> worker: config.json, the range's tensors and hashes
  TensorRequest = 14,    // worker -> coordinator: (tensor name, start offset) list
  TensorData = 15,       // coordinator -> worker: request index, offset, raw bytes
  TensorsDone = 16,      // coordinator -> worker: every requested range was sent
  SyncRefused = 17,      // coordinator -> worker: a request was refused; the connection stays
  Forward = 20,   // a micro-batch's chunks, tokens and activations
  Result = 21,    // last stage -> coordinator: sampled tokens / logits / error
  Release = 22,   // free sequences' KV caches and samplers
  Ping = 30,
  Pong = 31,
  Error = 40,     // a message for the peer; the sender closes the connection after it
  Shutdown = 41,  // coordinator is done with this worker
  // Tensor parallelism: one rank's data for a send/recv or collective of a Group (collective.h).
  Collective = 50,
};

// Name for logs and errors ("forward", "unknown(77)").
std::string frame_type_name(uint16_t type);
bool is_known_frame_type(uint16_t type);

struct FrameHeader {
  uint16_t version = kProtocolVersion;
  uint16_t type = 0;
  uint32_t flags = 0;
  uint64_t payload_size = 0;
};

struct Frame {
  FrameHeader header;
  std::vector<uint8_t> payload;
  FrameType type() const { return static_cast<FrameType>(header.type); }
};

std::array<uint8_t, kFrameHeaderSize> encode_header(const FrameHeader& header);
// Checks magic, a known frame type and payload_size <= max_payload; does not check the version
// (the handshake reports version mismatches itself). Throws Error("protocol", ...).
FrameHeader decode_header(std::span<const uint8_t> bytes, uint64_t max_payload = kMaxPayload);

// A whole frame in one buffer (header + payload), for tests, MPI and the fuzzer.
std::vector<uint8_t> encode_frame(FrameType type, std::span<const uint8_t> payload,
                                  uint16_t version = kProtocolVersion);
// Parses exactly one frame from `bytes`; throws on truncation or trailing bytes.
Frame decode_frame(std::span<const uint8_t> bytes, uint64_t max_payload = kMaxPayload);

class PayloadWriter {
 public:
  void u8(uint8_t v) { bytes_.push_back(v); }
  void boolean(bool v) { u8(v ? 1 : 0); }
  void u16(uint16_t v);
  void u32(uint32_t v);
  void u64(uint64_t v);
  void i32(int32_t v) { u32(static_cast<uint32_t>(v)); }
  void i64(int64_t v) { u64(static_cast<uint64_t>(v)); }
  void f32(float v) { u32(std::bit_cast<uint32_t>(v)); }
  void str(std::string_view s);                 // u32 length + bytes
  void raw(std::span<const uint8_t> bytes);     // bytes only (fixed-size fields)
  void i32_array(std::span<const int32_t> v);   // u64 count + values
  void i64_array(std::span<const int64_t> v);   // u64 count + values
  void f32_array(std::span<const float> v);     // u64 count + values

  std::vector<uint8_t>& bytes() { return bytes_; }
  std::vector<uint8_t> take() { return std::move(bytes_); }

 private:
  std::vector<uint8_t> bytes_;
};

class PayloadReader {
 public:
  explicit PayloadReader(std::span<const uint8_t> bytes) : bytes_(bytes) {}

  uint8_t u8();
  bool boolean();  // only 0 or 1
  uint16_t u16();
  uint32_t u32();
  uint64_t u64();
  int32_t i32() { return static_cast<int32_t>(u32()); }
  int64_t i64() { return static_cast<int64_t>(u64()); }
  float f32() { return std::bit_cast<float>(u32()); }
  std::string str(size_t max_len = 1 << 20);
  void raw(std::span<uint8_t> out);
  std::vector<int32_t> i32_array(uint64_t max_count);
  std::vector<int64_t> i64_array(uint64_t max_count);
  std::vector<float> f32_array(uint64_t max_count);
  // A count of elements of elem_size bytes each that must fit in what remains and in max_count.
  uint64_t count(size_t elem_size, uint64_t max_count, std::string_view what);

  // The next n bytes, in place (valid while the payload is).
  std::span<const uint8_t> view(size_t n, std::string_view what) { return {take(n, what), n}; }
  size_t remaining() const { return bytes_.size() - pos_; }
  void expect_end() const;  // trailing bytes are malformed

 private:
  const uint8_t* take(size_t n, std::string_view what);
  std::span<const uint8_t> bytes_;
  size_t pos_ = 0;
};

}  // namespace meshlm::transport
