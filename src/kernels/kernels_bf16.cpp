// The BF16 dot-product matmul of kernels_bf16.h on AVX512-BF16 (vdpbf16ps), plus the CPU check.
// Not a Highway file: Highway 1.0 has no target for AVX512-BF16, so the functions here carry their
// own target attribute and run only where cpu_supported() (kernels_matmul.cpp decides).
//
// One zmm accumulator per output (t, r); a step adds one 32-element chunk of W[r] and x[t] with
// one vdpbf16ps. A tile of kR rows x kT tokens runs kR*kT such chains side by side: the tile shape
// does not change any output's operations (the model, kernels_bf16_model.cpp, is the statement).
//   n_tok == 1 (decode): tiles of 4 rows x 1 token, the next tile's rows prefetched meanwhile.
//   n_tok > 1: tiles of 4 rows x 6 tokens (24 accumulators + 4 weight + 1 x registers); tokens in
//   equal panels whose bf16 x fits in L2 (128 tokens of 1024 or 2048 columns: one panel); within
//   a panel each row tile's weights are loaded from memory by the first token tile and found in
//   L1 / L2 by the others. Rows wider than 1536 columns go in blocks of 1024 columns, the
//   accumulators saved between blocks (same chains, same order): +20-25% on 2048 and 3072 columns.
// Tails (cols not a multiple of 32): the weights are a masked (zeroing) load; x is zero-padded by
// round_tokens.
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "kernels/kernels_bf16.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MESHLM_BF16_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace meshlm::kernels::bf16 {

#if MESHLM_BF16_X86

bool cpu_supported() {
  static const bool ok = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    if ((c & (1u << 27)) == 0) return false;  // OSXSAVE
    uint32_t xcr0_lo = 0, xcr0_hi = 0;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    // SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM state saved by the OS.
    if ((xcr0_lo & 0xe6u) != 0xe6u) return false;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    const unsigned max_sub = a;
    if ((b & (1u << 16)) == 0 || (b & (1u << 30)) == 0) return false;  // AVX512F, AVX512BW
    if ((b & (1u << 17)) == 0 || (b & (1u << 31)) == 0) return false;  // AVX512DQ, AVX512VL
    if (max_sub < 1) return false;
    __get_cpuid_count(7, 1, &a, &b, &c, &d);
    return (a & (1u << 5)) != 0;  // AVX512_BF16
  }();
  return ok;
}

#define MESHLM_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")))
#define MESHLM_BF16_INLINE MESHLM_BF16_TARGET inline __attribute__((always_inline))

namespace {

constexpr int kDecodeRows = 4;               // rows per tile when n_tok == 1
constexpr int kRows = 4;                     // rows per tile when n_tok > 1
constexpr int kToks = 6;                     // tokens per tile when n_tok > 1
constexpr int64_t kPanelBytes = 512 * 1024;  // bf16 x panel kept in L2 (at most)
constexpr int64_t kColBlock = 1024;          // columns per block of wide rows (n_tok > 1)

// Fixed lane reduction of kernels_bf16.h step 3.
MESHLM_BF16_INLINE float ReduceLanes(__m512 v) {
  const __m256 a = _mm256_add_ps(_mm512_extractf32x8_ps(v, 0), _mm512_extractf32x8_ps(v, 1));
  const __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
  return _mm_cvtss_f32(_mm_add_ss(c, _mm_movehdup_ps(c)));
}

// The same tree for four accumulators at once (rows r..r+3 of one token), transposed: the first
// two levels work on halves and quarters of pairs of registers, the last two within 128-bit blocks;
// every output's additions are step 3's, operand for operand. Returns the 4 sums in lanes 0-3.
MESHLM_BF16_INLINE __m128 ReduceLanes4(__m512 a, __m512 b, __m512 c, __m512 d) {
  const __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                                  _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(1, 0, 1, 0)),
                                  _mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(3, 2, 3, 2)));
  // block j: the 4-lane partials of output j
  const __m512 q = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512 h = _mm512_add_ps(q, _mm512_permute_ps(q, _MM_SHUFFLE(1, 0, 3, 2)));
  const __m512 s = _mm512_add_ps(h, _mm512_permute_ps(h, _MM_SHUFFLE(2, 3, 0, 1)));
  const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  return _mm512_extractf32x4_ps(_mm512_permutexvar_ps(idx, s), 0);
}

