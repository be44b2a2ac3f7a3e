// The scheduler against a fake Pipeline: batching, cancellation, queue limits, errors.
#include "runtime/engine.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

#include "fake_pipeline.h"

namespace meshlm::runtime {
namespace {

using testing::FakePipeline;

// Bounds every wait on the engine thread; outcomes never depend on it (a broken test fails
// instead of hanging, however slow or busy the machine is).
constexpr int kGuardMs = 60000;

// Collects one request's events and lets the test wait for the end.
struct Collector {
  std::mutex mutex;
  std::condition_variable done_cv;
  std::vector<int32_t> tokens;
  bool done = false;
  TokenEvent last;
  int cancel_after = -1;  // return false from on_event after this many tokens
  // Called on the engine thread (with `mutex` held) after each token, with the count so far.
  std::function<void(size_t)> on_token;

  Request request(std::vector<int32_t> prompt, int64_t max_tokens) {
    Request r;
    r.prompt = std::move(prompt);
    r.max_tokens = max_tokens;
    r.on_event = [this](const TokenEvent& e) {
      std::lock_guard lock(mutex);
      if (e.has_token) {
        tokens.push_back(e.sampled.token);
        if (on_token) on_token(tokens.size());
      }
      if (e.finished) {
        done = true;
        last = e;
      }
      done_cv.notify_all();
      return cancel_after < 0 || static_cast<int>(tokens.size()) < cancel_after;
    };
    return r;
  }
  bool wait(int ms = kGuardMs) {
    std::unique_lock lock(mutex);
    return done_cv.wait_for(lock, std::chrono::milliseconds(ms), [&] { return done; });
  }
  // Until at least n tokens have come out (the request is then active, not queued).
  bool wait_tokens(size_t n, int ms = kGuardMs) {
    std::unique_lock lock(mutex);
    return done_cv.wait_for(lock, std::chrono::milliseconds(ms),
                            [&] { return tokens.size() >= n || done; }) &&
           tokens.size() >= n;
  }
  bool is_done() {
    std::lock_guard lock(mutex);
    return done;
  }
};

// Makes the fake's wait() block (see FakePipeline::open) from the engine thread.
void hold(FakePipeline* fake) {
  std::lock_guard lock(fake->shared().mutex);
  fake->shared().hold = true;
}

std::vector<int32_t> prompt_of(int n, int seed) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back((i * 31 + seed * 7) % 997);
  return p;
}

TEST(Engine, SingleRequestMatchesReference) {
  auto pipe = std::make_unique<FakePipeline>(1);
  auto* fake = pipe.get();
  EngineOptions opt;
  opt.prefill_chunk = 4;
  Engine engine(std::move(pipe), opt);
  Collector c;
  auto prompt = prompt_of(10, 1);
  auto req = c.request(prompt, 7);
  req.sampling.temperature = 0.3f;
  req.sampling.seed = 42;
  req.sampling.has_seed = true;
  uint64_t id = engine.submit(std::move(req));
  ASSERT_TRUE(c.wait());
  EXPECT_EQ(c.tokens, FakePipeline::reference(prompt, 7, 1000));
  EXPECT_EQ(c.last.reason, FinishReason::Length);
  EXPECT_EQ(c.last.prompt_tokens, 10);
  EXPECT_EQ(c.last.generated_tokens, 7);
  std::lock_guard lock(fake->shared().mutex);
  EXPECT_TRUE(fake->shared().violations.empty()) << fake->shared().violations[0];
  EXPECT_TRUE(fake->shared().released.count(static_cast<int64_t>(id)));
  EXPECT_FLOAT_EQ(fake->shared().params[static_cast<int64_t>(id)].temperature, 0.3f);
  EXPECT_EQ(fake->shared().params[static_cast<int64_t>(id)].seed, 42u);
  EXPECT_LE(fake->shared().max_batch_tokens_seen, 4);  // prefill chunked
}

TEST(Engine, ManyConcurrentSequencesBatchAndStayCorrect) {
  for (int depth : {1, 3}) {
    auto pipe = std::make_unique<FakePipeline>(depth);
    auto* fake = pipe.get();
    EngineOptions opt;
    opt.prefill_chunk = 16;
    opt.max_batch_tokens = 40;
    opt.max_active = 12;
    fake->shared().hold = true;  // nothing finishes until all 20 are queued
    Engine engine(std::move(pipe), opt);
    constexpr int kN = 20;
    std::vector<std::unique_ptr<Collector>> cs;
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < kN; ++i) {
      cs.push_back(std::make_unique<Collector>());
      prompts.push_back(prompt_of(5 + i * 3, i));
      engine.submit(cs.back()->request(prompts.back(), 20 + i % 5));
    }
    fake->open();
    for (int i = 0; i < kN; ++i) {
      ASSERT_TRUE(cs[i]->wait()) << i;
      EXPECT_EQ(cs[i]->tokens, FakePipeline::reference(prompts[i], 20 + i % 5, 1000)) << i;
    }
    auto stats = engine.stats();
    std::lock_guard lock(fake->shared().mutex);
    EXPECT_TRUE(fake->shared().violations.empty()) << fake->shared().violations[0];
    EXPECT_EQ(fake->shared().released.size(), static_cast<size_t>(kN));
    EXPECT_LE(fake->shared().max_batch_tokens_seen, 40);
    EXPECT_LE(fake->shared().max_in_flight, depth);
    if (depth > 1) {
      EXPECT_EQ(fake->shared().max_in_flight, depth);  // the pipeline was kept full
    }
    EXPECT_GT(fake->shared().max_decode_rows, 1);  // decode steps share a pass
    EXPECT_EQ(stats.active, 0);
    EXPECT_EQ(stats.queued, 0);
    int64_t gen = 0, prompt = 0;
    for (int i = 0; i < kN; ++i) gen += 20 + i % 5, prompt += 5 + i * 3;
    EXPECT_EQ(stats.generated_tokens_total, gen);
    EXPECT_EQ(stats.prompt_tokens_total, prompt);
  }
}

