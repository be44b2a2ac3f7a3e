// NEON (Highway's NEON target, every aarch64 CPU) quantized-activation matmul and activation
// quantization: the algorithm of kernels_quant.h, bit for bit. Included by kernels_quant.cpp
// inside its per-target namespace when HWY_TARGET == HWY_NEON (arm_neon.h is included there).
//
// Integers: base ARMv8 NEON only (no dotprod extension, which not every aarch64 CPU has). Every
// weight level of the covered types fits an int8 (Q4_0 / Q5_0 / Q6_K with their offset applied,
// Q8_0 and MLX 8-bit signed, the unsigned forms <= 31), so a 16-byte half of a 32-element chunk is
// vmull_s8 (int16 products) twice, vpaddq_s16 (pair sums: |w| <= 128 and |x| <= 127, so
// 2 * 128 * 127 < 2^15, exact) and vpaddlq_s16 (to int32): int32 lane i is the sum over elements
// 4i..4i+3, the model's p_i. K-quant sub-scales multiply those int32 lanes (vmlaq_n_s32).
// Floats: the model's 16 accumulator lanes are four float32x4_t (a[0..1]: even chunks, lanes
// 0-7; a[2..3]: odd chunks, lanes 8-15), one vmulq + vaddq per chunk (the file is compiled with
// -ffp-contract=off, so they are not fused), vfmaq where the model has fma (Q4_1 / Q5_1 / Q6_K,
// lanes 0-7 only), and the model's reduction tree.
//
// Tiling: as the AVX2 kernels (one row at a time, tokens in tiles of up to kToks, the first tile
// of a row prefetching the next row).
//
// Next step (not done): vdotq_s32 (ARMv8.2 dotprod, every Apple M-series CPU and most recent
// Linux arm64 servers) computes p_i in one instruction; it needs a run-time check (getauxval
// HWCAP_ASIMDDP on Linux, sysctl hw.optional.arm.FEAT_DotProd on macOS) because Highway 1.0's NEON
// target does not assume it.

