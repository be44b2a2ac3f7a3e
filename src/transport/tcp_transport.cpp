#include "transport/tcp_transport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <vector>

#include "core/log.h"

namespace meshlm::transport {
namespace {

std::string errno_text() { return std::strerror(errno); }

void set_socket_options(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));  // notice vanished peers
#ifdef SO_NOSIGPIPE  // macOS: no SIGPIPE on a closed peer (Linux uses MSG_NOSIGNAL)
  setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
#endif
}

// Receive buffers grow by at most this much before the bytes are there (a lying length).
constexpr size_t kRecvStep = size_t{64} << 20;
// Sealed frames are encrypted / decrypted this many bytes at a time (fits in L2).
constexpr size_t kSealChunk = size_t{256} << 10;

#ifdef MSG_NOSIGNAL
constexpr int kSendFlags = MSG_NOSIGNAL;
#else
constexpr int kSendFlags = 0;
#endif

std::string sockaddr_text(const sockaddr* sa) {
  char host[NI_MAXHOST], port[NI_MAXSERV];
  socklen_t len = sa->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (getnameinfo(sa, len, host, sizeof(host), port, sizeof(port),
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return "?";
  }
  return sa->sa_family == AF_INET6 ? "[" + std::string(host) + "]:" + port
                                   : std::string(host) + ":" + port;
}

struct AddrInfo {
  addrinfo* list = nullptr;
  ~AddrInfo() {
    if (list) freeaddrinfo(list);
  }
};

}  // namespace

// ---- TcpConnection ----

TcpConnection::TcpConnection(int fd, std::string peer) : fd_(fd), peer_(std::move(peer)) {
  set_socket_options(fd);
}

TcpConnection::~TcpConnection() {
  int fd = fd_.exchange(-1);
  if (fd >= 0) ::close(fd);
}

void TcpConnection::close() {
  // shutdown() wakes a recv() blocked in another thread; the descriptor is closed in the
  // destructor so that it cannot be reused while that thread still holds it.
  int fd = fd_.load();
  if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
}

void TcpConnection::send_pieces(FrameType type, std::span<const std::span<const uint8_t>> pieces) {
  uint64_t size = 0;
  for (auto p : pieces) size += p.size();
  if (size > kMaxPayload) {
    throw Error("protocol", "frame payload of " + std::to_string(size) + " bytes exceeds 1 GiB");
  }
  std::lock_guard lock(send_mutex_);
  if (sealer_) {
    send_sealed(type, pieces, size);
    return;
  }
  auto header = encode_header({send_version_, static_cast<uint16_t>(type), 0, size});
  std::vector<iovec> iov;
  iov.reserve(pieces.size() + 1);
  iov.push_back({header.data(), header.size()});
  for (auto p : pieces) {
    if (!p.empty()) iov.push_back({const_cast<uint8_t*>(p.data()), p.size()});
  }
  size_t first = 0;
  while (first < iov.size()) {
    msghdr msg{};
    msg.msg_iov = iov.data() + first;
    msg.msg_iovlen = std::min<size_t>(iov.size() - first, 64);
    ssize_t n = ::sendmsg(fd_.load(), &msg, kSendFlags);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw ConnectionError("send to " + peer_ + " failed: " + errno_text());
    }
    size_t left = static_cast<size_t>(n);
    while (first < iov.size() && left >= iov[first].iov_len) left -= iov[first++].iov_len;
    if (left > 0) {
      iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
}

size_t TcpConnection::reserve_send_buffer(size_t bytes) {
  const int fd = fd_.load();
  if (fd < 0) return 0;
  int want = static_cast<int>(std::min<size_t>(bytes, 64u << 20));
  int have = 0;
  socklen_t len = sizeof(have);
  if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &have, &len) != 0) return 0;
  if (have < want) {
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof(want)) != 0) return 0;
    len = sizeof(have);
    if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &have, &len) != 0) return 0;
  }
  // Linux reports twice what was asked (the other half pays its per-packet bookkeeping); macOS
  // reports what it granted. An eighth of the figure leaves room for two frames either way.
  return have > 0 ? static_cast<size_t>(have) / 8 : 0;
}

bool TcpConnection::enable_aead(const AeadKeys& keys) {
  auto sealer = std::make_unique<AeadStream>(keys.cipher, keys.send, true);
  auto opener = std::make_unique<AeadStream>(keys.cipher, keys.recv, false);
  std::lock_guard lock(send_mutex_);
  sealer_ = std::move(sealer);
  opener_ = std::move(opener);
  recv_failed_ = false;
  aead_on_.store(true);
  return true;
}