MESHLM_BF16_INLINE __m512bh LoadBh(const uint16_t* p) {
  return (__m512bh)_mm512_loadu_si512(static_cast<const void*>(p));
}

// Outputs y[t * y_stride + r], r < kR, t < kT, from weight rows w + r * cols and bf16 token rows
// xb + t * xs. `next`: the first of the next row tile's rows (prefetched), or null.
// Columns [k0, k1) only when keep != null (k0, k1 multiples of 32, or k1 == cols): the kR*kT
// accumulators start from keep[r * kT + t] (zero when k0 == 0) and, unless k1 == cols, are saved
// there instead of reduced. A chain split so runs the same vdpbf16ps in the same order.
// One saved accumulator (std::vector<__m512> would lose the 64-byte alignment: GCC drops the
// vector type's attributes in template arguments).
struct alignas(64) Kept {
  float v[16];
};

template <int kR, int kT>
MESHLM_BF16_INLINE void Tile(const uint16_t* __restrict w, int64_t cols,
                             const uint16_t* __restrict xb, int64_t xs, float* __restrict y,
                             int64_t y_stride, const float* __restrict bias,
                             const uint16_t* next, int64_t k0 = 0, int64_t k1 = -1,
                             Kept* keep = nullptr) {
  if (keep == nullptr) k1 = cols;
  __m512 acc[kR][kT];
#pragma GCC unroll 8
  for (int r = 0; r < kR; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < kT; ++t) acc[r][t] = k0 == 0 ? _mm512_setzero_ps() : _mm512_load_ps(keep[r * kT + t].v);
  int64_t k = k0;
  for (; k + 32 <= k1; k += 32) {
    if (next != nullptr) {
#pragma GCC unroll 8
      for (int r = 0; r < kR; ++r) _mm_prefetch(reinterpret_cast<const char*>(next + r * cols + k), _MM_HINT_T0);
    }
    __m512bh wv[kR];
#pragma GCC unroll 8
    for (int r = 0; r < kR; ++r) wv[r] = LoadBh(w + r * cols + k);
#pragma GCC unroll 8
    for (int t = 0; t < kT; ++t) {
      const __m512bh xv = (__m512bh)_mm512_load_si512(static_cast<const void*>(xb + t * xs + k));
#pragma GCC unroll 8
      for (int r = 0; r < kR; ++r) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv[r], xv);
    }
  }
  if (k < k1) {
    const __mmask32 m = _cvtu32_mask32(uint32_t((uint64_t(1) << (cols - k)) - 1));
    __m512bh wv[kR];
#pragma GCC unroll 8
    for (int r = 0; r < kR; ++r) wv[r] = (__m512bh)_mm512_maskz_loadu_epi16(m, w + r * cols + k);
#pragma GCC unroll 8
    for (int t = 0; t < kT; ++t) {
      const __m512bh xv = (__m512bh)_mm512_load_si512(static_cast<const void*>(xb + t * xs + k));
#pragma GCC unroll 8
      for (int r = 0; r < kR; ++r) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv[r], xv);
    }
  }
  if (k1 < cols) {
#pragma GCC unroll 8
    for (int r = 0; r < kR; ++r)
#pragma GCC unroll 8
      for (int t = 0; t < kT; ++t) _mm512_store_ps(keep[r * kT + t].v, acc[r][t]);
    return;
  }
  if constexpr (kR == 4) {
    const __m128 b = bias ? _mm_loadu_ps(bias) : _mm_setzero_ps();
#pragma GCC unroll 8
    for (int t = 0; t < kT; ++t)
      _mm_storeu_ps(y + t * y_stride,
                    _mm_add_ps(ReduceLanes4(acc[0][t], acc[1][t], acc[2][t], acc[3][t]), b));
  } else {
#pragma GCC unroll 8
    for (int r = 0; r < kR; ++r) {
      const float b = bias ? bias[r] : 0.0f;
#pragma GCC unroll 8
      for (int t = 0; t < kT; ++t) y[t * y_stride + r] = ReduceLanes(acc[r][t]) + b;
    }
  }
}

