#include "kv_options.h"

#include "cluster/planner.h"
#include "core/error.h"

namespace meshlm::cli {

void KvOptions::add_to(CLI::App& app) {
  app.add_option("--kv-memory", kv_memory,
                 "KV memory for the sequences decoding at once (the whole model's KV, e.g. 4G): "
                 "requests wait in the queue while it is full, and a sequence that outgrows it is "
                 "paused and resumed; the planner leaves this much room instead of --ctx x "
                 "--parallel (0: --ctx x --parallel)")
      ->capture_default_str();
  app.add_option("--prefix-cache", prefix_cache,
                 "memory for automatic prefix caching: the KV of prompts (and answers) kept so that "
                 "a request that begins the same way (system prompt, earlier turns) computes only "
                 "the rest; the whole model's KV, shared by the stages by their layers; 0 = off")
      ->capture_default_str();
}

int64_t KvOptions::budget_tokens(const model::ModelConfig& cfg, WeightType kv_type) const {
  const auto bytes = int64_t(cluster::parse_bytes(kv_memory));
  const int64_t per_token = cfg.kv_bytes_per_token(kv_type);
  if (bytes <= 0 || per_token <= 0) return 0;
  if (bytes / per_token < 2)
    throw Error("serve", "--kv-memory " + kv_memory + " holds less than 2 tokens of this model's KV");
  return bytes / per_token;
}

int64_t KvOptions::prefix_cache_bytes() const { return int64_t(cluster::parse_bytes(prefix_cache)); }

int64_t KvOptions::planner_tokens(const model::ModelConfig& cfg, WeightType kv_type, int64_t ctx,
                                  int parallel) const {
  const int64_t budget = budget_tokens(cfg, kv_type);
  const int64_t per_token = cfg.kv_bytes_per_token(kv_type);
  return (budget > 0 ? budget : ctx * parallel) +
         (per_token > 0 ? prefix_cache_bytes() / per_token : 0);
}

}  // namespace meshlm::cli
