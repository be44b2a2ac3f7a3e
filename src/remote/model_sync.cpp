#include "remote/model_sync.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/hex.h"
#include "core/log.h"
#include "model/config.h"
#include "model/schema.h"

namespace meshlm::remote {

using namespace transport;  // the layer below: connections, frames, messages

// ---- hashing ----

Hash128 hash_bytes(std::span<const uint8_t> bytes) {
  XXH128_hash_t h = XXH3_128bits(bytes.data(), bytes.size());
  return {h.low64, h.high64};
}

std::string hash_hex(const Hash128& h) {
  return to_hex(h.high, 16) + to_hex(h.low, 16);
}

struct StreamHash::State {
  XXH3_state_t s;
};

StreamHash::StreamHash() : state_(std::make_unique<State>()) {
  XXH3_INITSTATE(&state_->s);
  XXH3_128bits_reset(&state_->s);
}
StreamHash::~StreamHash() = default;
StreamHash::StreamHash(StreamHash&&) noexcept = default;
StreamHash& StreamHash::operator=(StreamHash&&) noexcept = default;

void StreamHash::update(std::span<const uint8_t> bytes) {
  if (!bytes.empty()) XXH3_128bits_update(&state_->s, bytes.data(), bytes.size());
}

Hash128 StreamHash::digest() const {
  XXH128_hash_t h = XXH3_128bits_digest(&state_->s);
  return {h.low64, h.high64};
}

bool is_hex_fingerprint(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// ---- progress ----

namespace {

double mib(uint64_t bytes) {
  return static_cast<double>(bytes) / 1048576.0;
}

// A peer's string, safe for a log line: printable ASCII, at most 80 characters.
std::string printable(const std::string& s) {
  std::string out;
  for (char c : s.substr(0, 80)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  if (s.size() > 80) out += "...";
  return out;
}

}  // namespace

SyncProgress::SyncProgress(std::string what, uint64_t total_bytes)
    : what_(std::move(what)), total_(total_bytes) {
  start_ = last_log_ = std::chrono::steady_clock::now();
}

void SyncProgress::add(uint64_t bytes) {
  done_ += bytes;
  auto now = std::chrono::steady_clock::now();
  if (now - last_log_ < std::chrono::seconds(1)) return;
  last_log_ = now;
  double secs = std::chrono::duration<double>(now - start_).count();
  double rate = secs > 0 ? mib(done_) / secs : 0;
  double eta = rate > 0 && total_ > done_ ? mib(total_ - done_) / rate : 0;
  log::info("[sync] {}: {:.1f} of {:.1f} MiB, {:.0f} MiB/s, ETA {:.0f} s", what_, mib(done_),
            mib(total_), rate, eta);
}

void SyncProgress::finish() {
  if (finished_) return;
  finished_ = true;
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  log::info("[sync] {}: {:.1f} MiB in {:.2f} s ({:.0f} MiB/s)", what_, mib(done_), secs,
            secs > 0 ? mib(done_) / secs : 0.0);
}

// ---- server ----

TensorServer::TensorServer(const std::string& model_dir, std::string fingerprint,
                           TensorServerOptions options)
    : model_dir_(model_dir), fingerprint_(std::move(fingerprint)), options_(std::move(options)) {
  if (!options_.counters) options_.counters = std::make_shared<SyncCounters>();
  if (options_.chunk_bytes == 0 || options_.chunk_bytes > kMaxPayload / 2) {
    throw Error("sync", "chunk size must be between 1 byte and 512 MiB");
  }
  auto path = std::filesystem::path(model_dir) / "config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("sync", "cannot read " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  config_json_ = ss.str();
  if (config_json_.size() > kMaxConfigJson) throw Error("sync", path.string() + " is too large");
  set_ = model::SafetensorsSet::open_dir(model_dir);
}

bool TensorServer::handle(Connection& conn, const Frame& frame, const std::string& peer) {
  switch (frame.type()) {
    case FrameType::ManifestRequest:
      return serve_manifest(conn, frame, peer);
    case FrameType::TensorRequest:
      return serve_tensors(conn, frame, peer);
    default:
      break;
  }
  throw Error("protocol", "not a sync frame: " + frame_type_name(frame.header.type));
}

bool TensorServer::refuse(Connection& conn, const std::string& peer, const std::string& why) {
  options_.counters->refused.fetch_add(1);
  log::warn("[sync] refused a request from {}: {}", peer, why);
  conn.send(FrameType::SyncRefused, encode_text(why));
  return false;
}

Hash128 TensorServer::tensor_hash(const model::TensorInfo& t) {
  {
    std::lock_guard lock(mutex_);
    auto it = hashes_.find(t.name);
    if (it != hashes_.end()) return it->second;
  }
  Hash128 h = hash_bytes({set_->data(t), t.nbytes});
  std::lock_guard lock(mutex_);
  hashes_[t.name] = h;
  return h;
}

bool TensorServer::serve_manifest(Connection& conn, const Frame& frame, const std::string& peer) {
  ManifestRequestMsg req = decode_manifest_request(frame.payload);
  model::ModelConfig cfg;
  try {
    cfg = model::ModelConfig::from_json(nlohmann::json::parse(config_json_));
  } catch (const std::exception& e) {
    return refuse(conn, peer,
                  std::string("the coordinator's config.json is unusable: ") + e.what());
  }
  if (req.layers.end > cfg.n_layers) {
    return refuse(conn, peer,
                  "layers [" + std::to_string(req.layers.begin) + ", " +
                      std::to_string(req.layers.end) + ") are outside a model of " +
                      std::to_string(cfg.n_layers) + " layers");
  }
  ManifestMsg m;
  m.fingerprint = fingerprint_;
  m.config_json = config_json_;
  uint64_t total = 0;
  for (const std::string& name : model::stage_tensor_names(cfg, req.layers)) {
    if (!set_->has(name)) return refuse(conn, peer, "the coordinator's model lacks " + name);
    const model::TensorInfo& t = set_->info(name);
    if (!t.dtype_supported) {
      return refuse(
          conn, peer,
          "tensor " + name + " has dtype " + t.dtype_name + ", which model sync does not carry");
    }
    m.tensors.push_back({name, t.dtype_name, t.shape, t.nbytes, tensor_hash(t)});
    total += t.nbytes;
  }
  options_.counters->manifests.fetch_add(1);
  log::info("[sync] manifest for layers {}-{} to {}: {} tensors, {:.1f} MiB", req.layers.begin,
            req.layers.end, peer, m.tensors.size(), mib(total));
  conn.send(FrameType::Manifest, encode_manifest(m));
  return true;
}

bool TensorServer::serve_tensors(Connection& conn, const Frame& frame, const std::string& peer) {
  TensorRequestMsg req = decode_tensor_request(frame.payload);
  // Validate the whole request before sending a byte.
  std::vector<const model::TensorInfo*> infos;
  uint64_t total = 0;
  for (const TensorRange& r : req.ranges) {
    const std::string& n = r.name;
    if (n.find("../") != std::string::npos || n.find('/') != std::string::npos ||
        n.find('\\') != std::string::npos || n.find('\0') != std::string::npos) {
      return refuse(conn, peer, "tensor name '" + printable(n) + "' is not a tensor name");
    }
    if (!set_->has(n)) {
      return refuse(conn, peer,
                    "tensor '" + printable(n) + "' is not part of model " +
                        fingerprint_.substr(0, 16) + "...");
    }
    const model::TensorInfo& t = set_->info(n);
    if (r.offset > t.nbytes) {
      return refuse(conn, peer,
                    "offset " + std::to_string(r.offset) + " is past the end of " + n + " (" +
                        std::to_string(t.nbytes) + " bytes)");
    }
    infos.push_back(&t);
    total += t.nbytes - r.offset;
  }
  if (req.ranges.size() > UINT32_MAX) return refuse(conn, peer, "too many ranges");

  SyncProgress progress("sending to " + peer, total);
  uint64_t sent = 0;
  for (size_t i = 0; i < req.ranges.size(); ++i) {
    const model::TensorInfo& t = *infos[i];
    const uint8_t* base = set_->data(t);
    for (uint64_t off = req.ranges[i].offset; off < t.nbytes;) {
      uint64_t n = std::min<uint64_t>(options_.chunk_bytes, t.nbytes - off);
      bool stop = false;
      if (options_.stop_after_bytes > 0 && sent_ + n >= options_.stop_after_bytes) {
        n = options_.stop_after_bytes - sent_;
        stop = true;
      }
      if (n > 0) {
        auto head = encode_tensor_data_head({static_cast<uint32_t>(i), off});
        std::span<const uint8_t> pieces[2] = {head, {base + off, static_cast<size_t>(n)}};
        conn.send_pieces(FrameType::TensorData, pieces);
        off += n;
        sent += n;
        sent_ += n;
        options_.counters->tensor_bytes.fetch_add(n);
        progress.add(n);
      }
      if (stop) {
        log::warn("[sync] test hook: stopping after {} bytes to {}", sent_, peer);
        options_.stop_after_bytes = 0;  // once
        conn.close();
        throw ConnectionError("sync stopped after " + std::to_string(sent_) + " bytes (test hook)");
      }
    }
    options_.counters->ranges.fetch_add(1);
  }
  progress.finish();
  conn.send(FrameType::TensorsDone, encode_u64(sent));
  return true;
}

}  // namespace meshlm::remote
