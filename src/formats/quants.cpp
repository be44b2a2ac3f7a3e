// quantize_row: input checks, the plain types, and dispatch to the block encoders
// (quants_legacy.cpp, quants_k.cpp).
#include "formats/quants.h"

#include <cmath>
#include <cstring>
#include <iterator>
#include <string>

#include "core/error.h"
#include "core/half.h"
#include "formats/mlx_affine.h"

namespace meshlm::formats {

namespace {

using Encoder = void (*)(const float* src, int64_t n_blocks, void* dst);

void encode_f32(const float* src, int64_t n, void* dst) {
  std::memcpy(dst, src, size_t(n) * 4);
}
void encode_bf16(const float* src, int64_t n, void* dst) {
  auto* d = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = f32_to_bf16(src[i]);
    if ((h & 0x7f80) == 0x7f80)  // finite input (checked) rounded up to infinity
      throw Error("format", "cannot quantize to BF16: element " + std::to_string(i) +
                                " is beyond the bf16 range");
    d[2 * i] = uint8_t(h);
    d[2 * i + 1] = uint8_t(h >> 8);
  }
}
void encode_f16(const float* src, int64_t n, void* dst) {
  auto* d = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = f32_to_f16(src[i]);
    d[2 * i] = uint8_t(h);
    d[2 * i + 1] = uint8_t(h >> 8);
  }
}

// An encoder and the byte offsets in its block of the f16 fields (scales, minimums), which must
// come out finite; -1: unused.
struct Quantizer {
  WeightType type;
  Encoder encode;  // nullptr: no quantizer writes this type
  int f16_fields[2];
};

// In WeightType order.
// clang-format off
constexpr Quantizer kQuantizers[] = {
    {WeightType::F32, encode_f32, {-1, -1}},
    {WeightType::BF16, encode_bf16, {-1, -1}},
    {WeightType::F16, encode_f16, {0, -1}},
    {WeightType::Q4_0, quantize_q4_0, {0, -1}},
    {WeightType::Q4_1, quantize_q4_1, {0, 2}},
    {WeightType::Q5_0, quantize_q5_0, {0, -1}},
    {WeightType::Q5_1, quantize_q5_1, {0, 2}},
    {WeightType::Q8_0, quantize_q8_0, {0, -1}},
    {WeightType::Q2_K, quantize_q2_k, {80, 82}},
    {WeightType::Q3_K, quantize_q3_k, {108, -1}},
    {WeightType::Q4_K, quantize_q4_k, {0, 2}},
    {WeightType::Q5_K, quantize_q5_k, {0, 2}},
    {WeightType::Q6_K, quantize_q6_k, {208, -1}},
    {WeightType::IQ4_NL, nullptr, {-1, -1}},
    {WeightType::IQ4_XS, nullptr, {-1, -1}},
    {WeightType::MXFP4, nullptr, {-1, -1}},
};
// clang-format on

static_assert(
    [] {
      for (size_t i = 0; i < std::size(kQuantizers); ++i)
        if (size_t(kQuantizers[i].type) != i) return false;
      return true;
    }(),
    "kQuantizers must be in WeightType order");

const Quantizer* quantizer(WeightType t) {
  const size_t i = size_t(t);
  if (i >= std::size(kQuantizers) || !kQuantizers[i].encode) return nullptr;
  return &kQuantizers[i];
}

constexpr float kMaxBlockInput = 4294967296.f;  // 2^32

bool f16_is_finite(const uint8_t* p) {
  return (p[1] & 0x7c) != 0x7c;
}

}  // namespace

bool can_quantize(WeightType t) {
  return quantizer(t) != nullptr || mlx_affine(t).has_value();
}

void quantize_row(WeightType t, const float* src, int64_t n, void* dst) {
  const FormatInfo& f = info(t);
  const Quantizer* q = quantizer(t);
  const bool mlx = mlx_affine(t).has_value();
  if (!q && !mlx) throw Error("format", "no quantizer writes " + std::string(f.name));
  row_bytes(t, n);  // validates n
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(src[i]))
      throw Error("format", "cannot quantize to " + std::string(f.name) + ": element " +
                                std::to_string(i) + " is " +
                                (std::isnan(src[i]) ? "NaN" : "infinite"));
    // No block type represents magnitudes near this with finite f16 scales (Q6_K reaches the
    // furthest, 65504 * 128 * 32 < 2^28); refusing them up front keeps the encoders' sums of
    // cubes finite.
    if (!f.plain() && std::fabs(src[i]) > kMaxBlockInput)
      throw Error("format", "cannot quantize to " + std::string(f.name) + ": element " +
                                std::to_string(i) + " is beyond the range of f16 block scales");
  }
  const int64_t n_blocks = n / f.block_elems;
  if (mlx) return quantize_mlx(t, src, n_blocks, dst);  // checks its scales itself
  q->encode(src, n_blocks, dst);
  auto* b = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n_blocks; ++i, b += f.block_bytes)
    for (int field : q->f16_fields)
      if (field >= 0 && !f16_is_finite(b + field))
        throw Error("format", "cannot quantize to " + std::string(f.name) + ": block " +
                                  std::to_string(i) + " (elements from " +
                                  std::to_string(i * f.block_elems) +
                                  ") has a scale beyond the f16 range");
}

}  // namespace meshlm::formats
