// Writing a Hugging Face folder as an MLX affine-quantized folder (the layout of mlx-community's
// "-4bit" / "-8bit" models, which mlx-lm loads):
//   config.json      the source's, plus "quantization" and "quantization_config" =
//                    {"group_size": G, "bits": B, "mode": "affine"}; torch_dtype = the dtype below
//   model.safetensors every Linear weight and the embedding (and an untied lm_head) whose rows
//                    are whole groups as three tensors: NAME.weight U32 [out, in * B / 32] (the
//                    B-bit codes packed little-endian, element j of a row at bits [j*B, (j+1)*B)
//                    of the row's bit stream), NAME.scales and NAME.biases [out, in / G] in the
//                    dtype; everything else (norms, biases) in the dtype
//   tokenizer files  copied
// Per group of G inputs: bias = min, scale = max((max - min) / (2^B - 1), 1e-7), both rounded to
// the dtype; q = clamp(round_half_even((w - bias) / scale), 0, 2^B - 1) with the rounded scale
// and bias, all in f32 — the arithmetic of shared/tools/mlx_quantize.py, so both write the same
// bytes. The dtype is the model's: BF16 for BF16 and F32 models (mlx-community's choice), F16
// for F16 ones.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "formats/weight_format.h"

namespace meshlm::convert {

struct MlxOptions {
  int bits = 4;         // 4 or 8
  int group_size = 64;  // 32, 64 or 128
  int threads = 0;      // 0: hardware concurrency
  // Before each tensor: its index (0-based), the count, its name and what it becomes.
  std::function<void(size_t, size_t, const std::string&, const std::string&)> progress;
};

// One row of n inputs (n a multiple of group_size): packed codes (n * bits / 32 words) and
// per-group scales and biases as `dtype` (BF16 or F16) bits.
void mlx_quantize_row(const float* w, int64_t n, int bits, int group_size, WeightType dtype, uint32_t* packed,
                      uint16_t* scales, uint16_t* biases);

// Writes out_dir (created; files in it are replaced) from the Hugging Face folder hf_dir.
// Throws Error("quantize", ...).
void export_mlx(const std::string& hf_dir, const std::string& out_dir, const MlxOptions& options);

}  // namespace meshlm::convert
