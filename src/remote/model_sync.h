// Model sync: a worker that lacks the model fetches exactly the tensors of its layer range from
// the coordinator during a load, keeps them in a local cache (tensor_cache.h) and on the next
// start fetches nothing it already has.
//
//   worker                                   coordinator (TensorServer)
//   manifest-request {layers [b, e)}     ->
//                                        <- manifest {fingerprint, config.json, for every tensor
//                                              of model::stage_tensor_names(cfg, {b, e}): name, dtype, shape,
//                                              bytes, XXH3-128}
//   tensor-request [(name, offset)...]   ->  (only what is missing; offset resumes mid-tensor)
//                                        <- tensor-data {range, offset, bytes} ... (from the mmap)
//                                        <- tensors-done {bytes sent}
//   ... loaded
//
// The server only ever looks names up in its own SafetensorsSet: a request for a name that is
// not a tensor of its model (or contains "../", "/" or "\") is answered with a sync-refused frame
// and the connection stays up; neither side ever turns a name a peer sent into a file name.
// This file holds what both sides share (hashing, progress logs) and the server.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "model/safetensors.h"
#include "transport/messages.h"
#include "transport/transport.h"

namespace meshlm::remote {

// XXH3-128 of a buffer, and incrementally while data arrives.
transport::Hash128 hash_bytes(std::span<const uint8_t> bytes);
std::string hash_hex(const transport::Hash128& h);

class StreamHash {
 public:
  StreamHash();
  ~StreamHash();
  StreamHash(StreamHash&&) noexcept;
  StreamHash& operator=(StreamHash&&) noexcept;
  void update(std::span<const uint8_t> bytes);
  transport::Hash128 digest() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// True for 64 lowercase hex digits (a fingerprint() result); only such a string may become a
// folder name in the cache.
bool is_hex_fingerprint(const std::string& s);

// "[sync] <what>: 120.0 of 800.0 MiB, 950 MiB/s, ETA 1 s" at most once a second, and a last line.
class SyncProgress {
 public:
  SyncProgress(std::string what, uint64_t total_bytes);
  void add(uint64_t bytes);
  void finish();  // the summary line (total, rate, time)

 private:
  std::string what_;
  uint64_t total_ = 0, done_ = 0;
  std::chrono::steady_clock::time_point start_, last_log_;
  bool finished_ = false;
};

// What a server sent; shared with whoever wants to watch it (tests, metrics).
struct SyncCounters {
  std::atomic<uint64_t> tensor_bytes{0};  // tensor bytes sent in tensor-data frames
  std::atomic<uint64_t> ranges{0};        // tensor ranges served
  std::atomic<uint64_t> manifests{0};
  std::atomic<uint64_t> refused{0};  // requests answered with sync-refused
};

struct TensorServerOptions {
  size_t chunk_bytes = size_t{8} << 20;  // tensor bytes per tensor-data frame
  // Tests: after sending this many tensor bytes in total, close the connection mid-transfer
  // (exactly at that byte) and throw ConnectionError. 0 = never.
  uint64_t stop_after_bytes = 0;
  std::shared_ptr<SyncCounters> counters;  // created when null
};

// The coordinator's side: serves the tensors of its model folder to syncing workers.
class TensorServer {
 public:
  // Maps the model's safetensors files. Throws Error("sync"/"safetensors", ...).
  TensorServer(const std::string& model_dir, std::string fingerprint,
               TensorServerOptions options = {});

  static bool is_sync_frame(transport::FrameType type) {
    return type == transport::FrameType::ManifestRequest ||
           type == transport::FrameType::TensorRequest;
  }

  // Answers one manifest-request or tensor-request frame on `conn`. Returns false when the
  // request was refused (a sync-refused frame went back, nothing else was sent). Throws
  // Error("protocol") for a malformed payload and ConnectionError when the connection breaks.
  bool handle(transport::Connection& conn, const transport::Frame& frame, const std::string& peer);

  const SyncCounters& counters() const { return *options_.counters; }

 private:
  bool serve_manifest(transport::Connection& conn, const transport::Frame& frame,
                      const std::string& peer);
  bool serve_tensors(transport::Connection& conn, const transport::Frame& frame,
                     const std::string& peer);
  bool refuse(transport::Connection& conn, const std::string& peer, const std::string& why);
  transport::Hash128 tensor_hash(const model::TensorInfo& t);

  std::string model_dir_;
  std::string fingerprint_;
  TensorServerOptions options_;
  std::string config_json_;
  std::unique_ptr<model::SafetensorsSet> set_;
  std::mutex mutex_;
  std::map<std::string, transport::Hash128> hashes_;  // computed once per tensor
  uint64_t sent_ = 0;                      // for stop_after_bytes
};

}  // namespace meshlm::remote
