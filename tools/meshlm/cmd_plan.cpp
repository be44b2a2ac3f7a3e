// meshlm plan: print the layer plan (layers, bytes of weights, KV room per node) before anything
// loads. Workers given with --peers are asked for their free memory; --plan-memory plans for
// machines that are not there yet.
//   meshlm plan --model DIR --peers h1:7070,h2:7070 [--ctx 4096 --parallel 8] [--json]
#include <cstdio>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "command.h"
#include "common.h"
#include "cluster/planner.h"
#include "core/error.h"
#include "model/config.h"
#include "kv_options.h"
#include "pipeline_options.h"

namespace meshlm::cli {
namespace {

int run_plan(int argc, char** argv) {
  CLI::App app{"meshlm plan: which layers each stage would hold, and the memory they need"};
  std::string model_dir;
  int64_t ctx = 4096;
  int parallel = 8;
  bool json = false;
  app.add_option("--model,-m", model_dir, "model: a Hugging Face or MLX folder, a GGUF file, or ORG/NAME to pull from the hub")->required();
  app.add_option("--ctx,-c", ctx, "context length per sequence")->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  app.add_option("--parallel", parallel, "sequences decoded at once (KV room for each)")
      ->check(CLI::Range(1, 4096));
  app.add_flag("--json", json, "print the plan as JSON");
  KvOptions kv;  // --kv-memory and --prefix-cache: the KV room as serve would leave it
  kv.add_to(app);
  PipelineOptions popts;
  popts.add_to(app);
  CLI11_PARSE(app, argc, argv);
  model_dir = resolve_model(model_dir);  // a folder, or ORG/NAME from the Hugging Face hub
  popts.discover_peers();

  model::StageOptions stage;
  stage.max_context = ctx;
  auto cfg = model::ModelConfig::from_dir(model_dir);
  popts.kv_tokens = kv.planner_tokens(cfg, popts.kv_type(), ctx, parallel);
  cluster::Plan plan = popts.plan(model_dir, stage);
  if (json) {
    nlohmann::json out;
    out["model"] = model_dir;
    out["n_layers"] = cfg.n_layers;
    out["kv_tokens"] = popts.kv_tokens;
    out["cache_type"] = popts.cache_type;
    out["layers"] = model::format_partition(plan.partition());  // as --layers takes it
    for (const auto& s : plan.stages)
      out["stages"].push_back({{"node", s.node},
                               {"layer_begin", s.layers.begin},
                               {"layer_end", s.layers.end},
                               {"weight_bytes", s.weight_bytes},
                               {"weight_types", s.weight_types},
                               {"kv_bytes", s.kv_bytes},
                               {"active_bytes", s.active_bytes},
                               {"mem_available", s.mem_available}});
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::printf("model %s: %s, %lld layers; KV room for %lld positions per stage in %s (%s, and "
              "the prefix cache's %s)\n",
              model_dir.c_str(), cfg.model_type.c_str(), static_cast<long long>(cfg.n_layers),
              static_cast<long long>(popts.kv_tokens), popts.cache_type.c_str(),
              kv.budget_tokens(cfg, popts.kv_type()) > 0
                  ? ("--kv-memory " + kv.kv_memory).c_str()
                  : ("ctx " + std::to_string(ctx) + " x " + std::to_string(parallel)).c_str(),
              kv.prefix_cache.c_str());
  std::printf("%s", cluster::format_plan(plan).c_str());
  return 0;
}

Registrar reg("plan", "print the layer plan per node (memory-proportional) before loading", run_plan);

}  // namespace
}  // namespace meshlm::cli
