// Encrypted links (aead.h) over real loopback TCP after a real handshake: frames round-trip,
// the wire carries no plaintext, a flipped bit / replayed / reordered / dropped frame is
// rejected with a clear message, no secret stays plain, concurrent senders stay consistent.
// A relay between client and server sees (and alters) every frame client -> server.
// Also prints what sealing costs per frame on this CPU (not asserted).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

#include "transport/aead.h"
#include "transport/handshake.h"
#include "transport/tcp_transport.h"

namespace meshlm::transport {
namespace {

using Bytes = std::vector<uint8_t>;
constexpr int kGuardMs = 20000;  // only bounds a broken test; outcomes never depend on it
const std::string kFailure = "failed authentication (tampered, replayed or out of order)";

HandshakeOptions opts(std::string secret) {
  HandshakeOptions o;
  o.secret = std::move(secret);
  o.fingerprint = "fp";
  o.timeout_ms = kGuardMs;
  return o;
}

bool contains(const std::string& s, const std::string& needle) {
  return s.find(needle) != std::string::npos;
}

Bytes pattern(size_t n, uint32_t seed) {
  Bytes b(n);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& v : b) {
    x = x * 1664525u + 1013904223u;
    v = static_cast<uint8_t>(x >> 24);
  }
  return b;
}

// Text that is easy to look for on the wire.
Bytes marker_payload(size_t repeats) {
  const std::string m = "PLAINTEXT-MARKER-meshlm-activations;";
  Bytes b;
  for (size_t i = 0; i < repeats; ++i) b.insert(b.end(), m.begin(), m.end());
  return b;
}

bool has_marker(const Bytes& wire) {
  const std::string m = "PLAINTEXT-MARKER";
  return std::search(wire.begin(), wire.end(), m.begin(), m.end()) != wire.end();
}

// What a handshake produced on one side.
struct Side {
  bool ok = false;
  std::string error;
  HandshakeResult result;
};

template <typename F>
Side run(F&& f) {
  Side s;
  try {
    s.result = f();
    s.ok = true;
  } catch (const std::exception& e) {
    s.error = e.what();
  }
  return s;
}

// A client and a server connected through a relay that forwards whole frames and records them.
// `hook` sees each client -> server frame (index 0 is the hello, 2 the first after the
// handshake) and returns the frames to forward in its place (none: dropped; two: duplicated...).
class Relayed {
 public:
  using Hook = std::function<std::vector<Bytes>(size_t index, Bytes frame)>;

  Relayed(HandshakeOptions client_opts, HandshakeOptions server_opts, Hook hook = {})
      : hook_(std::move(hook)) {
    TcpListener server_listener("127.0.0.1:0");
    TcpListener front("127.0.0.1:0");
    client = tcp_connect(front.address(), kGuardMs);
    relay_in_ = front.accept(kGuardMs);
    relay_out_ = tcp_connect(server_listener.address(), kGuardMs);
    server = server_listener.accept(kGuardMs);
    if (!client || !relay_in_ || !relay_out_ || !server) throw Error("test", "no connection");
    pumps_.emplace_back([this] { pump(*relay_in_, *relay_out_, 0); });
    pumps_.emplace_back([this] { pump(*relay_out_, *relay_in_, 1); });
    auto s = std::async(std::launch::async,
                        [&] { return run([&] { return handshake_server(*server, server_opts); }); });
    client_side = run([&] { return handshake_client(*client, client_opts); });
    server_side = s.get();
  }

  ~Relayed() {
    for (auto* c : {client.get(), server.get(), relay_in_.get(), relay_out_.get()}) c->close();
    for (auto& t : pumps_) t.join();
  }

  // Frames seen so far in one direction (0: client -> server, 1: server -> client), as they
  // arrived at the relay.
  std::vector<Bytes> seen(int dir) {
    std::lock_guard lock(mutex_);
    return seen_[dir];
  }

  std::unique_ptr<TcpConnection> client, server;
  Side client_side, server_side;

