// The 256-element super-block types: the K-quants Q2_K..Q6_K (decoders and encoders) and IQ4_XS
// (decoder). Layouts in quants.h. Blocks are read and written byte by byte, so rows need no
// alignment.
//
// The encoders follow llama.cpp's published method for K-quants (its reference quantizers, used
// when no importance matrix is given): each sub-block gets the scale (and, for the types with a
// minimum, the offset) that minimises a weighted squared error over a small search of candidate
// scales; the sub-block scales are then quantized to 4, 6 or 8 bits against the super-block's f16
// scale, and every element is re-quantized against the scale as it will be decoded. The float
// operations are ordered as in ggml's reference quantizers, so the bytes are the same as theirs
// (tests/formats/quants_test.cpp checks this on ggml-quantized vectors).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/half.h"
#include "formats/quants.h"

namespace meshlm::formats {

namespace {

constexpr int kSuper = 256;

float load_f16(const uint8_t* p) {
  return f16_to_f32(uint16_t(p[0] | p[1] << 8));
}
void store_f16(uint8_t* p, float v) {
  const uint16_t h = f32_to_f16(v);
  p[0] = uint8_t(h);
  p[1] = uint8_t(h >> 8);
}

// Q4_K / Q5_K: scale and min of sub-block j (0..7), 6 bits each, from the 12 packed bytes.
// Bytes 0-3 hold scales 0-3 and bytes 4-7 mins 0-3 in their low 6 bits; bytes 8-11 hold the low
// 4 bits of scale (low nibble) and min (high nibble) 4-7, whose top 2 bits sit in the top 2 bits
// of bytes 0-3 (scales) and 4-7 (mins).
void unpack_scale_min(const uint8_t* s, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0xF) | (s[j - 4] >> 6) << 4;
    *m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
  }
}
void pack_scale_min(const int* sc, const int* m, uint8_t* s) {
  std::memset(s, 0, 12);
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      s[j] = uint8_t(sc[j]);
      s[j + 4] = uint8_t(m[j]);
    } else {
      s[j + 4] = uint8_t((sc[j] & 0xF) | (m[j] & 0xF) << 4);
      s[j - 4] |= uint8_t((sc[j] >> 4) << 6);
      s[j] |= uint8_t((m[j] >> 4) << 6);
    }
  }
}

// Q3_K: the 6-bit scale of sub-block j (0..15), still offset by 32. Bytes 0-7 hold the low 4 bits
// (scales 0-7 in the low nibbles, 8-15 in the high ones); bytes 8-11 the top 2 bits, scale j at
// bit 2*(j/4) of byte 8 + j%4.
int unpack_q3_scale(const uint8_t* s, int j) {
  const int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
  const int hi = s[8 + j % 4] >> (2 * (j / 4)) & 3;
  return lo | hi << 4;
}
void pack_q3_scales(const int* sc, uint8_t* s) {
  std::memset(s, 0, 12);
  for (int j = 0; j < 16; ++j) {
    s[j % 8] |= uint8_t((sc[j] & 0xF) << (j < 8 ? 0 : 4));
    s[8 + j % 4] |= uint8_t((sc[j] >> 4) << (2 * (j / 4)));
  }
}

// Q2_K / Q3_K / Q6_K keep 2-bit fields four to a byte: element e of a 128-element half sits in
// byte e % 32 at bit 2 * (e / 32).
int two_bits(const uint8_t* q, int e) {
  return q[e % 32] >> (2 * (e / 32)) & 3;
}
// The inverse for one 128-element half: L[0, 128) (each 0..3) into q[0, 32).
void pack_two_bits(const uint8_t* L, uint8_t* q) {
  for (int l = 0; l < 32; ++l)
    q[l] = uint8_t(L[l] | L[l + 32] << 2 | L[l + 64] << 4 | L[l + 96] << 6);
}

// v rounded to the nearest integer (ties to even), then clamped to [lo, hi].
int nearest_in(float v, int lo, int hi) {
  v = std::clamp(v, float(lo - 1), float(hi + 1));
  return std::clamp(int(std::nearbyint(v)), lo, hi);
}

