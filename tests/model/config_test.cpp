#include <cmath>

#include "core/error.h"
#include "model/config.h"
#include "test_util.h"

namespace meshlm {
namespace {

nlohmann::json base() {
  return {{"model_type", "llama"}, {"hidden_size", 64}, {"num_hidden_layers", 2},
          {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"intermediate_size", 128},
          {"vocab_size", 100}};
}

TEST(Config, UnknownArchitectureNamesSupportedOnes) {
  auto j = base();
  j["model_type"] = "mamba";
  try {
    model::ModelConfig::from_json(j);
    FAIL();
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("mamba"), std::string::npos);
    EXPECT_NE(m.find("qwen3"), std::string::npos);
    EXPECT_NE(m.find("llama"), std::string::npos);
  }
}

TEST(Config, MissingAndWrongKeys) {
  auto j = base();
  j.erase("hidden_size");
  EXPECT_THROW(model::ModelConfig::from_json(j), Error);
  j = base();
  j["num_attention_heads"] = "four";
  EXPECT_THROW(model::ModelConfig::from_json(j), Error);
  j = base();
  j["num_key_value_heads"] = 3;
  EXPECT_THROW(model::ModelConfig::from_json(j), Error);
  EXPECT_THROW(model::ModelConfig::from_json(nlohmann::json::array()), Error);
  EXPECT_THROW(model::ModelConfig::from_dir("/nonexistent"), Error);
}

using test::config_error;

// Sliding windows: Mistral's in every layer; Qwen's only with use_sliding_window, from
// max_window_layers on; a window of 0 or a missing one is an error naming the field.
TEST(Config, SlidingWindow) {
  auto j = base();
  j["model_type"] = "mistral";
  j["sliding_window"] = 4096;
  j["max_position_embeddings"] = 32768;
  auto c = model::ModelConfig::from_json(j);
  EXPECT_EQ(c.window(0), 4096);
  EXPECT_EQ(c.window(1), 4096);
  j["sliding_window"] = nullptr;
  EXPECT_EQ(model::ModelConfig::from_json(j).window(0), 0);
  j["sliding_window"] = 0;
  EXPECT_NE(config_error(j).find("sliding_window"), std::string::npos) << config_error(j);
  j = base();
  j["model_type"] = "qwen2";
  j["sliding_window"] = 64;
  j["max_window_layers"] = 1;
  EXPECT_EQ(model::ModelConfig::from_json(j).window(1), 0);  // use_sliding_window false
  j["use_sliding_window"] = true;
  c = model::ModelConfig::from_json(j);
  EXPECT_EQ(c.window(0), 0);
  EXPECT_EQ(c.window(1), 64);
  j.erase("sliding_window");
  EXPECT_NE(config_error(j).find("sliding_window"), std::string::npos) << config_error(j);
  j = base();  // llama: no sliding window whatever the config says
  j["sliding_window"] = 8;
  EXPECT_EQ(model::ModelConfig::from_json(j).window(0), 0);
}

TEST(Config, HeadDimAndTraits) {
  auto j = base();
  auto c = model::ModelConfig::from_json(j);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_FALSE(c.qkv_bias);
  j["model_type"] = "qwen2";
  EXPECT_TRUE(model::ModelConfig::from_json(j).qkv_bias);
  j["model_type"] = "qwen3";
  j["head_dim"] = 32;
  auto q = model::ModelConfig::from_json(j);
  EXPECT_TRUE(q.qk_norm);
  EXPECT_EQ(q.head_dim, 32);
}

TEST(Config, Llama3RopeScaling) {
  auto j = base();
  j["hidden_size"] = 4096;
  j["num_attention_heads"] = 32;
  j["rope_theta"] = 500000.0;
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  auto c = model::ModelConfig::from_json(j);
  auto inv = c.rope_inv_freq();
  ASSERT_EQ(inv.size(), 64u);
  // High frequencies (short wavelengths) unchanged; the lowest divided by the factor.
  EXPECT_FLOAT_EQ(inv[0], 1.0f);
  float base_last = 1.0f / std::pow(500000.0f, 126.0f / 128.0f);
  EXPECT_NEAR(inv[63], base_last / 8.0f, 1e-12);
  for (size_t i = 1; i < inv.size(); ++i) EXPECT_LT(inv[i], inv[i - 1]);
  j["rope_scaling"] = {{"rope_type", "yarn"}};
  EXPECT_THROW(model::ModelConfig::from_json(j), Error);
}

// Run through fuzz_config while writing it: each of these escaped as nlohmann::json::type_error,
// converted 1e300 to int64 (undefined behaviour) or made rope_inv_freq() allocate terabytes.
TEST(Config, HostileValuesAreConfigErrors) {
  auto expect_config_error = [](const nlohmann::json& j, const char* what) {
    try {
      model::ModelConfig::from_json(j);
      ADD_FAILURE() << what << ": accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.component(), "config") << what;
    } catch (const std::exception& e) {
      ADD_FAILURE() << what << ": " << e.what();
    }
  };
  auto j = base();
  j["rope_scaling"] = {{"type", 1}};
  expect_config_error(j, "rope_scaling.type a number");
  j["rope_scaling"] = {{"rope_type", nlohmann::json::array()}};
  expect_config_error(j, "rope_scaling.rope_type an array");
  j = base();
  j["max_position_embeddings"] = 1e300;
  expect_config_error(j, "max_position_embeddings 1e300");
  j["max_position_embeddings"] = 18446744073709551615ull;
  expect_config_error(j, "max_position_embeddings 2^64-1");
  j = base();
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"original_max_position_embeddings", -1e19}};
  expect_config_error(j, "original_max_position_embeddings -1e19");
  j = base();
  j["hidden_size"] = int64_t{1} << 40;
  j["num_attention_heads"] = 1;
  j["num_key_value_heads"] = 1;
  expect_config_error(j, "hidden_size 2^40");
  j = base();
  j["vocab_size"] = int64_t{1} << 40;
  expect_config_error(j, "vocab_size 2^40");
  // A boolean where a number belongs and the reverse (found by fuzz_config: json::type_error).
  j = base();
  j["rope_theta"] = false;
  expect_config_error(j, "rope_theta false");
  j = base();
  j["rms_norm_eps"] = true;
  expect_config_error(j, "rms_norm_eps true");
  j = base();
  j["tie_word_embeddings"] = 1;
  expect_config_error(j, "tie_word_embeddings 1");
  j = base();
  j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", true}};
  expect_config_error(j, "rope_scaling.factor true");
  // Null rope_type / type are absent: the default (no scaling).
  j = base();
  j["rope_scaling"] = {{"rope_type", nullptr}, {"type", nullptr}};
  EXPECT_EQ(model::ModelConfig::from_json(j).rope_scaling, model::RopeScaling::None);
}

}  // namespace
}  // namespace meshlm