 private:
  void pump(TcpConnection& from, TcpConnection& to, int dir) {
    try {
      for (size_t i = 0;; ++i) {
        Frame f = from.recv(-1);  // the relay's ends are plain: payload = ciphertext + tag
        auto h = encode_header(f.header);
        Bytes bytes(h.begin(), h.end());
        bytes.insert(bytes.end(), f.payload.begin(), f.payload.end());
        {
          std::lock_guard lock(mutex_);
          seen_[dir].push_back(bytes);
        }
        std::vector<Bytes> out;
        if (dir == 0 && hook_) {
          out = hook_(i, std::move(bytes));
        } else {
          out.push_back(std::move(bytes));
        }
        for (const auto& b : out) to.send_raw(b);
      }
    } catch (const std::exception&) {
      to.close();  // the other end sees the link end instead of waiting
    }
  }

  Hook hook_;
  std::unique_ptr<TcpConnection> relay_in_, relay_out_;
  std::vector<std::thread> pumps_;
  std::mutex mutex_;
  std::vector<Bytes> seen_[2];
};

// Expects recv() to refuse with the authentication message naming the peer, and to keep
// refusing afterwards.
void expect_rejected(TcpConnection& conn) {
  try {
    Frame f = conn.recv(kGuardMs);
    ADD_FAILURE() << "a bad frame was accepted: " << frame_type_name(f.header.type) << ", "
                  << f.payload.size() << " bytes";
  } catch (const ConnectionError& e) {
    EXPECT_TRUE(contains(e.what(), kFailure)) << e.what();
    EXPECT_TRUE(contains(e.what(), "frame from " + conn.peer())) << e.what();
    EXPECT_TRUE(contains(e.what(), "dropping the link")) << e.what();
  }
  EXPECT_THROW(conn.recv(kGuardMs), ConnectionError);
}

TEST(Aead, KeysMirrorBetweenSidesAndDependOnSecretAndNonces) {
  Bytes nc = pattern(32, 1), ns = pattern(32, 2);
  AeadKeys c = derive_aead_keys("s3cret", nc, ns, true);
  AeadKeys s = derive_aead_keys("s3cret", nc, ns, false);
  EXPECT_EQ(c.send, s.recv);
  EXPECT_EQ(c.recv, s.send);
  EXPECT_NE(c.send, c.recv);
  EXPECT_NE(derive_aead_keys("other", nc, ns, true).send, c.send);
  EXPECT_NE(derive_aead_keys("s3cret", pattern(32, 3), ns, true).send, c.send);
  EXPECT_NE(derive_aead_keys("s3cret", nc, pattern(32, 3), true).send, c.send);
  EXPECT_NE(derive_aead_keys("s3cret", nc, ns, true, AeadCipher::ChaCha20Poly1305).send, c.send);

  // A frame sealed by one side opens on the other, and not when sent back to its sender
  // (reflected) nor twice.
  for (AeadCipher cipher : {AeadCipher::Aes256Gcm, AeadCipher::ChaCha20Poly1305}) {
    AeadKeys ck = derive_aead_keys("s3cret", nc, ns, true, cipher);
    AeadKeys sk = derive_aead_keys("s3cret", nc, ns, false, cipher);
    AeadStream seal(cipher, ck.send, true), open(cipher, sk.recv, false);
    AeadStream reflected(cipher, ck.recv, false);
    Bytes msg = pattern(1000, 7);
    Bytes wire = seal_frame(seal, FrameType::Forward, msg);
    EXPECT_THROW(open_frame(reflected, wire, "me"), ConnectionError);
    Frame f = open_frame(open, wire, "peer");
    EXPECT_EQ(f.payload, msg);
    EXPECT_EQ(f.header.payload_size, msg.size());
    EXPECT_THROW(open_frame(open, wire, "peer"), ConnectionError);  // counter moved on
  }
}

TEST(Aead, FramesRoundTripEncryptedBothWays) {
  Relayed link(opts("s3cret"), opts("s3cret"));
  ASSERT_TRUE(link.client_side.ok) << link.client_side.error;
  ASSERT_TRUE(link.server_side.ok) << link.server_side.error;
  EXPECT_TRUE(link.client_side.result.encrypted);
  EXPECT_TRUE(link.server_side.result.encrypted);
  EXPECT_TRUE(link.client->aead_enabled());
  EXPECT_TRUE(link.server->aead_enabled());

  // Nothing waiting: a timeout leaves the link usable (no frame counter consumed).
  EXPECT_THROW(link.server->recv(0), TimeoutError);

  // Sizes around the 256 KiB sealing chunk and the tag, one over several chunks.
  const size_t chunk = size_t{256} << 10;
  const std::vector<size_t> sizes = {0,         1,         15,        16,    17,
                                     4096,      chunk - 36, chunk - 35, chunk, chunk + 1,
                                     (3 << 20) + 7};
  Frame into;  // recv_into reuses one frame's buffer across sizes
  for (size_t k = 0; k < sizes.size(); ++k) {
    Bytes msg = pattern(sizes[k], static_cast<uint32_t>(k));
    // Three pieces, one empty, split unevenly.
    size_t a = msg.size() / 3;
    std::span<const uint8_t> pieces[3] = {std::span<const uint8_t>(msg).first(a), {},
                                          std::span<const uint8_t>(msg).subspan(a)};
    auto sent = std::async(std::launch::async,
                           [&] { link.client->send_pieces(FrameType::Forward, pieces); });
    link.server->recv_into(into, kGuardMs);
    sent.get();
    EXPECT_EQ(into.type(), FrameType::Forward);
    EXPECT_EQ(into.header.version, kProtocolVersion);
    EXPECT_EQ(into.header.payload_size, msg.size());
    EXPECT_EQ(into.payload, msg) << "size " << msg.size();

    Bytes back = pattern(sizes[k], static_cast<uint32_t>(100 + k));
    auto replied = std::async(std::launch::async,
                              [&] { link.server->send(FrameType::Result, back); });
    Frame r = recv_checked(*link.client, kGuardMs);
    replied.get();
    EXPECT_EQ(r.type(), FrameType::Result);
    EXPECT_EQ(r.payload, back) << "size " << back.size();
  }

  // max_payload bounds the plaintext, as on a plain link.
  link.client->send(FrameType::Load, pattern(100, 1));
  EXPECT_EQ(link.server->recv(kGuardMs, 100).payload.size(), 100u);
  link.client->send(FrameType::Load, pattern(101, 1));
  try {
    link.server->recv(kGuardMs, 100);
    ADD_FAILURE() << "a frame over max_payload was accepted";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "exceeds the limit")) << e.what();
  }
}

