// Tensor parallelism across processes (remote/tp_pipeline.h): the coordinator is member 0 of
// a group whose other members are real `meshlm worker` processes on loopback. The group of 2
// and 3 (and an uneven split) gives the greedy ids of one process and logits within 1e-5, two
// runs are bit-identical, and a member killed fails the next micro-batch with an error instead
// of a hang.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/error.h"
#include "remote/tp_pipeline.h"
#include "runtime/pipeline.h"
#include "../common/prefix_cache_runs.h"
#include "../common/synth_once.h"
#include "worker_process.h"

extern char** environ;

namespace meshlm::remote {
namespace {

namespace fs = std::filesystem;
const std::string kSecret = test::kWorkerSecret;

// 4 KV heads, so that 3 members each get at least one.
fs::path model_dir() { return fs::path(MESHLM_TEST_DIR) / "synth-qwen3-tp"; }

using test::WorkerProcess;

class TpPipelineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_EQ(::meshlm::test::synth_once(MESHLM_BIN, model_dir(),
                               {"--arch", "qwen3", "--hidden", "128", "--layers", "3", "--heads",
                                "4", "--kv-heads", "4", "--head-dim", "32", "--intermediate",
                                "256", "--vocab", "512", "--dtype", "f32", "--threads", "1"}),
              "");
  }

  static TpPipelineOptions options(std::vector<std::string> peers, std::vector<double> shares = {}) {
    TpPipelineOptions o;
    o.model_dir = model_dir().string();
    o.peers = std::move(peers);
    o.shares = std::move(shares);
    o.stage.threads = 1;
    o.stage.max_context = 256;
    o.secret = kSecret;
    o.group_timeout_ms = 30000;
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

// Greedy generation, one micro-batch per sequence and step. top: SeqChunk::top_logits of every
// chunk (1: each member sends its best logit alone, as the engine asks for greedy requests).
std::vector<std::vector<int32_t>> greedy(runtime::Pipeline& p, int64_t seq_base, int steps,
                                         int32_t top = 0) {
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
      b.chunks[0].top_logits = top;
      pos[s] += int32_t(b.tokens.size());
      p.launch(std::move(b));
      auto r = p.wait();
      EXPECT_EQ(r.error, "");
      if (r.sampled.size() != 1) return {};
      out[s].push_back(r.sampled[0].second.token);
    }
  }
  for (size_t s = 0; s < kPrompts.size(); ++s) p.release(seq_base + int64_t(s));
  return out;
}

// Logits of a bf16 wire against f32: not the same bits, within 2% of the peak logit.
void expect_rounded_not_equal(const std::vector<float>& bf16, const std::vector<float>& f32) {
  ASSERT_EQ(bf16.size(), f32.size());
  EXPECT_NE(std::memcmp(bf16.data(), f32.data(), f32.size() * 4), 0);
  double worst = 0, peak = 0;
  for (size_t i = 0; i < f32.size(); ++i) {
    worst = std::max(worst, std::fabs(double(bf16[i]) - double(f32[i])));
    peak = std::max(peak, std::fabs(double(f32[i])));
  }
  EXPECT_LE(worst, 2e-2 * peak);
}

// The first prompt as a new greedy sequence `seq`, in one micro-batch (id 1).
runtime::MicroBatch first_prompt_of(int64_t seq) {
  runtime::MicroBatch b;
  b.id = 1;
  b.tokens = kPrompts[0];
  b.chunks = {{seq, 0, int32_t(b.tokens.size()), true, false}};
  runtime::SamplingParams params;
  params.temperature = 0;
  b.new_sequences = {{seq, params}};
  return b;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double scale = std::max(1.0, std::fabs(double(want[i])));
    worst = std::max(worst, std::fabs(double(got[i]) - double(want[i])) / scale);
  }
  EXPECT_LE(worst, 1e-5);
}

