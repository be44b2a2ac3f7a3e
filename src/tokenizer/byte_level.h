// GPT-2's reversible byte <-> printable character table used by ByteLevel pre-tokenizer and
// decoder: bytes '!'..'~', U+00A1..U+00AC and U+00AE..U+00FF stand for themselves, the others
// map in order to U+0100 and up.
#pragma once

#include <array>
#include <string>
#include <string_view>

namespace meshlm::tok {

// UTF-8 text of the character standing for byte b.
const std::string& byte_level_char(unsigned char b);
// Appends the mapped form of every byte of s.
void byte_level_encode(std::string_view s, std::string& out);
// Byte stood for by code point cp, or -1 when cp is not in the table.
int byte_level_byte(char32_t cp);

}  // namespace meshlm::tok
