// The layer planner: proportional to memory, fixed tensors where they live, clear refusals.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "../remote/sync_test_util.h"
#include "cluster/planner.h"
#include "model_sizes.h"
#include "convert/mlx_export.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "model/safetensors.h"
#include "model/weights.h"

namespace meshlm::cluster {
namespace {

namespace fs = std::filesystem;
constexpr uint64_t kMiB = 1ull << 20, kGiB = 1ull << 30;

model::ModelConfig config(int64_t layers, bool tied) { return test::qwen3_17b_dims(layers, tied); }
TensorSizes sizes_of(const model::ModelConfig& c) { return test::bf16_sizes_of(c); }

int64_t layers_of(const StagePlan& s) { return s.layers.end - s.layers.begin; }

TEST(Planner, EqualNodesGetEqualComputeAndCoverEveryLayer) {
  auto c = config(28, true);
  Plan p = plan_layers(c, sizes_of(c), {{"a", 16 * kGiB}, {"b", 16 * kGiB}}, {});
  // The LM head (151936 x 2048) weighs 6.2 layers: (28 + 6.2) / 2 = 17.1 layers of work each,
  // the last stage holding 10.9 layers + the head -> 17 / 11 (measured: both stages ~93% busy
  // with 8 streams on the 1.7B model, against 70% / 95% for 14 / 14).
  ASSERT_EQ(p.partition(), (model::LayerPartition{{0, 17}, {17, 28}}));
  EXPECT_EQ(p.stages[0].node, "a");
  EXPECT_EQ(p.stages[1].layers.begin, 17);
  // Tied embeddings: both ends hold the embedding matrix.
  uint64_t embed = uint64_t(c.vocab * c.hidden) * 2;
  EXPECT_GT(p.stages[0].weight_bytes, embed);
  EXPECT_GT(p.stages[1].weight_bytes, embed);
  EXPECT_EQ(p.stages[0].weight_bytes + p.stages[1].weight_bytes, p.total_weight_bytes + embed);
}

// A Qwen3-30B-A3B-shaped MoE (64 experts, 8 per token): a layer reads an eighth of its experts
// per token, so the tied LM head weighs ~5.5 of its layers in compute, not ~1 as in bytes. The
// last stage gets fewer layers, and the two stages read about as much per token.
TEST(Planner, MoeBalancesWhatATokenReads) {
  model::ModelConfig c = config(24, true);
  c.model_type = "qwen3_moe";
  c.n_heads = 32;
  c.n_kv_heads = 4;
  c.n_experts = 64;
  c.n_experts_used = 8;
  c.moe_intermediate = 768;
  TensorSizes sizes;
  for (const auto& d : model::model_tensors(c)) {
    uint64_t elems = 1;
    for (int64_t x : d.shape) elems *= uint64_t(x);
    sizes[d.name] = elems * 2;
  }
  Plan p = plan_layers(c, sizes, {{"a", 16 * kGiB}, {"b", 16 * kGiB}}, {});
  EXPECT_EQ(p.partition(), (model::LayerPartition{{0, 15}, {15, 24}}));
  for (const auto& s : p.stages) EXPECT_LT(s.active_bytes * 2, s.weight_bytes) << s.node;
  const double a0 = double(p.stages[0].active_bytes), a1 = double(p.stages[1].active_bytes);
  EXPECT_LT(std::abs(a0 - a1) / std::max(a0, a1), 0.15) << a0 << " vs " << a1;
  // One layer: attention and router whole, 8 of 64 experts.
  const uint64_t attn = uint64_t(2 * 4096 * 2048 + 2 * 512 * 2048) * 2;
  const uint64_t experts = uint64_t(64 * 3 * 768 * 2048) * 2;
  EXPECT_NEAR(double(p.layer_active_bytes), double(attn + experts / 8), 0.01 * double(attn + experts / 8));
  EXPECT_NE(format_plan(p).find("read/token"), std::string::npos);
}

TEST(Planner, LayersFollowMemory) {
  auto c = config(28, false);
  Plan p = plan_layers(c, sizes_of(c), {{"big", 32 * kGiB}, {"mid", 16 * kGiB}, {"small", 8 * kGiB}},
                       {});
  ASSERT_EQ(p.stages.size(), 3u);
  EXPECT_NO_THROW(model::check_partition(p.partition(), 28));
  EXPECT_GT(layers_of(p.stages[0]), layers_of(p.stages[1]));
  EXPECT_GT(layers_of(p.stages[1]), layers_of(p.stages[2]));
  for (const auto& s : p.stages) EXPECT_LE(s.weight_bytes + s.kv_bytes, s.mem_available);
}

TEST(Planner, KvRoomCountsAgainstANode) {
  auto c = config(28, false);
  PlanOptions small_kv, big_kv;
  small_kv.kv_tokens = 1024;
  big_kv.kv_tokens = 32768;  // 256 MiB per layer at f32
  std::vector<PlanNode> nodes = {{"a", 5 * kGiB}, {"b", 6 * kGiB}};
  Plan p = plan_layers(c, sizes_of(c), nodes, small_kv);
  EXPECT_EQ(p.kv_bytes_per_layer, 2ull * 1024 * 4 * 1024);
  EXPECT_EQ(p.stages[1].kv_bytes, uint64_t(layers_of(p.stages[1])) * p.kv_bytes_per_layer);
  // The same nodes cannot also hold 32k positions of KV for every layer.
  EXPECT_THROW(plan_layers(c, sizes_of(c), nodes, big_kv), Error);
}

TEST(Planner, ANodeNeverGetsMoreThanItHolds) {
  // Proportional targets would give "small" 9 layers; its memory holds fewer once KV is counted.
  auto c = config(28, false);
  PlanOptions kv;
  kv.kv_tokens = 32768;
  Plan p = plan_layers(c, sizes_of(c), {{"big", 9 * kGiB}, {"small", 4 * kGiB}}, kv);
  for (const auto& s : p.stages) EXPECT_LE(s.weight_bytes + s.kv_bytes, s.mem_available) << s.node;
  EXPECT_NO_THROW(model::check_partition(p.partition(), 28));
}

TEST(Planner, ModelThatDoesNotFitSaysByHowMuch) {
  auto c = config(28, false);
  try {
    plan_layers(c, sizes_of(c), {{"a", 2 * kGiB}, {"b", 2 * kGiB}}, {});
    FAIL() << "expected a refusal";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("does not fit"), std::string::npos) << m;
    EXPECT_NE(m.find("short by"), std::string::npos) << m;
  }
}

TEST(Planner, NodeTooSmallForOneLayerIsNamed) {
  auto c = config(28, false);
  try {
    plan_layers(c, sizes_of(c), {{"a", 64 * kGiB}, {"tiny:7070", 300 * kMiB}}, {});
    FAIL() << "expected a refusal";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("tiny:7070"), std::string::npos) << m;
    EXPECT_NE(m.find("short by"), std::string::npos) << m;
  }
}

