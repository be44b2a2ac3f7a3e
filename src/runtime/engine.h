// The engine: one scheduler thread that owns a Pipeline and runs continuous batching. Requests
// are token ids in, token ids out; text, chat templates, stop strings and JSON belong to server/.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runtime/pipeline.h"

namespace meshlm::runtime {

enum class FinishReason { None, Length, Stop, Cancelled, Error };

struct TokenEvent {
  SampledToken sampled;   // valid when !finished or when finished with a final token
  bool has_token = false;
  bool finished = false;
  FinishReason reason = FinishReason::None;
  std::string error;      // reason == Error
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  int64_t cached_tokens = 0;  // prompt tokens restored from the prefix cache, not computed
};

// What a constrained request (structured outputs) may sample: the engine asks for the mask of
// each step before launching it and reports the token sampled under it. Called on the engine
// thread only. The server implements it with a grammar (grammar/ + server/structured_output).
class TokenConstraint {
 public:
  virtual ~TokenConstraint() = default;
  // Allowed tokens of the next sample. Throws when the constraint cannot go on.
  virtual std::shared_ptr<const TokenMask> next_mask() = 0;
  // The token sampled under the last mask. Throws when it was not allowed.
  virtual void accept(int32_t token) = 0;
};

struct Request {
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  int64_t max_tokens = 256;
  bool ignore_eos = false;
  std::vector<int32_t> eos_ids;  // generation stops after emitting one of these (unless ignore_eos)
  std::shared_ptr<TokenConstraint> constraint;  // null: unconstrained
  // Called on the engine thread for each token and once with finished == true. Return false
  // to cancel the request (its KV is freed at once). Must not block.
  std::function<bool(const TokenEvent&)> on_event;
};

struct EngineOptions {
  int64_t max_batch_tokens = 256;   // per micro-batch (prefill chunks + decode tokens)
  int64_t prefill_chunk = 128;      // longest prefill piece scheduled at once per sequence
  int64_t max_active = 64;          // sequences decoding at once
  int64_t max_queue = 256;          // waiting requests; beyond this submit() throws QueueFull
  int64_t max_context = 4096;       // prompt + generated tokens per sequence
  // A stage lost mid-generation (a retryable micro-batch failure): every active sequence is kept
  // (prompt + tokens so far) and re-prefilled once the pipeline is whole again, so clients see a
  // pause, not an error. After this long without recovery they fail with the reason; 0 = fail at
  // once.
  int64_t recovery_timeout_ms = 60000;
  // Automatic prefix caching (runtime/prefix_cache.h): the KV of every full block of
  // prefix_block_tokens positions a sequence computes is kept on the stages, up to
  // prefix_cache_bytes (the whole model's KV, all stages together; f32), and a later sequence
  // that begins with the same tokens restores it instead of computing it. 0 = off. Sequences
  // with a repetition / presence / frequency penalty do not restore (their sampler must see the
  // whole prompt); they still add blocks.
  int64_t prefix_cache_bytes = int64_t{1} << 30;
  int64_t prefix_block_tokens = 32;
  // KV memory budget in positions (all active sequences together; 0 = only max_active bounds
  // them). A sequence holds the positions it has reached plus the one it computes next. A
  // request is admitted only while the active sequences and it fit (it waits in the queue
  // otherwise); when decoding sequences outgrow the budget, the most recently admitted one is
  // preempted: its KV is freed and it goes back to the head of the queue, to be re-prefilled from
  // its prompt and the tokens it produced when there is room (its output does not change).
  int64_t kv_budget_tokens = 0;
};

class QueueFull : public std::runtime_error {
 public:
  QueueFull() : std::runtime_error("[engine] request queue is full") {}
};

struct EngineStats {
  int64_t queued = 0, active = 0;
  int64_t prompt_tokens_total = 0, generated_tokens_total = 0;
  double busy_seconds = 0;
  bool recovering = false;       // waiting for a lost stage (requests paused, not failed)
  bool recovery_gave_up = false;  // the pipeline stayed broken past recovery_timeout_ms
  int64_t recoveries_total = 0;   // outages the engine came through
  int64_t replayed_total = 0;     // sequences re-prefilled after an outage
  // Prefix cache: blocks held (each prefix_block_tokens positions on every stage), their KV
  // bytes (whole model), and prompt tokens restored from it instead of computed, so far.
  int64_t prefix_cache_blocks = 0;
  int64_t prefix_cache_bytes = 0;
  int64_t prefix_cache_hit_tokens_total = 0;
  int64_t prefix_cache_hits_total = 0;  // requests that restored at least one block
  int64_t kv_tokens = 0;          // positions the active sequences hold (KV budget accounting)
  int64_t preemptions_total = 0;  // sequences preempted to keep within kv_budget_tokens
};

class Engine {
 public:
  Engine(std::unique_ptr<Pipeline> pipeline, const EngineOptions& options);
  ~Engine();
  // Queues a request; returns its id. Throws QueueFull, or std::invalid_argument when the
  // prompt is empty or longer than max_context.
  uint64_t submit(Request request);
  void cancel(uint64_t id);  // safe from any thread; no-op for finished ids
  EngineStats stats() const;
  const model::ModelConfig& config() const;
  WeightType kv_type() const;  // how the stages store KV (Pipeline::kv_type)
  std::vector<StageInfo> stages() const;
  const EngineOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshlm::runtime
