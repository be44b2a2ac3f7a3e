// Predicted decode speed of the layouts a set of nodes allows (issue 16: a planner that
// measures). Given each node's measured weight-read speed and memory, and the cost of a link
// (one-way latency and bandwidth, cluster/link_probe.h), every layout of the first k nodes
// (k = 1..n) as N pipeline stages of M tensor-parallel members (N x M = k) is costed per token:
//
//   compute   each stage reads its weights once per decode step (the layer plan's "active"
//             bytes, planner.h); a group of M members reads them split in proportion to the
//             members' speeds, so it takes bytes / (sum of their speeds)
//   links     pipeline: one hop of a hidden row (in the wire type) per stage boundary, and the
//             answer's hop back to this node; a group of M > 1: two all-reduces per layer and
//             the LM head's gather, each one latency plus (M-1) rows on the member's link
//
// One stream's token time is the sum. For `streams` streams at once: a pipeline keeps N
// micro-batches in flight, so a round (every stream one token) takes max(N x the slowest
// stage, one stream's time); a tensor-parallel layout runs depth 1, one step for every stream
// (decode is memory-bound: a batch reads the weights once). Compute-bound effects of large
// batches, the nodes sharing one memory system (local processes) and the members' heads from the
// coordinator are not modelled; README "Choosing a layout" says what the figures rest on.
#pragma once

#include <string>
#include <vector>

#include "cluster/planner.h"

namespace meshlm::cluster {

struct NodeSpeed {
  std::string name;
  double read_bytes_per_s = 0;  // weight bytes a decode step reads per second (> 0)
  uint64_t mem_available = 0;
};

struct LinkCost {
  double latency_s = 0;    // one way
  double bytes_per_s = 0;  // <= 0: not limited
};

struct LayoutCandidate {
  int stages = 1, tp = 1;                     // --stages N --tp M
  std::vector<std::vector<std::string>> groups;  // node names per stage, rank 0 first
  model::LayerPartition ranges;
  double compute_s = 0;   // per token, one stream: reading the weights
  double link_s = 0;      // per token, one stream: hops and collectives
  double tokens_per_s = 0;          // one stream
  double tokens_per_s_streams = 0;  // PredictOptions::streams at once
  std::string refused;    // why the layout cannot run ("" = it can)
  std::string flags() const;  // "--stages 2 --tp 2", "--tp 2", "--stages 3", "(one node)"
};

struct PredictOptions {
  PlanOptions plan;           // KV room and reserve, as for the layer plan
  int streams = 1;            // the workload: streams decoded at once
  double wire_bytes_per_value = 4;  // --wire: f32 4, bf16/f16 2, q8_0 1.0625
  // The nodes are processes of one machine: each node's mem_available is the machine's, shared
  // by the processes a layout runs (k of them: 1/k each).
  bool one_machine = false;
};

// Every candidate, in order of node count then stages; refused ones included (with why).
std::vector<LayoutCandidate> predict_layouts(const model::ModelConfig& config, const TensorSizes& sizes,
                                             const std::vector<NodeSpeed>& nodes, const LinkCost& link,
                                             const PredictOptions& options);

// The runnable candidate with the most tokens/s for the workload (streams > 1: the streams'
// figure), nullptr when none can run.
const LayoutCandidate* best_layout(const std::vector<LayoutCandidate>& candidates, int streams);

// A table of the candidates (best marked) for `meshlm plan --predict`.
std::string format_candidates(const std::vector<LayoutCandidate>& candidates, int streams);

}  // namespace meshlm::cluster
