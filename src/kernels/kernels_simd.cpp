// The element-wise and attention kernels of kernels.h (matmul lives in kernels_matmul.cpp):
// Highway SIMD, one copy per target, chosen at run time with HWY_DYNAMIC_DISPATCH.
//
// Accuracy notes (tested in tests/kernels/kernels_parity_test.cpp):
// - sums whose length grows with the model (softmax denominators, sums of squares) are
//   accumulated in f64 lanes, like the reference;
// - exp is Highway's contrib Exp (max 1 ulp), so softmax/silu stay within ~1e-6 relative of
//   std::exp;
// - rope takes its cos/sin from std::cos/std::sin exactly like the reference and rotates without
//   FMA contraction, so it matches the reference to the last bit where the reference is compiled
//   without contraction.

#include <algorithm>
#include <cstring>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/kernels_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
// After highway.h (per-target header):
#include <hwy/contrib/math/math-inl.h>

#include "core/error.h"
#include "core/half.h"
#include "formats/activation_type.h"
#include "kernels/kernels.h"
#include "kernels/kernels_hwy-inl.h"
#include "kernels/kernels_targets.h"

HWY_BEFORE_NAMESPACE();
namespace meshlm::kernels::HWY_NAMESPACE {

#if HWY_HAVE_FLOAT64 && HWY_TARGET != HWY_SCALAR
// f32 lanes summed into f64 lanes, half a vector at a time.
using DD = hn::Rebind<double, hn::Half<DF>>;
using SumF64 = hn::Vec<DD>;
HWY_INLINE SumF64 ZeroF64() {
  return hn::Zero(DD());
}
HWY_INLINE SumF64 AddF64(SumF64 acc, VF v) {
  const hn::Half<DF> dh;
  acc = hn::Add(acc, hn::PromoteTo(DD(), hn::LowerHalf(dh, v)));
  return hn::Add(acc, hn::PromoteTo(DD(), hn::UpperHalf(dh, v)));
}
HWY_INLINE SumF64 AddSquaresF64(SumF64 acc, VF v) {
  const hn::Half<DF> dh;
  const auto lo = hn::PromoteTo(DD(), hn::LowerHalf(dh, v));
  const auto hi = hn::PromoteTo(DD(), hn::UpperHalf(dh, v));
  return hn::MulAdd(hi, hi, hn::MulAdd(lo, lo, acc));
}
HWY_INLINE double TotalF64(SumF64 acc) {
  return hn::GetLane(hn::SumOfLanes(DD(), acc));
}
#else
// Targets without f64 lanes or halves (HWY_SCALAR, the fallback with GCC < 12.3): plain double.
using SumF64 = double;
HWY_INLINE SumF64 ZeroF64() {
  return 0.0;
}
HWY_INLINE SumF64 AddF64(SumF64 acc, VF v) {
  HWY_ALIGN float buf[kMaxLanesF];
  hn::Store(v, DF(), buf);
  for (size_t i = 0; i < hn::Lanes(DF()); ++i) acc += double(buf[i]);
  return acc;
}
HWY_INLINE SumF64 AddSquaresF64(SumF64 acc, VF v) {
  HWY_ALIGN float buf[kMaxLanesF];
  hn::Store(v, DF(), buf);
  for (size_t i = 0; i < hn::Lanes(DF()); ++i) acc += double(buf[i]) * double(buf[i]);
  return acc;
}
HWY_INLINE double TotalF64(SumF64 acc) {
  return acc;
}
#endif

void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  if (n <= 0) return;
  const DF df;
  const int64_t lanes = int64_t(hn::Lanes(df));
  SumF64 ss = ZeroF64();
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) ss = AddSquaresF64(ss, hn::LoadU(df, x + i));
  if (i < n) ss = AddSquaresF64(ss, LoadTail(df, x + i, size_t(n - i)));
  const VF inv = hn::Set(df, float(1.0 / std::sqrt(TotalF64(ss) / double(n) + double(eps))));
  for (i = 0; i + lanes <= n; i += lanes)
    hn::StoreU(hn::Mul(hn::Mul(hn::LoadU(df, x + i), inv), hn::LoadU(df, weight + i)), df, out + i);
  if (i < n) {
    const size_t rest = size_t(n - i);
    StoreTail(hn::Mul(hn::Mul(LoadTail(df, x + i, rest), inv), LoadTail(df, weight + i, rest)), df,
              out + i, rest);
  }
}