TEST(Engine, EosStopsUnlessIgnored) {
  auto prompt = prompt_of(6, 3);
  auto ref = FakePipeline::reference(prompt, 10, 1000);
  for (bool ignore : {false, true}) {
    Engine engine(std::make_unique<FakePipeline>(1), EngineOptions{});
    Collector c;
    auto req = c.request(prompt, 10);
    req.eos_ids = {ref[3]};
    req.ignore_eos = ignore;
    engine.submit(std::move(req));
    ASSERT_TRUE(c.wait());
    if (ignore) {
      EXPECT_EQ(c.tokens.size(), 10u);
      EXPECT_EQ(c.last.reason, FinishReason::Length);
    } else {
      // The eos token is delivered (the server drops special tokens from text), then stop.
      ASSERT_GE(c.tokens.size(), 1u);
      EXPECT_EQ(c.tokens.back(), ref[3]);
      EXPECT_LE(c.tokens.size(), 4u);
      EXPECT_EQ(c.last.reason, FinishReason::Stop);
    }
  }
}

TEST(Engine, ContextLimitEndsWithLength) {
  EngineOptions opt;
  opt.max_context = 12;
  Engine engine(std::make_unique<FakePipeline>(1), opt);
  Collector c;
  engine.submit(c.request(prompt_of(8, 1), 100));
  ASSERT_TRUE(c.wait());
  EXPECT_EQ(c.tokens.size(), 4u);
  EXPECT_EQ(c.last.reason, FinishReason::Length);
  EXPECT_THROW(engine.submit(c.request(prompt_of(12, 1), 1)), std::invalid_argument);
  EXPECT_THROW(engine.submit(c.request({}, 1)), std::invalid_argument);
}

TEST(Engine, CancelFromAnotherThreadReleasesAtOnce) {
  auto pipe = std::make_unique<FakePipeline>(1);
  auto* fake = pipe.get();
  Engine engine(std::move(pipe), EngineOptions{});
  struct OpenAtExit {  // destroyed before the engine: a failed ASSERT cannot leave it held
    FakePipeline* fake;
    ~OpenAtExit() { fake->open(); }
  } open_at_exit{fake};
  Collector running, other;
  // The running request decodes a few tokens, then the pipeline holds its next batch until the
  // cancel is in: it is cancelled mid-generation (KV held) however the threads are scheduled.
  running.on_token = [fake](size_t n) {
    if (n == 3) hold(fake);
  };
  uint64_t id = engine.submit(running.request(prompt_of(5, 1), 100000));
  engine.submit(other.request(prompt_of(5, 2), 20));
  ASSERT_TRUE(running.wait_tokens(3));
  std::thread([&] { engine.cancel(id); }).join();
  fake->open();
  ASSERT_TRUE(running.wait());
  EXPECT_EQ(running.last.reason, FinishReason::Cancelled);
  EXPECT_LT(running.tokens.size(), 1000u);
  {
    std::lock_guard lock(fake->shared().mutex);
    EXPECT_TRUE(fake->shared().released.count(static_cast<int64_t>(id)));
  }
  ASSERT_TRUE(other.wait());  // the other request is unaffected
  EXPECT_EQ(other.tokens, FakePipeline::reference(prompt_of(5, 2), 20, 1000));
  engine.cancel(id);  // no-op for a finished id
  engine.cancel(987654);
}

