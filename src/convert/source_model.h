// What `meshlm quantize` reads: a model as the tensors and metadata of a GGUF file, whether it
// comes from a GGUF file or from a Hugging Face folder. From a folder, the model is what
// llama.cpp's converter (convert_hf_to_gguf.py) would write: GGUF tensor names, its metadata
// keys in its order, Llama's q/k rows permuted, rope_freqs for llama3-scaled ropes, 1-D tensors
// as F32 (see hf_source.cpp). Nothing is read until a tensor's rows are asked for.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "convert/quant_types.h"
#include "formats/gguf.h"
#include "formats/weight_format.h"

namespace meshlm::convert {

struct SourceTensor {
  std::string name;             // GGUF name
  std::vector<int64_t> shape;   // row-major: the last dim is the row
  WeightType type;              // as the source holds it (from a folder: what the converter writes)
  // The tensor's exact bytes in `type` when they can be copied as they are; empty when the
  // values are transformed on the way (permuted rows, 1-D tensors widened to F32, generated).
  std::span<const uint8_t> bytes;
  // dst[0, n_rows * cols()) = rows [first_row, first_row + n_rows) as f32. Thread-safe.
  std::function<void(int64_t first_row, int64_t n_rows, float* dst)> read_rows;

  int64_t cols() const { return shape.empty() ? 1 : shape.back(); }
  int64_t rows() const;  // the product of the other dims
};

struct SourceModel {
  std::string path;
  bool from_hf = false;
  // From a folder: the converter's file type for the folder's dtype (0 F32, 1 F16, 32 BF16).
  std::vector<std::pair<std::string, formats::GgufValue>> metadata;  // in file order
  std::vector<SourceTensor> tensors;                                  // in file order
  ModelFacts facts;
  std::shared_ptr<const void> keep_alive;  // the maps the tensors read from

  const formats::GgufValue* find(std::string_view key) const;
};

// A GGUF file (or split set, or a folder holding one) or a Hugging Face folder (config.json +
// safetensors + tokenizer.json / tokenizer_config.json). `name` is general.name for a folder
// ("" = the folder's name, as the converter). Throws Error("quantize", ...) or the reader's
// errors.
SourceModel open_source(const std::string& path, const std::string& name = "");
SourceModel open_gguf_source(const std::string& path);
SourceModel open_hf_source(const std::string& dir, const std::string& name = "");

// The llama3 rope frequency divisors (rope_freqs.weight, head_dim / 2 floats) as the converter
// computes them in float32.
std::vector<float> llama3_rope_freqs(int64_t head_dim, double rope_theta, double factor, double low_freq_factor,
                                     double high_freq_factor, double original_max_position);

}  // namespace meshlm::convert
