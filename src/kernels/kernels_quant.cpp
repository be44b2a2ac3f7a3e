// Quantized-activation matmul (the algorithm of kernels_quant.h), per SIMD target.
//
// AVX-512 VNNI (Highway's AVX3_DL target, built for this file only): kernels_quant_vnni-inl.h,
// tiles of rows x tokens with a pair of chunks per 512-bit register (vpdpbusd / vpdpwssd).
//
// AVX2 and AVX-512 without VNNI (Highway's AVX3 target): 256-bit integer dot products. A
// 32-element chunk of weight levels is one register of bytes in element order;
// _mm256_maddubs_epi16 (unsigned levels x signed activations, pairs summed to int16) then
// _mm256_madd_epi16 (pairs of int16 to int32, by 1 or by the K-quant sub-scale) leave in int32
// lane i exactly the sum over elements 4i..4i+3: the model's p_i. Even chunks accumulate in one
// __m256, odd ones in another (the model's 16 lanes; Q4_1 / Q5_1 / Q6_K: all in one, by FMA,
// ggml's order), so the f32 work is the model's, operation for operation.
//
// NEON (aarch64): kernels_quant_neon-inl.h, the same structure with 128-bit registers (vmull_s8
// products, pairwise sums to the model's p_i).
//
// Other targets (SSE4, EMU128) run the scalar model (kernels_quant_model.cpp). The AVX2 / AVX-512
// and NEON targets also have the activation quantization (QuantizeTokens) in SIMD, bit for bit.
//
// Tiling (AVX2 / AVX3): one row at a time, tokens in tiles of up to kToks: a weight block is
// loaded and its levels unpacked once per tile and used for every token of it. Rows are short
// (0.6-3.5 KB for the shapes of 0.6B-1.7B models), so the later token tiles of a row find it in
// L1; the first tile of a row prefetches the next row (a decode "tile" is one token).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/kernels_quant.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "formats/mlx_affine.h"
#include "core/error.h"
#include "kernels/kernels_quant.h"

#if HWY_ARCH_X86
#include <immintrin.h>
#elif HWY_ARCH_ARM_A64
#include <arm_neon.h>
#endif

HWY_BEFORE_NAMESPACE();
#if HWY_TARGET == HWY_AVX3_DL
// Highway 1.0's AVX3_DL target string names avxvnni (the VEX form, which Ice Lake and Zen 4
// lack) instead of avx512vnni (which its run-time check requires): add the latter; the kernels
// use the EVEX (512-bit) forms only.
#if HWY_COMPILER_CLANG  // replaces Highway's attribute (clang applies one target attribute)
HWY_POP_ATTRIBUTES
HWY_PUSH_ATTRIBUTES(HWY_TARGET_STR ",avx512vnni")
#else
#pragma GCC target("avx512vnni,no-avxvnni")
#endif
#endif
namespace meshlm::kernels::quant::HWY_NAMESPACE {

#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL

constexpr int kToks = 4;  // tokens per tile

using I = __m256i;
using F = __m256;

HWY_INLINE float F16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

HWY_INLINE I Load(const void* p) { return _mm256_loadu_si256(static_cast<const I*>(p)); }

// int32 lane i = sum over bytes 4i..4i+3 of u * s (u unsigned, s signed; int16 pair sums exact for
// |u| <= 63 or |s| <= 127 with u <= 128: see kernels_quant.h).
HWY_INLINE I DotU8S8(I u, I s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}
// The int16 pair sums of (u - c) * s, u unsigned levels, c a constant offset (8, 16, 32).
HWY_INLINE I PairsOffset(I u, I s, I c) {
  return _mm256_sub_epi16(_mm256_maddubs_epi16(u, s), _mm256_maddubs_epi16(c, s));
}

// Byte j = 0xFF where bit j of bits is set.
HWY_INLINE I BitsToBytes(uint32_t bits) {
  const I shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2,
                                  2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  const I v = _mm256_shuffle_epi8(_mm256_set1_epi32(int(bits)), shuf);
  const I bit = _mm256_set1_epi64x(int64_t(0x8040201008040201ULL));
  return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

// 16 nibbles at qs: elements 0-15 the low nibbles, 16-31 the high ones, as 32 bytes.
HWY_INLINE I Nibbles32(const uint8_t* qs) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i m = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_and_si128(raw, m);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m);
  return _mm256_set_m128i(hi, lo);
}

// The model's fixed reduction of 8 lanes (Q4_1 / Q5_1: ggml's hsum_float_8).
HWY_INLINE float Finish8(F s8) {
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}
// The model's fixed reduction of the 16 lanes (a0: even chunks, a1: odd chunks).
HWY_INLINE float Finish(F a0, F a1) { return Finish8(_mm256_add_ps(a0, a1)); }

