// MLX affine blocks (formats/mlx_affine.h): repack from the file layout, decoder, encoder.
// Compiled with -ffp-contract=off: scale * q + bias rounds twice, as numpy does.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "core/error.h"
#include "core/half.h"
#include "formats/mlx_affine.h"

namespace meshlm::formats {

namespace {

size_t scale_bytes(WeightType s) { return s == WeightType::F32 ? 4 : 2; }

float load_scale(const uint8_t* p, WeightType s) {
  if (s == WeightType::F32) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  const uint16_t h = uint16_t(p[0] | p[1] << 8);
  return s == WeightType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

// Stores f rounded to s; false when it does not fit (rounds to infinity).
bool store_scale(float f, WeightType s, uint8_t* p) {
  if (s == WeightType::F32) {
    std::memcpy(p, &f, 4);
    return std::isfinite(f);
  }
  const uint16_t h = s == WeightType::BF16 ? f32_to_bf16(f) : f32_to_f16(f);
  p[0] = uint8_t(h);
  p[1] = uint8_t(h >> 8);
  return std::isfinite(s == WeightType::BF16 ? bf16_to_f32(h) : f16_to_f32(h));
}

// Code j of a group from a little-endian bit stream at p (bits <= 8).
inline uint32_t stream_code(const uint8_t* p, int64_t j, int bits) {
  const int64_t pos = j * bits;
  const uint8_t* b = p + pos / 8;
  const int sh = int(pos % 8);
  uint32_t v = uint32_t(b[0]) >> sh;
  if (sh + bits > 8) v |= uint32_t(b[1]) << (8 - sh);
  return v & ((1u << bits) - 1);
}

// The group's codes from its block's code bytes, in element order.
inline void block_codes(const uint8_t* c, int bits, int group, uint32_t* q) {
  if (bits == 4) {
    for (int k = 0; k < group / 32; ++k)
      for (int i = 0; i < 16; ++i) {
        q[32 * k + i] = c[16 * k + i] & 0xF;
        q[32 * k + 16 + i] = c[16 * k + i] >> 4;
      }
  } else if (bits == 8) {
    for (int j = 0; j < group; ++j) q[j] = uint32_t(int(int8_t(c[j])) + 128);
  } else {
    for (int j = 0; j < group; ++j) q[j] = stream_code(c, j, bits);
  }
}

// The inverse: codes in element order into the block's code bytes.
inline void put_codes(const uint32_t* q, int bits, int group, uint8_t* c) {
  if (bits == 4) {
    for (int k = 0; k < group / 32; ++k)
      for (int i = 0; i < 16; ++i) c[16 * k + i] = uint8_t(q[32 * k + i] | q[32 * k + 16 + i] << 4);
  } else if (bits == 8) {
    for (int j = 0; j < group; ++j) c[j] = uint8_t(int8_t(int(q[j]) - 128));
  } else {
    std::memset(c, 0, size_t(group) * size_t(bits) / 8);
    for (int j = 0; j < group; ++j) {
      const int64_t pos = int64_t(j) * bits;
      const uint32_t v = q[j] << (pos % 8);
      c[pos / 8] |= uint8_t(v);
      if (pos % 8 + bits > 8) c[pos / 8 + 1] |= uint8_t(v >> 8);
    }
  }
}

const MlxAffine& params_or_throw(WeightType t, std::optional<MlxAffine>& holder) {
  holder = mlx_affine(t);
  if (!holder) throw Error("format", std::string(name(t)) + " is not an MLX affine format");
  return *holder;
}

}  // namespace

void mlx_repack_row(WeightType t, const void* codes, const void* scales, const void* biases,
                    int64_t n, void* dst) {
  std::optional<MlxAffine> h;
  const MlxAffine& m = params_or_throw(t, h);
  row_bytes(t, n);  // validates n
  const size_t sb = scale_bytes(m.scale_type);
  const size_t code_bytes = size_t(m.group) * size_t(m.bits) / 8;
  const auto* cs = static_cast<const uint8_t*>(codes);
  const auto* ss = static_cast<const uint8_t*>(scales);
  const auto* bs = static_cast<const uint8_t*>(biases);
  auto* out = static_cast<uint8_t*>(dst);
  uint32_t q[128];
  for (int64_t g = 0; g < n / m.group; ++g) {
    std::memcpy(out, ss + size_t(g) * sb, sb);
    std::memcpy(out + sb, bs + size_t(g) * sb, sb);
    const uint8_t* c = cs + size_t(g) * code_bytes;  // groups start on words (G * bits % 32 == 0)
    if (m.bits == 4 || m.bits == 8) {
      for (int j = 0; j < m.group; ++j) q[j] = stream_code(c, j, m.bits);
      put_codes(q, m.bits, m.group, out + 2 * sb);
    } else {
      std::memcpy(out + 2 * sb, c, code_bytes);
    }
    out += 2 * sb + code_bytes;
  }
}

template <int B, int G, WeightType S>
void dequantize_mlx(const void* src, int64_t n_blocks, float* dst) {
  constexpr size_t kSb = S == WeightType::F32 ? 4 : 2;
  constexpr size_t kBlock = mlx_block_bytes(B, G, S);
  const auto* b = static_cast<const uint8_t*>(src);
  uint32_t q[G];
  for (int64_t i = 0; i < n_blocks; ++i, b += kBlock, dst += G) {
    const float s = load_scale(b, S), m = load_scale(b + kSb, S);
    block_codes(b + 2 * kSb, B, G, q);
    for (int j = 0; j < G; ++j) {
      const float v = s * float(q[j]);
      dst[j] = v + m;
    }
  }
}

#define MESHLM_MLX_INSTANTIATE(B, G, S) \
  template void dequantize_mlx<B, G, WeightType::S>(const void*, int64_t, float*);
MESHLM_MLX_FORMATS(MESHLM_MLX_INSTANTIATE)
#undef MESHLM_MLX_INSTANTIATE

void quantize_mlx(WeightType t, const float* src, int64_t n_blocks, void* dst) {
  std::optional<MlxAffine> h;
  const MlxAffine& m = params_or_throw(t, h);
  const size_t sb = scale_bytes(m.scale_type);
  const uint32_t nmax = (1u << m.bits) - 1;
  auto* out = static_cast<uint8_t*>(dst);
  uint32_t q[128];
  for (int64_t g = 0; g < n_blocks; ++g, src += m.group) {
    float lo = src[0], hi = src[0];
    for (int j = 1; j < m.group; ++j) {
      lo = std::min(lo, src[j]);
      hi = std::max(hi, src[j]);
    }
    const float scale = std::max((hi - lo) / float(nmax), 1e-7f);
    if (!store_scale(scale, m.scale_type, out) || !store_scale(lo, m.scale_type, out + sb))
      throw Error("format", "cannot quantize to " + std::string(name(t)) + ": group " +
                                std::to_string(g) + " has a scale or minimum beyond the " +
                                std::string(name(m.scale_type)) + " range");
    const float s = load_scale(out, m.scale_type), b = load_scale(out + sb, m.scale_type);
    for (int j = 0; j < m.group; ++j) {
      const float v = std::nearbyint((src[j] - b) / s);  // half to even (the default mode)
      q[j] = uint32_t(std::clamp(v, 0.0f, float(nmax)));
    }
    put_codes(q, m.bits, m.group, out + 2 * sb);
    out += 2 * sb + size_t(m.group) * size_t(m.bits) / 8;
  }
}

}  // namespace meshlm::formats