namespace neon {

constexpr int kToks = 4;  // tokens per tile

HWY_INLINE float F16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

// The 32 levels of one chunk: elements 0-15 and 16-31.
struct W32 {
  int8x16_t lo, hi;
};
// The model's p_i of one chunk: i = 0-3 and 4-7.
struct P8 {
  int32x4_t lo, hi;
};

// int32 lane i = sum over elements 4i..4i+3 of w * x (16 elements).
HWY_INLINE int32x4_t Dot16(int8x16_t w, int8x16_t x) {
  const int16x8_t a = vmull_s8(vget_low_s8(w), vget_low_s8(x));
  const int16x8_t b = vmull_high_s8(w, x);
  return vpaddlq_s16(vpaddq_s16(a, b));
}
HWY_INLINE P8 Dot32(const W32& w, const int8_t* x) {
  return P8{Dot16(w.lo, vld1q_s8(x)), Dot16(w.hi, vld1q_s8(x + 16))};
}

// 16 nibbles at qs: elements 0-15 the low nibbles, 16-31 the high ones.
HWY_INLINE W32 Nibbles32(const uint8_t* qs) {
  const uint8x16_t raw = vld1q_u8(qs);
  return W32{vreinterpretq_s8_u8(vandq_u8(raw, vdupq_n_u8(0x0F))),
             vreinterpretq_s8_u8(vshrq_n_u8(raw, 4))};
}

// 0x10 in byte j where bit j of the 32-bit qh is set (Q5_0 / Q5_1's fifth bit).
HWY_INLINE W32 HighBits(const uint8_t* p) {
  static constexpr uint8_t kBit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  const uint8x16_t bit = vld1q_u8(kBit), v16 = vdupq_n_u8(0x10);
  const uint8x16_t lo = vcombine_u8(vdup_n_u8(p[0]), vdup_n_u8(p[1]));
  const uint8x16_t hi = vcombine_u8(vdup_n_u8(p[2]), vdup_n_u8(p[3]));
  return W32{vreinterpretq_s8_u8(vandq_u8(vtstq_u8(lo, bit), v16)),
             vreinterpretq_s8_u8(vandq_u8(vtstq_u8(hi, bit), v16))};
}

HWY_INLINE W32 Or(W32 a, W32 b) { return W32{vorrq_s8(a.lo, b.lo), vorrq_s8(a.hi, b.hi)}; }
HWY_INLINE W32 Sub(W32 a, int8_t c) {
  return W32{vsubq_s8(a.lo, vdupq_n_s8(c)), vsubq_s8(a.hi, vdupq_n_s8(c))};
}

// The model's fixed reduction of lanes 0-7 (Q4_1 / Q5_1 / Q6_K: ggml's hsum_float_8) and of the
// 16 lanes (s8[i] = acc[i] + acc[i + 8] first).
HWY_INLINE float Finish8(float32x4_t s8lo, float32x4_t s8hi) {
  const float32x4_t s4 = vaddq_f32(s8lo, s8hi);
  const float32x2_t s2 = vadd_f32(vget_low_f32(s4), vget_high_f32(s4));
  return vget_lane_f32(s2, 0) + vget_lane_f32(s2, 1);
}
HWY_INLINE float Finish(const float32x4_t* a) {
  return Finish8(vaddq_f32(a[0], a[2]), vaddq_f32(a[1], a[3]));
}

HWY_INLINE void PrefetchRange(const uint8_t* p, size_t bytes) {
  for (size_t o = 0; o < bytes; o += 64) __builtin_prefetch(p + o);
}

// Per-token state of a tile.
struct Tok {
  const int8_t* q;
  const float* d;   // MLX: d_f32
  const float* sx;  // Q4_1 / Q5_1: q8_1's s
  const int32_t* sums;
  float32x4_t a[4];  // lanes 0-3, 4-7 (even chunks), 8-11, 12-15 (odd chunks)
  float off;
};

// acc[8h + i] = acc[8h + i] + float(p_i) * s (two IEEE operations per lane).
HWY_INLINE void AddChunk(Tok& t, int h, const P8& p, float s) {
  const float32x4_t sv = vdupq_n_f32(s);
  t.a[2 * h] = vaddq_f32(t.a[2 * h], vmulq_f32(vcvtq_f32_s32(p.lo), sv));
  t.a[2 * h + 1] = vaddq_f32(t.a[2 * h + 1], vmulq_f32(vcvtq_f32_s32(p.hi), sv));
}
// acc[i] = fma(float(p_i), s, acc[i]), lanes 0-7 (ggml's order).
HWY_INLINE void FmaChunk(Tok& t, const P8& p, float s) {
  const float32x4_t sv = vdupq_n_f32(s);
  t.a[0] = vfmaq_f32(t.a[0], vcvtq_f32_s32(p.lo), sv);
  t.a[1] = vfmaq_f32(t.a[1], vcvtq_f32_s32(p.hi), sv);
}

// ---- Legacy types: one 32-element block = one chunk ----

template <WeightType kT>
struct Legacy;
template <>
struct Legacy<WeightType::Q8_0> {
  static constexpr int kBytes = 34;
  static constexpr bool kMin = false;
  static HWY_INLINE W32 Levels(const uint8_t* b) {
    return W32{vld1q_s8(reinterpret_cast<const int8_t*>(b + 2)),
               vld1q_s8(reinterpret_cast<const int8_t*>(b + 18))};
  }
};
template <>
struct Legacy<WeightType::Q4_0> {
  static constexpr int kBytes = 18;
  static constexpr bool kMin = false;
  static HWY_INLINE W32 Levels(const uint8_t* b) { return Sub(Nibbles32(b + 2), 8); }
};
template <>
struct Legacy<WeightType::Q5_0> {
  static constexpr int kBytes = 22;
  static constexpr bool kMin = false;
  static HWY_INLINE W32 Levels(const uint8_t* b) {
    return Sub(Or(Nibbles32(b + 6), HighBits(b + 2)), 16);
  }
};
template <>
struct Legacy<WeightType::Q4_1> {
  static constexpr int kBytes = 20;
  static constexpr bool kMin = true;
  static HWY_INLINE W32 Levels(const uint8_t* b) { return Nibbles32(b + 4); }
};
template <>
struct Legacy<WeightType::Q5_1> {
  static constexpr int kBytes = 24;
  static constexpr bool kMin = true;
  static HWY_INLINE W32 Levels(const uint8_t* b) {
    return Or(Nibbles32(b + 8), HighBits(b + 4));
  }
};

template <WeightType kT>
HWY_INLINE void LegacyBlock(const uint8_t* blk, int64_t b, Tok* tok, int nt) {
  using L = Legacy<kT>;
  const W32 w = L::Levels(blk);
  const float d = F16(blk);
  const float m = L::kMin ? F16(blk + 2) : 0.0f;
  for (int t = 0; t < nt; ++t) {
    const P8 p = Dot32(w, tok[t].q + 32 * b);
    const float s = d * tok[t].d[b];
    if (L::kMin) {  // ggml's vec_dot order: FMA into lanes 0-7 for every block
      FmaChunk(tok[t], p, s);
      tok[t].off = std::fma(m, tok[t].sx[b], tok[t].off);
    } else {
      AddChunk(tok[t], int(b % 2), p, s);
    }
  }
}

template <WeightType kT, int kNt>
HWY_INLINE void LegacyRow(const uint8_t* row, int64_t nb, Tok* tok, const uint8_t* next) {
  constexpr int64_t kB = Legacy<kT>::kBytes;
  for (int64_t b = 0; b < nb; ++b) {
    if (next && b % 2 == 0) PrefetchRange(next + b * kB, 2 * kB);
    LegacyBlock<kT>(row + b * kB, b, tok, kNt);
  }
}

// ---- K-quants: one 256-element super-block = 8 chunks, integer sums over the whole block ----

// Per-token integer lanes of a super-block: P[0..1] even chunks (lanes 0-7), P[2..3] odd ones.
struct PK {
  int32x4_t p[4];
};

// One super-block (b) of Q4_K / Q5_K for the tile's tokens.
template <bool kFive>
HWY_INLINE void BlockQ45K(const uint8_t* blk, int64_t b, Tok* tok, int nt) {
  int32_t sc[8], mn[8];  // ggml's 6-bit scales and mins (kernels_quant_model.cpp: scale_min_k4)
  const uint8_t* s = blk + 4;
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      sc[j] = s[j] & 63;
      mn[j] = s[j + 4] & 63;
    } else {
      sc[j] = (s[j + 4] & 0xF) | (s[j - 4] >> 6) << 4;
      mn[j] = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
  }
  const float d = F16(blk), dmin = F16(blk + 2);
  const uint8_t* qs = blk + (kFive ? 48 : 16);
  const uint8x16_t m4 = vdupq_n_u8(0x0F);
  uint8x16_t qh0 = vdupq_n_u8(0), qh1 = vdupq_n_u8(0);
  if (kFive) {
    qh0 = vld1q_u8(blk + 16);
    qh1 = vld1q_u8(blk + 32);
  }
  PK P[kToks];
  for (int t = 0; t < nt; ++t)
    for (int k = 0; k < 4; ++k) P[t].p[k] = vdupq_n_s32(0);
  for (int c2 = 0; c2 < 4; ++c2) {
    const uint8x16_t r0 = vld1q_u8(qs + 32 * c2), r1 = vld1q_u8(qs + 32 * c2 + 16);
    uint8x16_t e0 = vandq_u8(r0, m4), e1 = vandq_u8(r1, m4);  // chunk 2 c2: low nibbles
    uint8x16_t o0 = vshrq_n_u8(r0, 4), o1 = vshrq_n_u8(r1, 4);  // chunk 2 c2 + 1: high ones
    if (kFive) {  // bit c of qh[l]: bit 4 of element l of chunk c
      const uint8x16_t be = vdupq_n_u8(uint8_t(1u << (2 * c2)));
      const uint8x16_t bo = vdupq_n_u8(uint8_t(2u << (2 * c2)));
      const uint8x16_t v16 = vdupq_n_u8(0x10);
      e0 = vorrq_u8(e0, vandq_u8(vtstq_u8(qh0, be), v16));
      e1 = vorrq_u8(e1, vandq_u8(vtstq_u8(qh1, be), v16));
      o0 = vorrq_u8(o0, vandq_u8(vtstq_u8(qh0, bo), v16));
      o1 = vorrq_u8(o1, vandq_u8(vtstq_u8(qh1, bo), v16));
    }
    const W32 we{vreinterpretq_s8_u8(e0), vreinterpretq_s8_u8(e1)};
    const W32 wo{vreinterpretq_s8_u8(o0), vreinterpretq_s8_u8(o1)};
    const int32_t se = sc[2 * c2], so = sc[2 * c2 + 1];
    for (int t = 0; t < nt; ++t) {
      const int8_t* x = tok[t].q + 256 * b + 64 * c2;
      const P8 pe = Dot32(we, x), po = Dot32(wo, x + 32);
      P[t].p[0] = vmlaq_n_s32(P[t].p[0], pe.lo, se);
      P[t].p[1] = vmlaq_n_s32(P[t].p[1], pe.hi, se);
      P[t].p[2] = vmlaq_n_s32(P[t].p[2], po.lo, so);
      P[t].p[3] = vmlaq_n_s32(P[t].p[3], po.hi, so);
    }
  }
  for (int t = 0; t < nt; ++t) {
    const float dx = tok[t].d[b];
    const float s = d * dx;
    AddChunk(tok[t], 0, P8{P[t].p[0], P[t].p[1]}, s);
    AddChunk(tok[t], 1, P8{P[t].p[2], P[t].p[3]}, s);
    // sum_c min_c * codesum_c, exact in int32.
    const int32_t* sums = tok[t].sums + 8 * b;
    const int32x4_t m = vmlaq_s32(vmulq_s32(vld1q_s32(sums), vld1q_s32(mn)),
                                  vld1q_s32(sums + 4), vld1q_s32(mn + 4));
    const int32_t msum = vaddvq_s32(m);
    const float o = float(msum) * -(dmin * dx);
    tok[t].off = tok[t].off + o;
  }
}