HWY_INLINE void PrefetchRange(const uint8_t* p, size_t bytes) {
  for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(reinterpret_cast<const char*>(p + o), _MM_HINT_T0);
}

// Per-token state of a tile.
struct Tok {
  const int8_t* q;
  const float* d;   // MLX: d_f32
  const float* sx;  // Q4_1 / Q5_1: q8_1's s
  const int32_t* sums;
  F a0, a1;
  float off;
};

// ---- Legacy types: one 32-element block = one chunk ----

template <WeightType kT>
struct Legacy;
template <>
struct Legacy<WeightType::Q8_0> {
  static constexpr int kBytes = 34;
  static constexpr bool kMin = false;
  static HWY_INLINE I Levels(const uint8_t* b) { return Load(b + 2); }
  static HWY_INLINE I Dot(I w, I x) {
    return DotU8S8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
  }
};
template <>
struct Legacy<WeightType::Q4_0> {
  static constexpr int kBytes = 18;
  static constexpr bool kMin = false;
  static HWY_INLINE I Levels(const uint8_t* b) { return Nibbles32(b + 2); }
  static HWY_INLINE I Dot(I w, I x) {
    return _mm256_madd_epi16(PairsOffset(w, x, _mm256_set1_epi8(8)), _mm256_set1_epi16(1));
  }
};
template <>
struct Legacy<WeightType::Q5_0> {
  static constexpr int kBytes = 22;
  static constexpr bool kMin = false;
  static HWY_INLINE I Levels(const uint8_t* b) {
    uint32_t qh;
    std::memcpy(&qh, b + 2, 4);
    return _mm256_or_si256(Nibbles32(b + 6),
                           _mm256_and_si256(BitsToBytes(qh), _mm256_set1_epi8(0x10)));
  }
  static HWY_INLINE I Dot(I w, I x) {
    return _mm256_madd_epi16(PairsOffset(w, x, _mm256_set1_epi8(16)), _mm256_set1_epi16(1));
  }
};
template <>
struct Legacy<WeightType::Q4_1> {
  static constexpr int kBytes = 20;
  static constexpr bool kMin = true;
  static HWY_INLINE I Levels(const uint8_t* b) { return Nibbles32(b + 4); }
  static HWY_INLINE I Dot(I w, I x) { return DotU8S8(w, x); }
};
template <>
struct Legacy<WeightType::Q5_1> {
  static constexpr int kBytes = 24;
  static constexpr bool kMin = true;
  static HWY_INLINE I Levels(const uint8_t* b) {
    uint32_t qh;
    std::memcpy(&qh, b + 4, 4);
    return _mm256_or_si256(Nibbles32(b + 8),
                           _mm256_and_si256(BitsToBytes(qh), _mm256_set1_epi8(0x10)));
  }
  static HWY_INLINE I Dot(I w, I x) { return DotU8S8(w, x); }
};

template <WeightType kT, int kAcc>
HWY_INLINE void LegacyBlock(const uint8_t* blk, int64_t b, Tok* tok, int nt) {
  using L = Legacy<kT>;
  const I w = L::Levels(blk);
  const float d = F16(blk);
  const float m = L::kMin ? F16(blk + 2) : 0.0f;
  for (int t = 0; t < nt; ++t) {
    const I p = L::Dot(w, Load(tok[t].q + 32 * b));
    const F s = _mm256_set1_ps(d * tok[t].d[b]);
    if (L::kMin) {  // ggml's vec_dot order: FMA into a0 for every block
      tok[t].a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), s, tok[t].a0);
      tok[t].off = std::fma(m, tok[t].sx[b], tok[t].off);
      continue;
    }
    const F prod = _mm256_mul_ps(_mm256_cvtepi32_ps(p), s);
    if (kAcc == 0)
      tok[t].a0 = _mm256_add_ps(tok[t].a0, prod);
    else
      tok[t].a1 = _mm256_add_ps(tok[t].a1, prod);
  }
}

template <WeightType kT, int kNt>
HWY_INLINE void LegacyRow(const uint8_t* row, int64_t nb, Tok* tok, const uint8_t* next) {
  constexpr int64_t kB = Legacy<kT>::kBytes;
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    if (next) PrefetchRange(next + b * kB, 2 * kB);
    LegacyBlock<kT, 0>(row + b * kB, b, tok, kNt);
    LegacyBlock<kT, 1>(row + (b + 1) * kB, b + 1, tok, kNt);
  }
  if (b < nb) LegacyBlock<kT, 0>(row + b * kB, b, tok, kNt);
}