// An affine fit x[i] ~ scale * L[i] - offset, L[i] in [0, nmax], offset >= 0 (the range always
// includes 0), minimising sum w[i] * err[i]^2 (or w[i] * |err[i]| when abs_error). Starts from
// spreading [min(x, 0), max(x)] evenly over the levels, then tries nstep + 1 other level counts
// nmax + rmin + rdelta * k over [best minimum so far, max(x)]; each trial's levels get their
// least-squares scale and minimum, and the trial with the smallest error wins. Returns the scale.
// (Measuring the trials from the best minimum so far rather than from min(x, 0) is llama.cpp's
// choice too; from min(x, 0) the RMSE is 0.3-1.2% worse.)
float fit_scale_offset(int n, int nmax, const float* x, const float* w, float rmin, float rdelta,
                       int nstep, bool abs_error, uint8_t* L, float* offset) {
  float lo = x[0], hi = x[0], sum_w = 0, sum_x = 0;
  for (int i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  lo = std::min(lo, 0.f);
  if (hi == lo) {
    std::fill(L, L + n, uint8_t(0));
    *offset = -lo;
    return 0;
  }
  auto levels = [&](float iscale, float min, uint8_t* out) {
    for (int i = 0; i < n; ++i) out[i] = uint8_t(nearest_in(iscale * (x[i] - min), 0, nmax));
  };
  auto error = [&](float scale, float min, const uint8_t* l) {
    float e = 0;
    for (int i = 0; i < n; ++i) {
      const float diff = scale * float(l[i]) + min - x[i];
      e += w[i] * (abs_error ? std::fabs(diff) : diff * diff);
    }
    return e;
  };
  const float iscale = float(nmax) / (hi - lo);
  float scale = 1 / iscale, min = lo;
  levels(iscale, min, L);
  float best = error(scale, min, L);
  uint8_t trial[32];
  for (int k = 0; k <= nstep; ++k) {
    levels((rmin + rdelta * float(k) + float(nmax)) / (hi - min), min, trial);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const float l = trial[i];
      sum_l += w[i] * l;
      sum_l2 += w[i] * l * l;
      sum_xl += w[i] * l * x[i];
    }
    const float det = sum_w * sum_l2 - sum_l * sum_l;
    if (!(det > 0)) continue;
    float s = (sum_w * sum_xl - sum_x * sum_l) / det;
    float m = (sum_l2 * sum_x - sum_l * sum_xl) / det;
    if (m > 0) {  // the offset must stay on the non-positive side: refit the scale alone
      m = 0;
      s = sum_xl / sum_l2;
    }
    const float e = error(s, m, trial);
    if (e < best) {
      best = e;
      scale = s;
      min = m;
      std::copy(trial, trial + n, L);
    }
  }
  *offset = -min;
  return scale;
}

// A symmetric fit x[i] ~ scale * L[i], L[i] in [-nmax, nmax - 1], weighted by x[i]^2. The
// element of largest magnitude goes to level -nmax (the side with one more level), and 19 scales
// around that one are tried; the fit with the largest sum(w*x*l)^2 / sum(w*l*l) (the least
// weighted squared error at its least-squares scale) wins. Returns the scale (negative when the
// largest element is positive); L gets the levels.
float fit_symmetric(int n, int nmax, const float* x, int8_t* L) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  if (amax < 1e-15f) {  // all zero: the lowest level (stored as 0), scale 0
    std::fill(L, L + n, int8_t(-nmax));
    return 0;
  }
  float sum_xl = 0, sum_l2 = 0;
  auto trial = [&](float iscale, int8_t* out) {
    sum_xl = sum_l2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = nearest_in(iscale * x[i], -nmax, nmax - 1);
      const float w = x[i] * x[i];
      sum_xl += w * x[i] * float(l);
      sum_l2 += w * float(l) * float(l);
      if (out) out[i] = int8_t(l);
    }
  };
  trial(-float(nmax) / max, L);
  float scale = sum_l2 > 0 ? sum_xl / sum_l2 : 0;
  float best = scale * sum_xl;
  for (int k = -9; k <= 9; ++k) {
    if (k == 0) continue;
    const float iscale = -(float(nmax) + 0.1f * float(k)) / max;
    trial(iscale, nullptr);
    if (sum_l2 > 0 && sum_xl * sum_xl > best * sum_l2) {
      trial(iscale, L);
      scale = sum_xl / sum_l2;
      best = scale * sum_xl;
    }
  }
  return scale;
}

