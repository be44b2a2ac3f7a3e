#include "cluster/planner.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "core/byte_count.h"
#include "core/error.h"
#include "formats/weight_format.h"
#include "model/model_files.h"
#include "model/safetensors.h"
#include "model/schema.h"

namespace meshlm::cluster {

namespace {

uint64_t sum_bytes(const TensorSizes& sizes, const std::vector<std::string>& names,
                   const std::set<std::string>& skip = {}) {
  uint64_t total = 0;
  for (const auto& n : names) {
    if (skip.count(n)) continue;
    auto it = sizes.find(n);
    if (it == sizes.end()) throw Error("plan", "the model has no tensor " + n);
    total += it->second;
  }
  return total;
}

std::vector<std::string> layer_only(const model::ModelConfig& c, int64_t i) {
  // Tensors of [i, i+1) that are not the embedding / head / final norm.
  std::vector<std::string> out;
  for (auto& d : model::stage_tensors(c, {i, i + 1}))
    if (d.layer == i) out.push_back(std::move(d.name));
  return out;
}

// Bytes read to decode one token from these tensors: an expert's weights count for the share of
// experts a token uses; the embedding of the first stage (a row lookup) for nothing unless it is
// also the tied head.
// Which of a stage's tensors count: kLayers its layers' own, kFixed the others (embedding, final
// norm, head), kAll both.
enum class Part { kLayers, kFixed, kAll };
uint64_t active_bytes(const model::ModelConfig& c, const TensorSizes& sizes, model::LayerRange layers,
                      Part part = Part::kAll) {
  const bool last = layers.is_last(c.n_layers);
  double total = 0;
  for (const auto& d : model::stage_tensors(c, layers)) {
    if ((part == Part::kLayers && d.layer < 0) || (part == Part::kFixed && d.layer >= 0)) continue;
    auto it = sizes.find(d.name);
    if (it == sizes.end()) throw Error("plan", "the model has no tensor " + d.name);
    if (d.role == model::TensorRole::Embed && !(last && c.tie_embeddings)) continue;
    total += d.expert >= 0 ? double(it->second) * double(c.n_experts_used) / double(c.n_experts)
                           : double(it->second);
  }
  return uint64_t(total);
}

uint64_t kv_bytes_per_layer(const model::ModelConfig& c, const PlanOptions& options) {
  if (c.n_layers <= 0) return 0;
  return uint64_t(c.kv_bytes_per_token(options.kv_type) / c.n_layers) *
         uint64_t(std::max<int64_t>(options.kv_tokens, 0));
}

// The formats of a stage's matrices (the Matrix / Embedding tensors: norms and biases are
// F32 in every quantized file), the most bytes first.
std::string weight_types_of(const model::ModelConfig& c, const TensorSizes& sizes,
                            model::LayerRange layers) {
  std::map<WeightType, uint64_t> bytes;
  for (const auto& d : model::stage_tensors(c, layers)) {
    if (d.kind != model::TensorKind::Matrix && d.kind != model::TensorKind::Embedding) continue;
    auto t = sizes.types.find(d.name);
    auto n = sizes.find(d.name);
    if (t != sizes.types.end()) bytes[t->second] += n == sizes.end() ? 0 : n->second;
  }
  std::vector<std::pair<uint64_t, WeightType>> order;
  for (auto [type, n] : bytes) order.push_back({n, type});
  std::stable_sort(order.begin(), order.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  std::string out;
  for (const auto& [n, type] : order) out += (out.empty() ? "" : "/") + std::string(formats::name(type));
  return out;
}

// plan.stages from the layer ranges: each stage's tensors (layers + the fixed ones it holds) and
// KV room.
void add_stages(Plan& plan, const model::ModelConfig& c, const TensorSizes& sizes,
                const std::vector<PlanNode>& nodes, const model::LayerPartition& ranges) {
  for (size_t k = 0; k < ranges.size(); ++k) {
    StagePlan s;
    s.node = nodes[k].name;
    s.mem_available = nodes[k].mem_available;
    s.layers = ranges[k];
    s.kv_bytes = uint64_t(s.layers.size()) * plan.kv_bytes_per_layer;
    s.weight_bytes = sum_bytes(sizes, model::stage_tensor_names(c, s.layers));
    s.weight_types = weight_types_of(c, sizes, s.layers);
    s.active_bytes = active_bytes(c, sizes, s.layers);
    plan.stages.push_back(s);
  }
}

}  // namespace

TensorSizes tensor_sizes(const std::string& model_dir) {
  TensorSizes sizes;
  if (model::detect_model_format(model_dir) != model::ModelFormat::HfFolder) {
    // GGUF and MLX: the bytes each schema tensor takes as stored, keyed by its Hugging Face name.
    auto files = model::ModelFiles::open(model_dir);
    for (const auto& d : model::model_tensors(files->config())) {
      sizes[d.name] = files->tensor_bytes(d);
      sizes.types[d.name] = files->tensor_type(d);
    }
    return sizes;
  }
  auto set = model::SafetensorsSet::open_dir(model_dir);
  for (const auto& [name, info] : set->tensors()) {
    sizes[name] = info.nbytes;
    if (info.dtype_supported) sizes.types[name] = info.dtype;
  }
  return sizes;
}

uint64_t parse_bytes(const std::string& text) {
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  std::string unit = end ? std::string(end) : "";
  for (auto& ch : unit) ch = char(std::toupper(static_cast<unsigned char>(ch)));
  if (!unit.empty() && unit.back() == 'B') unit.pop_back();
  if (unit.size() == 2 && unit[1] == 'I') unit.pop_back();
  double mult = unit.empty() ? 1 : unit == "K" ? 1024.0 : unit == "M" ? 1048576.0
                 : unit == "G" ? 1073741824.0 : unit == "T" ? 1099511627776.0 : -1;
  if (end == text.c_str() || mult < 0 || !std::isfinite(v) || v < 0 || v * mult > 1e18)
    throw Error("plan", "'" + text + "' is not a size (like 24G, 512M or 1.5GiB)");
  return uint64_t(v * mult);
}

Plan plan_layers(const model::ModelConfig& c, const TensorSizes& sizes,
                 const std::vector<PlanNode>& nodes, const PlanOptions& options) {
  const int64_t L = c.n_layers;
  const size_t n = nodes.size();
  if (n == 0) throw Error("plan", "no nodes to plan for");
  if (int64_t(n) > L)
    throw Error("plan", std::to_string(n) + " nodes for a model of " + std::to_string(L) +
                            " layers: every stage needs at least one layer");
  Plan plan;
  for (int64_t i = 0; i < L; ++i)
    plan.layer_bytes = std::max(plan.layer_bytes, sum_bytes(sizes, layer_only(c, i)));
  plan.kv_bytes_per_layer = kv_bytes_per_layer(c, options);
  // Fixed tensors: what stage 0 holds besides layers, and what the last stage holds.
  auto fixed_of = [&](int64_t begin, int64_t end) {
    std::set<std::string> layer_names;
    for (int64_t i = begin; i < end; ++i)
      for (auto& nm : layer_only(c, i)) layer_names.insert(nm);
    return sum_bytes(sizes, model::stage_tensor_names(c, {begin, end}), layer_names);
  };
  uint64_t first_fixed = n == 1 ? fixed_of(0, L) : fixed_of(0, 1);
  uint64_t last_fixed = n == 1 ? 0 : fixed_of(L - 1, L);
  plan.total_weight_bytes = fixed_of(0, L);
  for (int64_t i = 0; i < L; ++i) plan.total_weight_bytes += sum_bytes(sizes, layer_only(c, i));

  const uint64_t per_layer = plan.layer_bytes + plan.kv_bytes_per_layer;
  std::vector<double> cap(n);
  std::vector<int64_t> max_layers(n), count(n, 0);
  int64_t total_max = 0;
  for (size_t k = 0; k < n; ++k) {
    uint64_t fixed = (k == 0 ? first_fixed : 0) + (k == n - 1 && n > 1 ? last_fixed : 0);
    double reserve = double(nodes[k].mem_available) * options.reserve_fraction +
                     double(options.reserve_bytes);
    cap[k] = double(nodes[k].mem_available) - reserve - double(fixed);
    max_layers[k] = cap[k] <= 0 ? 0 : std::min<int64_t>(L, int64_t(cap[k] / double(per_layer)));
    if (max_layers[k] < 1) {
      double need = double(fixed) + double(per_layer) + reserve;
      throw Error("plan", "node " + nodes[k].name + " has " + format_bytes(nodes[k].mem_available) +
                              " available, less than one layer needs there (" +
                              format_bytes(uint64_t(need)) + " with " + (fixed ? "its fixed tensors, " : "") +
                              "KV room and reserve): short by " +
                              format_bytes(uint64_t(need - double(nodes[k].mem_available))) +
                              "; lower --ctx/--parallel or leave this node out");
    }
    total_max += max_layers[k];
  }
  if (total_max < L) {
    uint64_t missing = uint64_t(L - total_max) * per_layer;
    throw Error("plan", "the model does not fit: " + std::to_string(L) + " layers of " +
                            format_bytes(per_layer) + " (weights " + format_bytes(plan.layer_bytes) +
                            " + KV " + format_bytes(plan.kv_bytes_per_layer) + ") but the nodes hold " +
                            std::to_string(total_max) + " of them: short by about " +
                            format_bytes(missing) + "; add a node, or lower --ctx/--parallel");
  }
  // Work in proportion to memory: each node's share of the whole forward pass (its layers, plus
  // on the last stage the LM head, which costs as much as `head` layers: a matrix-vector product
  // reads every weight once) follows its memory. Equal nodes thus get equal compute, the last
  // one fewer layers. Compute is in active bytes (what decoding a token reads): for a MoE model
  // the head weighs many more of its layers than their stored bytes say. Targets floored and
  // capped (memory), then the remainder by largest shortfall.
  plan.layer_active_bytes = active_bytes(c, sizes, {0, L}, Part::kLayers) / uint64_t(L);
  const uint64_t head_active = n > 1 ? active_bytes(c, sizes, {L - 1, L}, Part::kFixed) : 0;
  const double head = n > 1 && plan.layer_active_bytes > 0
                          ? double(head_active) / double(plan.layer_active_bytes)
                          : 0.0;
  double total_cap = 0;
  for (double x : cap) total_cap += x;
  std::vector<double> target(n);
  int64_t assigned = 0;
  for (size_t k = 0; k < n; ++k) {
    target[k] = (double(L) + head) * cap[k] / total_cap - (k == n - 1 ? head : 0.0);
    count[k] = std::clamp<int64_t>(int64_t(std::floor(target[k])), 1, max_layers[k]);
    assigned += count[k];
  }
  while (assigned > L) {  // floors of 1 may overshoot when nodes are tiny
    size_t best = n;
    for (size_t k = 0; k < n; ++k)
      if (count[k] > 1 && (best == n || double(count[k]) - target[k] > double(count[best]) - target[best]))
        best = k;
    --count[best];
    --assigned;
  }
  while (assigned < L) {
    size_t best = n;
    for (size_t k = 0; k < n; ++k)
      if (count[k] < max_layers[k] &&
          (best == n || target[k] - double(count[k]) > target[best] - double(count[best])))
        best = k;
    ++count[best];
    ++assigned;
  }
  model::LayerPartition ranges;
  for (size_t k = 0; k < n; ++k) {
    int64_t begin = ranges.empty() ? 0 : ranges.back().end;
    ranges.push_back({begin, begin + count[k]});
  }
  add_stages(plan, c, sizes, nodes, ranges);
  return plan;
}

Plan plan_for_ranges(const model::ModelConfig& config, const TensorSizes& sizes,
                     const std::vector<PlanNode>& nodes, const model::LayerPartition& ranges,
                     const PlanOptions& options) {
  if (ranges.size() != nodes.size())
    throw Error("plan", std::to_string(ranges.size()) + " layer ranges for " +
                            std::to_string(nodes.size()) + " stages");
  model::check_partition(ranges, config.n_layers, "plan");
  Plan plan;
  plan.kv_bytes_per_layer = kv_bytes_per_layer(config, options);
  add_stages(plan, config, sizes, nodes, ranges);
  return plan;
}

model::LayerPartition Plan::partition() const {
  model::LayerPartition p;
  for (const auto& s : stages) p.push_back(s.layers);
  return p;
}

std::string format_plan(const Plan& plan) {
  std::string out;
  char line[256];
  size_t type_width = 4;  // the weight types column fits the longest
  for (const auto& s : plan.stages) type_width = std::max(type_width, s.weight_types.size());
  std::snprintf(line, sizeof line, "%-5s %-24s %-9s %12s %-*s %12s %12s %12s %12s\n", "stage", "node",
                "layers", "weights", int(type_width), "type", "read/token", "KV room", "available", "left");
  out += line;
  for (size_t k = 0; k < plan.stages.size(); ++k) {
    const auto& s = plan.stages[k];
    const std::string layers = s.layers.inclusive_str();
    int64_t left = int64_t(s.mem_available) - int64_t(s.weight_bytes + s.kv_bytes);
    std::snprintf(line, sizeof line, "%-5zu %-24s %-9s %12s %-*s %12s %12s %12s %12s\n", k,
                  s.node.c_str(), layers.c_str(), format_bytes(s.weight_bytes).c_str(),
                  int(type_width), s.weight_types.empty() ? "-" : s.weight_types.c_str(),
                  format_bytes(s.active_bytes).c_str(), format_bytes(s.kv_bytes).c_str(), format_bytes(s.mem_available).c_str(),
                  left < 0 ? "-" : format_bytes(uint64_t(left)).c_str());
    out += line;
  }
  return out;
}

}  // namespace meshlm::cluster
