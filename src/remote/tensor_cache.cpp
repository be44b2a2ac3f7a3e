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
#include "formats/gguf.h"
#include "model/config.h"
#include "model/model_files.h"
#include "model/safetensors_writer.h"
#include "model/schema.h"
#include "remote/fingerprint.h"
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

// The cache file of a schema tensor of the stage (and of its MLX parts).
std::string cache_file_for(const model::TensorDesc& d) {
  using model::TensorRole;
  if (d.layer >= 0) {
    char buf[48];
    std::snprintf(buf, sizeof(buf), "layer-%05lld.safetensors", static_cast<long long>(d.layer));
    return buf;
  }
  switch (d.role) {
    case TensorRole::Embed: return "embed.safetensors";
    case TensorRole::FinalNorm: return "norm.safetensors";
    case TensorRole::LmHead: return "lm-head.safetensors";
    default: break;
  }
  fail("no cache file for tensor " + d.name);
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
  size_t entry = 0;          // manifest index
  int fd = -1;               // the file it goes to
  fs::path path;             // (for messages)
  uint64_t file_offset = 0;  // of the tensor's first byte in its file
  uint64_t next = 0;         // next tensor byte expected
  StreamHash hash;           // of bytes [0, next)
  // GGUF: where the tensor's count of bytes received is kept (-1: none).
  int journal_fd = -1;
  uint64_t journal_offset = 0;
};

ManifestMsg fetch_manifest(Connection& conn, const std::string& fingerprint, int64_t begin,
                           int64_t end, int timeout_ms) {
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
  return m;
}

// The manifest must list exactly the tensors the stage needs (model_sync.h stage_stored_tensors).
void check_names(const ManifestMsg& m, const model::ModelConfig& cfg, int64_t begin, int64_t end,
                 const std::vector<std::string>& gguf_extras) {
  if (end > cfg.n_layers) fail("layers past the model's " + std::to_string(cfg.n_layers));
  std::map<std::string, std::string> dtypes;
  for (const auto& e : m.tensors) dtypes[e.name] = e.dtype;
  const auto dtype_of = [&](const std::string& name) {
    auto it = dtypes.find(name);
    return it == dtypes.end() ? std::string() : it->second;
  };
  auto want = stage_stored_tensors(cfg, {begin, end}, m.format, dtype_of, gguf_extras);
  std::set<std::string> want_set(want.begin(), want.end());
  std::set<std::string> got;
  for (const auto& e : m.tensors) got.insert(e.name);
  if (got != want_set) {
    fail("the manifest lists " + std::to_string(got.size()) + " tensors, layers " +
         std::to_string(begin) + "-" + std::to_string(end) + " need " +
         std::to_string(want_set.size()) + " others");
  }
}

