// Per-sequence key/value cache of a stage's layers, in the backend's memory. Each sequence
// gets one buffer reserved for max_context positions (Backend::reserve: memory is committed only
// as positions are written), and release() returns it at once.
//
// Prefix blocks (the engine's prefix cache, runtime/prefix_cache.h): copies of a run of a
// sequence's positions, kept under an id the coordinator chose, that a later sequence with the
// same token prefix restores instead of computing it. The stage does not know the tokens; the
// coordinator keeps the index and sends KvOps with its micro-batches.
//
// Cache types (--cache-type): f32 (exact, the default), bf16, f16 and q8_0 (ggml's blocks of 32:
// an f16 scale and 32 int8). A position's keys of a layer are one row of kv_dim values in the
// type (values likewise), rows padded to 4 bytes; they are written once (rounded as
// formats::quantize_row rounds) and read decoded exactly by the attention kernels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <unordered_map>

#include "backend/backend.h"
#include "model/kv_op.h"

namespace meshlm::model {

// The cache type of a --cache-type name (f32, bf16, f16, q8_0; upper case too), or nullopt.
std::optional<WeightType> kv_type_from_name(std::string_view name);
// The --cache-type spelling of a cache type: "f32", "bf16", "f16", "q8_0".
std::string_view kv_type_name(WeightType type);
// Bytes one position's keys (or values) of one layer take: kv_dim values of the type, padded to
// a multiple of 4 bytes. Throws Error("kv") for a type that is not a cache type or a kv_dim that
// is not a whole number of its blocks.
int64_t kv_row_bytes(WeightType type, int64_t kv_dim);

class KvCache {
 public:
  KvCache(backend::Backend& be, int64_t n_layers, int64_t kv_dim, int64_t max_context,
          WeightType type = WeightType::F32);
  ~KvCache();
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  // Creates the sequence's cache if needed. Throws Error("kv", ...) when out of memory.
  void ensure(int64_t seq_id);
  bool has(int64_t seq_id) const { return seqs_.count(seq_id) != 0; }
  // Stores position pos's keys and values (kv_dim floats each, backend memory) of local layer
  // `layer` in the cache's type. Throws Error("kv") where the type cannot hold a value.
  void write(int64_t seq_id, int64_t layer, int64_t pos, const float* k, const float* v);
  // Positions [pos, pos + n) of every layer are about to be written (a prefill chunk): their
  // memory is committed now, in one call per layer half (Backend::will_write).
  void will_write(int64_t seq_id, int64_t pos, int64_t n);
  // Position pos's row of keys / values of local layer `layer`; the next position's row starts
  // row_bytes() later.
  const void* key_row(int64_t seq_id, int64_t layer, int64_t pos);
  const void* value_row(int64_t seq_id, int64_t layer, int64_t pos);
  WeightType type() const { return type_; }
  int64_t row_bytes() const { return row_bytes_; }
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
  size_t bytes_per_token() const { return size_t(n_layers_) * 2 * size_t(row_bytes_); }
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
  WeightType type_;
  int64_t row_bytes_;   // of one position's keys (values) of one layer, a multiple of 4
  int64_t row_floats_;  // the same in floats (the backend's buffers are floats)
  std::unordered_map<int64_t, Seq> seqs_;
  std::unordered_map<int64_t, Block> blocks_;
};

}  // namespace meshlm::model
