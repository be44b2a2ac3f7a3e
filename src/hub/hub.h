// Downloading a model from the Hugging Face hub into the standard Hugging Face cache, so that
// folders fetched by huggingface_hub / transformers / MLX are reused and vice versa:
//   <cache>/models--ORG--NAME/blobs/<etag>                      the file contents
//   <cache>/models--ORG--NAME/snapshots/<commit>/<file>         -> ../../blobs/<etag> (relative)
//   <cache>/models--ORG--NAME/refs/<revision>                   the commit sha of that revision
// Only the files a model needs are fetched (config, tokenizer, chat template, safetensors).
//
//   auto opts = hub::PullOptions::from_env();        // HF_ENDPOINT, HF_TOKEN, HF_HUB_CACHE, ...
//   std::string dir = hub::resolve_model_dir("Qwen/Qwen3-0.6B", opts);  // or a local folder
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"

namespace meshlm::hub {

// How progress is shown on stderr while downloading.
enum class ProgressMode {
  kAuto,  // one updating line when stderr is a terminal, periodic log lines otherwise
  kLog,   // periodic log lines
  kNone,  // nothing
};

struct PullOptions {
  std::string endpoint = "https://huggingface.co";  // HF_ENDPOINT
  std::string revision = "main";                    // branch, tag or commit sha
  std::string token;                                // HF_TOKEN; empty: anonymous
  std::string cache_dir;                            // hub cache root; empty: default_cache_dir()
  bool offline = false;                             // HF_HUB_OFFLINE=1: cache only, no network
  int max_retries = 5;          // per file, after a dropped connection or a 5xx (resumes)
  int retry_backoff_ms = 1000;  // first wait between retries; doubles, capped at 30 s
  int connect_timeout_s = 15;
  int read_timeout_s = 60;
  ProgressMode progress = ProgressMode::kAuto;

  // Endpoint, token (HF_TOKEN, else the token file huggingface-cli login writes), cache folder
  // and offline flag from the environment; revision stays "main".
  static PullOptions from_env();
};

struct PullResult {
  std::string snapshot_dir;        // absolute path of snapshots/<commit>
  std::string commit;              // 40-hex commit sha
  std::vector<std::string> files;  // the model's files in the snapshot, sorted
  int files_downloaded = 0;        // files whose bytes came over the network in this call
  uint64_t bytes_downloaded = 0;
  bool used_cache_only = false;  // offline, or the hub was unreachable and the cache was used
};

// The hub cache root: $HF_HUB_CACHE, $HUGGINGFACE_HUB_CACHE, $HF_HOME/hub,
// $XDG_CACHE_HOME/huggingface/hub, or ~/.cache/huggingface/hub.
std::string default_cache_dir();

// True when `s` has the shape of a hub model id "ORG/NAME" (allowed characters, no "..", no "--",
// no leading/trailing '.' or '-', name at most 96 characters). Throws nothing.
bool is_repo_id(const std::string& s);

// Fetches (or finds in the cache) the files of model `repo_id` at options.revision and returns
// where they are. Throws Error("hub", ...) with a message meant for a person: 401/403 (private or
// gated: set HF_TOKEN), 404 (repository or revision), network down, disk full, checksum mismatch,
// a hub that names unsafe files.
PullResult pull(const std::string& repo_id, const PullOptions& options);

// `model_arg` itself when it is an existing directory; otherwise it must be a repo id
// ("ORG/NAME"), which is pulled when needed; returns the snapshot folder.
std::string resolve_model_dir(const std::string& model_arg, const PullOptions& options);

}  // namespace meshlm::hub
