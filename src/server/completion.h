// One generation request as the HTTP layer sees it: submitted to the engine, its tokens turned
// into text deltas (StreamDecoder: whole UTF-8 characters, stop strings), split into reasoning,
// content and tool calls (OutputParser), with logprobs and timings. Streaming and non-streaming
// responses are built from the same steps, so they carry the same text.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "runtime/engine.h"
#include "server/metrics.h"
#include "server/openai_request.h"
#include "server/output_parser.h"
#include "tokenizer/tokenizer.h"

namespace meshlm::server {

struct TokenLogprob {
  std::string token;
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;
};

// What one event produced.
struct CompletionStep {
  OutputDelta delta;
  std::vector<TokenLogprob> logprobs;
  bool finished = false;
  std::string finish_reason;  // "stop", "length", "tool_calls"
  std::vector<ToolCall> tool_calls;
  std::string error;  // the engine failed this request (e.g. a stage is down)
};

struct CompletionSetup {
  std::vector<int32_t> prompt;
  GenerationParams gen;
  std::vector<int32_t> eos_ids;
  ToolSyntax tools = ToolSyntax::None;
  bool starts_in_reasoning = false;
  bool parse_reasoning = true;
  std::shared_ptr<runtime::TokenConstraint> constraint;  // structured outputs (null: none)
};

class Completion {
 public:
  // Submits to the engine. Throws ApiError (429 queue full, 400 prompt too long).
  Completion(runtime::Engine& engine, const tok::Tokenizer& tokenizer, Metrics& metrics,
             CompletionSetup setup);
  ~Completion();  // cancels the request if it is still running
  Completion(const Completion&) = delete;
  Completion& operator=(const Completion&) = delete;

  // Waits up to `timeout` for the next event; false when none came.
  bool next(CompletionStep& step, std::chrono::milliseconds timeout);
  void cancel();
  bool finished() const { return finished_; }
  int64_t prompt_tokens() const { return static_cast<int64_t>(prompt_len_); }
  int64_t completion_tokens() const { return generated_; }
  // Prompt tokens restored from the prefix cache instead of computed (known once it started).
  int64_t cached_tokens() const { return cached_; }
  bool any_token() const { return generated_ > 0; }

 private:
  struct Queue {
    std::mutex mutex;
    std::condition_variable cv;
    std::deque<runtime::TokenEvent> events;
    bool abandoned = false;
  };
  TokenLogprob logprob_of(const runtime::SampledToken& t) const;

  runtime::Engine& engine_;
  const tok::Tokenizer& tokenizer_;
  Metrics& metrics_;
  std::shared_ptr<Queue> queue_;
  std::unique_ptr<tok::StreamDecoder> decoder_;
  OutputParser parser_;
  bool want_logprobs_;
  uint64_t id_ = 0;
  size_t prompt_len_ = 0;
  int64_t generated_ = 0;
  int64_t cached_ = 0;
  bool finished_ = false;
  bool engine_done_ = false;
  std::chrono::steady_clock::time_point start_, last_token_;
};

}  // namespace meshlm::server
