#include "transport/handshake.h"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "core/log.h"
#include "transport/aead.h"
#include "transport/messages.h"

namespace meshlm::transport {
namespace {

Nonce random_nonce() {
  Nonce n;
  if (RAND_bytes(n.data(), static_cast<int>(n.size())) != 1) {
    throw Error("handshake", "cannot draw a random nonce");
  }
  return n;
}

Mac proof(const std::string& secret, std::string_view label, const Nonce& client_nonce,
          const Nonce& server_nonce, const std::string& client_fingerprint) {
  PayloadWriter w;
  w.str(label);
  w.raw(client_nonce);
  w.raw(server_nonce);
  w.str(client_fingerprint);
  Mac mac{};
  unsigned int len = 0;
  const auto& data = w.bytes();
  if (!HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), data.data(), data.size(),
            mac.data(), &len) ||
      len != mac.size()) {
    throw Error("handshake", "HMAC-SHA256 failed");
  }
  return mac;
}

bool same_mac(const Mac& a, const Mac& b) { return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0; }

std::string short_fp(const std::string& fp) { return fp.empty() ? "(none)" : fp.substr(0, 16); }

[[noreturn]] void refuse(Connection& conn, const std::string& reason) {
  send_error_quietly(conn, reason);
  throw Error("handshake", reason);
}

// Receives the next handshake frame of `expected` type; an Error frame is the peer's refusal.
Frame expect(Connection& conn, FrameType expected, int timeout_ms) {
  Frame f = conn.recv(timeout_ms, kMaxHandshakePayload);
  if (f.type() == FrameType::Error) {
    std::string why;
    try {
      why = decode_text(f.payload);
    } catch (const Error&) {
      why = "(unreadable reason)";
    }
    throw Error("handshake", "refused by " + conn.peer() + ": " + why);
  }
  if (f.header.version != kProtocolVersion) {
    refuse(conn, "protocol version mismatch: " + conn.peer() + " speaks version " +
                     std::to_string(f.header.version) + ", this node speaks " +
                     std::to_string(kProtocolVersion));
  }
  if (f.type() != expected) {
    refuse(conn, "handshake out of order: expected " +
                     frame_type_name(static_cast<uint16_t>(expected)) + ", got " +
                     frame_type_name(f.header.type));
  }
  return f;
}

void check_fingerprints(Connection& conn, const std::string& ours, const std::string& theirs,
                        const std::string& our_name, const std::string& their_name) {
  if (!ours.empty() && !theirs.empty() && ours != theirs) {
    refuse(conn, "model fingerprint mismatch: " + our_name + " has model " + short_fp(ours) +
                     "..., " + their_name + " has " + short_fp(theirs) +
                     "... (different model files)");
  }
}

// Turns encryption on once the handshake has succeeded: the next frame each side sends is
// sealed. No secret: anyone could derive the keys, so the link stays plain (loopback workers).
bool start_encryption(Connection& conn, const HandshakeOptions& options, const Nonce& client_nonce,
                      const Nonce& server_nonce, bool client_side) {
  if (options.secret.empty()) return false;
  bool on =
      conn.enable_aead(derive_aead_keys(options.secret, client_nonce, server_nonce, client_side));
  if (on) {
    log::debug("[handshake] link with {} encrypted ({})", conn.peer(),
               aead_cipher_name(kLinkCipher));
  }
  return on;
}

}  // namespace

HandshakeResult handshake_client(Connection& conn, const HandshakeOptions& options) {
  HelloMsg hello;
  hello.version = options.version;
  hello.role = options.role;
  hello.fingerprint = options.fingerprint;
  hello.client_id = options.client_id;
  hello.nonce = random_nonce();
  conn.set_send_version(static_cast<uint16_t>(options.version));
  conn.send(FrameType::Hello, encode_hello(hello));

  Frame f = expect(conn, FrameType::Challenge, options.timeout_ms);
  ChallengeMsg challenge = decode_challenge(f.payload);
  if (challenge.version != options.version) {
    refuse(conn, "protocol version mismatch: " + options.name + " speaks version " +
                     std::to_string(challenge.version) + ", this node speaks " +
                     std::to_string(options.version));
  }
  check_fingerprints(conn, options.fingerprint, challenge.fingerprint, "this node", options.name);
  Mac expected = proof(options.secret, "meshlm server", hello.nonce, challenge.nonce,
                       hello.fingerprint);
  if (!same_mac(expected, challenge.proof)) {
    refuse(conn, "cluster secret mismatch: " + options.name + " " + conn.peer() +
                     " does not share this node's secret (--secret / MESHLM_SECRET)");
  }
  AuthMsg auth;
  auth.proof = proof(options.secret, "meshlm client", hello.nonce, challenge.nonce,
                     hello.fingerprint);
  conn.send(FrameType::Auth, encode_auth(auth));
  Frame w = expect(conn, FrameType::Welcome, options.timeout_ms);
  HandshakeResult result;
  result.role = hello.role;
  result.peer_fingerprint = challenge.fingerprint;
  result.peer_info = decode_node_info(w.payload);
  result.encrypted = start_encryption(conn, options, hello.nonce, challenge.nonce, true);
  return result;
}

HandshakeResult handshake_server(Connection& conn, const HandshakeOptions& options) {
  Frame f = expect(conn, FrameType::Hello, options.timeout_ms);
  HelloMsg hello = decode_hello(f.payload);
  if (hello.version != kProtocolVersion) {
    refuse(conn, "protocol version mismatch: " + options.name + " speaks version " +
                     std::to_string(hello.version) + ", this node speaks " +
                     std::to_string(kProtocolVersion));
  }
  if (hello.role != "coordinator" && hello.role != "upstream" && hello.role != "probe" &&
      hello.role != "tp") {
    refuse(conn, "unknown role '" + hello.role + "'");
  }
  check_fingerprints(conn, options.fingerprint, hello.fingerprint, "this node", options.name);

  ChallengeMsg challenge;
  challenge.fingerprint = options.fingerprint;
  challenge.nonce = random_nonce();
  challenge.proof = proof(options.secret, "meshlm server", hello.nonce, challenge.nonce,
                          hello.fingerprint);
  conn.send(FrameType::Challenge, encode_challenge(challenge));

  Frame a = expect(conn, FrameType::Auth, options.timeout_ms);
  AuthMsg auth = decode_auth(a.payload);
  Mac expected = proof(options.secret, "meshlm client", hello.nonce, challenge.nonce,
                       hello.fingerprint);
  if (!same_mac(expected, auth.proof)) {
    refuse(conn, "cluster secret mismatch: " + options.name + " " + conn.peer() +
                     " does not share this node's secret (--secret / MESHLM_SECRET)");
  }
  conn.send(FrameType::Welcome, encode_node_info(options.info));
  HandshakeResult result;
  result.role = hello.role;
  result.peer_fingerprint = hello.fingerprint;
  result.client_id = hello.client_id;
  result.encrypted = start_encryption(conn, options, hello.nonce, challenge.nonce, false);
  return result;
}

}  // namespace meshlm::transport