// ---- K-quants: one 256-element super-block = 8 chunks, integer sums over the whole block ----

// Q4_K / Q5_K: the 12 scale bytes as the 8 6-bit scales (bytes 0-7 of the result) and the 8
// 6-bit mins (bytes 8-15), four at a time in 32-bit words: scales and mins 0-3 are the low 6 bits
// of bytes 0-3 and 4-7; 4-7 take their low 4 bits from the nibbles of bytes 8-11 and their top 2
// from the top bits of bytes 0-3 (scales) and 4-7 (mins).
HWY_INLINE __m128i ScalesMinsK4(const uint8_t* s) {
  uint32_t u[3];
  std::memcpy(u, s, 12);
  const uint32_t sc_lo = u[0] & 0x3f3f3f3fu, mn_lo = u[1] & 0x3f3f3f3fu;
  const uint32_t sc_hi = (u[2] & 0x0f0f0f0fu) | ((u[0] >> 6) & 0x03030303u) << 4;
  const uint32_t mn_hi = ((u[2] >> 4) & 0x0f0f0f0fu) | ((u[1] >> 6) & 0x03030303u) << 4;
  return _mm_setr_epi32(int(sc_lo), int(sc_hi), int(mn_lo), int(mn_hi));
}

// Broadcast of int16 lane j of both 128-bit halves of v (the same in both).
HWY_INLINE I BroadcastI16(I v, int j) {
  return _mm256_shuffle_epi8(v, _mm256_set1_epi16(int16_t(0x0100 + 0x0202 * j)));
}

// One super-block (b) of Q4_K / Q5_K for the tile's tokens.
template <bool kFive>
HWY_INLINE void BlockQ45K(const uint8_t* blk, int64_t b, Tok* tok, int nt) {
  const __m128i scm = ScalesMinsK4(blk + 4);
  const I sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scm));        // 8 scales
  const __m128i mn16 = _mm_cvtepu8_epi16(_mm_unpackhi_epi64(scm, scm));     // 8 mins
  const float d = F16(blk), dmin = F16(blk + 2);
  const uint8_t* qs = blk + (kFive ? 48 : 16);
  const I m4 = _mm256_set1_epi8(0x0F);
  I qh = _mm256_setzero_si256();
  if (kFive) qh = Load(blk + 16);
  const I one = _mm256_set1_epi8(1);
  I p0[kToks], p1[kToks];
  for (int t = 0; t < nt; ++t) p0[t] = p1[t] = _mm256_setzero_si256();
  for (int c2 = 0; c2 < 4; ++c2) {
    const I raw = Load(qs + 32 * c2);
    I lo = _mm256_and_si256(raw, m4);
    I hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
    if (kFive) {
      const I h = _mm256_srli_epi16(qh, 2 * c2);
      lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(h, one), 4));
      hi = _mm256_or_si256(
          hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 1), one), 4));
    }
    const I s_lo = BroadcastI16(sc16, 2 * c2);
    const I s_hi = BroadcastI16(sc16, 2 * c2 + 1);
    for (int t = 0; t < nt; ++t) {
      const int8_t* x = tok[t].q + 256 * b + 64 * c2;
      p0[t] = _mm256_add_epi32(p0[t], _mm256_madd_epi16(_mm256_maddubs_epi16(lo, Load(x)), s_lo));
      p1[t] = _mm256_add_epi32(p1[t],
                               _mm256_madd_epi16(_mm256_maddubs_epi16(hi, Load(x + 32)), s_hi));
    }
  }
  for (int t = 0; t < nt; ++t) {
    const float dx = tok[t].d[b];
    const F s = _mm256_set1_ps(d * dx);
    tok[t].a0 = _mm256_add_ps(tok[t].a0, _mm256_mul_ps(_mm256_cvtepi32_ps(p0[t]), s));
    tok[t].a1 = _mm256_add_ps(tok[t].a1, _mm256_mul_ps(_mm256_cvtepi32_ps(p1[t]), s));
    // sum_c min_c * codesum_c: the 8 code sums (|sum| <= 32 * 127) as int16, one madd.
    const int32_t* sums = tok[t].sums + 8 * b;
    const __m128i s16 = _mm_packs_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sums)),
                                        _mm_loadu_si128(reinterpret_cast<const __m128i*>(sums + 4)));
    __m128i m = _mm_madd_epi16(s16, mn16);
    m = _mm_add_epi32(m, _mm_unpackhi_epi64(m, m));
    m = _mm_add_epi32(m, _mm_shuffle_epi32(m, 1));
    const int32_t msum = _mm_cvtsi128_si32(m);
    const float o = float(msum) * -(dmin * dx);
    tok[t].off = tok[t].off + o;
  }
}

