// matmul: y[t, r] = x[t, :] . W[r, :] (+ bias[r]), Highway SIMD with runtime dispatch.
//
// Accumulation order (the determinism contract of kernels.h): every output (t, r) owns one
// vector accumulator. Chunk c of Lanes(df) columns adds W[r, chunk] * x[t, chunk] into it with one
// FMA, chunks in increasing column order; the last partial chunk is zero-padded (same helper in
// every path); then the lanes are summed with SumOfLanes and the bias is added. A tile of
// kR rows x kT tokens merely runs kR*kT such independent chains side by side, so the value of an
// output does not depend on the tile shape, n_tok, the panel size or which thread computed it.
//
// n_tok == 1 (decode): tiles of kDecodeRows rows x 1 token stream each weight once; x stays in L1;
// the next tile's rows are prefetched meanwhile (batched tiles too, see MatmulRowsT).
// n_tok > 1: tiles of kRows rows x kToks tokens reuse each loaded+converted weight vector kToks
// times. Tokens are taken in panels whose x fits in L2, each panel's x packed per token tile so
// that a step's x vectors are one contiguous run; rows are split into chunks of whole rows that
// the threads take from a shared counter (ThreadPool::parallel_chunks).

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/kernels_matmul.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/aligned_allocator.h>
#include <hwy/highway.h>
#include <hwy/cache_control.h>

#include "core/error.h"
#include "kernels/kernels.h"
#include "kernels/kernels_hwy-inl.h"
#include "kernels/kernels_bf16.h"
#include "kernels/kernels_quant.h"
#include "kernels/kernels_targets.h"

