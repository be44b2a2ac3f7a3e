// The UTF-8 codec of the tokenizer and the chat templates: decoding one code point, encoding,
// and the lossy conversion of arbitrary bytes to valid UTF-8 (each maximal invalid subpart
// becomes U+FFFD, the rule of Rust's String::from_utf8_lossy and the WHATWG TextDecoder).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace meshlm {

inline constexpr char32_t kReplacementChar = 0xFFFD;
inline constexpr std::string_view kReplacementUtf8 = "\xEF\xBF\xBD";

// Length in bytes of the valid UTF-8 sequence starting at s[i], or 0 when it is invalid or
// truncated. *cp receives the code point when valid.
size_t utf8_valid_len(std::string_view s, size_t i, char32_t* cp);

// Decodes the code point at s[i] of a string known to be valid UTF-8; advances i.
inline char32_t utf8_next(std::string_view s, size_t& i) {
  auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) {
    ++i;
    return c;
  }
  if (c < 0xE0) {
    char32_t cp = ((c & 0x1F) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3F);
    i += 2;
    return cp;
  }
  if (c < 0xF0) {
    char32_t cp = ((c & 0x0F) << 12) | ((static_cast<unsigned char>(s[i + 1]) & 0x3F) << 6) |
                  (static_cast<unsigned char>(s[i + 2]) & 0x3F);
    i += 3;
    return cp;
  }
  char32_t cp = ((c & 0x07) << 18) | ((static_cast<unsigned char>(s[i + 1]) & 0x3F) << 12) |
                ((static_cast<unsigned char>(s[i + 2]) & 0x3F) << 6) |
                (static_cast<unsigned char>(s[i + 3]) & 0x3F);
  i += 4;
  return cp;
}

// Decodes the code point at s[i] of any string and advances i: a valid sequence as utf8_next, an
// invalid or truncated one as U+FFFD for its first byte alone (i advances by 1).
inline char32_t utf8_next_lossy(std::string_view s, size_t& i) {
  char32_t cp;
  const size_t len = utf8_valid_len(s, i, &cp);
  if (len == 0) {
    ++i;
    return kReplacementChar;
  }
  i += len;
  return cp;
}

// Byte length of the character whose lead byte is c (1 for stray continuation bytes).
inline size_t utf8_char_len(unsigned char c) {
  return c < 0xC0 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

// Appends cp encoded as UTF-8; a surrogate (U+D800..U+DFFF) becomes U+FFFD.
void utf8_append(std::string& out, char32_t cp);

bool utf8_is_valid(std::string_view s);

// Valid UTF-8 copy of s, invalid subparts replaced by U+FFFD (Rust from_utf8_lossy rule).
std::string utf8_lossy(std::string_view s);

// Number of bytes at the end of s that form an incomplete (but so far valid) UTF-8 sequence.
size_t utf8_incomplete_tail(std::string_view s);

}  // namespace meshlm