// One super-block (b) of Q6_K for the tile's tokens.
HWY_INLINE void BlockQ6K(const uint8_t* blk, int64_t b, Tok* tok, int nt) {
  // The 16 int8 sub-scales as int16; half h's eight in both 128-bit halves of sc16[h].
  const __m256i sc_all = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 192)));
  const I sc16[2] = {_mm256_permute2x128_si256(sc_all, sc_all, 0x00),
                     _mm256_permute2x128_si256(sc_all, sc_all, 0x11)};
  const float d = F16(blk + 208);
  const I m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x03);
  const I c32 = _mm256_set1_epi8(32);
  I p0[kToks], p1[kToks];
  for (int t = 0; t < nt; ++t) p0[t] = p1[t] = _mm256_setzero_si256();
  for (int h = 0; h < 2; ++h) {
    const I ql0 = Load(blk + 64 * h), ql1 = Load(blk + 64 * h + 32);
    const I qh = Load(blk + 128 + 32 * h);
    // Chunk 4h + k: low 4 bits from ql0 / ql1 (low nibbles for k < 2, high for k >= 2), top 2
    // bits from bits 2k..2k+1 of qh.
    I lv[4];
    lv[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4),
                            _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4));
    lv[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4),
                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4));
    lv[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4));
    lv[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4));
    for (int k = 0; k < 4; ++k) {
      const int c = 4 * h + k;
      // [scale 2c x 8 | scale 2c+1 x 8]: int16 lane 2k of the half in the low 128 bits, 2k+1 in
      // the high ones.
      const I s = _mm256_shuffle_epi8(
          sc16[h], _mm256_set_m128i(_mm_set1_epi16(int16_t(0x0100 + 0x0202 * (2 * k + 1))),
                                    _mm_set1_epi16(int16_t(0x0100 + 0x0202 * (2 * k)))));
      for (int t = 0; t < nt; ++t) {
        const I x = Load(tok[t].q + 256 * b + 32 * c);
        const I p = _mm256_madd_epi16(PairsOffset(lv[k], x, c32), s);
        if (k % 2 == 0)
          p0[t] = _mm256_add_epi32(p0[t], p);
        else
          p1[t] = _mm256_add_epi32(p1[t], p);
      }
    }
  }
  for (int t = 0; t < nt; ++t) {  // ggml's order: both halves' integers, 8 lanes, FMA
    const F s = _mm256_set1_ps(d * tok[t].d[b]);
    tok[t].a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(p0[t], p1[t])), s, tok[t].a0);
  }
}

template <WeightType kT, int kNt>
HWY_INLINE void KRow(const uint8_t* row, int64_t nb, Tok* tok, const uint8_t* next) {
  constexpr int64_t kB = kT == WeightType::Q4_K ? 144 : kT == WeightType::Q5_K ? 176 : 210;
  for (int64_t b = 0; b < nb; ++b) {
    if (next) PrefetchRange(next + b * kB, kB);
    if constexpr (kT == WeightType::Q6_K)
      BlockQ6K(row + b * kB, b, tok, kNt);
    else
      BlockQ45K<kT == WeightType::Q5_K>(row + b * kB, b, tok, kNt);
  }
}

template <WeightType kT, int kNt>
HWY_NOINLINE void RowTile(const uint8_t* row, int64_t cols, const QuantizedX& xq, int64_t t0,
                          float* y, int64_t y_stride, const float* bias, const uint8_t* next) {
  Tok tok[kNt];
  for (int t = 0; t < kNt; ++t)
    tok[t] = Tok{xq.q_at(t0 + t), xq.d_at(t0 + t), xq.sx ? xq.sx_at(t0 + t) : nullptr,
                 xq.sums_at(t0 + t), _mm256_setzero_ps(), _mm256_setzero_ps(), 0.0f};
  constexpr bool kLegacy = kT != WeightType::Q4_K && kT != WeightType::Q5_K &&
                           kT != WeightType::Q6_K;
  constexpr bool kHasOff = kT == WeightType::Q4_1 || kT == WeightType::Q5_1 ||
                           kT == WeightType::Q4_K || kT == WeightType::Q5_K;
  if constexpr (kLegacy)
    LegacyRow<kT, kNt>(row, cols / 32, tok, next);
  else
    KRow<kT, kNt>(row, cols / 256, tok, next);
  constexpr bool k8 = kT == WeightType::Q4_1 || kT == WeightType::Q5_1 ||  // ggml's order
                      kT == WeightType::Q6_K;
  for (int t = 0; t < kNt; ++t) {
    float s = k8 ? Finish8(tok[t].a0) : Finish(tok[t].a0, tok[t].a1);
    if (kHasOff) s = s + tok[t].off;
    y[t * y_stride] = bias ? s + *bias : s;
  }
}

