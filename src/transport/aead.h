// Encrypted links: after a handshake with a cluster secret, every frame is sealed with an AEAD
// cipher under keys derived from the secret and both handshake nonces, one key per direction.
//
// Keys (HKDF-SHA256, RFC 5869, never sent):
//   PRK          = HMAC-SHA256(salt = client_nonce || server_nonce, secret)
//   key(c -> s)  = HMAC-SHA256(PRK, "meshlm link v1 <cipher> client->server" || 0x01)
//   key(s -> c)  = HMAC-SHA256(PRK, "meshlm link v1 <cipher> server->client" || 0x01)
// Both nonces are fresh random per connection, so every connection has its own keys.
//
// Nonce: 96 bits = 4 zero bytes || the direction's 64-bit frame counter (little-endian), which
// starts at 0 after the handshake and counts every frame sent in that direction. The receiver
// expects the next counter value, so a replayed, dropped, reordered or reflected (sent back to
// its sender: the other direction's key) frame fails authentication.
//
// Wire layout of a sealed frame (frame.h's header is unchanged, so any peer can still read the
// version):
//   header (20 bytes, plain, authenticated as additional data; payload length = n + 16)
//   ciphertext (n bytes, n = plaintext payload length)
//   tag (16 bytes)
// Handshake frames stay plain (the HMAC proofs authenticate them). MPI links stay plain (mpirun
// vouches for its ranks; see Connection::enable_aead).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "transport/frame.h"

typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;

namespace meshlm::transport {

inline constexpr size_t kAeadKeySize = 32;
inline constexpr size_t kAeadIvSize = 12;
inline constexpr size_t kAeadTagSize = 16;

// AES-256-GCM is what links use: every x86-64 CPU since 2010 (AES-NI + PCLMULQDQ; VAES on
// recent ones) and every Apple Silicon / ARMv8 server core (crypto extensions) runs it in
// hardware at several GB/s, as fast as ChaCha20-Poly1305 on AVX-512 cores and faster on the
// others (tests/transport/aead_test.cpp prints both on the machine it runs on). ChaCha20-Poly1305
// would only win on cores without AES instructions (Raspberry Pi 4 and older ARM). Both ends
// must use the same cipher and the handshake has no field to negotiate one, so the cipher is
// fixed; ChaCha20-Poly1305 is implemented here too, so a later protocol version can offer it.
enum class AeadCipher : uint8_t { Aes256Gcm, ChaCha20Poly1305 };
inline constexpr AeadCipher kLinkCipher = AeadCipher::Aes256Gcm;
std::string_view aead_cipher_name(AeadCipher cipher);  // "aes-256-gcm", "chacha20-poly1305"

using AeadKey = std::array<uint8_t, kAeadKeySize>;

struct AeadKeys {
  AeadCipher cipher = kLinkCipher;
  AeadKey send{};  // this side -> the peer
  AeadKey recv{};  // the peer -> this side
};

// The keys of one side of a connection (client_side: the side that sent hello). The client's
// send key is the server's recv key and vice versa. Throws Error("aead", ...) if OpenSSL fails.
AeadKeys derive_aead_keys(std::string_view secret, std::span<const uint8_t> client_nonce,
                          std::span<const uint8_t> server_nonce, bool client_side,
                          AeadCipher cipher = kLinkCipher);

// One direction of a link: a key and the frame counter. A frame is sealed or opened in pieces:
//   begin(header); update(...) for each stretch of payload; seal_final(tag) / open_final(tag).
// Not thread-safe (the connection serializes each direction).
class AeadStream {
 public:
  AeadStream(AeadCipher cipher, const AeadKey& key, bool encrypt);
  ~AeadStream();
  AeadStream(const AeadStream&) = delete;
  AeadStream& operator=(const AeadStream&) = delete;

  // Starts the next frame: IV from the counter (which then advances), `header` as AAD.
  void begin(std::span<const uint8_t> header);
  // Encrypts or decrypts n bytes; out may equal in (in place), otherwise they must not overlap.
  void update(const uint8_t* in, uint8_t* out, size_t n);
  void seal_final(uint8_t* tag);        // encrypt side: writes kAeadTagSize bytes
  bool open_final(const uint8_t* tag);  // decrypt side: false when authentication failed

  uint64_t counter() const { return counter_; }  // frames begun so far
  AeadCipher cipher() const { return cipher_; }

 private:
  EVP_CIPHER_CTX* ctx_ = nullptr;
  AeadCipher cipher_;
  bool encrypt_;
  uint64_t counter_ = 0;
};

// The message for a frame that did not authenticate.
std::string aead_failure_message(const std::string& peer);

// Whole frames in one buffer (tests, fuzzers, benchmarks; the TCP transport streams instead).
// seal_frame: header (payload length = payload + tag) || ciphertext || tag.
std::vector<uint8_t> seal_frame(AeadStream& sealer, FrameType type,
                                std::span<const uint8_t> payload,
                                uint16_t version = kProtocolVersion);
// open_frame: parses and opens exactly one sealed frame; header.payload_size of the result is
// the plaintext size. Throws Error("protocol", ...) for a malformed header and
// ConnectionError (aead_failure_message(peer)) when it does not authenticate.
Frame open_frame(AeadStream& opener, std::span<const uint8_t> bytes, const std::string& peer,
                 uint64_t max_payload = kMaxPayload);

}  // namespace meshlm::transport