void Rope(float* x, int64_t n_heads, int64_t head_dim, int64_t pos, const float* inv_freq) {
  const int64_t half = head_dim / 2;
  if (n_heads <= 0 || half <= 0) return;
  const DF df;
  const int64_t lanes = int64_t(hn::Lanes(df));
  constexpr int64_t kBlock = 128;  // cos/sin computed per block of pairs, shared by all heads
  HWY_ALIGN float cos_buf[kBlock];
  HWY_ALIGN float sin_buf[kBlock];
  for (int64_t i0 = 0; i0 < half; i0 += kBlock) {
    const int64_t len = std::min(kBlock, half - i0);
    for (int64_t i = 0; i < len; ++i) {
      const float angle = float(pos) * inv_freq[i0 + i];
      cos_buf[i] = std::cos(angle);
      sin_buf[i] = std::sin(angle);
    }
    for (int64_t h = 0; h < n_heads; ++h) {
      float* a_ptr = x + h * head_dim + i0;
      float* b_ptr = a_ptr + half;
      int64_t i = 0;
      for (; i + lanes <= len; i += lanes) {
        const VF c = hn::Load(df, cos_buf + i), s = hn::Load(df, sin_buf + i);
        const VF a = hn::LoadU(df, a_ptr + i), b = hn::LoadU(df, b_ptr + i);
        hn::StoreU(hn::Sub(hn::Mul(a, c), hn::Mul(b, s)), df, a_ptr + i);
        hn::StoreU(hn::Add(hn::Mul(b, c), hn::Mul(a, s)), df, b_ptr + i);
      }
      if (i < len) {
        const size_t rest = size_t(len - i);
        const VF c = hn::Load(df, cos_buf + i), s = hn::Load(df, sin_buf + i);
        const VF a = LoadTail(df, a_ptr + i, rest), b = LoadTail(df, b_ptr + i, rest);
        StoreTail(hn::Sub(hn::Mul(a, c), hn::Mul(b, s)), df, a_ptr + i, rest);
        StoreTail(hn::Add(hn::Mul(b, c), hn::Mul(a, s)), df, b_ptr + i, rest);
      }
    }
  }
}

void Softmax(float* x, int64_t n) {
  if (n <= 0) return;
  const DF df;
  const int64_t lanes = int64_t(hn::Lanes(df));
  const float neg_inf = -std::numeric_limits<float>::infinity();
  VF vmax = hn::Set(df, neg_inf);
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) vmax = hn::Max(vmax, hn::LoadU(df, x + i));
  if (i < n) vmax = hn::Max(vmax, LoadTail(df, x + i, size_t(n - i), neg_inf));
  const VF m = hn::MaxOfLanes(df, vmax);

  SumF64 sum = ZeroF64();
  for (i = 0; i + lanes <= n; i += lanes) {
    const VF e = hn::Exp(df, hn::Sub(hn::LoadU(df, x + i), m));
    hn::StoreU(e, df, x + i);
    sum = AddF64(sum, e);
  }
  if (i < n) {
    const size_t rest = size_t(n - i);
    const VF e = hn::IfThenElseZero(hn::FirstN(df, rest),
                                    hn::Exp(df, hn::Sub(LoadTail(df, x + i, rest), m)));
    StoreTail(e, df, x + i, rest);
    sum = AddF64(sum, e);
  }

  const VF inv = hn::Set(df, float(1.0 / TotalF64(sum)));
  for (i = 0; i + lanes <= n; i += lanes) hn::StoreU(hn::Mul(hn::LoadU(df, x + i), inv), df, x + i);
  if (i < n) {
    const size_t rest = size_t(n - i);
    StoreTail(hn::Mul(LoadTail(df, x + i, rest), inv), df, x + i, rest);
  }
}

// silu(g) * u = g / (1 + exp(-g)) * u. exp(-g) is clamped below overflow; where -g > 88 the
// result is (-)0 in float anyway.
HWY_INLINE VF SiluMulVec(DF df, VF g, VF u) {
  const VF kLimit = hn::Set(df, 88.0f);
  const VF neg = hn::Neg(g);
  const VF e = hn::Exp(df, hn::Min(neg, kLimit));
  const VF r = hn::Mul(hn::Div(g, hn::Add(hn::Set(df, 1.0f), e)), u);
  return hn::IfThenZeroElse(hn::Gt(neg, kLimit), r);
}

