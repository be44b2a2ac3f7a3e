// MLX affine quantization (mlx-community "-4bit" / "-8bit" folders, `meshlm quantize --type
// mlx4|mlx8`): the block layout meshlm keeps such weights in, the repack from the file's layout,
// the decoder and an encoder.
//
// In the file (safetensors), a quantized matrix W[out, in] with `bits` and group size G is three
// tensors: NAME.weight U32 [out, in * bits / 32] (the codes, packed little-endian: element j of a
// row occupies bits [j * bits, (j + 1) * bits) of the row's bit stream), NAME.scales and
// NAME.biases [out, in / G] in the model's dtype; w[j] = scales[j / G] * q[j] + biases[j / G].
//
// In memory (the formats MLX<bits>_G<G>_<dtype> of weight_format.h) a row is in / G blocks, one
// per group, each
//     scale (2 or 4 bytes: the file's BF16 / F16 / F32 bits verbatim) | bias (same) | codes
// with the codes (G * bits / 8 bytes) ordered for the kernels:
//     4 bits: per 32 elements, 16 bytes; byte i = q[i] | q[16 + i] << 4 (ggml's Q4 nibble order)
//     8 bits: one int8 per element, q - 128
//     2, 3, 5, 6 bits: the group's slice of the file's bit stream as it is (G * bits is a whole
//                      number of 32-bit words, so each group starts on a word)
// A block is exactly the group's bytes in the file (codes + scale + bias): the repacked copy is
// the same size as the three tensors it replaces.
//
// Decoding is x = float(scale) * float(q) then + float(bias), two f32 roundings (this file is
// compiled with -ffp-contract=off): bit-identical to mlx_quantize.py's numpy `dequantize`.
#pragma once

#include <cstdint>

#include "formats/weight_format.h"

namespace meshlm::formats {

// Bytes of one group's block.
constexpr size_t mlx_block_bytes(int bits, int group, WeightType scale_type) {
  return 2 * (scale_type == WeightType::F32 ? 4 : 2) + size_t(group) * size_t(bits) / 8;
}

// dst[0, row_bytes(t, n)) = the row of n elements (n a whole number of groups) from the file's
// layout: `codes` (n * bits / 32 little-endian u32 words), `scales` and `biases` (n / group
// values of the scale dtype, little-endian). No alignment needed. t must be an MLX type.
void mlx_repack_row(WeightType t, const void* codes, const void* scales, const void* biases,
                    int64_t n, void* dst);

// The decoder of format MLX<B>_G<G>_<S> (the format table points at it).
template <int B, int G, WeightType S>
void dequantize_mlx(const void* src, int64_t n_blocks, float* dst);

// The encoder (what quantize_row runs for MLX types): per group, bias = min, scale =
// max((max - min) / (2^bits - 1), 1e-7), both rounded to the scale dtype, q = clamp(round half
// to even((x - bias) / scale), 0, 2^bits - 1) with the rounded values, in f32: the arithmetic of
// mlx_quantize.py and convert/mlx_export.cpp. Throws Error("format") when a scale or bias does
// not fit the scale dtype.
void quantize_mlx(WeightType t, const float* src, int64_t n_blocks, void* dst);

}  // namespace meshlm::formats
