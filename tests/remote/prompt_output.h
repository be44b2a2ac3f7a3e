// What a model gives for one prompt through any runtime::Pipeline, for the tests that compare a
// synced or split model with the local one (model_sync_test, quant_sync_test).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "runtime/pipeline.h"

namespace meshlm::remote::test {

// The logits of every prompt position (sequence 0, one micro-batch), then `steps` greedy tokens
// generated from the same prompt (sequence 1).
struct PromptOutput {
  std::vector<float> logits;
  std::vector<int32_t> ids;
};

inline PromptOutput logits_then_greedy(runtime::Pipeline& p, const std::vector<int32_t>& prompt,
                                       int steps = 5) {
  runtime::MicroBatch b;
  b.id = 1;
  b.return_logits = true;
  b.tokens = prompt;
  b.chunks = {{0, 0, int32_t(prompt.size()), true, true}};
  p.launch(b);
  auto r = p.wait();
  EXPECT_EQ(r.error, "");
  p.release(0);
  PromptOutput out{r.logits, {}};
  int32_t pos = 0;
  std::vector<int32_t> tokens = prompt;
  for (int step = 0; step < steps; ++step) {
    runtime::MicroBatch g;
    g.id = 10 + uint64_t(step);
    g.tokens = tokens;
    if (step == 0) {
      runtime::SamplingParams params;
      params.temperature = 0;
      g.new_sequences = {{1, params}};
    }
    g.chunks = {{1, pos, int32_t(tokens.size()), true, false}};
    pos += int32_t(tokens.size());
    p.launch(g);
    auto gr = p.wait();
    EXPECT_EQ(gr.error, "");
    if (gr.sampled.size() != 1) break;
    out.ids.push_back(gr.sampled[0].second.token);
    tokens = {out.ids.back()};
  }
  p.release(1);
  return out;
}

}  // namespace meshlm::remote::test