TEST_F(TpPipelineTest, TwoAndThreeMembersMatchOneProcess) {
  auto one = runtime::make_local_pipeline(model_dir().string(), {1, 256});
  const auto ref_logits = prompt_logits(*one, 0);
  const auto ref_ids = greedy(*one, 10, 6);
  ASSERT_EQ(ref_ids.size(), 2u);

  WorkerProcess w1, w2;
  for (const std::vector<std::string>& peers :
       {std::vector<std::string>{w1.address()}, {w1.address(), w2.address()}}) {
    SCOPED_TRACE(std::to_string(peers.size() + 1) + " members");
    auto p = make_tp_pipeline(options(peers));
    EXPECT_EQ(p->depth(), 1);
    auto st = p->stages();
    ASSERT_EQ(st.size(), peers.size() + 1);
    for (const auto& s : st) {
      EXPECT_EQ(s.state, "ready") << s.node;
      EXPECT_GT(s.memory_bytes, 0u) << s.node;
    }
    const auto logits = prompt_logits(*p, 0);
    expect_close(logits, ref_logits);
    // What bench reports: two all-reduces per layer and the LM head's gather; each all-reduce
    // sends the 17 positions' rows (hidden 128 floats) to every other member.
    st = p->stages();
    EXPECT_EQ(st[0].collectives, 2u * 3 + 1);
    EXPECT_GE(st[0].collective_bytes, peers.size() * 2 * 3 * 17 * 128 * sizeof(float));
    EXPECT_GT(st[0].collective_seconds, 0.0);
    EXPECT_EQ(greedy(*p, 10, 6), ref_ids);
    EXPECT_EQ(greedy(*p, 10, 6, 1), ref_ids) << "each member's best logit alone";
    EXPECT_EQ(greedy(*p, 10, 6, 3), ref_ids);
    // Twice: the members' KV was released, and the group is deterministic.
    const auto again = prompt_logits(*p, 0);
    ASSERT_EQ(again.size(), logits.size());
    EXPECT_EQ(std::memcmp(again.data(), logits.data(), logits.size() * 4), 0);
    EXPECT_EQ(greedy(*p, 10, 6), ref_ids);
  }
}

// --wire reaches every member (load frames): a group whose members disagreed on it would fail on
// the first all-reduce (the encoded sizes differ). bf16 partial sums: near the f32 group's
// logits, not equal, the same on a second group.
TEST_F(TpPipelineTest, WireTypeReachesEveryMember) {
  WorkerProcess w1, w2;
  const auto f32 = prompt_logits(*make_tp_pipeline(options({w1.address(), w2.address()})), 0);
  auto o = options({w1.address(), w2.address()});
  o.wire = WeightType::BF16;
  const auto bf16 = prompt_logits(*make_tp_pipeline(o), 0);
  expect_rounded_not_equal(bf16, f32);
  auto p = make_tp_pipeline(o);
  const auto again = prompt_logits(*p, 0);
  ASSERT_EQ(again.size(), bf16.size());
  EXPECT_EQ(std::memcmp(again.data(), bf16.data(), bf16.size() * 4), 0);
  EXPECT_EQ(greedy(*p, 10, 4, 1).size(), 2u);
}

TEST_F(TpPipelineTest, UnevenSharesAndRunsAreBitIdentical) {
  auto one = runtime::make_local_pipeline(model_dir().string(), {1, 256});
  const auto ref_logits = prompt_logits(*one, 0);
  const auto ref_ids = greedy(*one, 10, 4);
  WorkerProcess w1;
  std::vector<float> first;
  for (int run = 0; run < 2; ++run) {
    auto p = make_tp_pipeline(options({w1.address()}, {1, 3}));
    auto st = p->stages();
    ASSERT_EQ(st.size(), 2u);
    EXPECT_LT(st[0].memory_bytes, st[1].memory_bytes);  // member 1 holds 3/4 of the split part
    const auto logits = prompt_logits(*p, 0);
    expect_close(logits, ref_logits);
    EXPECT_EQ(greedy(*p, 10, 4), ref_ids);
    if (run == 0) {
      first = logits;
    } else {
      ASSERT_EQ(logits.size(), first.size());
      EXPECT_EQ(std::memcmp(logits.data(), first.data(), logits.size() * 4), 0);
    }
  }
}

// Every member keeps its slice of each prefix block: the tokens with the cache match one process
// without it (issue 17).
TEST_F(TpPipelineTest, PrefixCacheGivesTheSameTokensAsOneProcess) {
  const auto ref = test::run_prefix_requests(
      runtime::make_local_pipeline(model_dir().string(), {1, 256}), 0, false, 16);
  WorkerProcess w1;
  const auto tp = test::run_prefix_requests(make_tp_pipeline(options({w1.address()}, {1.0, 1.0})),
                                            64 << 20, true, 16);
  EXPECT_EQ(tp.tokens, ref.tokens);
  EXPECT_GT(tp.cached_tokens, 0);
}

