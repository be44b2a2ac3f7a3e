#include "transport/aead.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "transport/transport.h"

namespace meshlm::transport {
namespace {

[[noreturn]] void fail(std::string_view what) { throw Error("aead", std::string(what)); }

const EVP_CIPHER* evp_cipher(AeadCipher cipher) {
  return cipher == AeadCipher::Aes256Gcm ? EVP_aes_256_gcm() : EVP_chacha20_poly1305();
}

std::array<uint8_t, 32> hmac_sha256(std::span<const uint8_t> key, std::span<const uint8_t> data) {
  std::array<uint8_t, 32> out{};
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data.data(), data.size(),
            out.data(), &len) ||
      len != out.size()) {
    fail("HMAC-SHA256 failed");
  }
  return out;
}

// HKDF-Expand for one 32-byte block: HMAC(PRK, info || 0x01).
AeadKey expand(const std::array<uint8_t, 32>& prk, std::string_view info) {
  std::vector<uint8_t> data(info.begin(), info.end());
  data.push_back(0x01);
  return hmac_sha256(prk, data);
}

}  // namespace

std::string_view aead_cipher_name(AeadCipher cipher) {
  return cipher == AeadCipher::Aes256Gcm ? "aes-256-gcm" : "chacha20-poly1305";
}

AeadKeys derive_aead_keys(std::string_view secret, std::span<const uint8_t> client_nonce,
                          std::span<const uint8_t> server_nonce, bool client_side,
                          AeadCipher cipher) {
  std::vector<uint8_t> salt(client_nonce.begin(), client_nonce.end());
  salt.insert(salt.end(), server_nonce.begin(), server_nonce.end());
  auto prk = hmac_sha256(salt, {reinterpret_cast<const uint8_t*>(secret.data()), secret.size()});
  const std::string base = "meshlm link v1 " + std::string(aead_cipher_name(cipher));
  AeadKey c2s = expand(prk, base + " client->server");
  AeadKey s2c = expand(prk, base + " server->client");
  AeadKeys keys;
  keys.cipher = cipher;
  keys.send = client_side ? c2s : s2c;
  keys.recv = client_side ? s2c : c2s;
  return keys;
}

AeadStream::AeadStream(AeadCipher cipher, const AeadKey& key, bool encrypt)
    : cipher_(cipher), encrypt_(encrypt) {
  ctx_ = EVP_CIPHER_CTX_new();
  if (!ctx_) fail("cannot allocate a cipher context");
  // The key is set once (its schedule is kept); begin() only sets the IV for each frame.
  int ok = EVP_CipherInit_ex(ctx_, evp_cipher(cipher), nullptr, nullptr, nullptr, encrypt ? 1 : 0);
  ok = ok && EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_SET_IVLEN, kAeadIvSize, nullptr);
  ok = ok && EVP_CipherInit_ex(ctx_, nullptr, nullptr, key.data(), nullptr, encrypt ? 1 : 0);
  if (!ok) {
    EVP_CIPHER_CTX_free(ctx_);
    fail(std::string("cannot set up ") + std::string(aead_cipher_name(cipher)));
  }
}

AeadStream::~AeadStream() { EVP_CIPHER_CTX_free(ctx_); }

void AeadStream::begin(std::span<const uint8_t> header) {
  if (counter_ == std::numeric_limits<uint64_t>::max()) {
    fail("frame counter exhausted: reconnect");  // 2^64 frames: never in practice
  }
  uint8_t iv[kAeadIvSize] = {};
  for (int i = 0; i < 8; ++i) iv[4 + i] = static_cast<uint8_t>(counter_ >> (8 * i));
  ++counter_;
  int len = 0;
  if (!EVP_CipherInit_ex(ctx_, nullptr, nullptr, nullptr, iv, encrypt_ ? 1 : 0) ||
      !EVP_CipherUpdate(ctx_, nullptr, &len, header.data(), static_cast<int>(header.size()))) {
    fail("cannot start a frame");
  }
}

void AeadStream::update(const uint8_t* in, uint8_t* out, size_t n) {
  constexpr size_t kMaxStep = size_t{1} << 30;  // EVP lengths are int
  while (n > 0) {
    size_t step = std::min(n, kMaxStep);
    int len = 0;
    if (!EVP_CipherUpdate(ctx_, out, &len, in, static_cast<int>(step)) ||
        static_cast<size_t>(len) != step) {
      fail("cipher update failed");
    }
    in += step;
    out += step;
    n -= step;
  }
}

void AeadStream::seal_final(uint8_t* tag) {
  int len = 0;
  uint8_t none[16];
  if (!EVP_CipherFinal_ex(ctx_, none, &len) || len != 0 ||
      !EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_GET_TAG, kAeadTagSize, tag)) {
    fail("cannot finish a frame");
  }
}

bool AeadStream::open_final(const uint8_t* tag) {
  uint8_t copy[kAeadTagSize];
  std::memcpy(copy, tag, kAeadTagSize);
  int len = 0;
  uint8_t none[16];
  if (!EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_SET_TAG, kAeadTagSize, copy)) {
    fail("cannot set the tag");
  }
  return EVP_CipherFinal_ex(ctx_, none, &len) == 1 && len == 0;
}

std::string aead_failure_message(const std::string& peer) {
  return "frame from " + peer +
         " failed authentication (tampered, replayed or out of order): dropping the link";
}

std::vector<uint8_t> seal_frame(AeadStream& sealer, FrameType type,
                                std::span<const uint8_t> payload, uint16_t version) {
  if (payload.size() > kMaxPayload) {
    throw Error("protocol",
                "frame payload of " + std::to_string(payload.size()) + " bytes exceeds 1 GiB");
  }
  auto header =
      encode_header({version, static_cast<uint16_t>(type), 0, payload.size() + kAeadTagSize});
  std::vector<uint8_t> out(kFrameHeaderSize + payload.size() + kAeadTagSize);
  std::memcpy(out.data(), header.data(), header.size());
  sealer.begin(header);
  sealer.update(payload.data(), out.data() + kFrameHeaderSize, payload.size());
  sealer.seal_final(out.data() + kFrameHeaderSize + payload.size());
  return out;
}

Frame open_frame(AeadStream& opener, std::span<const uint8_t> bytes, const std::string& peer,
                 uint64_t max_payload) {
  const uint64_t limit = max_payload > std::numeric_limits<uint64_t>::max() - kAeadTagSize
                             ? max_payload
                             : max_payload + kAeadTagSize;
  Frame f;
  f.header = decode_header(bytes, limit);
  const uint64_t wire = f.header.payload_size;
  if (bytes.size() - kFrameHeaderSize != wire) {
    throw Error("protocol", "malformed frame: truncated payload or trailing bytes");
  }
  if (wire < kAeadTagSize) throw ConnectionError(aead_failure_message(peer));
  const size_t n = static_cast<size_t>(wire - kAeadTagSize);
  opener.begin(bytes.first(kFrameHeaderSize));
  f.payload.resize(n);
  opener.update(bytes.data() + kFrameHeaderSize, f.payload.data(), n);
  if (!opener.open_final(bytes.data() + kFrameHeaderSize + n)) {
    f.payload.clear();
    throw ConnectionError(aead_failure_message(peer));
  }
  f.header.payload_size = n;
  return f;
}

}  // namespace meshlm::transport
