// What Split, Replace and the added-token matcher cut text with: a literal string or a regex,
// and the five ways the cut pieces are kept (SplitDelimiterBehavior of the Rust library).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/json_lite.h"
#include "tokenizer/regex.h"

namespace meshlm::tok {

// A span of text, flagged when it is a match of the pattern. A list of Spans covers the text.
struct Span {
  size_t begin, end;
  bool match;
};

class Pattern {
 public:
  // From {"String": "..."} or {"Regex": "..."}.
  static Pattern from_json(const JsonValue& v, std::string_view what);
  static Pattern literal(std::string s);
  // Covers `text` with match / non-match spans (empty text gives one empty non-match span).
  std::vector<Span> find_matches(std::string_view text) const;

 private:
  std::string literal_;
  std::shared_ptr<const Regex> regex_;
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

SplitBehavior split_behavior_from_string(std::string_view name);

// Applies `behavior` to the spans and returns the [begin, end) ranges that are kept, empty ones
// dropped.
std::vector<std::pair<size_t, size_t>> split_spans(std::vector<Span> spans, SplitBehavior behavior);

}  // namespace meshlm::tok