// One super-block (b) of Q6_K for the tile's tokens.
HWY_INLINE void BlockQ6K(const uint8_t* blk, int64_t b, Tok* tok, int nt) {
  const int8_t* sc = reinterpret_cast<const int8_t*>(blk + 192);  // per 16 elements
  const float d = F16(blk + 208);
  const uint8x16_t m4 = vdupq_n_u8(0x0F), m2 = vdupq_n_u8(0x03);
  PK P[kToks];
  for (int t = 0; t < nt; ++t)
    for (int k = 0; k < 4; ++k) P[t].p[k] = vdupq_n_s32(0);
  for (int h = 0; h < 2; ++h) {
    const uint8_t* ql = blk + 64 * h;
    const uint8_t* qhp = blk + 128 + 32 * h;
    // Chunk 4h + k, element l: low 4 bits from ql[l] (k = 0), ql[32 + l] (k = 1) or their high
    // nibbles (k = 2, 3), top 2 bits from bits 2k..2k+1 of qh[l]; minus 32. e: elements 0-15 and
    // 16-31 of the chunks.
    int8x16_t lv[4][2];
    const int8x16_t c32 = vdupq_n_s8(32);
    for (int e = 0; e < 2; ++e) {
      const uint8x16_t ql0 = vld1q_u8(ql + 16 * e), ql1 = vld1q_u8(ql + 32 + 16 * e);
      const uint8x16_t qh = vld1q_u8(qhp + 16 * e);
      const uint8x16_t l[4] = {
          vorrq_u8(vandq_u8(ql0, m4), vshlq_n_u8(vandq_u8(qh, m2), 4)),
          vorrq_u8(vandq_u8(ql1, m4), vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 2), m2), 4)),
          vorrq_u8(vshrq_n_u8(ql0, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 4), m2), 4)),
          vorrq_u8(vshrq_n_u8(ql1, 4), vshlq_n_u8(vshrq_n_u8(qh, 6), 4))};
      for (int k = 0; k < 4; ++k) lv[k][e] = vsubq_s8(vreinterpretq_s8_u8(l[k]), c32);
    }
    for (int k = 0; k < 4; ++k) {
      const int c = 4 * h + k;
      const int32_t s_lo = sc[2 * c], s_hi = sc[2 * c + 1];
      const int j = 2 * (k % 2);
      for (int t = 0; t < nt; ++t) {
        const P8 p = Dot32(W32{lv[k][0], lv[k][1]}, tok[t].q + 256 * b + 32 * c);
        P[t].p[j] = vmlaq_n_s32(P[t].p[j], p.lo, s_lo);
        P[t].p[j + 1] = vmlaq_n_s32(P[t].p[j + 1], p.hi, s_hi);
      }
    }
  }
  for (int t = 0; t < nt; ++t) {  // ggml's order: both halves' integers, 8 lanes, FMA
    FmaChunk(tok[t], P8{vaddq_s32(P[t].p[0], P[t].p[2]), vaddq_s32(P[t].p[1], P[t].p[3])},
             d * tok[t].d[b]);
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

HWY_INLINE Tok MakeTok(const int8_t* q, const float* d, const float* sx, const int32_t* sums) {
  Tok t;
  t.q = q;
  t.d = d;
  t.sx = sx;
  t.sums = sums;
  for (int k = 0; k < 4; ++k) t.a[k] = vdupq_n_f32(0.0f);
  t.off = 0.0f;
  return t;
}

template <WeightType kT, int kNt>
HWY_NOINLINE void RowTile(const uint8_t* row, int64_t cols, const QuantizedX& xq, int64_t t0,
                          float* y, int64_t y_stride, const float* bias, const uint8_t* next) {
  Tok tok[kNt];
  for (int t = 0; t < kNt; ++t)
    tok[t] = MakeTok(xq.q_at(t0 + t), xq.d_at(t0 + t), xq.sx ? xq.sx_at(t0 + t) : nullptr,
                     xq.sums_at(t0 + t));
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
    float s = k8 ? Finish8(tok[t].a[0], tok[t].a[1]) : Finish(tok[t].a);
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
    // 8 bits: code - 128 as stored (int8); 4 bits: the nibbles (0..15) as Q4_1.
    const W32 w = kBits == 8 ? W32{vld1q_s8(reinterpret_cast<const int8_t*>(q)),
                                   vld1q_s8(reinterpret_cast<const int8_t*>(q + 16))}
                             : Nibbles32(q);
    const int64_t c = g * kChunks + k;
    const int h = (kP + k) % 2;
    for (int t = 0; t < nt; ++t) {
      const P8 p = Dot32(w, tok[t].q + 32 * c);
      const float dx = tok[t].d[c];
      AddChunk(tok[t], h, p, s * dx);
      const float o = float(tok[t].sums[c]) * (m * dx);
      tok[t].off = tok[t].off + o;
    }
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
    tok[t] = MakeTok(xq.q_at(t0 + t), xq.d_f32_at(t0 + t), nullptr, xq.sums_at(t0 + t));
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
    const float s = Finish(tok[t].a) + tok[t].off;
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

// ---- Step 1: the activation quantization (quantize_activations, bit for bit) ----

// v rounded to f16 precision (FCVT, round to nearest even in the default FPCR mode, subnormals
// kept), or v itself where that overflows: the model's round_f16.
HWY_INLINE float RoundF16(float v) {
  const float h = vgetq_lane_f32(vcvt_f32_f16(vcvt_f16_f32(vdupq_n_f32(v))), 0);
  return std::isinf(h) ? v : h;
}

// The scale, the multiply, the round to nearest even (FRINTN, nearbyint's default mode), the
// clamp and amax are exact IEEE operations in any order.
HWY_INLINE void QuantizeToken(const float* x, int64_t cols, int64_t block, int8_t* q, float* d,
                              int32_t* sums, float* d_f32, float* sx) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const bool q8_0 = block == 32;  // else q8_K
  const float32x4_t inf = vdupq_n_f32(HUGE_VALF);
  const float32x4_t lo = vdupq_n_f32(-127.0f), hi = vdupq_n_f32(127.0f);
  for (int64_t b = 0; b < cols / block; ++b) {
    const float* xb = x + b * block;
    float32x4_t vmax = vdupq_n_f32(0.0f);
    uint32x4_t ok = vdupq_n_u32(~0u);
    for (int64_t j = 0; j < block; j += 4) {
      const float32x4_t a = vabsq_f32(vld1q_f32(xb + j));
      ok = vandq_u32(ok, vcltq_f32(a, inf));  // false for inf and NaN
      vmax = vmaxq_f32(vmax, a);
    }
    int8_t* qb = q + b * block;
    const bool finite = vminvq_u32(ok) != 0;
    const float amax = vmaxvq_f32(vmax);
    float scale = 0;
    if (finite) {
      if (q8_0) {
        scale = 127.0f / amax;
      } else {  // the first element of largest |x|
        const float32x4_t va = vdupq_n_f32(amax);
        int64_t j = 0;
        while (vmaxvq_u32(vceqq_f32(vabsq_f32(vld1q_f32(xb + j)), va)) == 0) j += 4;
        while (std::fabs(xb[j]) != amax) ++j;
        scale = -127.0f / xb[j];
      }
    }
    if (!finite || std::isinf(scale)) {
      const float v = finite ? 0.0f : nan;
      d[b] = v;
      if (q8_0) d_f32[b] = v;
      std::memset(qb, 0, size_t(block));
      continue;
    }
    const float32x4_t vs = vdupq_n_f32(scale);
    for (int64_t j = 0; j < block; j += 16) {
      int32x4_t v[4];
      for (int k = 0; k < 4; ++k) {
        const float32x4_t r = vrndnq_f32(vmulq_f32(vld1q_f32(xb + j + 4 * k), vs));
        v[k] = vcvtq_s32_f32(vminq_f32(vmaxq_f32(r, lo), hi));
      }
      const int16x8_t a = vcombine_s16(vqmovn_s32(v[0]), vqmovn_s32(v[1]));
      const int16x8_t c = vcombine_s16(vqmovn_s32(v[2]), vqmovn_s32(v[3]));
      vst1q_s8(qb + j, vcombine_s8(vqmovn_s16(a), vqmovn_s16(c)));
    }
    if (q8_0) {
      d_f32[b] = amax / 127.0f;
      d[b] = RoundF16(d_f32[b]);
    } else {
      d[b] = 1.0f / scale;
    }
  }
  for (int64_t c = 0; c < cols / 32; ++c) {
    const int32_t sum =
        int32_t(vaddlvq_s8(vld1q_s8(q + 32 * c))) + int32_t(vaddlvq_s8(vld1q_s8(q + 32 * c + 16)));
    sums[c] = sum;
    if (q8_0) sx[c] = std::isnan(d_f32[c]) ? nan : RoundF16(d_f32[c] * float(sum));
  }
}

}  // namespace neon

