// The handshake that opens every connection between meshlm nodes. It checks, in order:
//   1. protocol version (both sides must speak the same one),
//   2. model fingerprint (when both sides know one, they must match),
//   3. the shared cluster secret, proven by each side with HMAC-SHA256 over both sides' random
//      nonces (mutual; the secret never crosses the wire; proofs compared in constant time).
// A refusal sends an Error frame naming what mismatched, so both sides report the same reason.
//
//   client                         server
//   hello {version, role, fp, Nc} ->
//                                 <- challenge {version, fp, Ns, HMAC(secret, "server"|Nc|Ns|fp)}
//   auth {HMAC(secret, "client"|Nc|Ns|fp)} ->
//                                 <- welcome {node info: memory, cores, backend}
//
// With a secret (not ""), both sides then derive one AEAD key per direction from the secret and
// both nonces (aead.h) and turn encryption on: every frame after welcome, in both directions, is
// sealed, so a tampered, replayed or reordered frame drops the link. Without a secret (workers
// on loopback only) links stay plain. MPI links stay plain (Connection::enable_aead).
#pragma once

#include <string>

#include "transport/messages.h"
#include "transport/transport.h"

namespace meshlm::transport {

struct HandshakeOptions {
  std::string secret;       // the shared cluster secret ("" is a valid, weak secret)
  std::string fingerprint;  // this side's model fingerprint, "" when it has none
  std::string role = "coordinator";  // client only: "coordinator", "upstream", "probe" or "tp"
                                     // (a tensor-parallel member joining a group)
  std::string name = "peer";         // how this side names the other in messages ("worker")
  std::string client_id;             // client only: identifies one coordinator instance
  int timeout_ms = 10000;
  uint32_t version = kProtocolVersion;  // tests only
  NodeInfo info;  // server only: sent in the welcome frame
};

struct HandshakeResult {
  std::string role;              // what the client said it is
  std::string peer_fingerprint;  // "" when the peer has none
  std::string client_id;         // server side: what the client sent
  NodeInfo peer_info;            // client side: what the server offers
  bool encrypted = false;        // every later frame on the connection is sealed (aead.h)
};

// Each throws Error("handshake", reason) on refusal (after telling the peer why) and
// Error("transport"/"protocol", ...) when the connection breaks or the peer sends garbage.
HandshakeResult handshake_client(Connection& conn, const HandshakeOptions& options);
HandshakeResult handshake_server(Connection& conn, const HandshakeOptions& options);

}  // namespace meshlm::transport
