#include "hub/transfer.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "core/byte_count.h"
#include "core/hex.h"
#include "core/log.h"
#include "hub/cache_layout.h"

namespace fs = std::filesystem;

namespace meshlm::hub {

namespace {

bool is_sha256_hex(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

std::optional<uint64_t> parse_u64(const std::string& s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + uint64_t(c - '0');
  }
  return v;
}

// "bytes 100-199/1000" -> 100
std::optional<uint64_t> content_range_start(const std::string& h) {
  if (h.rfind("bytes ", 0) != 0) return std::nullopt;
  size_t dash = h.find('-', 6);
  if (dash == std::string::npos) return std::nullopt;
  return parse_u64(h.substr(6, dash - 6));
}

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) { reset(); }
  void reset() {
    if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1)
      throw Error("hub", "OpenSSL SHA-256 unavailable");
  }
  void update(const void* data, size_t n) { EVP_DigestUpdate(ctx_.get(), data, n); }
  std::string hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_.get(), md, &len);
    return to_hex(std::span<const uint8_t>(md, len));
  }

 private:
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx_;
};

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release_and_close() {
    int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

bool write_all(int fd, const char* data, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += w;
    n -= size_t(w);
  }
  return true;
}

std::string write_failure(const fs::path& path, int err) {
  std::string msg = "cannot write '" + path.string() + "': " + std::strerror(err);
  if (err == ENOSPC || err == EDQUOT)
    msg += " (disk full; the partial download is kept: free some space and run again to resume)";
  return msg;
}

void check_free_space(const fs::path& dir, uint64_t needed) {
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) != 0) return;
  uint64_t avail = uint64_t(st.f_bavail) * uint64_t(st.f_frsize);
  if (avail < needed)
    throw Error("hub", "not enough disk space in '" + dir.string() + "': need " +
                           format_bytes(double(needed)) + ", " + format_bytes(double(avail)) +
                           " free (set HF_HUB_CACHE to a folder on a bigger disk)");
}

bool retryable_status(int status) {
  return status == 429 || status >= 500;
}

}  // namespace

void throw_for_status(const HttpResponse& r, const HubContext& ctx, const std::string& what) {
  std::string code = r.header("x-error-code");
  std::string hub_msg = r.header("x-error-message");
  std::string detail = hub_msg.empty() ? "" : " (hub: " + hub_msg + ")";
  std::string page = ctx.endpoint + "/" + ctx.repo;
  std::string status = "HTTP " + std::to_string(r.status);
  if (r.status == 401 || r.status == 403) {
    if (code == "GatedRepo" || r.status == 403) {
      if (ctx.has_token)
        throw Error("hub", status + " for " + what + ": your HF_TOKEN has no access to " +
                               ctx.repo + ", a gated or private model; request access on " + page +
                               " and use a token with read permission" + detail);
      throw Error("hub", status + " for " + what + ": " + ctx.repo +
                             " is gated or private; accept its conditions on " + page +
                             ", then set HF_TOKEN to a read token (" + ctx.endpoint +
                             "/settings/tokens)" + detail);
    }
    if (ctx.has_token)
      throw Error("hub", status + " for " + what + ": " + ctx.repo +
                             " does not exist, or your HF_TOKEN is invalid or has no access" +
                             detail);
    throw Error("hub", status + " for " + what + ": " + ctx.repo +
                           " does not exist or is private/gated; if you have access, set HF_TOKEN "
                           "to a read token (" +
                           ctx.endpoint + "/settings/tokens)" + detail);
  }
  if (r.status == 404) {
    if (code == "RevisionNotFound")
      throw Error("hub", "revision '" + ctx.revision + "' not found in " + ctx.repo + detail);
    if (code == "EntryNotFound")
      throw Error("hub",
                  what + " not found in " + ctx.repo + " at '" + ctx.revision + "'" + detail);
    throw Error("hub", "model " + ctx.repo + " (revision '" + ctx.revision + "') not found on " +
                           ctx.endpoint + "; check the id" + detail);
  }
  if (r.status == 429)
    throw Error("hub", status + " for " + what + ": rate limited by the hub; wait and run again" +
                           (ctx.has_token ? "" : ", or set HF_TOKEN") + detail);
  std::string body = r.body.substr(0, 200);
  for (char& c : body)
    if (c == '\n' || c == '\r') c = ' ';
  throw Error("hub", status + " for " + what + " from " + r.url +
                         (detail.empty() && !body.empty() ? ": " + body : detail));
}

FileMeta fetch_file_meta(HttpClient& http, const std::string& url, const std::string& file,
                         const HubContext& ctx) {
  HttpResponse r = http.head(url);
  bool redirect = r.status >= 300 && r.status < 400;
  if (!(r.status == 200 || redirect)) throw_for_status(r, ctx, file);
  FileMeta m;
  m.file = file;
  m.commit = r.header("x-repo-commit");
  if (!m.commit.empty() && !is_commit_sha(m.commit))
    throw Error("hub", "the server sent an invalid X-Repo-Commit for " + file);
  std::string etag = r.header("x-linked-etag");
  m.lfs = !etag.empty();
  if (etag.empty()) etag = r.header("etag");
  if (etag.empty())
    throw Error("hub", "no ETag for " + file + " from " + ctx.endpoint +
                           " (is HF_ENDPOINT a Hugging Face hub?)");
  m.blob = blob_name_from_etag(etag);
  std::string size = m.lfs ? r.header("x-linked-size") : "";
  if (size.empty()) size = r.header("content-length");
  m.size = parse_u64(size);
  return m;
}

