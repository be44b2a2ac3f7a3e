// AVX-512 VNNI kernels of the quantized-activation matmul (kernels_quant.h), included by
// kernels_quant.cpp inside its Highway AVX3_DL namespace (AVX-512 F/BW/VL/DQ + VNNI, checked at
// run time by Highway: Ice Lake and later, Zen 4 and later).
//
// One 512-bit register holds a pair of 32-element chunks (c even, c + 1): int32 lane j of a
// vpdpbusd / vpdpwssd over it sums elements 4j..4j+3 of chunk c (j < 8) or 4(j-8).. of chunk c + 1,
// which is the model's accumulator lane L = 8 * (c % 2) + i, so one register of f32 accumulators
// is the model's 16 lanes and every f32 operation below is the model's, lane for lane (Q4_1 /
// Q5_1: the two halves go into one 256-bit accumulator by FMA, low then high; Q6_K: the halves'
// integers summed, then one FMA per super-block: ggml's order).
//
// Tiles of kR rows x kT tokens: each weight chunk pair is unpacked once per tile and used for its
// kT tokens, each activation chunk pair loaded once and used for the kR rows. Per (row, token)
// the accumulators are independent, so the results are the same for every tile shape.
//
// Integer routes (exact; kernels_quant.h only fixes the f32 order):
//  - legacy types: unsigned levels u = w + c (Q8_0: int8 ^ 0x80, c = 128; Q4_0: the nibble, c = 8;
//    Q5_0: q5, c = 16; Q4_1 / Q5_1: the level, c = 0) times signed x:
//    p = vpdpbusd(-c * sum4(x), u, x), the correction computed once per token and chunk pair for
//    all the tile's rows. No int16 intermediate (u <= 255, |x| <= 127).
//  - Q4_K / Q5_K: vpmaddubsw(levels <= 31, x) then vpdpwssd by the sub-scales (int16 pair sums
//    <= 2 * 31 * 127).
//  - Q6_K: vpmaddubsw(x + 128, q6 - 32) (pairs <= 2 * 255 * 32 < 2^15) then vpdpwssd by the
//    sub-scales; the 128 * sum of scale * level correction is per row, once per super-block.

namespace vnni {

using Z = __m512i;
using ZF = __m512;

HWY_INLINE Z LoadZ(const void* p) { return _mm512_loadu_si512(p); }
HWY_INLINE Z Bcast256(const void* p) {
  return _mm512_broadcast_i64x4(_mm256_loadu_si256(static_cast<const __m256i*>(p)));
}
// Two 256-bit loads, a in the low half, b in the high one.
HWY_INLINE Z Join(const void* a, const void* b) {
  return _mm512_inserti64x4(_mm512_zextsi256_si512(_mm256_loadu_si256(static_cast<const __m256i*>(a))),
                            _mm256_loadu_si256(static_cast<const __m256i*>(b)), 1);
}
// [a x 8, b x 8]
HWY_INLINE ZF PairF(float a, float b) {
  return _mm512_insertf32x8(_mm512_set1_ps(a), _mm256_set1_ps(b), 1);
}
HWY_INLINE void PrefetchRange(const uint8_t* p, size_t bytes) {
  for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(reinterpret_cast<const char*>(p + o), _MM_HINT_T0);
}

// The model's fixed reduction of the 16 lanes.
HWY_INLINE float FinishZ(ZF a) {
  return Finish(_mm512_castps512_ps256(a),
                _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
}

// 32 nibbles of two legacy blocks (16 bytes each at qa, qb) as levels in element order:
// [qa lo, qa hi, qb lo, qb hi].
HWY_INLINE Z Nibbles2(const uint8_t* qa, const uint8_t* qb) {
  const __m256i raw = _mm256_inserti128_si256(
      _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qa))),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(qb)), 1);
  const Z r = _mm512_shuffle_i64x2(_mm512_zextsi256_si512(raw), _mm512_zextsi256_si512(raw),
                                   _MM_SHUFFLE(1, 1, 0, 0));
  const int64_t k4 = 0x0004000400040004;
  const Z shift = _mm512_set_epi64(k4, k4, 0, 0, k4, k4, 0, 0);  // 128-bit lanes 1 and 3 by 4
  return _mm512_and_si512(_mm512_srlv_epi16(r, shift), _mm512_set1_epi8(0x0F));
}
HWY_INLINE uint64_t QhPair(const uint8_t* a, const uint8_t* b) {
  uint32_t qa, qb;
  std::memcpy(&qa, a, 4);
  std::memcpy(&qb, b, 4);
  return uint64_t(qa) | uint64_t(qb) << 32;
}

