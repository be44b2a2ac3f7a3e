#include "core/hex.h"

#include <openssl/rand.h>

#include <vector>

#include "core/error.h"

namespace meshlm {

namespace {
constexpr char kDigits[] = "0123456789abcdef";
}  // namespace

std::string to_hex(std::span<const uint8_t> bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

std::string to_hex(uint64_t value, int digits) {
  std::string out(static_cast<size_t>(digits), '0');
  for (int i = digits - 1; i >= 0; --i, value >>= 4)
    out[static_cast<size_t>(i)] = kDigits[value & 15];
  return out;
}

std::string random_hex(size_t n_bytes) {
  std::vector<uint8_t> bytes(n_bytes);
  if (n_bytes > 0 && RAND_bytes(bytes.data(), static_cast<int>(n_bytes)) != 1)
    throw Error("random", "the system's random generator failed");
  return to_hex(bytes);
}

}  // namespace meshlm
