// A worker: one stage of a pipeline in its own process (`meshlm worker`). It listens, takes one
// coordinator at a time, is told by a load frame which layers to serve and where the next stage
// is, and then loops: forward frames in (from the coordinator when it is the first remote stage,
// otherwise from the previous stage's "upstream" connection), activations out to the next
// stage, or — as the last stage — sampled tokens / logits back to the coordinator. Releases
// travel the same path as forwards, so they stay ordered after the micro-batches before them.
//
// A malformed frame or a broken connection closes that connection only; the worker keeps
// listening. Losing the coordinator resets the session (KV freed, weights kept for the next
// coordinator that asks for the same layers).
//
// Over MPI (`mpirun ... meshlm serve --transport mpi`) a worker rank serves over connections
// that already exist instead of a listening socket (run_mpi_worker): the session to rank 0 and
// the upstream from the previous rank. Its whole life is one session: a shutdown frame, which
// travels the forwards' path so that it comes after everything sent before it, is passed on to
// the next rank, acknowledged to the coordinator with a shutdown frame, and run() returns. There
// is no handshake on the upstream link (mpirun vouches for its ranks; the session handshake still
// checks the secret and the model fingerprint) and no model sync.
//
// Which folder a load uses: the path in the load frame when it holds the coordinator's model
// (same fingerprint); else this worker's own --model when it is that model; else, when the
// coordinator offers sync, the cache folder for the model's fingerprint, after fetching the
// missing or damaged tensors of the layer range from the coordinator (model_sync.h).
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "transport/transport.h"

namespace meshlm::remote {

struct WorkerOptions {
  std::string listen = "127.0.0.1:7070";
  std::string secret;
  int threads = 1;
  bool lock_memory = false;  // --mlock: the stage's weights stay in RAM (StageOptions)
  std::string stage_backend = "cpu";  // --backend: the stage's compute backend (StageOptions)
  std::string model_dir;  // optional: its fingerprint is checked in the handshake
  // Model sync (tensor_cache.h): where layers fetched from the coordinator are kept when this
  // worker has no folder of the coordinator's model. "" = default_cache_dir().
  std::string cache_dir;
  int sync_timeout_ms = 300000;  // per frame while syncing (the coordinator hashes first)
  int handshake_timeout_ms = 5000;
  int frame_timeout_ms = 30000;  // for the rest of a frame once it has started
  // A coordinator that has pinged this session and then is silent this long is gone (power loss,
  // cable): the session ends so that it, or another coordinator, can take the worker again.
  // 0 = never. (TCP only; the worker itself sends a heartbeat every kHeartbeatIntervalMs.)
  int coordinator_timeout_ms = 15000;
  std::string name;  // how logs and errors name this worker; "" = "worker HOST:PORT"
  // NodeInfo::backend sent in the handshake, e.g. "cpu/AVX2" (the CLI fills it in from the kernels).
  std::string backend;
};

class Worker {
 public:
  explicit Worker(const WorkerOptions& options);  // binds the listening socket
  // Serves one coordinator over `session` (the coordinator) and `upstream` (the previous stage;
  // null when the coordinator is the previous stage): no socket, no upstream handshake.
  Worker(const WorkerOptions& options, std::unique_ptr<transport::Connection> session,
         std::unique_ptr<transport::Connection> upstream);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  std::string address() const;  // host:port actually bound (port 0 picks one), "" when attached
  void run();                    // serves until stop() (attached: until the session ends)
  void stop();                   // async-signal-safe

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The worker of this MPI rank (1..size-1): connects to rank 0 (kMpiSessionTag) and the
// previous rank (kMpiUpstreamTag) and serves until the coordinator shuts the pipeline down.
// options.listen is ignored; options.model_dir is the rank's copy of the model.
void run_mpi_worker(const WorkerOptions& options);

}  // namespace meshlm::remote