// ---- Legacy types: a pair of 32-element blocks per step ----

template <WeightType kT>
struct LegacyV;
// Levels: the unsigned levels u = w + kOffset of two blocks (w the signed level of the model).
template <>
struct LegacyV<WeightType::Q8_0> {
  static constexpr int kBytes = 34, kOffset = 128;
  static constexpr bool kMin = false;
  static HWY_INLINE Z Levels(const uint8_t* a, const uint8_t* b) {
    return _mm512_xor_si512(Join(a + 2, b + 2), _mm512_set1_epi8(char(0x80)));
  }
};
template <>
struct LegacyV<WeightType::Q4_0> {
  static constexpr int kBytes = 18, kOffset = 8;
  static constexpr bool kMin = false;
  static HWY_INLINE Z Levels(const uint8_t* a, const uint8_t* b) { return Nibbles2(a + 2, b + 2); }
};
template <>
struct LegacyV<WeightType::Q5_0> {
  static constexpr int kBytes = 22, kOffset = 16;
  static constexpr bool kMin = false;
  static HWY_INLINE Z Levels(const uint8_t* a, const uint8_t* b) {
    const Z n = Nibbles2(a + 6, b + 6);
    return _mm512_mask_add_epi8(n, _cvtu64_mask64(QhPair(a + 2, b + 2)), n,
                                _mm512_set1_epi8(0x10));
  }
};
template <>
struct LegacyV<WeightType::Q4_1> {
  static constexpr int kBytes = 20, kOffset = 0;
  static constexpr bool kMin = true;
  static HWY_INLINE Z Levels(const uint8_t* a, const uint8_t* b) { return Nibbles2(a + 4, b + 4); }
};
template <>
struct LegacyV<WeightType::Q5_1> {
  static constexpr int kBytes = 24, kOffset = 0;
  static constexpr bool kMin = true;
  static HWY_INLINE Z Levels(const uint8_t* a, const uint8_t* b) {
    const Z n = Nibbles2(a + 8, b + 8);
    return _mm512_mask_add_epi8(n, _cvtu64_mask64(QhPair(a + 4, b + 4)), n,
                                _mm512_set1_epi8(0x10));
  }
};

struct TokV {
  const int8_t* q;
  const float* d;
  const float* sx;  // Q4_1 / Q5_1: q8_1's s
  const int32_t* sums;
  const int16_t* sums16;
};

// Rows row[0..kR) (each `stride` bytes apart), tokens tok[0..kT): y[t * y_stride + r].
// -c * sum4(x) per int32 lane (0 for c = 0).
template <int kC>
HWY_INLINE Z OffsetBase(Z c, Z x) {
  if (kC == 0) return _mm512_setzero_si512();
  return _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), c, x));
}

// [lo x 8, hi x 8] of the f16 values at a and b.
HWY_INLINE ZF PairF16(const uint8_t* a, const uint8_t* b) {
  uint16_t ha, hb;
  std::memcpy(&ha, a, 2);
  std::memcpy(&hb, b, 2);
  const __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128(int(uint32_t(ha) | uint32_t(hb) << 16)));
  return _mm512_permutexvar_ps(_mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi32(1), 1),
                               _mm512_castps128_ps512(f));
}
// [p[0] x 8, p[1] x 8]
HWY_INLINE ZF PairF32(const float* p) {
  const __m128 f = _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(p)));
  return _mm512_permutexvar_ps(_mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi32(1), 1),
                               _mm512_castps128_ps512(f));
}

