// A runtime::Pipeline whose stages after the first are `meshlm worker` processes.
//
// Topology: the coordinator runs stage 0 (embedding + first layers) in-process and holds one
// "session" connection to every worker (handshake, load, results, failures). Activations go
// coordinator -> worker 1 -> worker 2 -> ... over direct worker-to-worker connections; the last
// worker samples and sends the result to the coordinator. Releases follow the forwards' path,
// so they reach each stage after the micro-batches launched before them. Up to depth() = number
// of stages micro-batches are in flight.
//
// A worker that dies, times out or falls silent (no heartbeat for heartbeat_timeout_ms: workers
// send one a second whatever they are computing) fails the in-flight micro-batches with
// "stage N (host:port) is down" (retryable: the engine replays its sequences), shows as "down"
// in stages(), and is reconnected in the background: a monitor thread retries with back-off
// (0.25 s doubling to 5 s) once nothing is in flight, and launch() retries too. A reconnect
// reconnects every worker; KV caches start empty. The coordinator pings every worker once a
// second, so that a worker notices a vanished coordinator.
//
// Over MPI the peers are "mpi:RANK" addresses (every frame goes over mpi_transport.h
// connections: the session on kMpiSessionTag, activations on kMpiUpstreamTag), the worker ranks
// run run_mpi_worker (worker.h), there is no model sync (each rank reads its layers from the
// path in the load frame) and no reconnect; destroying the pipeline stops every rank and waits
// for their acknowledgements, so that all ranks can call MPI_Finalize (else the job is aborted).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/pipeline.h"

namespace meshlm::remote {

struct SyncCounters;  // model_sync.h

// Model sync (model_sync.h): whether workers may fetch their layers from the coordinator.
enum class SyncMode {
  Auto,    // when worker_model_dir is empty: workers use the coordinator's path if it holds the
           // model there (same machine), else their own --model, else they sync into their cache
  Always,  // no path is sent: workers use their own --model when it is the model, else sync
  Off,     // workers must find the model at worker_model_dir (or model_dir)
};

struct RemotePipelineOptions {
  std::string model_dir;          // the coordinator's copy (stage 0 and the fingerprint)
  std::string worker_model_dir;   // the path on the workers; "" = same as model_dir
  std::vector<std::string> peers;  // host:port (or mpi:RANK) of the workers, in stage order
  // One layer range per stage (stage 0 here, then the peers'); empty = model::even_partition.
  model::LayerPartition ranges;
  model::StageOptions stage;      // stage 0's options; max_context also goes to the workers
  // --wire: how every stage sends its activations to the next (formats/activation_type.h): F32
  // (exact), BF16, F16 or Q8_0 (the hidden size must be whole blocks of 32).
  WeightType wire = WeightType::F32;
  std::string secret;
  int connect_timeout_ms = 5000;
  int load_timeout_ms = 300000;
  int result_timeout_ms = 300000;  // no result for this long: the pipeline is marked down
  // Nothing (results, heartbeats) heard from a worker for this long: it is marked down. Workers
  // send a heartbeat every kHeartbeatIntervalMs (frame.h). 0 = off. Not over MPI.
  int heartbeat_timeout_ms = 6000;
  bool reconnect_in_background = true;  // the monitor thread (TCP only)
  SyncMode sync = SyncMode::Auto;
  std::shared_ptr<SyncCounters> sync_counters;  // optional: what the tensor server sent
  uint64_t sync_chunk_bytes = uint64_t{8} << 20;  // tensor bytes per frame
  uint64_t sync_stop_after_bytes = 0;  // tests: break a transfer after this many bytes (once)
  uint64_t sync_corrupt_byte = 0;  // tests: damage the tensor byte sent at this count (once)
};

// Connects, hands out the layer ranges and waits until every worker has loaded. Throws
// Error("pipeline", ...) naming the worker that failed.
std::unique_ptr<runtime::Pipeline> make_remote_pipeline(const RemotePipelineOptions& options);

}  // namespace meshlm::remote
