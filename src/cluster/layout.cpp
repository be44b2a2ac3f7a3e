#include "cluster/layout.h"

#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#if defined(__APPLE__)
#include <mach-o/dyld.h>
#endif

#include "cluster/cluster_watch.h"
#include "cluster/node_probe.h"
#include "core/byte_count.h"
#include "core/error.h"
#include "core/hex.h"
#include "core/log.h"
#include "model/kv_cache.h"
#include "discovery/discovery.h"
#include "discovery/node_record.h"
#include "formats/activation_type.h"
#include "kernels/kernels.h"
#include "model/weights.h"
#include "remote/remote_pipeline.h"
#include "remote/tp_pipeline.h"
#include "remote/worker.h"
#include "transport/frame.h"
#include "transport/messages.h"
#include "transport/mpi_transport.h"

extern char** environ;

namespace meshlm::cluster {

using namespace transport;  // the layer below: connections, frames, messages
using namespace remote;     // remote pipelines and workers

namespace {

std::string self_exe() {
#if defined(__APPLE__)
  char buf[4096];
  uint32_t size = sizeof(buf);
  if (_NSGetExecutablePath(buf, &size) == 0) return buf;
  return "meshlm";
#else
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("meshlm") : p.string();
#endif
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    std::string item = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!item.empty()) out.push_back(item);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

// Local worker processes started for --stages N, stopped when the pipeline goes.
class LocalWorkers {
 public:
  LocalWorkers(int n, const std::string& secret, int threads, bool lock_memory,
               const std::string& backend) {
    dir_ = std::filesystem::temp_directory_path() / ("meshlm-workers-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    std::string exe = self_exe();
    for (int i = 0; i < n; ++i) {
      std::string port_file = (dir_ / ("port" + std::to_string(i))).string();
      std::vector<std::string> args = {exe, "worker", "--listen", "127.0.0.1:0", "--port-file", port_file,
                                       "--secret", secret, "--threads", std::to_string(threads),
                                       "--exit-with-parent", std::to_string(::getpid())};
      if (lock_memory) args.push_back("--mlock");
      args.insert(args.end(), {"--backend", backend});
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      // The child must not inherit a signal mask that blocks SIGTERM (serve waits for signals
      // with them blocked), or it could never be stopped.
      posix_spawnattr_t attr;
      posix_spawnattr_init(&attr);
      sigset_t none, defaults;
      sigemptyset(&none);
      sigemptyset(&defaults);
      sigaddset(&defaults, SIGTERM);
      sigaddset(&defaults, SIGINT);
      posix_spawnattr_setsigmask(&attr, &none);
      posix_spawnattr_setsigdefault(&attr, &defaults);
      posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
      pid_t pid;
      int rc = posix_spawn(&pid, exe.c_str(), nullptr, &attr, argv.data(), environ);
      posix_spawnattr_destroy(&attr);
      if (rc != 0) throw Error("cli", "cannot start a local worker (" + exe + ")");
      pids_.push_back(pid);
      port_files_.push_back(port_file);
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (auto& f : port_files_) {
      std::string port;
      while (port.empty()) {
        std::ifstream in(f);
        if (in) std::getline(in, port);
        if (!port.empty()) break;
        if (std::chrono::steady_clock::now() > deadline) throw Error("cli", "local worker did not start");
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      addresses_.push_back("127.0.0.1:" + port);
    }
  }
  ~LocalWorkers() {
    for (pid_t p : pids_) ::kill(p, SIGTERM);
    for (pid_t p : pids_) ::waitpid(p, nullptr, 0);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  const std::vector<std::string>& addresses() const { return addresses_; }

 private:
  std::filesystem::path dir_;
  std::vector<pid_t> pids_;
  std::vector<std::string> port_files_, addresses_;
};

// A pipeline that owns the local workers it runs on.
class OwningPipeline final : public runtime::Pipeline {
 public:
  OwningPipeline(std::unique_ptr<LocalWorkers> workers, std::unique_ptr<runtime::Pipeline> inner)
      : workers_(std::move(workers)), inner_(std::move(inner)) {}
  ~OwningPipeline() override { inner_.reset(); }
  const model::ModelConfig& config() const override { return inner_->config(); }
  int depth() const override { return inner_->depth(); }
  void launch(runtime::MicroBatch b) override { inner_->launch(std::move(b)); }
  runtime::MicroBatchResult wait() override { return inner_->wait(); }
  void release(int64_t s) override { inner_->release(s); }
  std::vector<runtime::StageInfo> stages() const override { return inner_->stages(); }
  uint64_t kv_epoch() const override { return inner_->kv_epoch(); }
  WeightType kv_type() const override { return inner_->kv_type(); }

 private:
  std::unique_ptr<LocalWorkers> workers_;
  std::unique_ptr<runtime::Pipeline> inner_;
};

}  // namespace

std::vector<int64_t> parse_number_list(const std::string& text, const char* what) {
  std::vector<int64_t> out;
  const char* p = text.c_str();
  while (*p) {
    while (*p == ' ' || *p == ',' || *p == '\n' || *p == '\t' || *p == '[' || *p == ']') ++p;
    if (!*p) break;
    char* end = nullptr;
    long long v = std::strtoll(p, &end, 10);
    if (end == p || v < 0 || v > INT32_MAX)
      throw Error("cli", std::string("bad ") + what + " near '" + std::string(p).substr(0, 16) + "'");
    out.push_back(v);
    p = end;
  }
  return out;
}

WeightType LayoutOptions::kv_type() const {
  const auto t = model::kv_type_from_name(cache_type);
  if (!t)
    throw Error("cli", "--cache-type " + cache_type + ": not a KV cache type (" +
                           std::string(formats::activation_type_names()) + ")");
  return *t;
}

WeightType LayoutOptions::wire_type() const {
  const auto t = formats::activation_type_from_name(wire);
  if (!t)
    throw Error("cli", "--wire " + wire + ": not an activation type (" +
                           std::string(formats::activation_type_names()) + ")");
  return *t;
}

std::string compute_backend(const std::string& backend) {
  if (backend != "cpu") return backend;
  // BF16 weights take other (bf16-activation) dot products where the CPU has AVX512-BF16.
  return std::string("cpu/") + kernels::simd_target_name() + (kernels::bf16_dot_active() ? "+BF16" : "");
}

bool LayoutOptions::serve_if_mpi_worker(const std::string& model_dir, int threads) {
  if (!mpi()) return false;
  if (!transport::mpi_available()) transport::mpi_init();  // throws: how to get an MPI build
  if (!peers.empty() || !local_layers.empty())
    throw Error(
        "cli",
        "--transport mpi takes its stages from mpirun's ranks, not --peers or --local-layers");
  transport::mpi_init();
  const int size = transport::mpi_size(), rank = transport::mpi_rank();
  if (stages > 1 && stages != size)
    throw Error("cli", "--stages " + std::to_string(stages) + " but mpirun started " + std::to_string(size) +
                           " ranks (one stage per rank)");
  // mpirun binds each rank to one core by default (np <= 2), which starves a multi-threaded stage.
#if defined(__linux__)
  cpu_set_t cpus;
  if (sched_getaffinity(0, sizeof(cpus), &cpus) == 0 && CPU_COUNT(&cpus) < threads)
    log::warn("[mpi] rank {} may run on {} core(s) but uses {} threads: start mpirun with --bind-to none "
              "(or --map-by ppr:1:node:pe=N) to give each stage its cores",
              rank, CPU_COUNT(&cpus), threads);
#endif
  if (rank == 0) return false;
  remote::WorkerOptions wo;
  wo.secret = resolved_secret();
  wo.threads = threads;
  wo.lock_memory = lock_memory;
  wo.stage_backend = backend;
  wo.model_dir = worker_model_dir.empty() ? model_dir : worker_model_dir;
  wo.backend = compute_backend(backend);
  remote::run_mpi_worker(wo);
  return true;
}

void LayoutOptions::discover_peers() {
  if (!discover || mpi() || !peers.empty() || stages > 1 || !local_layers.empty() || tp > 1)
    return;
  if (!discovery::discovery_available()) {
    log::info("[discovery] not built in (avahi-core missing): pass --peers to use workers");
    return;
  }
  auto found = discovery::browse_for(std::chrono::milliseconds(int64_t(discover_seconds * 1000)));
  std::map<std::string, std::string> instance_at;  // address -> instance, for the log
  for (const auto& svc : found) {
    auto rec = discovery::parse_node_txt(svc.txt);
    std::string addr = service_address(svc);
    instance_at[addr] = svc.instance;
    if (rec.proto != transport::kProtocolVersion)
      log::warn("[discovery] {} at {} speaks protocol {}, this node {}: not used", svc.instance,
                addr, rec.proto ? std::to_string(*rec.proto) : "?", transport::kProtocolVersion);
  }
  auto usable = usable_workers(found, [&](const std::string& addr) {
    try {
      auto info = cluster::probe_node(addr, resolved_secret(), 3000);
      log::info("[discovery] using {} at {}: {} free, {} cores, {}", instance_at[addr], addr,
                format_bytes(info.mem_available), info.cores, info.backend);
      return true;
    } catch (const std::exception& e) {
      log::warn("[discovery] {} at {} not used: {}", instance_at[addr], addr, e.what());
      return false;
    }
  });
  if (usable.empty()) {
    log::info("[discovery] no usable worker on the LAN ({} announced): one stage here", found.size());
    return;
  }
  for (size_t i = 0; i < usable.size(); ++i) peers += (i ? "," : "") + usable[i];
}

std::vector<std::string> LayoutOptions::peer_list() const { return split_list(peers); }

int LayoutOptions::stage_count() const {
  // Without mpirun (`meshlm plan --transport mpi --stages N`): the plan for N ranks.
  if (mpi() && transport::mpi_initialized()) return transport::mpi_size();
  if (mpi()) return std::max(1, stages);
  // Tensor-parallel groups of tp members: this process and the peers fill them in order.
  if (tp > 1 && !split_list(peers).empty()) return int(split_list(peers).size() + 1) / tp;
  int n = int(split_list(peers).size()) + 1;
  return n > 1 ? n : std::max(1, stages);
}

std::string LayoutOptions::resolved_secret() const {
  if (!secret.empty()) return secret;
  const char* env = std::getenv("MESHLM_SECRET");
  return env ? env : "";
}

cluster::Plan LayoutOptions::plan(const std::string& model_dir,
                                  const model::StageOptions& stage) const {
  if (tp > 1 && !split_list(peers).empty()) {
    // Groups of peers: a stage per group, with its rank 0's memory (each member holds about
    // 1/tp of the stage's weights and KV).
    const auto all = split_list(peers);
    LayoutOptions per_group = *this;
    per_group.tp = 1;
    per_group.peers.clear();
    for (size_t k = size_t(tp - 1); k < all.size(); k += size_t(tp))
      per_group.peers += (per_group.peers.empty() ? "" : ",") + all[k];
    return per_group.plan(model_dir, stage);
  }
  auto cfg = model::ModelConfig::from_dir(model_dir);
  auto sizes = cluster::tensor_sizes(model_dir);
  std::vector<std::string> peer_list = split_list(peers);
  const int n = stage_count();
  std::vector<cluster::PlanNode> nodes;
  if (!plan_memory.empty()) {
    auto mems = split_list(plan_memory);
    if (int(mems.size()) != n)
      throw Error("plan", "--plan-memory gives " + std::to_string(mems.size()) + " sizes for " +
                              std::to_string(n) + " stages");
    for (int k = 0; k < n; ++k)
      nodes.push_back({k == 0                       ? "local"
                       : k <= int(peer_list.size()) ? peer_list[k - 1]
                                                    : "local worker " + std::to_string(k),
                       cluster::parse_bytes(mems[k])});
  } else {
    uint64_t here =
        transport::this_node_info(stage.threads, compute_backend(backend)).mem_available;
    if (mpi()) {
      // Ranks cannot be asked before they are connected: each is assumed to have this node's
      // free memory (--plan-memory when they differ or share a machine).
      for (int k = 0; k < n; ++k) nodes.push_back({k == 0 ? "local" : "rank " + std::to_string(k), here});
    }
    // Local workers share this machine's memory with this process.
    int local = mpi() ? 0 : peer_list.empty() ? n : 1;
    if (local > 0) nodes.push_back({"local", here / uint64_t(local)});
    for (int k = 1; k < local; ++k) nodes.push_back({"local worker " + std::to_string(k), here / uint64_t(local)});
    for (const auto& p : peer_list) {
      transport::NodeInfo info;
      try {
        info = cluster::probe_node(p, resolved_secret());
      } catch (const std::exception& e) {
        throw Error("plan", "could not ask worker " + p + " for its memory: " + e.what());
      }
      log::info("[plan] {}: meshlm {}, {} available of {}, {} cores, {}", p, info.version,
                format_bytes(info.mem_available), format_bytes(info.mem_total),
                info.cores, info.backend);
      nodes.push_back({p, info.mem_available});
    }
  }
  cluster::PlanOptions po;
  po.kv_tokens = kv_tokens > 0 ? kv_tokens : stage.max_context;
  po.kv_type = kv_type();
  if (!layers.empty()) {
    // Explicit ranges: report them with the same accounting, without refusing.
    auto ranges = model::parse_partition(layers, cfg.n_layers, "cli");
    if (int(ranges.size()) != n)
      throw Error("cli", "--layers gives " + std::to_string(ranges.size()) + " ranges for " +
                             std::to_string(n) + " stages");
    return cluster::plan_for_ranges(cfg, sizes, nodes, ranges, po);
  }
  return cluster::plan_layers(cfg, sizes, nodes, po);
}

std::unique_ptr<runtime::Pipeline> LayoutOptions::make(const std::string& model_dir,
                                                         const model::StageOptions& options) const {
  model::StageOptions stage = options;
  stage.lock_memory = lock_memory;
  stage.backend = backend;
  stage.kv_type = kv_type();
  auto cfg = model::ModelConfig::from_dir(model_dir);
  std::vector<std::string> peer_list = split_list(peers);
  if (!local_layers.empty() && (!peer_list.empty() || stages > 1))
    throw Error("cli", "--local-layers cannot be combined with --peers or --stages");
  if (tp > 1 || !tp_shares.empty()) return make_tp(model_dir, stage);
  if (mpi()) {
    if (!transport::mpi_initialized() || transport::mpi_rank() != 0)
      throw Error("cli", "--transport mpi works with serve, generate and bench (this command does "
                         "not start the worker ranks)");
    const int n = transport::mpi_size();
    if (n == 1) {
      log::info("[mpi] one rank: one stage here (start with mpirun -np N for N stages)");
      return runtime::make_local_pipeline(model_dir, stage, {});
    }
    if (n > cfg.n_layers)
      throw Error("cli", std::to_string(n) + " MPI ranks for a model of " + std::to_string(cfg.n_layers) + " layers");
    cluster::Plan layer_plan = plan(model_dir, stage);
    log::info("[plan] layers per rank (MPI thread level {}):\n{}", transport::mpi_thread_level(),
              cluster::format_plan(layer_plan));
    remote::RemotePipelineOptions ro;
    ro.model_dir = model_dir;
    ro.worker_model_dir = worker_model_dir.empty() ? model_dir : worker_model_dir;
    ro.sync = remote::SyncMode::Off;  // every rank reads the model from its own disk
    for (int r = 1; r < n; ++r) ro.peers.push_back(transport::mpi_address(r));
    ro.ranges = layer_plan.partition();
    ro.stage = stage;
    ro.wire = wire_type();
    ro.secret = resolved_secret();
    ro.result_timeout_ms = stage_timeout_s * 1000;
    auto inner = remote::make_remote_pipeline(ro);
    log::info("pipeline of {} stages over MPI ready", n);
    return inner;
  }
  if (peer_list.empty() && stages <= 1) {
    model::LayerPartition ranges;
    if (!local_layers.empty()) ranges = model::parse_partition(local_layers, cfg.n_layers, "cli");
    return runtime::make_local_pipeline(model_dir, stage, ranges, wire_type());
  }
  std::string sec = resolved_secret();
  if (stages > 1 && !peer_list.empty() && stages != int(peer_list.size()) + 1)
    throw Error("cli", "--stages " + std::to_string(stages) + " but " + std::to_string(peer_list.size()) +
                           " peers (+ this process) given");
  if (stage_count() > cfg.n_layers)
    throw Error("cli", std::to_string(stage_count()) + " stages for a model of " +
                           std::to_string(cfg.n_layers) + " layers");
  // Planned before any local worker starts; remote workers are asked for their memory.
  cluster::Plan layer_plan = plan(model_dir, stage);
  log::info("[plan] layers per stage:\n{}", cluster::format_plan(layer_plan));
  std::unique_ptr<LocalWorkers> workers;
  if (peer_list.empty()) {
    if (sec.empty()) sec = random_hex(16);
    workers = std::make_unique<LocalWorkers>(stages - 1, sec, stage.threads, stage.lock_memory,
                                             stage.backend);
    peer_list = workers->addresses();
  }
  int n_stages = int(peer_list.size()) + 1;
  remote::RemotePipelineOptions ro;
  ro.model_dir = model_dir;
  ro.worker_model_dir = worker_model_dir;
  ro.sync = sync == "off"      ? remote::SyncMode::Off
            : sync == "always" ? remote::SyncMode::Always
                               : remote::SyncMode::Auto;
  ro.peers = peer_list;
  ro.ranges = layer_plan.partition();
  ro.stage = stage;
  ro.wire = wire_type();
  ro.secret = sec;
  ro.result_timeout_ms = stage_timeout_s * 1000;
  ro.heartbeat_timeout_ms = int(heartbeat_timeout_s * 1000);
  auto inner = remote::make_remote_pipeline(ro);
  log::info("pipeline of {} stages ready", n_stages);
  if (!workers) return inner;
  return std::make_unique<OwningPipeline>(std::move(workers), std::move(inner));
}

static std::vector<double> parse_share_list(const std::string& text) {
  std::vector<double> out;
  for (const std::string& item : split_list(text)) {
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || !(v > 0) || v > 1e6)
      throw Error("cli", "bad --tp-shares '" + text + "': want positive numbers, e.g. 1,3");
    out.push_back(v);
  }
  return out;
}

std::unique_ptr<runtime::Pipeline> LayoutOptions::make_tp(const std::string& model_dir,
                                                          const model::StageOptions& stage) const {
  if (mpi() || !local_layers.empty())
    throw Error("cli", "--tp cannot be combined with --local-layers or --transport mpi yet");
  std::vector<double> shares = parse_share_list(tp_shares);
  if (!tp_shares.empty() && int(shares.size()) != tp)
    throw Error("cli", "--tp-shares has " + std::to_string(shares.size()) + " shares for --tp " +
                           std::to_string(tp));
  if (tp < 2) throw Error("cli", "--tp-shares needs --tp 2 or more");
  const std::vector<std::string> peer_list = split_list(peers);
  // With --peers: this process and the peers, in order, fill the groups (M members each).
  int groups = std::max(1, stages);
  if (!peer_list.empty()) {
    const int members = int(peer_list.size()) + 1;
    if (members % tp != 0 || (stages > 1 && members != stages * tp))
      throw Error("cli", "--tp " + std::to_string(tp) + (stages > 1 ? " --stages " + std::to_string(stages) : "") +
                             " with " + std::to_string(peer_list.size()) + " peers: this process and the peers "
                             "must fill " + (stages > 1 ? std::to_string(stages) : std::string("whole")) +
                             " groups of " + std::to_string(tp) + " members");
    groups = members / tp;
  }
  auto cfg = model::ModelConfig::from_dir(model_dir);
  if (groups > cfg.n_layers)
    throw Error("cli", std::to_string(groups) + " stages for a model of " +
                           std::to_string(cfg.n_layers) + " layers");
  if (!layers.empty() && groups == 1)
    throw Error("cli", "--layers with --tp needs --stages N (one range per stage)");
  remote::TpPipelineOptions o;
  if (groups > 1) {
    // Each stage's layers by --layers, else in proportion to the groups' memory (plan()),
    // planned before any worker starts.
    cluster::Plan layer_plan = plan(model_dir, stage);
    log::info("[plan] layers per stage (each a tensor-parallel group of {}):\n{}", tp,
              cluster::format_plan(layer_plan));
    o.ranges = layer_plan.partition();
  }
  std::string sec = resolved_secret();
  std::unique_ptr<LocalWorkers> workers;
  std::vector<std::string> addresses = peer_list;
  if (peer_list.empty()) {
    if (sec.empty()) sec = random_hex(16);
    workers = std::make_unique<LocalWorkers>(groups * tp - 1, sec, stage.threads, stage.lock_memory,
                                             stage.backend);
    addresses = workers->addresses();
  }
  o.model_dir = model_dir;
  o.worker_model_dir = worker_model_dir;
  o.peers.assign(addresses.begin(), addresses.begin() + (tp - 1));
  for (int g = 1; g < groups; ++g) {
    auto first = addresses.begin() + (tp - 1) + (g - 1) * tp;
    o.later_groups.emplace_back(first, first + tp);
  }
  o.shares = shares;
  o.stage = stage;
  o.wire = wire_type();
  o.secret = sec;
  o.group_timeout_ms = stage_timeout_s * 1000;
  auto inner = remote::make_tp_pipeline(o);
  if (groups > 1)
    log::info("pipeline of {} stages, each a tensor-parallel group of {} members, ready", groups, tp);
  else
    log::info("tensor-parallel group of {} members ready", tp);
  if (!workers) return inner;
  return std::make_unique<OwningPipeline>(std::move(workers), std::move(inner));
}

}  // namespace meshlm::cluster
