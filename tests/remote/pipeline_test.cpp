// Multi-process pipelines over loopback TCP: real `meshlm worker` processes serve stages of a
// synthetic model from `meshlm synth`. Checks that 1, 2 and 3 stages give bit-identical logits
// and greedy ids, that micro-batches pipeline, that garbage closes only its own connection, and
// that a dead worker fails in-flight work with "stage N (host:port) is down" and is reconnected.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "remote/fingerprint.h"
#include "remote/remote_pipeline.h"
#include "runtime/pipeline.h"
#include "transport/handshake.h"
#include "transport/messages.h"
#include "transport/tcp_transport.h"
#include "../common/prefix_cache_runs.h"
#include "../common/synth_once.h"
#include "worker_process.h"

extern char** environ;

namespace meshlm::remote {

using namespace transport;
namespace {

namespace fs = std::filesystem;
const std::string kSecret = test::kWorkerSecret;

fs::path model_dir() { return fs::path(MESHLM_TEST_DIR) / "synth-qwen3-128"; }

using test::run_command;
using test::WorkerProcess;

class DistPipeline : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Each test of the suite runs in a process of its own, two at a time: synth_once.
    ASSERT_EQ(::meshlm::test::synth_once(MESHLM_BIN, model_dir(),
                               {"--arch", "qwen3", "--hidden", "128", "--layers", "4", "--heads",
                                "4", "--kv-heads", "2", "--head-dim", "32", "--intermediate",
                                "256", "--vocab", "512", "--dtype", "f32", "--threads", "1"}),
              "");
  }

  static RemotePipelineOptions options(std::vector<std::string> peers,
                                       model::LayerPartition ranges) {
    RemotePipelineOptions o;
    o.model_dir = model_dir().string();
    o.peers = std::move(peers);
    o.ranges = std::move(ranges);
    o.stage.threads = 1;
    o.stage.max_context = 256;
    o.secret = kSecret;
    o.result_timeout_ms = 30000;
    return o;
  }
};

const std::vector<std::vector<int32_t>> kPrompts = {{1, 17, 300, 42, 7, 99, 250},
                                                    {5, 6, 7, 8, 9, 10, 11, 12, 13, 14}};

// Logits of every prompt position of sequence 0 and the last position of sequence 1.
std::vector<float> prompt_logits(runtime::Pipeline& p, int64_t seq_base) {
  runtime::MicroBatch b;
  b.id = 1;
  b.return_logits = true;
  b.chunks = {{seq_base, 0, int32_t(kPrompts[0].size()), true, true},
              {seq_base + 1, 0, int32_t(kPrompts[1].size()), true, false}};
  for (auto& pr : kPrompts) b.tokens.insert(b.tokens.end(), pr.begin(), pr.end());
  p.launch(b);
  auto r = p.wait();
  EXPECT_EQ(r.error, "");
  p.release(seq_base);
  p.release(seq_base + 1);
  return r.logits;
}

// Greedy generation; each sequence is its own micro-batch and all are launched before waiting,
// so with several stages they are in flight at once.
std::vector<std::vector<int32_t>> greedy(runtime::Pipeline& p, int64_t seq_base, int steps) {
  std::vector<std::vector<int32_t>> out(kPrompts.size());
  std::vector<int32_t> pos(kPrompts.size(), 0);
  uint64_t id = 100;
  for (int step = 0; step <= steps; ++step) {
    for (size_t s = 0; s < kPrompts.size(); ++s) {
      runtime::MicroBatch b;
      b.id = id++;
      if (step == 0) {
        b.tokens = kPrompts[s];
        runtime::SamplingParams params;
        params.temperature = 0;
        b.new_sequences = {{seq_base + int64_t(s), params}};
      } else {
        b.tokens = {out[s].back()};
      }
      b.chunks = {{seq_base + int64_t(s), pos[s], int32_t(b.tokens.size()), true, false}};
      pos[s] += int32_t(b.tokens.size());
      p.launch(std::move(b));
    }
    for (size_t s = 0; s < kPrompts.size(); ++s) {
      auto r = p.wait();
      EXPECT_EQ(r.error, "");
      if (r.sampled.size() != 1) return {};
      out[s].push_back(r.sampled[0].second.token);
    }
  }
  for (size_t s = 0; s < kPrompts.size(); ++s) p.release(seq_base + int64_t(s));
  return out;
}