void SiluMul(const float* gate, const float* up, int64_t n, float* out) {
  if (n <= 0) return;
  const DF df;
  const int64_t lanes = int64_t(hn::Lanes(df));
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes)
    hn::StoreU(SiluMulVec(df, hn::LoadU(df, gate + i), hn::LoadU(df, up + i)), df, out + i);
  if (i < n) {
    const size_t rest = size_t(n - i);
    StoreTail(SiluMulVec(df, LoadTail(df, gate + i, rest), LoadTail(df, up + i, rest)), df, out + i,
              rest);
  }
}

// Rows of a KV cache (kernels.h: attention over a typed cache). Position j's row starts j * rb
// bytes after the first; element d of a row is read with LoadKv. Every type decodes to the exact
// f32 its format defines (BF16/F16: a widening; Q8_0: d * q, an exact product), so the kernels
// below compute, bit for bit, what the f32 kernel computes over the decoded rows.
template <WeightType kT>
HWY_INLINE VF LoadKv(DF df, const uint8_t* HWY_RESTRICT row, int64_t d) {
  if constexpr (kT == WeightType::F32) {
    return hn::LoadU(df, reinterpret_cast<const float*>(row) + d);
  } else if constexpr (kT == WeightType::BF16 || kT == WeightType::F16) {
    return LoadWeights<kT>(df, reinterpret_cast<const uint16_t*>(row) + d);
  } else {
    static_assert(kT == WeightType::Q8_0);
    // A vector never straddles a block: d is a multiple of Lanes, which divides 32.
    const uint8_t* block = row + (d / 32) * 34;
    uint16_t scale;
    std::memcpy(&scale, block, 2);
    const hn::Rebind<int8_t, DF> d8;
    const hn::Rebind<int32_t, DF> d32;
    const VF q = hn::ConvertTo(
        df, hn::PromoteTo(d32, hn::LoadU(d8, reinterpret_cast<const int8_t*>(block + 2 + d % 32))));
    return hn::Mul(q, hn::Set(df, f16_to_f32(scale)));
  }
}

// Elements [d, d + n) of a row (n < Lanes); the other lanes are zero.
template <WeightType kT>
HWY_INLINE VF LoadKvTail(DF df, const uint8_t* HWY_RESTRICT row, int64_t d, size_t n) {
  if constexpr (kT == WeightType::F32) {
    return LoadTail(df, reinterpret_cast<const float*>(row) + d, n);
  } else if constexpr (kT == WeightType::BF16 || kT == WeightType::F16) {
    return LoadWeightsTail<kT>(df, reinterpret_cast<const uint16_t*>(row) + d, n);
  } else {
    HWY_ALIGN float buf[kMaxLanesF] = {};
    for (size_t i = 0; i < n; ++i) {
      const int64_t e = d + int64_t(i);
      const uint8_t* block = row + (e / 32) * 34;
      uint16_t scale;
      std::memcpy(&scale, block, 2);
      buf[i] = float(int8_t(block[2 + e % 32])) * f16_to_f32(scale);
    }
    return hn::Load(df, buf);
  }
}

// scores[j] = scale * q . k_j for j < n_keys, four keys at a time.
template <WeightType kT>
void AttentionScores(const float* q, const uint8_t* k, int64_t rb, int64_t n_keys,
                     int64_t head_dim, float scale, float* scores) {
  const DF df;
  const int64_t lanes = int64_t(hn::Lanes(df));
  const int64_t full = head_dim / lanes * lanes;
  const size_t rest = size_t(head_dim - full);
  int64_t j = 0;
  for (; j + 4 <= n_keys; j += 4) {
    const uint8_t* k0 = k + j * rb;
    const uint8_t* k1 = k0 + rb;
    const uint8_t* k2 = k1 + rb;
    const uint8_t* k3 = k2 + rb;
    VF a0 = hn::Zero(df), a1 = hn::Zero(df), a2 = hn::Zero(df), a3 = hn::Zero(df);
    for (int64_t d = 0; d < full; d += lanes) {
      const VF qv = hn::LoadU(df, q + d);
      a0 = hn::MulAdd(qv, LoadKv<kT>(df, k0, d), a0);
      a1 = hn::MulAdd(qv, LoadKv<kT>(df, k1, d), a1);
      a2 = hn::MulAdd(qv, LoadKv<kT>(df, k2, d), a2);
      a3 = hn::MulAdd(qv, LoadKv<kT>(df, k3, d), a3);
    }
    if (rest) {
      const VF qv = LoadTail(df, q + full, rest);
      a0 = hn::MulAdd(qv, LoadKvTail<kT>(df, k0, full, rest), a0);
      a1 = hn::MulAdd(qv, LoadKvTail<kT>(df, k1, full, rest), a1);
      a2 = hn::MulAdd(qv, LoadKvTail<kT>(df, k2, full, rest), a2);
      a3 = hn::MulAdd(qv, LoadKvTail<kT>(df, k3, full, rest), a3);
    }
    scores[j] = hn::GetLane(hn::SumOfLanes(df, a0)) * scale;
    scores[j + 1] = hn::GetLane(hn::SumOfLanes(df, a1)) * scale;
    scores[j + 2] = hn::GetLane(hn::SumOfLanes(df, a2)) * scale;
    scores[j + 3] = hn::GetLane(hn::SumOfLanes(df, a3)) * scale;
  }
  for (; j < n_keys; ++j) {
    const uint8_t* kj = k + j * rb;
    VF a = hn::Zero(df);
    for (int64_t d = 0; d < full; d += lanes)
      a = hn::MulAdd(hn::LoadU(df, q + d), LoadKv<kT>(df, kj, d), a);
    if (rest) a = hn::MulAdd(LoadTail(df, q + full, rest), LoadKvTail<kT>(df, kj, full, rest), a);
    scores[j] = hn::GetLane(hn::SumOfLanes(df, a)) * scale;
  }
}

