// Writing a model (convert/source_model.h) as a GGUF file of one of llama.cpp's file types,
// tensor by tensor: at most a few MiB of rows are in memory at once, whatever the model size.
//
// Two layouts, each what llama.cpp itself writes, so that a file is byte-identical to llama.cpp's
// when the quantizers agree (formats/quants.h: they do for every type used here):
//   * llama-quantize's (every quantized type, and any GGUF source): the source's metadata in its
//     order without general.quantization_version / general.file_type / split.*, then those two
//     appended; tensors in llama-quantize's order (no-layer tensors, then blk.0, blk.1, ...; by
//     name within each); each tensor's type from choose_gguf_types; a tensor whose type does not
//     change is copied byte for byte.
//   * the converter's (a Hugging Face folder to f32 / f16 / bf16, as convert_hf_to_gguf.py
//     --outtype): metadata and tensors in the converter's order, general.file_type in place,
//     1-D tensors F32, the others the chosen type.
// A source tensor already quantized to another type is requantized from its dequantized values
// (llama-quantize's --allow-requantize), with a warning.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "convert/quant_types.h"
#include "convert/source_model.h"

namespace meshlm::convert {

struct PlannedTensor {
  size_t source_index;  // into SourceModel::tensors
  WeightType type;      // in the output
  bool fallback = false;
};

struct GgufPlan {
  std::vector<std::pair<std::string, formats::GgufValue>> metadata;  // in output order
  std::vector<PlannedTensor> tensors;                                 // in output order
  bool converter_layout = false;
  int n_fallback = 0;
  int n_requantized = 0;  // source tensors of a block type written as another type
};

GgufPlan plan_gguf(const SourceModel& src, const QuantType& type);

struct ExportProgress {
  size_t index = 0, count = 0;  // tensor index (0-based) and count
  const SourceTensor* tensor = nullptr;
  WeightType to = WeightType::F32;
  uint64_t bytes_written = 0;  // of the output so far (tensor data)
};

struct ExportOptions {
  int threads = 0;  // 0: hardware concurrency
  std::function<void(const ExportProgress&)> progress;  // after each tensor
};

// Writes `out` (through out + ".partial", renamed at the end). Returns the plan it followed.
// Throws Error("quantize", ...) / Error("format", ...) / Error("gguf", ...).
GgufPlan export_gguf(const SourceModel& src, const QuantType& type, const std::string& out,
                     const ExportOptions& options = {});

}  // namespace meshlm::convert
