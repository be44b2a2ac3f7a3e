// The engine against llama.cpp's greedy decoding on the golden model (../shared/golden): the same
// token ids for 24 steps of three prompts, and the same top-1 logits, on each backend (cpu: the
// optimised kernels; ref: the scalar reference kernels).
#include <cmath>
#include <filesystem>

#include "runtime/pipeline.h"
#include "test_util.h"

namespace meshlm {
namespace {

class Golden : public ::testing::TestWithParam<std::string> {};

TEST_P(Golden, GreedyIdsAndLogitsMatchLlamaCpp) {
  REQUIRE_GOLDEN();
  auto golden = test::read_json(std::string(MESHLM_SHARED_DIR) + "/golden/llamacpp_tiny_f32_greedy.json");
  // "cpu", "ref": the folder on that backend; "gguf": the same weights as llama.cpp's F32 GGUF
  // (the very file the goldens were computed on), on the cpu backend.
  const bool gguf = GetParam() == "gguf";
  std::string model = MESHLM_GOLDEN_MODEL;
  if (gguf) {
    model += "/qwen3-tiny-synth-f32.gguf";
    if (!std::filesystem::exists(model)) GTEST_SKIP() << "no " << model;
  }
  model::StageOptions so;
  so.backend = gguf ? "cpu" : GetParam();
  so.threads = 2;
  so.max_context = 256;
  auto pipe = runtime::make_local_pipeline(model, so);
  int64_t seq = 0;
  for (const auto& p : golden["prompts"]) {
    std::vector<int32_t> next = p["prompt_ids"].get<std::vector<int32_t>>();
    auto expected = p["generated_ids"].get<std::vector<int32_t>>();
    const auto& steps = p["steps_top1_top2_logits"];
    int32_t pos = 0;
    for (size_t step = 0; step < expected.size(); ++step) {
      runtime::MicroBatch mb;
      mb.chunks.push_back({seq, pos, int32_t(next.size()), true, false});
      mb.tokens = next;
      mb.return_logits = true;
      pipe->launch(std::move(mb));
      auto r = pipe->wait();
      ASSERT_TRUE(r.error.empty()) << r.error;
      pos += int32_t(next.size());
      int32_t id = runtime::argmax(r.logits.data(), pipe->config().vocab);
      ASSERT_EQ(id, expected[step]) << "prompt '" << p["prompt"] << "' step " << step;
      float want = steps[step]["logit"].get<float>();
      EXPECT_NEAR(r.logits[size_t(id)], want, 2e-3f * std::abs(want)) << "step " << step;
      int32_t second = steps[step]["second_id"].get<int32_t>();
      EXPECT_NEAR(r.logits[size_t(second)], steps[step]["second_logit"].get<float>(), 2e-3f * std::abs(want));
      next.assign(1, id);
    }
    pipe->release(seq++);
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, Golden, ::testing::Values("cpu", "ref", "gguf"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace meshlm