// Opens (or starts) a group's file and appends to `pending` what it lacks; returns the verified
// bytes already there.
uint64_t check_group(const fs::path& dir, Group& g, const ManifestMsg& m,
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
    p.entry = g.entries[k];
    p.fd = g.fd.get();
    p.path = dir / g.file;
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

void write_journal(const Pending& p, uint64_t value) {
  if (p.journal_fd < 0) return;
  uint8_t count[8];
  for (int i = 0; i < 8; ++i) count[i] = static_cast<uint8_t>(value >> (8 * i));
  pwrite_all(p.journal_fd, count, 8, p.journal_offset, p.path);
}

// Asks the coordinator for the pending tensors and writes what arrives, checking each tensor's
// hash as it completes. A damaged tensor fails the sync (after the last frame of the transfer),
// unless it resumed an earlier transfer:
// then the bytes already in the cache may be what was damaged, and it goes into `retry` (its
// journal reset) to be fetched whole. Returns the bytes received.
uint64_t receive_once(Connection& conn, const ManifestMsg& m, std::vector<Pending>& pending,
                      int64_t begin, int64_t end, int timeout_ms, std::vector<size_t>& retry) {
  TensorRequestMsg req;
  uint64_t total = 0;
  std::vector<uint64_t> started;  // where each transfer began
  for (const Pending& p : pending) {
    req.ranges.push_back({m.tensors[p.entry].name, p.next});
    total += m.tensors[p.entry].nbytes - p.next;
    started.push_back(p.next);
  }
  log::info("[sync] layers {}-{}: fetching {:.1f} MiB ({} tensors) from the coordinator", begin,
            end, total / 1048576.0, pending.size());
  conn.send(FrameType::TensorRequest, encode_tensor_request(req));
  SyncProgress progress(
      "receiving layers " + std::to_string(begin) + "-" + std::to_string(end) + " from " + conn.peer(),
      total);
  uint64_t fetched = 0;
  size_t complete = 0;
  std::string damaged;  // the first tensor that arrived damaged
  Frame f;  // its payload buffer is reused from one tensor-data frame to the next
  for (;;) {
    recv_checked_into(conn, f, timeout_ms);
    if (f.type() == FrameType::TensorsDone) {
      decode_u64(f.payload);
      if (!damaged.empty()) fail(damaged);
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
    pwrite_all(p.fd, data.data(), data.size(), p.file_offset + p.next, p.path);
    p.hash.update(data);
    p.next += data.size();
    fetched += data.size();
    progress.add(data.size());
    const bool done = p.next == e.nbytes;
    const bool good = !done || p.hash.digest() == e.hash;
    // After the data, so that a journal never counts bytes that were not written; a damaged
    // tensor starts again from byte 0.
    write_journal(p, good ? p.next : 0);
    if (done) {
      ++complete;
      if (good) continue;
      if (started[head.range] > 0) {
        log::warn("[sync] {} is damaged after resuming at byte {}; fetching it whole", e.name,
                  started[head.range]);
        retry.push_back(head.range);
        continue;
      }
      // Fail once the coordinator has sent everything (it then reads our error frame rather
      // than a broken connection); the other tensors are kept.
      if (damaged.empty())
        damaged = "tensor " + e.name + " arrived damaged: XXH3-128 " + hash_hex(p.hash.digest()) +
                  ", the manifest says " + hash_hex(e.hash) + " (it will be fetched again)";
    }
  }
  if (!damaged.empty()) fail(damaged);
  progress.finish();
  return fetched;
}

uint64_t receive(Connection& conn, const ManifestMsg& m, std::vector<Pending>& pending,
                 int64_t begin, int64_t end, int timeout_ms) {
  std::vector<size_t> retry;
  uint64_t fetched = receive_once(conn, m, pending, begin, end, timeout_ms, retry);
  if (retry.empty()) return fetched;
  std::vector<Pending> again;
  for (size_t i : retry) {
    Pending p;
    p.entry = pending[i].entry;
    p.fd = pending[i].fd;
    p.path = pending[i].path;
    p.file_offset = pending[i].file_offset;
    p.journal_fd = pending[i].journal_fd;
    p.journal_offset = pending[i].journal_offset;
    again.push_back(std::move(p));
  }
  retry.clear();
  fetched += receive_once(conn, m, again, begin, end, timeout_ms, retry);  // from byte 0: no retry
  return fetched;
}

// ---- Hugging Face and MLX folders: safetensors files by layer ----

void sync_folder(Connection& conn, const fs::path& dir, const ManifestMsg& m, int64_t begin,
                 int64_t end, int timeout_ms, CacheSyncResult& result) {
  model::ModelConfig cfg;
  try {
    cfg = model::ModelConfig::from_json(nlohmann::json::parse(m.config_json));
  } catch (const std::exception& e) {
    fail(std::string("the coordinator's config.json is unusable: ") + e.what());
  }
  check_names(m, cfg, begin, end, {});
  // Which schema tensor each name belongs to (an MLX matrix's scales and biases: its own).
  std::map<std::string, model::TensorDesc> owner;
  for (const model::TensorDesc& d : model::stage_tensors(cfg, {begin, end})) {
    owner[d.name] = d;
    if (!model::module_path(d).empty()) {
      owner[model::quant_part_name(d, model::QuantPart::Scales)] = d;
      owner[model::quant_part_name(d, model::QuantPart::Biases)] = d;
    }
  }
  for (const ManifestEntry& e : m.tensors) {
    const auto type = formats::from_name(e.dtype);
    if (e.dtype != "U32" && !(type && formats::info(*type).plain()))
      fail("tensor " + e.name + " has dtype " + e.dtype + ", which a safetensors file cannot hold");
  }
  if (read_small_file(dir / "config.json") != m.config_json) {
    write_file_atomically(dir / "config.json", m.config_json);
  }

  // Group the tensors into files, in name order within each file.
  std::map<std::string, std::vector<size_t>> by_file;
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    auto it = owner.find(m.tensors[i].name);
    if (it == owner.end()) fail("tensor " + m.tensors[i].name + " is not one of the stage's");
    by_file[cache_file_for(it->second)].push_back(i);
  }
  std::vector<Group> groups;
  groups.reserve(by_file.size());  // check_group keeps pointers into them
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
  for (Group& g : groups) result.reused_bytes += check_group(dir, g, m, pending);
  if (!pending.empty()) result.fetched_bytes += receive(conn, m, pending, begin, end, timeout_ms);

  // Complete files take their final names; the index lists this stage's tensors.
  std::error_code ec;
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
}

// ---- GGUF models: each part as a sparse file of the coordinator's layout ----

uint64_t read_u64_at(int fd, uint64_t offset) {
  uint8_t b[8] = {};
  ssize_t n = ::pread(fd, b, 8, static_cast<off_t>(offset));
  if (n != 8) return 0;
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{b[i]} << (8 * i);
  return v;
}

void sync_gguf(Connection& conn, const fs::path& dir, const std::string& fingerprint_hex,
               const ManifestMsg& m, int64_t begin, int64_t end, int timeout_ms,
               CacheSyncResult& result) {
  const size_t n_parts = m.gguf_parts.size();
  std::vector<fs::path> paths;
  for (size_t k = 0; k < n_parts; ++k) {
    paths.push_back(n_parts == 1 ? dir / "model.gguf"
                                 : fs::path(formats::gguf_split_path((dir / "model").string(),
                                                                     int(k), int(n_parts))));
  }
  auto journal_of = [](const fs::path& p) {
    fs::path j = p;
    j += ".received";
    return j;
  };
  // Each part: the coordinator's header, then holes up to its size (a sparse file on file
  // systems that have them: only the tensors written take disk space).
  std::error_code ec;
  for (size_t k = 0; k < n_parts; ++k) {
    const GgufPartHead& part = m.gguf_parts[k];
    const std::vector<uint8_t> header(part.header.begin(), part.header.end());
    if (fs::exists(paths[k], ec) && fs::file_size(paths[k], ec) == part.file_size && !ec &&
        header_matches(paths[k], header)) {
      continue;
    }
    fs::remove(journal_of(paths[k]), ec);
    Fd fd(::open(paths[k].c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (fd.get() < 0) fail("cannot create " + paths[k].string() + ": " + errno_text());
    pwrite_all(fd.get(), header.data(), header.size(), 0, paths[k]);
    if (::ftruncate(fd.get(), static_cast<off_t>(part.file_size)) != 0)
      fail("cannot size " + paths[k].string() + ": " + errno_text());
  }
  // The headers must be the ones the handshake's fingerprint hashes (remote/fingerprint.h).
  std::string got_fingerprint;
  try {
    got_fingerprint = fingerprint(dir.string());
  } catch (const std::exception& e) {
    got_fingerprint = std::string("unreadable (") + e.what() + ")";
  }
  if (got_fingerprint != fingerprint_hex) {
    for (const fs::path& p : paths) {
      fs::remove(p, ec);
      fs::remove(journal_of(p), ec);
    }
    fail("the coordinator's GGUF headers do not match its model fingerprint: they give " +
         got_fingerprint.substr(0, 80));
  }
  const formats::GgufModel model = formats::GgufModel::open(dir.string());
  const model::ModelConfig cfg = model::config_from_gguf(model);
  check_names(m, cfg, begin, end, gguf_extra_tensors(cfg, model));

  // Where each tensor lies: its part and its index in the part's table (its journal slot).
  struct Where {
    size_t part;
    size_t index;
    const formats::GgufTensor* t;
  };
  std::map<std::string, Where> where;
  for (size_t k = 0; k < n_parts; ++k) {
    const auto& tensors = model.parts()[k].tensors();
    for (size_t i = 0; i < tensors.size(); ++i) where[tensors[i].name] = {k, i, &tensors[i]};
  }
  std::vector<Fd> fds(n_parts), journals(n_parts);
  for (size_t k = 0; k < n_parts; ++k) {
    fds[k] = Fd(::open(paths[k].c_str(), O_RDWR | O_CLOEXEC));
    if (fds[k].get() < 0) fail("cannot open " + paths[k].string() + ": " + errno_text());
    const fs::path jp = journal_of(paths[k]);
    const uint64_t jsize = 8 * uint64_t(model.parts()[k].tensors().size());
    journals[k] = Fd(::open(jp.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (journals[k].get() < 0) fail("cannot open " + jp.string() + ": " + errno_text());
    if (fs::file_size(jp, ec) != jsize || ec) {
      if (::ftruncate(journals[k].get(), 0) != 0 ||
          ::ftruncate(journals[k].get(), static_cast<off_t>(jsize)) != 0)
        fail("cannot size " + jp.string() + ": " + errno_text());
    }
  }

  std::vector<Pending> pending;
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    const ManifestEntry& e = m.tensors[i];
    auto it = where.find(e.name);
    if (it == where.end()) fail("the coordinator's GGUF header has no tensor " + e.name);
    const formats::GgufTensor& t = *it->second.t;
    if (formats::name(t.type) != e.dtype || t.shape() != e.shape || t.nbytes != e.nbytes)
      fail("the manifest's " + e.name + " (" + e.dtype + ") is not the GGUF header's (" +
           std::string(formats::name(t.type)) + ")");
    Pending p;
    p.entry = i;
    p.fd = fds[it->second.part].get();
    p.path = paths[it->second.part];
    p.file_offset = t.file_offset;
    p.journal_fd = journals[it->second.part].get();
    p.journal_offset = 8 * uint64_t(it->second.index);
    const uint64_t received = read_u64_at(p.journal_fd, p.journal_offset);
    if (e.nbytes == 0) {
      if (hash_bytes({}) != e.hash) fail("the manifest's hash of empty tensor " + e.name + " is wrong");
      continue;
    }
    if (received == e.nbytes) {
      if (hash_bytes(t.bytes()) == e.hash) {
        result.reused_bytes += e.nbytes;
        continue;
      }
      log::warn("[sync] {} in {} is damaged (hash mismatch); fetching it again", e.name,
                p.path.filename().string());
    } else if (received > 0 && received < e.nbytes) {  // the tensor the last transfer stopped in
      p.next = received;
      p.hash.update({t.data, p.next});
      log::info("[sync] resuming {} at byte {} of {}", e.name, p.next, e.nbytes);
    }
    pending.push_back(std::move(p));
  }
  if (!pending.empty()) result.fetched_bytes += receive(conn, m, pending, begin, end, timeout_ms);
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

  ManifestMsg m = fetch_manifest(conn, fingerprint, begin, end, timeout_ms);
  if (m.format == SyncFormat::Gguf) {
    sync_gguf(conn, dir, fingerprint, m, begin, end, timeout_ms, result);
  } else {
    sync_folder(conn, dir, m, begin, end, timeout_ms, result);
  }
  log::info("[sync] layers {}-{} ready in {}: {:.1f} MiB reused, {:.1f} MiB fetched", begin, end,
            dir.string(), result.reused_bytes / 1048576.0, result.fetched_bytes / 1048576.0);
  return result;
}

}  // namespace meshlm::remote