// Q3_K's fit: as fit_symmetric's first trial, then up to five passes that move single elements
// to the level that most improves sum(w*x*l)^2 / sum(w*l*l) (w = x^2). Returns the scale.
float fit_symmetric_refined(int n, int nmax, const float* x, int8_t* L) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  if (amax < 1e-15f) {  // all zero: the lowest level (stored as 0), scale 0
    std::fill(L, L + n, int8_t(-nmax));
    return 0;
  }
  const float iscale = -float(nmax) / max;
  float sum_xl = 0, sum_l2 = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = int8_t(nearest_in(iscale * x[i], -nmax, nmax - 1));
    const float w = x[i] * x[i];
    sum_xl += w * x[i] * float(L[i]);
    sum_l2 += w * float(L[i]) * float(L[i]);
  }
  for (int pass = 0; pass < 5; ++pass) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      float xl = sum_xl - w * x[i] * float(L[i]);
      if (!(xl > 0)) continue;
      float l2 = sum_l2 - w * float(L[i]) * float(L[i]);
      const int l = nearest_in(x[i] * l2 / xl, -nmax, nmax - 1);
      if (l == L[i]) continue;
      xl += w * x[i] * float(l);
      l2 += w * float(l) * float(l);
      if (l2 > 0 && xl * xl * sum_l2 > sum_xl * sum_xl * l2) {
        L[i] = int8_t(l);
        sum_xl = xl;
        sum_l2 = l2;
        ++changed;
      }
    }
    if (!changed) break;
  }
  return sum_l2 > 0 ? sum_xl / sum_l2 : 0;
}

}  // namespace

// ---- Decoders ----

void dequantize_q2_k(const void* src, int64_t n_blocks, float* dst) {
  const auto* b = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n_blocks; ++i, b += 84, dst += kSuper) {
    const uint8_t* scales = b;
    const uint8_t* qs = b + 16;
    const float d = load_f16(b + 80), dmin = load_f16(b + 82);
    for (int e = 0; e < kSuper; ++e) {
      const int sc = scales[e / 16];
      const float dl = d * float(sc & 0xF), ml = dmin * float(sc >> 4);
      dst[e] = dl * float(two_bits(qs + 32 * (e / 128), e % 128)) - ml;
    }
  }
}

void dequantize_q3_k(const void* src, int64_t n_blocks, float* dst) {
  const auto* b = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n_blocks; ++i, b += 110, dst += kSuper) {
    const uint8_t* hmask = b;
    const uint8_t* qs = b + 32;
    const uint8_t* scales = b + 96;
    const float d = load_f16(b + 108);
    for (int e = 0; e < kSuper; ++e) {
      const float dl = d * float(unpack_q3_scale(scales, e / 16) - 32);
      // The high bit of element e is bit e / 32 of hmask[e % 32]; a clear bit subtracts 4.
      const bool high = hmask[e % 32] >> (e / 32) & 1;
      const int q = two_bits(qs + 32 * (e / 128), e % 128) - (high ? 0 : 4);
      dst[e] = dl * float(q);
    }
  }
}