TEST(Aead, WireCarriesNoPlaintextFromTheFirstFrameOn) {
  Relayed link(opts("s3cret"), opts("s3cret"));
  ASSERT_TRUE(link.client_side.ok) << link.client_side.error;
  ASSERT_TRUE(link.server_side.ok) << link.server_side.error;
  Bytes msg = marker_payload(100);
  // The very first frame after the handshake, each way.
  link.client->send(FrameType::Load, msg);
  EXPECT_EQ(link.server->recv(kGuardMs).payload, msg);
  link.server->send(FrameType::Loaded, msg);
  EXPECT_EQ(link.client->recv(kGuardMs).payload, msg);

  for (int dir : {0, 1}) {
    auto frames = link.seen(dir);
    ASSERT_EQ(frames.size(), 3u);  // two handshake frames, then ours
    const Bytes& wire = frames[2];
    ASSERT_EQ(wire.size(), kFrameHeaderSize + msg.size() + kAeadTagSize);
    FrameHeader h = decode_header(wire);  // the header stays readable, version included
    EXPECT_EQ(h.version, kProtocolVersion);
    EXPECT_EQ(h.type, static_cast<uint16_t>(dir == 0 ? FrameType::Load : FrameType::Loaded));
    EXPECT_EQ(h.payload_size, msg.size() + kAeadTagSize);  // ciphertext + tag
    EXPECT_FALSE(has_marker(wire)) << "plaintext on the wire, direction " << dir;
    // Not merely the same bytes shifted: ciphertext differs from plaintext almost everywhere.
    size_t same = 0;
    for (size_t i = 0; i < msg.size(); ++i) same += wire[kFrameHeaderSize + i] == msg[i];
    EXPECT_LT(same, msg.size() / 50);
  }
  // The same payload sent again encrypts differently (next counter).
  link.client->send(FrameType::Load, msg);
  EXPECT_EQ(link.server->recv(kGuardMs).payload, msg);
  auto frames = link.seen(0);
  ASSERT_EQ(frames.size(), 4u);
  EXPECT_NE(Bytes(frames[2].begin() + kFrameHeaderSize, frames[2].end()),
            Bytes(frames[3].begin() + kFrameHeaderSize, frames[3].end()));
}

