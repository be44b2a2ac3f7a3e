// Per-target helpers shared by the Highway kernel files (kernels_matmul.cpp, kernels_simd.cpp).
// Included once per SIMD target via foreach_target.h, hence the toggle guard instead of
// #pragma once.
//
// Tails (the last n < Lanes elements of an array) go through a small zero-filled stack buffer:
// never a read or write past the caller's array (Highway 1.0's MaskedLoad reads the whole vector
// on some targets), and the same conversion code as the full vectors.

#if defined(MESHLM_KERNELS_HWY_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef MESHLM_KERNELS_HWY_INL_H_
#undef MESHLM_KERNELS_HWY_INL_H_
#else
#define MESHLM_KERNELS_HWY_INL_H_
#endif

#include <hwy/highway.h>

#include <cstdint>
#include <cstring>

#include "formats/weight_format.h"

HWY_BEFORE_NAMESPACE();
namespace meshlm::kernels::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;
// Upper bound of Lanes(DF()) on this target (sizes the tail buffers).
constexpr size_t kMaxLanesF = HWY_LANES(float);

// Storage type of one weight element.
template <WeightType kDt>
using WeightT = std::conditional_t<kDt == WeightType::F32, float, uint16_t>;

// Lanes(df) weights starting at p, converted to f32. BF16 is the upper half of an f32: zero-extend
// to 32 bits and shift left by 16. F16 goes through PromoteTo (F16C on AVX2).
template <WeightType kDt>
HWY_INLINE VF LoadWeights(DF df, const WeightT<kDt>* HWY_RESTRICT p) {
  if constexpr (kDt == WeightType::F32) {
    return hn::LoadU(df, p);
  } else if constexpr (kDt == WeightType::BF16) {
    const hn::RebindToUnsigned<DF> du32;
    const hn::Rebind<uint16_t, DF> du16;
    return hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(du32, hn::LoadU(du16, p))));
  } else {
#if HWY_TARGET == HWY_SSE4 || HWY_TARGET == HWY_SSSE3 || HWY_TARGET == HWY_EMU128 || \
    HWY_TARGET == HWY_SCALAR
    // No hardware conversion; Highway 1.0's emulation turns inf into a finite value. Exact
    // integer version: move exponent+mantissa to f32 position, rescale by 2^112 (handles
    // subnormals), patch inf/NaN, restore the sign.
    const hn::RebindToUnsigned<DF> du32;
    const hn::Rebind<uint16_t, DF> du16;
    const auto h = hn::PromoteTo(du32, hn::LoadU(du16, p));
    const auto em = hn::ShiftLeft<13>(hn::And(h, hn::Set(du32, 0x7fffu)));
    const auto sign = hn::ShiftLeft<16>(hn::And(h, hn::Set(du32, 0x8000u)));
    const VF finite = hn::Mul(hn::BitCast(df, em), hn::Set(df, 0x1p112f));
    const VF special = hn::BitCast(df, hn::Or(em, hn::Set(du32, 0x7f800000u)));
    const auto exp_bits = hn::And(h, hn::Set(du32, 0x7c00u));
    const auto is_special = hn::RebindMask(df, hn::Eq(exp_bits, hn::Set(du32, 0x7c00u)));
    return hn::Or(hn::IfThenElse(is_special, special, finite), hn::BitCast(df, sign));
#else
    const hn::Rebind<hwy::float16_t, DF> dh;
    return hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p)));
#endif
  }
}

// The first n (< Lanes) weights at p, converted; the other lanes are zero.
template <WeightType kDt>
HWY_INLINE VF LoadWeightsTail(DF df, const WeightT<kDt>* HWY_RESTRICT p, size_t n) {
  HWY_ALIGN WeightT<kDt> buf[kMaxLanesF] = {};
  std::memcpy(buf, p, n * sizeof(WeightT<kDt>));
  return LoadWeights<kDt>(df, buf);
}

// The first n (< Lanes) floats at p; the other lanes are `fill`.
HWY_INLINE VF LoadTail(DF df, const float* HWY_RESTRICT p, size_t n, float fill = 0.0f) {
  HWY_ALIGN float buf[kMaxLanesF];
  for (size_t i = 0; i < kMaxLanesF; ++i) buf[i] = i < n ? p[i] : fill;
  return hn::Load(df, buf);
}

// Stores the first n (< Lanes) lanes of v to p.
HWY_INLINE void StoreTail(VF v, DF df, float* HWY_RESTRICT p, size_t n) {
  HWY_ALIGN float buf[kMaxLanesF];
  hn::Store(v, df, buf);
  std::memcpy(p, buf, n * sizeof(float));
}

}  // namespace meshlm::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // MESHLM_KERNELS_HWY_INL_H_ toggle