TEST(Engine, OnEventFalseCancels) {
  auto pipe = std::make_unique<FakePipeline>(2);
  auto* fake = pipe.get();
  Engine engine(std::move(pipe), EngineOptions{});
  Collector c;
  c.cancel_after = 3;
  uint64_t id = engine.submit(c.request(prompt_of(5, 1), 50));
  ASSERT_TRUE(c.wait());
  EXPECT_EQ(c.tokens.size(), 3u);
  EXPECT_EQ(c.last.reason, FinishReason::Cancelled);
  std::lock_guard lock(fake->shared().mutex);
  EXPECT_TRUE(fake->shared().released.count(static_cast<int64_t>(id)));
}

TEST(Engine, QueueFullAndCancelWhileQueued) {
  auto pipe = std::make_unique<FakePipeline>(1, 1000, /*delay_ms=*/5);
  EngineOptions opt;
  opt.max_active = 1;
  opt.max_queue = 2;
  Engine engine(std::move(pipe), opt);
  Collector a, b, c, d;
  uint64_t ida = engine.submit(a.request(prompt_of(4, 1), 100000));
  ASSERT_TRUE(a.wait_tokens(1));  // a is active (it has a token), not queued
  uint64_t idb = engine.submit(b.request(prompt_of(4, 2), 3));
  engine.submit(c.request(prompt_of(4, 3), 3));
  EXPECT_EQ(engine.stats().queued, 2);
  EXPECT_THROW(engine.submit(d.request(prompt_of(4, 4), 3)), QueueFull);
  engine.cancel(idb);  // cancelled while waiting: never runs
  ASSERT_TRUE(b.wait());
  EXPECT_EQ(b.last.reason, FinishReason::Cancelled);
  EXPECT_TRUE(b.tokens.empty());
  engine.cancel(ida);
  ASSERT_TRUE(a.wait());
  ASSERT_TRUE(c.wait());
  EXPECT_EQ(c.last.reason, FinishReason::Length);
  EXPECT_EQ(c.tokens.size(), 3u);
}

TEST(Engine, BatchErrorFailsItsSequencesAndEngineRecovers) {
  auto pipe = std::make_unique<FakePipeline>(1);
  auto* fake = pipe.get();
  Engine engine(std::move(pipe), EngineOptions{});
  {
    std::lock_guard lock(fake->shared().mutex);
    fake->shared().fail_message = "[dist] stage 1 (10.0.0.2:9000) is down";
  }
  Collector a;
  uint64_t id = engine.submit(a.request(prompt_of(4, 1), 5));
  ASSERT_TRUE(a.wait());
  EXPECT_EQ(a.last.reason, FinishReason::Error);
  EXPECT_NE(a.last.error.find("is down"), std::string::npos);
  {
    std::lock_guard lock(fake->shared().mutex);
    EXPECT_TRUE(fake->shared().released.count(static_cast<int64_t>(id)));
    fake->shared().fail_message.clear();
    fake->shared().throw_on_wait = true;
  }
  Collector b;
  engine.submit(b.request(prompt_of(4, 2), 5));
  ASSERT_TRUE(b.wait());
  EXPECT_EQ(b.last.reason, FinishReason::Error);
  EXPECT_NE(b.last.error.find("connection to stage 1 lost"), std::string::npos);
  {
    std::lock_guard lock(fake->shared().mutex);
    fake->shared().throw_on_wait = false;
  }
  Collector c;
  engine.submit(c.request(prompt_of(4, 3), 5));
  ASSERT_TRUE(c.wait());
  EXPECT_EQ(c.tokens, FakePipeline::reference(prompt_of(4, 3), 5, 1000));
}

