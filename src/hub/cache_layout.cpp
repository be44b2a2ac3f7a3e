#include "hub/cache_layout.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "hub/hub.h"

namespace fs = std::filesystem;

namespace meshlm::hub {

namespace {

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.';
}

bool is_valid_id_part(const std::string& part, size_t max_len) {
  if (part.empty() || part.size() > max_len) return false;
  for (char c : part)
    if (!is_name_char(c)) return false;
  auto edge = [](char c) { return c == '.' || c == '-'; };
  return !edge(part.front()) && !edge(part.back());
}

std::string quoted(const std::string& s) {
  std::string out = "'";
  for (unsigned char c : s) out += (c < 0x20 || c == 0x7f) ? '?' : char(c);
  return out + "'";
}

// '/'-separated segments must be non-empty and neither "." nor "..".
bool has_bad_segment(const std::string& s) {
  size_t start = 0;
  while (true) {
    size_t slash = s.find('/', start);
    std::string seg =
        s.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (seg.empty() || seg == "." || seg == "..") return true;
    if (slash == std::string::npos) return false;
    start = slash + 1;
  }
}

void write_file_atomically(const fs::path& path, const std::string& content) {
  fs::path tmp = path;
  tmp += ".tmp" + std::to_string(::getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << content;
    f.flush();
    if (!f) throw Error("hub", "cannot write '" + tmp.string() + "': " + std::strerror(errno));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw Error("hub", "cannot write '" + path.string() + "': " + ec.message());
  }
}

}  // namespace

bool is_repo_id(const std::string& s) {
  size_t slash = s.find('/');
  if (slash == std::string::npos || s.find('/', slash + 1) != std::string::npos) return false;
  std::string org = s.substr(0, slash), name = s.substr(slash + 1);
  if (!is_valid_id_part(org, 96) || !is_valid_id_part(name, 96)) return false;
  if (s.find("--") != std::string::npos || s.find("..") != std::string::npos) return false;
  return !(name.size() >= 4 && name.compare(name.size() - 4, 4, ".git") == 0);
}

void validate_repo_id(const std::string& repo_id) {
  if (!is_repo_id(repo_id))
    throw Error("hub", "invalid model id " + quoted(repo_id) +
                           ": expected ORG/NAME (letters, digits, '-', '_', '.'; no '..' or '--'; "
                           "name up to 96 characters)");
}

void validate_revision(const std::string& revision) {
  bool ok = !revision.empty() && revision.size() <= 256 && revision.front() != '/' &&
            !has_bad_segment(revision);
  for (unsigned char c : revision)
    if (c <= 0x20 || c >= 0x7f || c == '\\' || c == ':' || c == '?' || c == '*' || c == '"' ||
        c == '<' || c == '>' || c == '|')
      ok = false;
  if (!ok) throw Error("hub", "invalid revision " + quoted(revision));
}

void validate_repo_file_name(const std::string& name, const std::string& what) {
  bool ok = !name.empty() && name.size() <= 1024 && name.front() != '/' && !has_bad_segment(name);
  for (unsigned char c : name)
    if (c < 0x20 || c == 0x7f || c == '\\') ok = false;
  if (!ok)
    throw Error("hub", what + " names an unsafe file " + quoted(name) +
                           " (absolute, '..', or backslash); refusing to write it");
}

bool is_commit_sha(const std::string& s) {
  if (s.size() != 40) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

std::string blob_name_from_etag(const std::string& etag_header) {
  std::string e = etag_header;
  if (e.rfind("W/", 0) == 0) e = e.substr(2);
  if (e.size() >= 2 && e.front() == '"' && e.back() == '"') e = e.substr(1, e.size() - 2);
  bool ok = !e.empty() && e.size() <= 128;
  for (char c : e)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_'))
      ok = false;
  if (!ok) throw Error("hub", "the server sent an unusable ETag " + quoted(etag_header));
  return e;
}

RepoCache::RepoCache(const fs::path& cache_root, const std::string& repo_id) : root_(cache_root) {
  validate_repo_id(repo_id);
  folder_name_ = "models--" + repo_id.substr(0, repo_id.find('/')) + "--" +
                 repo_id.substr(repo_id.find('/') + 1);
  dir_ = root_ / folder_name_;
}

fs::path RepoCache::blob_path(const std::string& blob_name) const {
  return dir_ / "blobs" / blob_name;
}

fs::path RepoCache::snapshot_dir(const std::string& commit) const {
  if (!is_commit_sha(commit)) throw Error("hub", "invalid commit sha " + quoted(commit));
  return dir_ / "snapshots" / commit;
}

fs::path RepoCache::snapshot_file(const std::string& commit, const std::string& file) const {
  validate_repo_file_name(file, "snapshot");
  return snapshot_dir(commit) / file;
}

fs::path RepoCache::lock_path(const std::string& blob_name) const {
  return root_ / ".locks" / folder_name_ / (blob_name + ".lock");
}

std::optional<std::string> RepoCache::cached_commit(const std::string& revision) const {
  if (is_commit_sha(revision)) return revision;
  validate_revision(revision);
  std::ifstream f(dir_ / "refs" / revision);
  if (!f) return std::nullopt;
  std::string sha;
  f >> sha;
  if (!is_commit_sha(sha)) return std::nullopt;
  return sha;
}

void RepoCache::write_ref(const std::string& revision, const std::string& commit) const {
  if (revision == commit) return;
  validate_revision(revision);
  fs::path ref = dir_ / "refs" / revision;
  std::error_code ec;
  fs::create_directories(ref.parent_path(), ec);
  if (ec) throw Error("hub", "cannot create '" + ref.parent_path().string() + "': " + ec.message());
  write_file_atomically(ref, commit);  // huggingface_hub writes the bare sha, no newline
}

void RepoCache::link_snapshot_file(const std::string& commit, const std::string& file,
                                   const std::string& blob_name) const {
  fs::path link = snapshot_file(commit, file);
  std::error_code ec;
  fs::create_directories(link.parent_path(), ec);
  if (ec)
    throw Error("hub", "cannot create '" + link.parent_path().string() + "': " + ec.message());
  fs::path target = fs::path("..") / "..";
  for (size_t i = 0; i < file.size(); ++i)
    if (file[i] == '/') target /= "..";
  target = target / "blobs" / blob_name;
  fs::path tmp = link;
  tmp += ".link" + std::to_string(::getpid());
  fs::remove(tmp, ec);
  fs::create_symlink(target, tmp, ec);
  if (!ec) fs::rename(tmp, link, ec);  // replaces a stale link atomically
  if (ec) {
    fs::remove(tmp, ec);
    throw Error("hub", "cannot link '" + link.string() + "': " + ec.message());
  }
}

FileLock::FileLock(const fs::path& path) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw Error("hub", "cannot create lock '" + path.string() + "': " + std::strerror(errno));
  while (::flock(fd_, LOCK_EX) != 0) {
    if (errno == EINTR) continue;
    int err = errno;
    ::close(fd_);
    fd_ = -1;
    throw Error("hub", "cannot lock '" + path.string() + "': " + std::strerror(err));
  }
}

FileLock::~FileLock() {
  if (fd_ >= 0) {
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
  }
}

}  // namespace meshlm::hub