// Q4_K and Q5_K: 64-element chunks c = 0..3 take qs[32c, 32c + 32): the low nibbles are sub-block
// 2c, the high ones 2c + 1; Q5_K's 5th bit of sub-block s is bit s of qh[e % 32].
template <bool kFifthBit>
void dequantize_q45_k(const uint8_t* b, float* dst) {
  const float d = load_f16(b), dmin = load_f16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + (kFifthBit ? 48 : 16);
  for (int s = 0; s < 8; ++s) {
    int sc, m;
    unpack_scale_min(scales, s, &sc, &m);
    const float dl = d * float(sc), ml = dmin * float(m);
    for (int l = 0; l < 32; ++l) {
      const uint8_t byte = qs[32 * (s / 2) + l];
      int q = s % 2 == 0 ? byte & 0xF : byte >> 4;
      if (kFifthBit) q |= (qh[l] >> s & 1) << 4;
      dst[32 * s + l] = dl * float(q) - ml;
    }
  }
}

void dequantize_q4_k(const void* src, int64_t n_blocks, float* dst) {
  const auto* b = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n_blocks; ++i, b += 144, dst += kSuper) dequantize_q45_k<false>(b, dst);
}

void dequantize_q5_k(const void* src, int64_t n_blocks, float* dst) {
  const auto* b = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n_blocks; ++i, b += 176, dst += kSuper) dequantize_q45_k<true>(b, dst);
}

// Q6_K: per 128-element half h, ql[64h, 64h + 64) holds the low 4 bits (elements 0-63 of the
// half in the low nibbles, 64-127 in the high ones) and qh[32h, 32h + 32) the top 2 bits.
void dequantize_q6_k(const void* src, int64_t n_blocks, float* dst) {
  const auto* b = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n_blocks; ++i, b += 210, dst += kSuper) {
    const float d = load_f16(b + 208);
    for (int e = 0; e < kSuper; ++e) {
      const int h = e / 128, k = e % 128;
      const uint8_t* ql = b + 64 * h;
      const uint8_t* qh = b + 128 + 32 * h;
      const int lo = k < 64 ? ql[k] & 0xF : ql[k - 64] >> 4;
      const int q = (lo | two_bits(qh, k) << 4) - 32;
      const float dl = d * float(int8_t(b[192 + e / 16]));
      dst[e] = dl * float(q);
    }
  }
}

void dequantize_iq4_xs(const void* src, int64_t n_blocks, float* dst) {
  const auto* b = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n_blocks; ++i, b += 136, dst += kSuper) {
    const float d = load_f16(b);
    const unsigned scales_h = unsigned(b[2] | b[3] << 8);
    const uint8_t* scales_l = b + 4;
    for (int s = 0; s < 8; ++s) {
      const int ls = (scales_l[s / 2] >> (4 * (s % 2)) & 0xF) | int(scales_h >> (2 * s) & 3) << 4;
      const float dl = d * float(ls - 32);
      const uint8_t* qs = b + 8 + 16 * s;
      for (int j = 0; j < 32; ++j) {
        const int code = j < 16 ? qs[j] & 0xF : qs[j - 16] >> 4;
        dst[32 * s + j] = dl * float(kIq4nlValues[code]);
      }
    }
  }
}

// ---- Encoders ----

void quantize_q2_k(const float* src, int64_t n_blocks, void* dst) {
  auto* b = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n_blocks; ++i, b += 84, src += kSuper) {
    uint8_t L[kSuper];
    float scales[16], offsets[16], w[16];
    float max_scale = 0, max_offset = 0;
    for (int s = 0; s < 16; ++s) {
      const float* x = src + 16 * s;
      for (int l = 0; l < 16; ++l) w[l] = std::fabs(x[l]);
      scales[s] = fit_scale_offset(16, 3, x, w, -0.5f, 0.1f, 15, true, L + 16 * s, &offsets[s]);
      max_scale = std::max(max_scale, scales[s]);
      max_offset = std::max(max_offset, offsets[s]);
    }
    // 4-bit scale (low nibble) and offset (high nibble) per sub-block, against d and dmin.
    const float inv_scale = max_scale > 0 ? 15 / max_scale : 0;
    const float inv_offset = max_offset > 0 ? 15 / max_offset : 0;
    for (int s = 0; s < 16; ++s)
      b[s] = uint8_t(nearest_in(inv_scale * scales[s], 0, 15) |
                     nearest_in(inv_offset * offsets[s], 0, 15) << 4);
    store_f16(b + 80, max_scale / 15);
    store_f16(b + 82, max_offset / 15);
    const float d = load_f16(b + 80), dmin = load_f16(b + 82);
    for (int s = 0; s < 16; ++s) {
      const float dl = d * float(b[s] & 0xF), ml = dmin * float(b[s] >> 4);
      if (dl == 0) continue;  // the levels do not matter; keep the fit's
      for (int l = 0; l < 16; ++l)
        L[16 * s + l] = uint8_t(nearest_in((src[16 * s + l] + ml) / dl, 0, 3));
    }
    pack_two_bits(L, b + 16);
    pack_two_bits(L + 128, b + 48);
  }
}