HWY_BEFORE_NAMESPACE();
namespace meshlm::kernels::HWY_NAMESPACE {

constexpr int kDecodeRows = 4;               // rows per tile when n_tok == 1
constexpr int kRows = 3;                     // rows per tile when n_tok > 1
constexpr int kToks = 4;                     // tokens per tile when n_tok > 1
constexpr int64_t kPanelBytes = 256 * 1024;  // x panel (f32) kept in L2

// Computes the kR x kT outputs y[t * y_stride + r] for r < kR, t < kT from weight rows
// w + r * cols and token rows x + t * cols.
// `next` (may be null): the first of the next row tile's rows, same layout; its lines are
// prefetched while this tile streams (a decode tile's rows are short streams that the hardware
// prefetcher alone picks up late: +20-35% on 1024-column rows).
template <WeightType kDt, int kR, int kT, bool kPackedX = false>
HWY_INLINE void DotTile(const WeightT<kDt>* HWY_RESTRICT w, const float* HWY_RESTRICT x,
                        int64_t cols, float* HWY_RESTRICT y, int64_t y_stride,
                        const float* HWY_RESTRICT bias, const WeightT<kDt>* next = nullptr) {
  const DF df;
  const int64_t n = int64_t(hn::Lanes(df));
  VF acc[kR][kT];
#pragma GCC unroll 16
  for (int r = 0; r < kR; ++r)
#pragma GCC unroll 16
    for (int t = 0; t < kT; ++t) acc[r][t] = hn::Zero(df);

  auto step = [&](int64_t k) HWY_ATTR {
    VF wv[kR];
#pragma GCC unroll 16
    for (int r = 0; r < kR; ++r) wv[r] = LoadWeights<kDt>(df, w + r * cols + k);
#pragma GCC unroll 16
    for (int t = 0; t < kT; ++t) {
      const VF xv = kPackedX ? hn::Load(df, x + k * kT + t * n) : hn::LoadU(df, x + t * cols + k);
#pragma GCC unroll 16
      for (int r = 0; r < kR; ++r) acc[r][t] = hn::MulAdd(wv[r], xv, acc[r][t]);
    }
  };
  // Whole 64-byte lines of weights per iteration (one prefetch per line of each of the next
  // tile's rows), unrolled; then the remaining whole vectors. Chunks still run in column order.
  constexpr int64_t kLine = 64 / int64_t(sizeof(WeightT<kDt>));
  const int64_t blk = std::max<int64_t>(kLine, n);
  int64_t k = 0;
  for (; k + blk <= cols; k += blk) {
    if (next != nullptr) {
#pragma GCC unroll 16
      for (int r = 0; r < kR; ++r) hwy::Prefetch(next + r * cols + k);
    }
#pragma GCC unroll 16
    for (int64_t j = 0; j < blk; j += n) step(k + j);
  }
  for (; k + n <= cols; k += n) step(k);
  if (k < cols) {
    const size_t rest = size_t(cols - k);
    VF wv[kR];
#pragma GCC unroll 16
    for (int r = 0; r < kR; ++r) wv[r] = LoadWeightsTail<kDt>(df, w + r * cols + k, rest);
#pragma GCC unroll 16
    for (int t = 0; t < kT; ++t) {
      const VF xv =
          kPackedX ? hn::Load(df, x + k * kT + t * n) : LoadTail(df, x + t * cols + k, rest);
#pragma GCC unroll 16
      for (int r = 0; r < kR; ++r) acc[r][t] = hn::MulAdd(wv[r], xv, acc[r][t]);
    }
  }

#pragma GCC unroll 16
  for (int r = 0; r < kR; ++r) {
    const float b = bias ? bias[r] : 0.0f;
#pragma GCC unroll 16
    for (int t = 0; t < kT; ++t)
      y[t * y_stride + r] = hn::GetLane(hn::SumOfLanes(df, acc[r][t])) + b;
  }
}

// A tile of nr <= kRows rows x nt <= kToks tokens (edges of the row range or token panel).
template <WeightType kDt, int kR>
HWY_INLINE void DotTileRows(int nt, const WeightT<kDt>* w, const float* x, int64_t cols, float* y,
                            int64_t y_stride, const float* bias, const WeightT<kDt>* next) {
  static_assert(kToks == 4, "update the cases below");
  switch (nt) {
    case 1:
      return DotTile<kDt, kR, 1, true>(w, x, cols, y, y_stride, bias, next);
    case 2:
      return DotTile<kDt, kR, 2, true>(w, x, cols, y, y_stride, bias, next);
    case 3:
      return DotTile<kDt, kR, 3, true>(w, x, cols, y, y_stride, bias, next);
    default:
      return DotTile<kDt, kR, 4, true>(w, x, cols, y, y_stride, bias, next);
  }
}

template <WeightType kDt>
HWY_INLINE void DotTileAny(int nr, int nt, const WeightT<kDt>* w, const float* x, int64_t cols,
                           float* y, int64_t y_stride, const float* bias,
                           const WeightT<kDt>* next = nullptr) {
  static_assert(kRows == 3, "update the cases below");
  switch (nr) {
    case 1:
      return DotTileRows<kDt, 1>(nt, w, x, cols, y, y_stride, bias, next);
    case 2:
      return DotTileRows<kDt, 2>(nt, w, x, cols, y, y_stride, bias, next);
    default:
      return DotTileRows<kDt, 3>(nt, w, x, cols, y, y_stride, bias, next);
  }
}

// Where the token tile starting at token t begins in x packed by PackX (each token holds
// ceil(cols / Lanes) zero-padded vectors); PackedXOffset(n_tok, cols) is the whole size.
HWY_INLINE int64_t PackedXOffset(int64_t t, int64_t cols) {
  const int64_t n = int64_t(hn::Lanes(DF()));
  return t * ((cols + n - 1) / n) * n;
}

int64_t PackedXFloats(int64_t cols, int64_t n_tok) { return PackedXOffset(n_tok, cols); }

// Packs x [n_tok, cols] for the batched path, per token tile of kToks tokens (the last may be
// shorter) as [chunk][token][lane], the last chunk zero-padded, each tile at PackedXOffset. A
// step of a tile then loads its x vectors from one contiguous, aligned run instead of kToks rows
// `cols` apart. Same values, same FMAs.
void PackX(const float* HWY_RESTRICT x, int64_t cols, int64_t n_tok, float* HWY_RESTRICT xp) {
  const DF df;
  const int64_t n = int64_t(hn::Lanes(df));
  for (int64_t t = 0; t < n_tok; t += kToks) {
    const int64_t nt = std::min<int64_t>(kToks, n_tok - t);
    float* dst = xp + PackedXOffset(t, cols);
    for (int64_t k = 0; k < cols; k += n) {
      for (int64_t tt = 0; tt < nt; ++tt) {
        const float* src = x + (t + tt) * cols + k;
        const VF v = k + n <= cols ? hn::LoadU(df, src) : LoadTail(df, src, size_t(cols - k));
        hn::Store(v, df, dst + k * nt + tt * n);
      }
    }
  }
}

// Rows [r0, r1) of y. n_tok > 1 reads x packed by PackX (xp); decode reads x itself.
template <WeightType kDt>
void MatmulRowsT(const WeightT<kDt>* w, int64_t rows, int64_t cols, const float* x,
                 const float* xp, int64_t n_tok, float* y, const float* bias, int64_t r0,
                 int64_t r1) {
  auto bias_at = [&](int64_t r) { return bias ? bias + r : nullptr; };
  if (n_tok == 1) {
    int64_t r = r0;
    for (; r + kDecodeRows <= r1; r += kDecodeRows) {
      const bool has_next = r + 2 * kDecodeRows <= r1;
      DotTile<kDt, kDecodeRows, 1>(w + r * cols, x, cols, y + r, rows, bias_at(r),
                                   has_next ? w + (r + kDecodeRows) * cols : nullptr);
    }
    for (; r < r1; ++r) DotTile<kDt, 1, 1>(w + r * cols, x, cols, y + r, rows, bias_at(r));
    return;
  }
  const int64_t row_bytes = std::max<int64_t>(cols, 1) * int64_t(sizeof(float));
  const int64_t panel = std::max<int64_t>(kToks, kPanelBytes / row_bytes / kToks * kToks);
  for (int64_t t0 = 0; t0 < n_tok; t0 += panel) {
    const int64_t t1 = std::min(n_tok, t0 + panel);
    for (int64_t r = r0; r < r1; r += kRows) {
      const int nr = int(std::min<int64_t>(kRows, r1 - r));
      for (int64_t t = t0; t < t1; t += kToks) {
        const int nt = int(std::min<int64_t>(kToks, t1 - t));
        // The first token tile of a row tile streams its weights from memory (the others find
        // them in L1): it prefetches the next row tile's.
        const bool pf = t == t0 && r + 2 * kRows <= r1;
        DotTileAny<kDt>(nr, nt, w + r * cols, xp + PackedXOffset(t, cols), cols, y + t * rows + r,
                        rows, bias_at(r), pf ? w + (r + kRows) * cols : nullptr);
      }
    }
  }
}

// Rows [r0, r1) of y for all n_tok tokens.
void MatmulRows(const void* w, WeightType dtype, int64_t rows, int64_t cols, const float* x,
                const float* xp, int64_t n_tok, float* y, const float* bias, int64_t r0,
                int64_t r1) {
  switch (dtype) {
    case WeightType::F32:
      return MatmulRowsT<WeightType::F32>(static_cast<const float*>(w), rows, cols, x, xp, n_tok, y,
                                     bias, r0, r1);
    case WeightType::BF16:
      return MatmulRowsT<WeightType::BF16>(static_cast<const uint16_t*>(w), rows, cols, x, xp, n_tok,
                                      y, bias, r0, r1);
    case WeightType::F16:
      return MatmulRowsT<WeightType::F16>(static_cast<const uint16_t*>(w), rows, cols, x, xp, n_tok,
                                     y, bias, r0, r1);
    default:
      break;
  }
  // Block formats without a kernel of their own: rows are decoded to f32 a few at a time and
  // multiplied by the f32 path (same FMAs per output as an f32 matrix of those values).
  constexpr int64_t kGroup = 12;  // whole decode (4) and batched (3) row tiles
  thread_local std::vector<float> rows_f32;
  rows_f32.resize(size_t(kGroup * cols));
  const size_t rb = formats::row_bytes(dtype, cols);
  for (int64_t g = r0; g < r1; g += kGroup) {
    const int64_t n = std::min(kGroup, r1 - g);
    for (int64_t r = 0; r < n; ++r)
      formats::dequantize_row(dtype, static_cast<const uint8_t*>(w) + size_t(g + r) * rb, cols,
                              rows_f32.data() + r * cols);
    MatmulRowsT<WeightType::F32>(rows_f32.data(), rows, cols, x, xp, n_tok, y + g,
                                 bias ? bias + g : nullptr, 0, n);
  }
}

// Whether this target is AVX-512 (the BF16 dot-product path runs only there, so that forcing an
// older target, as the tests do, also gives that target's f32 path).
bool TargetIsAvx512() {
#if HWY_ARCH_X86
  return HWY_TARGET <= HWY_AVX3;
#else
  return false;
#endif
}

}  // namespace meshlm::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace meshlm::kernels {