// MLX 4 / 8 bits here; any other type the scalar model.
void MlxRowsOrModel(const formats::WeightView& w, const QuantizedX& xq, int64_t n_tok, float* y,
                    const float* bias, int64_t r0, int64_t r1) {
  switch (w.dtype) {
#define MESHLM_MLX_CASE(B, G, S) \
  case WeightType::MLX##B##_G##G##_##S: return neon::MlxRows<B, G, WeightType::S>(w, xq, n_tok, y, bias, r0, r1);
#define MESHLM_MLX_Q8_CASES(S) MESHLM_MLX_GROUPS(MESHLM_MLX_CASE, 4, S) MESHLM_MLX_GROUPS(MESHLM_MLX_CASE, 8, S)
    MESHLM_MLX_Q8_CASES(BF16)
    MESHLM_MLX_Q8_CASES(F16)
    MESHLM_MLX_Q8_CASES(F32)
#undef MESHLM_MLX_Q8_CASES
#undef MESHLM_MLX_CASE
    default: return matmul_rows_model(w, xq, n_tok, y, bias, r0, r1);
  }
}

void MatmulRows(const formats::WeightView& w, const QuantizedX& xq, int64_t n_tok, float* y,
                const float* bias, int64_t r0, int64_t r1) {
  switch (w.dtype) {
    case WeightType::Q8_0: return neon::RowsT<WeightType::Q8_0>(w, xq, n_tok, y, bias, r0, r1);
    case WeightType::Q4_0: return neon::RowsT<WeightType::Q4_0>(w, xq, n_tok, y, bias, r0, r1);
    case WeightType::Q4_1: return neon::RowsT<WeightType::Q4_1>(w, xq, n_tok, y, bias, r0, r1);
    case WeightType::Q5_0: return neon::RowsT<WeightType::Q5_0>(w, xq, n_tok, y, bias, r0, r1);
    case WeightType::Q5_1: return neon::RowsT<WeightType::Q5_1>(w, xq, n_tok, y, bias, r0, r1);
    case WeightType::Q4_K: return neon::RowsT<WeightType::Q4_K>(w, xq, n_tok, y, bias, r0, r1);
    case WeightType::Q5_K: return neon::RowsT<WeightType::Q5_K>(w, xq, n_tok, y, bias, r0, r1);
    case WeightType::Q6_K: return neon::RowsT<WeightType::Q6_K>(w, xq, n_tok, y, bias, r0, r1);
    default: return MlxRowsOrModel(w, xq, n_tok, y, bias, r0, r1);
  }
}

void QuantizeTokens(const float* x, int64_t n_tok, int64_t cols, int64_t block, int8_t* q,
                    float* d, int32_t* sums, float* d_f32, float* sx) {
  const int64_t nc = cols / 32;
  for (int64_t t = 0; t < n_tok; ++t)
    neon::QuantizeToken(x + t * cols, cols, block, q + t * cols, d + t * (cols / block),
                        sums + t * nc, d_f32 ? d_f32 + t * nc : nullptr,
                        sx ? sx + t * nc : nullptr);
}