// A lost stage mid-generation (a retryable failure): the engine pauses every sequence, waits for
// the stages to be ready again, re-prefills prompt + tokens so far and continues; the tokens are
// those of an undisturbed run and nothing fails.
TEST(Engine, LostStagePausesAndReplaysWithIdenticalTokens) {
  auto pipe = std::make_unique<FakePipeline>(2);
  auto* fake = pipe.get();
  {
    std::lock_guard lock(fake->shared().mutex);
    fake->shared().fail_message = "[dist] stage 1 (10.0.0.2:9000) is down";
    fake->shared().fail_retryable = true;
    fake->shared().fail_after = 12;  // a few tokens each, then the stage is "lost"
    fake->shared().stage_state = "down";
  }
  EngineOptions opt;
  opt.recovery_timeout_ms = 600000;  // never reached: the test brings the stage back
  opt.prefill_chunk = 3;
  Engine engine(std::move(pipe), opt);
  Collector a, b, c;
  engine.submit(a.request(prompt_of(7, 1), 30));
  engine.submit(b.request(prompt_of(5, 2), 30));
  engine.submit(c.request(prompt_of(9, 3), 30));
  // Wait (bounded) until the engine has met the failure and paused, then bring the stage back.
  for (int i = 0; i < 3000 && !engine.stats().recovering; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(engine.stats().recovering);
  EXPECT_FALSE(a.is_done() || b.is_done() || c.is_done());
  {
    std::lock_guard lock(fake->shared().mutex);
    fake->shared().fail_message.clear();
    fake->shared().stage_state = "ready";
  }
  ASSERT_TRUE(a.wait(60000));
  ASSERT_TRUE(b.wait(60000));
  ASSERT_TRUE(c.wait(60000));
  EXPECT_EQ(a.last.reason, FinishReason::Length) << a.last.error;
  EXPECT_EQ(a.tokens, FakePipeline::reference(prompt_of(7, 1), 30, 1000));
  EXPECT_EQ(b.tokens, FakePipeline::reference(prompt_of(5, 2), 30, 1000));
  EXPECT_EQ(c.tokens, FakePipeline::reference(prompt_of(9, 3), 30, 1000));
  auto st = engine.stats();
  EXPECT_FALSE(st.recovering);
  EXPECT_EQ(st.recoveries_total, 1);
  EXPECT_GE(st.replayed_total, 1);
  std::lock_guard lock(fake->shared().mutex);
  EXPECT_TRUE(fake->shared().violations.empty()) << fake->shared().violations[0];
}

// The stage never comes back: requests fail after the recovery timeout with the reason, new ones
// fail at once while it stays down, and service resumes when it returns.
TEST(Engine, LostStageGivesUpAfterRecoveryTimeout) {
  auto pipe = std::make_unique<FakePipeline>(1);
  auto* fake = pipe.get();
  {
    std::lock_guard lock(fake->shared().mutex);
    fake->shared().fail_message = "[dist] stage 1 (10.0.0.2:9000) is down";
    fake->shared().fail_retryable = true;
    fake->shared().stage_state = "down";
  }
  EngineOptions opt;
  opt.recovery_timeout_ms = 200;
  Engine engine(std::move(pipe), opt);
  Collector a;
  engine.submit(a.request(prompt_of(4, 1), 5));
  ASSERT_TRUE(a.wait(60000));
  EXPECT_EQ(a.last.reason, FinishReason::Error);
  EXPECT_NE(a.last.error.find("is down"), std::string::npos) << a.last.error;
  EXPECT_NE(a.last.error.find("--recovery-timeout"), std::string::npos) << a.last.error;
  EXPECT_TRUE(engine.stats().recovery_gave_up);
  Collector b;  // still down: fails without another wait
  engine.submit(b.request(prompt_of(4, 2), 5));
  ASSERT_TRUE(b.wait(60000));
  EXPECT_EQ(b.last.reason, FinishReason::Error);
  {
    std::lock_guard lock(fake->shared().mutex);
    fake->shared().fail_message.clear();
    fake->shared().stage_state = "ready";
  }
  Collector c;
  engine.submit(c.request(prompt_of(4, 3), 5));
  ASSERT_TRUE(c.wait(60000));
  EXPECT_EQ(c.tokens, FakePipeline::reference(prompt_of(4, 3), 5, 1000));
  EXPECT_FALSE(engine.stats().recovery_gave_up);
}

TEST(Engine, ThrowingCallbackDoesNotKillTheEngine) {
  Engine engine(std::make_unique<FakePipeline>(1), EngineOptions{});
  Request r;
  r.prompt = prompt_of(3, 1);
  r.max_tokens = 5;
  r.on_event = [](const TokenEvent&) -> bool { throw std::runtime_error("boom"); };
  engine.submit(std::move(r));
  Collector c;
  engine.submit(c.request(prompt_of(3, 2), 4));
  ASSERT_TRUE(c.wait());
  EXPECT_EQ(c.tokens.size(), 4u);
}

TEST(Engine, DestructorFinishesPendingRequests) {
  Collector a, b;
  {
    EngineOptions opt;
    opt.max_active = 1;
    Engine engine(std::make_unique<FakePipeline>(1, 1000, 2), opt);
    engine.submit(a.request(prompt_of(3, 1), 1000000));
    engine.submit(b.request(prompt_of(3, 2), 1000000));
    // a is decoding and b queued behind it when the engine goes.
    ASSERT_TRUE(a.wait_tokens(1));
  }
  EXPECT_TRUE(a.done);
  EXPECT_TRUE(b.done);
  EXPECT_EQ(b.last.reason, FinishReason::Cancelled);
}

// A constraint that allows one token per step (step k: 100 + k) and then only EOS (999).
struct StepConstraint : TokenConstraint {
  int64_t vocab, steps;
  int64_t step = 0;
  int64_t fail_at = -1;  // this step's mask is empty
  std::vector<int32_t> accepted;
  StepConstraint(int64_t v, int64_t n) : vocab(v), steps(n) {}
  std::shared_ptr<const TokenMask> next_mask() override {
    auto m = std::make_shared<TokenMask>(size_t((vocab + 63) / 64), 0);
    if (step == fail_at) return m;
    const int64_t id = step < steps ? 100 + step : 999;
    (*m)[size_t(id / 64)] |= uint64_t{1} << (id % 64);
    return m;
  }
  void accept(int32_t token) override {
    const int64_t want = step < steps ? 100 + step : 999;
    if (token != want) throw std::runtime_error("token " + std::to_string(token) + " not allowed");
    accepted.push_back(token);
    ++step;
  }
};

TEST(Engine, ConstraintMasksEveryStepAndSurvivesAReplay) {
  auto pipe = std::make_unique<FakePipeline>(2);
  auto* fake = pipe.get();
  {
    std::lock_guard lock(fake->shared().mutex);
    fake->shared().fail_message = "[dist] stage 1 (10.0.0.2:9000) is down";
    fake->shared().fail_retryable = true;
    fake->shared().fail_after = 6;
    fake->shared().stage_state = "down";
  }
  EngineOptions opt;
  opt.recovery_timeout_ms = 600000;
  opt.prefill_chunk = 3;
  Engine engine(std::move(pipe), opt);
  Collector a, b;
  auto ca = std::make_shared<StepConstraint>(1000, 12);
  auto ra = a.request(prompt_of(7, 1), 40);
  ra.constraint = ca;
  ra.eos_ids = {999};
  engine.submit(std::move(ra));
  engine.submit(b.request(prompt_of(5, 2), 20));  // unconstrained beside it
  for (int i = 0; i < 3000 && !engine.stats().recovering; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(engine.stats().recovering);
  {
    std::lock_guard lock(fake->shared().mutex);
    fake->shared().fail_message.clear();
    fake->shared().stage_state = "ready";
  }
  ASSERT_TRUE(a.wait());
  ASSERT_TRUE(b.wait());
  std::vector<int32_t> want;
  for (int k = 0; k < 12; ++k) want.push_back(100 + k);
  want.push_back(999);
  EXPECT_EQ(a.tokens, want);
  EXPECT_EQ(ca->accepted, want);  // each token accepted once, replay or not
  EXPECT_EQ(a.last.reason, FinishReason::Stop);
  EXPECT_EQ(b.tokens, FakePipeline::reference(prompt_of(5, 2), 20, 1000));
  std::lock_guard lock(fake->shared().mutex);
  EXPECT_TRUE(fake->shared().violations.empty()) << fake->shared().violations[0];
  EXPECT_EQ(fake->shared().masked_samples, 13);
}

TEST(Engine, ConstraintWithNoAllowedTokenFailsOnlyItsRequest) {
  auto pipe = std::make_unique<FakePipeline>(1);
  auto* fake = pipe.get();
  Engine engine(std::move(pipe), EngineOptions{});
  Collector a, b;
  auto ca = std::make_shared<StepConstraint>(1000, 12);
  ca->fail_at = 3;
  auto ra = a.request(prompt_of(7, 1), 40);
  ra.constraint = ca;
  const uint64_t id = engine.submit(std::move(ra));
  engine.submit(b.request(prompt_of(5, 2), 10));
  ASSERT_TRUE(a.wait());
  ASSERT_TRUE(b.wait());
  EXPECT_EQ(a.last.reason, FinishReason::Error);
  EXPECT_NE(a.last.error.find("no token"), std::string::npos) << a.last.error;
  EXPECT_EQ(a.tokens, (std::vector<int32_t>{100, 101, 102}));
  EXPECT_EQ(b.last.reason, FinishReason::Length);
  EXPECT_EQ(b.tokens, FakePipeline::reference(prompt_of(5, 2), 10, 1000));
  std::lock_guard lock(fake->shared().mutex);
  EXPECT_TRUE(fake->shared().released.count(static_cast<int64_t>(id)));
}

// ---- prefix cache ----

// A prompt that begins with `shared` tokens common to every caller, then its own.
std::vector<int32_t> with_prefix(const std::vector<int32_t>& shared, int n_own, int seed) {
  std::vector<int32_t> p = shared;
  for (int i = 0; i < n_own; ++i) p.push_back((i * 17 + seed * 13 + 5) % 991);
  return p;
}

EngineOptions cache_options(int64_t block_tokens = 8) {
  EngineOptions opt;
  opt.prefill_chunk = 16;
  opt.prefix_block_tokens = block_tokens;
  return opt;
}

TEST(EnginePrefixCache, SecondRequestRestoresTheSharedPrefixWithTheSameTokens) {
  auto pipe = std::make_unique<FakePipeline>(1);
  auto* fake = pipe.get();
  Engine engine(std::move(pipe), cache_options());
  const auto system = prompt_of(37, 9);
  const auto p1 = with_prefix(system, 5, 1), p2 = with_prefix(system, 11, 2);
  Collector a;
  engine.submit(a.request(p1, 20));
  ASSERT_TRUE(a.wait());
  EXPECT_EQ(a.tokens, FakePipeline::reference(p1, 20, 1000));
  EXPECT_EQ(a.last.cached_tokens, 0);
  Collector b;
  engine.submit(b.request(p2, 20));
  ASSERT_TRUE(b.wait());
  EXPECT_EQ(b.tokens, FakePipeline::reference(p2, 20, 1000));
  EXPECT_EQ(b.last.cached_tokens, 32);  // the 4 full blocks of the 37 shared tokens
  Collector c;  // the same prompt again: everything but its last block-and-a-bit
  engine.submit(c.request(p1, 20));
  ASSERT_TRUE(c.wait());
  EXPECT_EQ(c.tokens, FakePipeline::reference(p1, 20, 1000));
  EXPECT_EQ(c.last.cached_tokens, 40);  // 42 tokens: 5 blocks, leaving 2 to compute
  const auto st = engine.stats();
  EXPECT_EQ(st.prefix_cache_hit_tokens_total, 72);
  EXPECT_EQ(st.prefix_cache_hits_total, 2);
  EXPECT_GT(st.prefix_cache_blocks, 0);
  EXPECT_EQ(st.prefix_cache_bytes, st.prefix_cache_blocks * 8 * 4 * 2 * 16 * 4);
  std::lock_guard lock(fake->shared().mutex);
  EXPECT_TRUE(fake->shared().violations.empty()) << fake->shared().violations[0];
  EXPECT_EQ(fake->shared().restored_tokens, 72);
}

TEST(EnginePrefixCache, GeneratedTokensAreCachedForTheNextTurn) {
  auto pipe = std::make_unique<FakePipeline>(1);
  auto* fake = pipe.get();
  Engine engine(std::move(pipe), cache_options());
  const auto turn1 = prompt_of(12, 3);
  Collector a;
  engine.submit(a.request(turn1, 30));
  ASSERT_TRUE(a.wait());
  // The next turn's prompt: the first, the answer, and a new question.
  auto turn2 = turn1;
  turn2.insert(turn2.end(), a.tokens.begin(), a.tokens.end());
  for (int i = 0; i < 6; ++i) turn2.push_back(100 + i);
  Collector b;
  engine.submit(b.request(turn2, 10));
  ASSERT_TRUE(b.wait());
  EXPECT_EQ(b.tokens, FakePipeline::reference(turn2, 10, 1000));
  // 12 + 30 tokens went through the model (the last sampled one did not): 5 full blocks.
  EXPECT_EQ(b.last.cached_tokens, 40);
  std::lock_guard lock(fake->shared().mutex);
  EXPECT_TRUE(fake->shared().violations.empty()) << fake->shared().violations[0];
}

TEST(EnginePrefixCache, ConcurrentStreamsWithASharedSystemPromptStayCorrect) {
  for (int depth : {1, 3}) {
    auto pipe = std::make_unique<FakePipeline>(depth);
    auto* fake = pipe.get();
    EngineOptions opt = cache_options();
    opt.max_batch_tokens = 48;
    opt.max_active = 16;
    Engine engine(std::move(pipe), opt);
    const auto system = prompt_of(50, 4);
    // A first request warms the cache; then 16 at once, in two waves.
    Collector warm;
    engine.submit(warm.request(with_prefix(system, 3, 99), 4));
    ASSERT_TRUE(warm.wait());
    constexpr int kN = 16;
    std::vector<std::unique_ptr<Collector>> cs;
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < kN; ++i) {
      cs.push_back(std::make_unique<Collector>());
      prompts.push_back(with_prefix(system, 1 + i * 5, i));
      engine.submit(cs.back()->request(prompts.back(), 12 + i % 4));
    }
    for (int i = 0; i < kN; ++i) {
      ASSERT_TRUE(cs[i]->wait()) << i;
      EXPECT_EQ(cs[i]->tokens, FakePipeline::reference(prompts[i], 12 + i % 4, 1000)) << i;
      EXPECT_GE(cs[i]->last.cached_tokens, 48) << i;
    }
    std::lock_guard lock(fake->shared().mutex);
    EXPECT_TRUE(fake->shared().violations.empty()) << fake->shared().violations[0];
  }
}

TEST(EnginePrefixCache, BudgetEvictsLeastRecentlyUsedAndStagesDropThem) {
  auto pipe = std::make_unique<FakePipeline>(2);
  auto* fake = pipe.get();
  EngineOptions opt = cache_options();
  opt.prefix_cache_bytes = 6 * 8 * 4 * 2 * 16 * 4;  // six blocks
  Engine engine(std::move(pipe), opt);
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 5; ++i) {
      const auto p = prompt_of(30 + i, 20 + i);
      Collector c;
      engine.submit(c.request(p, 9));
      ASSERT_TRUE(c.wait());
      EXPECT_EQ(c.tokens, FakePipeline::reference(p, 9, 1000)) << round << " " << i;
      EXPECT_LE(engine.stats().prefix_cache_blocks, 6);
    }
  }
  // The last prompt's blocks are the most recent: it comes back from the cache.
  const auto p = prompt_of(34, 24);
  Collector c;
  engine.submit(c.request(p, 9));
  ASSERT_TRUE(c.wait());
  EXPECT_EQ(c.tokens, FakePipeline::reference(p, 9, 1000));
  EXPECT_EQ(c.last.cached_tokens, 32);
  std::lock_guard lock(fake->shared().mutex);
  EXPECT_TRUE(fake->shared().violations.empty()) << fake->shared().violations[0];
  EXPECT_LE(fake->shared().blocks.size(), 6u);  // the stages dropped what the index evicted
}

