// A connection carries whole frames between two nodes, blocking, with timeouts. TCP is the
// default transport (tcp_transport.h); MPI is built when found (mpi_transport.h). Collective
// operations for tensor parallelism (all-reduce, all-gather) run over these: collective.h.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "transport/frame.h"

namespace meshlm::transport {

struct AeadKeys;  // aead.h

// Thrown by recv() when nothing arrived within the timeout (the connection is still usable).
class TimeoutError : public Error {
 public:
  explicit TimeoutError(const std::string& message) : Error("transport", message) {}
};

// Thrown when the peer closed the connection or it broke (reset, refused, I/O error).
class ConnectionError : public Error {
 public:
  explicit ConnectionError(const std::string& message) : Error("transport", message) {}
};

class Connection {
 public:
  virtual ~Connection() = default;

  // Sends one frame whose payload is the concatenation of `pieces` (sent from the caller's
  // buffers, no copy, on a plain link; encrypted through a small buffer on a sealed one). Safe
  // to call from several threads at once and while another thread is in recv().
  virtual void send_pieces(FrameType type, std::span<const std::span<const uint8_t>> pieces) = 0;
  void send(FrameType type, std::span<const uint8_t> payload = {}) {
    std::span<const uint8_t> one[1] = {payload};
    send_pieces(type, one);
  }
  // Receives one frame. timeout_ms < 0 waits forever. Frames larger than max_payload are
  // refused. Throws TimeoutError, ConnectionError, or Error("protocol") for a malformed header.
  // The version is not checked here (see Frame::header.version).
  virtual Frame recv(int timeout_ms, uint64_t max_payload = kMaxPayload) = 0;
  // Like recv(), but into `frame`, reusing its payload's memory: a loop receiving frames of one
  // size (tensor data) allocates and clears its buffer once instead of once per frame. The
  // default implementation calls recv().
  virtual void recv_into(Frame& frame, int timeout_ms, uint64_t max_payload = kMaxPayload) {
    frame = recv(timeout_ms, max_payload);
  }
  // Closes both directions; a recv() blocked in another thread returns with ConnectionError.
  virtual void close() = 0;
  virtual std::string peer() const = 0;
  // A descriptor that becomes readable when a frame may be waiting (for poll()), or -1.
  virtual int poll_fd() const { return -1; }
  // Asks the link to buffer at least `bytes` of outgoing data in the kernel, and returns the
  // largest frame payload that send_pieces() then takes without waiting for the peer even when
  // the peer has not yet read the previous such frame (two in flight). 0 (the default, and MPI,
  // whose large messages may rendezvous): no such guarantee, a send may wait for the receiver.
  // Collectives send frames up to this size on the caller's thread instead of a helper's.
  virtual size_t reserve_send_buffer(size_t bytes) {
    (void)bytes;
    return 0;
  }

  // Encrypted links (aead.h): from the next frame on, every frame sent is sealed with
  // keys.send and every frame received must authenticate with keys.recv, both counters from 0;
  // one that does not makes recv() throw ConnectionError. The handshake calls it on both sides
  // when a secret is set, before any other thread uses the connection. Returns whether the
  // link is now encrypted: the default does nothing, so MPI links stay plain (mpirun starts
  // and vouches for its ranks over the job's own interconnect), as do test doubles.
  virtual bool enable_aead(const AeadKeys& keys) {
    (void)keys;
    return false;
  }
  virtual bool aead_enabled() const { return false; }

  // Tests only: the protocol version written into outgoing headers.
  void set_send_version(uint16_t v) { send_version_ = v; }

 protected:
  uint16_t send_version_ = kProtocolVersion;
};

// Receives a frame of our protocol version; an Error frame from the peer is rethrown as
// Error("remote", its message). Any other version throws Error("protocol", ...).
Frame recv_checked(Connection& conn, int timeout_ms, uint64_t max_payload = kMaxPayload);
// recv_checked() through Connection::recv_into().
void recv_checked_into(Connection& conn, Frame& frame, int timeout_ms,
                       uint64_t max_payload = kMaxPayload);

// Sends an Error frame and swallows failures (the connection is being dropped anyway).
void send_error_quietly(Connection& conn, const std::string& message);

// "host:port" -> (host, port); throws Error("transport", ...) on a malformed address.
std::pair<std::string, uint16_t> parse_host_port(const std::string& address);

}  // namespace meshlm::transport
