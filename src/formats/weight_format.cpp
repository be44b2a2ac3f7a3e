#include "formats/weight_format.h"

#include <cstring>
#include <string>

#include "core/error.h"
#include "core/half.h"
#include "formats/mlx_affine.h"
#include "formats/quants.h"

namespace meshlm::formats {

namespace {

// Rows may start at any byte (activations after a frame's head, --wire): loads through memcpy.
void dequantize_f32(const void* src, int64_t n, float* dst) {
  std::memcpy(dst, src, size_t(n) * sizeof(float));
}

void dequantize_bf16(const void* src, int64_t n, float* dst) {
  const auto* s = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) {
    uint16_t v;
    std::memcpy(&v, s + 2 * i, 2);
    dst[i] = bf16_to_f32(v);
  }
}

void dequantize_f16(const void* src, int64_t n, float* dst) {
  const auto* s = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) {
    uint16_t v;
    std::memcpy(&v, s + 2 * i, 2);
    dst[i] = f16_to_f32(v);
  }
}

// Block layouts of the GGUF types are ggml's (ggml-common.h): elements and bytes per block.
constexpr FormatInfo kFormats[] = {
    {WeightType::F32, "F32", 0, 1, 4, dequantize_f32},
    {WeightType::BF16, "BF16", 30, 1, 2, dequantize_bf16},
    {WeightType::F16, "F16", 1, 1, 2, dequantize_f16},
    {WeightType::Q4_0, "Q4_0", 2, 32, 18, dequantize_q4_0},
    {WeightType::Q4_1, "Q4_1", 3, 32, 20, dequantize_q4_1},
    {WeightType::Q5_0, "Q5_0", 6, 32, 22, dequantize_q5_0},
    {WeightType::Q5_1, "Q5_1", 7, 32, 24, dequantize_q5_1},
    {WeightType::Q8_0, "Q8_0", 8, 32, 34, dequantize_q8_0},
    {WeightType::Q2_K, "Q2_K", 10, 256, 84, dequantize_q2_k},
    {WeightType::Q3_K, "Q3_K", 11, 256, 110, dequantize_q3_k},
    {WeightType::Q4_K, "Q4_K", 12, 256, 144, dequantize_q4_k},
    {WeightType::Q5_K, "Q5_K", 13, 256, 176, dequantize_q5_k},
    {WeightType::Q6_K, "Q6_K", 14, 256, 210, dequantize_q6_k},
    {WeightType::IQ4_NL, "IQ4_NL", 20, 32, 18, dequantize_iq4_nl},
    {WeightType::IQ4_XS, "IQ4_XS", 23, 256, 136, dequantize_iq4_xs},
    {WeightType::MXFP4, "MXFP4", 39, 32, 17, dequantize_mxfp4},
// MLX affine (mlx_affine.h): one block per group; no GGUF type.
#define MESHLM_MLX_ROW(B, G, S)                                                 \
  {WeightType::MLX##B##_G##G##_##S, "MLX" #B "_G" #G "_" #S, -1, G,             \
   mlx_block_bytes(B, G, WeightType::S), dequantize_mlx<B, G, WeightType::S>},
    MESHLM_MLX_FORMATS(MESHLM_MLX_ROW)
#undef MESHLM_MLX_ROW
};

static_assert([] {
  for (size_t i = 0; i < std::size(kFormats); ++i)
    if (size_t(kFormats[i].type) != i) return false;
  return true;
}(), "kFormats must be in WeightType order");

constexpr uint64_t kMaxTensorBytes = uint64_t(1) << 50;

}  // namespace

std::span<const FormatInfo> all() { return kFormats; }

const FormatInfo& info(WeightType t) {
  const size_t i = size_t(t);
  if (i >= std::size(kFormats)) throw Error("format", "unknown weight type " + std::to_string(i));
  return kFormats[i];
}

