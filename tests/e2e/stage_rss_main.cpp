// Test helper: loads the stage [begin, end) of a model, runs one forward pass over a few tokens
// (touching every weight of the stage) and prints {"rss": bytes, "weights": bytes,
// "kv_per_token": bytes, "kv": bytes, "peak": bytes, "baseline_rss": bytes, "baseline_peak": bytes}:
// the resident size after the pass, the stage's weights, its KV cache (max_context positions),
// the peak resident size of this program (Linux: /proc/self/status VmHWM, the high-water mark of
// this address space; elsewhere getrusage's ru_maxrss through core::peak_resident_bytes, which
// Linux carries over from the parent across exec), and the resident and peak sizes before the
// model was opened.
// usage: stage_rss MODEL BEGIN END [MAX_CONTEXT (64)]
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/mmap_file.h"
#include "model/model_files.h"
#include "model/stage.h"

namespace {

size_t peak_bytes() {
#if defined(__linux__)
  if (std::FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    size_t kib = 0;
    while (std::fgets(line, sizeof line, f))
      if (std::strncmp(line, "VmHWM:", 6) == 0) kib = std::strtoull(line + 6, nullptr, 10);
    std::fclose(f);
    if (kib > 0) return kib * 1024;
  }
#endif
  return meshlm::peak_resident_bytes();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 && argc != 5) {
    std::fprintf(stderr, "usage: stage_rss MODEL BEGIN END [MAX_CONTEXT]\n");
    return 2;
  }
  const size_t baseline_rss = meshlm::resident_bytes();
  const size_t baseline_peak = peak_bytes();
  try {
    // What opening the model costs before any weight is read (mapped headers, decoded metadata:
    // a GGUF's tokenizer vocabulary and merges), measured on a ModelFiles opened and closed.
    size_t opened_rss = 0;
    {
      auto files = meshlm::model::ModelFiles::open(argv[1]);
      opened_rss = meshlm::resident_bytes();
    }
    meshlm::model::StageOptions so;
    so.threads = 1;
    so.max_context = argc == 5 ? std::atoll(argv[4]) : 64;
    meshlm::model::Stage stage(argv[1], {std::atoll(argv[2]), std::atoll(argv[3])}, so);
    const auto& c = stage.config();
    std::vector<meshlm::model::SeqChunk> chunks = {{1, 0, 4, true, false}};
    std::vector<int32_t> tokens = {1, 2, 3, 4};
    std::vector<float> hidden, logits;
    if (!stage.is_first()) hidden.assign(size_t(4 * c.hidden), 0.5f);
    stage.forward(chunks, tokens, hidden, logits);
    std::printf(
        "{\"rss\": %zu, \"weights\": %zu, \"kv_per_token\": %zu, \"kv\": %zu, \"peak\": %zu, "
        "\"baseline_rss\": %zu, \"baseline_peak\": %zu, \"opened_rss\": %zu}\n",
        meshlm::resident_bytes(), stage.weight_bytes(), stage.kv_bytes_per_token(),
        stage.kv_bytes_per_token() * size_t(so.max_context), peak_bytes(),
        baseline_rss, baseline_peak, opened_rss);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
