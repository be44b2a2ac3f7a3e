// The BPE model of tokenizer.json: vocab, ranked merges, byte-level or SentencePiece-style
// (byte_fallback, unk fusing) words, ignore_merges, and a word -> ids cache. Loaded straight from
// the JSON cursor so that a 500k-merge file loads in tens of milliseconds.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/json_lite.h"
#include "tokenizer/tokenizer.h"

namespace meshlm::tok {

class BpeModel {
 public:
  // Parses the "model" object at the cursor.
  static std::unique_ptr<BpeModel> parse(JsonCursor& cur);

  // Appends the ids of one pre-tokenized word.
  void tokenize(std::string_view word, std::vector<TokenId>& out) const;

  std::optional<TokenId> token_to_id(std::string_view token) const;
  // nullptr when the id is not in the vocab.
  const std::string_view* id_to_token(TokenId id) const;
  size_t size() const { return entries_.size(); }  // number of vocab entries
  TokenId max_id() const { return max_id_; }

 private:
  struct Entry {
    uint32_t offset, length;
    TokenId id;
  };
  struct Merge {
    uint64_t key;  // (left id << 32) | right id; kEmptyKey marks a free slot
    uint32_t rank;
    TokenId new_id;
  };
  void build_vocab_index();
  void add_merge(TokenId a, TokenId b, uint32_t rank, TokenId new_id);
  void add_merge_text(std::string_view a, std::string_view b, uint32_t rank, std::string& scratch);
  const Merge* find_merge(TokenId a, TokenId b) const;
  int64_t find_entry(std::string_view s) const;
  void merge_word(std::string_view word, std::vector<TokenId>& out) const;

  // vocab
  std::string arena_;
  std::vector<Entry> entries_;
  std::vector<uint64_t> table_;  // open addressing: (hash >> 32) << 32 | (entry index + 1)
  std::vector<std::string_view> id_to_token_;
  std::vector<bool> id_present_;
  TokenId max_id_ = -1;
  // merges
  std::vector<Merge> merges_;  // open addressing on key
  size_t merge_mask_ = 0;
  // options
  std::optional<std::string> unk_token_;
  std::optional<TokenId> unk_id_;
  std::string continuing_subword_prefix_, end_of_word_suffix_;
  bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
  TokenId byte_ids_[256];
  bool have_byte_ids_ = false;
  // cache of word -> ids
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<TokenId>> cache_;
};

}  // namespace meshlm::tok
