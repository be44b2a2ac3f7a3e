// --kv-memory and --prefix-cache, as serve takes them and plan accounts them: the engine's KV
// budget and prefix-cache size, and the KV positions the planner leaves room for per stage.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#include "model/config.h"

namespace meshlm::cli {

struct KvOptions {
  std::string kv_memory = "0";
  std::string prefix_cache = "2G";

  void add_to(CLI::App& app);
  // --kv-memory in positions of a KV cache type (0: none). Throws Error("serve", ...) below 2
  // positions.
  int64_t budget_tokens(const model::ModelConfig& cfg, WeightType kv_type) const;
  int64_t prefix_cache_bytes() const;
  // What the planner leaves room for: the budget, or ctx x parallel without one, plus the
  // prefix cache.
  int64_t planner_tokens(const model::ModelConfig& cfg, WeightType kv_type, int64_t ctx,
                         int parallel) const;
};

}  // namespace meshlm::cli
