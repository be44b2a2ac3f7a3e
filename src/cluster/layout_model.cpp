#include "cluster/layout_model.h"

#include <algorithm>
#include <cstdio>

#include "core/byte_count.h"
#include "core/error.h"

namespace meshlm::cluster {

std::string LayoutCandidate::flags() const {
  if (stages > 1 && tp > 1) return "--stages " + std::to_string(stages) + " --tp " + std::to_string(tp);
  if (tp > 1) return "--tp " + std::to_string(tp);
  if (stages > 1) return "--stages " + std::to_string(stages);
  return "one node";
}

namespace {

LayoutCandidate cost(const model::ModelConfig& cfg, const TensorSizes& sizes,
                     const std::vector<NodeSpeed>& nodes, int stages, int tp, const LinkCost& link,
                     const PredictOptions& o) {
  LayoutCandidate c;
  c.stages = stages;
  c.tp = tp;
  std::vector<PlanNode> group_nodes;
  std::vector<double> group_speed;
  for (int s = 0; s < stages; ++s) {
    std::vector<std::string> names;
    uint64_t mem = 0;
    double speed = 0;
    for (int m = 0; m < tp; ++m) {
      const NodeSpeed& n = nodes[size_t(s * tp + m)];
      names.push_back(n.name);
      // Each member holds about its share of the stage.
      mem += o.one_machine ? n.mem_available / uint64_t(stages * tp) : n.mem_available;
      speed += n.read_bytes_per_s;
    }
    c.groups.push_back(names);
    group_nodes.push_back({names[0], mem});
    group_speed.push_back(speed);
  }
  if (tp > cfg.n_kv_heads) {
    c.refused = std::to_string(tp) + " members for " + std::to_string(cfg.n_kv_heads) +
                " KV heads (each member needs one)";
    return c;
  }
  if (stages > cfg.n_layers) {
    c.refused = std::to_string(stages) + " stages for " + std::to_string(cfg.n_layers) + " layers";
    return c;
  }
  Plan plan;
  try {
    plan = plan_layers(cfg, sizes, group_nodes, o.plan);
  } catch (const Error& e) {
    c.refused = e.what();
    return c;
  }
  c.ranges = plan.partition();
  const double row = double(cfg.hidden) * o.wire_bytes_per_value;
  auto transfer = [&](double bytes) {
    return link.latency_s + (link.bytes_per_s > 0 ? bytes / link.bytes_per_s : 0.0);
  };
  double slowest = 0;
  for (int s = 0; s < stages; ++s) {
    const double compute = double(plan.stages[size_t(s)].active_bytes) / group_speed[size_t(s)];
    double links = 0;
    if (tp > 1) {
      // Two all-reduces per layer (each member's row to the M-1 others) and the LM head's
      // gather of a few values per row (a latency).
      links += 2.0 * double(c.ranges[size_t(s)].size()) * transfer(double(tp - 1) * row);
      if (s + 1 == stages) links += link.latency_s;
    }
    if (stages > 1) links += s + 1 < stages ? transfer(row) : link.latency_s;  // on, or the answer back
    c.compute_s += compute;
    c.link_s += links;
    slowest = std::max(slowest, compute + links);
  }
  const double one = c.compute_s + c.link_s;
  c.tokens_per_s = 1.0 / one;
  const int streams = std::max(1, o.streams);
  double round = one;
  if (tp == 1 && stages > 1)  // micro-batches in flight, one per stage
    round = std::max(double(std::min(streams, stages)) * slowest, one);
  c.tokens_per_s_streams = double(streams) / round;
  return c;
}

}  // namespace

std::vector<LayoutCandidate> predict_layouts(const model::ModelConfig& config, const TensorSizes& sizes,
                                             const std::vector<NodeSpeed>& nodes, const LinkCost& link,
                                             const PredictOptions& options) {
  for (const auto& n : nodes)
    if (!(n.read_bytes_per_s > 0))
      throw Error("plan", "node " + n.name + " has no measured read speed");
  std::vector<LayoutCandidate> out;
  for (int k = 1; k <= int(nodes.size()); ++k)
    for (int stages = 1; stages <= k; ++stages)
      if (k % stages == 0) out.push_back(cost(config, sizes, nodes, stages, k / stages, link, options));
  return out;
}

const LayoutCandidate* best_layout(const std::vector<LayoutCandidate>& candidates, int streams) {
  const LayoutCandidate* best = nullptr;
  auto figure = [&](const LayoutCandidate& c) { return streams > 1 ? c.tokens_per_s_streams : c.tokens_per_s; };
  for (const auto& c : candidates)
    if (c.refused.empty() && (!best || figure(c) > figure(*best))) best = &c;
  return best;
}

std::string format_candidates(const std::vector<LayoutCandidate>& candidates, int streams) {
  const LayoutCandidate* best = best_layout(candidates, streams);
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "  %-20s %-16s %10s %10s %10s %12s  %s\n", "layout", "layers", "compute",
                "links", "1 stream", (std::to_string(streams) + " streams").c_str(), "nodes");
  out += line;
  for (const auto& c : candidates) {
    std::string nodes;
    for (size_t s = 0; s < c.groups.size(); ++s) {
      if (s) nodes += " | ";
      for (size_t m = 0; m < c.groups[s].size(); ++m) nodes += (m ? "+" : "") + c.groups[s][m];
    }
    if (!c.refused.empty()) {
      std::snprintf(line, sizeof line, "  %-20s cannot run: %s (%s)\n", c.flags().c_str(), c.refused.c_str(),
                    nodes.c_str());
      out += line;
      continue;
    }
    std::snprintf(line, sizeof line, "%s %-20s %-16s %7.2f ms %7.2f ms %6.1f t/s %8.1f t/s  %s\n",
                  &c == best ? "*" : " ", c.flags().c_str(), model::format_partition(c.ranges).c_str(),
                  c.compute_s * 1e3, c.link_s * 1e3, c.tokens_per_s, c.tokens_per_s_streams, nodes.c_str());
    out += line;
  }
  return out;
}

}  // namespace meshlm::cluster
