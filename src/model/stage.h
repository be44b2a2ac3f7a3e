// A Stage is a contiguous range of decoder layers [layer_begin, layer_end) with only those
// layers' weights and their KV cache. The first stage also embeds tokens; the last also applies
// the final norm and the LM head. A whole model on one machine is the stage [0, n_layers).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "formats/weight_format.h"
#include "model/config.h"
#include "model/kv_op.h"
#include "model/layer_range.h"
#include "model/tensor_split.h"

namespace meshlm::model {

// One sequence's part of a micro-batch: n_tokens consecutive tokens starting at position pos.
struct SeqChunk {
  int64_t seq_id = 0;
  int32_t pos = 0;       // position of the first token of this chunk
  int32_t n_tokens = 0;
  bool want_logits = false;  // last stage: produce logits for this chunk's last token
  bool all_logits = false;   // last stage: produce logits for every token (perplexity)
  // Last stage, want_logits: what the sampler needs of this chunk's row. top_logits > 0: only the
  // row's top_logits largest values (the first ids on ties) and, with top_log_z, the log-sum-exp
  // of the whole row; 0: the whole row. A tensor-parallel group then moves each member's best
  // values instead of its vocabulary slice (forward() returns the row with those values and -inf
  // elsewhere, and the log-sum-exp beside it); any other stage returns the whole row.
  int32_t top_logits = 0;
  bool top_log_z = false;
};

struct StageOptions {
  int threads = 1;
  int64_t max_context = 4096;  // per sequence; KV is reserved virtually, committed as used
  // --cache-type: how the KV cache stores keys and values (model/kv_cache.h): F32 (exact), BF16,
  // F16 or Q8_0.
  WeightType kv_type = WeightType::F32;
  // --mlock: lock the stage's weights in RAM once loaded (read in at once, never paged out or
  // dropped from the page cache while the stage lives). Failure is a warning, not an error.
  bool lock_memory = false;
  // The compute backend (backend/backend.h): "cpu" (optimised kernels) or "ref" (the scalar
  // reference kernels, one thread: the tests' oracle).
  std::string backend = "cpu";
  // Tensor parallelism (model/tensor_split.h): this Stage is member `rank` of a group of
  // shares.size() that compute the same layers, each with its slice of the weights (its share
  // of the KV heads, intermediate and vocabulary), summing their partial outputs through
  // `reducer` after every attention and MLP block and gathering the logits, so that member 0's
  // forward() returns what one whole Stage would (every member's with logits_on_every_member).
  // The split itself is computed by the Stage (split_for), because the quantization blocks it
  // must respect are the files'. Every member must get the same calls (forward with the same
  // batches, in the same order). Absent: a whole stage, no collective.
  struct TensorParallel {
    std::vector<double> shares;         // one per member, > 0
    int rank = 0;
    std::shared_ptr<TpReducer> reducer;  // the group's collectives
    // Who gets the logits: false (the default), member 0 alone — the member that samples; the
    // others return the rows with no logits, and M-1 vocabulary slices cross the links instead of
    // M(M-1). true: every member (an all-gather; tests compare the members' logits).
    bool logits_on_every_member = false;
  };
  std::optional<TensorParallel> tensor_parallel = std::nullopt;
};

class Stage {
 public:
  Stage(const std::string& model_dir, LayerRange layers, const StageOptions& options);
  ~Stage();
  Stage(const Stage&) = delete;
  Stage& operator=(const Stage&) = delete;

  const ModelConfig& config() const;
  LayerRange layers() const;
  int64_t layer_begin() const { return layers().begin; }
  int64_t layer_end() const { return layers().end; }
  bool is_first() const { return layers().is_first(); }
  bool is_last() const { return layers().is_last(config().n_layers); }

  // Runs the chunks through this stage's layers.
  //   tokens: the ids of all chunks' tokens, concatenated (every stage gets them; the first
  //           stage embeds them)
  //   hidden: [total_tokens, hidden] f32; input for non-first stages, output of every stage
  //   logits: last stage only: [n_rows, vocab] for the rows asked for by want_logits /
  //           all_logits, in chunk order; returns n_rows (0 for other stages)
  //   row_log_z: when given, one entry per row: the log-sum-exp of the whole row for a row that
  //           holds only its top values (SeqChunk::top_logits with top_log_z, tensor-parallel
  //           member 0), NaN for the others
  // A sequence's KV cache is created on its first chunk (pos must then be 0) and extended by
  // each chunk; pos must equal the number of tokens already cached for the sequence.
  int64_t forward(std::span<const SeqChunk> chunks, std::span<const int32_t> tokens,
                  std::vector<float>& hidden, std::vector<float>& logits,
                  std::vector<double>* row_log_z = nullptr);

  // Number of logits rows forward() will produce for these chunks.
  static int64_t logits_rows(std::span<const SeqChunk> chunks);

  // Frees a sequence's KV cache (no-op for an unknown id).
  void release(int64_t seq_id);
  void release_all();  // every sequence's KV and every prefix block

  // The prefix-cache operations of a micro-batch (model/kv_cache.h): those that run before its
  // forward (after_forward false) or after it. Throws Error("kv", ...) as KvCache::apply.
  void apply_kv_ops(std::span<const KvOp> ops, bool after_forward);
  int64_t cached_tokens(int64_t seq_id) const;

  // Bytes of weights this stage reads (its tensors only) and KV bytes per cached token.
  size_t weight_bytes() const;
  size_t locked_bytes() const;  // weight bytes locked in RAM (StageOptions::lock_memory)
  size_t kv_bytes_per_token() const;
  WeightType kv_type() const;  // StageOptions::kv_type
  // Cached tokens of all sequences x kv_bytes_per_token(), plus the prefix blocks.
  size_t kv_bytes_in_use() const;
  size_t prefix_block_bytes() const;
  // A tensor-parallel member's part of the model (nullptr for a whole stage).
  const TensorSplit* tensor_split() const;
  // The backend computing this stage, e.g. "cpu (AVX2, 2 threads)".
  std::string backend_description() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshlm::model
