// tokenizer.json "decoder": ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, BPEDecoder,
// Sequence. Each maps the list of token strings to a new list; decode joins the result.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tokenizer/json_lite.h"

namespace meshlm::tok {

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

std::unique_ptr<Decoder> make_decoder(const JsonValue& v);

}  // namespace meshlm::tok