// out[d] += sum_{j in [j0, j1)} p[j] * v_j[d] for d in [d0, head_dim): a vector of lanes at a
// time, then the tail (what AttentionValuesBlock leaves after its 4-vector chunks).
template <WeightType kT>
void AttentionValuesRest(const float* p, const uint8_t* v, int64_t rb, int64_t j0, int64_t j1,
                         int64_t d0, int64_t head_dim, float* out) {
  const DF df;
  const int64_t lanes = int64_t(hn::Lanes(df));
  int64_t d = d0;
  for (; d + lanes <= head_dim; d += lanes) {
    VF a = hn::Zero(df);
    for (int64_t j = j0; j < j1; ++j)
      a = hn::MulAdd(hn::Set(df, p[j]), LoadKv<kT>(df, v + j * rb, d), a);
    hn::StoreU(hn::Add(hn::LoadU(df, out + d), a), df, out + d);
  }
  if (d < head_dim) {
    const size_t rest = size_t(head_dim - d);
    VF a = hn::Zero(df);
    for (int64_t j = j0; j < j1; ++j)
      a = hn::MulAdd(hn::Set(df, p[j]), LoadKvTail<kT>(df, v + j * rb, d, rest), a);
    StoreTail(hn::Add(LoadTail(df, out + d, rest), a), df, out + d, rest);
  }
}

// out[d] += sum_{j in [j0, j1)} p[j] * v_j[d]: register accumulators over a block of keys, so the
// f32 error grows with the block length, not with n_keys.
template <WeightType kT>
void AttentionValuesBlock(const float* p, const uint8_t* v, int64_t rb, int64_t j0, int64_t j1,
                          int64_t head_dim, float* out) {
  const DF df;
  const int64_t lanes = int64_t(hn::Lanes(df));
  int64_t d = 0;
  for (; d + 4 * lanes <= head_dim; d += 4 * lanes) {
    VF a0 = hn::Zero(df), a1 = hn::Zero(df), a2 = hn::Zero(df), a3 = hn::Zero(df);
    for (int64_t j = j0; j < j1; ++j) {
      const VF pj = hn::Set(df, p[j]);
      const uint8_t* vj = v + j * rb;
      a0 = hn::MulAdd(pj, LoadKv<kT>(df, vj, d), a0);
      a1 = hn::MulAdd(pj, LoadKv<kT>(df, vj, d + lanes), a1);
      a2 = hn::MulAdd(pj, LoadKv<kT>(df, vj, d + 2 * lanes), a2);
      a3 = hn::MulAdd(pj, LoadKv<kT>(df, vj, d + 3 * lanes), a3);
    }
    hn::StoreU(hn::Add(hn::LoadU(df, out + d), a0), df, out + d);
    hn::StoreU(hn::Add(hn::LoadU(df, out + d + lanes), a1), df, out + d + lanes);
    hn::StoreU(hn::Add(hn::LoadU(df, out + d + 2 * lanes), a2), df, out + d + 2 * lanes);
    hn::StoreU(hn::Add(hn::LoadU(df, out + d + 3 * lanes), a3), df, out + d + 3 * lanes);
  }
  AttentionValuesRest<kT>(p, v, rb, j0, j1, d, head_dim, out);
}

