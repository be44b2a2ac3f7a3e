// The 32-element block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (decoders and encoders), IQ4_NL and
// MXFP4 (decoders). Layouts in quants.h. Blocks are read and written byte by byte, so rows need
// no alignment.
//
// The encoders are ggml's reference rounding (quantize_row_*_ref, and gguf-py's quantize_blocks):
// Q8_0 rounds half away from zero; the 4- and 5-bit types truncate v + 0.5 (v >= 0 by
// construction), with the scale in f32 while quantizing and rounded to f16 only when stored.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/half.h"
#include "formats/quants.h"

namespace meshlm::formats {

namespace {

constexpr int kBlock = 32;

float load_f16(const uint8_t* p) {
  return f16_to_f32(uint16_t(p[0] | p[1] << 8));
}
void store_f16(uint8_t* p, float v) {
  const uint16_t h = f32_to_f16(v);
  p[0] = uint8_t(h);
  p[1] = uint8_t(h >> 8);
}
uint32_t load_u32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
void store_u32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = uint8_t(v >> (8 * i));
}

// The 4-bit code of element j (0..31) of a block whose 16 code bytes start at qs.
int nibble(const uint8_t* qs, int j) {
  return j < 16 ? qs[j] & 0xF : qs[j - 16] >> 4;
}

// Packs 32 4-bit codes: element j in the low nibble of byte j, element j+16 in the high one.
void pack_nibbles(const uint8_t* q, uint8_t* qs) {
  for (int j = 0; j < 16; ++j) qs[j] = uint8_t((q[j] & 0xF) | (q[j + 16] & 0xF) << 4);
}
// The 5th bits of 32 codes as the u32 qh (bit j = element j).
uint32_t high_bits(const uint8_t* q) {
  uint32_t qh = 0;
  for (int j = 0; j < kBlock; ++j) qh |= uint32_t(q[j] >> 4 & 1) << j;
  return qh;
}

// The element of largest magnitude, with its sign (the first one on ties).
float signed_absmax(const float* x) {
  float amax = 0, max = 0;
  for (int j = 0; j < kBlock; ++j)
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  return max;
}

// 2^(e-128): half of the E8M0 scale 2^(e-127), exact (subnormal for e < 2). e = 255, E8M0's NaN,
// decodes as 2^127 like ggml's.
float e8m0_half(uint8_t e) {
  const uint32_t bits = e < 2 ? uint32_t(0x00200000) << e : uint32_t(e - 1) << 23;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace

// ---- Decoders ----

void dequantize_q4_0(const void* src, int64_t n_blocks, float* dst) {
  const auto* b = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n_blocks; ++i, b += 18, dst += kBlock) {
    const float d = load_f16(b);
    for (int j = 0; j < kBlock; ++j) dst[j] = float(nibble(b + 2, j) - 8) * d;
  }
}

void dequantize_q4_1(const void* src, int64_t n_blocks, float* dst) {
  const auto* b = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n_blocks; ++i, b += 20, dst += kBlock) {
    const float d = load_f16(b), m = load_f16(b + 2);
    for (int j = 0; j < kBlock; ++j) dst[j] = float(nibble(b + 4, j)) * d + m;
  }
}

void dequantize_q5_0(const void* src, int64_t n_blocks, float* dst) {
  const auto* b = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n_blocks; ++i, b += 22, dst += kBlock) {
    const float d = load_f16(b);
    const uint32_t qh = load_u32(b + 2);
    for (int j = 0; j < kBlock; ++j) {
      const int q = nibble(b + 6, j) | int(qh >> j & 1) << 4;
      dst[j] = float(q - 16) * d;
    }
  }
}

void dequantize_q5_1(const void* src, int64_t n_blocks, float* dst) {
  const auto* b = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n_blocks; ++i, b += 24, dst += kBlock) {
    const float d = load_f16(b), m = load_f16(b + 2);
    const uint32_t qh = load_u32(b + 4);
    for (int j = 0; j < kBlock; ++j) {
      const int q = nibble(b + 8, j) | int(qh >> j & 1) << 4;
      dst[j] = float(q) * d + m;
    }
  }
}

void dequantize_q8_0(const void* src, int64_t n_blocks, float* dst) {
  const auto* b = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n_blocks; ++i, b += 34, dst += kBlock) {
    const float d = load_f16(b);
    for (int j = 0; j < kBlock; ++j) dst[j] = float(int8_t(b[2 + j])) * d;
  }
}

