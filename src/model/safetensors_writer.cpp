#include "model/safetensors_writer.h"

#include <bit>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/half.h"
#include "core/log.h"

namespace meshlm::model {

namespace {

constexpr std::string_view kComponent = "safetensors";

static_assert(std::endian::native == std::endian::little,
              "safetensors writer assumes little-endian");

[[noreturn]] void fail(const std::string& message) {
  throw Error(kComponent, message);
}

}  // namespace

int64_t TensorSpec::elements() const {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) fail("tensor '" + name + "' has a negative dimension");
    if (d != 0 && n > INT64_MAX / d) fail("tensor '" + name + "' is too large");
    n *= d;
  }
  return n;
}

void encode_f32(std::span<const float> src, WeightType dtype, std::byte* dst) {
  switch (dtype) {
    case WeightType::F32:
      std::memcpy(dst, src.data(), src.size_bytes());
      return;
    case WeightType::BF16:
      for (size_t i = 0; i < src.size(); ++i) {
        uint16_t b = f32_to_bf16(src[i]);
        std::memcpy(dst + 2 * i, &b, 2);
      }
      return;
    case WeightType::F16:
      for (size_t i = 0; i < src.size(); ++i) {
        uint16_t h = f32_to_f16(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      return;
    default:
      break;
  }
  fail("safetensors holds plain dtypes only, not " + std::string(formats::name(dtype)));
}

// ---------------------------------------------------------------------------------------------
// SafetensorsWriter

SafetensorsWriter::SafetensorsWriter(std::string path, std::vector<TensorSpec> tensors,
                                     std::map<std::string, std::string> metadata)
    : path_(std::move(path)), tensors_(std::move(tensors)), file_(path_) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const TensorSpec& t : tensors_) {
    if (t.name.empty()) fail("empty tensor name");
    if (t.name == "__metadata__") fail("'__metadata__' is not a valid tensor name");
    if (!seen.insert(t.name).second) fail("duplicate tensor name '" + t.name + "'");
    uint64_t n = t.nbytes();
    if (offset > UINT64_MAX - n) fail("total tensor size overflows");
    header[t.name] = {{"dtype", std::string(formats::name(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  data_bytes_ = offset;

  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  uint64_t header_len = text.size();

  if (!file_.open()) fail(file_.error());
  write_raw(&header_len, 8);
  write_raw(text.data(), text.size());
  skip_empty_tensors();
}

SafetensorsWriter::~SafetensorsWriter() = default;  // an unfinished file's partial file goes with file_

void SafetensorsWriter::write_raw(const void* data, size_t n) {
  if (!file_.write(data, n)) fail(file_.error());
}

void SafetensorsWriter::skip_empty_tensors() {
  while (current_ < tensors_.size() && current_written_ == tensors_[current_].nbytes()) {
    ++current_;
    current_written_ = 0;
  }
}

void SafetensorsWriter::append(std::string_view name, std::span<const std::byte> bytes) {
  if (finished_) fail("append to finished file '" + path_ + "'");
  if (current_ >= tensors_.size())
    fail("tensor '" + std::string(name) + "' appended after all tensors were written");
  const TensorSpec& t = tensors_[current_];
  if (name != t.name)
    fail("tensor '" + std::string(name) + "' appended while '" + t.name +
         "' is the one being written (tensors must be written in declared order)");
  if (bytes.size() > t.nbytes() - current_written_)
    fail("tensor '" + t.name + "': " + std::to_string(current_written_ + bytes.size()) +
         " bytes appended, it has " + std::to_string(t.nbytes()));
  write_raw(bytes.data(), bytes.size());
  current_written_ += bytes.size();
  skip_empty_tensors();
}

void SafetensorsWriter::finish() {
  if (finished_) return;
  if (current_ < tensors_.size())
    fail("finish with tensor '" + tensors_[current_].name + "' incomplete (" +
         std::to_string(current_written_) + " of " + std::to_string(tensors_[current_].nbytes()) +
         " bytes)");
  if (!file_.commit()) fail(file_.error());
  finished_ = true;
}

// ---------------------------------------------------------------------------------------------
// Sharding

std::vector<std::vector<TensorSpec>> split_into_shards(const std::vector<TensorSpec>& tensors,
                                                       int n_shards) {
  if (n_shards < 1) fail("number of shards must be at least 1");
  if (size_t(n_shards) > tensors.size())
    fail(std::to_string(n_shards) + " shards requested for " + std::to_string(tensors.size()) +
         " tensors");
  unsigned __int128 total = 0;
  for (const TensorSpec& t : tensors) total += t.nbytes();
  std::vector<std::vector<TensorSpec>> groups(1);
  unsigned __int128 cumulative = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    groups.back().push_back(tensors[i]);
    cumulative += tensors[i].nbytes();
    size_t to_open = size_t(n_shards) - groups.size();
    if (to_open == 0) continue;
    size_t tensors_left = tensors.size() - i - 1;
    // Close this group once it reaches its share of the bytes, or when every remaining tensor is
    // needed to give each remaining group one.
    bool reached = cumulative * unsigned(n_shards) >= total * groups.size();
    if (reached || tensors_left == to_open) groups.emplace_back();
  }
  return groups;
}

std::string shard_file_name(int index, int n_shards) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05d-of-%05d.safetensors", index + 1, n_shards);
  return buf;
}

void write_safetensors_index(const std::string& path, uint64_t total_size,
                             const std::map<std::string, std::string>& weight_map) {
  nlohmann::json j;
  j["metadata"] = {{"total_size", total_size}};
  j["weight_map"] = weight_map;
  std::string text = j.dump(2) + "\n";
  AtomicFile f(path);
  if (!f.open() || !f.write(text.data(), text.size()) || !f.commit()) fail(f.error());
}

ShardedSafetensorsWriter::ShardedSafetensorsWriter(std::string dir, std::vector<TensorSpec> tensors,
                                                   int n_shards,
                                                   std::map<std::string, std::string> metadata)
    : dir_(std::move(dir)), metadata_(std::move(metadata)) {
  shards_ = split_into_shards(tensors, n_shards);
  for (size_t s = 0; s < shards_.size(); ++s) {
    for (const TensorSpec& t : shards_[s]) {
      shard_of_[t.name] = s;
      total_bytes_ += t.nbytes();
    }
  }
  open_shard(0);
}

ShardedSafetensorsWriter::~ShardedSafetensorsWriter() = default;

void ShardedSafetensorsWriter::open_shard(size_t index) {
  std::string name =
      shards_.size() == 1 ? "model.safetensors" : shard_file_name(int(index), int(shards_.size()));
  writer_ = std::make_unique<SafetensorsWriter>((std::filesystem::path(dir_) / name).string(),
                                                shards_[index], metadata_);
  current_shard_ = index;
}

void ShardedSafetensorsWriter::append(std::string_view name, std::span<const std::byte> bytes) {
  auto it = shard_of_.find(std::string(name));
  if (it == shard_of_.end()) fail("unknown tensor '" + std::string(name) + "'");
  if (it->second < current_shard_)
    fail("tensor '" + std::string(name) + "' appended after its shard was finished");
  while (current_shard_ < it->second) {
    writer_->finish();
    open_shard(current_shard_ + 1);
  }
  writer_->append(name, bytes);
}

void ShardedSafetensorsWriter::finish() {
  if (!writer_) return;
  writer_->finish();
  while (current_shard_ + 1 < shards_.size()) {
    open_shard(current_shard_ + 1);
    writer_->finish();
  }
  writer_.reset();
  if (shards_.size() > 1) {
    std::map<std::string, std::string> weight_map;
    for (const auto& [tensor, shard] : shard_of_)
      weight_map[tensor] = shard_file_name(int(shard), int(shards_.size()));
    write_safetensors_index((std::filesystem::path(dir_) / "model.safetensors.index.json").string(),
                            total_bytes_, weight_map);
  }
  log::debug("wrote {} safetensors file(s), {} bytes of tensors in {}", shards_.size(),
             total_bytes_, dir_);
}

}  // namespace meshlm::model
