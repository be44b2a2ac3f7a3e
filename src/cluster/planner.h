// The layer planner: which contiguous layers each node of a pipeline holds.
//
// Work goes to nodes in proportion to the memory each can give them: what the node has
// available, less a reserve for the runtime, less the tensors that live with a stage regardless of
// its layers (the embedding on stage 0; final norm + LM head on the last stage). A node's work is
// its layers, plus on the last stage the LM head counted as the layers it weighs (decode reads
// each weight once), so equal nodes get equal compute and the last stage fewer layers.
// Compute is counted in bytes read per decoded token ("active" bytes): a layer's weights, but of
// a mixture-of-experts layer only the experts a token uses (n_experts_used / n_experts of them,
// on average), and the LM head whole. A MoE layer thus weighs far more than it computes, and the
// head counts for many more of its layers than of a dense model's; `meshlm plan` shows both.
// Each layer costs its weights plus its KV cache room (kv_tokens positions in kv_type). A node that
// cannot hold even one layer, or a cluster that cannot hold the model, is an Error("plan", ...)
// saying by how much it falls short.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "formats/weight_format.h"
#include "model/config.h"
#include "model/layer_range.h"

namespace meshlm::cluster {

struct PlanNode {
  std::string name;              // "local", "host:port"
  uint64_t mem_available = 0;    // bytes this node can use
};

struct PlanOptions {
  int64_t kv_tokens = 4096 * 8;   // KV positions each stage must hold (context x parallel sequences)
  WeightType kv_type = WeightType::F32;  // --cache-type: how the stages store them
  double reserve_fraction = 0.05; // of each node's memory, kept for the OS and the runtime
  uint64_t reserve_bytes = 256ull << 20;
};

struct StagePlan {
  std::string node;
  model::LayerRange layers;
  uint64_t weight_bytes = 0;  // layers + the fixed tensors of this stage
  uint64_t kv_bytes = 0;      // KV room for its layers
  uint64_t active_bytes = 0;  // weights read per decoded token (MoE: the average share of experts)
  uint64_t mem_available = 0;
  // The formats its weight matrices are stored in, the most bytes first, '/'-separated:
  // "BF16", "Q4_K/Q6_K", "MLX4_G64_BF16"; "" when the sizes did not say (TensorSizes::types).
  std::string weight_types;
};

struct Plan {
  std::vector<StagePlan> stages;
  uint64_t layer_bytes = 0;     // weights of one layer (the largest)
  uint64_t layer_active_bytes = 0;  // read per decoded token by one layer (the mean)
  uint64_t kv_bytes_per_layer = 0;
  uint64_t total_weight_bytes = 0;

  // The stages' layer ranges, in order: what remote::RemotePipelineOptions::ranges takes.
  model::LayerPartition partition() const;
};

// Stored bytes of every tensor of the model by its Hugging Face (schema) name, and the format it
// is stored in. A Hugging Face folder: every tensor of its safetensors headers. A GGUF model or an
// MLX folder: the schema's tensors through model::ModelFiles::tensor_bytes, which counts what a
// stage holds, the bytes as stored (an MLX matrix: its U32 codes, scales and biases; a GGUF
// tensor: its blocks). A map by name (tests build one by hand) plus the formats.
struct TensorSizes : std::map<std::string, uint64_t> {
  std::map<std::string, WeightType> types;  // by the same names; may be empty
};
TensorSizes tensor_sizes(const std::string& model_dir);

Plan plan_layers(const model::ModelConfig& config, const TensorSizes& sizes,
                 const std::vector<PlanNode>& nodes, const PlanOptions& options);

// The same accounting for layer ranges given explicitly (`--layers`, one range per node);
// never refuses a layout for memory. Throws Error("plan") unless the ranges partition the layers.
Plan plan_for_ranges(const model::ModelConfig& config, const TensorSizes& sizes,
                     const std::vector<PlanNode>& nodes, const model::LayerPartition& ranges,
                     const PlanOptions& options);

// The table `meshlm plan` prints.
std::string format_plan(const Plan& plan);
// "24G", "512M", "1.5GiB", "1000000" -> bytes; throws Error("plan", ...) on anything else.
uint64_t parse_bytes(const std::string& text);

}  // namespace meshlm::cluster
