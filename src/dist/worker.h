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
// Which folder a load uses: the path in the load frame when it holds the coordinator's model
// (same fingerprint); else this worker's own --model when it is that model; else, when the
// coordinator offers sync, the cache folder for the model's fingerprint, after fetching the
// missing or damaged tensors of the layer range from the coordinator (model_sync.h).
#pragma once

#include <atomic>
#include <memory>
#include <string>

namespace meshlm::dist {

struct WorkerOptions {
  std::string listen = "127.0.0.1:7070";
  std::string secret;
  int threads = 1;
  std::string model_dir;  // optional: its fingerprint is checked in the handshake
  // Model sync (tensor_cache.h): where layers fetched from the coordinator are kept when this
  // worker has no folder of the coordinator's model. "" = default_cache_dir().
  std::string cache_dir;
  int sync_timeout_ms = 300000;  // per frame while syncing (the coordinator hashes first)
  int handshake_timeout_ms = 5000;
  int frame_timeout_ms = 30000;  // for the rest of a frame once it has started
};

class Worker {
 public:
  explicit Worker(const WorkerOptions& options);  // binds the listening socket
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  std::string address() const;  // host:port actually bound (port 0 picks one)
  void run();                    // serves until stop()
  void stop();                   // async-signal-safe

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshlm::dist
