// A model as its owner holds it: a Hugging Face folder (config.json + *.safetensors), an MLX
// affine-quantized folder (the same, with "quantization" in config.json: mlx-community's
// "-4bit"/"-8bit" models, `meshlm quantize --type mlx4|mlx8`) or a GGUF file (one file, a split
// set, or a folder holding one). ModelFiles maps the files and answers "where is this schema
// tensor, in which format" for each; the stage, the weight loader and ModelConfig::from_dir go
// through it, so nothing above model/ cares which the user gave.
//
// MLX folders: config.json's "quantization" (or "quantization_config") = {"group_size": G,
// "bits": B, "mode": "affine", MODULE: {"group_size": .., "bits": ..} | false, ...} (a MODULE
// key is a schema tensor's module_path, schema.h; false: stored unquantized). A Matrix or
// Embedding tensor stored as U32 is quantized: its codes, NAME.scales and NAME.biases (schema.h
// quant_part_name) are checked against B, G and the schema shape, then repacked on lookup into
// the MLX<B>_G<G>_<dtype> block format (formats/mlx_affine.h) in anonymous memory the ModelFiles
// owns (once per tensor; the same bytes as the three file tensors), and the file's pages of
// those three tensors are dropped from the process (MADV_DONTNEED), so a stage keeps one copy.
// Other tensors (norms, biases, modules left unquantized) are read from the map as in a
// Hugging Face folder. Errors name the tensor: wrong shapes for B / G, a missing scales or
// biases tensor, unsupported bits / group size / dtype, input features not whole groups.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "formats/weight_format.h"
#include "model/config.h"
#include "model/schema.h"

namespace meshlm::formats {
class GgufModel;
}

namespace meshlm::model {

class SafetensorsSet;

enum class ModelFormat { HfFolder, Gguf, MlxFolder };

// Gguf for a .gguf file or a folder holding .gguf files and no config.json
// (formats::is_gguf_model_path); MlxFolder for a folder whose config.json has a "quantization"
// object (or a "quantization_config" without a "quant_method": MLX's duplicate); HfFolder
// otherwise (its loader says what is missing).
ModelFormat detect_model_format(const std::string& path);

// One stored tensor: its bytes in the memory map, format and row-major shape.
struct TensorRef {
  const void* data = nullptr;
  WeightType type = WeightType::F32;
  std::vector<int64_t> shape;
  uint64_t nbytes = 0;
  std::string name;  // as the file spells it
  // data is in a read-only file map (its pages can be dropped and read again); false for any
  // other memory (an MLX matrix repacked into anonymous memory, a caller's buffer).
  bool file_mapped = false;
};

// Finds a schema tensor in the files; throws Error("weights") / Error("safetensors") naming it
// when absent or stored in a type meshlm cannot read.
using TensorLookup = std::function<TensorRef(const TensorDesc&)>;

class ModelFiles {
 public:
  // Maps the model's weight files. Throws Error("model" | "safetensors" | "gguf" | "config").
  static std::unique_ptr<ModelFiles> open(const std::string& path);
  virtual ~ModelFiles() = default;

  virtual ModelFormat format() const = 0;
  virtual const ModelConfig& config() const = 0;
  virtual TensorLookup lookup() const = 0;
  // Bytes the tensor takes once loaded (lookup(d).nbytes), without loading it: an MLX folder's
  // quantized matrix is not repacked for this. Throws as lookup does.
  virtual uint64_t tensor_bytes(const TensorDesc& d) const { return lookup()(d).nbytes; }
  // The format the tensor takes once loaded (lookup(d).type), without loading it. Throws as
  // lookup does.
  virtual WeightType tensor_type(const TensorDesc& d) const { return lookup()(d).type; }
};

TensorLookup safetensors_lookup(const SafetensorsSet& st);

// GGUF metadata (llama.cpp's keys) as a ModelConfig; `model` also answers which tensors exist
// (a tied head has no output.weight) and holds rope_freqs. Throws Error("config", ...).
ModelConfig config_from_gguf(const formats::GgufModel& model);

}  // namespace meshlm::model