void dequantize_iq4_nl(const void* src, int64_t n_blocks, float* dst) {
  const auto* b = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n_blocks; ++i, b += 18, dst += kBlock) {
    const float d = load_f16(b);
    for (int j = 0; j < kBlock; ++j) dst[j] = d * float(kIq4nlValues[nibble(b + 2, j)]);
  }
}

void dequantize_mxfp4(const void* src, int64_t n_blocks, float* dst) {
  const auto* b = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n_blocks; ++i, b += 17, dst += kBlock) {
    const float d = e8m0_half(b[0]);
    for (int j = 0; j < kBlock; ++j) dst[j] = float(kE2m1Doubled[nibble(b + 1, j)]) * d;
  }
}

// ---- Encoders ----

void quantize_q8_0(const float* src, int64_t n_blocks, void* dst) {
  auto* b = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n_blocks; ++i, b += 34, src += kBlock) {
    float amax = 0;
    for (int j = 0; j < kBlock; ++j) amax = std::max(amax, std::fabs(src[j]));
    const float d = amax / 127;
    const float id = d != 0 ? 1 / d : 0;
    store_f16(b, d);
    for (int j = 0; j < kBlock; ++j) b[2 + j] = uint8_t(int8_t(std::round(src[j] * id)));
  }
}

// Q4_0 / Q5_0: d = (signed largest) / -2^(bits-1), so that element lands on code 0 and the
// codes run up to 2^bits - 1.
template <int kBits>
void quantize_symmetric(const float* x, float* d_out, uint8_t* q) {
  constexpr int kHalf = 1 << (kBits - 1), kTop = (1 << kBits) - 1;
  const float d = signed_absmax(x) / -kHalf;
  const float id = d != 0 ? 1 / d : 0;
  for (int j = 0; j < kBlock; ++j)
    q[j] = uint8_t(std::min(kTop, int(x[j] * id + (float(kHalf) + 0.5f))));
  *d_out = d;
}

// Q4_1 / Q5_1: codes 0..2^bits-1 spread from the block's minimum to its maximum.
template <int kBits>
void quantize_affine(const float* x, float* d_out, float* m_out, uint8_t* q) {
  constexpr int kTop = (1 << kBits) - 1;
  float min = x[0], max = x[0];
  for (int j = 1; j < kBlock; ++j) {
    min = std::min(min, x[j]);
    max = std::max(max, x[j]);
  }
  const float d = (max - min) / kTop;
  const float id = d != 0 ? 1 / d : 0;
  for (int j = 0; j < kBlock; ++j) q[j] = uint8_t(std::min(kTop, int((x[j] - min) * id + 0.5f)));
  *d_out = d;
  *m_out = min;
}

void quantize_q4_0(const float* src, int64_t n_blocks, void* dst) {
  auto* b = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n_blocks; ++i, b += 18, src += kBlock) {
    float d;
    uint8_t q[kBlock];
    quantize_symmetric<4>(src, &d, q);
    store_f16(b, d);
    pack_nibbles(q, b + 2);
  }
}

void quantize_q4_1(const float* src, int64_t n_blocks, void* dst) {
  auto* b = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n_blocks; ++i, b += 20, src += kBlock) {
    float d, m;
    uint8_t q[kBlock];
    quantize_affine<4>(src, &d, &m, q);
    store_f16(b, d);
    store_f16(b + 2, m);
    pack_nibbles(q, b + 4);
  }
}

void quantize_q5_0(const float* src, int64_t n_blocks, void* dst) {
  auto* b = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n_blocks; ++i, b += 22, src += kBlock) {
    float d;
    uint8_t q[kBlock];
    quantize_symmetric<5>(src, &d, q);
    store_f16(b, d);
    store_u32(b + 2, high_bits(q));
    pack_nibbles(q, b + 6);
  }
}

void quantize_q5_1(const float* src, int64_t n_blocks, void* dst) {
  auto* b = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n_blocks; ++i, b += 24, src += kBlock) {
    float d, m;
    uint8_t q[kBlock];
    quantize_affine<5>(src, &d, &m, q);
    store_f16(b, d);
    store_f16(b + 2, m);
    store_u32(b + 4, high_bits(q));
    pack_nibbles(q, b + 8);
  }
}

}  // namespace meshlm::formats