HWY_EXPORT(MatmulRows);
HWY_EXPORT(PackX);
HWY_EXPORT(PackedXFloats);
HWY_EXPORT(TargetIsAvx512);

namespace {
// BF16 dot products (kernels_bf16.h): -1 until decided, then 0 off / 1 on. Off unless
// MESHLM_BF16_DOT=1 is in the environment (simd_set_bf16_dot overrides): rounding activations to
// bf16 moves the logits of the float64-reference tests (tests/model_ref) by 0.1-0.2 against the
// 1e-2 they allow for BF16 weights, and the ref backend does not model it yet.
std::atomic<int> bf16_dot_mode{-1};
int bf16_dot_setting() {
  int m = bf16_dot_mode.load(std::memory_order_relaxed);
  if (m < 0) {
    const char* env = std::getenv("MESHLM_BF16_DOT");
    m = env != nullptr && std::strcmp(env, "1") == 0 ? 1 : 0;
    bf16_dot_mode.store(m, std::memory_order_relaxed);
  }
  return m;
}
}  // namespace

bool bf16_dot_active() {
  return bf16_dot_setting() == 1 && bf16::cpu_supported() &&
         HWY_DYNAMIC_DISPATCH(TargetIsAvx512)();
}

void simd_set_bf16_dot(bool enabled) { bf16_dot_mode.store(enabled ? 1 : 0); }

