// Tensor parallelism inside a stage: M members compute the same layers, each with a slice of
// every large weight, and sum their partial results after each sub-layer (Megatron-style).
//   attention  a member owns a range of KV heads and the query heads of their groups: the rows
//              of wq / wk / wv (and biases) of those heads, the columns of wo that read them.
//              Its o_proj output is a partial sum over its heads.
//   MLP        a range of the intermediate dimension: rows of gate / up, columns of down; its
//              down output is a partial sum. MoE layers: the same range within every expert's
//              moe_intermediate (and the shared expert's), router replicated.
//   LM head    a range of vocabulary rows; the members' logits are gathered.
// TensorSplit says which ranges member `rank` holds; split_for computes them from the members'
// shares (uneven: a faster or larger machine takes more). TpReducer is the sum / gather across
// members a Stage calls; transport/ provides one over a transport::Group (model/ stays
// independent of transport/).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "model/config.h"

namespace meshlm::model {

// The ranges member `rank` of `size` holds, half-open. Query heads follow their KV head's group:
// [kv_begin * g, kv_end * g) with g = n_heads / n_kv_heads. An intermediate range may be empty
// when there are fewer quantization blocks than members (that member's MLP contributes zero).
struct TensorSplit {
  int rank = 0, size = 1;
  int64_t kv_begin = 0, kv_end = 0;        // KV heads
  int64_t q_begin = 0, q_end = 0;          // query heads
  int64_t inter_begin = 0, inter_end = 0;  // dense MLP intermediate
  int64_t moe_begin = 0, moe_end = 0;      // each expert's moe_intermediate
  int64_t shared_begin = 0, shared_end = 0;  // the shared expert's intermediate (qwen2_moe)
  int64_t vocab_begin = 0, vocab_end = 0;  // LM head rows

  int64_t n_kv_heads() const { return kv_end - kv_begin; }
  int64_t n_heads() const { return q_end - q_begin; }
  int64_t inter() const { return inter_end - inter_begin; }
  int64_t moe_inter() const { return moe_end - moe_begin; }
  int64_t shared_inter() const { return shared_end - shared_begin; }
  int64_t vocab() const { return vocab_end - vocab_begin; }
};

// The quantization block (elements) the intermediate ranges must start and end on: the largest
// block_elems of the matrices sliced by columns along that dimension (down_proj, the experts'
// down, the shared expert's down). 1 for plain formats.
struct SplitBlocks {
  int64_t inter = 1, moe = 1, shared = 1;
};

// Member `rank`'s part of a model of this configuration among shares.size() members, each part
// proportional to shares[r] (> 0), deterministically (largest remainder, ties to the lower rank;
// then every member that got nothing takes one unit from the one with the most). Every member
// gets at least one KV head; an intermediate range is whole blocks and not empty while there are
// at least as many blocks as members. Throws Error("tensor-parallel", ...) for more members
// than KV heads, a rank out of range or a share that is not positive.
TensorSplit split_for(const ModelConfig& c, std::span<const double> shares, int rank,
                      SplitBlocks blocks);
// The same with one block size for every intermediate dimension.
TensorSplit split_for(const ModelConfig& c, std::span<const double> shares, int rank,
                      int64_t block_elems);

// The collectives a tensor-parallel Stage needs, over host memory. Every member calls them in
// the same order with the same sizes (all_reduce_sum) — the Stage does, given the same batches.
struct TpReducer {
  virtual ~TpReducer() = default;
  // In place: data[i] = the sum over members of their data[i], the same bits on every member.
  virtual void all_reduce_sum(float* data, size_t n) = 0;
  // Every member's `mine`, concatenated in rank order; counts gets each member's size.
  virtual std::vector<float> all_gather(std::span<const float> mine,
                                        std::vector<size_t>* counts) = 0;
  // all_gather's result on member 0 only; the other members get nothing (empty, counts empty).
  virtual std::vector<float> gather_to_first(std::span<const float> mine,
                                             std::vector<size_t>* counts) = 0;
};

}  // namespace meshlm::model
