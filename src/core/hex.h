// Lowercase hexadecimal text: digests, hashes, ids and secrets as people and file names see them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace meshlm {

// Two digits a byte, first byte first: {0x0f, 0xa0} -> "0fa0".
std::string to_hex(std::span<const uint8_t> bytes);
// The low `digits` hex digits of value, most significant first: to_hex(0xab, 4) -> "00ab".
std::string to_hex(uint64_t value, int digits);
// n_bytes from the system's cryptographic random generator (OpenSSL RAND_bytes), as 2 x n_bytes
// hex digits: ids and generated secrets. Throws Error("random", ...) when no randomness is to be
// had.
std::string random_hex(size_t n_bytes);

}  // namespace meshlm