std::optional<WeightType> from_name(std::string_view name) {
  for (const FormatInfo& f : kFormats)
    if (f.name == name) return f.type;
  return std::nullopt;
}

std::optional<WeightType> from_ggml_type(uint32_t id) {
  for (const FormatInfo& f : kFormats)
    if (f.ggml_type >= 0 && uint32_t(f.ggml_type) == id) return f.type;
  return std::nullopt;
}

namespace {
constexpr int kMlxBits[] = {2, 3, 4, 5, 6, 8};
constexpr int kMlxGroups[] = {32, 64, 128};
constexpr WeightType kMlxScales[] = {WeightType::BF16, WeightType::F16, WeightType::F32};
constexpr size_t kMlxFirst = size_t(WeightType::MLX2_G32_BF16);
static_assert(size_t(WeightType::MLX8_G128_F32) - kMlxFirst + 1 ==
                  std::size(kMlxBits) * std::size(kMlxGroups) * std::size(kMlxScales),
              "MLX formats: scale dtype, then bits, then group");
static_assert(size_t(WeightType::MLX4_G64_F16) - kMlxFirst == 18 + 2 * 3 + 1);
}  // namespace

std::optional<MlxAffine> mlx_affine(WeightType t) {
  const size_t i = size_t(t);
  if (i < kMlxFirst || i > size_t(WeightType::MLX8_G128_F32)) return std::nullopt;
  const size_t k = i - kMlxFirst;
  return MlxAffine{kMlxBits[k / 3 % 6], kMlxGroups[k % 3], kMlxScales[k / 18]};
}

std::optional<WeightType> mlx_affine_type(int bits, int group, WeightType scale_type) {
  size_t b = 0, g = 0, s = 0;
  while (b < std::size(kMlxBits) && kMlxBits[b] != bits) ++b;
  while (g < std::size(kMlxGroups) && kMlxGroups[g] != group) ++g;
  while (s < std::size(kMlxScales) && kMlxScales[s] != scale_type) ++s;
  if (b == std::size(kMlxBits) || g == std::size(kMlxGroups) || s == std::size(kMlxScales))
    return std::nullopt;
  return WeightType(kMlxFirst + s * 18 + b * 3 + g);
}

size_t row_bytes(WeightType t, int64_t n) {
  const FormatInfo& f = info(t);
  if (n < 0 || n % f.block_elems != 0)
    throw Error("format", "a row of " + std::to_string(n) + " elements is not a whole number of " +
                              std::string(f.name) + " blocks of " +
                              std::to_string(f.block_elems));
  return size_t(n / f.block_elems) * f.block_bytes;
}

std::optional<uint64_t> tensor_bytes(WeightType t, std::span<const int64_t> shape) {
  const FormatInfo& f = info(t);
  const int64_t row = shape.empty() ? 1 : shape.back();
  if (row < 0 || row % f.block_elems != 0) return std::nullopt;
  uint64_t bytes = uint64_t(row / f.block_elems) * f.block_bytes;
  if (bytes > kMaxTensorBytes) return std::nullopt;
  for (size_t i = 0; i + 1 < shape.size(); ++i) {
    const int64_t d = shape[i];
    if (d < 0) return std::nullopt;
    if (d != 0 && bytes > kMaxTensorBytes / uint64_t(d)) return std::nullopt;
    bytes *= uint64_t(d);
  }
  return bytes;
}

size_t tensor_bytes_or_throw(WeightType t, std::span<const int64_t> shape) {
  auto b = tensor_bytes(t, shape);
  if (!b) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    throw Error("format", "a " + std::string(name(t)) + " tensor of shape " + s +
                              "] has no valid size (rows must be whole blocks, size below 2^50)");
  }
  return size_t(*b);
}

void dequantize_row(WeightType t, const void* src, int64_t n, float* dst) {
  const FormatInfo& f = info(t);
  row_bytes(t, n);  // validates n
  f.dequantize(src, n / f.block_elems, dst);
}

}  // namespace meshlm::formats
