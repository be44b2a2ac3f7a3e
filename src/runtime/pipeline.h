// The scheduler's view of the chain of stages. A micro-batch enters stage 0 with token ids and
// leaves the last stage as sampled tokens. Up to depth() micro-batches may be in flight at once,
// so with N stages N micro-batches are worked on in parallel. LocalPipeline runs every stage in
// this process; remote/ provides one whose stages are worker processes on other machines.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/stage.h"
#include "runtime/sampler.h"

namespace meshlm::runtime {

struct MicroBatch {
  uint64_t id = 0;
  std::vector<model::SeqChunk> chunks;
  std::vector<int32_t> tokens;  // all chunks' ids, concatenated
  // For a sequence's first chunk: its sampling parameters (the last stage creates its sampler).
  std::vector<std::pair<int64_t, SamplingParams>> new_sequences;
  // When true, the last stage returns raw logits instead of sampling (tests, perplexity).
  bool return_logits = false;
  // Allowed tokens for chunks with want_logits of constrained sequences (structured outputs).
  std::vector<SeqMask> masks;
  // Prefix-cache operations for every stage (model/kv_op.h; the engine's runtime/prefix_cache.h):
  // restores and drops run before the batch's forward, saves after it.
  std::vector<model::KvOp> kv_ops;
};

struct MicroBatchResult {
  uint64_t id = 0;
  // One per chunk with want_logits, in chunk order.
  std::vector<std::pair<int64_t, SampledToken>> sampled;
  std::vector<float> logits;  // [rows, vocab] when return_logits
  std::string error;          // non-empty: the micro-batch failed (e.g. a stage is down)
  // With an error: the failure was the pipeline's (a stage lost, a re-plan under way), not the
  // micro-batch's, and its sequences may be re-run once the pipeline is whole again. Every
  // sequence's KV is then gone: the pipeline starts empty when it comes back.
  bool retryable = false;
};

struct StageInfo {
  std::string node;  // "local" or host:port
  model::LayerRange layers;
  std::string state;  // "ready", "down", ...
  uint64_t memory_bytes = 0;  // weights + KV cache in use (0 where unknown)
  double busy_seconds = 0;    // time spent computing micro-batches
  // Time micro-batches spent after this stage outside any stage's compute: activations and results
  // on the links plus waiting in front of busy stages. Measured by the coordinator (its row).
  double transfer_seconds = 0;
  // Where the rest of the stage's time went (issue 19), since the pipeline started:
  double queue_seconds = 0;  // a micro-batch's frame had arrived and waited for the stage's thread
  double send_seconds = 0;   // sending frames on (activations to the next stage, results)
  // Waiting for input: time since the pipeline started minus compute, queue and send.
  double wait_seconds = 0;
  // Tensor-parallel members (remote/tp_pipeline.h): the group's collectives so far, how many,
  // the bytes this member sent in them, and their wall time (links plus waiting for slower
  // members; not counted in busy_seconds).
  uint64_t collectives = 0;
  uint64_t collective_bytes = 0;
  double collective_seconds = 0;
};

class Pipeline {
 public:
  virtual ~Pipeline() = default;
  virtual const model::ModelConfig& config() const = 0;
  virtual int depth() const = 0;  // micro-batches that may be in flight at once
  virtual void launch(MicroBatch batch) = 0;
  // Blocks until a launched micro-batch completes; results come back in launch order.
  virtual MicroBatchResult wait() = 0;
  virtual void release(int64_t seq_id) = 0;  // frees the sequence's KV (and sampler) everywhere
  virtual std::vector<StageInfo> stages() const = 0;
  // Changes whenever stages may have lost their KV, prefix blocks included, without a micro-batch
  // failing: a reconnect to a restarted worker while idle, a re-plan. The engine then forgets its
  // prefix cache (runtime/prefix_cache.h).
  virtual uint64_t kv_epoch() const { return 0; }
  // How the stages store KV (--cache-type, model/kv_cache.h): sizes the engine's prefix blocks.
  virtual WeightType kv_type() const { return WeightType::F32; }
};

// All stages in this process, one per range of `ranges` (empty = one stage of every layer).
// Throws Error("pipeline") unless the ranges partition the model's layers. wire: the activations
// between the stages are rounded through this activation type as a link with --wire would
// (formats/activation_type.h), so that in-process stages give what worker stages give.
std::unique_ptr<Pipeline> make_local_pipeline(const std::string& model_dir,
                                              const model::StageOptions& options,
                                              model::LayerPartition ranges = {},
                                              WeightType wire = WeightType::F32);

}  // namespace meshlm::runtime
