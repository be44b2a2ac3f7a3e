#include "transport/transport.h"

#include <charconv>

#include "transport/messages.h"

namespace meshlm::transport {

namespace {

void check_received(const Connection& conn, const Frame& f) {
  if (f.header.version != kProtocolVersion) {
    throw Error("protocol", conn.peer() + " speaks protocol version " +
                                std::to_string(f.header.version) + ", this build speaks " +
                                std::to_string(kProtocolVersion));
  }
  if (f.type() == FrameType::Error) throw Error("remote", decode_text(f.payload));
}

}  // namespace

Frame recv_checked(Connection& conn, int timeout_ms, uint64_t max_payload) {
  Frame f = conn.recv(timeout_ms, max_payload);
  check_received(conn, f);
  return f;
}

void recv_checked_into(Connection& conn, Frame& frame, int timeout_ms, uint64_t max_payload) {
  conn.recv_into(frame, timeout_ms, max_payload);
  check_received(conn, frame);
}

void send_error_quietly(Connection& conn, const std::string& message) {
  try {
    conn.send(FrameType::Error, encode_text(message));
  } catch (const std::exception&) {
  }
}

std::pair<std::string, uint16_t> parse_host_port(const std::string& address) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    throw Error("transport", "expected host:port, got '" + address + "'");
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  unsigned port = 0;
  const char* first = address.data() + colon + 1;
  const char* last = address.data() + address.size();
  auto [ptr, ec] = std::from_chars(first, last, port);
  if (ec != std::errc() || ptr != last || port > 65535) {
    throw Error("transport", "bad port in '" + address + "'");
  }
  return {host, static_cast<uint16_t>(port)};
}

}  // namespace meshlm::transport