TEST_F(DistPipeline, OneTwoThreeStagesAreBitIdentical) {
  auto one = runtime::make_local_pipeline(model_dir().string(), {1, 256});
  auto ref_logits = prompt_logits(*one, 0);
  auto ref_ids = greedy(*one, 10, 6);
  ASSERT_EQ(ref_logits.size(), (kPrompts[0].size() + 1) * 512);
  ASSERT_EQ(ref_ids.size(), 2u);

  WorkerProcess w1, w2;
  {
    auto two = make_remote_pipeline(options({w1.address()}, {{0, 2}, {2, 4}}));
    EXPECT_EQ(two->depth(), 2);
    auto logits = prompt_logits(*two, 0);
    ASSERT_EQ(logits.size(), ref_logits.size());
    EXPECT_EQ(std::memcmp(logits.data(), ref_logits.data(), logits.size() * 4), 0);
    EXPECT_EQ(greedy(*two, 10, 6), ref_ids);
  }
  {
    auto three =
        make_remote_pipeline(options({w1.address(), w2.address()}, {{0, 1}, {1, 3}, {3, 4}}));
    EXPECT_EQ(three->depth(), 3);
    auto st = three->stages();
    ASSERT_EQ(st.size(), 3u);
    EXPECT_EQ(st[1].node, w1.address());
    EXPECT_EQ(st[2].layers.begin, 3);
    EXPECT_EQ(st[2].state, "ready");
    EXPECT_GT(st[2].memory_bytes, 0u);  // weights the worker reported
    auto logits = prompt_logits(*three, 0);
    ASSERT_EQ(logits.size(), ref_logits.size());
    EXPECT_EQ(std::memcmp(logits.data(), ref_logits.data(), logits.size() * 4), 0);
    EXPECT_EQ(greedy(*three, 10, 6), ref_ids);
    // The same again after releases: KV was freed on every stage.
    EXPECT_EQ(greedy(*three, 10, 6), ref_ids);
    // Where each stage's time went: every stage has sent frames on (stage 0 and 1 activations,
    // stage 2 results; a worker's sends reach the coordinator with its next micro-batch), and
    // compute + queue + send + wait is the time since the pipeline started.
    st = three->stages();
    for (const auto& s : st) {
      EXPECT_GT(s.send_seconds, 0.0) << s.node;
      EXPECT_GE(s.queue_seconds, 0.0) << s.node;
      EXPECT_GE(s.wait_seconds, 0.0) << s.node;
    }
    EXPECT_EQ(st[0].queue_seconds, 0.0);  // the coordinator's stage runs where its input is made
    const double total0 = st[0].busy_seconds + st[0].send_seconds + st[0].wait_seconds;
    for (const auto& s : st)
      EXPECT_NEAR(s.busy_seconds + s.queue_seconds + s.send_seconds + s.wait_seconds, total0, 1e-6)
          << s.node;
  }
}

// The prefix cache (issue 17) changes which positions are computed, never the tokens: the same
// requests with the cache on and off, on one stage and on two, alone and all at once.
TEST_F(DistPipeline, PrefixCacheGivesTheSameTokensOnOneAndTwoStages) {
  const auto ref = test::run_prefix_requests(
      runtime::make_local_pipeline(model_dir().string(), {1, 256}), 0, false, 16);
  EXPECT_EQ(ref.cached_tokens, 0);
  for (bool concurrent : {false, true}) {
    const auto one = test::run_prefix_requests(
        runtime::make_local_pipeline(model_dir().string(), {1, 256}), 64 << 20, concurrent, 16);
    EXPECT_EQ(one.tokens, ref.tokens) << "one stage, concurrent " << concurrent;
    if (!concurrent) EXPECT_GE(one.cached_tokens, 15 * 32 + 48) << "every later prompt hit";
    EXPECT_GT(one.cached_tokens, 0);
    WorkerProcess w;
    const auto two = test::run_prefix_requests(
        make_remote_pipeline(options({w.address()}, {{0, 2}, {2, 4}})), 64 << 20, concurrent, 16);
    EXPECT_EQ(two.tokens, ref.tokens) << "two stages, concurrent " << concurrent;
    EXPECT_GT(two.cached_tokens, 0);
  }
}