namespace {
// Below this many multiply-adds a matmul runs on the calling thread alone: waking the pool costs
// more than it saves. (Threading never changes the result, see the contract above.)
constexpr int64_t kMinParallelWork = 1 << 16;
// Rows per chunk handed to a thread: about 8 chunks per thread, so that a thread the OS takes away
// for a while (the server's HTTP threads, a stage's network thread) costs the others little, in
// multiples of 12 so that tiles of 3 (batched) and 4 (decode) rows never straddle two chunks.
constexpr int64_t kChunksPerThread = 8;
constexpr int64_t kRowMultiple = 12;
int64_t row_grain(int64_t rows, int threads) {
  const int64_t per = (rows + threads * kChunksPerThread - 1) / (threads * kChunksPerThread);
  return std::max<int64_t>(kRowMultiple, (per + kRowMultiple - 1) / kRowMultiple * kRowMultiple);
}
}  // namespace

namespace {
void check_view(const MatView& w, const float* x, int64_t n_tok, const float* y) {
  if (w.rows < 0 || w.cols < 0) throw Error("kernels", "matmul: negative shape");
  formats::info(w.dtype);  // throws for a type outside the table
  if (w.cols % formats::info(w.dtype).block_elems != 0)
    throw Error("kernels", "matmul: rows are not whole blocks of their format");
  if (w.rows == 0 || n_tok == 0) return;  // nothing is read or written
  if ((w.cols > 0 && (w.data == nullptr || x == nullptr)) || y == nullptr)
    throw Error("kernels", "matmul: null pointer");
}

// Rows [r0, r1) of one output of a job: the unit the threads take from the shared counter.
struct RowChunk {
  int out;
  int64_t r0, r1;
};
}  // namespace