TEST(EnginePrefixCache, OffSendsNoOperationsAndPenaltiesDoNotRestore) {
  {
    auto pipe = std::make_unique<FakePipeline>(1);
    auto* fake = pipe.get();
    EngineOptions opt = cache_options();
    opt.prefix_cache_bytes = 0;
    Engine engine(std::move(pipe), opt);
    for (int i = 0; i < 2; ++i) {
      Collector c;
      engine.submit(c.request(prompt_of(40, 1), 5));
      ASSERT_TRUE(c.wait());
      EXPECT_EQ(c.last.cached_tokens, 0);
    }
    std::lock_guard lock(fake->shared().mutex);
    EXPECT_EQ(fake->shared().saved_blocks, 0);
  }
  auto pipe = std::make_unique<FakePipeline>(1);
  auto* fake = pipe.get();
  Engine engine(std::move(pipe), cache_options());
  Collector a;
  engine.submit(a.request(prompt_of(40, 1), 5));
  ASSERT_TRUE(a.wait());
  Collector b;
  auto req = b.request(prompt_of(40, 1), 5);
  req.sampling.repetition_penalty = 1.1f;  // its sampler must count the whole prompt
  engine.submit(std::move(req));
  ASSERT_TRUE(b.wait());
  EXPECT_EQ(b.last.cached_tokens, 0);
  std::lock_guard lock(fake->shared().mutex);
  EXPECT_EQ(fake->shared().restored_tokens, 0);
  EXPECT_GT(fake->shared().saved_blocks, 0);
}

