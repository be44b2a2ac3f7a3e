// Mixture-of-experts layers (qwen3_moe) on a synthetic model written by `meshlm synth` (the
// moe_model_setup test): a token's logits do not depend on what else is in its batch, how its
// prompt was chunked, the thread count or the stage split; the ref backend agrees with the cpu
// backend; bad MoE configs and missing expert tensors are errors that name what is wrong.
// (Logits against the float64 PyTorch reference: tests/model_ref, model_ref_qwen3_moe.)
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "model/config.h"
#include "model/schema.h"
#include "runtime/pipeline.h"
#include "batch_checks.h"
#include "test_util.h"

namespace meshlm {
namespace {

namespace fs = std::filesystem;

bool moe_model_available() { return fs::exists(fs::path(MESHLM_MOE_MODEL) / ".complete"); }
#define REQUIRE_MOE_MODEL()                                                           \
  do {                                                                                \
    if (!moe_model_available()) GTEST_SKIP() << "no " << MESHLM_MOE_MODEL;            \
  } while (0)

std::vector<int32_t> prompt(int n, int salt) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back(int32_t((i * 7919 + salt * 104729) % 500 + 3));
  return ids;
}

// Every position's logits of `p` prefilled in chunks of `chunk` (sequence `seq`), then 6
// greedy steps' logits.
std::vector<float> run(runtime::Pipeline& pipe, const std::vector<int32_t>& p, int chunk, int64_t seq) {
  std::vector<float> all;
  int32_t pos = 0;
  while (pos < int32_t(p.size())) {
    const int32_t n = std::min<int32_t>(chunk, int32_t(p.size()) - pos);
    runtime::MicroBatch mb;
    mb.chunks.push_back({seq, pos, n, false, true});
    mb.tokens.assign(p.begin() + pos, p.begin() + pos + n);
    mb.return_logits = true;
    pipe.launch(std::move(mb));
    auto r = pipe.wait();
    EXPECT_TRUE(r.error.empty()) << r.error;
    all.insert(all.end(), r.logits.begin(), r.logits.end());
    pos += n;
  }
  const int64_t vocab = pipe.config().vocab;
  for (int step = 0; step < 6 && all.size() >= size_t(vocab); ++step) {
    const int32_t id = runtime::argmax(all.data() + all.size() - size_t(vocab), vocab);
    runtime::MicroBatch mb;
    mb.chunks.push_back({seq, pos++, 1, true, false});
    mb.tokens = {id};
    mb.return_logits = true;
    pipe.launch(std::move(mb));
    auto r = pipe.wait();
    EXPECT_TRUE(r.error.empty()) << r.error;
    all.insert(all.end(), r.logits.begin(), r.logits.end());
  }
  pipe.release(seq);
  return all;
}

using test::bit_equal;

model::StageOptions options(int threads, const std::string& backend = "cpu") {
  model::StageOptions so;
  so.threads = threads;
  so.max_context = 128;
  so.backend = backend;
  return so;
}

TEST(Moe, TheSynthModelHasDenseAndMoeLayers) {
  REQUIRE_MOE_MODEL();
  const auto c = model::ModelConfig::from_dir(MESHLM_MOE_MODEL);
  ASSERT_TRUE(c.is_moe());
  EXPECT_EQ(c.n_experts, 8);
  EXPECT_EQ(c.n_experts_used, 2);
  EXPECT_TRUE(c.moe_layer(0));
  EXPECT_FALSE(c.moe_layer(1));  // --mlp-only-layers 1
  EXPECT_TRUE(c.moe_layer(3));
  size_t experts = 0, routers = 0, dense = 0;
  for (const auto& d : model::model_tensors(c)) {
    experts += d.expert >= 0;
    routers += d.role == model::TensorRole::Router;
    dense += d.role == model::TensorRole::WGate;
    if (d.expert >= 0) {
      EXPECT_EQ(d.name, model::tensor_name(c, d.role, d.layer, d.expert));
    }
  }
  EXPECT_EQ(experts, 3u * 8u * 3u);  // 3 MoE layers x 8 experts x gate/up/down
  EXPECT_EQ(routers, 3u);
  EXPECT_EQ(dense, 1u);
}

TEST(Moe, BatchChunksThreadsAndSplitsDoNotChangeLogits) {
  REQUIRE_MOE_MODEL();
  const auto p = prompt(37, 1);
  auto one = runtime::make_local_pipeline(MESHLM_MOE_MODEL, options(1));
  const auto ref = run(*one, p, 37, 1);
  EXPECT_TRUE(bit_equal(ref, run(*one, p, 1, 2))) << "one token at a time";
  EXPECT_TRUE(bit_equal(ref, run(*one, p, 16, 3))) << "chunks of 16";
  auto three = runtime::make_local_pipeline(MESHLM_MOE_MODEL, options(3));
  EXPECT_TRUE(bit_equal(ref, run(*three, p, 10, 4))) << "3 threads";
  for (const char* layers : {"0-1,2-3", "0-0,1-2,3-3"}) {
    auto split = runtime::make_local_pipeline(MESHLM_MOE_MODEL, options(2), model::parse_partition(layers, 4));
    EXPECT_TRUE(bit_equal(ref, run(*split, p, 16, 5))) << layers;
  }
}

TEST(Moe, BatchedSequencesMatchSequencesAlone) {
  REQUIRE_MOE_MODEL();
  auto pipe = runtime::make_local_pipeline(MESHLM_MOE_MODEL, options(2));
  test::expect_batched_equals_alone(*pipe, {prompt(5, 3), prompt(40, 4), prompt(1, 5), prompt(17, 6)});
}

TEST(Moe, CpuBackendAgreesWithTheReferenceBackend) {
  REQUIRE_MOE_MODEL();
  const auto p = prompt(21, 7);
  auto ref_pipe = runtime::make_local_pipeline(MESHLM_MOE_MODEL, options(1, "ref"));
  auto cpu_pipe = runtime::make_local_pipeline(MESHLM_MOE_MODEL, options(2, "cpu"));
  // Prefill only: greedy steps could part at a near tie of the two backends.
  auto logits = [&](runtime::Pipeline& pipe) {
    runtime::MicroBatch mb;
    mb.chunks.push_back({0, 0, int32_t(p.size()), false, true});
    mb.tokens = p;
    mb.return_logits = true;
    pipe.launch(std::move(mb));
    auto r = pipe.wait();
    EXPECT_TRUE(r.error.empty()) << r.error;
    pipe.release(0);
    return r.logits;
  };
  const auto want = logits(*ref_pipe), got = logits(*cpu_pipe);
  ASSERT_EQ(got.size(), want.size());
  ASSERT_FALSE(want.empty());
  float peak = 0, worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    peak = std::max(peak, std::fabs(want[i]));
    worst = std::max(worst, std::fabs(got[i] - want[i]));
  }
  EXPECT_LT(worst, 1e-3f * peak + 1e-3f) << "peak |logit| " << peak;
}

