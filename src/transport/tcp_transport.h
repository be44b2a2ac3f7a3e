// TCP transport: POSIX sockets with TCP_NODELAY, header + payload pieces sent with one
// sendmsg (scatter/gather, no copy of the activations), poll() for timeouts. Works on Linux and
// macOS. After enable_aead() (the handshake, when a secret is set) frames are sealed (aead.h):
// each is encrypted in chunks into one reusable buffer and sent from there, and decrypted in
// place as it arrives.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "transport/aead.h"
#include "transport/transport.h"

namespace meshlm::transport {

class TcpConnection : public Connection {
 public:
  TcpConnection(int fd, std::string peer);
  ~TcpConnection() override;
  TcpConnection(const TcpConnection&) = delete;
  TcpConnection& operator=(const TcpConnection&) = delete;

  void send_pieces(FrameType type, std::span<const std::span<const uint8_t>> pieces) override;
  Frame recv(int timeout_ms, uint64_t max_payload = kMaxPayload) override;
  void recv_into(Frame& frame, int timeout_ms, uint64_t max_payload = kMaxPayload) override;
  void close() override;
  std::string peer() const override { return peer_; }
  int poll_fd() const override { return fd_; }
  // Sets SO_SNDBUF to `bytes` (which turns off the kernel's send-buffer autotuning for this
  // socket) and returns an eighth of what the kernel grants (it counts its bookkeeping in the
  // same budget): two frames of that size fit in the send buffer alone, whatever the peer's
  // receive buffer holds.
  size_t reserve_send_buffer(size_t bytes) override;
  bool enable_aead(const AeadKeys& keys) override;
  bool aead_enabled() const override { return aead_on_.load(); }

  // Tests only: writes bytes verbatim (garbage, truncated frames), never sealed.
  void send_raw(std::span<const uint8_t> bytes);

 private:
  void read_exact(uint8_t* out, size_t n, int timeout_ms, bool first);
  void write_all(const uint8_t* data, size_t n);  // caller holds send_mutex_
  void send_sealed(FrameType type, std::span<const std::span<const uint8_t>> pieces,
                   uint64_t size);  // caller holds send_mutex_
  void recv_sealed(Frame& f, const std::array<uint8_t, kFrameHeaderSize>& header,
                   int timeout_ms, uint64_t max_payload);
  [[noreturn]] void fail_authentication(Frame& f);
  std::atomic<int> fd_;
  std::string peer_;
  std::mutex send_mutex_;
  // Encrypted links: sealer_ and send_buf_ belong to send_pieces (under send_mutex_), opener_
  // and recv_failed_ to the one receiving thread.
  std::atomic<bool> aead_on_{false};
  std::unique_ptr<AeadStream> sealer_;
  std::unique_ptr<AeadStream> opener_;
  std::vector<uint8_t> send_buf_;
  bool recv_failed_ = false;
};

// Connects to host:port within timeout_ms. Throws ConnectionError naming the address.
std::unique_ptr<TcpConnection> tcp_connect(const std::string& address, int timeout_ms = 5000);

class TcpListener {
 public:
  // Binds host:port ("127.0.0.1:0" picks a free port; host "0.0.0.0" for all interfaces).
  explicit TcpListener(const std::string& address);
  ~TcpListener();
  TcpListener(const TcpListener&) = delete;
  TcpListener& operator=(const TcpListener&) = delete;

  uint16_t port() const { return port_; }
  std::string address() const;  // host:port actually bound
  int fd() const { return fd_; }
  // Waits up to timeout_ms (< 0: forever) for a connection; nullptr on timeout.
  std::unique_ptr<TcpConnection> accept(int timeout_ms);

 private:
  int fd_ = -1;
  std::string host_;
  uint16_t port_ = 0;
};

}  // namespace meshlm::transport