uint64_t download_blob(HttpClient& http, const std::string& url, const FileMeta& meta,
                       const fs::path& blob_path, const HubContext& ctx, const PullOptions& options,
                       DownloadProgress& progress) {
  fs::path part = blob_path;
  part += ".incomplete";
  std::error_code ec;
  fs::create_directories(blob_path.parent_path(), ec);
  if (ec)
    throw Error("hub", "cannot create '" + blob_path.parent_path().string() + "': " + ec.message());
  Fd fd(::open(part.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (fd.get() < 0) throw Error("hub", write_failure(part, errno));
  struct stat st {};
  ::fstat(fd.get(), &st);
  uint64_t offset = uint64_t(st.st_size);
  if (meta.size && offset > *meta.size) offset = 0;
  const bool verify_sha = meta.lfs && is_sha256_hex(meta.blob);
  Sha256 sha;

  auto restart_from_zero = [&] {
    if (::ftruncate(fd.get(), 0) != 0 || ::lseek(fd.get(), 0, SEEK_SET) < 0)
      throw Error("hub", write_failure(part, errno));
    progress.rewind(offset);
    offset = 0;
    sha.reset();
  };
  if (offset == 0) {
    restart_from_zero();
  } else {
    log::info("hub: resuming {} at {}", meta.file, format_bytes(double(offset)));
    if (verify_sha) {  // the prefix on disk is part of the hash
      std::vector<char> buf(1 << 20);
      uint64_t left = offset;
      ::lseek(fd.get(), 0, SEEK_SET);
      while (left > 0) {
        ssize_t n = ::read(fd.get(), buf.data(), std::min<uint64_t>(buf.size(), left));
        if (n <= 0) throw Error("hub", "cannot read '" + part.string() + "'");
        sha.update(buf.data(), size_t(n));
        left -= uint64_t(n);
      }
    }
    progress.add_existing(offset);
  }
  if (meta.size) check_free_space(blob_path.parent_path(), *meta.size - offset);
  if (::lseek(fd.get(), off_t(offset), SEEK_SET) < 0)
    throw Error("hub", write_failure(part, errno));

  uint64_t received = 0;
  int backoff_ms = std::max(0, options.retry_backoff_ms);
  for (int attempt = 0;; ++attempt) {
    if (attempt == 0 && meta.size && offset == *meta.size) break;  // complete, not yet moved
    const uint64_t start_offset = offset;
    std::string range = offset > 0 ? "bytes=" + std::to_string(offset) + "-" : "";
    int write_errno = 0;
    bool bad_range = false;
    bool too_long = false;
    std::string failure;
    HttpResponse r;
    try {
      r = http.get_stream(
          url, range,
          [&](const HttpResponse& resp) {
            if (resp.status == 206) {
              auto start = content_range_start(resp.header("content-range"));
              if (!start || *start != offset) {
                bad_range = true;
                return false;
              }
            } else if (offset > 0) {  // 200: the server sent the whole file again
              log::warn("hub: {} did not resume (HTTP {}); starting over", meta.file, resp.status);
              try {
                restart_from_zero();
              } catch (const Error&) {
                write_errno = errno ? errno : EIO;
                return false;
              }
            }
            return true;
          },
          [&](const char* data, size_t n) {
            if (meta.size && offset + n > *meta.size) {
              too_long = true;
              return false;
            }
            if (!write_all(fd.get(), data, n)) {
              write_errno = errno;
              return false;
            }
            if (verify_sha) sha.update(data, n);
            offset += n;
            received += n;
            progress.add(n);
            return true;
          });
    } catch (const NetworkError& e) {
      failure = e.what();
    }
    if (write_errno) throw Error("hub", write_failure(part, write_errno));
    if (too_long)
      throw Error("hub", meta.file + ": the server sent more than the announced " +
                             std::to_string(*meta.size) + " bytes");
    if (failure.empty()) {
      if (bad_range) {
        failure = "the server answered the range request with the wrong range";
        restart_from_zero();
      } else if (r.status == 416 && meta.size && offset == *meta.size) {
        break;  // already complete
      } else if (r.status == 416) {
        failure = "the server refused to resume (HTTP 416)";
        restart_from_zero();
      } else if (retryable_status(r.status)) {
        failure = "HTTP " + std::to_string(r.status) + " from " + parse_url(r.url).origin;
      } else if (r.status != 200 && r.status != 206) {
        throw_for_status(r, ctx, meta.file);
      } else if (meta.size && offset < *meta.size) {
        failure = "connection closed early";
      } else {
        break;  // complete
      }
    }
    if (attempt >= options.max_retries)
      throw NetworkError(failure + " while downloading " + meta.file + " (" +
                         format_bytes(double(offset)) + " kept in the cache; run again to resume)");
    log::warn("hub: {} ({}); retry {}/{} in {} ms from byte {}", meta.file, failure, attempt + 1,
              options.max_retries, backoff_ms, offset);
    if (offset > start_offset) attempt = std::max(-1, attempt - 1);  // progress made: not counted
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
    backoff_ms = std::min(std::max(backoff_ms * 2, 1), 30000);
  }

  if (::fsync(fd.get()) != 0 || fd.release_and_close() != 0)
    throw Error("hub", write_failure(part, errno));
  if (meta.size && offset != *meta.size)
    throw Error("hub", meta.file + ": got " + std::to_string(offset) + " bytes, expected " +
                           std::to_string(*meta.size));
  if (verify_sha) {
    std::string got = sha.hex();
    if (got != meta.blob) {
      fs::remove(part, ec);
      throw Error("hub", "checksum mismatch for " + meta.file + ": expected sha256 " + meta.blob +
                             ", got " + got + "; the corrupt download was deleted, run again");
    }
  }
  fs::rename(part, blob_path, ec);
  if (ec) throw Error("hub", "cannot move '" + part.string() + "' into place: " + ec.message());
  return received;
}

}  // namespace meshlm::hub
