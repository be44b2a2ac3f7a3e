// libFuzzer target: the connection handshake (transport/handshake.h) as a state machine, both
// sides. The harness plays the peer through a ScriptedConnection: each frame the code under test
// receives is built from the fuzz input when it is asked for, so it can answer what was sent:
//   - byte 0 picks the side under test (client or server), this node's fingerprint and secret;
//   - each received frame: a byte picks its type (mostly the one expected next, else an Error
//     frame or any type) and version (mostly ours), then the payload bytes follow; on request
//     the harness replaces the fuzzed proof of a well-formed challenge / auth with the right
//     HMAC, so the fuzzer also gets past the secret check to the welcome frame, as a peer that
//     knows the secret would.
// Any script must end in a result or a meshlm::Error (refusal, protocol, transport); a refusal
// sends one Error frame that decodes; every frame sent decodes.
#include <openssl/hmac.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include "core/error.h"
#include "transport/handshake.h"
#include "message_payloads.h"
#include "fuzz_common.h"

using namespace meshlm::transport;
using meshlm::fuzz::require;
using meshlm::fuzz::ScriptedConnection;

namespace {

const std::string kFingerprint(64, 'a');

// The proof handshake.cpp computes: HMAC-SHA256(secret, str(label) | Nc | Ns | str(fp)).
Mac proof(const std::string& secret, const char* label, const Nonce& nc, const Nonce& ns,
          const std::string& fp) {
  PayloadWriter w;
  w.str(label);
  w.raw(nc);
  w.raw(ns);
  w.str(fp);
  Mac mac{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), w.bytes().data(),
       w.bytes().size(), mac.data(), &len);
  return mac;
}

// The first frame of `type` this side sent, decoded.
template <class Decode>
auto sent_as(const ScriptedConnection& c, FrameType type, Decode decode)
    -> std::optional<decltype(decode(std::span<const uint8_t>{}))> {
  for (const auto& s : c.sent)
    if (s.type == type) return decode(s.payload);
  return std::nullopt;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  meshlm::fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const uint8_t setup = in.ConsumeIntegral<uint8_t>();
  const bool server = setup & 1;
  HandshakeOptions opt;
  opt.secret = (setup & 2) ? "s3cret" : "";
  opt.fingerprint = (setup & 4) ? kFingerprint : "";
  opt.role = (setup & 8) ? "upstream" : "coordinator";
  opt.client_id = "c1";
  opt.timeout_ms = 0;
  opt.info = {"0.1.0", 1 << 30, 1 << 29, 4, "cpu/fuzz"};

  int received = 0;
  std::optional<std::vector<uint8_t>> hello_payload;  // server side: the hello the harness sent
  ScriptedConnection conn([&](ScriptedConnection& c, Frame& f) {
    if (in.remaining_bytes() == 0 || received >= 4) return false;
    // What this side expects next: client: challenge, welcome; server: hello, auth.
    const FrameType expected = server ? (received == 0 ? FrameType::Hello : FrameType::Auth)
                                      : (received == 0 ? FrameType::Challenge : FrameType::Welcome);
    ++received;
    const uint8_t kind = in.ConsumeIntegral<uint8_t>();
    FrameType type = expected;
    if ((kind & 0x70) == 0x70) type = FrameType::Error;
    else if ((kind & 0x70) == 0x60)
      type = meshlm::fuzz::kAllFrameTypes[in.ConsumeIntegral<uint8_t>() % meshlm::fuzz::kNumFrameTypes];
    f.header.type = static_cast<uint16_t>(type);
    f.header.version = (kind & 0x80) ? in.ConsumeIntegral<uint16_t>() : kProtocolVersion;
    std::string payload = in.ConsumeRandomLengthString(300);
    f.payload.assign(payload.begin(), payload.end());
    if ((kind & 1) && type == expected) {  // the right proof, as a peer knowing the secret
      try {
        if (type == FrameType::Challenge) {
          auto hello = sent_as(c, FrameType::Hello, decode_hello);
          require(hello.has_value());  // a client always says hello first
          ChallengeMsg ch = decode_challenge(f.payload);
          ch.proof = proof(opt.secret, "meshlm server", hello->nonce, ch.nonce, hello->fingerprint);
          f.payload = encode_challenge(ch);
        } else if (type == FrameType::Auth) {
          auto challenge = sent_as(c, FrameType::Challenge, decode_challenge);
          if (challenge && hello_payload) {
            HelloMsg hello = decode_hello(*hello_payload);
            AuthMsg auth;
            auth.proof = proof(opt.secret, "meshlm client", hello.nonce, challenge->nonce,
                               hello.fingerprint);
            f.payload = encode_auth(auth);
          }
        }
      } catch (const meshlm::Error&) {
        // A malformed fuzzed challenge stays as it is.
      }
    }
    if (type == FrameType::Hello) hello_payload = f.payload;
    return true;
  });

  try {
    HandshakeResult r = server ? handshake_server(conn, opt) : handshake_client(conn, opt);
    if (server) {
      require(r.role == "coordinator" || r.role == "upstream" || r.role == "probe");
      require(opt.fingerprint.empty() || r.peer_fingerprint.empty() ||
              r.peer_fingerprint == opt.fingerprint);
      require(!conn.sent.empty() && conn.sent.back().type == FrameType::Welcome);
    } else {
      require(opt.fingerprint.empty() || r.peer_fingerprint.empty() ||
              r.peer_fingerprint == opt.fingerprint);
      require(!conn.sent.empty() && conn.sent.back().type == FrameType::Auth);
      require(r.peer_info.cores >= 0);
    }
  } catch (const meshlm::Error&) {
  }
  // Whatever happened, every frame this side sent decodes, and at most one is an Error frame
  // (the refusal), which is the last.
  for (size_t i = 0; i < conn.sent.size(); ++i) {
    const auto& s = conn.sent[i];
    try {
      meshlm::fuzz::decode_payload(s.type, s.payload);
    } catch (const meshlm::Error&) {
      __builtin_trap();
    }
    if (s.type == FrameType::Error) require(i + 1 == conn.sent.size());
  }
  return 0;
}
