#include "tokenizer/bpe_model.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "core/error.h"
#include "core/log.h"
#include "core/utf8.h"

namespace meshlm::tok {
namespace {

constexpr uint64_t kEmptyKey = ~uint64_t{0};
constexpr TokenId kMaxVocabId = 1 << 26;  // ids beyond this are rejected (no real vocab is near)
constexpr size_t kCacheCapacity = 1 << 16;
constexpr size_t kCacheMaxWordBytes = 256;

uint64_t hash_bytes(std::string_view s) {
  return XXH3_64bits(s.data(), s.size());
}

uint64_t hash_key(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  return k;
}

size_t table_size_for(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  return cap;
}

struct Symbol {
  TokenId id;
  int32_t prev, next;
  uint32_t len;
};

struct QueuedMerge {
  uint32_t rank;
  uint32_t pos;
  TokenId new_id;
};

// Heap order: the smallest rank first, then the leftmost position.
struct MergeAfter {
  bool operator()(const QueuedMerge& a, const QueuedMerge& b) const {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  }
};

}  // namespace

std::unique_ptr<BpeModel> BpeModel::parse(JsonCursor& cur) {
  auto m = std::make_unique<BpeModel>();
  // Merges are kept as text until the vocab is known (the keys may come in any order).
  std::string merge_text;
  std::vector<uint32_t> merge_parts;  // per merge: offset a, len a, offset b, len b
  bool have_vocab = false;
  std::string key, type = "BPE", tmp_a, tmp_b;
  cur.expect('{');
  if (!cur.consume('}')) {
    do {
      cur.parse_string(key);
      cur.expect(':');
      if (key == "vocab") {
        have_vocab = true;
        m->arena_.clear();
        m->entries_.clear();
        cur.expect('{');
        if (!cur.consume('}')) {
          do {
            cur.parse_string(tmp_a);
            cur.expect(':');
            int64_t id = cur.parse_int();
            if (id < 0 || id > kMaxVocabId)
              throw Error("tokenizer", "vocab id " + std::to_string(id) + " out of range");
            m->entries_.push_back({static_cast<uint32_t>(m->arena_.size()),
                                   static_cast<uint32_t>(tmp_a.size()), static_cast<TokenId>(id)});
            m->arena_ += tmp_a;
          } while (cur.consume(','));
          cur.expect('}');
        }
      } else if (key == "merges") {
        merge_parts.clear();
        merge_text.clear();
        cur.expect('[');
        if (!cur.consume(']')) {
          do {
            if (cur.peek() == '[') {
              cur.expect('[');
              cur.parse_string(tmp_a);
              cur.expect(',');
              cur.parse_string(tmp_b);
              cur.expect(']');
            } else {
              cur.parse_string(tmp_a);
              size_t sp = tmp_a.find(' ');
              if (sp == std::string::npos)
                throw Error("tokenizer", "merge '" + tmp_a + "' is not of the form 'a b'");
              tmp_b = tmp_a.substr(sp + 1);
              tmp_a.resize(sp);
            }
            merge_parts.push_back(static_cast<uint32_t>(merge_text.size()));
            merge_parts.push_back(static_cast<uint32_t>(tmp_a.size()));
            merge_text += tmp_a;
            merge_parts.push_back(static_cast<uint32_t>(merge_text.size()));
            merge_parts.push_back(static_cast<uint32_t>(tmp_b.size()));
            merge_text += tmp_b;
          } while (cur.consume(','));
          cur.expect(']');
        }
      } else {
        JsonValue v = cur.parse_value();
        if (key == "type") {
          type = v.as_string("model.type");
        } else if (key == "unk_token") {
          if (!v.is_null()) m->unk_token_ = v.as_string("unk_token");
        } else if (key == "continuing_subword_prefix") {
          if (!v.is_null()) m->continuing_subword_prefix_ = v.as_string(key);
        } else if (key == "end_of_word_suffix") {
          if (!v.is_null()) m->end_of_word_suffix_ = v.as_string(key);
        } else if (key == "fuse_unk") {
          m->fuse_unk_ = !v.is_null() && v.as_bool(key);
        } else if (key == "byte_fallback") {
          m->byte_fallback_ = !v.is_null() && v.as_bool(key);
        } else if (key == "ignore_merges") {
          m->ignore_merges_ = !v.is_null() && v.as_bool(key);
        } else if (key == "dropout") {
          if (!v.is_null() && v.type == JsonValue::Type::kNumber && v.number > 0)
            log::warn("tokenizer: BPE dropout {} ignored (deterministic encoding)", v.number);
        }
      }
    } while (cur.consume(','));
    cur.expect('}');
  }
  if (type != "BPE") throw Error("tokenizer", "unsupported model type '" + type + "' (only BPE)");
  if (!have_vocab) throw Error("tokenizer", "BPE model without vocab");

  m->build_vocab_index();

  // Resolve merges: (a, b) -> (rank, id of a + b without the continuing prefix of b).
  const size_t n_merges = merge_parts.size() / 4;
  m->merges_.assign(table_size_for(n_merges), Merge{kEmptyKey, 0, 0});
  m->merge_mask_ = m->merges_.size() - 1;
  std::string joined;
  for (size_t r = 0; r < n_merges; ++r) {
    std::string_view a(merge_text.data() + merge_parts[4 * r], merge_parts[4 * r + 1]);
    std::string_view b(merge_text.data() + merge_parts[4 * r + 2], merge_parts[4 * r + 3]);
    m->add_merge_text(a, b, static_cast<uint32_t>(r), joined);
  }

  if (m->unk_token_) {
    int64_t e = m->find_entry(*m->unk_token_);
    if (e >= 0) m->unk_id_ = m->entries_[e].id;
  }
  char name[8];
  m->have_byte_ids_ = true;
  for (int b = 0; b < 256; ++b) {
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    int64_t e = m->find_entry(name);
    m->byte_ids_[b] = e >= 0 ? m->entries_[e].id : -1;
  }
  return m;
}

void BpeModel::build_vocab_index() {
  table_.assign(table_size_for(entries_.size()), 0);
  const size_t mask = table_.size() - 1;
  std::vector<Entry> unique;
  unique.reserve(entries_.size());
  for (const Entry& e : entries_) {
    std::string_view s(arena_.data() + e.offset, e.length);
    uint64_t h = hash_bytes(s);
    uint64_t tag = h & 0xFFFFFFFF00000000ULL;
    size_t slot = h & mask;
    while (true) {
      uint64_t t = table_[slot];
      if (t == 0) {
        unique.push_back(e);
        table_[slot] = tag | unique.size();
        break;
      }
      if ((t & 0xFFFFFFFF00000000ULL) == tag) {
        Entry& other = unique[(t & 0xFFFFFFFF) - 1];
        if (std::string_view(arena_.data() + other.offset, other.length) == s) {
          other.id = e.id;  // a duplicate key: the last one wins
          break;
        }
      }
      slot = (slot + 1) & mask;
    }
  }
  entries_.swap(unique);
  max_id_ = -1;
  for (const Entry& e : entries_) max_id_ = std::max(max_id_, e.id);
  id_to_token_.assign(static_cast<size_t>(max_id_ + 1), std::string_view());
  id_present_.assign(static_cast<size_t>(max_id_ + 1), false);
  for (const Entry& e : entries_) {
    id_to_token_[e.id] = std::string_view(arena_.data() + e.offset, e.length);
    id_present_[e.id] = true;
  }
}

int64_t BpeModel::find_entry(std::string_view s) const {
  if (table_.empty()) return -1;
  const size_t mask = table_.size() - 1;
  uint64_t h = hash_bytes(s);
  uint64_t tag = h & 0xFFFFFFFF00000000ULL;
  size_t slot = h & mask;
  while (true) {
    uint64_t t = table_[slot];
    if (t == 0) return -1;
    if ((t & 0xFFFFFFFF00000000ULL) == tag) {
      size_t index = (t & 0xFFFFFFFF) - 1;
      const Entry& e = entries_[index];
      if (e.length == s.size() && std::memcmp(arena_.data() + e.offset, s.data(), s.size()) == 0)
        return static_cast<int64_t>(index);
    }
    slot = (slot + 1) & mask;
  }
}

void BpeModel::add_merge_text(std::string_view a, std::string_view b, uint32_t rank,
                              std::string& joined) {
  int64_t ia = find_entry(a), ib = find_entry(b);
  if (ia < 0 || ib < 0)
    throw Error("tokenizer", "merge token '" + std::string(ia < 0 ? a : b) + "' not in vocab");
  joined.assign(a);
  joined.append(b.substr(std::min(continuing_subword_prefix_.size(), b.size())));
  int64_t inew = find_entry(joined);
  if (inew < 0) throw Error("tokenizer", "merged token '" + joined + "' not in vocab");
  add_merge(entries_[ia].id, entries_[ib].id, rank, entries_[inew].id);
}

void BpeModel::add_merge(TokenId a, TokenId b, uint32_t rank, TokenId new_id) {
  uint64_t key = (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b);
  size_t slot = hash_key(key) & merge_mask_;
  while (merges_[slot].key != kEmptyKey && merges_[slot].key != key)
    slot = (slot + 1) & merge_mask_;
  merges_[slot] = Merge{key, rank, new_id};  // a repeated pair: the later rank wins
}

const BpeModel::Merge* BpeModel::find_merge(TokenId a, TokenId b) const {
  uint64_t key = (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b);
  size_t slot = hash_key(key) & merge_mask_;
  while (true) {
    const Merge& m = merges_[slot];
    if (m.key == key) return &m;
    if (m.key == kEmptyKey) return nullptr;
    slot = (slot + 1) & merge_mask_;
  }
}

std::optional<TokenId> BpeModel::token_to_id(std::string_view token) const {
  int64_t e = find_entry(token);
  if (e < 0) return std::nullopt;
  return entries_[e].id;
}

const std::string_view* BpeModel::id_to_token(TokenId id) const {
  if (id < 0 || id > max_id_ || !id_present_[id]) return nullptr;
  return &id_to_token_[id];
}

void BpeModel::tokenize(std::string_view word, std::vector<TokenId>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    int64_t e = find_entry(word);
    if (e >= 0) {
      out.push_back(entries_[e].id);
      return;
    }
  }
  const bool cacheable = word.size() < kCacheMaxWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(std::string(word));
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t start = out.size();
  merge_word(word, out);
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kCacheCapacity) cache_.clear();
    cache_.emplace(std::string(word), std::vector<TokenId>(out.begin() + start, out.end()));
  }
}

