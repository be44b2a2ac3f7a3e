// A model as its owner holds it: a Hugging Face folder (config.json + *.safetensors) or a GGUF
// file (one file, a split set, or a folder holding one). ModelFiles maps the files and answers
// "where is this schema tensor, in which format" for either; the stage, the weight loader and
// ModelConfig::from_dir go through it, so nothing above model/ cares which the user gave.
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

enum class ModelFormat { HfFolder, Gguf };

// Gguf for a .gguf file or a folder holding .gguf files and no config.json
// (formats::is_gguf_model_path); HfFolder otherwise (its loader says what is missing).
ModelFormat detect_model_format(const std::string& path);

// One stored tensor: its bytes in the memory map, format and row-major shape.
struct TensorRef {
  const void* data = nullptr;
  WeightType type = WeightType::F32;
  std::vector<int64_t> shape;
  uint64_t nbytes = 0;
  std::string name;  // as the file spells it
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
};

TensorLookup safetensors_lookup(const SafetensorsSet& st);

// GGUF metadata (llama.cpp's keys) as a ModelConfig; `model` also answers which tensors exist
// (a tied head has no output.weight) and holds rope_freqs. Throws Error("config", ...).
ModelConfig config_from_gguf(const formats::GgufModel& model);

}  // namespace meshlm::model
