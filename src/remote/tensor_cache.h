// The worker's side of model sync (see model_sync.h for the exchange): a cache of models, one
// folder per model fingerprint, each a model the loader (model::ModelFiles) opens as it is.
//
// Hugging Face and MLX folders (manifest format Safetensors): an ordinary folder of the same kind
//   <cache>/<fingerprint>/config.json                  the coordinator's bytes (an MLX folder's
//                                                      "quantization" included)
//                         layer-00012.safetensors      every tensor of layer 12 (MLX: the U32
//                                                      codes and their .scales / .biases)
//                         embed.safetensors, norm.safetensors, lm-head.safetensors
//                         model.safetensors.index.json the tensors of the stage being loaded
//                         layer-00013.safetensors.partial   a transfer that was interrupted
//                         .lock                        held while a worker syncs and maps
// File names are derived here from the schema tensor a name belongs to (its layer, or a fixed
// table for the others), never from a string a peer sent. Each file is a valid safetensors file
// whose header is fixed by the manifest (tensors in name order), written before any data, and
// whose data is written in order, so a .partial file's length is how far the transfer got: the
// next sync re-hashes what is there and asks for the rest from that byte.
//
// GGUF models (format Gguf): the coordinator's files in its own layout, as sparse files
//   <cache>/<fingerprint>/model.gguf                   (a split set: model-00001-of-0000N.gguf...)
//                         model.gguf.received          u64 per tensor of the header's table:
//                                                      bytes of it written so far
//                         .lock
// Each part is the coordinator's header bytes (metadata, tensor table: the bytes the fingerprint
// hashes, so the worker checks them against the handshake's fingerprint) followed by a hole up to
// the part's size; a sync writes its stage's tensors (and the few tensors the schema does not
// name, such as rope_freqs.weight) at their own offsets. The folder is thus a GGUF model the
// loader opens unchanged (every key, every tensor's type and shape; config_from_gguf sees the
// whole table), whose other tensors read as zeros and are never touched by the stage. On a file
// system without sparse files the holes take disk space (never network bytes). A tensor's
// journal entry is written after its bytes: a resumed transfer restarts at that byte.
//
// Either way every tensor of the stage is re-hashed (XXH3-128) against the manifest at each sync;
// a damaged one is fetched again and rewritten in place. The fingerprint must be 64 hex digits.
// Writes are not fsync'ed: the hash check on every load is what makes a torn write harmless.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "transport/transport.h"

namespace meshlm::remote {

// $XDG_CACHE_HOME/meshlm, else $HOME/.cache/meshlm. Throws Error("sync") when neither is set.
std::string default_cache_dir();

// An exclusive flock on a file, released by the destructor.
class CacheLock {
 public:
  explicit CacheLock(const std::string& path);  // blocks until held; throws Error("sync")
  ~CacheLock();
  CacheLock(const CacheLock&) = delete;
  CacheLock& operator=(const CacheLock&) = delete;

 private:
  int fd_ = -1;
};

struct CacheSyncResult {
  std::string dir;                  // the model folder to load layers [begin, end) from
  uint64_t fetched_bytes = 0;       // tensor bytes received now
  uint64_t reused_bytes = 0;        // tensor bytes already in the cache (verified)
  std::unique_ptr<CacheLock> lock;  // keep until the files are mapped
};

// Makes <cache_dir>/<fingerprint> hold verified copies of the tensors of layers [begin, end),
// fetching over `conn` (the coordinator's session) only what is missing or damaged, resuming
// a partial tensor from its last byte. timeout_ms bounds each wait for a frame.
// Throws Error("sync", ...), Error("remote", ...) (the coordinator's error frame) or
// ConnectionError; what was received before a failure stays in the cache for the next try.
CacheSyncResult sync_stage_to_cache(transport::Connection& conn, const std::string& cache_dir,
                                    const std::string& fingerprint, int64_t begin, int64_t end,
                                    int timeout_ms);

}  // namespace meshlm::remote
