// The layout predictor (cluster/layout_model.h): each layout of a set of nodes costed from their
// read speeds and the link; on a fast link tensor parallelism wins one stream's decode, on a slow
// one (1 ms per hop) the pipeline does; many streams keep every pipeline stage busy (a round
// takes the slowest stage's time per micro-batch, not the stages' sum); refusals say why.
#include <gtest/gtest.h>

#include <cmath>

#include "backend/read_speed.h"
#include "core/error.h"
#include "cluster/layout_model.h"
#include "model_sizes.h"

namespace meshlm::cluster {
namespace {

constexpr uint64_t kGiB = 1ull << 30;

// 1.7B dims (Qwen3), BF16.
model::ModelConfig config() { return test::qwen3_17b_dims(); }
TensorSizes sizes_of(const model::ModelConfig& c) { return test::bf16_sizes_of(c); }

std::vector<NodeSpeed> equal_nodes(int n, double speed = 20e9) {
  std::vector<NodeSpeed> out;
  for (int k = 0; k < n; ++k) out.push_back({"n" + std::to_string(k), speed, 16 * kGiB});
  return out;
}

const LayoutCandidate& find(const std::vector<LayoutCandidate>& all, int stages, int tp) {
  for (const auto& c : all)
    if (c.stages == stages && c.tp == tp) return c;
  throw std::runtime_error("no such candidate");
}

TEST(LayoutModel, EveryShapeOfEveryPrefixOfTheNodes) {
  const auto all = predict_layouts(config(), sizes_of(config()), equal_nodes(4), {20e-6, 0}, {});
  // k = 1: 1x1; 2: 1x2, 2x1; 3: 1x3, 3x1; 4: 1x4, 2x2, 4x1.
  ASSERT_EQ(all.size(), 8u);
  for (const auto& c : all) {
    EXPECT_EQ(c.refused, "") << c.flags();
    EXPECT_EQ(int(c.groups.size()), c.stages);
    EXPECT_EQ(int(c.ranges.size()), c.stages);
    EXPECT_NEAR(c.tokens_per_s, 1.0 / (c.compute_s + c.link_s), 1e-9);
  }
  EXPECT_EQ(find(all, 2, 2).flags(), "--stages 2 --tp 2");
  EXPECT_EQ(find(all, 1, 4).flags(), "--tp 4");
  EXPECT_EQ(find(all, 4, 1).flags(), "--stages 4");
  EXPECT_EQ(find(all, 1, 1).flags(), "one node");
  EXPECT_EQ(find(all, 2, 2).groups[1], (std::vector<std::string>{"n2", "n3"}));
}

TEST(LayoutModel, ComputeIsTheWeightsOverTheGroupsSpeed) {
  const auto cfg = config();
  const auto sizes = sizes_of(cfg);
  const auto all = predict_layouts(cfg, sizes, equal_nodes(2), {0, 0}, {});
  const auto& one = find(all, 1, 1);
  const auto& tp = find(all, 1, 2);
  const auto& pp = find(all, 2, 1);
  EXPECT_EQ(one.link_s, 0);
  // A free link: two members read half each; two stages read their halves one after the other.
  EXPECT_NEAR(tp.compute_s, one.compute_s / 2, one.compute_s * 1e-9);
  EXPECT_NEAR(pp.compute_s, one.compute_s, one.compute_s * 1e-9);
  // One node reads the active bytes of the whole model: layers + the LM head (tied: the embedding).
  double bytes = 0;
  for (const auto& [name, b] : sizes) bytes += double(b);
  EXPECT_NEAR(one.compute_s * 20e9, bytes, bytes * 0.01);
}

TEST(LayoutModel, FastLinkPicksTensorParallelSlowLinkPicksPipeline) {
  const auto cfg = config();
  const auto sizes = sizes_of(cfg);
  // Loopback-like: 20 us per hop. Two all-reduces per layer cost 28 x 2 x 20 us = 1.1 ms, far
  // less than the half of the weights each member no longer reads (~90 ms at 20 GB/s).
  auto fast = predict_layouts(cfg, sizes, equal_nodes(2), {20e-6, 0}, {});
  ASSERT_NE(best_layout(fast, 1), nullptr);
  EXPECT_EQ(best_layout(fast, 1)->flags(), "--tp 2");
  // 1 ms per hop and 1 GB/s: the all-reduces cost 57 ms a token, the pipeline's hop 1 ms.
  auto slow_nodes = equal_nodes(2, 200e9);  // fast machines: the weights take ~18 ms
  auto slow = predict_layouts(cfg, sizes, slow_nodes, {1e-3, 1e9}, {});
  ASSERT_NE(best_layout(slow, 1), nullptr);
  EXPECT_NE(best_layout(slow, 1)->tp, 2);
  EXPECT_GT(find(slow, 1, 1).tokens_per_s, find(slow, 1, 2).tokens_per_s);
  EXPECT_GT(find(slow, 2, 1).tokens_per_s, find(slow, 1, 2).tokens_per_s);
  // The link costs of a two-stage pipeline: one hop of a row and the answer's way back.
  const auto& pp = find(slow, 2, 1);
  EXPECT_NEAR(pp.link_s, 1e-3 + 2048 * 4 / 1e9 + 1e-3, 1e-9);
}

TEST(LayoutModel, ManyStreamsKeepEveryStageBusy) {
  const auto cfg = config();
  PredictOptions o;
  o.streams = 8;
  const auto all = predict_layouts(cfg, sizes_of(cfg), equal_nodes(2), {20e-6, 0}, o);
  const auto& pp = find(all, 2, 1);
  const auto& tp = find(all, 1, 2);
  // Two micro-batches in flight: each stage's time bounds the round, not their sum.
  EXPECT_GT(pp.tokens_per_s_streams, 1.8 * 8 * pp.tokens_per_s / 2);
  EXPECT_NEAR(tp.tokens_per_s_streams, 8 * tp.tokens_per_s, 1e-6 * tp.tokens_per_s_streams);
}

TEST(LayoutModel, RefusalsSayWhy) {
  auto cfg = config();
  cfg.n_kv_heads = 2;
  auto all = predict_layouts(cfg, sizes_of(cfg), equal_nodes(3), {20e-6, 0}, {});
  EXPECT_NE(find(all, 1, 3).refused.find("KV heads"), std::string::npos);
  EXPECT_EQ(find(all, 3, 1).refused, "");
  // Too little memory for the whole model on one node.
  auto small = equal_nodes(2);
  for (auto& n : small) n.mem_available = 2 * kGiB;
  PredictOptions o;
  o.plan.kv_tokens = 4096;
  all = predict_layouts(cfg, sizes_of(cfg), small, {20e-6, 0}, o);
  EXPECT_NE(find(all, 1, 1).refused, "");
  EXPECT_EQ(find(all, 1, 2).refused, "");
  EXPECT_NE(format_candidates(all, 1).find("cannot run"), std::string::npos);
  // Processes of one machine share its memory: one of them alone has all of it.
  o.one_machine = true;
  for (auto& n : small) n.mem_available = 4 * kGiB;
  all = predict_layouts(cfg, sizes_of(cfg), small, {20e-6, 0}, o);
  EXPECT_EQ(find(all, 1, 1).refused, "");
  small[0].mem_available = small[1].mem_available = 3 * kGiB;  // 1.5 GiB each for two
  all = predict_layouts(cfg, sizes_of(cfg), small, {20e-6, 0}, o);
  EXPECT_NE(find(all, 2, 1).refused, "");
  // A node without a measured speed is an error, not a division by zero.
  small[1].read_bytes_per_s = 0;
  EXPECT_THROW(predict_layouts(cfg, sizes_of(cfg), small, {20e-6, 0}, {}), Error);
}

// The measurement itself: a positive, finite figure for BF16 and a quantized format.
TEST(ReadSpeed, MeasuresBytesPerSecond) {
  for (WeightType t : {WeightType::BF16, WeightType::Q4_K}) {
    const double v = backend::measure_read_speed("cpu", 1, t, 8ull << 20, 3);
    EXPECT_TRUE(std::isfinite(v));
    EXPECT_GT(v, 1e6) << formats::name(t);
  }
}

}  // namespace
}  // namespace meshlm::cluster