TEST(EnginePrefixCache, AFailedBatchEmptiesTheCacheEverywhere) {
  auto pipe = std::make_unique<FakePipeline>(1);
  auto* fake = pipe.get();
  EngineOptions opt = cache_options();
  opt.recovery_timeout_ms = 0;
  Engine engine(std::move(pipe), opt);
  const auto p = prompt_of(40, 7);
  Collector a;
  engine.submit(a.request(p, 5));
  ASSERT_TRUE(a.wait());
  {
    std::lock_guard lock(fake->shared().mutex);
    EXPECT_FALSE(fake->shared().blocks.empty());
    fake->shared().fail_message = "[fake] a stage threw";
  }
  Collector b;
  engine.submit(b.request(prompt_of(9, 1), 5));
  ASSERT_TRUE(b.wait());
  EXPECT_EQ(b.last.reason, FinishReason::Error);
  EXPECT_EQ(engine.stats().prefix_cache_blocks, 0);
  {
    std::lock_guard lock(fake->shared().mutex);
    fake->shared().fail_message.clear();
  }
  Collector c;  // computes the prompt again (nothing to restore) and is right
  engine.submit(c.request(p, 5));
  ASSERT_TRUE(c.wait());
  EXPECT_EQ(c.tokens, FakePipeline::reference(p, 5, 1000));
  EXPECT_EQ(c.last.cached_tokens, 0);
  std::lock_guard lock(fake->shared().mutex);
  EXPECT_TRUE(fake->shared().violations.empty()) << fake->shared().violations[0];
}

