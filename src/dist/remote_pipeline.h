// A runtime::Pipeline whose stages after the first are `meshlm worker` processes.
//
// Topology: the coordinator runs stage 0 (embedding + first layers) in-process and holds one
// "session" connection to every worker (handshake, load, results, failures). Activations go
// coordinator -> worker 1 -> worker 2 -> ... over direct worker-to-worker connections; the last
// worker samples and sends the result to the coordinator. Releases follow the forwards' path,
// so they reach each stage after the micro-batches launched before them. Up to depth() = number
// of stages micro-batches are in flight.
//
// A worker that dies or times out fails the in-flight micro-batches with
// "stage N (host:port) is down", shows as "down" in stages(), and the next launch() reconnects
// every worker (KV caches start empty: sequences that were active are lost).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "runtime/pipeline.h"

namespace meshlm::dist {

struct RemotePipelineOptions {
  std::string model_dir;          // the coordinator's copy (stage 0 and the fingerprint)
  std::string worker_model_dir;   // the path on the workers; "" = same as model_dir
  std::vector<std::string> peers;  // host:port of the workers, in stage order
  // Layer boundaries {0, a, ..., n_layers}, one more than the stages; empty = even split.
  std::vector<int64_t> splits;
  model::StageOptions stage;      // stage 0's options; max_context also goes to the workers
  std::string secret;
  int connect_timeout_ms = 5000;
  int load_timeout_ms = 300000;
  int result_timeout_ms = 300000;  // no result for this long: the pipeline is marked down
};

// Connects, hands out the layer ranges and waits until every worker has loaded. Throws
// Error("pipeline", ...) naming the worker that failed.
std::unique_ptr<runtime::Pipeline> make_remote_pipeline(const RemotePipelineOptions& options);

// {0, ..., n_layers} split as evenly as possible over n_stages.
std::vector<int64_t> even_splits(int64_t n_layers, int n_stages);

}  // namespace meshlm::dist
