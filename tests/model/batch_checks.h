// Checks shared by the stage tests of each model family (stage_test.cpp, moe_test.cpp).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "runtime/pipeline.h"

namespace meshlm::test {

inline bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && !a.empty() &&
         std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Each prompt prefilled alone (sequences 100, 101, ...) gives bit for bit the last-position
// logits it gives prefilled in one micro-batch with all the others (sequences 200, 201, ...).
inline void expect_batched_equals_alone(runtime::Pipeline& pipe,
                                        const std::vector<std::vector<int32_t>>& prompts) {
  const int64_t vocab = pipe.config().vocab;
  std::vector<std::vector<float>> alone;
  for (size_t i = 0; i < prompts.size(); ++i) {
    runtime::MicroBatch mb;
    mb.chunks.push_back({int64_t(100 + i), 0, int32_t(prompts[i].size()), true, false});
    mb.tokens = prompts[i];
    mb.return_logits = true;
    pipe.launch(std::move(mb));
    alone.push_back(pipe.wait().logits);
    pipe.release(int64_t(100 + i));
  }
  runtime::MicroBatch mb;
  for (size_t i = 0; i < prompts.size(); ++i) {
    mb.chunks.push_back({int64_t(200 + i), 0, int32_t(prompts[i].size()), true, false});
    mb.tokens.insert(mb.tokens.end(), prompts[i].begin(), prompts[i].end());
  }
  mb.return_logits = true;
  pipe.launch(std::move(mb));
  auto r = pipe.wait();
  ASSERT_TRUE(r.error.empty()) << r.error;
  ASSERT_EQ(r.logits.size(), size_t(vocab) * prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_EQ(alone[i].size(), size_t(vocab)) << i;
    EXPECT_EQ(0, std::memcmp(alone[i].data(), r.logits.data() + i * size_t(vocab), size_t(vocab) * 4))
        << "prompt " << i;
  }
  for (size_t i = 0; i < prompts.size(); ++i) pipe.release(int64_t(200 + i));
}

}  // namespace meshlm::test