// --cache-type reaches the workers in their load frames: two stages with a q8_0 (or bf16) cache
// give the bits of one local stage with that cache, which are not the f32 cache's; the prefix
// cache over a typed cache keeps the tokens.
TEST_F(DistPipeline, CacheTypeReachesTheWorkers) {
  const auto f32 = prompt_logits(*runtime::make_local_pipeline(model_dir().string(), {1, 256}), 0);
  WorkerProcess w;
  for (WeightType type : {WeightType::Q8_0, WeightType::BF16}) {
    SCOPED_TRACE(formats::name(type));
    model::StageOptions so{1, 256};
    so.kv_type = type;
    auto one = runtime::make_local_pipeline(model_dir().string(), so);
    EXPECT_EQ(one->kv_type(), type);
    const auto ref = prompt_logits(*one, 0);
    const auto ref_ids = greedy(*one, 10, 6);
    auto o = options({w.address()}, {{0, 2}, {2, 4}});
    o.stage.kv_type = type;
    auto two = make_remote_pipeline(o);
    EXPECT_EQ(two->kv_type(), type);
    const auto logits = prompt_logits(*two, 0);
    ASSERT_EQ(logits.size(), ref.size());
    EXPECT_EQ(std::memcmp(logits.data(), ref.data(), logits.size() * 4), 0);
    EXPECT_NE(std::memcmp(logits.data(), f32.data(), logits.size() * 4), 0);
    EXPECT_EQ(greedy(*two, 10, 6), ref_ids);
    const auto off = test::run_prefix_requests(runtime::make_local_pipeline(model_dir().string(), so),
                                               0, false, 8);
    const auto on = test::run_prefix_requests(std::move(two), 64 << 20, false, 8);
    EXPECT_EQ(on.tokens, off.tokens);
    EXPECT_GT(on.cached_tokens, 0);
  }
}

// --wire reaches every link: the coordinator's (options) and each worker's (load frame). Three
// stages over two workers with bf16 or q8_0 activations give the bits of three in-process stages
// that round their activations the same way (make_local_pipeline's wire), which are not the f32
// bits, and greedy ids; a q8_0 wire on a hidden size that is not whole blocks is refused.
TEST_F(DistPipeline, WireTypeReachesEveryLink) {
  const model::LayerPartition ranges = {{0, 1}, {1, 3}, {3, 4}};
  const auto f32 = prompt_logits(*runtime::make_local_pipeline(model_dir().string(), {1, 256}), 0);
  WorkerProcess w1, w2;
  for (WeightType type : {WeightType::BF16, WeightType::Q8_0}) {
    SCOPED_TRACE(formats::name(type));
    auto local = runtime::make_local_pipeline(model_dir().string(), {1, 256}, ranges, type);
    const auto ref = prompt_logits(*local, 0);
    const auto ref_ids = greedy(*local, 10, 6);
    auto o = options({w1.address(), w2.address()}, ranges);
    o.wire = type;
    auto three = make_remote_pipeline(o);
    const auto logits = prompt_logits(*three, 0);
    ASSERT_EQ(logits.size(), ref.size());
    EXPECT_EQ(std::memcmp(logits.data(), ref.data(), logits.size() * 4), 0);
    EXPECT_NE(std::memcmp(logits.data(), f32.data(), logits.size() * 4), 0);
    EXPECT_EQ(greedy(*three, 10, 6), ref_ids);
  }
  auto o = options({w1.address()}, {{0, 2}, {2, 4}});
  o.wire = WeightType::Q4_0;
  try {
    make_remote_pipeline(o);
    ADD_FAILURE() << "a wire type that is no activation type was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--wire"), std::string::npos) << e.what();
  }
}

TEST_F(DistPipeline, GarbageClosesOnlyItsConnectionAndBusyIsRefused) {
  WorkerProcess w;
  auto p = make_remote_pipeline(options({w.address()}, {{0, 2}, {2, 4}}));
  auto ref = greedy(*p, 0, 3);
  {
    auto junk = tcp_connect(w.address());
    std::string text = "\x01\x02garbage that is not a frame at all............";
    junk->send_raw({reinterpret_cast<const uint8_t*>(text.data()), text.size()});
    EXPECT_THROW(junk->recv(5000), Error);  // an error frame or a close
  }
  // A second coordinator is refused while the first is served.
  try {
    make_remote_pipeline(options({w.address()}, {{0, 2}, {2, 4}}));
    ADD_FAILURE() << "a second coordinator was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("busy"), std::string::npos) << e.what();
  }
  EXPECT_EQ(greedy(*p, 0, 3), ref);  // the worker still serves its coordinator
}