// Rows row[0..kR) (each `stride` bytes apart), tokens tok[0..kT_): y[t * y_stride + r].
// p = vpdpbusd(-kOffset * sum4(x), u, x) = sum4((u - kOffset) * x): the correction is per token.
template <WeightType kT, int kR, int kT_>
HWY_NOINLINE void LegacyTile(const uint8_t* row, size_t stride, int64_t nb, const TokV* tok,
                             float* y, int64_t y_stride, const float* bias, const uint8_t* next) {
  using L = LegacyV<kT>;
  constexpr int64_t kB = L::kBytes;
  // Q4_1 / Q5_1 take ggml's vec_dot order: every block into 8 lanes (acc8) by FMA, block after
  // block; the others the 16 lanes of acc.
  ZF acc[kR][kT_];
  F acc8[kR][kT_];
  float off[kR][kT_];
  for (int r = 0; r < kR; ++r)
    for (int t = 0; t < kT_; ++t) {
      acc[r][t] = _mm512_setzero_ps();
      acc8[r][t] = _mm256_setzero_ps();
      off[r][t] = 0.0f;
    }
  // Where the correction goes: per token (decode-sized tiles) or, for tiles of 8 tokens, per row:
  // p = vpdpbusd(-128 * sum4(w), x + 128, w) with the signed levels w = u - c (|w| <= 128).
  constexpr bool kRowCorr = kT_ >= 8 && L::kOffset != 0;
  const Z c = _mm512_set1_epi8(char(L::kOffset)), x80 = _mm512_set1_epi8(char(0x80));
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    if (next) PrefetchRange(next + kR * b * kB, size_t(2 * kR * kB));
    Z w[kR], wbase[kR];
    ZF dw[kR];
    float m0[kR], m1[kR];
    for (int r = 0; r < kR; ++r) {
      const uint8_t* blk = row + r * stride + b * kB;
      w[r] = L::Levels(blk, blk + kB);
      if (kRowCorr) {
        w[r] = _mm512_sub_epi8(w[r], c);
        wbase[r] = _mm512_sub_epi32(_mm512_setzero_si512(),
                                    _mm512_dpbusd_epi32(_mm512_setzero_si512(), x80, w[r]));
      }
      dw[r] = PairF16(blk, blk + kB);
      if (L::kMin) {
        m0[r] = F16(blk + 2);
        m1[r] = F16(blk + kB + 2);
      }
    }
    for (int t = 0; t < kT_; ++t) {
      const Z x = LoadZ(tok[t].q + 32 * b);
      const Z base = kRowCorr ? _mm512_setzero_si512() : OffsetBase<L::kOffset>(c, x);
      const Z xu = kRowCorr ? _mm512_xor_si512(x, x80) : x;
      const ZF dx = PairF32(tok[t].d + b);
      for (int r = 0; r < kR; ++r) {
        const Z p = kRowCorr ? _mm512_dpbusd_epi32(wbase[r], xu, w[r])
                             : _mm512_dpbusd_epi32(base, w[r], x);
        const ZF s = _mm512_mul_ps(dw[r], dx);
        if constexpr (L::kMin) {
          const ZF pf = _mm512_cvtepi32_ps(p);
          F a = _mm256_fmadd_ps(_mm512_castps512_ps256(pf), _mm512_castps512_ps256(s), acc8[r][t]);
          acc8[r][t] =
              _mm256_fmadd_ps(_mm512_extractf32x8_ps(pf, 1), _mm512_extractf32x8_ps(s, 1), a);
          off[r][t] = std::fma(m0[r], tok[t].sx[b], off[r][t]);
          off[r][t] = std::fma(m1[r], tok[t].sx[b + 1], off[r][t]);
        } else {
          acc[r][t] = _mm512_add_ps(acc[r][t], _mm512_mul_ps(_mm512_cvtepi32_ps(p), s));
        }
      }
    }
  }
  if (b < nb) {  // the last, even block alone: lanes 0-7
    Z w[kR];
    float dw[kR], m0[kR];
    for (int r = 0; r < kR; ++r) {
      const uint8_t* blk = row + r * stride + b * kB;
      w[r] = L::Levels(blk, blk);  // the high half is not used
      dw[r] = F16(blk);
      m0[r] = L::kMin ? F16(blk + 2) : 0.0f;
    }
    for (int t = 0; t < kT_; ++t) {
      const Z x = _mm512_zextsi256_si512(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tok[t].q + 32 * b)));
      const Z base = OffsetBase<L::kOffset>(c, x);
      const float dx0 = tok[t].d[b];
      for (int r = 0; r < kR; ++r) {
        const Z p = _mm512_dpbusd_epi32(base, w[r], x);
        const ZF s = _mm512_set1_ps(dw[r] * dx0);
        if constexpr (L::kMin) {
          acc8[r][t] = _mm256_fmadd_ps(_mm512_castps512_ps256(_mm512_cvtepi32_ps(p)),
                                       _mm512_castps512_ps256(s), acc8[r][t]);
          off[r][t] = std::fma(m0[r], tok[t].sx[b], off[r][t]);
        } else {
          acc[r][t] = _mm512_mask_add_ps(acc[r][t], 0x00FF, acc[r][t],
                                         _mm512_mul_ps(_mm512_cvtepi32_ps(p), s));
        }
      }
    }
  }
  for (int r = 0; r < kR; ++r)
    for (int t = 0; t < kT_; ++t) {
      float s = L::kMin ? Finish8(acc8[r][t]) : FinishZ(acc[r][t]);
      if (L::kMin) s = s + off[r][t];
      y[t * y_stride + r] = bias ? s + bias[r] : s;
    }
}

