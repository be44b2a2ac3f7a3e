// The options every command that runs a model shares to choose its layout: one stage in this
// process (default), in-process splits (tests), remote workers (--peers), or N-1 local worker
// processes started here (--stages N).
#pragma once

#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "runtime/pipeline.h"

namespace meshlm::cli {

struct PipelineOptions {
  std::string peers;         // host:port,host:port (workers, in stage order)
  int stages = 1;            // > 1 without --peers: start stages-1 local workers
  std::string layers;        // "0-13,14-27" explicit layer ranges, one per stage
  std::string local_splits;  // "0,2,4": in-process stages (exactness tests)
  std::string secret;        // default: $MESHLM_SECRET (a random one for --stages)
  std::string worker_model_dir;

  void add_to(CLI::App& app);
  // Builds the pipeline (starting local workers if asked). Throws Error on bad options.
  std::unique_ptr<runtime::Pipeline> make(const std::string& model_dir,
                                          const model::StageOptions& stage) const;
};

// "0-13,14-27" -> {0, 14, 28}; checks contiguity and that the ranges cover [0, n_layers).
std::vector<int64_t> parse_layer_ranges(const std::string& text, int64_t n_layers);

}  // namespace meshlm::cli
