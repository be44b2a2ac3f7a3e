// The tensor schema (model/schema.h) and the weight formats (formats/weight_format.h).
#include <gtest/gtest.h>

#include <set>

#include "core/error.h"
#include "core/half.h"
#include "formats/weight_format.h"
#include "model/architectures.h"
#include "model/schema.h"

namespace meshlm::model {
namespace {

ModelConfig tiny(const std::string& arch, bool tied) {
  const ArchTraits* t = find_arch(arch);
  ModelConfig c;
  c.model_type = arch;
  c.hidden = 64;
  c.n_layers = 4;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 16;
  c.intermediate = 96;
  c.vocab = 300;
  c.tie_embeddings = tied;
  c.qk_norm = t->qk_norm;
  c.qkv_bias = t->qkv_bias;
  return c;
}

TEST(Schema, EveryArchitectureHasItsHuggingFaceTensors) {
  for (const ArchTraits& a : all_archs()) {
    for (bool tied : {true, false}) {
      SCOPED_TRACE(std::string(a.model_type) + (tied ? " tied" : " untied"));
      const ModelConfig c = tiny(a.model_type, tied);
      const auto all = model_tensors(c);
      std::set<std::string> names;
      for (const auto& d : all) EXPECT_TRUE(names.insert(d.name).second) << d.name << " twice";
      const size_t per_layer = 9 + (a.qk_norm ? 2 : 0) + (a.qkv_bias ? 3 : 0);
      EXPECT_EQ(all.size(), 2 + (tied ? 0 : 1) + per_layer * 4);
      EXPECT_EQ(all.front().name, "model.embed_tokens.weight");
      EXPECT_TRUE(names.count("model.layers.3.mlp.down_proj.weight"));
      EXPECT_EQ(names.count("lm_head.weight"), tied ? 0u : 1u);
      EXPECT_EQ(names.count("model.layers.0.self_attn.q_norm.weight"), a.qk_norm ? 1u : 0u);
      EXPECT_EQ(names.count("model.layers.2.self_attn.v_proj.bias"), a.qkv_bias ? 1u : 0u);
      for (const auto& d : all) {
        EXPECT_EQ(d.layer, layer_of(d.name)) << d.name;
        EXPECT_EQ(d.name, tensor_name(c, d.role, d.layer)) << d.name;
      }
    }
  }
}

TEST(Schema, ShapesAndSplitAxes) {
  const ModelConfig c = tiny("qwen2", false);
  for (const auto& d : model_tensors(c)) {
    switch (d.role) {
      case TensorRole::Wq: EXPECT_EQ(d.shape, (std::vector<int64_t>{64, 64})); break;
      case TensorRole::Wk: EXPECT_EQ(d.shape, (std::vector<int64_t>{32, 64})); break;
      case TensorRole::Bv: EXPECT_EQ(d.shape, (std::vector<int64_t>{32})); break;
      case TensorRole::Wo: EXPECT_EQ(d.split, SplitAxis::Cols); break;
      case TensorRole::WDown:
        EXPECT_EQ(d.shape, (std::vector<int64_t>{64, 96}));
        EXPECT_EQ(d.split, SplitAxis::Cols);
        break;
      case TensorRole::WGate: EXPECT_EQ(d.split, SplitAxis::Rows); break;
      case TensorRole::LmHead: EXPECT_EQ(d.shape, (std::vector<int64_t>{300, 64})); break;
      case TensorRole::AttnNorm: EXPECT_EQ(d.split, SplitAxis::None); break;
      default: break;
    }
  }
}

TEST(Schema, StagesTogetherHoldTheModelAndTheTiedHeadRidesWithTheLastStage) {
  for (bool tied : {true, false}) {
    const ModelConfig c = tiny("qwen3", tied);
    std::multiset<std::string> seen;
    for (LayerRange r : {LayerRange{0, 1}, LayerRange{1, 3}, LayerRange{3, 4}})
      for (const auto& n : stage_tensor_names(c, r)) seen.insert(n);
    std::multiset<std::string> want;
    for (const auto& d : model_tensors(c)) want.insert(d.name);
    if (tied) want.insert("model.embed_tokens.weight");  // the last stage's head
    EXPECT_EQ(seen, want);
  }
  const ModelConfig c = tiny("llama", true);
  const auto mid = stage_tensors(c, {1, 3});
  for (const auto& d : mid) EXPECT_TRUE(d.layer == 1 || d.layer == 2) << d.name;
  EXPECT_THROW(stage_tensors(c, {2, 2}), Error);
  EXPECT_THROW(stage_tensors(c, {0, 5}), Error);
  EXPECT_THROW(stage_tensors(c, {-1, 2}), Error);
}

TEST(Schema, LayerOfNames) {
  EXPECT_EQ(layer_of("model.layers.17.mlp.up_proj.weight"), 17);
  EXPECT_EQ(layer_of("model.layers.0.x"), 0);
  EXPECT_EQ(layer_of("model.layers.x.mlp"), -1);
  EXPECT_EQ(layer_of("model.layers.12"), -1);
  EXPECT_EQ(layer_of("model.norm.weight"), -1);
  EXPECT_EQ(layer_of("model.layers.99999999.a"), -1);  // more digits than any model has
}

TEST(LayerRanges, FormsAndChecks) {
  const LayerRange r{2, 5};
  EXPECT_EQ(r.size(), 3);
  EXPECT_EQ(r.str(), "[2, 5)");
  EXPECT_EQ(r.inclusive_str(), "2-4");
  EXPECT_FALSE(r.is_first());
  EXPECT_TRUE(r.is_last(5));
  EXPECT_TRUE((LayerRange{0, 1}).is_first());
  EXPECT_NO_THROW(r.check(8));
  EXPECT_THROW((LayerRange{3, 3}).check(8), Error);
  EXPECT_THROW((LayerRange{0, 9}).check(8), Error);
  EXPECT_THROW((LayerRange{-1, 2}).check(8), Error);
}

TEST(WeightFormats, SizesNamesAndDequantization) {
  using formats::row_bytes;
  using formats::tensor_bytes;
  EXPECT_EQ(row_bytes(WeightType::F32, 7), 28u);
  EXPECT_EQ(row_bytes(WeightType::BF16, 7), 14u);
  EXPECT_EQ(row_bytes(WeightType::F16, 0), 0u);
  EXPECT_THROW(row_bytes(WeightType::F32, -1), Error);
  const std::vector<int64_t> shape{3, 5}, scalar{}, empty{0, 4}, neg{2, -1};
  EXPECT_EQ(tensor_bytes(WeightType::BF16, shape), 30u);
  EXPECT_EQ(tensor_bytes(WeightType::F32, scalar), 4u);
  EXPECT_EQ(tensor_bytes(WeightType::F32, empty), 0u);
  EXPECT_FALSE(tensor_bytes(WeightType::F32, neg));
  const std::vector<int64_t> huge{int64_t(1) << 30, int64_t(1) << 30};
  EXPECT_FALSE(tensor_bytes(WeightType::F32, huge));
  EXPECT_THROW(formats::tensor_bytes_or_throw(WeightType::F32, huge), Error);
  for (const auto& f : formats::all()) {
    EXPECT_EQ(formats::from_name(f.name), f.type);
    EXPECT_EQ(formats::name(f.type), f.name);
  }
  EXPECT_FALSE(formats::from_name("I64"));
  EXPECT_FALSE(formats::from_name("bf16"));

  const float values[] = {1.0f, -2.5f, 3.14159f, 65504.0f, 1e-8f};
  float out[5];
  formats::dequantize_row(WeightType::F32, values, 5, out);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(out[i], values[i]);
  uint16_t b[5], h[5];
  for (int i = 0; i < 5; ++i) b[i] = f32_to_bf16(values[i]), h[i] = f32_to_f16(values[i]);
  formats::dequantize_row(WeightType::BF16, b, 5, out);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(out[i], bf16_to_f32(b[i]));
  formats::dequantize_row(WeightType::F16, h, 5, out);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(out[i], f16_to_f32(h[i]));
}

}  // namespace
}  // namespace meshlm::model
