// KvOp: what the coordinator's prefix cache (runtime/prefix_cache.h) asks of every stage's KV
// cache (model/kv_cache.h) with a micro-batch: keep a run of a sequence's positions as a block,
// copy a block into a new sequence, forget blocks.
#pragma once

#include <cstdint>

namespace meshlm::model {

// One prefix-cache operation on a stage's KV (every stage of a pipeline, every member of a
// tensor-parallel group, gets the same list with a micro-batch).
struct KvOp {
  enum class Kind : uint8_t {
    Restore = 0,  // seq's positions [pos, pos+n_tokens) := block; pos must equal seq's length
    Save = 1,     // block := seq's positions [pos, pos+n_tokens) (a new id)
    Drop = 2,     // forget block
    DropAll = 3,  // forget every block (seq_id, block, pos, n_tokens unused)
  };
  Kind kind = Kind::Restore;
  int64_t seq_id = 0;
  int64_t block = 0;
  int32_t pos = 0;
  int32_t n_tokens = 0;
  bool operator==(const KvOp&) const = default;
};
// Restore / Drop / DropAll run before a micro-batch's forward, Save after it (so that a block
// holds positions the same batch computed).
inline bool runs_after_forward(const KvOp& op) { return op.kind == KvOp::Kind::Save; }

}  // namespace meshlm::model
