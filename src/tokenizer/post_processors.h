// tokenizer.json "post_processor": TemplateProcessing, ByteLevel, BertProcessing,
// RobertaProcessing, Sequence. Only the single-sequence template is used (no pairs).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tokenizer/json_lite.h"
#include "tokenizer/tokenizer.h"

namespace meshlm::tok {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // Adds the special tokens around `ids` (only called when add_special is true).
  virtual void process(std::vector<TokenId>& ids) const = 0;
  // The special tokens placed before / after the sequence.
  virtual std::vector<TokenId> prefix() const = 0;
  virtual std::vector<TokenId> suffix() const = 0;
};

std::unique_ptr<PostProcessor> make_post_processor(const JsonValue& v);

}  // namespace meshlm::tok
