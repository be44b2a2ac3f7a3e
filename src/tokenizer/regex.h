// PCRE2 (UTF + UCP, JIT when available) wrapper used for the Split pre-tokenizer, Replace
// normalizer/decoder and ByteLevel's GPT-2 pattern. Patterns come from tokenizer.json, where
// they are written for Oniguruma; the constructs those files use mean the same in PCRE2.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace meshlm::tok {

class Regex {
 public:
  // Throws meshlm::Error("tokenizer", ...) when the pattern does not compile.
  explicit Regex(const std::string& pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // All non-overlapping matches in text (valid UTF-8), left to right, as [begin, end) byte spans.
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshlm::tok
