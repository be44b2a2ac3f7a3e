// tokenizer.json "normalizer": NFC/NFD/NFKC/NFKD, Lowercase, Prepend, Replace, Strip, Sequence.
#pragma once

#include <memory>
#include <string>

#include "tokenizer/json_lite.h"

namespace meshlm::tok {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string normalize(std::string s) const = 0;
};

// nullptr for a JSON null. Throws meshlm::Error for unknown or malformed entries.
std::unique_ptr<Normalizer> make_normalizer(const JsonValue& v);

// Rust char::is_whitespace (Unicode White_Space).
bool is_unicode_whitespace(char32_t c);

}  // namespace meshlm::tok