// Flips one bit of the first frame after the handshake at `offset` (negative: from the end).
void expect_flip_rejected(long offset, uint8_t bit) {
  SCOPED_TRACE("offset " + std::to_string(offset) + " bit " + std::to_string(bit));
  Relayed link(opts("s3cret"), opts("s3cret"), [&](size_t i, Bytes b) {
    if (i == 2) {
      size_t at = offset >= 0 ? static_cast<size_t>(offset) : b.size() - static_cast<size_t>(-offset);
      b[at] ^= bit;
    }
    return std::vector<Bytes>{std::move(b)};
  });
  ASSERT_TRUE(link.client_side.ok) << link.client_side.error;
  ASSERT_TRUE(link.server_side.ok) << link.server_side.error;
  link.client->send(FrameType::Forward, pattern(1000, 5));
  expect_rejected(*link.server);
}

TEST(Aead, FlippedBitInHeaderPayloadOrTagIsRejected) {
  expect_flip_rejected(4, 0x01);                         // version 5 -> 4
  expect_flip_rejected(5, 0x80);                         // version, high byte
  expect_flip_rejected(6, 0x01);                         // type forward -> result
  expect_flip_rejected(kFrameHeaderSize, 0x01);          // first payload byte
  expect_flip_rejected(kFrameHeaderSize + 500, 0x10);    // middle of the payload
  expect_flip_rejected(-static_cast<long>(kAeadTagSize) - 1, 0x04);  // last payload byte
  expect_flip_rejected(-static_cast<long>(kAeadTagSize), 0x01);      // first tag byte
  expect_flip_rejected(-1, 0x80);                                    // last tag byte
}

TEST(Aead, ReplayedFrameIsRejected) {
  Relayed link(opts("s3cret"), opts("s3cret"), [](size_t i, Bytes b) {
    if (i == 3) return std::vector<Bytes>{b, b};  // the second frame, sent twice
    return std::vector<Bytes>{std::move(b)};
  });
  ASSERT_TRUE(link.client_side.ok) << link.client_side.error;
  link.client->send(FrameType::Forward, pattern(64, 1));
  link.client->send(FrameType::Forward, pattern(64, 2));
  EXPECT_EQ(link.server->recv(kGuardMs).payload, pattern(64, 1));
  EXPECT_EQ(link.server->recv(kGuardMs).payload, pattern(64, 2));
  expect_rejected(*link.server);
}

TEST(Aead, SwappedFramesAreRejected) {
  Bytes held;
  Relayed link(opts("s3cret"), opts("s3cret"), [&](size_t i, Bytes b) {
    if (i == 2) {
      held = std::move(b);
      return std::vector<Bytes>{};
    }
    if (i == 3) return std::vector<Bytes>{std::move(b), held};
    return std::vector<Bytes>{std::move(b)};
  });
  ASSERT_TRUE(link.client_side.ok) << link.client_side.error;
  link.client->send(FrameType::Forward, pattern(64, 1));
  link.client->send(FrameType::Forward, pattern(64, 2));
  expect_rejected(*link.server);
}

TEST(Aead, DroppedFrameIsRejected) {
  Relayed link(opts("s3cret"), opts("s3cret"), [](size_t i, Bytes b) {
    if (i == 2) return std::vector<Bytes>{};
    return std::vector<Bytes>{std::move(b)};
  });
  ASSERT_TRUE(link.client_side.ok) << link.client_side.error;
  link.client->send(FrameType::Ping);
  link.client->send(FrameType::Forward, pattern(64, 2));
  expect_rejected(*link.server);
}

TEST(Aead, DifferentSecretsNeverGetThatFar) {
  Relayed link(opts("alpha"), opts("beta"));
  EXPECT_FALSE(link.client_side.ok);
  EXPECT_FALSE(link.server_side.ok);
  EXPECT_TRUE(contains(link.client_side.error, "secret mismatch")) << link.client_side.error;
  EXPECT_TRUE(contains(link.server_side.error, "secret mismatch")) << link.server_side.error;
  EXPECT_FALSE(link.client->aead_enabled());
  EXPECT_FALSE(link.server->aead_enabled());
}