nlohmann::json moe_config() {
  return {{"model_type", "qwen3_moe"}, {"hidden_size", 64}, {"num_hidden_layers", 4},
          {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"head_dim", 16},
          {"intermediate_size", 128}, {"vocab_size", 100}, {"num_experts", 8},
          {"num_experts_per_tok", 2}, {"moe_intermediate_size", 32}};
}

using test::config_error;

TEST(Moe, BadConfigsNameTheField) {
  EXPECT_EQ(config_error(moe_config()), "");
  auto j = moe_config();
  j["num_experts_per_tok"] = 9;
  EXPECT_NE(config_error(j).find("num_experts_per_tok"), std::string::npos) << config_error(j);
  j = moe_config();
  j.erase("num_experts");
  EXPECT_NE(config_error(j).find("num_experts"), std::string::npos) << config_error(j);
  j = moe_config();
  j["moe_intermediate_size"] = 0;
  EXPECT_NE(config_error(j).find("moe_intermediate_size"), std::string::npos) << config_error(j);
  j = moe_config();
  j["mlp_only_layers"] = {0, 7};
  EXPECT_NE(config_error(j).find("mlp_only_layers"), std::string::npos) << config_error(j);
  j = moe_config();
  j["mlp_only_layers"] = "all";
  EXPECT_NE(config_error(j).find("mlp_only_layers"), std::string::npos) << config_error(j);
  j = moe_config();
  j["decoder_sparse_step"] = 0;
  EXPECT_NE(config_error(j).find("decoder_sparse_step"), std::string::npos) << config_error(j);
  // qwen2_moe needs its shared expert's size.
  j = moe_config();
  j["model_type"] = "qwen2_moe";
  EXPECT_NE(config_error(j).find("shared_expert_intermediate_size"), std::string::npos) << config_error(j);
  j["shared_expert_intermediate_size"] = 48;
  EXPECT_EQ(config_error(j), "");
  EXPECT_EQ(model::ModelConfig::from_json(j).shared_expert_intermediate, 48);
  // Mixtral counts its experts in num_local_experts; each has intermediate_size, every layer is
  // MoE, the top-k always renormalised, and the tensors are block_sparse_moe's.
  j = moe_config();
  j["model_type"] = "mixtral";
  EXPECT_NE(config_error(j).find("num_local_experts"), std::string::npos) << config_error(j);
  j["num_local_experts"] = 4;
  j["mlp_only_layers"] = {1};  // not a Mixtral key: ignored
  {
    const auto m = model::ModelConfig::from_json(j);
    EXPECT_EQ(m.n_experts, 4);
    EXPECT_EQ(m.moe_intermediate, 128);
    EXPECT_TRUE(m.norm_topk_prob);
    for (int64_t l = 0; l < m.n_layers; ++l) EXPECT_TRUE(m.moe_layer(l)) << l;
    EXPECT_EQ(model::tensor_name(m, model::TensorRole::ExpUp, 2, 3),
              "model.layers.2.block_sparse_moe.experts.3.w3.weight");
    EXPECT_EQ(model::tensor_name(m, model::TensorRole::Router, 0), "model.layers.0.block_sparse_moe.gate.weight");
  }
  j["num_experts_per_tok"] = 5;
  EXPECT_NE(config_error(j).find("num_experts_per_tok"), std::string::npos) << config_error(j);
  // The layer grid: decoder_sparse_step 2 makes layers 1 and 3 the MoE ones.
  j = moe_config();
  j["decoder_sparse_step"] = 2;
  const auto c = model::ModelConfig::from_json(j);
  EXPECT_FALSE(c.moe_layer(0));
  EXPECT_TRUE(c.moe_layer(1));
  EXPECT_FALSE(c.moe_layer(2));
  EXPECT_TRUE(c.moe_layer(3));
}

TEST(Moe, AMissingExpertTensorIsNamed) {
  REQUIRE_MOE_MODEL();
  // A copy of the model whose config claims one expert more than the files hold.
  const fs::path dir = fs::temp_directory_path() / ("meshlm-moe-missing-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(MESHLM_MOE_MODEL))
    if (e.path().extension() == ".safetensors") fs::create_symlink(e.path(), dir / e.path().filename());
  auto j = test::read_json(std::string(MESHLM_MOE_MODEL) + "/config.json");
  j["num_experts"] = 9;
  std::ofstream(dir / "config.json") << j.dump();
  try {
    runtime::make_local_pipeline(dir.string(), options(1));
    ADD_FAILURE() << "loaded a model with a missing expert";
  } catch (const Error& e) {
    const std::string m = e.what();
    // The router's shape is checked first ([9, hidden] expected), or the missing expert named.
    EXPECT_TRUE(m.find("mlp.gate.weight") != std::string::npos ||
                m.find("mlp.experts.8.") != std::string::npos)
        << m;
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace
}  // namespace meshlm
