// The Hugging Face hub cache layout of one model repository, and the checks that keep names
// coming from the command line or from the server inside it.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace meshlm::hub {

// Throws Error("hub", ...) unless `repo_id` is a valid "ORG/NAME" (see is_repo_id).
void validate_repo_id(const std::string& repo_id);
// A branch, tag ("v1.0", "refs/pr/3") or commit: printable ASCII without spaces, backslashes,
// "..", empty path segments or a leading '/'. Throws Error("hub", ...).
void validate_revision(const std::string& revision);
// A file name from the server: relative, '/'-separated, no "." / ".." / empty segments, no
// backslash, no control characters. Throws Error("hub", ...) naming `what`.
void validate_repo_file_name(const std::string& name, const std::string& what);
bool is_commit_sha(const std::string& s);  // 40 lowercase hex digits
// An ETag header value made into a blob name: quotes and a weak "W/" prefix removed; only
// [A-Za-z0-9_-], 1..128 characters. Throws Error("hub", ...) otherwise.
std::string blob_name_from_etag(const std::string& etag_header);

class RepoCache {
 public:
  RepoCache(const std::filesystem::path& cache_root, const std::string& repo_id);

  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path blob_path(const std::string& blob_name) const;
  std::filesystem::path snapshot_dir(const std::string& commit) const;
  std::filesystem::path snapshot_file(const std::string& commit, const std::string& file) const;
  // huggingface_hub's lock for a blob: <cache>/.locks/models--ORG--NAME/<blob>.lock
  std::filesystem::path lock_path(const std::string& blob_name) const;

  // The commit a revision points to in the cache: the revision itself when it is a commit sha,
  // otherwise the content of refs/<revision> (when present and valid).
  std::optional<std::string> cached_commit(const std::string& revision) const;
  // Writes refs/<revision> (atomically) unless the revision is the commit itself.
  void write_ref(const std::string& revision, const std::string& commit) const;
  // snapshots/<commit>/<file> -> relative path to blobs/<blob_name>, replacing what was there.
  void link_snapshot_file(const std::string& commit, const std::string& file,
                          const std::string& blob_name) const;

 private:
  std::filesystem::path root_;
  std::filesystem::path dir_;
  std::string folder_name_;
};

// An exclusive advisory lock (flock) on a file, created when missing; the same lock files and
// kind of lock huggingface_hub's filelock takes, so both never write one blob at the same time.
class FileLock {
 public:
  explicit FileLock(const std::filesystem::path& path);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace meshlm::hub