// A handshake recorded on the wire and replayed to a worker later: the worker's challenge carries
// a fresh nonce, so the recorded proof does not answer it and the replay is refused (and could not
// derive the link keys anyway).
TEST(Aead, ReplayedHandshakeIsRefused) {
  std::vector<Bytes> recorded;
  {
    Relayed r(opts("s3cret"), opts("s3cret"));
    ASSERT_TRUE(r.client_side.ok) << r.client_side.error;
    ASSERT_TRUE(r.server_side.ok) << r.server_side.error;
    recorded = r.seen(0);  // hello, auth
  }
  ASSERT_GE(recorded.size(), 2u);
  TcpListener listener("127.0.0.1:0");
  auto server_side = std::async(std::launch::async, [&] {
    auto conn = listener.accept(kGuardMs);
    return run([&] { return handshake_server(*conn, opts("s3cret")); });
  });
  auto attacker = tcp_connect(listener.address(), kGuardMs);
  attacker->send_raw(recorded[0]);   // the old hello
  Frame challenge = attacker->recv(kGuardMs);  // a fresh challenge
  EXPECT_EQ(challenge.type(), FrameType::Challenge);
  attacker->send_raw(recorded[1]);   // the old proof
  Side s = server_side.get();
  EXPECT_FALSE(s.ok) << "a replayed handshake was accepted";
  EXPECT_TRUE(contains(s.error, "secret")) << s.error;
}

TEST(Aead, NoSecretStaysPlain) {
  Relayed link(opts(""), opts(""));
  ASSERT_TRUE(link.client_side.ok) << link.client_side.error;
  ASSERT_TRUE(link.server_side.ok) << link.server_side.error;
  EXPECT_FALSE(link.client_side.result.encrypted);
  EXPECT_FALSE(link.server_side.result.encrypted);
  Bytes msg = marker_payload(10);
  link.client->send(FrameType::Load, msg);
  EXPECT_EQ(link.server->recv(kGuardMs).payload, msg);
  auto frames = link.seen(0);
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[2], encode_frame(FrameType::Load, msg));  // exactly as before
}

