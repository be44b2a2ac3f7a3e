#include "remote/model_sync.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/hex.h"
#include "core/log.h"
#include "formats/gguf.h"
#include "model/config.h"
#include "model/model_files.h"
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

// ---- the tensors of a stage ----

std::vector<std::string> stage_stored_tensors(
    const model::ModelConfig& cfg, model::LayerRange layers, SyncFormat format,
    const std::function<std::string(const std::string&)>& stored_dtype,
    const std::vector<std::string>& gguf_extras) {
  std::vector<std::string> out;
  for (const model::TensorDesc& d : model::stage_tensors(cfg, layers)) {
    if (format == SyncFormat::Gguf) {
      if (d.expert <= 0) out.push_back(d.gguf_name);  // a layer's experts are one stacked tensor
      continue;
    }
    out.push_back(d.name);
    const bool matrix = d.kind == model::TensorKind::Matrix || d.kind == model::TensorKind::Embedding;
    if (matrix && stored_dtype(d.name) == "U32") {  // MLX: codes, then scales and biases
      out.push_back(model::quant_part_name(d, model::QuantPart::Scales));
      out.push_back(model::quant_part_name(d, model::QuantPart::Biases));
    }
  }
  if (format == SyncFormat::Gguf) out.insert(out.end(), gguf_extras.begin(), gguf_extras.end());
  return out;
}

std::vector<std::string> gguf_extra_tensors(const model::ModelConfig& cfg,
                                            const formats::GgufModel& model) {
  std::set<std::string> known;
  for (const model::TensorDesc& d : model::model_tensors(cfg)) known.insert(d.gguf_name);
  std::vector<std::string> out;
  for (const formats::GgufTensor* t : model.tensors())
    if (!known.count(t->name)) out.push_back(t->name);
  return out;
}

// ---- server ----

TensorServer::TensorServer(const std::string& model_path, std::string fingerprint,
                           TensorServerOptions options)
    : fingerprint_(std::move(fingerprint)), options_(std::move(options)) {
  if (!options_.counters) options_.counters = std::make_shared<SyncCounters>();
  if (options_.chunk_bytes == 0 || options_.chunk_bytes > kMaxPayload / 2) {
    throw Error("sync", "chunk size must be between 1 byte and 512 MiB");
  }
  if (model::detect_model_format(model_path) == model::ModelFormat::Gguf) {
    format_ = SyncFormat::Gguf;
    gguf_ = std::make_unique<formats::GgufModel>(formats::GgufModel::open(model_path));
    config_ = model::config_from_gguf(*gguf_);
    for (const formats::GgufFile& part : gguf_->parts()) {
      const auto bytes = part.bytes();
      if (part.data_offset() > kMaxGgufHeader)
        throw Error("sync", part.name() + ": a GGUF header of " +
                                std::to_string(part.data_offset()) + " bytes is too large to ship");
      gguf_parts_.push_back(
          {std::string(reinterpret_cast<const char*>(bytes.data()), size_t(part.data_offset())),
           uint64_t(bytes.size())});
    }
    gguf_extras_ = gguf_extra_tensors(config_, *gguf_);
    return;
  }
  // A Hugging Face or MLX folder: config.json's bytes and the safetensors files.
  auto path = std::filesystem::path(model_path) / "config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("sync", "cannot read " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  config_json_ = ss.str();
  if (config_json_.size() > kMaxConfigJson) throw Error("sync", path.string() + " is too large");
  config_ = model::ModelConfig::from_json(nlohmann::json::parse(config_json_));
  set_ = model::SafetensorsSet::open_dir(model_path);
}

TensorServer::~TensorServer() = default;

