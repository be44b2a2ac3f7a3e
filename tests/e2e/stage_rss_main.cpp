// Test helper: loads the stage [begin, end) of a model, runs one forward pass over a few tokens
// (touching every weight of the stage) and prints {"rss": bytes, "weights": bytes, "kv": bytes}.
#include <cstdio>
#include <cstdlib>

#include "core/mmap_file.h"
#include "model/stage.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: stage_rss MODEL_DIR BEGIN END\n");
    return 2;
  }
  try {
    meshlm::model::StageOptions so;
    so.threads = 1;
    so.max_context = 64;
    meshlm::model::Stage stage(argv[1], {std::atoll(argv[2]), std::atoll(argv[3])}, so);
    const auto& c = stage.config();
    std::vector<meshlm::model::SeqChunk> chunks = {{1, 0, 4, true, false}};
    std::vector<int32_t> tokens = {1, 2, 3, 4};
    std::vector<float> hidden, logits;
    if (!stage.is_first()) hidden.assign(size_t(4 * c.hidden), 0.5f);
    stage.forward(chunks, tokens, hidden, logits);
    std::printf("{\"rss\": %zu, \"weights\": %zu, \"kv_per_token\": %zu}\n", meshlm::resident_bytes(),
                stage.weight_bytes(), stage.kv_bytes_per_token());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