TEST(Planner, MoreNodesThanLayersIsRefused) {
  auto c = config(2, false);
  EXPECT_THROW(plan_layers(c, sizes_of(c), {{"a", kGiB * 8}, {"b", kGiB * 8}, {"c", kGiB * 8}}, {}),
               Error);
}

TEST(Planner, OneNodeHoldsEverything) {
  auto c = config(4, false);
  Plan p = plan_layers(c, sizes_of(c), {{"only", 8 * kGiB}}, {});
  ASSERT_EQ(p.partition(), (model::LayerPartition{{0, 4}}));
  EXPECT_EQ(p.stages[0].weight_bytes, p.total_weight_bytes);
}

TEST(Planner, MissingTensorIsAnError) {
  auto c = config(4, false);
  auto s = sizes_of(c);
  s.erase("model.layers.2.mlp.up_proj.weight");
  EXPECT_THROW(plan_layers(c, s, {{"a", 8 * kGiB}}, {}), Error);
}

TEST(Planner, ParsesSizes) {
  EXPECT_EQ(parse_bytes("24G"), 24 * kGiB);
  EXPECT_EQ(parse_bytes("512M"), 512 * kMiB);
  EXPECT_EQ(parse_bytes("1.5GiB"), 3 * kGiB / 2);
  EXPECT_EQ(parse_bytes("4096"), 4096u);
  for (const char* bad : {"", "G", "12X", "-1G", "nan"}) EXPECT_THROW(parse_bytes(bad), Error) << bad;
}

