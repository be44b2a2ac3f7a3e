#include "runtime/prefix_cache.h"

#include <algorithm>
#include <stdexcept>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace meshlm::runtime {

PrefixCache::PrefixCache(int64_t block_tokens, int64_t max_blocks)
    : block_tokens_(block_tokens), max_blocks_(std::max<int64_t>(0, max_blocks)) {
  if (block_tokens < 1) throw std::invalid_argument("[prefix cache] block_tokens must be >= 1");
}

uint64_t PrefixCache::key_of(int64_t parent, std::span<const int32_t> block) {
  return XXH3_64bits_withSeed(block.data(), block.size_bytes(), uint64_t(parent) * 0x9E3779B97F4A7C15ull + 1);
}

int64_t PrefixCache::find(int64_t parent, std::span<const int32_t> block) const {
  auto it = by_key_.find(key_of(parent, block));
  if (it == by_key_.end()) return -1;
  const Entry& e = entries_.at(it->second);
  // A 64-bit key could collide: the block is the same only with the same parent and tokens.
  if (e.parent != parent || !std::equal(block.begin(), block.end(), e.tokens.begin(), e.tokens.end()))
    return -1;
  return it->second;
}

void PrefixCache::touch(int64_t id) {
  Entry& e = entries_.at(id);
  const bool leaf = e.children.empty();
  if (leaf) leaves_.erase({e.tick, id});
  e.tick = ++tick_;
  if (leaf) leaves_.insert({e.tick, id});
}

std::vector<int64_t> PrefixCache::match(std::span<const int32_t> tokens, int64_t max_blocks) {
  std::vector<int64_t> ids;
  if (!enabled()) return ids;
  const int64_t B = block_tokens_;
  int64_t parent = -1;
  for (int64_t k = 0; k < max_blocks && (k + 1) * B <= int64_t(tokens.size()); ++k) {
    const int64_t id = find(parent, tokens.subspan(size_t(k * B), size_t(B)));
    if (id < 0) break;
    ids.push_back(id);
    parent = id;
  }
  for (int64_t id : ids) touch(id);
  return ids;
}

PrefixCache::Added PrefixCache::add(int64_t parent, std::span<const int32_t> block,
                                    std::vector<int64_t>& evicted) {
  Added r;
  if (!enabled() || int64_t(block.size()) != block_tokens_) return r;
  if (parent >= 0 && !entries_.count(parent)) return r;
  if (const int64_t id = find(parent, block); id >= 0) {
    touch(id);
    r.id = id;
    return r;
  }
  const uint64_t key = key_of(parent, block);
  if (by_key_.count(key)) return r;  // a different block under the same key: leave it uncached
  if (parent >= 0) touch(parent);  // the last leaf to go while room is made
  while (int64_t(entries_.size()) >= max_blocks_ && !leaves_.empty()) evict_leaf(evicted);
  if (parent >= 0 && !entries_.count(parent)) return r;  // the budget could not keep it
  const int64_t id = next_id_++;
  Entry e;
  e.parent = parent;
  e.key = key;
  e.tick = ++tick_;
  e.tokens.assign(block.begin(), block.end());
  leaves_.insert({e.tick, id});
  by_key_.emplace(key, id);
  if (parent >= 0) {
    Entry& p = entries_.at(parent);
    if (p.children.empty()) leaves_.erase({p.tick, parent});
    p.children.push_back(id);
  }
  entries_.emplace(id, std::move(e));
  r.id = id;
  r.save = true;
  return r;
}

void PrefixCache::evict_leaf(std::vector<int64_t>& evicted) {
  const int64_t id = leaves_.begin()->second;
  leaves_.erase(leaves_.begin());
  auto it = entries_.find(id);
  const Entry& e = it->second;
  by_key_.erase(e.key);
  if (e.parent >= 0) {
    Entry& p = entries_.at(e.parent);
    std::erase(p.children, id);
    if (p.children.empty()) leaves_.insert({p.tick, e.parent});
  }
  entries_.erase(it);
  evicted.push_back(id);
}

void PrefixCache::clear() {
  entries_.clear();
  by_key_.clear();
  leaves_.clear();
}

}  // namespace meshlm::runtime