// ---- K-quants: a super-block of 256 = 4 chunk pairs per step ----

// Q4_K / Q5_K scales of one super-block as int16 words (low 128 bits: the 8 scales; the mins in
// mn16), d, dmin.
struct KRowState {
  Z sc;        // int16 sub-scales in the low words (Q4_K/Q5_K: 8, Q6_K: 16)
  __m128i mn;  // Q4_K / Q5_K: the 8 mins as int16
  Z qh;        // Q5_K: the 32 high-bit bytes in both halves; Q6_K: unused
  Z corr;      // Q6_K: 128 * sum of scale * level pairs, per lane
  float d, dmin;
};

template <WeightType kT>
HWY_INLINE void KBegin(const uint8_t* blk, KRowState& s) {
  if constexpr (kT == WeightType::Q6_K) {
    s.sc = _mm512_zextsi256_si512(
        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 192))));
    s.d = F16(blk + 208);
    s.corr = _mm512_setzero_si512();
  } else {
    const __m128i scm = ScalesMinsK4(blk + 4);
    s.sc = _mm512_zextsi128_si512(_mm_cvtepu8_epi16(scm));
    s.mn = _mm_cvtepu8_epi16(_mm_unpackhi_epi64(scm, scm));
    s.d = F16(blk);
    s.dmin = F16(blk + 2);
    if (kT == WeightType::Q5_K) s.qh = Bcast256(blk + 16);
  }
}

