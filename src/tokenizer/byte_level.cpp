#include "tokenizer/byte_level.h"

#include "core/utf8.h"

namespace meshlm::tok {
namespace {

struct Tables {
  std::array<std::string, 256> chars;
  std::array<int, 324> bytes;  // code point (< 324) -> byte, -1 if none
  Tables() {
    bytes.fill(-1);
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      char32_t cp = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + next++);
      utf8_append(chars[b], cp);
      bytes[cp] = b;
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

const std::string& byte_level_char(unsigned char b) {
  return tables().chars[b];
}

void byte_level_encode(std::string_view s, std::string& out) {
  const Tables& t = tables();
  out.reserve(out.size() + s.size() * 2);
  for (unsigned char c : s) out += t.chars[c];
}

int byte_level_byte(char32_t cp) {
  return cp < 324 ? tables().bytes[cp] : -1;
}

}  // namespace meshlm::tok