// --cache-type reaches every member (in its load frame): a group with a q8_0 cache stays as
// close to one process with a q8_0 cache as f32 groups are to one f32 process, which a member
// that kept f32 keys for its heads would not be (the q8_0 cache moves these logits by ~1e-2).
TEST_F(TpPipelineTest, CacheTypeReachesEveryMember) {
  model::StageOptions so{1, 256};
  so.kv_type = WeightType::Q8_0;
  const auto f32 = prompt_logits(*runtime::make_local_pipeline(model_dir().string(), {1, 256}), 0);
  const auto ref = prompt_logits(*runtime::make_local_pipeline(model_dir().string(), so), 0);
  auto distance = [](const std::vector<float>& a, const std::vector<float>& b) {
    double worst = 0;
    for (size_t i = 0; i < a.size() && i < b.size(); ++i)
      worst = std::max(worst, std::fabs(double(a[i]) - double(b[i])) /
                                  std::max(1.0, std::fabs(double(b[i]))));
    return worst;
  };
  WorkerProcess w1;
  auto o = options({w1.address()});
  o.stage.kv_type = WeightType::Q8_0;
  auto p = make_tp_pipeline(o);
  EXPECT_EQ(p->kv_type(), WeightType::Q8_0);
  const auto logits = prompt_logits(*p, 0);
  ASSERT_EQ(logits.size(), ref.size());
  const double to_q8 = distance(logits, ref), q8_to_f32 = distance(ref, f32);
  std::printf("TP q8_0 vs one process q8_0: %.3g; q8_0 vs f32: %.3g\n", to_q8, q8_to_f32);
  EXPECT_LE(to_q8, 1e-3);  // room for a rounding of the keys that falls the other way
  EXPECT_GT(q8_to_f32, 10 * to_q8);
  const auto again = prompt_logits(*p, 0);
  EXPECT_EQ(std::memcmp(again.data(), logits.data(), logits.size() * 4), 0);
}

TEST_F(TpPipelineTest, KilledMemberIsAnErrorNotAHang) {
  WorkerProcess w1;
  auto w2 = std::make_unique<WorkerProcess>();
  auto p = make_tp_pipeline(options({w1.address(), w2->address()}));
  ASSERT_EQ(greedy(*p, 0, 2).size(), 2u);
  w2->kill(SIGKILL);
  runtime::MicroBatch b = first_prompt_of(50);
  p->launch(b);
  auto r = p->wait();
  EXPECT_NE(r.error, "");
  EXPECT_NE(r.error.find("tensor-parallel"), std::string::npos) << r.error;
  EXPECT_FALSE(r.retryable);
  // Broken for good: the next micro-batch fails at once, and releases are harmless.
  b.id = 2;
  p->launch(b);
  r = p->wait();
  EXPECT_NE(r.error, "");
  p->release(50);
  for (const auto& s : p->stages()) EXPECT_EQ(s.state, "down") << s.node;
  p.reset();  // destruction with a dead member: no hang, no crash
  // The surviving worker serves a new group.
  auto again = make_tp_pipeline(options({w1.address()}));
  EXPECT_EQ(greedy(*again, 0, 2).size(), 2u);
}

// A member that stops answering without closing its connections (SIGSTOP): the collectives'
// timeout fails the micro-batch instead of a hang.
TEST_F(TpPipelineTest, StalledMemberTimesOut) {
  WorkerProcess w1, w2;
  auto o = options({w1.address(), w2.address()});
  o.group_timeout_ms = 2000;
  auto p = make_tp_pipeline(o);
  ASSERT_EQ(greedy(*p, 0, 1).size(), 2u);
  w2.signal(SIGSTOP);
  runtime::MicroBatch b = first_prompt_of(50);
  p->launch(b);
  auto r = p->wait();
  w2.signal(SIGCONT);
  EXPECT_NE(r.error.find("tensor-parallel group"), std::string::npos) << r.error;
  p.reset();
}

