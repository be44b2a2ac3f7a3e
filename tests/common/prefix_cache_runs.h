// Requests with shared prefixes through an Engine over a real pipeline, for the prefix-cache
// tests: the tokens must not depend on whether the cache is on (greedy and seeded sampling, one
// at a time and all at once, a second turn that continues the first).
#pragma once

#include <gtest/gtest.h>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "runtime/engine.h"

namespace meshlm::test {

struct PrefixRuns {
  std::vector<std::vector<int32_t>> tokens;  // per request, in submission order
  int64_t cached_tokens = 0;                 // over all requests
};

// Prompts: a shared "system prompt" of 45 ids, then each request's own ids (vocab >= 400).
inline std::vector<std::vector<int32_t>> prefix_prompts(int n) {
  std::vector<int32_t> system;
  for (int i = 0; i < 45; ++i) system.push_back((i * 37 + 11) % 397 + 1);
  std::vector<std::vector<int32_t>> out;
  for (int r = 0; r < n; ++r) {
    auto p = system;
    for (int i = 0; i < 3 + 7 * r % 29; ++i) p.push_back((i * 53 + r * 19 + 3) % 389 + 2);
    out.push_back(std::move(p));
  }
  return out;
}

// Runs every prompt (then a second turn of the first: prompt + answer + 9 more ids) and returns
// the generated ids. concurrent: all submitted at once; else one after the other.
inline PrefixRuns run_prefix_requests(std::unique_ptr<runtime::Pipeline> pipeline,
                                      int64_t cache_bytes, bool concurrent, int n_requests = 8) {
  runtime::EngineOptions opt;
  opt.prefix_cache_bytes = cache_bytes;
  opt.prefix_block_tokens = 16;
  opt.prefill_chunk = 24;
  opt.max_batch_tokens = 64;
  opt.max_context = 256;
  opt.recovery_timeout_ms = 0;
  runtime::Engine engine(std::move(pipeline), opt);
  auto prompts = prefix_prompts(n_requests);
  PrefixRuns runs;
  struct Slot {
    std::mutex m;
    std::condition_variable cv;
    std::vector<int32_t> ids;
    bool done = false;
    int64_t cached = 0;
    std::string error;
  };
  auto submit = [&](const std::vector<int32_t>& prompt, size_t k, Slot& s) {
    runtime::Request r;
    r.prompt = prompt;
    r.max_tokens = 12;
    r.ignore_eos = true;
    if (k % 2) {
      r.sampling.temperature = 0.8f;
      r.sampling.top_k = 40;
      r.sampling.seed = 1000 + k;
      r.sampling.has_seed = true;
    } else {
      r.sampling.temperature = 0.0f;
    }
    r.on_event = [&s](const runtime::TokenEvent& e) {
      std::lock_guard lock(s.m);
      if (e.has_token) s.ids.push_back(e.sampled.token);
      if (e.finished) {
        s.done = true;
        s.cached = e.cached_tokens;
        s.error = e.error;
      }
      s.cv.notify_all();
      return true;
    };
    engine.submit(std::move(r));
  };
  auto wait = [](Slot& s) {
    std::unique_lock lock(s.m);
    EXPECT_TRUE(s.cv.wait_for(lock, std::chrono::minutes(3), [&] { return s.done; }));
    EXPECT_EQ(s.error, "");
  };
  std::vector<std::unique_ptr<Slot>> slots;
  for (size_t k = 0; k < prompts.size(); ++k) {
    slots.push_back(std::make_unique<Slot>());
    submit(prompts[k], k, *slots.back());
    if (!concurrent) wait(*slots.back());
  }
  for (auto& s : slots) wait(*s);
  // The first conversation's second turn.
  auto turn2 = prompts[0];
  turn2.insert(turn2.end(), slots[0]->ids.begin(), slots[0]->ids.end());
  for (int i = 0; i < 9; ++i) turn2.push_back(200 + i);
  slots.push_back(std::make_unique<Slot>());
  submit(turn2, 0, *slots.back());
  wait(*slots.back());
  for (auto& s : slots) {
    runs.tokens.push_back(s->ids);
    runs.cached_tokens += s->cached;
  }
  return runs;
}

}  // namespace meshlm::test