template <WeightType kT>
void AttentionHeadT(const float* q, const uint8_t* k, const uint8_t* v, int64_t rb,
                    int64_t n_keys, int64_t head_dim, float scale, float* out, float* scratch) {
  if (head_dim <= 0) return;
  std::fill(out, out + head_dim, 0.0f);
  if (n_keys <= 0) return;
  AttentionScores<kT>(q, k, rb, n_keys, head_dim, scale, scratch);
  Softmax(scratch, n_keys);
  constexpr int64_t kKeyBlock = 64;
  for (int64_t j0 = 0; j0 < n_keys; j0 += kKeyBlock)
    AttentionValuesBlock<kT>(scratch, v, rb, j0, std::min(n_keys, j0 + kKeyBlock), head_dim, out);
}

// AttentionHead for nq queries over the same keys and values (the query heads of a KV head, for a
// run of consecutive tokens of one sequence), query i seeing keys [0, n_keys[i]). Each key and
// value row is read once for up to kTile queries instead of once per query; every query's
// arithmetic is the one AttentionHead does, in the same order, so its output is bit-identical.
constexpr int64_t kAttnTile = 4;

// scores_i[j] = scale * q_i . k_j for j in [j0, j1), queries [i0, i0 + nq) (nq <= kAttnTile), four
// keys at a time: one accumulator per (query, key), chains over d as in AttentionScores.
template <WeightType kT>
void AttentionScoresTile(const float* const* qs, int64_t nq, const uint8_t* k, int64_t rb,
                         int64_t j0, int64_t j1, int64_t head_dim, float scale,
                         float* const* scores) {
  const DF df;
  const int64_t lanes = int64_t(hn::Lanes(df));
  const int64_t full = head_dim / lanes * lanes;
  const size_t rest = size_t(head_dim - full);
  int64_t j = j0;
  for (; j + 4 <= j1; j += 4) {
    const uint8_t* kr[4] = {k + j * rb, k + (j + 1) * rb, k + (j + 2) * rb, k + (j + 3) * rb};
    VF a[kAttnTile][4];
    for (int64_t i = 0; i < nq; ++i)
      for (int r = 0; r < 4; ++r) a[i][r] = hn::Zero(df);
    for (int64_t d = 0; d < full; d += lanes) {
      const VF k0 = LoadKv<kT>(df, kr[0], d), k1 = LoadKv<kT>(df, kr[1], d);
      const VF k2 = LoadKv<kT>(df, kr[2], d), k3 = LoadKv<kT>(df, kr[3], d);
      for (int64_t i = 0; i < nq; ++i) {
        const VF qv = hn::LoadU(df, qs[i] + d);
        a[i][0] = hn::MulAdd(qv, k0, a[i][0]);
        a[i][1] = hn::MulAdd(qv, k1, a[i][1]);
        a[i][2] = hn::MulAdd(qv, k2, a[i][2]);
        a[i][3] = hn::MulAdd(qv, k3, a[i][3]);
      }
    }
    if (rest) {
      for (int64_t i = 0; i < nq; ++i) {
        const VF qv = LoadTail(df, qs[i] + full, rest);
        for (int r = 0; r < 4; ++r)
          a[i][r] = hn::MulAdd(qv, LoadKvTail<kT>(df, kr[r], full, rest), a[i][r]);
      }
    }
    for (int64_t i = 0; i < nq; ++i)
      for (int r = 0; r < 4; ++r) scores[i][j + r] = hn::GetLane(hn::SumOfLanes(df, a[i][r])) * scale;
  }
  for (; j < j1; ++j) {
    const uint8_t* kj = k + j * rb;
    for (int64_t i = 0; i < nq; ++i) {
      VF a = hn::Zero(df);
      for (int64_t d = 0; d < full; d += lanes)
        a = hn::MulAdd(hn::LoadU(df, qs[i] + d), LoadKv<kT>(df, kj, d), a);
      if (rest)
        a = hn::MulAdd(LoadTail(df, qs[i] + full, rest), LoadKvTail<kT>(df, kj, full, rest), a);
      scores[i][j] = hn::GetLane(hn::SumOfLanes(df, a)) * scale;
    }
  }
}