std::optional<TensorServer::Stored> TensorServer::find(const std::string& name) const {
  if (gguf_) {
    const formats::GgufTensor* t = gguf_->find_tensor(name);
    if (!t) return std::nullopt;
    return Stored{t->name, std::string(formats::name(t->type)), t->shape(), t->data, t->nbytes};
  }
  if (!set_->has(name)) return std::nullopt;
  const model::TensorInfo& t = set_->info(name);
  return Stored{t.name, t.dtype_name, t.shape, set_->data(t), t.nbytes};
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

Hash128 TensorServer::tensor_hash(const Stored& t) {
  {
    std::lock_guard lock(mutex_);
    auto it = hashes_.find(t.name);
    if (it != hashes_.end()) return it->second;
  }
  Hash128 h = hash_bytes({t.data, t.nbytes});
  std::lock_guard lock(mutex_);
  hashes_[t.name] = h;
  return h;
}

bool TensorServer::serve_manifest(Connection& conn, const Frame& frame, const std::string& peer) {
  ManifestRequestMsg req = decode_manifest_request(frame.payload);
  if (req.layers.end > config_.n_layers) {
    return refuse(conn, peer,
                  "layers [" + std::to_string(req.layers.begin) + ", " +
                      std::to_string(req.layers.end) + ") are outside a model of " +
                      std::to_string(config_.n_layers) + " layers");
  }
  ManifestMsg m;
  m.fingerprint = fingerprint_;
  m.format = format_;
  m.config_json = config_json_;
  m.gguf_parts = gguf_parts_;
  const auto stored_dtype = [this](const std::string& name) {
    const auto t = find(name);
    return t ? t->dtype : std::string();
  };
  uint64_t total = 0;
  for (const std::string& name :
       stage_stored_tensors(config_, req.layers, format_, stored_dtype, gguf_extras_)) {
    const std::optional<Stored> t = find(name);
    if (!t) return refuse(conn, peer, "the coordinator's model lacks " + name);
    const auto sized = stored_tensor_bytes(t->dtype, t->shape);
    if (!sized || *sized != t->nbytes) {
      return refuse(
          conn, peer,
          "tensor " + name + " has dtype " + t->dtype + ", which model sync does not carry");
    }
    m.tensors.push_back({name, t->dtype, t->shape, t->nbytes, tensor_hash(*t)});
    total += t->nbytes;
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
  std::vector<Stored> tensors;
  uint64_t total = 0;
  for (const TensorRange& r : req.ranges) {
    const std::string& n = r.name;
    if (n.find("../") != std::string::npos || n.find('/') != std::string::npos ||
        n.find('\\') != std::string::npos || n.find('\0') != std::string::npos) {
      return refuse(conn, peer, "tensor name '" + printable(n) + "' is not a tensor name");
    }
    std::optional<Stored> t = find(n);
    if (!t) {
      return refuse(conn, peer,
                    "tensor '" + printable(n) + "' is not part of model " +
                        fingerprint_.substr(0, 16) + "...");
    }
    if (r.offset > t->nbytes) {
      return refuse(conn, peer,
                    "offset " + std::to_string(r.offset) + " is past the end of " + n + " (" +
                        std::to_string(t->nbytes) + " bytes)");
    }
    total += t->nbytes - r.offset;
    tensors.push_back(std::move(*t));
  }
  if (req.ranges.size() > UINT32_MAX) return refuse(conn, peer, "too many ranges");

  SyncProgress progress("sending to " + peer, total);
  uint64_t sent = 0;
  std::vector<uint8_t> damaged;  // the corrupt_byte test hook's copy of a chunk
  for (size_t i = 0; i < req.ranges.size(); ++i) {
    const Stored& t = tensors[i];
    for (uint64_t off = req.ranges[i].offset; off < t.nbytes;) {
      uint64_t n = std::min<uint64_t>(options_.chunk_bytes, t.nbytes - off);
      bool stop = false;
      if (options_.stop_after_bytes > 0 && sent_ + n >= options_.stop_after_bytes) {
        n = options_.stop_after_bytes - sent_;
        stop = true;
      }
      if (n > 0) {
        std::span<const uint8_t> bytes{t.data + off, static_cast<size_t>(n)};
        if (options_.corrupt_byte > sent_ && options_.corrupt_byte <= sent_ + n) {
          damaged.assign(bytes.begin(), bytes.end());
          damaged[options_.corrupt_byte - sent_ - 1] ^= 0x40;
          bytes = damaged;
          log::warn("[sync] test hook: damaging byte {} of {} sent to {}", off + options_.corrupt_byte - sent_ - 1, t.name, peer);
          options_.corrupt_byte = 0;  // once
        }
        auto head = encode_tensor_data_head({static_cast<uint32_t>(i), off});
        std::span<const uint8_t> pieces[2] = {head, bytes};
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
