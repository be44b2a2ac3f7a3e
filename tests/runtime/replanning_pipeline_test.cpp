// ReplanningPipeline: a new layout goes in only between requests, requests give the same tokens
// before and after, a failed build fails micro-batches (not the process) and is retried, and
// stages() answers from other threads throughout.
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "runtime/engine.h"
#include "runtime/replanning_pipeline.h"
#include "../common/synth_once.h"

extern char** environ;

namespace meshlm::runtime {
namespace {

namespace fs = std::filesystem;

fs::path model_dir() { return fs::path(MESHLM_TEST_DIR) / "synth-replan"; }

// Bounds a wait on another thread; outcomes never depend on it (a broken test fails, not hangs).
constexpr auto kGuard = std::chrono::seconds(60);

// Holds the engine thread at a chosen launch until the test lets it go, so "a request is in
// flight" is a fact the test arranges, not a race it hopes to win against the scheduler.
struct LaunchGate {
  std::mutex mutex;
  std::condition_variable cv;
  int64_t hold_at = -1;  // launches counted since arm(); this one blocks (-1: never)
  int64_t launches = 0;
  bool held = false;  // the engine thread is blocked in launch()
  bool open = false;

  // The launch `n` launches from now (the first is 0) blocks until release().
  void arm(int64_t n) {
    std::lock_guard lock(mutex);
    hold_at = n;
    launches = 0;
    held = false;
    open = false;
  }
  void on_launch() {
    std::unique_lock lock(mutex);
    if (hold_at < 0 || launches++ != hold_at) return;
    held = true;
    cv.notify_all();
    cv.wait(lock, [&] { return open; });
    held = false;
  }
  bool wait_held() {
    std::unique_lock lock(mutex);
    return cv.wait_for(lock, kGuard, [&] { return held; });
  }
  void release() {
    std::lock_guard lock(mutex);
    open = true;
    hold_at = -1;
    cv.notify_all();
  }
};

// Passes everything to `inner`, stopping at the gate before each launch.
class GatedPipeline final : public Pipeline {
 public:
  GatedPipeline(std::unique_ptr<Pipeline> inner, std::shared_ptr<LaunchGate> gate)
      : inner_(std::move(inner)), gate_(std::move(gate)) {}
  const model::ModelConfig& config() const override { return inner_->config(); }
  int depth() const override { return inner_->depth(); }
  void launch(MicroBatch batch) override {
    gate_->on_launch();
    inner_->launch(std::move(batch));
  }
  MicroBatchResult wait() override { return inner_->wait(); }
  void release(int64_t seq_id) override { inner_->release(seq_id); }
  std::vector<StageInfo> stages() const override { return inner_->stages(); }

 private:
  std::unique_ptr<Pipeline> inner_;
  std::shared_ptr<LaunchGate> gate_;
};

class Replanning : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Each test of the suite runs in a process of its own, two at a time: synth_once.
    ASSERT_EQ(::meshlm::test::synth_once(MESHLM_BIN, model_dir(),
                               {"--arch", "qwen3", "--hidden", "64", "--intermediate", "128",
                                "--layers", "4", "--heads", "4", "--kv-heads", "2", "--head-dim",
                                "16", "--vocab", "256", "--dtype", "f32"}),
              "");
  }

  static std::unique_ptr<Pipeline> local(model::LayerPartition ranges) {
    return make_local_pipeline(model_dir().string(), {1, 256}, std::move(ranges));
  }

  struct Outcome {
    std::vector<int32_t> ids;
    FinishReason reason = FinishReason::None;
    std::string error;
  };

  // Submits a greedy request and returns a future of its tokens. `started` (optional) is set once
  // the first token has come out.
  static std::future<Outcome> submit(Engine& engine, int64_t max_tokens,
                                     std::atomic<bool>* started = nullptr) {
    auto promise = std::make_shared<std::promise<Outcome>>();
    auto out = std::make_shared<Outcome>();
    Request r;
    r.prompt = {1, 5, 9, 17, 33, 65, 129, 200};
    r.sampling.temperature = 0;
    r.max_tokens = max_tokens;
    r.ignore_eos = true;
    r.on_event = [promise, out, started](const TokenEvent& e) {
      if (e.has_token) out->ids.push_back(e.sampled.token);
      if (started && e.has_token) started->store(true);
      if (e.finished) {
        out->reason = e.reason;
        out->error = e.error;
        promise->set_value(*out);
      }
      return true;
    };
    auto fut = promise->get_future();
    engine.submit(std::move(r));
    return fut;
  }
};