template <WeightType kT>
void RowsT(const formats::WeightView& w, const QuantizedX& xq, int64_t n_tok, float* y,
           const float* bias, int64_t r0, int64_t r1) {
  const size_t rb = formats::row_bytes(kT, w.cols);
  const auto* base = static_cast<const uint8_t*>(w.data);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = base + size_t(r) * rb;
    const uint8_t* next = r + 1 < r1 ? row + rb : nullptr;
    const float* b = bias ? bias + r : nullptr;
    for (int64_t t = 0; t < n_tok; t += kToks) {
      const uint8_t* pf = t == 0 ? next : nullptr;
      float* yt = y + t * w.rows + r;
      switch (std::min<int64_t>(kToks, n_tok - t)) {
        case 1: RowTile<kT, 1>(row, w.cols, xq, t, yt, w.rows, b, pf); break;
        case 2: RowTile<kT, 2>(row, w.cols, xq, t, yt, w.rows, b, pf); break;
        case 3: RowTile<kT, 3>(row, w.cols, xq, t, yt, w.rows, b, pf); break;
        default: RowTile<kT, 4>(row, w.cols, xq, t, yt, w.rows, b, pf); break;
      }
    }
  }
}

// ---- MLX affine 4 / 8 bits (formats/mlx_affine.h): Q4_1's arithmetic per 32-element chunk,
// with the chunk's group scale and minimum (kernels_quant_model.cpp: mlx_row_dot) ----

template <WeightType kS>
HWY_INLINE float MlxScale(const uint8_t* p) {
  if constexpr (kS == WeightType::F32) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  } else if constexpr (kS == WeightType::BF16) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    const uint32_t u = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  } else {
    return F16(p);
  }
}

// Chunk c (levels w) for the tile's tokens, into accumulator h = c % 2.
template <int kBits>
HWY_INLINE void MlxChunk(I w, int64_t c, int h, float s, float m, Tok* tok, int nt) {
  for (int t = 0; t < nt; ++t) {
    const I x = Load(tok[t].q + 32 * c);
    // 8 bits: signed levels (code - 128), Q8_0's sign trick; 4 bits: unsigned nibbles as Q4_1.
    const I p = kBits == 8 ? Legacy<WeightType::Q8_0>::Dot(w, x) : DotU8S8(w, x);
    const float dx = tok[t].d[c];
    const F prod = _mm256_mul_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(s * dx));
    if (h == 0)
      tok[t].a0 = _mm256_add_ps(tok[t].a0, prod);
    else
      tok[t].a1 = _mm256_add_ps(tok[t].a1, prod);
    const float o = float(tok[t].sums[c]) * (m * dx);
    tok[t].off = tok[t].off + o;
  }
}

// One group (block at blk, group index g) whose first chunk has parity kP.
template <int kBits, int kG, WeightType kS, int kP>
HWY_INLINE void MlxGroup(const uint8_t* blk, int64_t g, Tok* tok, int nt) {
  constexpr int kSb = kS == WeightType::F32 ? 4 : 2;
  constexpr int kChunks = kG / 32;
  const float s = MlxScale<kS>(blk), bias = MlxScale<kS>(blk + kSb);
  const float m = kBits == 8 ? bias + s * 128.0f : bias;
#pragma GCC unroll 4
  for (int k = 0; k < kChunks; ++k) {
    const uint8_t* q = blk + 2 * kSb + k * kBits * 4;
    const I w = kBits == 8 ? Load(q) : Nibbles32(q);
    MlxChunk<kBits>(w, g * kChunks + k, (kP + k) % 2, s, m, tok, nt);
  }
}

template <int kBits, int kG, WeightType kS, int kNt>
HWY_NOINLINE void MlxRowTile(const uint8_t* row, int64_t cols, const QuantizedX& xq, int64_t t0,
                             float* y, int64_t y_stride, const float* bias,
                             const uint8_t* next) {
  constexpr int64_t kB = int64_t(formats::mlx_block_bytes(kBits, kG, kS));
  constexpr int kP2 = (kG / 32) % 2;  // parity of the second group of a pair
  Tok tok[kNt];
  for (int t = 0; t < kNt; ++t)
    tok[t] = Tok{xq.q_at(t0 + t), xq.d_f32_at(t0 + t), nullptr, xq.sums_at(t0 + t),
                 _mm256_setzero_ps(), _mm256_setzero_ps(), 0.0f};
  const int64_t ng = cols / kG;
  int64_t g = 0;
  for (; g + 2 <= ng; g += 2) {
    if (next) PrefetchRange(next + g * kB, 2 * kB);
    MlxGroup<kBits, kG, kS, 0>(row + g * kB, g, tok, kNt);
    MlxGroup<kBits, kG, kS, kP2>(row + (g + 1) * kB, g + 1, tok, kNt);
  }
  if (g < ng) {
    if (next) PrefetchRange(next + g * kB, kB);
    MlxGroup<kBits, kG, kS, 0>(row + g * kB, g, tok, kNt);
  }
  for (int t = 0; t < kNt; ++t) {
    const float s = Finish(tok[t].a0, tok[t].a1) + tok[t].off;
    y[t * y_stride] = bias ? s + *bias : s;
  }
}