template <int kR>
MESHLM_BF16_TARGET void TileRows(int nt, const uint16_t* w, int64_t cols, const uint16_t* xb,
                                 int64_t xs, float* y, int64_t y_stride, const float* bias,
                                 const uint16_t* next, int64_t k0, int64_t k1, Kept* keep) {
  static_assert(kToks == 6, "update the cases below");
  switch (nt) {
    case 1: return Tile<kR, 1>(w, cols, xb, xs, y, y_stride, bias, next, k0, k1, keep);
    case 2: return Tile<kR, 2>(w, cols, xb, xs, y, y_stride, bias, next, k0, k1, keep);
    case 3: return Tile<kR, 3>(w, cols, xb, xs, y, y_stride, bias, next, k0, k1, keep);
    case 4: return Tile<kR, 4>(w, cols, xb, xs, y, y_stride, bias, next, k0, k1, keep);
    case 5: return Tile<kR, 5>(w, cols, xb, xs, y, y_stride, bias, next, k0, k1, keep);
    default: return Tile<kR, 6>(w, cols, xb, xs, y, y_stride, bias, next, k0, k1, keep);
  }
}

MESHLM_BF16_TARGET void TileAny(int nr, int nt, const uint16_t* w, int64_t cols,
                                const uint16_t* xb, int64_t xs, float* y, int64_t y_stride,
                                const float* bias, const uint16_t* next, int64_t k0, int64_t k1,
                                Kept* keep) {
  static_assert(kRows == 4, "update the cases below");
  switch (nr) {
    case 1: return TileRows<1>(nt, w, cols, xb, xs, y, y_stride, bias, next, k0, k1, keep);
    case 2: return TileRows<2>(nt, w, cols, xb, xs, y, y_stride, bias, next, k0, k1, keep);
    case 3: return TileRows<3>(nt, w, cols, xb, xs, y, y_stride, bias, next, k0, k1, keep);
    default: return TileRows<4>(nt, w, cols, xb, xs, y, y_stride, bias, next, k0, k1, keep);
  }
}