void quantize_q3_k(const float* src, int64_t n_blocks, void* dst) {
  auto* b = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n_blocks; ++i, b += 110, src += kSuper) {
    std::memset(b, 0, 110);
    int8_t levels[kSuper];
    float scales[16];
    float amax = 0, max_scale = 0;  // the sub-block scale of largest magnitude, signed
    for (int s = 0; s < 16; ++s) {
      scales[s] = fit_symmetric_refined(16, 4, src + 16 * s, levels + 16 * s);
      if (std::fabs(scales[s]) > amax) {
        amax = std::fabs(scales[s]);
        max_scale = scales[s];
      }
    }
    if (max_scale == 0) continue;  // all zero: zero bytes decode to zeros
    // 6-bit signed scales against d = max_scale / -32, so the largest lands on -32.
    const float iscale = -32 / max_scale;
    int codes[16];
    for (int s = 0; s < 16; ++s) codes[s] = nearest_in(iscale * scales[s], -32, 31) + 32;
    pack_q3_scales(codes, b + 96);
    store_f16(b + 108, 1 / iscale);
    const float d = load_f16(b + 108);
    uint8_t L[kSuper];
    for (int s = 0; s < 16; ++s) {
      const float dl = d * float(unpack_q3_scale(b + 96, s) - 32);
      for (int l = 0; l < 16; ++l)  // where dl is 0 the levels do not matter: keep the fit's
        L[16 * s + l] =
            uint8_t((dl == 0 ? levels[16 * s + l] : nearest_in(src[16 * s + l] / dl, -4, 3)) + 4);
    }
    // Levels 4..7 set their high bit (bit e / 32 of hmask[e % 32]); the low 2 bits go to qs.
    for (int e = 0; e < kSuper; ++e)
      if (L[e] > 3) {
        b[e % 32] |= uint8_t(1 << (e / 32));
        L[e] -= 4;
      }
    pack_two_bits(L, b + 32);
    pack_two_bits(L + 128, b + 64);
  }
}

// Q4_K (kBits 4) and Q5_K (kBits 5): 8 sub-blocks of 32, weights rms(sub-block) + |x|.
template <int kBits>
void quantize_q45_k(const float* x, uint8_t* b) {
  constexpr int kMax = (1 << kBits) - 1;
  const float rmin = kBits == 4 ? -1.f : -0.5f;
  const int nstep = kBits == 4 ? 20 : 15;
  uint8_t L[kSuper];
  float scales[8], offsets[8], w[32];
  float max_scale = 0, max_offset = 0;
  for (int s = 0; s < 8; ++s) {
    const float* xs = x + 32 * s;
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
    const float rms = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) w[l] = rms + std::fabs(xs[l]);
    scales[s] =
        fit_scale_offset(32, kMax, xs, w, rmin, 0.1f, nstep, false, L + 32 * s, &offsets[s]);
    max_scale = std::max(max_scale, scales[s]);
    max_offset = std::max(max_offset, offsets[s]);
  }
  // 6-bit scales and offsets against d = max_scale / 63 and dmin = max_offset / 63.
  const float inv_scale = max_scale > 0 ? 63 / max_scale : 0;
  const float inv_offset = max_offset > 0 ? 63 / max_offset : 0;
  int sc[8], m[8];
  for (int s = 0; s < 8; ++s) {
    sc[s] = nearest_in(inv_scale * scales[s], 0, 63);
    m[s] = nearest_in(inv_offset * offsets[s], 0, 63);
  }
  store_f16(b, max_scale / 63);
  store_f16(b + 2, max_offset / 63);
  pack_scale_min(sc, m, b + 4);
  const float d = load_f16(b), dmin = load_f16(b + 2);
  for (int s = 0; s < 8; ++s) {
    const float dl = d * float(sc[s]), ml = dmin * float(m[s]);
    if (dl == 0) continue;  // the levels do not matter; keep the fit's
    for (int l = 0; l < 32; ++l)
      L[32 * s + l] = uint8_t(nearest_in((x[32 * s + l] + ml) / dl, 0, kMax));
  }
  // Chunk c of 64 elements: sub-block 2c in the low nibbles of qs[32c, 32c + 32), 2c + 1 in the
  // high ones; Q5_K's 5th bit of sub-block s in bit s of qh[l].
  uint8_t* qh = b + 16;
  uint8_t* qs = b + (kBits == 5 ? 48 : 16);
  if (kBits == 5) std::memset(qh, 0, 32);
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) {
      const int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
      qs[32 * c + l] = uint8_t((lo & 0xF) | (hi & 0xF) << 4);
      if (kBits == 5) qh[l] |= uint8_t((lo >> 4) << (2 * c) | (hi >> 4) << (2 * c + 1));
    }
}

