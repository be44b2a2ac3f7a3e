#include "transport/frame.h"

#include <cstring>

#include "core/error.h"

namespace meshlm::transport {
namespace {

void put_le(uint8_t* out, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
}

uint64_t get_le(const uint8_t* in, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= uint64_t{in[i]} << (8 * i);
  return v;
}

[[noreturn]] void malformed(std::string_view what) {
  throw Error("protocol", "malformed frame: " + std::string(what));
}

}  // namespace

std::string frame_type_name(uint16_t type) {
  switch (static_cast<FrameType>(type)) {
    case FrameType::Hello: return "hello";
    case FrameType::Challenge: return "challenge";
    case FrameType::Auth: return "auth";
    case FrameType::Welcome: return "welcome";
    case FrameType::Load: return "load";
    case FrameType::Loaded: return "loaded";
    case FrameType::ManifestRequest: return "manifest-request";
    case FrameType::Manifest: return "manifest";
    case FrameType::TensorRequest: return "tensor-request";
    case FrameType::TensorData: return "tensor-data";
    case FrameType::TensorsDone: return "tensors-done";
    case FrameType::SyncRefused: return "sync-refused";
    case FrameType::Forward: return "forward";
    case FrameType::Result: return "result";
    case FrameType::Release: return "release";
    case FrameType::Ping: return "ping";
    case FrameType::Pong: return "pong";
    case FrameType::Error: return "error";
    case FrameType::Shutdown: return "shutdown";
    case FrameType::Collective: return "collective";
  }
  return "unknown(" + std::to_string(type) + ")";
}

bool is_known_frame_type(uint16_t type) { return frame_type_name(type).rfind("unknown", 0) != 0; }

std::array<uint8_t, kFrameHeaderSize> encode_header(const FrameHeader& header) {
  std::array<uint8_t, kFrameHeaderSize> out{};
  put_le(out.data(), kFrameMagic, 4);
  put_le(out.data() + 4, header.version, 2);
  put_le(out.data() + 6, header.type, 2);
  put_le(out.data() + 8, header.flags, 4);
  put_le(out.data() + 12, header.payload_size, 8);
  return out;
}

FrameHeader decode_header(std::span<const uint8_t> bytes, uint64_t max_payload) {
  if (bytes.size() < kFrameHeaderSize) malformed("truncated header");
  if (get_le(bytes.data(), 4) != kFrameMagic) {
    throw Error("protocol", "bad magic: not a meshlm frame (is the peer a meshlm node?)");
  }
  FrameHeader h;
  h.version = static_cast<uint16_t>(get_le(bytes.data() + 4, 2));
  h.type = static_cast<uint16_t>(get_le(bytes.data() + 6, 2));
  h.flags = static_cast<uint32_t>(get_le(bytes.data() + 8, 4));
  h.payload_size = get_le(bytes.data() + 12, 8);
  // Type and flags are only meaningful in our own version; a different version is reported by
  // the handshake, so only check them for ours.
  if (h.version == kProtocolVersion) {
    if (!is_known_frame_type(h.type)) malformed("unknown frame type " + std::to_string(h.type));
    if (h.flags != 0) malformed("unknown flags " + std::to_string(h.flags));
  }
  if (h.payload_size > max_payload) {
    malformed("payload of " + std::to_string(h.payload_size) + " bytes exceeds the limit of " +
              std::to_string(max_payload));
  }
  return h;
}

std::vector<uint8_t> encode_frame(FrameType type, std::span<const uint8_t> payload,
                                  uint16_t version) {
  FrameHeader h{version, static_cast<uint16_t>(type), 0, payload.size()};
  auto header = encode_header(h);
  std::vector<uint8_t> out(header.begin(), header.end());
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

Frame decode_frame(std::span<const uint8_t> bytes, uint64_t max_payload) {
  Frame f;
  f.header = decode_header(bytes, max_payload);
  if (bytes.size() - kFrameHeaderSize < f.header.payload_size) malformed("truncated payload");
  if (bytes.size() - kFrameHeaderSize > f.header.payload_size) malformed("trailing bytes");
  f.payload.assign(bytes.begin() + kFrameHeaderSize, bytes.end());
  return f;
}

// ---- PayloadWriter ----

void PayloadWriter::u16(uint16_t v) {
  uint8_t b[2];
  put_le(b, v, 2);
  bytes_.insert(bytes_.end(), b, b + 2);
}
void PayloadWriter::u32(uint32_t v) {
  uint8_t b[4];
  put_le(b, v, 4);
  bytes_.insert(bytes_.end(), b, b + 4);
}
void PayloadWriter::u64(uint64_t v) {
  uint8_t b[8];
  put_le(b, v, 8);
  bytes_.insert(bytes_.end(), b, b + 8);
}
void PayloadWriter::str(std::string_view s) {
  u32(static_cast<uint32_t>(s.size()));
  bytes_.insert(bytes_.end(), s.begin(), s.end());
}
void PayloadWriter::raw(std::span<const uint8_t> b) { bytes_.insert(bytes_.end(), b.begin(), b.end()); }

template <typename T>
static void put_array(PayloadWriter& w, std::span<const T> v) {
  w.u64(v.size());
  auto* p = reinterpret_cast<const uint8_t*>(v.data());
  w.raw({p, v.size() * sizeof(T)});  // little-endian host (static_assert in frame.h)
}
void PayloadWriter::i32_array(std::span<const int32_t> v) { put_array(*this, v); }
void PayloadWriter::i64_array(std::span<const int64_t> v) { put_array(*this, v); }
void PayloadWriter::f32_array(std::span<const float> v) { put_array(*this, v); }

// ---- PayloadReader ----

const uint8_t* PayloadReader::take(size_t n, std::string_view what) {
  if (n > remaining()) {
    malformed(std::string(what) + " needs " + std::to_string(n) + " bytes, " +
              std::to_string(remaining()) + " remain");
  }
  const uint8_t* p = bytes_.data() + pos_;
  pos_ += n;
  return p;
}

uint8_t PayloadReader::u8() { return *take(1, "u8"); }
bool PayloadReader::boolean() {
  uint8_t v = u8();
  if (v > 1) malformed("boolean field is " + std::to_string(v));
  return v == 1;
}
uint16_t PayloadReader::u16() { return static_cast<uint16_t>(get_le(take(2, "u16"), 2)); }
uint32_t PayloadReader::u32() { return static_cast<uint32_t>(get_le(take(4, "u32"), 4)); }
uint64_t PayloadReader::u64() { return get_le(take(8, "u64"), 8); }

std::string PayloadReader::str(size_t max_len) {
  uint32_t n = u32();
  if (n > max_len) malformed("string of " + std::to_string(n) + " bytes is too long");
  const uint8_t* p = take(n, "string");
  return std::string(reinterpret_cast<const char*>(p), n);
}

void PayloadReader::raw(std::span<uint8_t> out) {
  const uint8_t* p = take(out.size(), "field");
  if (!out.empty()) std::memcpy(out.data(), p, out.size());
}

uint64_t PayloadReader::count(size_t elem_size, uint64_t max_count, std::string_view what) {
  uint64_t n = u64();
  if (n > max_count) {
    malformed(std::string(what) + " count " + std::to_string(n) + " exceeds " +
              std::to_string(max_count));
  }
  // n * elem_size cannot overflow: n <= remaining / elem_size is checked by division.
  if (elem_size > 0 && n > remaining() / elem_size) {
    malformed(std::string(what) + " count " + std::to_string(n) + " runs past the payload end");
  }
  return n;
}

template <typename T>
static std::vector<T> get_array(PayloadReader& r, uint64_t max_count, std::string_view what) {
  uint64_t n = r.count(sizeof(T), max_count, what);
  std::vector<T> v(n);
  r.raw({reinterpret_cast<uint8_t*>(v.data()), n * sizeof(T)});
  return v;
}
std::vector<int32_t> PayloadReader::i32_array(uint64_t max_count) {
  return get_array<int32_t>(*this, max_count, "i32 array");
}
std::vector<int64_t> PayloadReader::i64_array(uint64_t max_count) {
  return get_array<int64_t>(*this, max_count, "i64 array");
}
std::vector<float> PayloadReader::f32_array(uint64_t max_count) {
  return get_array<float>(*this, max_count, "f32 array");
}

void PayloadReader::expect_end() const {
  if (remaining() != 0) malformed(std::to_string(remaining()) + " trailing bytes");
}

}  // namespace meshlm::transport
