// Writing GGUF v3 files (the layout is described in formats/gguf.h), streaming: metadata and the
// tensors' names, types and shapes are declared first; the header goes out with the first tensor
// bytes; then each tensor's bytes in declared order, in as many pieces as the caller likes, so a
// model never has to be in memory at once.
//
//   GgufWriter w("out/model.gguf");
//   w.set("general.architecture", GgufValue::from_string("qwen3"));
//   w.add_tensor("token_embd.weight", WeightType::Q8_0, {vocab, hidden});  // row-major shape
//   w.append("token_embd.weight", bytes);  // formats::tensor_bytes(Q8_0, shape) bytes in all
//   w.finish();                            // renames out/model.gguf.partial into place
//
// Tensor data is aligned to general.alignment when the metadata sets it (a power of two), else
// to 32, with zero padding after the header and after every tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/atomic_file.h"
#include "formats/gguf.h"
#include "formats/weight_format.h"

namespace meshlm::formats {

class GgufWriter {
 public:
  // ggml keeps tensor names in 64 bytes with a NUL: longer names would not load in llama.cpp.
  static constexpr size_t kMaxTensorName = 63;

  // Nothing is created until the header is written.
  explicit GgufWriter(std::string path);
  // An unfinished writer removes its partial file.
  ~GgufWriter();
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;

  // Sets a key (a key set twice keeps its first position and takes the new value). Only before
  // the header is written. Throws Error("gguf", ...) for an empty key, or after the header.
  void set(std::string key, GgufValue value);
  // Every pair of `metadata`, in its order (copying a file's metadata into a new one).
  void set_all(const GgufMetadata& metadata);
  bool remove(std::string_view key);

  // Declares the next tensor: `shape` is row-major (the last dimension is the row; it is written
  // reversed, as GGUF's ne[]). Throws Error("gguf", ...) for an empty, too long or repeated name,
  // more than 4 dims, a negative dim, or rows that are not whole blocks of `type`.
  void add_tensor(std::string name, WeightType type, std::vector<int64_t> shape);

  // Appends bytes of tensor `name`, which must be the tensor being written (declared order; the
  // first call writes the header, after which nothing more can be declared). A piece may not run
  // past the end of that tensor. Zero-byte tensors need no call (one with no bytes is fine).
  void append(std::string_view name, std::span<const uint8_t> bytes);
  // Checks every tensor is complete (writes the header if no tensor had bytes), flushes, closes
  // and renames the file into place.
  void finish();

  const std::string& path() const { return path_; }
  uint32_t alignment() const;  // what the header will use

 private:
  struct Tensor {
    std::string name;
    WeightType type;
    std::vector<int64_t> shape;
    uint64_t nbytes = 0;
    uint64_t offset = 0;  // into the data section
  };
  [[noreturn]] void fail(const std::string& msg) const;
  void write_header();
  void write_raw(const void* data, size_t n);
  void pad_to_alignment();
  void skip_empty_tensors(std::string_view until);

  std::string path_;
  AtomicFile file_;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<Tensor> tensors_;
  uint64_t written_ = 0;          // bytes written to the file
  uint64_t data_start_ = 0;       // file offset of the data section
  size_t current_ = 0;            // index of the tensor being written
  uint64_t current_written_ = 0;  // bytes of it written so far
  bool header_written_ = false;
  bool finished_ = false;
};

}  // namespace meshlm::formats