template <int kBits, int kG, WeightType kS>
void MlxRows(const formats::WeightView& w, const QuantizedX& xq, int64_t n_tok, float* y,
             const float* bias, int64_t r0, int64_t r1) {
  const size_t rb = formats::row_bytes(w.dtype, w.cols);
  const auto* base = static_cast<const uint8_t*>(w.data);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = base + size_t(r) * rb;
    const uint8_t* next = r + 1 < r1 ? row + rb : nullptr;
    const float* b = bias ? bias + r : nullptr;
    for (int64_t t = 0; t < n_tok; t += kToks) {
      const uint8_t* pf = t == 0 ? next : nullptr;
      float* yt = y + t * w.rows + r;
      switch (std::min<int64_t>(kToks, n_tok - t)) {
        case 1: MlxRowTile<kBits, kG, kS, 1>(row, w.cols, xq, t, yt, w.rows, b, pf); break;
        case 2: MlxRowTile<kBits, kG, kS, 2>(row, w.cols, xq, t, yt, w.rows, b, pf); break;
        case 3: MlxRowTile<kBits, kG, kS, 3>(row, w.cols, xq, t, yt, w.rows, b, pf); break;
        default: MlxRowTile<kBits, kG, kS, 4>(row, w.cols, xq, t, yt, w.rows, b, pf); break;
      }
    }
  }
}

// MLX 4 / 8 bits here; any other type the scalar model.
void MlxRowsOrModel(const formats::WeightView& w, const QuantizedX& xq, int64_t n_tok, float* y,
                    const float* bias, int64_t r0, int64_t r1) {
  switch (w.dtype) {
#define MESHLM_MLX_CASE(B, G, S) \
  case WeightType::MLX##B##_G##G##_##S: return MlxRows<B, G, WeightType::S>(w, xq, n_tok, y, bias, r0, r1);
#define MESHLM_MLX_Q8_CASES(S) MESHLM_MLX_GROUPS(MESHLM_MLX_CASE, 4, S) MESHLM_MLX_GROUPS(MESHLM_MLX_CASE, 8, S)
    MESHLM_MLX_Q8_CASES(BF16)
    MESHLM_MLX_Q8_CASES(F16)
    MESHLM_MLX_Q8_CASES(F32)
#undef MESHLM_MLX_Q8_CASES
#undef MESHLM_MLX_CASE
    default: return matmul_rows_model(w, xq, n_tok, y, bias, r0, r1);
  }
}
#if HWY_TARGET == HWY_AVX3_DL
#include "kernels/kernels_quant_vnni-inl.h"
#endif