// out_i[d] += sum_{j in [j0, end_i)} p_i[j] * v_j[d] for d in [0, main) (main a multiple of 4 lanes),
// where end_i = min(j1, n_keys[i]) > j0 for every query given: the keys all of them see in one
// pass, then each query's own rest, on the same accumulators (the order of AttentionValuesBlock).
template <WeightType kT>
void AttentionValuesTile(const float* const* ps, int64_t nq, const int64_t* ends, const uint8_t* v,
                         int64_t rb, int64_t j0, int64_t head_dim, float* const* outs) {
  const DF df;
  const int64_t lanes = int64_t(hn::Lanes(df));
  int64_t common = ends[0];
  for (int64_t i = 1; i < nq; ++i) common = std::min(common, ends[i]);
  for (int64_t d = 0; d + 4 * lanes <= head_dim; d += 4 * lanes) {
    VF a[kAttnTile][4];
    for (int64_t i = 0; i < nq; ++i)
      for (int r = 0; r < 4; ++r) a[i][r] = hn::Zero(df);
    for (int64_t j = j0; j < common; ++j) {
      const uint8_t* vj = v + j * rb;
      const VF v0 = LoadKv<kT>(df, vj, d), v1 = LoadKv<kT>(df, vj, d + lanes);
      const VF v2 = LoadKv<kT>(df, vj, d + 2 * lanes), v3 = LoadKv<kT>(df, vj, d + 3 * lanes);
      for (int64_t i = 0; i < nq; ++i) {
        const VF pj = hn::Set(df, ps[i][j]);
        a[i][0] = hn::MulAdd(pj, v0, a[i][0]);
        a[i][1] = hn::MulAdd(pj, v1, a[i][1]);
        a[i][2] = hn::MulAdd(pj, v2, a[i][2]);
        a[i][3] = hn::MulAdd(pj, v3, a[i][3]);
      }
    }
    for (int64_t i = 0; i < nq; ++i) {
      for (int64_t j = common; j < ends[i]; ++j) {
        const VF pj = hn::Set(df, ps[i][j]);
        const uint8_t* vj = v + j * rb;
        a[i][0] = hn::MulAdd(pj, LoadKv<kT>(df, vj, d), a[i][0]);
        a[i][1] = hn::MulAdd(pj, LoadKv<kT>(df, vj, d + lanes), a[i][1]);
        a[i][2] = hn::MulAdd(pj, LoadKv<kT>(df, vj, d + 2 * lanes), a[i][2]);
        a[i][3] = hn::MulAdd(pj, LoadKv<kT>(df, vj, d + 3 * lanes), a[i][3]);
      }
      float* o = outs[i] + d;
      hn::StoreU(hn::Add(hn::LoadU(df, o), a[i][0]), df, o);
      hn::StoreU(hn::Add(hn::LoadU(df, o + lanes), a[i][1]), df, o + lanes);
      hn::StoreU(hn::Add(hn::LoadU(df, o + 2 * lanes), a[i][2]), df, o + 2 * lanes);
      hn::StoreU(hn::Add(hn::LoadU(df, o + 3 * lanes), a[i][3]), df, o + 3 * lanes);
    }
  }
}

template <WeightType kT>
void AttentionHeadsT(const float* const* qs, float* const* outs, const int64_t* n_keys, int64_t nq,
                     const uint8_t* k, const uint8_t* v, int64_t rb, int64_t head_dim,
                     float scale, float* scratch, int64_t scratch_stride) {
  if (head_dim <= 0) return;
  const DF df;
  const int64_t lanes = int64_t(hn::Lanes(df));
  const int64_t main_d = head_dim / (4 * lanes) * (4 * lanes);
  for (int64_t i0 = 0; i0 < nq; i0 += kAttnTile) {
    const int64_t m = std::min(kAttnTile, nq - i0);
    const float* const* q = qs + i0;
    float* const* out = outs + i0;
    const int64_t* n = n_keys + i0;
    float* sc[kAttnTile];
    int64_t common = n[0], longest = n[0];
    for (int64_t i = 0; i < m; ++i) {
      sc[i] = scratch + (i0 + i) * scratch_stride;
      std::fill(out[i], out[i] + head_dim, 0.0f);
      common = std::min(common, n[i]);
      longest = std::max(longest, n[i]);
    }
    if (longest <= 0) continue;
    // Scores: the keys every query sees together, then each one's rest (as AttentionScores: its
    // four-key groups continue from where the shared part stopped, which is a multiple of four).
    common = std::max<int64_t>(0, common) / 4 * 4;
    AttentionScoresTile<kT>(q, m, k, rb, 0, common, head_dim, scale, sc);
    for (int64_t i = 0; i < m; ++i) {
      if (n[i] <= 0) continue;
      AttentionScoresTile<kT>(q + i, 1, k, rb, common, n[i], head_dim, scale, sc + i);
      Softmax(sc[i], n[i]);
    }
    // Values, in blocks of 64 keys as AttentionHead.
    constexpr int64_t kKeyBlock = 64;
    for (int64_t j0 = 0; j0 < longest; j0 += kKeyBlock) {
      const float* ps[kAttnTile];
      float* os[kAttnTile];
      int64_t ends[kAttnTile], live = 0;
      for (int64_t i = 0; i < m; ++i) {
        if (n[i] <= j0) continue;
        ps[live] = sc[i];
        os[live] = out[i];
        ends[live] = std::min(n[i], j0 + kKeyBlock);
        ++live;
      }
      if (main_d > 0) AttentionValuesTile<kT>(ps, live, ends, v, rb, j0, head_dim, os);
      if (main_d < head_dim)
        for (int64_t i = 0; i < live; ++i)
          AttentionValuesRest<kT>(ps[i], v, rb, j0, ends[i], main_d, head_dim, os[i]);
    }
  }
}

