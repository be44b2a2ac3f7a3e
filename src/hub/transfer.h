// One file of a hub repository: its metadata from a HEAD on the resolve URL, and the resumable,
// verified download of its blob into the cache.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "hub/http_client.h"
#include "hub/hub.h"
#include "hub/progress.h"

namespace meshlm::hub {

// What a request was for, to turn an HTTP error status into a message for a person.
struct HubContext {
  std::string endpoint;
  std::string repo;
  std::string revision;
  bool has_token = false;
};

// Throws Error("hub", ...) describing a failed answer: 401/403 (private or gated: set HF_TOKEN),
// 404 (repository, revision or file), 429, anything else with the status and the hub's message.
[[noreturn]] void throw_for_status(const HttpResponse& r, const HubContext& ctx,
                                   const std::string& what);

struct FileMeta {
  std::string file;              // path in the repository
  std::string commit;            // X-Repo-Commit
  std::string blob;              // blob name: X-Linked-Etag (LFS) or ETag, unquoted
  std::optional<uint64_t> size;  // X-Linked-Size or Content-Length
  bool lfs = false;              // X-Linked-Etag present: the ETag is the content's sha256
};

// HEAD {endpoint}/{repo}/resolve/{commit}/{file}.
FileMeta fetch_file_meta(HttpClient& http, const std::string& url, const std::string& file,
                         const HubContext& ctx);

// Downloads `url` into `blob_path` (through blob_path + ".incomplete", continued with a Range
// request when present), retrying dropped connections and 5xx answers; checks the size and, for
// LFS files with a sha256 ETag, the SHA-256 before moving it into place. Returns the bytes that
// came over the network.
uint64_t download_blob(HttpClient& http, const std::string& url, const FileMeta& meta,
                       const std::filesystem::path& blob_path, const HubContext& ctx,
                       const PullOptions& options, DownloadProgress& progress);

}  // namespace meshlm::hub
