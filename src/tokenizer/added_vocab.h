// Added tokens (tokenizer.json "added_tokens"): found in the text before the model runs, with the
// lstrip / rstrip / single_word / normalized flags, leftmost-longest like the Rust library.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace meshlm::tok {

struct AddedToken {
  std::string content;
  TokenId id = -1;
  bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = true;
  std::string normalized_content;  // content passed through the normalizer (when normalized)
};

// A piece of text: either an added token or plain text [begin, end).
struct Segment {
  size_t begin, end;
  TokenId id;  // -1 for plain text
};

class AddedTokenMatcher {
 public:
  void add(std::string_view pattern, TokenId id);
  bool empty() const { return patterns_ == 0; }
  // Leftmost-longest match starting at or after `from`: (begin, end, id), or false.
  bool find(std::string_view text, size_t from, size_t& begin, size_t& end, TokenId& id) const;

 private:
  int32_t child(int32_t node, unsigned char c) const;
  std::unordered_map<uint64_t, int32_t> edges_;  // (node << 8 | byte) -> node
  std::vector<TokenId> terminal_;                // node -> id, -1 if no pattern ends there
  bool first_byte_[256] = {};
  size_t patterns_ = 0;
};

class AddedVocab {
 public:
  // Tokens in file order; ids must already be resolved.
  void build(std::vector<AddedToken> tokens);
  // Splits `text` on the tokens of the normalized (or non-normalized) set.
  void split(std::string_view text, bool normalized_set, std::vector<Segment>& out) const;

  const AddedToken* by_id(TokenId id) const;
  std::optional<TokenId> by_content(std::string_view content) const;
  bool is_special_content(std::string_view content) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  std::vector<AddedToken> tokens_;
  std::unordered_map<TokenId, size_t> by_id_;
  std::unordered_map<std::string, TokenId> by_content_;
  std::unordered_map<std::string, bool> special_content_;
  AddedTokenMatcher raw_, normalized_;
};

}  // namespace meshlm::tok