// The exported entry points: one instantiation per KV cache type, chosen once per call.
#define MESHLM_KV_SWITCH(type, CALL)                                             \
  switch (type) {                                                                \
    case WeightType::F32: { constexpr WeightType kT = WeightType::F32; CALL; } break;   \
    case WeightType::BF16: { constexpr WeightType kT = WeightType::BF16; CALL; } break; \
    case WeightType::F16: { constexpr WeightType kT = WeightType::F16; CALL; } break;   \
    case WeightType::Q8_0: { constexpr WeightType kT = WeightType::Q8_0; CALL; } break; \
    default: break;                                                              \
  }

void AttentionHead(const float* q, const void* k, const void* v, int64_t rb, WeightType type,
                   int64_t n_keys, int64_t head_dim, float scale, float* out, float* scratch) {
  const auto* kb = static_cast<const uint8_t*>(k);
  const auto* vb = static_cast<const uint8_t*>(v);
  MESHLM_KV_SWITCH(type, AttentionHeadT<kT>(q, kb, vb, rb, n_keys, head_dim, scale, out, scratch))
}

void AttentionHeads(const float* const* qs, float* const* outs, const int64_t* n_keys, int64_t nq,
                    const void* k, const void* v, int64_t rb, WeightType type, int64_t head_dim,
                    float scale, float* scratch, int64_t scratch_stride) {
  const auto* kb = static_cast<const uint8_t*>(k);
  const auto* vb = static_cast<const uint8_t*>(v);
  MESHLM_KV_SWITCH(type, AttentionHeadsT<kT>(qs, outs, n_keys, nq, kb, vb, rb, head_dim, scale,
                                             scratch, scratch_stride))
}
#undef MESHLM_KV_SWITCH

void AddInplace(float* dst, const float* src, int64_t n) {
  const DF df;
  const int64_t lanes = int64_t(hn::Lanes(df));
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes)
    hn::StoreU(hn::Add(hn::LoadU(df, dst + i), hn::LoadU(df, src + i)), df, dst + i);
  for (; i < n; ++i) dst[i] += src[i];
}

template <WeightType kDt>
void ConvertRow(const WeightT<kDt>* src, int64_t n, float* dst) {
  const DF df;
  const int64_t lanes = int64_t(hn::Lanes(df));
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) hn::StoreU(LoadWeights<kDt>(df, src + i), df, dst + i);
  if (i < n) {
    const size_t rest = size_t(n - i);
    StoreTail(LoadWeightsTail<kDt>(df, src + i, rest), df, dst + i, rest);
  }
}

void EmbedRow(const void* data, WeightType dtype, int64_t offset, int64_t n, float* dst) {
  switch (dtype) {
    case WeightType::F32:
      return ConvertRow<WeightType::F32>(static_cast<const float*>(data) + offset, n, dst);
    case WeightType::BF16:
      return ConvertRow<WeightType::BF16>(static_cast<const uint16_t*>(data) + offset, n, dst);
    case WeightType::F16:
      return ConvertRow<WeightType::F16>(static_cast<const uint16_t*>(data) + offset, n, dst);
    default:
      break;
  }
}

