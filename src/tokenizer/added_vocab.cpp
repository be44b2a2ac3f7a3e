#include "tokenizer/added_vocab.h"

#include "core/utf8.h"
#include "tokenizer/normalizers.h"
#include "tokenizer/regex.h"

namespace meshlm::tok {
namespace {

// Whether the character c is a regex \w (letters, marks, digits, connector punctuation).
bool is_word_char(std::string_view ch) {
  static const Regex word(R"(^\w$)");
  std::vector<std::pair<size_t, size_t>> m;
  word.find_all(ch, m);
  return !m.empty();
}

std::string_view last_char(std::string_view s) {
  size_t i = s.size();
  while (i > 0 && (static_cast<unsigned char>(s[i - 1]) & 0xC0) == 0x80) --i;
  if (i > 0) --i;
  return s.substr(i);
}

std::string_view first_char(std::string_view s) {
  return s.substr(0, std::min(s.size(), utf8_char_len(static_cast<unsigned char>(s[0]))));
}

}  // namespace

void AddedTokenMatcher::add(std::string_view pattern, TokenId id) {
  if (pattern.empty()) return;
  if (terminal_.empty()) terminal_.push_back(-1);
  int32_t node = 0;
  for (unsigned char c : pattern) {
    uint64_t key = (static_cast<uint64_t>(node) << 8) | c;
    auto it = edges_.find(key);
    if (it == edges_.end()) {
      int32_t next = static_cast<int32_t>(terminal_.size());
      terminal_.push_back(-1);
      edges_.emplace(key, next);
      node = next;
    } else {
      node = it->second;
    }
  }
  terminal_[node] = id;
  first_byte_[static_cast<unsigned char>(pattern[0])] = true;
  ++patterns_;
}

int32_t AddedTokenMatcher::child(int32_t node, unsigned char c) const {
  auto it = edges_.find((static_cast<uint64_t>(node) << 8) | c);
  return it == edges_.end() ? -1 : it->second;
}

bool AddedTokenMatcher::find(std::string_view text, size_t from, size_t& begin, size_t& end,
                             TokenId& id) const {
  if (patterns_ == 0) return false;
  for (size_t i = from; i < text.size(); ++i) {
    if (!first_byte_[static_cast<unsigned char>(text[i])]) continue;
    int32_t node = 0;
    size_t best_end = 0;
    TokenId best_id = -1;
    for (size_t j = i; j < text.size(); ++j) {
      node = child(node, static_cast<unsigned char>(text[j]));
      if (node < 0) break;
      if (terminal_[node] >= 0) {
        best_end = j + 1;
        best_id = terminal_[node];
      }
    }
    if (best_id >= 0) {
      begin = i;
      end = best_end;
      id = best_id;
      return true;
    }
  }
  return false;
}

void AddedVocab::build(std::vector<AddedToken> tokens) {
  tokens_ = std::move(tokens);
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const AddedToken& t = tokens_[i];
    by_id_[t.id] = i;
    by_content_[t.content] = t.id;
    if (t.special) special_content_[t.content] = true;
  }
  // Later duplicates of an id replace earlier ones, as in the Rust HashMap.
  for (auto& [id, index] : by_id_) {
    const AddedToken& t = tokens_[index];
    if (t.normalized)
      normalized_.add(t.normalized_content, id);
    else
      raw_.add(t.content, id);
  }
}

void AddedVocab::split(std::string_view text, bool normalized_set,
                       std::vector<Segment>& out) const {
  const AddedTokenMatcher& m = normalized_set ? normalized_ : raw_;
  if (text.empty()) return;
  size_t start_offset = 0, from = 0, b, e;
  TokenId id;
  while (m.find(text, from, b, e, id)) {
    from = e;  // matches never overlap
    const AddedToken& t = tokens_[by_id_.at(id)];
    size_t start = b, stop = e;
    if (t.single_word) {
      bool start_space = start == 0 || !is_word_char(last_char(text.substr(0, start)));
      bool stop_space = stop == text.size() || !is_word_char(first_char(text.substr(stop)));
      if (!start_space || !stop_space) continue;
    }
    if (t.lstrip) {
      size_t s = start;
      while (s > 0) {
        std::string_view ch = last_char(text.substr(0, s));
        size_t k = 0;
        if (!is_unicode_whitespace(utf8_next(ch, k))) break;
        s -= ch.size();
      }
      start = std::max(s, start_offset);
    }
    if (t.rstrip) {
      while (stop < text.size()) {
        size_t k = stop;
        if (!is_unicode_whitespace(utf8_next(text, k))) break;
        stop = k;
      }
    }
    if (start_offset < start) out.push_back({start_offset, start, -1});
    out.push_back({start, stop, id});
    start_offset = stop;
    from = std::max(from, stop);
  }
  if (start_offset != text.size()) out.push_back({start_offset, text.size(), -1});
}

const AddedToken* AddedVocab::by_id(TokenId id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

std::optional<TokenId> AddedVocab::by_content(std::string_view content) const {
  auto it = by_content_.find(std::string(content));
  if (it == by_content_.end()) return std::nullopt;
  return it->second;
}

bool AddedVocab::is_special_content(std::string_view content) const {
  return special_content_.count(std::string(content)) != 0;
}

}  // namespace meshlm::tok