TEST_F(Replanning, NewLayoutBetweenRequestsSameTokens) {
  // The first layout runs behind a gate that can hold a request mid-decode (the layouts built
  // later run without one).
  auto gate = std::make_shared<LaunchGate>();
  auto wrapper =
      std::make_unique<ReplanningPipeline>(std::make_unique<GatedPipeline>(local({}), gate));
  ReplanningPipeline* rp = wrapper.get();
  Engine engine(std::move(wrapper), EngineOptions{});
  // Declared after the engine, so destroyed first: a failed assertion while the gate holds the
  // engine thread must not leave the engine's destructor waiting on it.
  struct Opener {
    LaunchGate& gate;
    ~Opener() { gate.release(); }
  } opener{*gate};
  const auto reference = submit(engine, 24).get();
  ASSERT_EQ(reference.reason, FinishReason::Length) << reference.error;
  ASSERT_EQ(reference.ids.size(), 24u);
  EXPECT_EQ(engine.stages().size(), 1u);

  // /health-like readers hammer stages() from another thread all along.
  std::atomic<bool> stop{false};
  std::atomic<int64_t> reads{0};
  std::thread reader([&] {
    while (!stop) {
      auto s = rp->stages();
      EXPECT_FALSE(s.empty());
      ++reads;
    }
  });
  struct Join {
    std::atomic<bool>& stop;
    std::thread& t;
    ~Join() {
      stop = true;
      t.join();
    }
  } join{stop, reader};
  for (auto end = std::chrono::steady_clock::now() + kGuard;
       reads == 0 && std::chrono::steady_clock::now() < end;)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_GT(reads.load(), 0);

  // A re-plan requested while a request is decoding waits for it to finish. The request is held
  // at its 5th launch (prefill + 3 decode steps done, so tokens are out and its KV is in the old
  // stages) for as long as the test looks; nothing here depends on how fast it would decode.
  std::atomic<bool> started{false};
  gate->arm(4);
  auto running = submit(engine, 200, &started);
  ASSERT_TRUE(gate->wait_held()) << "the request never reached its 5th launch";
  EXPECT_TRUE(started.load());  // each decode step follows the previous token's delivery
  std::atomic<int> builds{0};
  rp->request_rebuild(
      [&] {
        ++builds;
        return local({{0, 1}, {1, 3}, {3, 4}});
      },
      "test: three stages");
  EXPECT_FALSE(rp->rebuild_if_idle());  // a sequence is active
  EXPECT_EQ(builds.load(), 0);
  gate->release();
  ASSERT_EQ(running.wait_for(kGuard), std::future_status::ready);
  auto long_run = running.get();
  ASSERT_EQ(long_run.reason, FinishReason::Length) << long_run.error;
  ASSERT_EQ(long_run.ids.size(), 200u);
  EXPECT_TRUE(std::equal(reference.ids.begin(), reference.ids.end(), long_run.ids.begin()));
  EXPECT_EQ(builds.load(), 0);  // finished on the old layout

  // The next request goes to the new layout and gives the same tokens.
  auto after = submit(engine, 24).get();
  EXPECT_EQ(builds.load(), 1);
  EXPECT_EQ(rp->rebuilds(), 1u);
  EXPECT_FALSE(rp->rebuild_pending());
  EXPECT_EQ(after.ids, reference.ids);
  auto stages = engine.stages();
  ASSERT_EQ(stages.size(), 3u);
  EXPECT_EQ(stages[1].layers.begin, 1);
  EXPECT_EQ(stages[1].layers.end, 3);

  // rebuild_if_idle() from a watcher thread, with nothing running, swaps at once.
  rp->request_rebuild([&] { return local({{0, 2}, {2, 4}}); }, "test: two stages");
  EXPECT_TRUE(rp->rebuild_if_idle());
  EXPECT_EQ(engine.stages().size(), 2u);
  EXPECT_EQ(submit(engine, 24).get().ids, reference.ids);
}

TEST_F(Replanning, FailedBuildFailsRequestsThenRecovers) {
  auto wrapper =
      std::make_unique<ReplanningPipeline>(local({}), std::chrono::milliseconds(0));
  ReplanningPipeline* rp = wrapper.get();
  // A layout that cannot be built is a lost stage for the engine: requests wait for a re-plan
  // this long (--recovery-timeout), then fail with the builder's reason.
  EngineOptions options;
  options.recovery_timeout_ms = 300;
  Engine engine(std::move(wrapper), options);
  const auto reference = submit(engine, 12).get();
  ASSERT_EQ(reference.ids.size(), 12u);

  std::atomic<int> attempts{0};
  rp->request_rebuild(
      [&]() -> std::unique_ptr<Pipeline> {
        ++attempts;
        throw Error("plan", "node 10.0.0.7:7070 left and the rest cannot hold the model");
      },
      "test: worker left");
  auto failed = submit(engine, 12).get();
  EXPECT_EQ(failed.reason, FinishReason::Error);
  EXPECT_NE(failed.error.find("cannot hold the model"), std::string::npos) << failed.error;
  for (const auto& s : engine.stages()) EXPECT_EQ(s.state, "down");
  EXPECT_TRUE(rp->rebuild_pending());

  // Retried at the next request (retry interval 0 here), still failing: still a clean error.
  auto again = submit(engine, 12).get();
  EXPECT_EQ(again.reason, FinishReason::Error);
  EXPECT_GE(attempts.load(), 2);

  // A worker comes back: the next plan works and requests are served as before.
  rp->request_rebuild([&] { return local({{0, 3}, {3, 4}}); }, "test: worker back");
  auto ok = submit(engine, 12).get();
  EXPECT_EQ(ok.reason, FinishReason::Length) << ok.error;
  EXPECT_EQ(ok.ids, reference.ids);
  EXPECT_EQ(engine.stages().size(), 2u);
  EXPECT_FALSE(rp->rebuild_pending());
}

TEST_F(Replanning, BuilderForAnotherModelIsRefused) {
  auto wrapper =
      std::make_unique<ReplanningPipeline>(local({}), std::chrono::milliseconds(0));
  ReplanningPipeline* rp = wrapper.get();
  rp->request_rebuild([]() -> std::unique_ptr<Pipeline> { return nullptr; }, "test: null");
  EXPECT_FALSE(rp->rebuild_if_idle());
  EXPECT_TRUE(rp->rebuild_pending());
  EXPECT_THROW(ReplanningPipeline(nullptr), Error);
}

}  // namespace
}  // namespace meshlm::runtime
