// StageRunner: runs one stage over a micro-batch and, when the stage is the last, finishes the
// batch there — samples one token for each chunk that wants one (with the sequences' samplers,
// created from the batch's new_sequences) or hands back the raw logits. The single place where
// "run the stage; if it is the last, sample or return logits" is written: the local pipeline,
// the coordinator's own stage and every worker go through it.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "model/stage.h"
#include "runtime/sampler.h"

namespace meshlm::runtime {

struct StageInput {
  std::span<const model::SeqChunk> chunks;
  std::span<const int32_t> tokens;  // all chunks' ids, concatenated
  // Sampling parameters of sequences whose first chunk this is (used by the last stage only).
  std::span<const std::pair<int64_t, SamplingParams>> new_sequences;
  bool return_logits = false;  // last stage: logits instead of sampled tokens
  std::span<const SeqMask> masks;  // last stage: allowed tokens per constrained sequence
  // Prefix-cache operations (model/kv_op.h): restores and drops before the forward, saves after.
  std::span<const model::KvOp> kv_ops;
};

struct StageOutput {
  bool last = false;       // the batch is finished: `sampled` or `logits` hold its result
  std::vector<std::pair<int64_t, SampledToken>> sampled;  // one per chunk with want_logits
  std::vector<float> logits;  // [rows, vocab] when return_logits
  double seconds = 0;         // time in Stage::forward
};

class StageRunner {
 public:
  explicit StageRunner(model::Stage& stage) : stage_(&stage) {}

  // hidden: the activations in (ignored by the first stage) and out (what the next stage takes).
  // Throws what Stage::forward throws.
  void run(const StageInput& in, std::vector<float>& hidden, StageOutput& out);

  void release(int64_t seq_id);  // the sequence's sampler (the stage's KV is the caller's)
  void clear();                  // every sampler
  model::Stage& stage() { return *stage_; }

 private:
  model::Stage* stage_;
  SamplerSet samplers_;
  std::vector<float> logits_;
  std::vector<double> log_z_;  // per logits row (Stage::forward's row_log_z)
};

}  // namespace meshlm::runtime