void quantize_q4_k(const float* src, int64_t n_blocks, void* dst) {
  auto* b = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n_blocks; ++i, b += 144, src += kSuper) quantize_q45_k<4>(src, b);
}

void quantize_q5_k(const float* src, int64_t n_blocks, void* dst) {
  auto* b = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n_blocks; ++i, b += 176, src += kSuper) quantize_q45_k<5>(src, b);
}

void quantize_q6_k(const float* src, int64_t n_blocks, void* dst) {
  auto* b = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n_blocks; ++i, b += 210, src += kSuper) {
    std::memset(b, 0, 210);
    int8_t levels[kSuper];
    float scales[16];
    float amax = 0, max_scale = 0;  // the sub-block scale of largest magnitude, signed
    for (int s = 0; s < 16; ++s) {
      scales[s] = fit_symmetric(16, 32, src + 16 * s, levels + 16 * s);
      if (std::fabs(scales[s]) > amax) {
        amax = std::fabs(scales[s]);
        max_scale = scales[s];
      }
    }
    if (amax < 1e-15f) continue;  // all zero: zero bytes decode to zeros
    // 8-bit signed scales against d = max_scale / -128, so the largest lands on -128.
    const float iscale = -128 / max_scale;
    for (int s = 0; s < 16; ++s)
      b[192 + s] = uint8_t(int8_t(nearest_in(iscale * scales[s], -128, 127)));
    store_f16(b + 208, 1 / iscale);
    const float d = load_f16(b + 208);
    uint8_t L[kSuper];
    for (int s = 0; s < 16; ++s) {
      const float dl = d * float(int8_t(b[192 + s]));
      for (int l = 0; l < 16; ++l)  // where dl is 0 the levels do not matter: keep the fit's
        L[16 * s + l] = uint8_t(
            (dl == 0 ? levels[16 * s + l] : nearest_in(src[16 * s + l] / dl, -32, 31)) + 32);
    }
    // Per half h: low 4 bits of elements 0-63 in the low nibbles of ql[64h, 64h + 64), of 64-127
    // in the high ones; top 2 bits four to a byte in qh[32h, 32h + 32).
    for (int h = 0; h < 2; ++h) {
      const uint8_t* Lh = L + 128 * h;
      uint8_t* ql = b + 64 * h;
      uint8_t top[128];
      for (int k = 0; k < 64; ++k) ql[k] = uint8_t((Lh[k] & 0xF) | (Lh[k + 64] & 0xF) << 4);
      for (int k = 0; k < 128; ++k) top[k] = uint8_t(Lh[k] >> 4);
      pack_two_bits(top, b + 128 + 32 * h);
    }
  }
}

}  // namespace meshlm::formats
