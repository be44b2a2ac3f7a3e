// Handshake over real loopback TCP: accepted, and refused for each mismatch with a message that
// both sides see. Also the TCP transport's basic behaviour (pieces, timeouts, close).
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "transport/handshake.h"
#include "transport/messages.h"
#include "transport/tcp_transport.h"

namespace meshlm::transport {
namespace {

// Bounds waits for the other side of a loopback connection (a thread that may be scheduled late
// on a busy machine); outcomes never depend on it.
constexpr int kGuardMs = 20000;

struct Outcome {
  bool ok = false;
  std::string error;
  HandshakeResult result;
};

template <typename F>
Outcome run(F&& f) {
  Outcome o;
  try {
    o.result = f();
    o.ok = true;
  } catch (const std::exception& e) {
    o.error = e.what();
  }
  return o;
}

// Runs a client and a server handshake against each other over loopback.
std::pair<Outcome, Outcome> handshake_pair(HandshakeOptions client, HandshakeOptions server) {
  TcpListener listener("127.0.0.1:0");
  auto server_side = std::async(std::launch::async, [&] {
    auto conn = listener.accept(kGuardMs);
    if (!conn) return Outcome{false, "no connection", {}};
    return run([&] { return handshake_server(*conn, server); });
  });
  auto conn = tcp_connect(listener.address(), kGuardMs);
  Outcome c = run([&] { return handshake_client(*conn, client); });
  Outcome s = server_side.get();
  return {c, s};
}

HandshakeOptions opts(std::string secret, std::string fp) {
  HandshakeOptions o;
  o.secret = std::move(secret);
  o.fingerprint = std::move(fp);
  o.timeout_ms = kGuardMs;
  return o;
}

bool contains(const std::string& s, const std::string& needle) {
  return s.find(needle) != std::string::npos;
}

TEST(Handshake, Accepts) {
  auto [c, s] = handshake_pair(opts("s3cret", "fp1"), opts("s3cret", "fp1"));
  EXPECT_TRUE(c.ok) << c.error;
  EXPECT_TRUE(s.ok) << s.error;
  EXPECT_EQ(s.result.role, "coordinator");
  EXPECT_EQ(s.result.peer_fingerprint, "fp1");
  EXPECT_EQ(c.result.peer_fingerprint, "fp1");
}

TEST(Handshake, WorkerWithoutModelAcceptsAnyFingerprint) {
  auto [c, s] = handshake_pair(opts("k", "fp1"), opts("k", ""));
  EXPECT_TRUE(c.ok) << c.error;
  EXPECT_TRUE(s.ok) << s.error;
  EXPECT_EQ(s.result.peer_fingerprint, "fp1");
}

TEST(Handshake, RefusesWrongSecretOnBothSides) {
  auto [c, s] = handshake_pair(opts("alpha", "fp"), opts("beta", "fp"));
  EXPECT_FALSE(c.ok);
  EXPECT_FALSE(s.ok);
  EXPECT_TRUE(contains(c.error, "secret mismatch")) << c.error;
  EXPECT_TRUE(contains(s.error, "secret mismatch")) << s.error;
}

TEST(Handshake, RefusesWrongFingerprint) {
  auto [c, s] = handshake_pair(opts("k", "aaaa"), opts("k", "bbbb"));
  EXPECT_FALSE(c.ok);
  EXPECT_FALSE(s.ok);
  EXPECT_TRUE(contains(c.error, "model fingerprint mismatch")) << c.error;
  EXPECT_TRUE(contains(s.error, "model fingerprint mismatch")) << s.error;
}

TEST(Handshake, RefusesWrongVersion) {
  auto client = opts("k", "fp");
  client.version = kProtocolVersion + 1;
  auto [c, s] = handshake_pair(client, opts("k", "fp"));
  EXPECT_FALSE(c.ok);
  EXPECT_FALSE(s.ok);
  EXPECT_TRUE(contains(c.error, "protocol version mismatch")) << c.error;
  EXPECT_TRUE(contains(s.error, "protocol version mismatch")) << s.error;
}

TEST(Handshake, RefusesGarbage) {
  TcpListener listener("127.0.0.1:0");
  auto server_side = std::async(std::launch::async, [&] {
    auto conn = listener.accept(kGuardMs);
    return run([&] { return handshake_server(*conn, opts("k", "")); });
  });
  auto conn = tcp_connect(listener.address(), kGuardMs);
  std::string junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  conn->send_raw({reinterpret_cast<const uint8_t*>(junk.data()), junk.size()});
  Outcome s = server_side.get();
  EXPECT_FALSE(s.ok);
  EXPECT_TRUE(contains(s.error, "bad magic")) << s.error;
}

TEST(Tcp, PiecesTimeoutAndClose) {
  TcpListener listener("127.0.0.1:0");
  auto client = tcp_connect(listener.address(), kGuardMs);
  auto server = listener.accept(kGuardMs);
  ASSERT_TRUE(server);
  std::vector<float> big(3 << 20);  // 12 MiB: exercises partial sendmsg writes
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<float>(i);
  std::vector<uint8_t> head = {9, 8, 7};
  std::span<const uint8_t> pieces[2] = {
      head, {reinterpret_cast<const uint8_t*>(big.data()), big.size() * sizeof(float)}};
  auto sender = std::async(std::launch::async, [&] { client->send_pieces(FrameType::Forward, pieces); });
  Frame f = server->recv(kGuardMs);
  sender.get();
  ASSERT_EQ(f.payload.size(), 3 + big.size() * sizeof(float));
  EXPECT_EQ(f.payload[0], 9);
  float last;
  std::memcpy(&last, f.payload.data() + f.payload.size() - 4, 4);
  EXPECT_EQ(last, static_cast<float>(big.size() - 1));

  EXPECT_THROW(server->recv(50), TimeoutError);
  client->send(FrameType::Error, encode_text("nope"));
  EXPECT_THROW(recv_checked(*server, kGuardMs), Error);
  // A recv blocked in another thread returns when the connection is closed.
  auto blocked = std::async(std::launch::async, [&] {
    try {
      server->recv(-1);
      return std::string("returned a frame");
    } catch (const ConnectionError& e) {
      return std::string("closed");
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  server->close();
  EXPECT_EQ(blocked.get(), "closed");
  client.reset();
  EXPECT_THROW(tcp_connect("127.0.0.1:1", 1000), ConnectionError);
  EXPECT_THROW(parse_host_port("nohost"), Error);
  EXPECT_THROW(parse_host_port("h:99999"), Error);
  EXPECT_EQ(parse_host_port("[::1]:80").first, "::1");
}

}  // namespace
}  // namespace meshlm::transport
