// The coordinator's index of prefix blocks (automatic prefix caching). A block is the KV of
// `block_tokens` consecutive positions [i*B, (i+1)*B) of some sequence; it is known by its
// parent (the block before it, or none for i = 0) and its tokens, so a block stands for the
// whole token prefix up to its end. The stages hold the blocks' memory (model/kv_cache.h, under
// the ids chosen here); this index only decides: which blocks a new sequence restores (match),
// which computed blocks the stages keep (add), and which they forget when the budget is full:
// the least recently used block that no other block continues (a leaf), so that every cached
// block stays reachable from the start of a prompt.
//
// One thread (the engine's scheduler) uses it.
#pragma once

#include <cstdint>
#include <span>
#include <set>
#include <unordered_map>
#include <vector>

namespace meshlm::runtime {

class PrefixCache {
 public:
  // max_blocks 0: disabled (match finds nothing, add keeps nothing).
  PrefixCache(int64_t block_tokens, int64_t max_blocks);

  bool enabled() const { return max_blocks_ > 0; }
  int64_t block_tokens() const { return block_tokens_; }
  int64_t max_blocks() const { return max_blocks_; }
  size_t blocks() const { return entries_.size(); }

  // The longest run of cached blocks that begins `tokens`, at most max_blocks of them: their ids,
  // in order (block k holds positions [k*B, (k+1)*B)). Marks them used.
  std::vector<int64_t> match(std::span<const int32_t> tokens, int64_t max_blocks);

  struct Added {
    int64_t id = -1;    // the block's id; -1: not cached (its parent is gone)
    bool save = false;  // true: a new block, the stages must save it under `id`
  };
  // A sequence has computed the block of `block` tokens that follows `parent` (-1: its first
  // block). Returns the block's id, marking it used: a known one, or a new one to be saved. A
  // new block may push out others; their ids are appended to `evicted` (the stages drop them).
  Added add(int64_t parent, std::span<const int32_t> block, std::vector<int64_t>& evicted);

  bool contains(int64_t id) const { return entries_.count(id) != 0; }
  void clear();  // forgets every block (the stages' copies must be dropped too: DropAll)

 private:
  struct Entry {
    int64_t parent = -1;
    uint64_t key = 0;
    uint64_t tick = 0;
    std::vector<int32_t> tokens;
    std::vector<int64_t> children;
  };
  static uint64_t key_of(int64_t parent, std::span<const int32_t> block);
  int64_t find(int64_t parent, std::span<const int32_t> block) const;
  void touch(int64_t id);
  void evict_leaf(std::vector<int64_t>& evicted);

  int64_t block_tokens_, max_blocks_;
  int64_t next_id_ = 0;
  uint64_t tick_ = 0;
  std::unordered_map<int64_t, Entry> entries_;
  std::unordered_map<uint64_t, int64_t> by_key_;
  // Blocks without children, oldest use first: the eviction order.
  std::set<std::pair<uint64_t, int64_t>> leaves_;  // (tick, id)
};

}  // namespace meshlm::runtime