// Chunk pair cp (chunks 2cp, 2cp + 1) of a super-block: the levels (Q6_K: signed, level - 32) and
// the int16 sub-scale of every word.
template <WeightType kT>
HWY_INLINE void KPair(const uint8_t* blk, int cp, KRowState& s, Z* w, Z* sc) {
  const Z m4 = _mm512_set1_epi8(0x0F);
  if constexpr (kT == WeightType::Q6_K) {
    const int h = cp / 2, k2 = cp % 2;
    Z lo = LoadZ(blk + 64 * h);
    if (k2) lo = _mm512_srli_epi16(lo, 4);
    lo = _mm512_and_si512(lo, m4);
    const Z qh = Bcast256(blk + 128 + 32 * h);
    const Z shift = _mm512_inserti64x4(_mm512_set1_epi16(short(4 * k2)),
                                       _mm256_set1_epi16(short(4 * k2 + 2)), 1);
    const Z hi = _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, shift), _mm512_set1_epi8(3)), 4);
    *w = _mm512_sub_epi8(_mm512_or_si512(lo, hi), _mm512_set1_epi8(32));
    // words 8q..8q+7 take sub-scale 4cp + q
    const Z idx = _mm512_inserti64x4(
        _mm512_zextsi256_si512(_mm256_setr_epi16(
            short(4 * cp), short(4 * cp), short(4 * cp), short(4 * cp), short(4 * cp), short(4 * cp),
            short(4 * cp), short(4 * cp), short(4 * cp + 1), short(4 * cp + 1), short(4 * cp + 1),
            short(4 * cp + 1), short(4 * cp + 1), short(4 * cp + 1), short(4 * cp + 1),
            short(4 * cp + 1))),
        _mm256_setr_epi16(short(4 * cp + 2), short(4 * cp + 2), short(4 * cp + 2), short(4 * cp + 2),
                          short(4 * cp + 2), short(4 * cp + 2), short(4 * cp + 2), short(4 * cp + 2),
                          short(4 * cp + 3), short(4 * cp + 3), short(4 * cp + 3), short(4 * cp + 3),
                          short(4 * cp + 3), short(4 * cp + 3), short(4 * cp + 3), short(4 * cp + 3)),
        1);
    *sc = _mm512_permutexvar_epi16(idx, s.sc);
    s.corr = _mm512_dpwssd_epi32(s.corr, _mm512_maddubs_epi16(_mm512_set1_epi8(char(0x80)), *w), *sc);
  } else {
    const uint8_t* qs = blk + (kT == WeightType::Q5_K ? 48 : 16);
    const Z shift = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
    Z v = _mm512_and_si512(_mm512_srlv_epi16(Bcast256(qs + 32 * cp), shift), m4);
    if constexpr (kT == WeightType::Q5_K) {
      const Z bit = _mm512_inserti64x4(_mm512_set1_epi8(char(1 << (2 * cp))),
                                       _mm256_set1_epi8(char(1 << (2 * cp + 1))), 1);
      v = _mm512_mask_add_epi8(v, _mm512_test_epi8_mask(s.qh, bit), v, _mm512_set1_epi8(0x10));
    }
    *w = v;
    const Z idx = _mm512_inserti64x4(_mm512_set1_epi16(short(2 * cp)),
                                     _mm256_set1_epi16(short(2 * cp + 1)), 1);
    *sc = _mm512_permutexvar_epi16(idx, s.sc);
  }
}

