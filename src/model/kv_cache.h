// Per-sequence key/value cache of a stage's layers, f32, in the backend's memory. Each sequence
// gets one buffer reserved for max_context positions (Backend::reserve: memory is committed only
// as positions are written), and release() returns it at once.
//
// Prefix blocks (the engine's prefix cache, runtime/prefix_cache.h): copies of a run of a
// sequence's positions, kept under an id the coordinator chose, that a later sequence with the
// same token prefix restores instead of computing it. The stage does not know the tokens; the
// coordinator keeps the index and sends KvOps with its micro-batches.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>

#include "backend/backend.h"
#include "model/kv_op.h"

namespace meshlm::model {

class KvCache {
 public:
  KvCache(backend::Backend& be, int64_t n_layers, int64_t kv_dim, int64_t max_context);
  ~KvCache();
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  // Creates the sequence's cache if needed. Throws Error("kv", ...) when out of memory.
  void ensure(int64_t seq_id);
  bool has(int64_t seq_id) const { return seqs_.count(seq_id) != 0; }
  // Keys / values of local layer `layer`: [max_context, kv_dim].
  float* keys(int64_t seq_id, int64_t layer);
  float* values(int64_t seq_id, int64_t layer);
  int64_t length(int64_t seq_id) const;
  void set_length(int64_t seq_id, int64_t n);
  void release(int64_t seq_id);
  void release_all();  // every sequence and every prefix block

  // Prefix blocks. Throw Error("kv", ...) on an unknown sequence or block, a position outside
  // the sequence, or a restore that does not continue the sequence.
  void apply(const KvOp& op);
  size_t blocks() const { return blocks_.size(); }
  size_t block_bytes() const;  // memory held by prefix blocks
  int64_t max_context() const { return max_context_; }
  size_t bytes_per_token() const { return size_t(n_layers_) * 2 * size_t(kv_dim_) * sizeof(float); }
  size_t sequences() const { return seqs_.size(); }
  int64_t total_length() const {
    int64_t n = 0;
    for (auto& [id, s] : seqs_) n += s.length;
    return n;
  }

 private:
  struct Seq {
    backend::Buffer mem;  // [n_layers][keys, values][max_context, kv_dim]
    int64_t length = 0;
  };
  struct Block {
    backend::Buffer mem;  // [n_layers][keys, values][n_tokens, kv_dim]
    int32_t n_tokens = 0;
  };
  Seq& get(int64_t seq_id);
  // Position pos of half `half` of a sequence's buffer (2 * layer: keys, 2 * layer + 1: values).
  float* at(Seq& s, int64_t half, int64_t pos) const;
  backend::Backend& be_;
  int64_t n_layers_, kv_dim_, max_context_;
  std::unordered_map<int64_t, Seq> seqs_;
  std::unordered_map<int64_t, Block> blocks_;
};

}  // namespace meshlm::model
