// Throwaway golden driver (not part of meshlm): greedy decoding on libllama, printing per step the
// argmax id and the top-2 (id, log-probability) of the last position's logits, as JSON.
// Prompt in one llama_decode, then one token per llama_decode; argmax over llama_get_logits_ith(-1).
// Usage: greedy_top2 MODEL N_PREDICT THREADS ID,ID,ID...
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
#include "llama.h"

int main(int argc, char** argv) {
  if (argc != 5) { std::fprintf(stderr, "usage: %s MODEL N THREADS IDS\n", argv[0]); return 2; }
  const int n_predict = std::atoi(argv[2]), threads = std::atoi(argv[3]);
  std::vector<llama_token> prompt;
  for (char* s = std::strtok(argv[4], ","); s; s = std::strtok(nullptr, ",")) prompt.push_back(std::atoi(s));
  llama_backend_init();
  ggml_backend_load_all();
  llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 0;
  llama_model* model = llama_model_load_from_file(argv[1], mp);
  if (!model) return 1;
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = 512; cp.n_batch = 512; cp.n_ubatch = 512;
  cp.n_threads = threads; cp.n_threads_batch = threads;
  cp.type_k = GGML_TYPE_F32; cp.type_v = GGML_TYPE_F32;
  cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
  cp.no_perf = true;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) return 1;
  const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  std::vector<llama_token> cur = prompt;
  std::string ids, top2;
  for (int step = 0; step < n_predict; ++step) {
    if (llama_decode(ctx, llama_batch_get_one(cur.data(), (int32_t)cur.size())) != 0) return 1;
    const float* l = llama_get_logits_ith(ctx, -1);
    int a = 0, b = -1;
    for (int i = 1; i < n_vocab; ++i) if (l[i] > l[a]) a = i;
    for (int i = 0; i < n_vocab; ++i) if (i != a && (b < 0 || l[i] > l[b])) b = i;
    double mx = l[a], sum = 0;
    for (int i = 0; i < n_vocab; ++i) sum += std::exp(double(l[i]) - mx);
    const double lse = mx + std::log(sum);
    char buf[160];
    std::snprintf(buf, sizeof buf, "%s[[%d, %.6f], [%d, %.6f]]", step ? ", " : "", a, l[a] - lse, b, l[b] - lse);
    top2 += buf;
    ids += (step ? ", " : "") + std::to_string(a);
    cur.assign(1, a);
  }
  std::printf("{\"generated_ids\": [%s], \"top2\": [%s]}\n", ids.c_str(), top2.c_str());
  llama_free(ctx);
  llama_model_free(model);
  return 0;
}
