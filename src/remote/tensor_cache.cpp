#include "remote/tensor_cache.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/log.h"
#include "core/mmap_file.h"
#include "model/config.h"
#include "model/safetensors_writer.h"
#include "model/schema.h"
#include "remote/model_sync.h"

namespace meshlm::remote {

using namespace transport;  // the layer below: connections, frames, messages

namespace {

namespace fs = std::filesystem;

std::string errno_text() {
  return std::strerror(errno);
}

[[noreturn]] void fail(const std::string& message) {
  throw Error("sync", message);
}

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

void pwrite_all(int fd, const uint8_t* data, size_t n, uint64_t offset, const fs::path& path) {
  while (n > 0) {
    ssize_t w = ::pwrite(fd, data, n, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("cannot write " + path.string() + ": " + errno_text());
    }
    data += w;
    n -= static_cast<size_t>(w);
    offset += static_cast<uint64_t>(w);
  }
}

// Replaces `path` with `bytes` (write to a temporary, then rename).
void write_file_atomically(const fs::path& path, const std::string& bytes) {
  fs::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) fail("cannot write " + tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) fail("cannot rename " + tmp.string() + ": " + ec.message());
}

std::string read_small_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The cache file that holds tensor `name` (one of our own stage_tensor_names).
std::string cache_file_for(const std::string& name) {
  using model::TensorRole;
  if (const int64_t layer = model::layer_of(name); layer >= 0) {
    char buf[48];
    std::snprintf(buf, sizeof(buf), "layer-%05lld.safetensors", static_cast<long long>(layer));
    return buf;
  }
  if (name == model::tensor_name(TensorRole::Embed)) return "embed.safetensors";
  if (name == model::tensor_name(TensorRole::FinalNorm)) return "norm.safetensors";
  if (name == model::tensor_name(TensorRole::LmHead)) return "lm-head.safetensors";
  auto h = hash_bytes({reinterpret_cast<const uint8_t*>(name.data()), name.size()});
  return "tensor-" + hash_hex(h).substr(0, 16) + ".safetensors";
}

// One cache file: its tensors in data order (sorted by name) and its fixed header.
struct Group {
  std::string file;
  std::vector<size_t> entries;   // manifest indices
  std::vector<uint64_t> starts;  // data offsets (relative to the end of the header)
  std::vector<uint8_t> header;   // u64 length + JSON, padded to a multiple of 8
  uint64_t data_bytes = 0;
  bool partial = false;  // being written as file + ".partial"
  Fd fd;
};

std::vector<uint8_t> make_header(const Group& g, const ManifestMsg& m) {
  nlohmann::json j = nlohmann::json::object();
  j["__metadata__"] = {{"format", "pt"}, {"meshlm", "model sync cache"}};
  for (size_t k = 0; k < g.entries.size(); ++k) {
    const ManifestEntry& e = m.tensors[g.entries[k]];
    j[e.name] = {{"dtype", e.dtype},
                 {"shape", e.shape},
                 {"data_offsets", {g.starts[k], g.starts[k] + e.nbytes}}};
  }
  std::string text = j.dump();
  while (text.size() % 8 != 0) text.push_back(' ');
  std::vector<uint8_t> out(8 + text.size());
  uint64_t len = text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(len >> (8 * i));
  std::memcpy(out.data() + 8, text.data(), text.size());
  return out;
}

bool header_matches(const fs::path& path, const std::vector<uint8_t>& header) {
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> got(header.size());
  if (!in.read(reinterpret_cast<char*>(got.data()), static_cast<std::streamsize>(got.size()))) {
    return false;
  }
  return got == header;
}

// A tensor range still to fetch, and the state of its transfer.
struct Pending {
  size_t group = 0;
  size_t entry = 0;          // manifest index
  uint64_t file_offset = 0;  // of the tensor's first byte in its file
  uint64_t next = 0;         // next tensor byte expected
  StreamHash hash;           // of bytes [0, next)
};

ManifestMsg fetch_manifest(Connection& conn, const std::string& fingerprint, int64_t begin,
                           int64_t end, int timeout_ms, model::ModelConfig& cfg) {
  conn.send(FrameType::ManifestRequest, encode_manifest_request({begin, end}));
  Frame f = recv_checked(conn, timeout_ms);
  if (f.type() == FrameType::SyncRefused) {
    fail("the coordinator refused the manifest request: " + decode_text(f.payload));
  }
  if (f.type() != FrameType::Manifest) {
    throw Error("protocol", "expected a manifest, got " + frame_type_name(f.header.type));
  }
  ManifestMsg m = decode_manifest(f.payload);
  if (m.fingerprint != fingerprint) fail("the manifest is for another model");
  try {
    cfg = model::ModelConfig::from_json(nlohmann::json::parse(m.config_json));
  } catch (const std::exception& e) {
    fail(std::string("the coordinator's config.json is unusable: ") + e.what());
  }
  if (end > cfg.n_layers) fail("layers past the model's " + std::to_string(cfg.n_layers));
  auto want = model::stage_tensor_names(cfg, {begin, end});
  std::set<std::string> want_set(want.begin(), want.end());
  std::set<std::string> got;
  for (const auto& e : m.tensors) got.insert(e.name);
  if (got != want_set) {
    fail("the manifest lists " + std::to_string(got.size()) + " tensors, layers " +
         std::to_string(begin) + "-" + std::to_string(end) + " need " +
         std::to_string(want_set.size()) + " others");
  }
  return m;
}

// Opens (or starts) a group's file and appends to `pending` what it lacks; returns the verified
// bytes already there.
uint64_t check_group(const fs::path& dir, size_t gi, Group& g, const ManifestMsg& m,
                     std::vector<Pending>& pending) {
  const fs::path final_path = dir / g.file;
  fs::path part_path = final_path;
  part_path += ".partial";
  const uint64_t full = g.header.size() + g.data_bytes;
  std::error_code ec;
  uint64_t prefix = 0;  // data bytes present (not yet verified)
  fs::path path;
  if (fs::exists(final_path, ec)) {
    if (fs::file_size(final_path, ec) == full && !ec && header_matches(final_path, g.header)) {
      path = final_path;
      prefix = g.data_bytes;
    } else {
      log::warn("[sync] {} does not match the manifest; fetching it again", final_path.string());
      fs::remove(final_path, ec);
    }
  }
  if (path.empty() && fs::exists(part_path, ec)) {
    uint64_t size = fs::file_size(part_path, ec);
    if (!ec && size >= g.header.size() && size <= full && header_matches(part_path, g.header)) {
      path = part_path;
      prefix = size - g.header.size();
    } else {
      fs::remove(part_path, ec);
    }
  }
  g.partial = path != final_path;
  if (path.empty()) {
    path = part_path;
    g.fd = Fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (g.fd.get() < 0) fail("cannot create " + path.string() + ": " + errno_text());
    pwrite_all(g.fd.get(), g.header.data(), g.header.size(), 0, path);
  } else {
    g.fd = Fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (g.fd.get() < 0) fail("cannot open " + path.string() + ": " + errno_text());
  }

  std::unique_ptr<MappedFile> map;
  if (prefix > 0) map = std::make_unique<MappedFile>(path.string());
  uint64_t reused = 0;
  for (size_t k = 0; k < g.entries.size(); ++k) {
    const ManifestEntry& e = m.tensors[g.entries[k]];
    const uint64_t start = g.starts[k], end = start + e.nbytes;
    Pending p;
    p.group = gi;
    p.entry = g.entries[k];
    p.file_offset = g.header.size() + start;
    if (end <= prefix) {
      const uint8_t* data = map->data() + p.file_offset;
      if (hash_bytes({data, e.nbytes}) == e.hash) {
        reused += e.nbytes;
        continue;
      }
      log::warn("[sync] {} in {} is damaged (hash mismatch); fetching it again", e.name,
                path.filename().string());
    } else if (start < prefix) {  // the tensor the last transfer stopped in
      p.next = prefix - start;
      p.hash.update({map->data() + p.file_offset, p.next});
      log::info("[sync] resuming {} at byte {} of {}", e.name, p.next, e.nbytes);
    }
    if (e.nbytes == 0) {
      if (hash_bytes({}) != e.hash)
        fail("the manifest's hash of empty tensor " + e.name + " is wrong");
      continue;
    }
    pending.push_back(std::move(p));
  }
  return reused;
}

}  // namespace

