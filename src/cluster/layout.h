// Layout assembly: from a description of the cluster to a running Pipeline. One stage in this
// process (default), in-process splits (tests), remote workers (peers), N-1 local worker
// processes started here (stages = N), or the ranks of an mpirun job (transport "mpi": rank 0 is
// this process, ranks 1..N-1 serve stages 1..N-1 over MPI); the layer plan from explicit ranges,
// the nodes' free memory or given memory sizes; workers found on the LAN. A library user builds
// a cluster with LayoutOptions alone; the CLI only parses flags into it (tools/meshlm/
// pipeline_options.h).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cluster/planner.h"
#include "runtime/pipeline.h"

namespace meshlm::cluster {

struct LayoutOptions {
  std::string peers;         // host:port,host:port (workers, in stage order)
  int stages = 1;            // > 1 without --peers: start stages-1 local workers
  std::string layers;        // "0-13,14-27" explicit layer ranges, one per stage
  std::string local_layers;  // "0-1,2-3": in-process stages, one per range (exactness tests)
  std::string secret;        // default: $MESHLM_SECRET (a random one for --stages)
  std::string worker_model_dir;
  std::string sync = "auto";  // model sync: auto | always | off (see remote::SyncMode)
  std::string plan_memory;   // "24G,8G": memory per stage for the planner instead of asking nodes
  bool discover = false;     // no --peers/--stages: use workers announced on the LAN (serve: on)
  double discover_seconds = 3;
  int stage_timeout_s = 120; // no result from the workers for this long: the stages are down
  double heartbeat_timeout_s = 6;  // nothing heard from a worker for this long: it is down
  int64_t kv_tokens = 0;     // KV positions per stage the planner leaves room for (0: the context)
  std::string transport = "tcp";  // tcp | mpi
  bool lock_memory = false;  // --mlock: every stage's weights locked in RAM (StageOptions), here,
                             // in the workers --stages starts and in MPI ranks
  std::string backend = "cpu";  // --backend: compute backend of every stage here, in the workers
                                // --stages starts and in MPI ranks (backend/backend.h)
  // --cache-type: every stage's KV cache type, f32 | bf16 | f16 | q8_0 (model/kv_cache.h); the
  // workers get it in their load frames.
  std::string cache_type = "f32";
  WeightType kv_type() const;  // of cache_type; Error("cli") when it names no cache type
  // --wire: how the stages send activations to each other, f32 (exact) | bf16 | f16 | q8_0
  // (formats/activation_type.h); the workers get it in their load frames. In-process stages
  // (--local-layers) round their activations the same way.
  std::string wire = "f32";
  WeightType wire_type() const;  // of wire; Error("cli") when it names no activation type

  // Tensor parallelism (remote/tp_pipeline.h): > 1 runs the whole model as one group of tp
  // members, this process and tp-1 local worker processes, each holding its share of every
  // layer. With stages = N > 1 (hybrid): N pipeline stages (layers by --layers or the plan), each
  // a group of tp members: this process and N*tp-1 local workers. With --peers: this process
  // and the peers, in order, fill groups of tp members (a stage each). Not with --local-layers
  // or MPI (yet).
  int tp = 1;
  std::string tp_shares;  // "1,3": one share per member (this process first); "" = equal

  bool mpi() const { return transport == "mpi"; }
  // --transport mpi: initialises MPI (call right after parsing, before any thread starts) and
  // checks the options. On ranks 1..N-1 it then serves that rank's stage until rank 0 shuts the
  // pipeline down and returns true: the command must exit 0 without doing anything else.
  // Returns false on rank 0 and for TCP. Throws Error("mpi", ...) in a build without MPI.
  bool serve_if_mpi_worker(const std::string& model_dir, int threads);
  // With discovery on and no --peers/--stages/--layers: browses the LAN for `meshlm worker`s, keeps
  // the compatible ones that accept this cluster's secret and makes them the peers (in instance
  // name order). Call after parsing, before plan()/make().
  void discover_peers();
  std::vector<std::string> peer_list() const;  // --peers (or the discovered ones), in stage order
  // Stage count these options describe (no worker is started); --transport mpi: the ranks
  // (--stages N before MPI is initialised, for `meshlm plan`).
  int stage_count() const;
  std::string resolved_secret() const;  // --secret, else $MESHLM_SECRET
  // The layer plan: --layers when given, else memory-proportional over this machine and the
  // peers (each asked for its free memory), or over --plan-memory. Throws Error("plan", ...).
  cluster::Plan plan(const std::string& model_dir, const model::StageOptions& stage) const;
  // Builds the pipeline (starting local workers if asked); `stage.lock_memory` is taken from
  // --mlock. Throws Error on bad options.
  std::unique_ptr<runtime::Pipeline> make(const std::string& model_dir,
                                          const model::StageOptions& stage) const;

 private:
  std::unique_ptr<runtime::Pipeline> make_tp(const std::string& model_dir,
                                             const model::StageOptions& stage) const;
};

// "0,2,4" (spaces, brackets allowed) -> numbers in [0, 2^31); throws Error("cli", "bad <what> ...").
std::vector<int64_t> parse_number_list(const std::string& text, const char* what);
// What this process computes with, given its --backend, e.g. "cpu/AVX2" or "ref":
// NodeInfo::backend (transport/messages.h), shown by `meshlm cluster status` and in the coordinator's
// worker list.
std::string compute_backend(const std::string& backend = "cpu");

}  // namespace meshlm::cluster