TEST_F(DistPipeline, WrongSecretIsRefused) {
  WorkerProcess w;
  auto o = options({w.address()}, {{0, 2}, {2, 4}});
  o.secret = "not-the-secret";
  try {
    make_remote_pipeline(o);
    ADD_FAILURE() << "wrong secret accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("secret mismatch"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("stage 1 (" + w.address() + ")"), std::string::npos);
  }
}

// Polls p.stages() until pred holds or ~limit_s pass (a bound, not a timing assertion).
template <class Pred>
bool eventually(runtime::Pipeline& p, Pred pred, double limit_s = 60) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(limit_s);
  while (std::chrono::steady_clock::now() < end) {
    if (pred(p.stages())) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return pred(p.stages());
}

bool all_ready(const std::vector<runtime::StageInfo>& st) {
  for (const auto& s : st)
    if (s.state != "ready") return false;
  return true;
}

TEST_F(DistPipeline, DeadWorkerIsReportedAndReconnected) {
  auto w1 = std::make_unique<WorkerProcess>();
  auto w2 = std::make_unique<WorkerProcess>();
  auto p = make_remote_pipeline(options({w1->address(), w2->address()}, {{0, 1}, {1, 3}, {3, 4}}));
  auto ref = greedy(*p, 0, 2);
  ASSERT_EQ(ref.size(), 2u);
  // Every stage reports its compute; the coordinator the rest of the round trips.
  auto times = p->stages();
  for (const auto& st : times) EXPECT_GT(st.busy_seconds, 0.0) << st.node;
  EXPECT_GT(times[0].transfer_seconds, 0.0);
  const uint16_t port2 = w2->port();
  const std::string addr2 = w2->address();
  w2->kill(SIGKILL);
  // The coordinator has seen the connection close before the next launch (polled, not slept on:
  // otherwise stage 1's failure to forward could be the first news of it on a busy machine).
  ASSERT_TRUE(eventually(*p, [](auto st) { return st[2].state != "ready"; }));
  runtime::MicroBatch b;
  b.id = 1;
  b.tokens = kPrompts[0];
  b.chunks = {{50, 0, int32_t(b.tokens.size()), true, false}};
  p->launch(b);
  auto r = p->wait();
  EXPECT_NE(r.error.find("stage 2 (" + addr2 + ") is down"), std::string::npos) << r.error;
  EXPECT_TRUE(r.retryable);  // a lost stage: the engine may replay its sequences
  auto st = p->stages();
  EXPECT_NE(st[2].state, "ready");  // "down", or "connecting" while the monitor retries
  // Still down: the next launch fails fast with the same kind of message.
  b.id = 2;
  p->launch(b);
  r = p->wait();
  EXPECT_NE(r.error.find("is down"), std::string::npos) << r.error;
  // The worker comes back on the same port: the next launch reconnects.
  w2 = std::make_unique<WorkerProcess>(port2);
  EXPECT_EQ(greedy(*p, 100, 2), ref);
  EXPECT_EQ(p->stages()[2].state, "ready");
}

TEST_F(DistPipeline, HungWorkerIsDetectedByTimeoutAndRecovers) {
  auto w1 = std::make_unique<WorkerProcess>();
  auto w2 = std::make_unique<WorkerProcess>();
  auto o = options({w1->address(), w2->address()}, {{0, 1}, {1, 3}, {3, 4}});
  o.result_timeout_ms = 1500;
  auto p = make_remote_pipeline(o);
  auto ref = greedy(*p, 0, 2);
  ASSERT_EQ(ref.size(), 2u);
  w2->signal(SIGSTOP);  // alive, connected, silent
  runtime::MicroBatch b;
  b.id = 1;
  b.tokens = kPrompts[0];
  b.chunks = {{50, 0, int32_t(b.tokens.size()), true, false}};
  auto t0 = std::chrono::steady_clock::now();
  p->launch(b);
  auto r = p->wait();
  double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(r.error.find("timed out"), std::string::npos) << r.error;
  EXPECT_GE(waited, 1.4);
  EXPECT_LT(waited, 10.0);
  EXPECT_NE(p->stages()[2].state, "ready");  // "down", or "connecting" while the monitor retries
  // The worker wakes up: the next launch reconnects (its old session is replaced) and works.
  w2->signal(SIGCONT);
  EXPECT_EQ(greedy(*p, 100, 2), ref);
  EXPECT_EQ(p->stages()[2].state, "ready");
}