void MatmulRows(const formats::WeightView& w, const QuantizedX& xq, int64_t n_tok, float* y,
                const float* bias, int64_t r0, int64_t r1) {
#if HWY_TARGET == HWY_AVX3_DL
  switch (w.dtype) {
    case WeightType::Q8_0:
      // Decode (one token): the 256-bit row-at-a-time kernel below, ~8% more tokens/s than the
      // 4-row VNNI tiles (meshlm bench -p 0 -n 64 --threads 1, Qwen3-0.6B dims, Zen 4).
      if (n_tok == 1) break;
      return vnni::RowsV<WeightType::Q8_0>(w, xq, n_tok, y, bias, r0, r1);
    case WeightType::Q4_0: return vnni::RowsV<WeightType::Q4_0>(w, xq, n_tok, y, bias, r0, r1);
    case WeightType::Q4_1: return vnni::RowsV<WeightType::Q4_1>(w, xq, n_tok, y, bias, r0, r1);
    case WeightType::Q5_0: return vnni::RowsV<WeightType::Q5_0>(w, xq, n_tok, y, bias, r0, r1);
    case WeightType::Q5_1: return vnni::RowsV<WeightType::Q5_1>(w, xq, n_tok, y, bias, r0, r1);
    case WeightType::Q4_K: return vnni::RowsV<WeightType::Q4_K>(w, xq, n_tok, y, bias, r0, r1);
    case WeightType::Q5_K: return vnni::RowsV<WeightType::Q5_K>(w, xq, n_tok, y, bias, r0, r1);
    case WeightType::Q6_K: return vnni::RowsV<WeightType::Q6_K>(w, xq, n_tok, y, bias, r0, r1);
    default: break;
  }
#endif
  switch (w.dtype) {
    case WeightType::Q8_0: return RowsT<WeightType::Q8_0>(w, xq, n_tok, y, bias, r0, r1);
    case WeightType::Q4_0: return RowsT<WeightType::Q4_0>(w, xq, n_tok, y, bias, r0, r1);
    case WeightType::Q4_1: return RowsT<WeightType::Q4_1>(w, xq, n_tok, y, bias, r0, r1);
    case WeightType::Q5_0: return RowsT<WeightType::Q5_0>(w, xq, n_tok, y, bias, r0, r1);
    case WeightType::Q5_1: return RowsT<WeightType::Q5_1>(w, xq, n_tok, y, bias, r0, r1);
    case WeightType::Q4_K: return RowsT<WeightType::Q4_K>(w, xq, n_tok, y, bias, r0, r1);
    case WeightType::Q5_K: return RowsT<WeightType::Q5_K>(w, xq, n_tok, y, bias, r0, r1);
    case WeightType::Q6_K: return RowsT<WeightType::Q6_K>(w, xq, n_tok, y, bias, r0, r1);
    default: return MlxRowsOrModel(w, xq, n_tok, y, bias, r0, r1);
  }
}

// v rounded to f16 precision (F16C, round to nearest even), or v itself where that overflows:
// the model's round_f16.
HWY_INLINE float RoundF16(float v) {
  const float h = _cvtsh_ss(_cvtss_sh(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  return std::isinf(h) ? v : h;
}

// Step 1 of the algorithm for one token (quantize_activations, bit for bit): the scale, the
// multiply, the round-to-nearest-even (the default mode nearbyint uses), the clamp and amax are
// exact IEEE operations in any order.
HWY_INLINE void QuantizeToken(const float* x, int64_t cols, int64_t block, int8_t* q, float* d,
                              int32_t* sums, float* d_f32, float* sx) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const bool q8_0 = block == 32;  // else q8_K
  const F sign = _mm256_set1_ps(-0.0f), inf = _mm256_set1_ps(HUGE_VALF);
  const F lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  for (int64_t b = 0; b < cols / block; ++b) {
    const float* xb = x + b * block;
    F vmax = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
    for (int64_t j = 0; j < block; j += 8) {
      const F a = _mm256_andnot_ps(sign, _mm256_loadu_ps(xb + j));
      bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, inf, _CMP_NLT_UQ));  // inf or NaN
      vmax = _mm256_max_ps(vmax, a);
    }
    int8_t* qb = q + b * block;
    const bool finite = _mm256_movemask_ps(bad) == 0;
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
    const float amax = _mm_cvtss_f32(m4);
    float scale = 0;
    if (finite) {
      if (q8_0) {
        scale = 127.0f / amax;
      } else {  // the first element of largest |x|
        const F va = _mm256_set1_ps(amax);
        int64_t j = 0;
        int m = 0;
        for (;; j += 8) {
          m = _mm256_movemask_ps(
              _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(xb + j)), va, _CMP_EQ_OQ));
          if (m != 0) break;
        }
        scale = -127.0f / xb[j + __builtin_ctz(unsigned(m))];
      }
    }
    if (!finite || std::isinf(scale)) {
      const float v = finite ? 0.0f : nan;
      d[b] = v;
      if (q8_0) d_f32[b] = v;
      std::memset(qb, 0, size_t(block));
      continue;
    }
    const F vs = _mm256_set1_ps(scale);
    for (int64_t j = 0; j < block; j += 32) {
      I v[4];
      for (int k = 0; k < 4; ++k) {
        const F r = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xb + j + 8 * k), vs),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v[k] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
      }
      // packs work per 128-bit half: bytes come out in dword order 0,2,1,3 of the 8 groups of 4
      const I p16a = _mm256_packs_epi32(v[0], v[1]), p16b = _mm256_packs_epi32(v[2], v[3]);
      const I p8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16a, p16b),
                                               _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
      _mm256_storeu_si256(reinterpret_cast<I*>(qb + j), p8);
    }
    if (q8_0) {
      d_f32[b] = amax / 127.0f;
      d[b] = RoundF16(d_f32[b]);
    } else {
      d[b] = 1.0f / scale;
    }
  }
  for (int64_t c = 0; c < cols / 32; ++c) {
    const I v = _mm256_loadu_si256(reinterpret_cast<const I*>(q + 32 * c));
    // sum of 32 int8: sign-extend to int16 pairs via maddubs(1, v), then madd by 1
    const I s32 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), v), _mm256_set1_epi16(1));
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    const int32_t sum = _mm_cvtsi128_si32(s);
    sums[c] = sum;
    if (q8_0) sx[c] = std::isnan(d_f32[c]) ? nan : RoundF16(d_f32[c] * float(sum));
  }
}