// A sealed frame goes out through one buffer of at most kSealChunk bytes: header, then the
// pieces encrypted into it (sent whenever it fills: a large frame is encrypted while it is still
// in cache, and the buffer stays small), then the tag. A frame that fits is one send().
void TcpConnection::send_sealed(FrameType type, std::span<const std::span<const uint8_t>> pieces,
                                uint64_t size) {
  const uint64_t wire = size + kAeadTagSize;
  auto header = encode_header({send_version_, static_cast<uint16_t>(type), 0, wire});
  const size_t cap = static_cast<size_t>(std::min<uint64_t>(kFrameHeaderSize + wire, kSealChunk));
  if (send_buf_.size() < cap) send_buf_.resize(cap);
  uint8_t* buf = send_buf_.data();
  std::memcpy(buf, header.data(), header.size());
  size_t pos = header.size();
  sealer_->begin(header);
  for (auto p : pieces) {
    size_t off = 0;
    while (off < p.size()) {
      if (pos == cap) {
        write_all(buf, pos);
        pos = 0;
      }
      size_t n = std::min(p.size() - off, cap - pos);
      sealer_->update(p.data() + off, buf + pos, n);
      pos += n;
      off += n;
    }
  }
  if (cap - pos < kAeadTagSize) {
    write_all(buf, pos);
    pos = 0;
  }
  sealer_->seal_final(buf + pos);
  write_all(buf, pos + kAeadTagSize);
}

void TcpConnection::write_all(const uint8_t* data, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t got = ::send(fd_.load(), data + done, n - done, kSendFlags);
    if (got < 0) {
      if (errno == EINTR) continue;
      throw ConnectionError("send to " + peer_ + " failed: " + errno_text());
    }
    done += static_cast<size_t>(got);
  }
}

void TcpConnection::send_raw(std::span<const uint8_t> bytes) {
  std::lock_guard lock(send_mutex_);
  write_all(bytes.data(), bytes.size());
}

// Reads exactly n bytes. The timeout applies to the wait for the first byte of a frame; once a
// frame has started, the rest must arrive within 30 s of silence (a stalled peer). Bytes already
// waiting are taken without a poll() first (one system call per read on a busy link).
void TcpConnection::read_exact(uint8_t* out, size_t n, int timeout_ms, bool first) {
  size_t done = 0;
  while (done < n) {
    ssize_t got = ::recv(fd_.load(), out + done, n - done, MSG_DONTWAIT);
    if (got > 0) {
      done += static_cast<size_t>(got);
      continue;
    }
    if (got == 0) {
      throw ConnectionError(done == 0 && first ? "connection closed by " + peer_
                                               : "connection to " + peer_ +
                                                     " closed in the middle of a frame");
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      throw ConnectionError("receive from " + peer_ + " failed: " + errno_text());
    }
    int wait = (first && done == 0) ? timeout_ms : 30000;
    pollfd p{fd_.load(), POLLIN, 0};
    int r = ::poll(&p, 1, wait);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw ConnectionError("poll on " + peer_ + " failed: " + errno_text());
    }
    if (r == 0) {
      if (first && done == 0) throw TimeoutError("no frame from " + peer_ + " within " +
                                                 std::to_string(timeout_ms) + " ms");
      throw ConnectionError("peer " + peer_ + " stalled in the middle of a frame");
    }
  }
}

Frame TcpConnection::recv(int timeout_ms, uint64_t max_payload) {
  Frame f;
  recv_into(f, timeout_ms, max_payload);
  return f;
}

void TcpConnection::recv_into(Frame& f, int timeout_ms, uint64_t max_payload) {
  if (recv_failed_) fail_authentication(f);  // the stream is out of step for good
  std::array<uint8_t, kFrameHeaderSize> header;
  read_exact(header.data(), header.size(), timeout_ms, true);
  if (opener_) {
    recv_sealed(f, header, timeout_ms, max_payload);
    return;
  }
  f.header = decode_header(header, max_payload);
  // Grow the buffer as data arrives so that a lying length cannot make us allocate 1 GiB
  // up front. What the buffer already holds is reused as it is (resize() only clears bytes
  // beyond its current size), so frames of one size cost no allocation and no clearing.
  const size_t size = static_cast<size_t>(f.header.payload_size);
  size_t done = 0;
  while (done < size) {
    size_t step = std::min(size - done, std::max({kRecvStep, done, f.payload.size()}));
    if (f.payload.size() != done + step) f.payload.resize(done + step);
    read_exact(f.payload.data() + done, step, timeout_ms, false);
    done += step;
  }
  if (size == 0) f.payload.clear();
}