// The README's promise, without any traffic: a worker killed and started again on the same
// address is taken back by the coordinator's background reconnect (issue: it never was).
TEST_F(DistPipeline, RestartedWorkerIsTakenBackWithoutTraffic) {
  auto w1 = std::make_unique<WorkerProcess>();
  auto w2 = std::make_unique<WorkerProcess>();
  auto p = make_remote_pipeline(options({w1->address(), w2->address()}, {{0, 1}, {1, 3}, {3, 4}}));
  auto ref = greedy(*p, 0, 2);
  ASSERT_EQ(ref.size(), 2u);
  const uint16_t port2 = w2->port();
  w2->kill(SIGKILL);
  EXPECT_TRUE(eventually(*p, [](auto st) { return st[2].state != "ready"; }));
  w2 = std::make_unique<WorkerProcess>(port2);
  EXPECT_TRUE(eventually(*p, all_ready)) << "the restarted worker was not taken back";
  EXPECT_EQ(greedy(*p, 100, 2), ref);
}

// A worker that stops answering without closing its connection (SIGSTOP: a suspended laptop, a
// pulled cable) is noticed by the missing heartbeats with nothing in flight, long before the
// result timeout, and taken back by itself once it answers again.
// A worker restarted while the engine is idle comes back without its prefix blocks: the engine
// forgets them (Pipeline::kv_epoch) instead of asking the new worker to restore them.
TEST_F(DistPipeline, PrefixCacheIsForgottenWhenAWorkerRestarts) {
  auto w = std::make_unique<WorkerProcess>();
  runtime::EngineOptions opt;
  opt.prefix_block_tokens = 16;
  opt.max_context = 256;
  runtime::Engine engine(make_remote_pipeline(options({w->address()}, {{0, 2}, {2, 4}})), opt);
  const auto prompt = test::prefix_prompts(1)[0];
  auto run = [&] {
    std::mutex m;
    std::condition_variable cv;
    runtime::TokenEvent last;
    std::vector<int32_t> ids;
    bool done = false;
    runtime::Request r;
    r.prompt = prompt;
    r.max_tokens = 6;
    r.ignore_eos = true;
    r.sampling.temperature = 0.0f;
    r.on_event = [&](const runtime::TokenEvent& e) {
      std::lock_guard lock(m);
      if (e.has_token) ids.push_back(e.sampled.token);
      if (e.finished) {
        last = e;
        done = true;
      }
      cv.notify_all();
      return true;
    };
    engine.submit(std::move(r));
    std::unique_lock lock(m);
    EXPECT_TRUE(cv.wait_for(lock, std::chrono::minutes(2), [&] { return done; }));
    EXPECT_EQ(last.error, "");
    return std::make_pair(ids, last.cached_tokens);
  };
  const auto first = run();
  EXPECT_EQ(first.second, 0);
  EXPECT_EQ(run(), std::make_pair(first.first, int64_t{32}));  // from the cache
  const uint16_t port = w->port();
  w->kill(SIGKILL);
  auto ready = [&] {
    for (const auto& st : engine.stages())
      if (st.state != "ready") return false;
    return true;
  };
  for (int i = 0; i < 600 && ready(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  w = std::make_unique<WorkerProcess>(port);
  for (int i = 0; i < 1200 && !ready(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(ready()) << "the restarted worker was not taken back";
  EXPECT_EQ(run(), std::make_pair(first.first, int64_t{0}));  // computed again, same tokens
  EXPECT_EQ(run(), std::make_pair(first.first, int64_t{32}));
}

TEST_F(DistPipeline, SilentWorkerIsNoticedByHeartbeatsAndTakenBack) {
  auto w1 = std::make_unique<WorkerProcess>();
  auto w2 = std::make_unique<WorkerProcess>();
  auto o = options({w1->address(), w2->address()}, {{0, 1}, {1, 3}, {3, 4}});
  o.heartbeat_timeout_ms = 3000;
  o.result_timeout_ms = 600000;  // not what notices it
  auto p = make_remote_pipeline(o);
  auto ref = greedy(*p, 0, 2);
  ASSERT_EQ(ref.size(), 2u);
  w2->signal(SIGSTOP);
  EXPECT_TRUE(eventually(*p, [](auto st) { return st[2].state != "ready"; }))
      << "a silent worker was not noticed";
  w2->signal(SIGCONT);
  EXPECT_TRUE(eventually(*p, all_ready)) << "the worker was not taken back";
  EXPECT_EQ(greedy(*p, 100, 2), ref);
}

// A coordinator that vanishes without closing its connection (power loss): the worker, which was
// pinged, drops the silent session after --heartbeat-timeout and serves the next coordinator
// (until then, another coordinator is refused as busy).
TEST_F(DistPipeline, WorkerDropsASilentCoordinator) {
  WorkerProcess w(0, {"--heartbeat-timeout", "2"});
  auto silent = tcp_connect(w.address());
  HandshakeOptions h;
  h.secret = kSecret;
  h.fingerprint = fingerprint(model_dir().string());
  h.role = "coordinator";
  h.name = "worker";
  h.client_id = "0123456789abcdef0123456789abcdef";
  handshake_client(*silent, h);
  LoadMsg load;
  load.model_dir = model_dir().string();
  load.layers.begin = 0;
  load.layers.end = 4;
  load.max_context = 256;
  silent->send(FrameType::Load, encode_load(load));
  Frame f = recv_checked(*silent, 60000);
  ASSERT_EQ(f.type(), FrameType::Loaded);
  silent->send(FrameType::Ping);  // a coordinator that pings: its silence will mean it is gone
  // From here on nothing is sent and nothing read: the connection stays open.
  std::unique_ptr<runtime::Pipeline> p;
  std::string last_error;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!p && std::chrono::steady_clock::now() < end) {
    try {
      p = make_remote_pipeline(options({w.address()}, {{0, 2}, {2, 4}}));
    } catch (const Error& e) {
      last_error = e.what();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  ASSERT_TRUE(p) << "the silent coordinator was never dropped: " << last_error;
  EXPECT_EQ(greedy(*p, 0, 2).size(), 2u);
}

// Every architecture, 1 to 4 stages over TCP, 4 sequences in flight at once: prompts longer than
// one prefill chunk (three chunks each), the logits of every prompt position, then greedy decoding.
struct ArchRun {
  std::vector<float> logits;                // all sequences' prompt logits, in order
  std::vector<std::vector<int32_t>> ids;    // greedy continuation per sequence
};

ArchRun run_arch(runtime::Pipeline& p, int64_t vocab, int steps) {
  constexpr int kSeqs = 4, kLen = 40, kChunk = 16;
  std::vector<std::vector<int32_t>> prompts(kSeqs);
  for (int s = 0; s < kSeqs; ++s)
    for (int i = 0; i < kLen; ++i) prompts[s].push_back(int32_t((s * 97 + i * 31 + 5) % vocab));
  ArchRun out;
  std::vector<std::vector<float>> seq_logits(kSeqs);
  uint64_t id = 1;
  for (int pos = 0; pos < kLen; pos += kChunk) {
    const int n = std::min(kChunk, kLen - pos);
    for (int s = 0; s < kSeqs; ++s) {  // all four launched before the first wait
      runtime::MicroBatch b;
      b.id = id++;
      b.return_logits = true;
      b.chunks = {{1000 + s, pos, n, true, true}};
      b.tokens.assign(prompts[s].begin() + pos, prompts[s].begin() + pos + n);
      p.launch(std::move(b));
    }
    for (int s = 0; s < kSeqs; ++s) {
      auto r = p.wait();
      EXPECT_EQ(r.error, "");
      seq_logits[s].insert(seq_logits[s].end(), r.logits.begin(), r.logits.end());
    }
  }
  out.ids.resize(kSeqs);
  for (int s = 0; s < kSeqs; ++s) {
    out.logits.insert(out.logits.end(), seq_logits[s].begin(), seq_logits[s].end());
    if (seq_logits[s].size() < size_t(vocab)) return out;
    auto last = seq_logits[s].end() - vocab;
    out.ids[s].push_back(int32_t(std::max_element(last, seq_logits[s].end()) - last));
  }
  for (int step = 0; step < steps; ++step) {
    for (int s = 0; s < kSeqs; ++s) {
      runtime::MicroBatch b;
      b.id = id++;
      if (step == 0) {
        runtime::SamplingParams params;
        params.temperature = 0;
        b.new_sequences = {{1000 + s, params}};
      }
      b.tokens = {out.ids[s].back()};
      b.chunks = {{1000 + s, kLen + step, 1, true, false}};
      p.launch(std::move(b));
    }
    for (int s = 0; s < kSeqs; ++s) {
      auto r = p.wait();
      EXPECT_EQ(r.error, "");
      if (r.sampled.size() != 1) return out;
      out.ids[s].push_back(r.sampled[0].second.token);
    }
  }
  for (int s = 0; s < kSeqs; ++s) p.release(1000 + s);
  return out;
}

TEST_F(DistPipeline, EveryArchitectureOneToFourStagesFourInFlight) {
  WorkerProcess w1, w2, w3;
  for (const std::string arch : {"qwen3", "qwen2", "llama", "mistral", "qwen3_moe", "qwen2_moe", "mixtral"}) {
    SCOPED_TRACE(arch);
    fs::path dir = fs::path(MESHLM_TEST_DIR) / ("synth-" + arch + "-arch-w");
    if (!fs::exists(dir / "config.json")) {
      std::vector<std::string> cmd = {MESHLM_BIN, "synth", "--arch", arch, "--out", dir.string(),
                                      "--hidden", "64", "--intermediate", "128", "--layers", "4",
                                      "--heads", "4", "--kv-heads", "2", "--head-dim", "16",
                                      "--vocab", "384", "--dtype", "bf16", "--seed", "11"};
      if (arch == "llama") cmd.push_back("--untied");
      if (arch == "qwen3_moe" || arch == "qwen2_moe")  // 8 experts, 2 per token, layer 1 dense
        cmd.insert(cmd.end(), {"--experts", "8", "--moe-intermediate", "32", "--mlp-only-layers", "1"});
      // Sliding windows shorter than the sequences: Mistral's in every layer, Qwen3's from layer 2
      // on (a stage boundary falls inside the windowed layers or before them).
      if (arch == "mistral") cmd.insert(cmd.end(), {"--sliding-window", "6"});
      if (arch == "qwen3") cmd.insert(cmd.end(), {"--sliding-window", "6", "--max-window-layers", "2"});
      if (arch == "mixtral")  // 4 experts of 32, 2 per token, every layer
        cmd.insert(cmd.end(), {"--experts", "4", "--moe-intermediate", "32"});
      ASSERT_EQ(run_command(cmd), 0) << "meshlm synth failed";
    }
    auto one = runtime::make_local_pipeline(dir.string(), {1, 128});
    const int64_t vocab = one->config().vocab;
    ArchRun ref = run_arch(*one, vocab, 12);
    ASSERT_EQ(ref.logits.size(), size_t(4 * 40 * vocab));
    const std::vector<std::vector<std::string>> peer_sets = {
        {w1.address()}, {w1.address(), w2.address()}, {w1.address(), w2.address(), w3.address()}};
    const std::vector<model::LayerPartition> ranges = {
        {{0, 2}, {2, 4}}, {{0, 1}, {1, 3}, {3, 4}}, {{0, 1}, {1, 2}, {2, 3}, {3, 4}}};
    for (size_t k = 0; k < peer_sets.size(); ++k) {
      SCOPED_TRACE(std::to_string(k + 2) + " stages");
      auto o = options(peer_sets[k], ranges[k]);
      o.model_dir = dir.string();
      o.stage.max_context = 128;
      auto p = make_remote_pipeline(o);
      ArchRun got = run_arch(*p, vocab, 12);
      ASSERT_EQ(got.logits.size(), ref.logits.size());
      EXPECT_EQ(std::memcmp(got.logits.data(), ref.logits.data(), ref.logits.size() * 4), 0);
      EXPECT_EQ(got.ids, ref.ids);
    }
  }
}

}  // namespace
}  // namespace meshlm::remote