void matmul_multi(const MatmulOut* outs, int n_outs, const float* x, int64_t n_tok,
                  ThreadPool& pool, BlockMath math) {
  if (n_tok < 0) throw Error("kernels", "matmul: negative shape");
  if (n_outs < 0 || (n_outs > 0 && outs == nullptr)) throw Error("kernels", "matmul: no outputs");
  int64_t total_rows = 0;
  for (int i = 0; i < n_outs; ++i) {
    check_view(outs[i].w, x, n_tok, outs[i].y);
    if (outs[i].w.cols != outs[0].w.cols)
      throw Error("kernels", "matmul_multi: the matrices have different input widths");
    total_rows += outs[i].w.rows;
  }
  if (total_rows == 0 || n_tok == 0) return;
  const int64_t cols = outs[0].w.cols;

  // kQ8: which outputs take the quantized-activation kernels (kernels_quant.h); their x is
  // quantized once here, on the calling thread, in each activation block size they read.
  // BF16 weights under kQ8 take the BF16 dot products where the CPU has them (kernels_bf16.h):
  // qblock kBf16Dot, x rounded to bf16 once here.
  constexpr int64_t kBf16Dot = -1;
  const bool bf16_dot = math == BlockMath::kQ8 && bf16_dot_active();
  thread_local std::vector<int64_t> qblock;  // per output: 32, 256, kBf16Dot, or 0 (f32 path)
  qblock.assign(size_t(n_outs), 0);
  bool any_f32 = false, need32 = false, need256 = false, need_bf16 = false;
  for (int i = 0; i < n_outs; ++i) {
    if (math == BlockMath::kQ8) qblock[size_t(i)] = quant::activation_block(outs[i].w.dtype);
    if (bf16_dot && outs[i].w.dtype == WeightType::BF16) qblock[size_t(i)] = kBf16Dot;
    any_f32 = any_f32 || qblock[size_t(i)] == 0;
    need32 = need32 || qblock[size_t(i)] == 32;
    need256 = need256 || qblock[size_t(i)] == 256;
    need_bf16 = need_bf16 || qblock[size_t(i)] == kBf16Dot;
  }
  thread_local quant::QuantizedXBuffer xq32, xq256;
  if (need32) xq32.quantize(x, n_tok, cols, 32);
  if (need256) xq256.quantize(x, n_tok, cols, 256);
  const uint16_t* xb = nullptr;
  if (need_bf16) {
    thread_local hwy::AlignedFreeUniquePtr<uint16_t[]> buf;
    thread_local int64_t cap = 0;
    const int64_t need = std::max<int64_t>(1, n_tok * bf16::bf16_x_stride(cols));
    if (cap < need) {
      buf = hwy::AllocateAligned<uint16_t>(size_t(need));
      if (!buf) throw Error("kernels", "matmul: cannot allocate the bf16 input");
      cap = need;
    }
    bf16::round_tokens(x, n_tok, cols, buf.get());
    xb = buf.get();
  }
  // Views taken here: the buffers are this thread's thread_locals, the workers only read them.
  const std::vector<int64_t>& qb = qblock;
  const quant::QuantizedX xq_32 = xq32.view(), xq_256 = xq256.view();

  // Batched: x is packed once here, on the calling thread, for every thread and chunk.
  const float* xp = nullptr;
  if (n_tok > 1 && any_f32) {
    thread_local hwy::AlignedFreeUniquePtr<float[]> buf;
    thread_local int64_t cap = 0;
    const int64_t need = HWY_DYNAMIC_DISPATCH(PackedXFloats)(cols, n_tok);
    if (cap < need) {
      buf = hwy::AllocateAligned<float>(size_t(need));
      if (!buf) throw Error("kernels", "matmul: cannot allocate the packed input");
      cap = need;
    }
    HWY_DYNAMIC_DISPATCH(PackX)(x, cols, n_tok, buf.get());
    xp = buf.get();
  }
  const auto rows_fn = HWY_DYNAMIC_DISPATCH(MatmulRows);
  auto run = [&](const RowChunk& c) {
    const MatmulOut& o = outs[c.out];
    if (qb[size_t(c.out)] == kBf16Dot)
      return bf16::matmul_rows(static_cast<const uint16_t*>(o.w.data), o.w.rows, cols, xb, n_tok,
                               o.y, o.bias, c.r0, c.r1);
    if (const int64_t blk = qb[size_t(c.out)]; blk != 0)
      return quant::matmul_rows(o.w, blk == 32 ? xq_32 : xq_256, n_tok, o.y, o.bias,
                                c.r0, c.r1);
    rows_fn(o.w.data, o.w.dtype, o.w.rows, cols, x, xp, n_tok, o.y, o.bias, c.r0, c.r1);
  };
  if (pool.size() == 1 || total_rows * std::max<int64_t>(cols, 1) * n_tok < kMinParallelWork) {
    for (int i = 0; i < n_outs; ++i) run(RowChunk{i, 0, outs[i].w.rows});
    return;
  }
  // Chunks of whole row tiles, sized from all the rows together, never straddling two outputs.
  const int64_t grain = row_grain(total_rows, pool.size());
  thread_local std::vector<RowChunk> chunks;
  chunks.clear();
  for (int i = 0; i < n_outs; ++i)
    for (int64_t r = 0; r < outs[i].w.rows; r += grain)
      chunks.push_back(RowChunk{i, r, std::min(outs[i].w.rows, r + grain)});
  const std::vector<RowChunk>& list = chunks;  // this thread's; workers only read it
  pool.parallel_chunks(int64_t(list.size()), 1, [&](int64_t c0, int64_t c1, int) {
    for (int64_t c = c0; c < c1; ++c) run(list[size_t(c)]);
  });
}

void matmul(const MatView& w, const float* x, int64_t n_tok, float* y, const float* bias,
            ThreadPool& pool, BlockMath math) {
  const MatmulOut out{w, y, bias};
  matmul_multi(&out, 1, x, n_tok, pool, math);
}

}  // namespace meshlm::kernels
#endif  // HWY_ONCE
