// The flags every command that runs a model shares to choose its layout (--peers, --stages,
// --layers, --transport, ...): parsed into cluster::LayoutOptions, which does the work
// (src/cluster/layout.h).
#pragma once

#include <CLI/CLI.hpp>

#include "cluster/layout.h"

namespace meshlm::cli {

struct PipelineOptions : cluster::LayoutOptions {
  void add_to(CLI::App& app, bool discover_by_default = false);
};

}  // namespace meshlm::cli