template <WeightType kT, int kR, int kT_>
HWY_NOINLINE void KTile(const uint8_t* row, size_t stride, int64_t nb, const TokV* tok, float* y,
                        int64_t y_stride, const float* bias, const uint8_t* next) {
  constexpr bool kQ6 = kT == WeightType::Q6_K;
  constexpr int64_t kB = kT == WeightType::Q4_K ? 144 : kT == WeightType::Q5_K ? 176 : 210;
  static_assert(kR * kT_ <= 16, "one lane per (row, token) for the minimum terms");
  ZF acc[kR][kT_];
  F acc8[kR][kT_];  // Q6_K
  for (int r = 0; r < kR; ++r)
    for (int t = 0; t < kT_; ++t) {
      acc[r][t] = _mm512_setzero_ps();
      acc8[r][t] = _mm256_setzero_ps();
    }
  ZF offv = _mm512_setzero_ps();  // Q4_K / Q5_K: the minimum terms, (row r, token t) in lane r * kT_ + t
  const Z x80 = _mm512_set1_epi8(char(0x80));
  for (int64_t b = 0; b < nb; ++b) {
    if (next) PrefetchRange(next + kR * b * kB, size_t(kR * kB));
    KRowState st[kR];
    for (int r = 0; r < kR; ++r) KBegin<kT>(row + r * stride + b * kB, st[r]);
    Z P[kR][kT_];
    for (int r = 0; r < kR; ++r)
      for (int t = 0; t < kT_; ++t) P[r][t] = _mm512_setzero_si512();
    for (int cp = 0; cp < 4; ++cp) {
      Z w[kR], sc[kR];
      for (int r = 0; r < kR; ++r) KPair<kT>(row + r * stride + b * kB, cp, st[r], &w[r], &sc[r]);
      for (int t = 0; t < kT_; ++t) {
        Z x = LoadZ(tok[t].q + 256 * b + 64 * cp);
        if (kQ6) x = _mm512_xor_si512(x, x80);
        for (int r = 0; r < kR; ++r) {
          const Z pairs = kQ6 ? _mm512_maddubs_epi16(x, w[r]) : _mm512_maddubs_epi16(w[r], x);
          P[r][t] = _mm512_dpwssd_epi32(P[r][t], pairs, sc[r]);
        }
      }
    }
    for (int r = 0; r < kR; ++r) {
      for (int t = 0; t < kT_; ++t) {
        Z p = P[r][t];
        if constexpr (kQ6) {  // ggml's order: the halves' integers summed, 8 lanes, FMA
          p = _mm512_sub_epi32(p, st[r].corr);
          const __m256i p8 = _mm256_add_epi32(_mm512_castsi512_si256(p),
                                              _mm512_extracti64x4_epi64(p, 1));
          acc8[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p8),
                                       _mm256_set1_ps(st[r].d * tok[t].d[b]), acc8[r][t]);
        } else {
          const ZF s = _mm512_mul_ps(_mm512_set1_ps(st[r].d), _mm512_set1_ps(tok[t].d[b]));
          acc[r][t] = _mm512_add_ps(acc[r][t], _mm512_mul_ps(_mm512_cvtepi32_ps(p), s));
        }
      }
    }
    if constexpr (!kQ6) {
      // sum_c min_c * codesum_c for every (row, token) of the tile at once, in lane r * kT_ + t:
      // Sx holds token t's 8 code sums (int16) in 128-bit lane t, Mn row r's 8 mins in lane r;
      // four vpdpwssd over the dword pairs k = 0..3.
      // Sx[0] holds tokens 0-3 (token t in 128-bit lane t), Sx[1] tokens 4-7.
      Z Sx[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()}, Mn = _mm512_setzero_si512();
      alignas(32) float dxa[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      alignas(16) float dma[4] = {0, 0, 0, 0};
      for (int t = 0; t < kT_; ++t) {
        const __m128i s16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(tok[t].sums16 + 8 * b));
        Sx[t / 4] = _mm512_mask_broadcast_i32x4(Sx[t / 4], __mmask16(0xF << (4 * (t % 4))), s16);
        dxa[t] = tok[t].d[b];
      }
      for (int r = 0; r < kR; ++r) {
        Mn = _mm512_mask_broadcast_i32x4(Mn, __mmask16(0xF << (4 * r)), st[r].mn);
        dma[r] = st[r].dmin;
      }
      int32_t ia[16], ib[16], it[16], ir[16];
      for (int l = 0; l < 16; ++l) {
        const int r = l / kT_ < kR ? l / kT_ : 0, t = l % kT_;
        ia[l] = 4 * r;
        ib[l] = 4 * (t % 4) + 16 * (t / 4);  // permutex2var: bit 4 picks Sx[1]
        it[l] = t;
        ir[l] = r;
      }
      const ZF fm = _mm512_permutexvar_ps(_mm512_loadu_si512(ir), _mm512_castps128_ps512(_mm_load_ps(dma)));
      const ZF fx = _mm512_permutexvar_ps(_mm512_loadu_si512(it),
                                          _mm512_castps256_ps512(_mm256_load_ps(dxa)));
      const Z ra = _mm512_loadu_si512(ia), rb = _mm512_loadu_si512(ib);
      Z M = _mm512_setzero_si512();
      for (int k = 0; k < 4; ++k) {
        const Z kk = _mm512_set1_epi32(k);
        const Z B = kT_ > 4 ? _mm512_permutex2var_epi32(Sx[0], _mm512_add_epi32(rb, kk), Sx[1])
                            : _mm512_permutexvar_epi32(_mm512_add_epi32(rb, kk), Sx[0]);
        M = _mm512_dpwssd_epi32(M, _mm512_permutexvar_epi32(_mm512_add_epi32(ra, kk), Mn), B);
      }
      const ZF scale = _mm512_xor_ps(_mm512_mul_ps(fm, fx),
                                     _mm512_set1_ps(-0.0f));  // -(dmin * dx)
      offv = _mm512_add_ps(offv, _mm512_mul_ps(_mm512_cvtepi32_ps(M), scale));
    }
  }
  alignas(64) float off[16];
  _mm512_store_ps(off, offv);
  for (int r = 0; r < kR; ++r)
    for (int t = 0; t < kT_; ++t) {
      float s = kQ6 ? Finish8(acc8[r][t]) : FinishZ(acc[r][t]);
      if (!kQ6) s = s + off[r * kT_ + t];
      y[t * y_stride + r] = bias ? s + bias[r] : s;
    }
}