void BpeModel::merge_word(std::string_view w, std::vector<TokenId>& out) const {
  std::vector<Symbol> symbols;
  symbols.reserve(w.size());
  auto add = [&](TokenId id, size_t len) {
    int32_t n = static_cast<int32_t>(symbols.size());
    if (n > 0) symbols.back().next = n;
    symbols.push_back(Symbol{id, n - 1, -1, static_cast<uint32_t>(len)});
  };
  bool has_unk = false;  // a pending (possibly fused) unknown run
  size_t unk_len = 0;
  std::string tmp;
  for (size_t i = 0; i < w.size();) {
    size_t len = utf8_char_len(static_cast<unsigned char>(w[i]));
    if (i + len > w.size()) len = w.size() - i;
    const bool is_first = i == 0, is_last = i + len == w.size();
    std::string_view s = w.substr(i, len);
    if ((!is_first && !continuing_subword_prefix_.empty()) ||
        (is_last && !end_of_word_suffix_.empty())) {
      tmp.clear();
      if (!is_first) tmp += continuing_subword_prefix_;
      tmp += s;
      if (is_last) tmp += end_of_word_suffix_;
      s = tmp;
    }
    i += len;
    int64_t e = find_entry(s);
    if (e >= 0) {
      if (has_unk) {
        add(*unk_id_, unk_len);
        has_unk = false;
      }
      add(entries_[e].id, len);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (unsigned char b : s) all = all && byte_ids_[b] >= 0;
      if (all) {
        for (unsigned char b : s) add(byte_ids_[b], 1);
        continue;
      }
    }
    if (unk_token_) {
      if (!unk_id_) throw Error("tokenizer", "unk_token '" + *unk_token_ + "' not in vocab");
      if (has_unk && fuse_unk_) {
        unk_len += len;
      } else {
        if (has_unk) add(*unk_id_, unk_len);
        has_unk = true;
        unk_len = len;
      }
    }
  }
  if (has_unk) add(*unk_id_, unk_len);

  std::vector<QueuedMerge> queue;
  queue.reserve(symbols.size());
  for (size_t i = 0; i + 1 < symbols.size(); ++i)
    if (const Merge* m = find_merge(symbols[i].id, symbols[i + 1].id))
      queue.push_back({m->rank, static_cast<uint32_t>(i), m->new_id});
  std::make_heap(queue.begin(), queue.end(), MergeAfter());
  while (!queue.empty()) {
    std::pop_heap(queue.begin(), queue.end(), MergeAfter());
    QueuedMerge top = queue.back();
    queue.pop_back();
    Symbol& cur = symbols[top.pos];
    if (cur.len == 0 || cur.next == -1) continue;
    Symbol right = symbols[cur.next];
    const Merge* m = find_merge(cur.id, right.id);
    if (!m || m->new_id != top.new_id) continue;
    // Merge right into cur.
    symbols[cur.next].len = 0;
    cur.id = top.new_id;
    cur.len += right.len;
    cur.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = static_cast<int32_t>(top.pos);
    if (cur.prev >= 0) {
      if (const Merge* pm = find_merge(symbols[cur.prev].id, cur.id)) {
        queue.push_back({pm->rank, static_cast<uint32_t>(cur.prev), pm->new_id});
        std::push_heap(queue.begin(), queue.end(), MergeAfter());
      }
    }
    if (cur.next >= 0) {
      if (const Merge* nm = find_merge(cur.id, symbols[cur.next].id)) {
        queue.push_back({nm->rank, top.pos, nm->new_id});
        std::push_heap(queue.begin(), queue.end(), MergeAfter());
      }
    }
  }
  for (const Symbol& s : symbols)
    if (s.len != 0) out.push_back(s.id);
}

}  // namespace meshlm::tok