TEST(Aead, ConcurrentSendersStayConsistent) {
  Relayed link(opts("s3cret"), opts("s3cret"));
  ASSERT_TRUE(link.client_side.ok) << link.client_side.error;
  constexpr int kThreads = 2, kFrames = 300;
  auto body = [](int t, int k) {
    // Sizes from empty to over one sealing chunk.
    size_t n = (k % 50 == 49) ? (300 << 10) : static_cast<size_t>(k * 37 % 5000);
    return pattern(n, static_cast<uint32_t>(t * 100000 + k));
  };
  std::vector<std::thread> senders;
  for (int t = 0; t < kThreads; ++t) {
    senders.emplace_back([&, t] {
      try {
        for (int k = 0; k < kFrames; ++k) {
          uint8_t head[5] = {static_cast<uint8_t>(t), static_cast<uint8_t>(k),
                             static_cast<uint8_t>(k >> 8), 0, 0};
          Bytes rest = body(t, k);
          std::span<const uint8_t> pieces[2] = {head, rest};
          link.client->send_pieces(FrameType::Forward, pieces);
        }
      } catch (const std::exception&) {
        // The receiver gave up (its error is reported) and closed the link.
      }
    });
  }
  int next[kThreads] = {};
  std::string error;
  for (int i = 0; i < kThreads * kFrames && error.empty(); ++i) {
    try {
      Frame f = link.server->recv(kGuardMs);
      int t = f.payload.at(0), k = f.payload.at(1) | (f.payload.at(2) << 8);
      if (t >= kThreads || k != next[t]) {
        error = "frame " + std::to_string(i) + " out of order";
        break;
      }
      ++next[t];
      Bytes expected = body(t, k);
      if (!std::equal(f.payload.begin() + 5, f.payload.end(), expected.begin(), expected.end())) {
        error = "frame " + std::to_string(i) + " has the wrong payload";
      }
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  if (!error.empty()) link.server->close();  // unblocks the senders
  for (auto& s : senders) s.join();
  EXPECT_EQ(error, "");
  EXPECT_EQ(next[0] + next[1], kThreads * kFrames);
}

double us_per(std::chrono::steady_clock::duration d, int n) {
  return std::chrono::duration<double, std::micro>(d).count() / n;
}

// Not a benchmark with a verdict: prints the per-frame cost of sealing + opening on this CPU,
// and a loopback hop plain vs encrypted, for BENCHMARKS-style notes. Nothing here is asserted.
TEST(AeadCost, PrintsPerFrameCost) {
  using clock = std::chrono::steady_clock;
  Bytes nc = pattern(32, 1), ns = pattern(32, 2);
  for (AeadCipher cipher : {AeadCipher::Aes256Gcm, AeadCipher::ChaCha20Poly1305}) {
    AeadKeys ck = derive_aead_keys("s", nc, ns, true, cipher);
    AeadKeys sk = derive_aead_keys("s", nc, ns, false, cipher);
    for (auto [size, n] : {std::pair<size_t, int>{4096, 20000}, {size_t{1} << 20, 300}}) {
      // Buffers allocated once: this measures the cipher, not the allocator (fresh 1 MiB
      // buffers cost more in page faults than the encryption on this VM).
      AeadStream seal(cipher, ck.send, true), open(cipher, sk.recv, false);
      Bytes msg = pattern(size, 9), wire(size + kAeadTagSize), out(size);
      auto header = encode_header({kProtocolVersion, static_cast<uint16_t>(FrameType::Forward), 0,
                                   size + kAeadTagSize});
      clock::duration sealing{}, opening{};
      clock::duration best_seal = clock::duration::max(), best_open = clock::duration::max();
      for (int i = 0; i < n; ++i) {
        auto t0 = clock::now();
        seal.begin(header);
        seal.update(msg.data(), wire.data(), size);
        seal.seal_final(wire.data() + size);
        auto t1 = clock::now();
        open.begin(header);
        open.update(wire.data(), out.data(), size);
        bool ok = open.open_final(wire.data() + size);
        auto t2 = clock::now();
        ASSERT_TRUE(ok);
        sealing += t1 - t0;
        opening += t2 - t1;
        best_seal = std::min(best_seal, t1 - t0);
        best_open = std::min(best_open, t2 - t1);
      }
      ASSERT_EQ(out, msg);
      // Mean and best: the best is what the cipher costs when no other process shares the core.
      std::printf("[aead cost] %-17s %7zu B: seal %8.2f us + open %8.2f us per frame (mean), "
                  "%8.2f + %8.2f us (best)\n",
                  std::string(aead_cipher_name(cipher)).c_str(), size, us_per(sealing, n),
                  us_per(opening, n), us_per(best_seal, 1), us_per(best_open, 1));
    }
  }
  // One hop over loopback TCP (send + recv, sender and receiver on two threads), plain and
  // sealed.
  for (const std::string secret : {"", "s"}) {
    TcpListener listener("127.0.0.1:0");
    auto client = tcp_connect(listener.address(), kGuardMs);
    auto server = listener.accept(kGuardMs);
    ASSERT_TRUE(server);
    auto hs = std::async(std::launch::async, [&] { handshake_server(*server, opts(secret)); });
    handshake_client(*client, opts(secret));
    hs.get();
    ASSERT_EQ(client->aead_enabled(), !secret.empty());
    for (auto [size, n] : {std::pair<size_t, int>{4096, 5000}, {size_t{1} << 20, 100}}) {
      Bytes msg = pattern(size, 3);
      Frame f;
      auto t0 = clock::now();
      auto sender = std::async(std::launch::async, [&] {
        for (int i = 0; i < n; ++i) client->send(FrameType::Forward, msg);
      });
      for (int i = 0; i < n; ++i) server->recv_into(f, kGuardMs);
      sender.get();
      auto d = clock::now() - t0;
      std::printf("[aead cost] loopback hop, %-6s %7zu B: %8.2f us/frame\n",
                  secret.empty() ? "plain" : "sealed", size, us_per(d, n));
    }
  }
}

}  // namespace
}  // namespace meshlm::transport