template <WeightType kT, int kR, int kT_>
HWY_INLINE void Tile(const uint8_t* row, size_t stride, int64_t cols, const TokV* tok, float* y,
                     int64_t y_stride, const float* bias, const uint8_t* next) {
  if constexpr (kT == WeightType::Q4_K || kT == WeightType::Q5_K || kT == WeightType::Q6_K)
    KTile<kT, kR, kT_>(row, stride, cols / 256, tok, y, y_stride, bias, next);
  else
    LegacyTile<kT, kR, kT_>(row, stride, cols / 32, tok, y, y_stride, bias, next);
}

// Rows row[0..kR) (kR = 4 or 1) for every token: tiles of 8 tokens (as two 2-row tiles when
// kR = 4: the per-row unpacking is shared by 8 tokens, the P accumulators still fit the 32
// registers), then 4, 3, 2 or 1. Q4_K / Q5_K stay at 4 x 4 (measured with kernels_bench on Zen:
// 8-token tiles were ~10% slower there, 7-12% faster for Q8_0, Q4_0 and Q6_K).
template <WeightType kT, int kR>
HWY_INLINE void RowTileAllTokens(const uint8_t* row, size_t rb, const formats::WeightView& w,
                                 const QuantizedX& xq, int64_t n_tok, float* y, const float* bias,
                                 const uint8_t* next) {
  for (int64_t t = 0; t < n_tok;) {
    const int64_t left = n_tok - t;
    constexpr bool k8 = kT != WeightType::Q4_K && kT != WeightType::Q5_K;
    const int nt = k8 && left >= 8 ? 8 : left >= 4 ? 4 : int(left);
    TokV tok[8];
    for (int i = 0; i < nt; ++i)
      tok[i] = TokV{xq.q_at(t + i), xq.d_at(t + i), xq.sx ? xq.sx_at(t + i) : nullptr,
                    xq.sums_at(t + i), xq.sums16_at(t + i)};
    const uint8_t* pf = t == 0 ? next : nullptr;
    float* yt = y + t * w.rows;
    switch (nt) {
      case 8:
        if constexpr (!k8) {
        } else if constexpr (kR == 4) {
          Tile<kT, 2, 8>(row, rb, w.cols, tok, yt, w.rows, bias, pf);
          Tile<kT, 2, 8>(row + 2 * rb, rb, w.cols, tok, yt + 2, w.rows, bias ? bias + 2 : nullptr,
                         pf ? pf + 2 * rb : nullptr);
        } else {
          Tile<kT, 1, 8>(row, rb, w.cols, tok, yt, w.rows, bias, pf);
        }
        break;
      case 4: Tile<kT, kR, 4>(row, rb, w.cols, tok, yt, w.rows, bias, pf); break;
      case 3: Tile<kT, kR, 3>(row, rb, w.cols, tok, yt, w.rows, bias, pf); break;
      case 2: Tile<kT, kR, 2>(row, rb, w.cols, tok, yt, w.rows, bias, pf); break;
      default: Tile<kT, kR, 1>(row, rb, w.cols, tok, yt, w.rows, bias, pf); break;
    }
    t += nt;
  }
}

template <WeightType kT>
void RowsV(const formats::WeightView& w, const QuantizedX& xq, int64_t n_tok, float* y,
           const float* bias, int64_t r0, int64_t r1) {
  constexpr int kRows = 4;
  const size_t rb = formats::row_bytes(kT, w.cols);
  const auto* base = static_cast<const uint8_t*>(w.data);
  int64_t r = r0;
  for (; r + kRows <= r1; r += kRows) {
    const uint8_t* row = base + size_t(r) * rb;
    const uint8_t* next = r + 2 * kRows <= r1 ? row + kRows * rb : nullptr;
    RowTileAllTokens<kT, kRows>(row, rb, w, xq, n_tok, y + r, bias ? bias + r : nullptr, next);
  }
  for (; r < r1; ++r)
    RowTileAllTokens<kT, 1>(base + size_t(r) * rb, rb, w, xq, n_tok, y + r,
                            bias ? bias + r : nullptr, nullptr);
}

}  // namespace vnni