MESHLM_BF16_TARGET void MatmulRowsAvx512(const uint16_t* w, int64_t rows, int64_t cols,
                                         const uint16_t* xb, int64_t n_tok, float* y,
                                         const float* bias, int64_t r0, int64_t r1) {
  const int64_t xs = bf16_x_stride(cols);
  auto bias_at = [&](int64_t r) { return bias ? bias + r : nullptr; };
  if (n_tok == 1) {
    int64_t r = r0;
    for (; r + kDecodeRows <= r1; r += kDecodeRows) {
      const bool has_next = r + 2 * kDecodeRows <= r1;
      Tile<kDecodeRows, 1>(w + r * cols, cols, xb, xs, y + r, rows, bias_at(r),
                           has_next ? w + (r + kDecodeRows) * cols : nullptr);
    }
    for (; r < r1; ++r) Tile<1, 1>(w + r * cols, cols, xb, xs, y + r, rows, bias_at(r), nullptr);
    return;
  }
  // Panels of equal size (whole tiles): every panel streams the weights from memory once, so a
  // short last panel (128 tokens = 126 + 2) would cost as much as a full one.
  const int64_t row_bytes = std::max<int64_t>(xs, 32) * 2;
  const int64_t max_panel = std::max<int64_t>(kToks, kPanelBytes / row_bytes / kToks * kToks);
  const int64_t n_panels = (n_tok + max_panel - 1) / max_panel;
  const int64_t panel = ((n_tok + n_panels - 1) / n_panels + kToks - 1) / kToks * kToks;
  // Wide rows (the down projection's 3072 columns: 4 weight rows + 6 x rows = 60 KB, more than
  // L1) go in column blocks of kColBlock, every tile's accumulators kept in `keep` between blocks.
  const int64_t kblock = cols > kColBlock * 3 / 2 ? kColBlock : cols;
  thread_local std::vector<Kept> keep;
  keep.resize(size_t((panel + kToks - 1) / kToks * kRows * kToks));
  for (int64_t t0 = 0; t0 < n_tok; t0 += panel) {
    const int64_t t1 = std::min(n_tok, t0 + panel);
    for (int64_t r = r0; r < r1; r += kRows) {
      const int nr = int(std::min<int64_t>(kRows, r1 - r));
      for (int64_t k0 = 0; k0 < cols; k0 += kblock) {
        const int64_t k1 = std::min(cols, k0 + kblock);
        for (int64_t t = t0; t < t1; t += kToks) {
          const int nt = int(std::min<int64_t>(kToks, t1 - t));
          const bool pf = t == t0 && r + 2 * kRows <= r1;
          TileAny(nr, nt, w + r * cols, cols, xb + t * xs, xs, y + t * rows + r, rows, bias_at(r),
                  pf ? w + (r + kRows) * cols : nullptr, k0, k1,
                  keep.data() + (t - t0) / kToks * (kRows * kToks));
        }
      }
    }
  }
}

MESHLM_BF16_TARGET void RoundTokensAvx512(const float* x, int64_t n_tok, int64_t cols,
                                          uint16_t* xb) {
  const int64_t xs = bf16_x_stride(cols);
  for (int64_t t = 0; t < n_tok; ++t) {
    const float* src = x + t * cols;
    uint16_t* dst = xb + t * xs;
    for (int64_t k = 0; k < xs; k += 32) {
      const int64_t n = std::min<int64_t>(32, cols - k);
      __m512 lo, hi;
      if (n == 32) {
        lo = _mm512_loadu_ps(src + k);
        hi = _mm512_loadu_ps(src + k + 16);
      } else {  // zero padding: +0 rounds to +0
        const uint32_t m = uint32_t((uint64_t(1) << n) - 1);
        lo = _mm512_maskz_loadu_ps(__mmask16(m & 0xffffu), src + k);
        hi = _mm512_maskz_loadu_ps(__mmask16(m >> 16), src + k + 16);
      }
      _mm512_store_si512(static_cast<void*>(dst + k), (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    }
  }
}

}  // namespace

void round_tokens(const float* x, int64_t n_tok, int64_t cols, uint16_t* xb) {
  if (!cpu_supported()) throw Error("kernels", "bf16: this CPU lacks AVX512-BF16");
  RoundTokensAvx512(x, n_tok, cols, xb);
}

void matmul_rows(const uint16_t* w, int64_t rows, int64_t cols, const uint16_t* xb, int64_t n_tok,
                 float* y, const float* bias, int64_t r0, int64_t r1) {
  if (!cpu_supported()) throw Error("kernels", "bf16: this CPU lacks AVX512-BF16");
  MatmulRowsAvx512(w, rows, cols, xb, n_tok, y, bias, r0, r1);
}

#else  // not x86-64: the path is never active; the entry points run the model

bool cpu_supported() { return false; }

void round_tokens(const float* x, int64_t n_tok, int64_t cols, uint16_t* xb) {
  round_tokens_model(x, n_tok, cols, xb);
}

void matmul_rows(const uint16_t* w, int64_t rows, int64_t cols, const uint16_t* xb, int64_t n_tok,
                 float* y, const float* bias, int64_t r0, int64_t r1) {
  matmul_rows_model(w, rows, cols, xb, n_tok, y, bias, r0, r1);
}

#endif

}  // namespace meshlm::kernels::bf16