const char* TargetName() {
  return hwy::TargetName(HWY_TARGET);
}

}  // namespace meshlm::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace meshlm::kernels {

HWY_EXPORT(RmsNorm);
HWY_EXPORT(Rope);
HWY_EXPORT(Softmax);
HWY_EXPORT(SiluMul);
HWY_EXPORT(AttentionHeads);
HWY_EXPORT(AttentionHead);
HWY_EXPORT(AddInplace);
HWY_EXPORT(EmbedRow);
HWY_EXPORT(TargetName);

bool kv_type_supported(WeightType t) { return formats::is_activation_type(t); }

void check_kv_type(WeightType t, int64_t head_dim) {
  if (!kv_type_supported(t))
    throw Error("kernels", "attention: no KV cache of type " + std::string(formats::name(t)));
  const int64_t block = formats::info(t).block_elems;
  if (head_dim % block != 0)
    throw Error("kernels", "attention: a " + std::string(formats::name(t)) + " KV cache needs a head_dim that is a multiple of " +
                               std::to_string(block) + " (head_dim " + std::to_string(head_dim) + ")");
}

void rmsnorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  HWY_DYNAMIC_DISPATCH(RmsNorm)(x, weight, n, eps, out);
}

void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t pos, const float* inv_freq) {
  HWY_DYNAMIC_DISPATCH(Rope)(x, n_heads, head_dim, pos, inv_freq);
}

void softmax(float* x, int64_t n) {
  HWY_DYNAMIC_DISPATCH(Softmax)(x, n);
}

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  HWY_DYNAMIC_DISPATCH(SiluMul)(gate, up, n, out);
}

void attention_head(const float* q, const void* k, const void* v, int64_t kv_row_bytes,
                    WeightType kv_type, int64_t n_keys, int64_t head_dim, float scale, float* out,
                    float* scratch) {
  check_kv_type(kv_type, head_dim);
  HWY_DYNAMIC_DISPATCH(AttentionHead)(q, k, v, kv_row_bytes, kv_type, n_keys, head_dim, scale,
                                      out, scratch);
}

void attention_heads(const float* const* qs, float* const* outs, const int64_t* n_keys, int64_t nq,
                     const void* k, const void* v, int64_t kv_row_bytes, WeightType kv_type,
                     int64_t head_dim, float scale, float* scratch, int64_t scratch_stride) {
  check_kv_type(kv_type, head_dim);
  HWY_DYNAMIC_DISPATCH(AttentionHeads)(qs, outs, n_keys, nq, k, v, kv_row_bytes, kv_type,
                                       head_dim, scale, scratch, scratch_stride);
}

void add_inplace(float* dst, const float* src, int64_t n) {
  HWY_DYNAMIC_DISPATCH(AddInplace)(dst, src, n);
}

void embed_row(const MatView& w, int64_t row, float* dst) {
  if (row < 0 || row >= w.rows)
    throw Error("kernels", "embed_row: row " + std::to_string(row) + " out of range [0, " +
                               std::to_string(w.rows) + ")");
  if (w.cols <= 0) return;
  if (!formats::info(w.dtype).plain()) {  // block formats: the row decoded by its format
    const size_t rb = formats::row_bytes(w.dtype, w.cols);
    formats::dequantize_row(w.dtype, static_cast<const uint8_t*>(w.data) + size_t(row) * rb,
                            w.cols, dst);
    return;
  }
  HWY_DYNAMIC_DISPATCH(EmbedRow)(w.data, w.dtype, row * w.cols, w.cols, dst);
}

const char* simd_target_name() {
  return HWY_DYNAMIC_DISPATCH(TargetName)();
}

std::vector<int64_t> simd_compiled_targets() {
  return hwy::SupportedAndGeneratedTargets();
}

std::vector<int64_t> simd_built_targets() {
  std::vector<int64_t> out;
  // HWY_TARGETS: the bits of the targets this file was compiled for (lower bit = better target).
  for (int64_t bits = HWY_TARGETS; bits != 0; bits &= bits - 1) out.push_back(bits & -bits);
  return out;
}

bool simd_target_supported(int64_t target) { return (hwy::SupportedTargets() & target) != 0; }

void simd_force_target(int64_t target) {
  hwy::SetSupportedTargetsForTest(target);
}

std::string simd_target_label(int64_t target) {
  return hwy::TargetName(target);
}

}  // namespace meshlm::kernels
#endif  // HWY_ONCE
