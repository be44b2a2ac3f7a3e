// tokenizer.json "pre_tokenizer": ByteLevel, Split, Digits, Metaspace, Whitespace,
// WhitespaceSplit, Sequence. Each turns a list of pieces into a finer list.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tokenizer/json_lite.h"

namespace meshlm::tok {

struct Piece {
  std::string text;
  bool at_origin;  // starts at byte 0 of the original input (Metaspace prepend_scheme "first")
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void pre_tokenize(std::vector<Piece>& pieces) const = 0;
};

// nullptr for a JSON null. Throws meshlm::Error for unknown or malformed entries.
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const JsonValue& v);

}  // namespace meshlm::tok