// ---- KV memory budget ----

TEST(EngineKvBudget, RequestsWaitOrArePreemptedAndKeepTheirTokens) {
  for (int depth : {1, 2}) {
    auto pipe = std::make_unique<FakePipeline>(depth);
    auto* fake = pipe.get();
    EngineOptions opt;
    opt.prefill_chunk = 8;
    opt.kv_budget_tokens = 130;
    fake->shared().hold = true;  // all queued before the first result
    Engine engine(std::move(pipe), opt);
    EXPECT_THROW(engine.submit(Collector().request(prompt_of(130, 1), 5)), std::invalid_argument);
    constexpr int kN = 8;
    std::vector<std::unique_ptr<Collector>> cs;
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < kN; ++i) {
      cs.push_back(std::make_unique<Collector>());
      prompts.push_back(prompt_of(18 + i, 40 + i));
      auto req = cs.back()->request(prompts.back(), 40);
      if (i % 2) {
        req.sampling.temperature = 0.7f;
        req.sampling.seed = 5 + i;
        req.sampling.has_seed = true;
      }
      engine.submit(std::move(req));
    }
    fake->open();
    for (int i = 0; i < kN; ++i) {
      ASSERT_TRUE(cs[i]->wait()) << i;
      EXPECT_EQ(cs[i]->last.reason, FinishReason::Length) << cs[i]->last.error;
      EXPECT_EQ(cs[i]->tokens, FakePipeline::reference(prompts[i], 40, 1000)) << i;
    }
    const auto st = engine.stats();
    EXPECT_GT(st.preemptions_total, 0);  // five start (~20 each), and grow to ~60 each
    EXPECT_EQ(st.kv_tokens, 0);
    std::lock_guard lock(fake->shared().mutex);
    EXPECT_TRUE(fake->shared().violations.empty()) << fake->shared().violations[0];
    EXPECT_LE(fake->shared().max_cached_total, 130);
    EXPECT_GT(fake->shared().max_cached_total, 60);  // more than one at a time
  }
}

}  // namespace
}  // namespace meshlm::runtime
