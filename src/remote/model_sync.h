// Model sync: a worker that lacks the model fetches exactly the tensors of its layer range from
// the coordinator during a load, keeps them in a local cache (tensor_cache.h) and on the next
// start fetches nothing it already has. Tensors travel as the coordinator stores them, whatever
// the model's format: a Hugging Face folder's F32/BF16/F16 tensors, an MLX folder's U32 codes
// with their .scales and .biases, a GGUF file's blocks of any type.
//
//   worker                                   coordinator (TensorServer)
//   manifest-request {layers [b, e)}     ->
//                                        <- manifest {fingerprint, format, config.json (folders)
//                                              or every GGUF part's header (GGUF), and for every
//                                              tensor of the stage: name, dtype, shape, bytes,
//                                              XXH3-128}
//   tensor-request [(name, offset)...]   ->  (only what is missing; offset resumes mid-tensor)
//                                        <- tensor-data {range, offset, bytes} ... (from the mmap)
//                                        <- tensors-done {bytes sent}
//   ... loaded
//
// A stage's tensors (stage_tensors below) come from the schema (model/schema.h) alone: folders
// list the schema names, plus NAME.scales / NAME.biases (schema quant_part_name) of each matrix an
// MLX folder stores as U32 codes; GGUF models list the schema's GGUF names plus every tensor of
// the file the schema does not name (rope_freqs.weight: small, and every stage's config needs it).
// The server only ever looks names up in its own model: a request for a name that is not a
// tensor of its model (or contains "../", "/" or "\") is answered with a sync-refused frame and
// the connection stays up; neither side ever turns a name a peer sent into a file name.
// This file holds what both sides share (hashing, progress logs, stage_tensors) and the server.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/layer_range.h"
#include "model/safetensors.h"
#include "transport/messages.h"
#include "transport/transport.h"

namespace meshlm::formats {
class GgufModel;
}

namespace meshlm::remote {

// The names of the stored tensors a stage holding `layers` needs, in schema order (see above).
// `stored` answers whether the file holds a tensor by this name and its dtype ("" when absent):
// a Matrix / Embedding stored as "U32" brings its two MLX parts. `gguf_extras`: a GGUF model's
// tensors outside the schema (gguf_extra_tensors). Throws Error("weights") for a bad range.
std::vector<std::string> stage_stored_tensors(
    const model::ModelConfig& cfg, model::LayerRange layers, transport::SyncFormat format,
    const std::function<std::string(const std::string&)>& stored_dtype,
    const std::vector<std::string>& gguf_extras);
// The tensors of a GGUF model that no schema row names, in file order.
std::vector<std::string> gguf_extra_tensors(const model::ModelConfig& cfg,
                                            const formats::GgufModel& model);

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
  // Tests: flip one bit of the tensor byte that is this many bytes into what the server sends
  // (counting from 1, over all requests; once), as a damaged link or disk would. 0 = never.
  uint64_t corrupt_byte = 0;
  std::shared_ptr<SyncCounters> counters;  // created when null
};

// The coordinator's side: serves the tensors of its model (a Hugging Face or MLX folder, or a
// GGUF file / split set / folder holding one) to syncing workers, from its own memory map.
class TensorServer {
 public:
  // Maps the model's files. Throws Error("sync"/"safetensors"/"gguf"/"config", ...).
  TensorServer(const std::string& model_path, std::string fingerprint,
               TensorServerOptions options = {});
  ~TensorServer();

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
  // One tensor as the files store it.
  struct Stored {
    std::string name;
    std::string dtype;  // a manifest dtype (ManifestEntry::dtype), or what the file says
    std::vector<int64_t> shape;
    const uint8_t* data = nullptr;
    uint64_t nbytes = 0;
  };
  std::optional<Stored> find(const std::string& name) const;

  bool serve_manifest(transport::Connection& conn, const transport::Frame& frame,
                      const std::string& peer);
  bool serve_tensors(transport::Connection& conn, const transport::Frame& frame,
                     const std::string& peer);
  bool refuse(transport::Connection& conn, const std::string& peer, const std::string& why);
  transport::Hash128 tensor_hash(const Stored& t);

  std::string fingerprint_;
  TensorServerOptions options_;
  transport::SyncFormat format_ = transport::SyncFormat::Safetensors;
  model::ModelConfig config_;
  std::string config_json_;                          // folders
  std::vector<transport::GgufPartHead> gguf_parts_;  // GGUF
  std::vector<std::string> gguf_extras_;             // GGUF
  std::unique_ptr<model::SafetensorsSet> set_;       // folders
  std::unique_ptr<formats::GgufModel> gguf_;         // GGUF
  std::mutex mutex_;
  std::map<std::string, transport::Hash128> hashes_;  // computed once per tensor
  uint64_t sent_ = 0;                                 // for the test hooks
};

}  // namespace meshlm::remote