// Like the plain path (same buffer growth), decrypting in place kSealChunk bytes at a time as
// they arrive; the payload is only handed out once the tag checks. payload_size on the wire
// counts the tag; the frame returned has the plaintext size.
void TcpConnection::recv_sealed(Frame& f, const std::array<uint8_t, kFrameHeaderSize>& header,
                                int timeout_ms, uint64_t max_payload) {
  const uint64_t limit = max_payload > std::numeric_limits<uint64_t>::max() - kAeadTagSize
                             ? max_payload
                             : max_payload + kAeadTagSize;
  f.header = decode_header(header, limit);
  if (f.header.payload_size < kAeadTagSize) fail_authentication(f);
  opener_->begin(header);
  const size_t size = static_cast<size_t>(f.header.payload_size - kAeadTagSize);
  size_t done = 0;
  while (done < size) {
    size_t step = std::min(size - done, std::max({kRecvStep, done, f.payload.size()}));
    if (f.payload.size() != done + step) f.payload.resize(done + step);
    for (size_t end = done + step; done < end;) {
      size_t n = std::min(end - done, kSealChunk);
      read_exact(f.payload.data() + done, n, timeout_ms, false);
      opener_->update(f.payload.data() + done, f.payload.data() + done, n);
      done += n;
    }
  }
  if (size == 0) f.payload.clear();
  uint8_t tag[kAeadTagSize];
  read_exact(tag, sizeof(tag), timeout_ms, false);
  if (!opener_->open_final(tag)) fail_authentication(f);
  f.header.payload_size = size;
}

void TcpConnection::fail_authentication(Frame& f) {
  recv_failed_ = true;
  f.payload.clear();  // never hand out what did not authenticate
  throw ConnectionError(aead_failure_message(peer_));
}

std::unique_ptr<TcpConnection> tcp_connect(const std::string& address, int timeout_ms) {
  auto [host, port] = parse_host_port(address);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  AddrInfo ai;
  int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &ai.list);
  if (rc != 0) throw ConnectionError("cannot resolve " + address + ": " + gai_strerror(rc));
  std::string last_error = "no address";
  for (addrinfo* a = ai.list; a; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) {
      last_error = errno_text();
      continue;
    }
    int flags = fcntl(fd, F_GETFL, 0);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    int r = ::connect(fd, a->ai_addr, a->ai_addrlen);
    if (r < 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      r = ::poll(&p, 1, timeout_ms);
      if (r == 0) {
        ::close(fd);
        last_error = "timed out after " + std::to_string(timeout_ms) + " ms";
        continue;
      }
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (r < 0 || err != 0) {
        last_error = std::strerror(r < 0 ? errno : err);
        ::close(fd);
        continue;
      }
    } else if (r < 0) {
      last_error = errno_text();
      ::close(fd);
      continue;
    }
    fcntl(fd, F_SETFL, flags);
    return std::make_unique<TcpConnection>(fd, address);
  }
  throw ConnectionError("cannot connect to " + address + ": " + last_error);
}

// ---- TcpListener ----

TcpListener::TcpListener(const std::string& address) {
  auto [host, port] = parse_host_port(address);
  host_ = host;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  AddrInfo ai;
  int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &ai.list);
  if (rc != 0) throw Error("transport", "cannot resolve " + address + ": " + gai_strerror(rc));
  std::string last_error = "no address";
  for (addrinfo* a = ai.list; a; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 16) == 0) {
      fd_ = fd;
      sockaddr_storage ss{};
      socklen_t len = sizeof(ss);
      getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
      port_ = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                             : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
      return;
    }
    last_error = errno_text();
    ::close(fd);
  }
  throw Error("transport", "cannot listen on " + address + ": " + last_error);
}

TcpListener::~TcpListener() {
  if (fd_ >= 0) ::close(fd_);
}

std::string TcpListener::address() const {
  return (host_.find(':') != std::string::npos ? "[" + host_ + "]" : host_) + ":" +
         std::to_string(port_);
}

std::unique_ptr<TcpConnection> TcpListener::accept(int timeout_ms) {
  pollfd p{fd_, POLLIN, 0};
  int r = ::poll(&p, 1, timeout_ms);
  if (r <= 0) return nullptr;
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  int fd = ::accept(fd_, reinterpret_cast<sockaddr*>(&ss), &len);
  if (fd < 0) {
    log::warn("[tcp] accept on {} failed: {}", address(), errno_text());
    return nullptr;
  }
  return std::make_unique<TcpConnection>(fd, sockaddr_text(reinterpret_cast<sockaddr*>(&ss)));
}

}  // namespace meshlm::transport