void QuantizeTokens(const float* x, int64_t n_tok, int64_t cols, int64_t block, int8_t* q,
                    float* d, int32_t* sums, float* d_f32, float* sx) {
  const int64_t nc = cols / 32;
  for (int64_t t = 0; t < n_tok; ++t)
    QuantizeToken(x + t * cols, cols, block, q + t * cols, d + t * (cols / block), sums + t * nc,
                  d_f32 ? d_f32 + t * nc : nullptr, sx ? sx + t * nc : nullptr);
}

#elif HWY_TARGET == HWY_NEON
#include "kernels/kernels_quant_neon-inl.h"

#else  // other targets: the scalar model

void QuantizeTokens(const float* x, int64_t n_tok, int64_t cols, int64_t block, int8_t* q,
                    float* d, int32_t* sums, float* d_f32, float* sx) {
  const int64_t nc = cols / 32;
  for (int64_t t = 0; t < n_tok; ++t)
    quantize_activations(x + t * cols, cols, block, q + t * cols, d + t * (cols / block),
                         sums + t * nc, d_f32 ? d_f32 + t * nc : nullptr, sx ? sx + t * nc : nullptr);
}

void MatmulRows(const formats::WeightView& w, const QuantizedX& xq, int64_t n_tok, float* y,
                const float* bias, int64_t r0, int64_t r1) {
  matmul_rows_model(w, xq, n_tok, y, bias, r0, r1);
}

#endif

}  // namespace meshlm::kernels::quant::HWY_NAMESPACE
#if HWY_TARGET == HWY_AVX3_DL && HWY_COMPILER_CLANG  // Highway's own, for HWY_AFTER_NAMESPACE
HWY_POP_ATTRIBUTES
HWY_PUSH_ATTRIBUTES(HWY_TARGET_STR)
#endif
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace meshlm::kernels::quant {

HWY_EXPORT(MatmulRows);
HWY_EXPORT(QuantizeTokens);

void quantize_tokens(const float* x, int64_t n_tok, int64_t cols, int64_t block, int8_t* q,
                     float* d, int32_t* sums, float* d_f32, float* sx) {
  HWY_DYNAMIC_DISPATCH(QuantizeTokens)(x, n_tok, cols, block, q, d, sums, d_f32, sx);
}

void QuantizedXBuffer::quantize(const float* x, int64_t n_tok, int64_t cols, int64_t block) {
  if ((block != 32 && block != 256) || cols % block != 0)
    throw Error("kernels", "quantize: cols not whole blocks");
  q_.resize(size_t(n_tok * cols));
  d_.resize(size_t(n_tok * (cols / block)));
  sums_.resize(size_t(n_tok * (cols / 32)));
  sums16_.resize(sums_.size());
  const bool q8_0 = block == 32;
  d_f32_.resize(q8_0 ? sums_.size() : 0);
  sx_.resize(q8_0 ? sums_.size() : 0);
  view_ = QuantizedX{cols,         block, q_.data(), d_.data(), q8_0 ? d_f32_.data() : nullptr,
                     q8_0 ? sx_.data() : nullptr, sums_.data(), sums16_.data()};
  quantize_tokens(x, n_tok, cols, block, q_.data(), d_.data(), sums_.data(),
                  q8_0 ? d_f32_.data() : nullptr, q8_0 ? sx_.data() : nullptr);
  for (size_t i = 0; i < sums_.size(); ++i) sums16_[i] = int16_t(sums_[i]);
}

std::vector<int64_t> built_targets() {
  std::vector<int64_t> out;
  for (int64_t bits = HWY_TARGETS; bits != 0; bits &= bits - 1) out.push_back(bits & -bits);
  return out;
}

void matmul_rows(const formats::WeightView& w, const QuantizedX& xq, int64_t n_tok, float* y,
                 const float* bias, int64_t r0, int64_t r1) {
  HWY_DYNAMIC_DISPATCH(MatmulRows)(w, xq, n_tok, y, bias, r0, r1);
}

}  // namespace meshlm::kernels::quant
#endif  // HWY_ONCE