// Quantized models: the planner counts the bytes a stage holds as stored (an MLX matrix's codes,
// scales and biases; a GGUF tensor's blocks) and names each stage's weight types.
class QuantizedSizes : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const fs::path hf = root() / "hf";
    remote::test::write_tiny_model(hf, /*hidden=*/256, /*layers=*/4, /*inter=*/512, /*vocab=*/256);
    remote::test::write_tiny_gguf(hf, root() / "model.gguf");
    convert::MlxOptions mo;
    mo.threads = 1;
    convert::export_mlx(hf.string(), (root() / "mlx4").string(), mo);
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(root(), ec);
  }
  static fs::path root() {
    static fs::path r = fs::temp_directory_path() / ("meshlm_planner_q_" + std::to_string(::getpid()));
    return r;
  }
};

TEST_F(QuantizedSizes, MlxCountsCodesScalesAndBiases) {
  const std::string dir = (root() / "mlx4").string();
  const TensorSizes sizes = tensor_sizes(dir);
  auto set = model::SafetensorsSet::open_dir(dir);
  uint64_t file_bytes = 0;  // every tensor of the folder: codes, scales, biases, norms
  for (const auto& [name, t] : set->tensors()) file_bytes += t.nbytes;
  auto cfg = model::ModelConfig::from_dir(dir);
  Plan one = plan_for_ranges(cfg, sizes, {{"a", 8 * kGiB}}, {{0, 4}}, {});
  EXPECT_EQ(one.stages[0].weight_bytes, file_bytes);
  EXPECT_EQ(one.stages[0].weight_types, "MLX4_G64_BF16");
  Plan two = plan_for_ranges(cfg, sizes, {{"a", 8 * kGiB}, {"b", 8 * kGiB}}, {{0, 2}, {2, 4}}, {});
  uint64_t upper = 0;  // layers 2-3, the final norm and the head, from the file's names
  for (const auto& [name, t] : set->tensors()) {
    const int64_t l = model::layer_of(name);
    if (l >= 2 || name.rfind("model.norm.", 0) == 0 || name.rfind("lm_head.", 0) == 0) upper += t.nbytes;
  }
  EXPECT_EQ(two.stages[1].weight_bytes, upper);
  const std::string table = format_plan(two);
  EXPECT_NE(table.find("MLX4_G64_BF16"), std::string::npos) << table;
}

TEST_F(QuantizedSizes, GgufCountsBlocksAndNamesTheTypes) {
  const std::string path = (root() / "model.gguf").string();
  const TensorSizes sizes = tensor_sizes(path);
  auto model = formats::GgufModel::open(path);
  uint64_t file_bytes = 0;  // every tensor but rope_freqs (which no stage counts as weights)
  for (const formats::GgufTensor* t : model.tensors())
    if (t->name != "rope_freqs.weight") file_bytes += t->nbytes;
  auto cfg = model::ModelConfig::from_dir(path);
  Plan one = plan_for_ranges(cfg, sizes, {{"a", 8 * kGiB}}, {{0, 4}}, {});
  EXPECT_EQ(one.stages[0].weight_bytes, file_bytes);
  Plan two = plan_for_ranges(cfg, sizes, {{"a", 8 * kGiB}, {"b", 8 * kGiB}}, {{0, 2}, {2, 4}}, {});
  // Stage 0: Q4_K matrices, Q6_K for v/down of layer 0, the Q8_0 embedding; by bytes.
  EXPECT_EQ(two.stages[0].weight_types, "Q4_K/Q6_K/Q8_0");
  EXPECT_EQ(two.stages[1].weight_types, "Q4_K/Q6_K");
  const std::string table = format_plan(two);
  EXPECT_NE(table.find("Q4_K/Q6_K/Q8_0"), std::string::npos) << table;
}

TEST(Planner, HfFolderTypesAndTheTable) {
  auto c = config(4, false);
  TensorSizes s = sizes_of(c);
  Plan untyped = plan_layers(c, s, {{"a", 8 * kGiB}}, {});
  EXPECT_EQ(untyped.stages[0].weight_types, "");
  for (const auto& [name, bytes] : s) s.types[name] = WeightType::BF16;
  Plan p = plan_layers(c, s, {{"a", 8 * kGiB}}, {});
  EXPECT_EQ(p.stages[0].weight_types, "BF16");
  EXPECT_NE(format_plan(p).find(" BF16 "), std::string::npos) << format_plan(p);
}

}  // namespace
}  // namespace meshlm::cluster
