// Reading Hugging Face safetensors: one model.safetensors, or shards listed by
// model.safetensors.index.json. Headers are parsed and validated up front (lengths, dtypes,
// shapes, offsets, overlaps); tensor bytes stay in the memory map and are only touched when used.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/mmap_file.h"
#include "formats/weight_format.h"

namespace meshlm::model {

struct TensorInfo {
  std::string name;
  std::string dtype_name;       // as written in the header ("BF16", "F32", "I64", ...)
  bool dtype_supported = false; // a weight format meshlm reads (formats::from_name)
  WeightType dtype = WeightType::F32;
  std::vector<int64_t> shape;
  size_t file_index = 0;        // into SafetensorsSet::files()
  size_t offset = 0;            // absolute byte offset in its file
  size_t nbytes = 0;
};

// The tensors of one .safetensors file (header parsed and validated).
std::vector<TensorInfo> parse_safetensors_header(const uint8_t* data, size_t size,
                                                 const std::string& path, size_t file_index);

class SafetensorsSet {
 public:
  // Opens every safetensors file of a model folder. Throws Error("safetensors", ...).
  static std::unique_ptr<SafetensorsSet> open_dir(const std::string& dir);

  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  // Throws Error("safetensors", "missing tensor ...") when absent.
  const TensorInfo& info(const std::string& name) const;
  const uint8_t* data(const TensorInfo& t) const { return files_[t.file_index].data() + t.offset; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::vector<MappedFile>& files() const { return files_; }

 private:
  std::vector<MappedFile> files_;
  std::map<std::string, TensorInfo> tensors_;
};

}  // namespace meshlm::model
