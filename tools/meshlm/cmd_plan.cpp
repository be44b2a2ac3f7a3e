// meshlm plan: print the layer plan (layers, bytes of weights, KV room per node) before anything
// loads. Workers given with --peers are asked for their free memory; --plan-memory plans for
// machines that are not there yet.
//   meshlm plan --model DIR --peers h1:7070,h2:7070 [--ctx 4096 --parallel 8] [--json]
#include <chrono>
#include <cstdio>
#include <map>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "command.h"
#include "common.h"
#include "backend/read_speed.h"
#include "cluster/layout_model.h"
#include "cluster/link_probe.h"
#include "cluster/node_probe.h"
#include "cluster/planner.h"
#include "core/byte_count.h"
#include "transport/messages.h"
#include "core/error.h"
#include "model/config.h"
#include "kv_options.h"
#include "pipeline_options.h"

namespace meshlm::cli {
namespace {

struct PredictArgs {
  bool on = false;
  int streams = 1;
  int nodes = 0;             // local processes to consider without --peers (0: the cores)
  double latency_us = -1;    // given link (what-if); < 0: measured (peers) or loopback's
  double mbps = -1;          // given link bandwidth in MB/s; < 0: measured; 0: not limited
};

// The weight format that holds the most of the model's bytes (what a decode step mostly reads).
WeightType main_type(const cluster::TensorSizes& sizes) {
  std::map<WeightType, uint64_t> bytes;
  for (const auto& [name, type] : sizes.types) {
    auto it = sizes.find(name);
    if (it != sizes.end()) bytes[type] += it->second;
  }
  WeightType best = WeightType::BF16;
  uint64_t most = 0;
  for (const auto& [t, b] : bytes)
    if (b > most) most = b, best = t;
  return best;
}

// meshlm plan --predict: each layout's tokens/s from measured read speeds and links.
int run_predict(const std::string& model_dir, PipelineOptions& popts, const model::StageOptions& stage,
                const PredictArgs& args, bool json) {
  auto cfg = model::ModelConfig::from_dir(model_dir);
  auto sizes = cluster::tensor_sizes(model_dir);
  const WeightType type = main_type(sizes);
  const std::string secret = popts.resolved_secret();
  const int threads = std::max(1, stage.threads);
  // This node, in the model's main format and in BF16 (the format workers report theirs in).
  const double here = backend::measure_read_speed(popts.backend, threads, type);
  const double here_bf16 = type == WeightType::BF16 ? here : backend::measure_read_speed(popts.backend, threads);
  const uint64_t here_mem = transport::this_node_info(threads, popts.backend).mem_available;
  std::vector<cluster::NodeSpeed> nodes;
  cluster::LinkCost link;
  std::string link_source;
  const auto peer_list = popts.peer_list();
  if (peer_list.empty()) {
    // Local processes: they share this machine's memory (and, not modelled, its memory bus).
    int n = args.nodes > 0 ? args.nodes : std::max(1, int(std::thread::hardware_concurrency()) / threads);
    for (int k = 0; k < n; ++k)
      nodes.push_back({k == 0 ? "local" : "local worker " + std::to_string(k), here, here_mem});
    link.latency_s = 20e-6;  // loopback: a frame's one-way cost through meshlm's transport
    link_source = "loopback (assumed 20 us, not limited)";
  } else {
    nodes.push_back({"local", here, here_mem});
    double worst_latency = 0, worst_bw = 0;
    for (const auto& p : peer_list) {
      transport::NodeInfo info = cluster::probe_node(p, secret);
      // A worker measures its speed when first probed: ask again until it has.
      for (int i = 0; i < 100 && info.read_bytes_per_s == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        info = cluster::probe_node(p, secret);
      }
      if (info.read_bytes_per_s == 0) throw Error("plan", "worker " + p + " did not report its read speed");
      // Its BF16 speed, scaled to the model's format as this node's are.
      nodes.push_back({p, double(info.read_bytes_per_s) * here / here_bf16, info.mem_available});
      if (args.latency_us < 0 || args.mbps < 0) {
        auto probe = cluster::probe_link(p, secret, {64, 262144}, 20);
        worst_latency = std::max(worst_latency, probe.latency_us * 1e-6);
        if (probe.bandwidth_bytes_per_s > 0 && (worst_bw == 0 || probe.bandwidth_bytes_per_s < worst_bw))
          worst_bw = probe.bandwidth_bytes_per_s;
      }
    }
    link.latency_s = worst_latency;
    link.bytes_per_s = worst_bw;
    link_source = "measured (the slowest peer's)";
  }
  if (args.latency_us >= 0) link.latency_s = args.latency_us * 1e-6, link_source = "given";
  if (args.mbps >= 0) link.bytes_per_s = args.mbps * 1e6, link_source = "given";
  cluster::PredictOptions po;
  po.plan.kv_tokens = popts.kv_tokens;
  po.plan.kv_type = popts.kv_type();
  po.streams = args.streams;
  po.one_machine = peer_list.empty();
  const WeightType wire = popts.wire_type();
  po.wire_bytes_per_value = double(formats::row_bytes(wire, 32)) / 32.0;
  auto candidates = cluster::predict_layouts(cfg, sizes, nodes, link, po);
  const cluster::LayoutCandidate* best = cluster::best_layout(candidates, args.streams);
  if (json) {
    nlohmann::json out;
    out["model"] = model_dir;
    out["weight_type"] = std::string(formats::name(type));
    out["streams"] = args.streams;
    out["link"] = {{"latency_us", link.latency_s * 1e6}, {"bytes_per_s", link.bytes_per_s}, {"source", link_source}};
    for (const auto& n : nodes)
      out["nodes"].push_back({{"name", n.name}, {"read_bytes_per_s", n.read_bytes_per_s}, {"mem_available", n.mem_available}});
    for (const auto& c : candidates)
      out["candidates"].push_back({{"layout", c.flags()}, {"stages", c.stages}, {"tp", c.tp},
                                   {"groups", c.groups}, {"layers", model::format_partition(c.ranges)},
                                   {"compute_ms", c.compute_s * 1e3}, {"link_ms", c.link_s * 1e3},
                                   {"tokens_per_s", c.tokens_per_s}, {"tokens_per_s_streams", c.tokens_per_s_streams},
                                   {"refused", c.refused}, {"best", &c == best}});
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::printf("model %s: %s, %lld layers, mostly %s; %d stream(s), --wire %s\n", model_dir.c_str(),
              cfg.model_type.c_str(), static_cast<long long>(cfg.n_layers), std::string(formats::name(type)).c_str(),
              args.streams, popts.wire.c_str());
  std::printf("measured read speed (%s, %d thread(s)):\n", popts.backend.c_str(), threads);
  for (const auto& n : nodes)
    std::printf("  %-24s %8.2f GB/s  %s available%s\n", n.name.c_str(), n.read_bytes_per_s / 1e9,
                format_bytes(n.mem_available).c_str(), po.one_machine ? " (shared by the processes)" : "");
  std::printf("link: %.1f us one way, %s (%s)\n", link.latency_s * 1e6,
              link.bytes_per_s > 0 ? (std::to_string(int64_t(link.bytes_per_s / 1e6)) + " MB/s").c_str() : "bandwidth not limited",
              link_source.c_str());
  std::printf("%s", cluster::format_candidates(candidates, args.streams).c_str());
  if (best) std::printf("best for %d stream(s): %s\n", args.streams, best->flags().c_str());
  return 0;
}

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
  PredictArgs predict;
  app.add_flag("--predict", predict.on,
               "measure read speeds and links and print each layout's predicted tokens/s (pipeline, "
               "tensor-parallel, hybrid) over this node and the peers, or over local processes");
  app.add_option("--streams", predict.streams, "--predict: streams decoded at once")->check(CLI::Range(1, 4096));
  app.add_option("--nodes", predict.nodes, "--predict without --peers: local processes to consider (default: cores / --threads)")
      ->check(CLI::Range(1, 64));
  app.add_option("--link-latency-us", predict.latency_us, "--predict: assume this one-way link latency (what-if)")
      ->check(CLI::Range(0.0, 1e7));
  app.add_option("--link-mbps", predict.mbps, "--predict: assume this link bandwidth in MB/s, 0 = not limited (what-if)")
      ->check(CLI::Range(0.0, 1e7));
  int threads = 1;
  app.add_option("--threads,-t", threads, "--predict: threads per process")->check(CLI::Range(1, 1024));
  KvOptions kv;  // --kv-memory and --prefix-cache: the KV room as serve would leave it
  kv.add_to(app);
  PipelineOptions popts;
  popts.add_to(app);
  CLI11_PARSE(app, argc, argv);
  model_dir = resolve_model(model_dir);  // a folder, or ORG/NAME from the Hugging Face hub
  popts.discover_peers();

  model::StageOptions stage;
  stage.max_context = ctx;
  stage.threads = threads;
  auto cfg = model::ModelConfig::from_dir(model_dir);
  popts.kv_tokens = kv.planner_tokens(cfg, popts.kv_type(), ctx, parallel);
  if (predict.on) return run_predict(model_dir, popts, stage, predict, json);
  cluster::Plan plan = popts.plan(model_dir, stage);
  if (json) {
    nlohmann::json out;
    out["model"] = model_dir;
    out["n_layers"] = cfg.n_layers;
    out["kv_tokens"] = popts.kv_tokens;
    out["cache_type"] = popts.cache_type;
    out["layers"] = model::format_partition(plan.partition());  // as --layers takes it
    out["tp"] = popts.tp;  // members per stage (tensor-parallel groups)
    if (!popts.tp_shares.empty()) out["tp_shares"] = popts.tp_shares;
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
  if (popts.tp > 1)
    std::printf("each stage is a tensor-parallel group of %d members (shares %s): each holds its "
                "share of the stage's attention heads, MLP columns and LM head rows (norms and the "
                "embedding whole), so about 1/%d of the weights and KV above\n",
                popts.tp, popts.tp_shares.empty() ? "equal" : popts.tp_shares.c_str(), popts.tp);
  return 0;
}

Registrar reg("plan", "print the layer plan per node (memory-proportional) before loading", run_plan);

}  // namespace
}  // namespace meshlm::cli
