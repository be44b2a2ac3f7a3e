#include "server/completion.h"

#include <algorithm>
#include <stdexcept>

#include "server/api_error.h"

namespace meshlm::server {

using Clock = std::chrono::steady_clock;

Completion::Completion(runtime::Engine& engine, const tok::Tokenizer& tokenizer, Metrics& metrics,
                       CompletionSetup setup)
    : engine_(engine),
      tokenizer_(tokenizer),
      metrics_(metrics),
      queue_(std::make_shared<Queue>()),
      decoder_(std::make_unique<tok::StreamDecoder>(tokenizer, setup.gen.stop, true)),
      parser_(setup.tools, setup.parse_reasoning, setup.starts_in_reasoning),
      want_logprobs_(setup.gen.sampling.logprobs),
      prompt_len_(setup.prompt.size()),
      start_(Clock::now()) {
  const int64_t ctx = engine.options().max_context;
  const auto n = static_cast<int64_t>(setup.prompt.size());
  if (n == 0) throw ApiError(400, "The prompt is empty.", "messages");
  if (n >= ctx)
    throw ApiError(400,
                   "This model's maximum context length is " + std::to_string(ctx) +
                       " tokens. However, your request has " + std::to_string(n) +
                       " input tokens, which leaves no room for a completion. Please shorten "
                       "your prompt.",
                   "messages", "context_length_exceeded");
  runtime::Request req;
  req.prompt = std::move(setup.prompt);
  req.sampling = setup.gen.sampling;
  req.max_tokens = std::min(setup.gen.max_tokens.value_or(ctx - n), ctx - n);
  req.ignore_eos = setup.gen.ignore_eos;
  req.eos_ids = std::move(setup.eos_ids);
  req.constraint = std::move(setup.constraint);
  std::weak_ptr<Queue> weak = queue_;
  req.on_event = [weak](const runtime::TokenEvent& e) {
    auto q = weak.lock();
    if (!q) return false;
    std::lock_guard lock(q->mutex);
    if (q->abandoned) return false;
    q->events.push_back(e);
    q->cv.notify_all();
    return true;
  };
  try {
    id_ = engine.submit(std::move(req));
  } catch (const runtime::QueueFull&) {
    throw ApiError(429, "The server is busy: the request queue is full. Retry shortly.", "",
                   "queue_full");
  } catch (const std::invalid_argument& e) {
    throw ApiError(400, e.what());
  }
}

Completion::~Completion() {
  if (!engine_done_) cancel();
}

void Completion::cancel() {
  {
    std::lock_guard lock(queue_->mutex);
    queue_->abandoned = true;
  }
  engine_.cancel(id_);
  engine_done_ = true;
}

TokenLogprob Completion::logprob_of(const runtime::SampledToken& t) const {
  TokenLogprob lp;
  lp.token = tokenizer_.decode({t.token}, false);
  lp.logprob = t.logprob;
  for (auto& [id, v] : t.top) lp.top.emplace_back(tokenizer_.decode({id}, false), v);
  return lp;
}

bool Completion::next(CompletionStep& step, std::chrono::milliseconds timeout) {
  step = CompletionStep{};
  if (finished_) return false;
  runtime::TokenEvent event;
  {
    std::unique_lock lock(queue_->mutex);
    if (!queue_->cv.wait_for(lock, timeout, [&] { return !queue_->events.empty(); })) return false;
    event = std::move(queue_->events.front());
    queue_->events.pop_front();
  }
  std::string text;
  cached_ = std::max(cached_, event.cached_tokens);
  if (event.has_token) {
    const auto now = Clock::now();
    if (generated_ == 0)
      metrics_.time_to_first_token(std::chrono::duration<double>(now - start_).count());
    else
      metrics_.inter_token_latency(std::chrono::duration<double>(now - last_token_).count());
    last_token_ = now;
    ++generated_;
    text = decoder_->push(event.sampled.token);
    if (want_logprobs_) step.logprobs.push_back(logprob_of(event.sampled));
  }
  bool stopped = decoder_->stopped();
  if (stopped && !event.finished) {
    cancel();  // a stop string ended it; the engine frees the KV at once
  }
  if (event.finished || stopped) {
    finished_ = true;
    if (event.finished) engine_done_ = true;
    if (!stopped) text += decoder_->finish();
    step.delta = parser_.push(text);
    OutputDelta tail = parser_.finish(step.tool_calls);
    step.delta.reasoning += tail.reasoning;
    step.delta.content += tail.content;
    step.finished = true;
    if (event.reason == runtime::FinishReason::Error ||
        (event.reason == runtime::FinishReason::Cancelled && !stopped)) {
      step.error = event.error.empty() ? "the request was cancelled" : event.error;
    }
    step.finish_reason = !step.tool_calls.empty()                        ? "tool_calls"
                         : stopped                                       ? "stop"
                         : event.reason == runtime::FinishReason::Length ? "length"
                                                                         : "stop";
    metrics_.tokens(static_cast<int64_t>(prompt_len_), generated_);
    return true;
  }
  step.delta = parser_.push(text);
  return true;
}

}  // namespace meshlm::server