// Hybrid layouts (--stages N --tp M): pipeline stages that are each a tensor-parallel group,
// the later groups all workers (rank 0 takes the activations and hands them to its members).
// 2 stages x 2 members, 3 stages x 2 members with uneven shares, 2 stages x 3 members: the
// greedy ids of one process, logits within 1e-5, and runs bit-identical.
TEST_F(TpPipelineTest, GroupsAsPipelineStagesMatchOneProcess) {
  auto one = runtime::make_local_pipeline(model_dir().string(), {1, 256});
  const auto ref_logits = prompt_logits(*one, 0);
  const auto ref_ids = greedy(*one, 10, 6);
  ASSERT_EQ(ref_ids.size(), 2u);
  WorkerProcess w[5];
  struct Layout {
    const char* name;
    std::vector<std::string> peers;
    std::vector<std::vector<std::string>> later;
    model::LayerPartition ranges;
    std::vector<double> shares;
  };
  const std::vector<Layout> layouts = {
      {"2 stages x 2", {w[0].address()}, {{w[1].address(), w[2].address()}}, {{0, 2}, {2, 3}}, {}},
      {"3 stages x 2, shares 1,3",
       {w[0].address()},
       {{w[1].address(), w[2].address()}, {w[3].address(), w[4].address()}},
       {{0, 1}, {1, 2}, {2, 3}},
       {1, 3}},
      {"2 stages x 3",
       {w[0].address(), w[1].address()},
       {{w[2].address(), w[3].address(), w[4].address()}},
       {{0, 1}, {1, 3}},
       {}},
  };
  for (const Layout& l : layouts) {
    SCOPED_TRACE(l.name);
    auto o = options(l.peers, l.shares);
    o.ranges = l.ranges;
    o.later_groups = l.later;
    auto p = make_tp_pipeline(o);
    auto st = p->stages();
    ASSERT_EQ(st.size(), l.ranges.size() * (l.peers.size() + 1));
    EXPECT_EQ(st.back().layers, l.ranges.back());
    for (const auto& s : st) {
      EXPECT_EQ(s.state, "ready") << s.node;
      EXPECT_GT(s.memory_bytes, 0u) << s.node;
    }
    const auto logits = prompt_logits(*p, 0);
    expect_close(logits, ref_logits);
    EXPECT_EQ(greedy(*p, 10, 6), ref_ids);
    EXPECT_EQ(greedy(*p, 10, 6, 1), ref_ids) << "each member's best logit alone";
    const auto again = prompt_logits(*p, 0);
    ASSERT_EQ(again.size(), logits.size());
    EXPECT_EQ(std::memcmp(again.data(), logits.data(), logits.size() * 4), 0);
  }
}

// The prefix cache and the wire type reach every group: the tokens of one process with the
// cache on; bf16 activations between the groups and in the all-reduces stay near f32.
TEST_F(TpPipelineTest, GroupsAsPipelineStagesCacheAndWire) {
  const auto ref = test::run_prefix_requests(
      runtime::make_local_pipeline(model_dir().string(), {1, 256}), 0, false, 16);
  WorkerProcess w[3];
  auto o = options({w[0].address()});
  o.ranges = {{0, 2}, {2, 3}};
  o.later_groups = {{w[1].address(), w[2].address()}};
  const auto got = test::run_prefix_requests(make_tp_pipeline(o), 64 << 20, true, 16);
  EXPECT_EQ(got.tokens, ref.tokens);
  EXPECT_GT(got.cached_tokens, 0);
  const auto f32 = prompt_logits(*make_tp_pipeline(o), 0);
  o.wire = WeightType::BF16;
  const auto bf16 = prompt_logits(*make_tp_pipeline(o), 0);
  expect_rounded_not_equal(bf16, f32);
}

// A member of a later group killed: the next micro-batch fails with an error naming the group,
// no hang; the survivors serve a new layout.
TEST_F(TpPipelineTest, KilledMemberOfALaterGroupIsAnErrorNotAHang) {
  WorkerProcess w0, w1;
  auto w2 = std::make_unique<WorkerProcess>();
  auto o = options({w0.address()});
  o.ranges = {{0, 2}, {2, 3}};
  o.later_groups = {{w1.address(), w2->address()}};
  auto p = make_tp_pipeline(o);
  ASSERT_EQ(greedy(*p, 0, 2).size(), 2u);
  w2->kill(SIGKILL);
  runtime::MicroBatch b = first_prompt_of(50);
  p->launch(b);
  auto r = p->wait();
  EXPECT_NE(r.error.find("tensor-parallel"), std::string::npos) << r.error;
  b.id = 2;
  p->launch(b);
  EXPECT_NE(p->wait().error, "");
  p->release(50);
  p.reset();
  auto again = make_tp_pipeline(options({w0.address()}, {1, 1}));
  EXPECT_EQ(greedy(*again, 0, 2).size(), 2u);
  // A worker named twice, or groups of another size, are refused before anything loads.
  o.later_groups = {{w1.address(), w0.address()}};
  EXPECT_THROW(make_tp_pipeline(o), Error);
  o.later_groups = {{w1.address()}};
  EXPECT_THROW(make_tp_pipeline(o), Error);
}

TEST_F(TpPipelineTest, BadSharesAreRefused) {
  WorkerProcess w1;
  EXPECT_THROW(make_tp_pipeline(options({w1.address()}, {1, 2, 3})), Error);
  EXPECT_THROW(make_tp_pipeline(options({w1.address()}, {1, 0})), Error);
}

}  // namespace
}  // namespace meshlm::remote
