// tokenizer_bench <model-dir> <text-file> [repeats]: prints the load time of tokenizer.json and
// the encode throughput over the text (split at newlines into documents, as the reference run
// in bench.mjs does). Output: one JSON line.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s <model-dir> <text-file> [repeats]\n", argv[0]);
    return 2;
  }
  int repeats = argc > 3 ? std::atoi(argv[3]) : 3;
  std::ifstream f(argv[2], std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string text = ss.str();
  using clock = std::chrono::steady_clock;
  double best_load = 1e9;
  std::unique_ptr<meshlm::tok::Tokenizer> tok;
  for (int r = 0; r < repeats; ++r) {
    auto t0 = clock::now();
    tok = meshlm::tok::Tokenizer::load_from_dir(argv[1]);
    best_load =
        std::min(best_load, std::chrono::duration<double, std::milli>(clock::now() - t0).count());
  }
  std::vector<std::string_view> docs;
  for (size_t pos = 0; pos < text.size();) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    docs.push_back(std::string_view(text).substr(pos, nl - pos));
    pos = nl + 1;
  }
  double best_encode = 1e9;
  size_t n_ids = 0;
  for (int r = 0; r < repeats; ++r) {
    auto t0 = clock::now();
    n_ids = 0;
    for (auto d : docs) n_ids += tok->encode(d, false).size();
    best_encode = std::min(best_encode, std::chrono::duration<double>(clock::now() - t0).count());
  }
  std::printf(
      "{\"load_ms\": %.1f, \"encode_s\": %.3f, \"mb_per_s\": %.2f, \"ids\": %zu, \"bytes\": %zu}\n",
      best_load, best_encode, text.size() / 1e6 / best_encode, n_ids, text.size());
  return 0;
}