std::string default_cache_dir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg && xdg[0] == '/') return (fs::path(xdg) / "meshlm").string();
  const char* home = std::getenv("HOME");
  if (home && home[0] != '\0') return (fs::path(home) / ".cache" / "meshlm").string();
  fail("no cache folder: set XDG_CACHE_HOME or HOME, or pass one");
}

CacheLock::CacheLock(const std::string& path) {
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("cannot open " + path + ": " + errno_text());
  while (::flock(fd_, LOCK_EX) != 0) {
    if (errno == EINTR) continue;
    std::string why = errno_text();
    ::close(fd_);
    fail("cannot lock " + path + ": " + why);
  }
}

CacheLock::~CacheLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

CacheSyncResult sync_stage_to_cache(Connection& conn, const std::string& cache_dir,
                                    const std::string& fingerprint, int64_t begin, int64_t end,
                                    int timeout_ms) {
  if (!is_hex_fingerprint(fingerprint)) {
    fail("the coordinator's model fingerprint is not 64 hex digits; cannot name a cache folder");
  }
  if (begin < 0 || end <= begin) fail("empty layer range");
  CacheSyncResult result;
  const fs::path dir = fs::path(cache_dir) / fingerprint;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("cannot create " + dir.string() + ": " + ec.message());
  result.dir = dir.string();
  result.lock = std::make_unique<CacheLock>((dir / ".lock").string());

  model::ModelConfig cfg;
  ManifestMsg m = fetch_manifest(conn, fingerprint, begin, end, timeout_ms, cfg);
  if (read_small_file(dir / "config.json") != m.config_json) {
    write_file_atomically(dir / "config.json", m.config_json);
  }

  // Group the tensors into files, in name order within each file.
  std::map<std::string, std::vector<size_t>> by_file;
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    by_file[cache_file_for(m.tensors[i].name)].push_back(i);
  }
  std::vector<Group> groups;
  for (auto& [file, entries] : by_file) {
    Group g;
    g.file = file;
    std::sort(entries.begin(), entries.end(),
              [&](size_t a, size_t b) { return m.tensors[a].name < m.tensors[b].name; });
    g.entries = entries;
    for (size_t e : entries) {
      g.starts.push_back(g.data_bytes);
      g.data_bytes += m.tensors[e].nbytes;
    }
    g.header = make_header(g, m);
    groups.push_back(std::move(g));
  }

  std::vector<Pending> pending;
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    result.reused_bytes += check_group(dir, gi, groups[gi], m, pending);
  }

  if (!pending.empty()) {
    TensorRequestMsg req;
    uint64_t total = 0;
    for (const Pending& p : pending) {
      req.ranges.push_back({m.tensors[p.entry].name, p.next});
      total += m.tensors[p.entry].nbytes - p.next;
    }
    log::info(
        "[sync] layers {}-{}: {:.1f} MiB in the cache, fetching {:.1f} MiB ({} tensors) "
        "from the coordinator",
        begin, end, result.reused_bytes / 1048576.0, total / 1048576.0, pending.size());
    conn.send(FrameType::TensorRequest, encode_tensor_request(req));
    SyncProgress progress("receiving layers " + std::to_string(begin) + "-" + std::to_string(end) +
                              " from " + conn.peer(),
                          total);
    size_t complete = 0;
    Frame f;  // its payload buffer is reused from one tensor-data frame to the next
    for (;;) {
      recv_checked_into(conn, f, timeout_ms);
      if (f.type() == FrameType::TensorsDone) {
        decode_u64(f.payload);
        if (complete != pending.size()) {
          fail("the coordinator finished after " + std::to_string(complete) + " of " +
               std::to_string(pending.size()) + " tensors");
        }
        break;
      }
      if (f.type() == FrameType::SyncRefused) {
        fail("the coordinator refused the tensor request: " + decode_text(f.payload));
      }
      if (f.type() != FrameType::TensorData) {
        throw Error("protocol", "unexpected " + frame_type_name(f.header.type) + " frame in sync");
      }
      std::span<const uint8_t> data;
      TensorDataHead head = decode_tensor_data(f.payload, data);
      if (head.range >= pending.size()) {
        throw Error("protocol", "tensor data for range " + std::to_string(head.range) + " of " +
                                    std::to_string(pending.size()));
      }
      Pending& p = pending[head.range];
      const ManifestEntry& e = m.tensors[p.entry];
      if (head.offset != p.next) {
        throw Error("protocol", "tensor data for " + e.name + " at byte " +
                                    std::to_string(head.offset) + ", expected " +
                                    std::to_string(p.next));
      }
      if (data.size() > e.nbytes - p.next) {
        throw Error("protocol", "tensor data runs past the end of " + e.name);
      }
      Group& g = groups[p.group];
      pwrite_all(g.fd.get(), data.data(), data.size(), p.file_offset + p.next, dir / g.file);
      p.hash.update(data);
      p.next += data.size();
      result.fetched_bytes += data.size();
      progress.add(data.size());
      if (p.next == e.nbytes) {
        if (p.hash.digest() != e.hash) {
          fail("tensor " + e.name + " arrived damaged: XXH3-128 " + hash_hex(p.hash.digest()) +
               ", the manifest says " + hash_hex(e.hash) + " (it will be fetched again)");
        }
        ++complete;
      }
    }
    progress.finish();
  }

  // Complete files take their final names; the index lists this stage's tensors.
  std::map<std::string, std::string> weight_map;
  uint64_t total_size = 0;
  for (Group& g : groups) {
    g.fd.reset();
    if (g.partial) {
      fs::path final_path = dir / g.file;
      fs::path part_path = final_path;
      part_path += ".partial";
      fs::rename(part_path, final_path, ec);
      if (ec) fail("cannot rename " + part_path.string() + ": " + ec.message());
    }
    for (size_t e : g.entries) {
      weight_map[m.tensors[e].name] = g.file;
      total_size += m.tensors[e].nbytes;
    }
  }
  fs::path tmp_index = dir / "model.safetensors.index.json.tmp";
  model::write_safetensors_index(tmp_index.string(), total_size, weight_map);
  fs::rename(tmp_index, dir / "model.safetensors.index.json", ec);
  if (ec) fail("cannot rename " + tmp_index.string() + ": " + ec.message());
  log::info("[sync] layers {}-{} ready in {}: {:.1f} MiB reused, {:.1f} MiB fetched", begin, end,
            dir.string(), result.reused_bytes / 1048576.0, result.fetched_bytes / 1048576.0);
  return result;
}

}  // namespace meshlm::remote
