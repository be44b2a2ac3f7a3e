// Writers for Hugging Face safetensors files, streaming: the header is written first from the
// declared tensors, then each tensor's bytes in declared order, in as many pieces as the caller
// likes, so a multi-GB model never has to be in memory at once.
//
//   SafetensorsWriter w("dir/model.safetensors", {{"a", WeightType::F32, {2, 3}}}, {{"format", "pt"}});
//   w.append("a", bytes_of_a);   // 24 bytes, in one or more calls
//   w.finish();                  // renames dir/model.safetensors.partial into place
//
// File format: u64 little-endian header length N, N bytes of JSON
//   {"__metadata__": {str: str}, name: {"dtype": "F32"|"BF16"|"F16", "shape": [...],
//    "data_offsets": [begin, end]}, ...}
// padded with spaces to a multiple of 8, then the tensors back to back (offsets are relative to
// the first byte after the header).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/atomic_file.h"
#include "formats/weight_format.h"

namespace meshlm::model {

struct TensorSpec {
  std::string name;
  WeightType dtype = WeightType::F32;
  std::vector<int64_t> shape;

  int64_t elements() const;
  uint64_t nbytes() const { return formats::tensor_bytes_or_throw(dtype, shape); }
};

// Converts f32 values to `dtype` (round to nearest even for BF16/F16) into dst, which holds
// formats::row_bytes(dtype, src.size()) bytes; stored little-endian.
void encode_f32(std::span<const float> src, WeightType dtype, std::byte* dst);

class SafetensorsWriter {
 public:
  // Validates the tensors (non-empty unique names, non-negative dims), creates path + ".partial"
  // and writes the header. Throws Error("safetensors", ...).
  SafetensorsWriter(std::string path, std::vector<TensorSpec> tensors,
                    std::map<std::string, std::string> metadata = {});
  // An unfinished writer removes its partial file.
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // Appends bytes of tensor `name`, which must be the tensor currently being written (declared
  // order); a piece may not run past the end of that tensor. Zero-size tensors need no call.
  void append(std::string_view name, std::span<const std::byte> bytes);
  // Checks that every tensor is complete, flushes, closes and renames the file into place.
  void finish();

  const std::vector<TensorSpec>& tensors() const { return tensors_; }
  uint64_t data_bytes() const { return data_bytes_; }  // sum of the tensors' sizes
  const std::string& path() const { return path_; }

 private:
  void skip_empty_tensors();
  void write_raw(const void* data, size_t n);

  std::string path_;
  std::vector<TensorSpec> tensors_;
  AtomicFile file_;
  uint64_t data_bytes_ = 0;
  size_t current_ = 0;            // index of the tensor being written
  uint64_t current_written_ = 0;  // bytes of it written so far
  bool finished_ = false;
};

// Splits tensors (in order, never reordering) into at most n_shards contiguous groups of roughly
// equal byte size; every group is non-empty. n_shards < 1 is an error.
std::vector<std::vector<TensorSpec>> split_into_shards(const std::vector<TensorSpec>& tensors,
                                                       int n_shards);

// "model-00001-of-00003.safetensors" (index is 0-based here, 1-based in the name).
std::string shard_file_name(int index, int n_shards);

// Writes {"metadata": {"total_size": total_size}, "weight_map": {tensor: file}} to path.
void write_safetensors_index(const std::string& path, uint64_t total_size,
                             const std::map<std::string, std::string>& weight_map);

// A model written as one file (n_shards == 1: dir/model.safetensors, no index) or as n_shards
// files plus dir/model.safetensors.index.json, with the same append-in-order interface.
class ShardedSafetensorsWriter {
 public:
  ShardedSafetensorsWriter(std::string dir, std::vector<TensorSpec> tensors, int n_shards,
                           std::map<std::string, std::string> metadata = {});
  ~ShardedSafetensorsWriter();
  ShardedSafetensorsWriter(const ShardedSafetensorsWriter&) = delete;
  ShardedSafetensorsWriter& operator=(const ShardedSafetensorsWriter&) = delete;

  void append(std::string_view name, std::span<const std::byte> bytes);
  void finish();

  int n_shards() const { return int(shards_.size()); }
  uint64_t total_bytes() const { return total_bytes_; }

 private:
  void open_shard(size_t index);

  std::string dir_;
  std::map<std::string, std::string> metadata_;
  std::vector<std::vector<TensorSpec>> shards_;
  std::map<std::string, size_t> shard_of_;  // tensor name -> shard index
  std::unique_ptr<SafetensorsWriter> writer_;
  size_t current_shard_ = 0;
  uint64_t total_bytes_ = 0;
};

}  // namespace meshlm::model
