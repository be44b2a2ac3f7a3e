// Quantized-activation matmul (BlockMath::kQ8, kernels_quant.h), once per SIMD target:
//  - bit for bit equal to the scalar model of the algorithm (same activation quantization,
//    integer dots, the same f32 operations in the same order), on every target;
//  - within the error the activation quantization allows of the scalar reference (ref::matmul
//    on the dequantized weights, double accumulation);
//  - the determinism contract: a token's outputs alone == within a batch of 16 == within any
//    window, on 1..4 threads; matmul_multi outputs == their own matmul.
#include <cmath>
#include <cstring>
#include <vector>

#include "core/half.h"
#include "formats/mlx_affine.h"
#include "formats/quants.h"
#include "kernels/kernels_quant.h"
#include "kernels/kernels_ref.h"
#include "kernels_test_util.h"

namespace meshlm::kernels::test {
namespace {

const WeightType kQuantTypes[] = {WeightType::Q8_0, WeightType::Q4_0, WeightType::Q4_1,
                                  WeightType::Q5_0, WeightType::Q5_1, WeightType::Q4_K,
                                  WeightType::Q5_K, WeightType::Q6_K,
                                  // MLX affine 4 / 8 bits: every group size and scale dtype
                                  WeightType::MLX4_G32_BF16, WeightType::MLX4_G64_BF16,
                                  WeightType::MLX4_G128_F16, WeightType::MLX4_G64_F32,
                                  WeightType::MLX8_G32_F16, WeightType::MLX8_G64_BF16,
                                  WeightType::MLX8_G128_BF16, WeightType::MLX8_G32_F32};

// A block-quantized matrix made by formats::quantize_row (ggml's reference quantizers) from
// random values, its bytes `misalign` bytes past a 64-byte boundary, and its decoded values.
struct QuantWeights {
  QuantWeights(WeightType t, int64_t rows, int64_t cols, uint32_t seed, size_t misalign) {
    const size_t rb = formats::row_bytes(t, cols);
    storage.resize(size_t(rows) * rb + misalign + 64);
    const auto addr = reinterpret_cast<uintptr_t>(storage.data());
    uint8_t* data = storage.data() + (64 - addr % 64) % 64 + misalign;
    const std::vector<float> src = random_floats(size_t(rows * cols), seed);
    decoded.resize(src.size());
    for (int64_t r = 0; r < rows; ++r) {
      formats::quantize_row(t, src.data() + r * cols, cols, data + size_t(r) * rb);
      formats::dequantize_row(t, data + size_t(r) * rb, cols, decoded.data() + r * cols);
    }
    view = MatView{data, t, rows, cols};
  }
  std::vector<uint8_t> storage;
  std::vector<float> decoded;  // [rows, cols]
  MatView view;
};

// Stated tolerance against the reference. The activation quantization replaces x_k by
// dx * q_k with |x_k - dx_f32 * q_k| <= dx_f32 / 2 (dx_f32 = amax / 127 of k's activation block,
// up to a few f32 roundings); for ggml's 32-element blocks d is dx_f32 rounded to f16 (relative
// error <= 2^-11, times |q_k| <= 127: amax / 2048 more), and Q4_1 / Q5_1 take the minimum term
// from q8_1's s, dx_f32 * sum(q) rounded to f16: |m| * 2^-11 * 32 * amax per block, |m| <= the
// block's largest |W_rk| (ggml's quantizer gives the smallest weight level 0). So the exact
// result moves by at most sum_k |W_rk| * amax_k * (1/254 + 1/2048) + that. On top, the f32
// arithmetic (a few dozen roundings of terms bounded by the separate scale and minimum products,
// which for the K-quants can be several times |W_rk x_k|): 1e-4 * sum_k |W_rk x_tk|, with wide
// margin.
double tolerance(const QuantWeights& w, const std::vector<float>& x, int64_t t, int64_t r,
                 int64_t block, const float* bias) {
  const int64_t cols = w.view.cols;
  const WeightType type = w.view.dtype;
  const bool ggml32 = block == 32 && !formats::mlx_affine(type);
  const bool min_sx = type == WeightType::Q4_1 || type == WeightType::Q5_1;
  double quant = 0, mag = 0;
  for (int64_t b = 0; b < cols / block; ++b) {
    double amax = 0, wmax = 0;
    for (int64_t k = b * block; k < (b + 1) * block; ++k)
      amax = std::max(amax, std::fabs(double(x[size_t(t * cols + k)])));
    for (int64_t k = b * block; k < (b + 1) * block; ++k) {
      const double wk = std::fabs(double(w.decoded[size_t(r * cols + k)]));
      quant += wk * amax * (1 / 254.0 + (ggml32 ? 1 / 2048.0 : 0.0));
      mag += wk * std::fabs(double(x[size_t(t * cols + k)]));
      wmax = std::max(wmax, wk);
    }
    if (min_sx) quant += wmax * amax * 32 / 2048.0;
  }
  return quant * (1 + 1e-5) + 1e-4 * mag + (bias ? 1e-6 * std::fabs(bias[r]) : 0.0) + 1e-6;
}

void check_q8(WeightType t, int64_t rows, int64_t cols, int64_t n_tok, int threads, bool with_bias,
              size_t misalign, uint32_t seed) {
  SCOPED_TRACE(::testing::Message() << formats::name(t) << " rows=" << rows << " cols=" << cols
                                    << " n_tok=" << n_tok << " threads=" << threads
                                    << " bias=" << with_bias << " misalign=" << misalign);
  const QuantWeights w(t, rows, cols, seed, misalign);
  const std::vector<float> x = random_floats(size_t(n_tok * cols), seed + 1, -2.0f, 2.0f);
  const std::vector<float> bias = random_floats(size_t(rows), seed + 2);
  const float* b = with_bias ? bias.data() : nullptr;
  std::vector<float> y(size_t(n_tok * rows), NAN), model(y.size(), NAN), ref(y.size());
  matmul(w.view, x.data(), n_tok, y.data(), b, pool_of(threads), BlockMath::kQ8);

  const int64_t block = quant::activation_block(t);
  quant::QuantizedXBuffer xq;
  xq.quantize(x.data(), n_tok, cols, block);
  quant::matmul_rows_model(w.view, xq.view(), n_tok, model.data(), b, 0, rows);
  ASSERT_EQ(0, std::memcmp(y.data(), model.data(), y.size() * sizeof(float)))
      << "differs from the scalar model of the algorithm";

  const MatView ref_view{w.decoded.data(), WeightType::F32, rows, cols};
  ref::matmul(ref_view, x.data(), n_tok, ref.data(), b);
  for (int64_t tt = 0; tt < n_tok; ++tt)
    for (int64_t r = 0; r < rows; ++r) {
      const size_t i = size_t(tt * rows + r);
      ASSERT_NEAR(y[i], ref[i], tolerance(w, x, tt, r, block, b)) << "t=" << tt << " r=" << r;
    }
}

// Once per SIMD target the quantized kernels are built for (quant::built_targets(): the other
// kernels' targets and AVX3_DL, AVX-512 VNNI); the ones this CPU cannot run are skipped, saying
// so. A target is forced as "the best this CPU has": it and every supported target below it, so
// that the other kernels (built without AVX3_DL) run their next best target, not the fallback.
class QuantMatmulParity : public ::testing::TestWithParam<int64_t> {
 protected:
  void SetUp() override {
    if (!simd_target_supported(GetParam()))
      GTEST_SKIP() << "this CPU lacks " << simd_target_label(GetParam())
                   << ": its kernels are built but cannot run here";
    int64_t mask = 0;  // lower bit = better target
    for (const std::vector<int64_t>& list : {simd_built_targets(), quant::built_targets()})
      for (int64_t t : list)
        if (t >= GetParam() && simd_target_supported(t)) mask |= t;
    simd_force_target(mask);
  }
  void TearDown() override { simd_force_target(0); }
};

TEST_P(QuantMatmulParity, OddShapesEveryType) {
  uint32_t seed = 1;
  for (WeightType t : kQuantTypes) {
    const int64_t be = formats::info(t).block_elems;
    for (int64_t rows : {1, 5, 13, 33})
      for (int64_t blocks : {1, 3, 8})
        for (int64_t n_tok : {1, 2, 5, 17}) {
          check_q8(t, rows, blocks * be, n_tok, int(1 + seed % 4), seed % 2 == 0, seed % 3, seed);
          ++seed;
        }
  }
}

TEST_P(QuantMatmulParity, ModelShapes) {
  // A row of a 0.6B / 1.7B layer (1024 and 2048 columns, 6144 for the down projection).
  uint32_t seed = 100;
  for (WeightType t : kQuantTypes)
    for (int64_t cols : {1024, 2048, 6144}) check_q8(t, 7, cols, 3, 2, true, 1, seed++);
}

// Zero, huge and non-finite activations: a zero block quantizes to zeros (no division by zero);
// a NaN or inf makes its outputs NaN, as the f32 path does.
TEST_P(QuantMatmulParity, SpecialActivations) {
  for (WeightType t : kQuantTypes) {
    SCOPED_TRACE(formats::name(t));
    const int64_t cols = 512, rows = 3;
    const QuantWeights w(t, rows, cols, 7, 0);
    std::vector<float> x(size_t(2 * cols), 0.0f), y(size_t(2 * rows), 1.0f);
    x[size_t(cols + 5)] = 1e30f;
    matmul(w.view, x.data(), 2, y.data(), nullptr, pool_of(1), BlockMath::kQ8);
    for (int64_t r = 0; r < rows; ++r) {
      EXPECT_EQ(y[size_t(r)], 0.0f);
      EXPECT_TRUE(std::isfinite(y[size_t(rows + r)]));
    }
    x[size_t(7)] = NAN;
    x[size_t(cols + 300)] = INFINITY;
    matmul(w.view, x.data(), 2, y.data(), nullptr, pool_of(1), BlockMath::kQ8);
    for (float v : y) EXPECT_TRUE(std::isnan(v));
  }
}

// Every output bit-identical to the one computed alone (n_tok = 1, one thread).
TEST_P(QuantMatmulParity, BatchInvariance) {
  uint32_t seed = 300;
  for (WeightType t : kQuantTypes) {
    const int64_t be = formats::info(t).block_elems, rows = 67, n_tok = 16;
    const int64_t cols = be == 32 ? 320 : 768;
    SCOPED_TRACE(formats::name(t));
    const QuantWeights w(t, rows, cols, seed++, 1);
    const std::vector<float> x = random_floats(size_t(n_tok * cols), seed++, -2.0f, 2.0f);
    const std::vector<float> bias = random_floats(size_t(rows), seed++);
    std::vector<float> alone(size_t(n_tok * rows));
    for (int64_t tt = 0; tt < n_tok; ++tt)
      matmul(w.view, x.data() + tt * cols, 1, alone.data() + tt * rows, bias.data(), pool_of(1),
             BlockMath::kQ8);
    for (int threads = 1; threads <= 4; ++threads) {
      std::vector<float> y(alone.size());
      matmul(w.view, x.data(), n_tok, y.data(), bias.data(), pool_of(threads), BlockMath::kQ8);
      ASSERT_EQ(0, std::memcmp(y.data(), alone.data(), y.size() * sizeof(float)))
          << "batch of 16, threads=" << threads;
      for (int64_t len = 2; len <= 5; ++len)
        for (int64_t t0 = len - 2; t0 + len <= n_tok; t0 += 3) {
          std::vector<float> yw(size_t(len * rows));
          matmul(w.view, x.data() + t0 * cols, len, yw.data(), bias.data(), pool_of(threads),
                 BlockMath::kQ8);
          ASSERT_EQ(0, std::memcmp(yw.data(), alone.data() + t0 * rows, yw.size() * sizeof(float)))
              << "window t0=" << t0 << " len=" << len << " threads=" << threads;
        }
    }
  }
}

// n_tok = 1..17 (every remainder of the 4-token tiles, several tiles) over rows that are not a
// multiple of the 4-row tiles, on 1, 2 and 4 threads: each token's outputs equal its n_tok = 1
// outputs on one thread, bit for bit, and the scalar model's.
TEST_P(QuantMatmulParity, EveryBatchSizeEqualsAlone) {
  uint32_t seed = 500;
  for (WeightType t : kQuantTypes) {
    const int64_t be = formats::info(t).block_elems, rows = 27, n_max = 17;
    const int64_t cols = be == 32 ? 7 * 32 : 3 * 256;  // an odd number of legacy blocks
    SCOPED_TRACE(formats::name(t));
    const QuantWeights w(t, rows, cols, seed++, 3);
    const std::vector<float> x = random_floats(size_t(n_max * cols), seed++, -3.0f, 3.0f);
    const std::vector<float> bias = random_floats(size_t(rows), seed++);
    std::vector<float> alone(size_t(n_max * rows)), model(alone.size());
    for (int64_t tt = 0; tt < n_max; ++tt)
      matmul(w.view, x.data() + tt * cols, 1, alone.data() + tt * rows, bias.data(), pool_of(1),
             BlockMath::kQ8);
    quant::QuantizedXBuffer xq;
    xq.quantize(x.data(), n_max, cols, quant::activation_block(t));
    quant::matmul_rows_model(w.view, xq.view(), n_max, model.data(), bias.data(), 0, rows);
    ASSERT_EQ(0, std::memcmp(alone.data(), model.data(), alone.size() * sizeof(float)))
        << "n_tok = 1 differs from the scalar model";
    for (int threads : {1, 2, 4})
      for (int64_t n_tok = 1; n_tok <= n_max; ++n_tok) {
        std::vector<float> y(size_t(n_tok * rows), NAN);
        matmul(w.view, x.data(), n_tok, y.data(), bias.data(), pool_of(threads), BlockMath::kQ8);
        ASSERT_EQ(0, std::memcmp(y.data(), alone.data(), y.size() * sizeof(float)))
            << "n_tok=" << n_tok << " threads=" << threads;
      }
  }
}

// The SIMD activation quantization (quantize_tokens, what QuantizedXBuffer runs) equals the scalar
// statement (quantize_activations) bit for bit: random blocks, ties (x * id = k + 0.5 rounds to
// even), +-amax in one block (q8_K: the first one's sign), zero blocks, blocks whose d is an f16
// subnormal or overflows f16, blocks whose 127 / amax overflows, and blocks with an inf or NaN.
TEST_P(QuantMatmulParity, QuantizeTokensEqualsScalar) {
  for (int64_t block : {32, 256}) {
    const int64_t cols = 12 * 256, n_tok = 5, nc = cols / 32;
    std::vector<float> x = random_floats(size_t(n_tok * cols), 77 + uint32_t(block), -4.0f, 4.0f);
    for (int64_t j = 0; j < 64; ++j) x[size_t(j)] = float(j % 13) - 6.5f;  // ties
    x[0] = 127.0f;                                                           // d = 1
    for (int64_t j = 256; j < 512; ++j) x[size_t(j)] = 0.0f;                 // zero blocks
    for (int64_t j = 512; j < 768; ++j) x[size_t(j)] = 1e-40f * float(j % 7 - 3);
    for (int64_t j = 768; j < 1024; ++j) x[size_t(j)] = 3e-3f * float(j % 11 - 5);  // subnormal d
    for (int64_t j = 1024; j < 1280; ++j) x[size_t(j)] = 1e-6f * float(j % 5 - 2);
    for (int64_t j = 1280; j < 1536; ++j) x[size_t(j)] = 1e9f * float(j % 9 - 4);   // d > 65504
    for (int64_t j = 1536; j < 1792; ++j) x[size_t(j)] = 4e-37f * float(j % 3 - 1);  // id ~ inf
    for (int64_t j = 1792; j < 2048; ++j) x[size_t(j)] = 2e-37f * float(j % 3 - 1);
    x[1800] = -2.0f;  // -amax first, then +amax: q8_K keeps the first's sign
    x[1900] = 2.0f;
    for (int64_t j = 2048; j < 2304; ++j) x[size_t(j)] = 1e-3f * float(j % 5 - 2);
    x[2100] = 2.0f;  // +amax first
    x[2200] = -2.0f;
    for (int64_t j = 2304; j < 2560; ++j) x[size_t(j)] = 5e2f * float(j % 13 - 6);  // |sx| > 65504
    x[size_t(cols + 3)] = INFINITY;
    x[size_t(2 * cols + 300)] = NAN;
    x[size_t(3 * cols + 40)] = -INFINITY;
    std::vector<int8_t> q1(x.size()), q2(x.size());
    std::vector<float> d1(x.size() / size_t(block)), d2(d1.size());
    std::vector<int32_t> s1(x.size() / 32), s2(s1.size());
    const bool q8_0 = block == 32;
    std::vector<float> f1(q8_0 ? s1.size() : 0), f2(f1.size()), sx1(f1.size()), sx2(f1.size());
    for (int64_t t = 0; t < n_tok; ++t)
      quant::quantize_activations(x.data() + t * cols, cols, block, q1.data() + t * cols,
                                  d1.data() + t * (cols / block), s1.data() + t * nc,
                                  q8_0 ? f1.data() + t * nc : nullptr,
                                  q8_0 ? sx1.data() + t * nc : nullptr);
    quant::quantize_tokens(x.data(), n_tok, cols, block, q2.data(), d2.data(), s2.data(),
                           q8_0 ? f2.data() : nullptr, q8_0 ? sx2.data() : nullptr);
    EXPECT_EQ(q1, q2) << "block " << block;
    EXPECT_EQ(0, std::memcmp(d1.data(), d2.data(), d1.size() * sizeof(float))) << "block " << block;
    EXPECT_EQ(s1, s2) << "block " << block;
    if (q8_0) {  // memcmp: bit-exact, NaN included (empty vectors have no data pointer)
      EXPECT_EQ(0, std::memcmp(f1.data(), f2.data(), f1.size() * sizeof(float))) << "block " << block;
      EXPECT_EQ(0, std::memcmp(sx1.data(), sx2.data(), sx1.size() * sizeof(float)))
          << "block " << block;
    }
    if (!q8_0) {  // the sign of the first largest |x|
      EXPECT_EQ(q1[1800], -127);
      EXPECT_EQ(q1[1900], 127);
      EXPECT_EQ(q1[2100], -127);
      EXPECT_EQ(q1[2200], 127);
    }
  }
}

// A Q4_K_M layer mixes types over one input (q/k/v: Q4_K and Q6_K; a BF16 or Q2_K tensor takes
// the f32 path): each output equals its own matmul bit for bit.
TEST_P(QuantMatmulParity, MultiMixedTypes) {
  const int64_t cols = 512;
  const WeightType types[] = {WeightType::Q4_K, WeightType::Q6_K, WeightType::Q8_0,
                              WeightType::Q2_K, WeightType::Q4_0};
  const int64_t rows[] = {67, 12, 25, 9, 0};
  std::vector<QuantWeights> ws;
  for (int i = 0; i < 5; ++i) ws.emplace_back(types[i], rows[i], cols, 800 + uint32_t(i), 0);
  const std::vector<float> bias = random_floats(67, 9);
  for (int64_t n_tok : {1, 5, 16}) {
    const std::vector<float> x = random_floats(size_t(n_tok * cols), 810 + uint32_t(n_tok));
    for (int threads = 1; threads <= 4; ++threads) {
      SCOPED_TRACE(::testing::Message() << "n_tok=" << n_tok << " threads=" << threads);
      std::vector<std::vector<float>> ys(5), alone(5);
      std::vector<MatmulOut> outs;
      for (int i = 0; i < 5; ++i) {
        ys[size_t(i)].assign(size_t(n_tok * rows[i]), NAN);
        alone[size_t(i)].assign(size_t(n_tok * rows[i]), NAN);
        const float* b = i % 2 == 0 ? bias.data() : nullptr;
        outs.push_back(MatmulOut{ws[size_t(i)].view, ys[size_t(i)].data(), b});
        matmul(ws[size_t(i)].view, x.data(), n_tok, alone[size_t(i)].data(), b, pool_of(1),
               BlockMath::kQ8);
      }
      matmul_multi(outs.data(), 5, x.data(), n_tok, pool_of(threads), BlockMath::kQ8);
      for (int i = 0; i < 4; ++i)
        ASSERT_EQ(0, std::memcmp(ys[size_t(i)].data(), alone[size_t(i)].data(),
                                 ys[size_t(i)].size() * sizeof(float)))
            << "output " << i;
    }
  }
}

// kQ8 leaves the types without a kernel (and F32/BF16/F16) on their exact path: bit-identical to
// kExact.
TEST_P(QuantMatmulParity, OtherTypesUnchanged) {
  for (WeightType t : {WeightType::Q2_K, WeightType::Q3_K, WeightType::MLX3_G64_BF16,
                       WeightType::MLX6_G32_F16}) {
    const QuantWeights w(t, 13, 512, 5, 0);
    const std::vector<float> x = random_floats(3 * 512, 6);
    std::vector<float> a(39), b(39);
    matmul(w.view, x.data(), 3, a.data(), nullptr, pool_of(2), BlockMath::kExact);
    matmul(w.view, x.data(), 3, b.data(), nullptr, pool_of(2), BlockMath::kQ8);
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << formats::name(t);
  }
  // BF16: the f32 path under kQ8 too, unless the BF16 dot products are on (AVX512-BF16 CPUs and
  // MESHLM_BF16_DOT=1: kernels_bf16_test.cpp), here turned off (the default).
  simd_set_bf16_dot(false);
  Weights w(WeightType::BF16, 13, 100, random_floats(1300, 3), 0);
  const std::vector<float> x = random_floats(300, 4);
  std::vector<float> a(39), b(39);
  matmul(w.view(), x.data(), 3, a.data(), nullptr, pool_of(2), BlockMath::kExact);
  matmul(w.view(), x.data(), 3, b.data(), nullptr, pool_of(2), BlockMath::kQ8);
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
}

INSTANTIATE_TEST_SUITE_P(Targets, QuantMatmulParity, ::testing::ValuesIn(quant::built_targets()),
                         target_param_name);

// The activation quantization itself, ggml's: q8_0 / q8_1 (block 32): q = nearbyint(x * (127 /
// amax)), d = amax / 127 rounded to f16, s = d_f32 * sum(q) rounded to f16; q8_K (block 256): the
// first largest |x| keeps its sign, q = nearbyint(-127 / mx * x), d = 1 / (-127 / mx).
TEST(QuantizeActivations, Codes) {
  std::vector<float> x(32, 0.0f);
  x[0] = -2.54f;
  x[1] = 1.0f;
  x[2] = 0.01f;
  std::vector<int8_t> q(32);
  float d, d_f32, sx;
  int32_t sum;
  quant::quantize_activations(x.data(), 32, 32, q.data(), &d, &sum, &d_f32, &sx);
  const auto f16 = [](float v) { return f16_to_f32(f32_to_f16(v)); };
  EXPECT_EQ(d_f32, 2.54f / 127);
  EXPECT_EQ(d, f16(2.54f / 127));
  EXPECT_NE(d, d_f32);
  EXPECT_EQ(q[0], -127);
  EXPECT_EQ(q[1], 50);
  EXPECT_EQ(q[2], 0);  // 0.01 * (127 / 2.54) = 0.5: to even
  EXPECT_EQ(sum, -77);
  EXPECT_EQ(sx, f16(d_f32 * -77.0f));

  std::vector<float> xk(256, 0.0f);
  xk[3] = 0.5f;
  xk[10] = 3.0f;
  xk[20] = -3.0f;
  xk[30] = -1.0f;
  std::vector<int8_t> qk(256);
  float dk;
  int32_t sums[8];
  quant::quantize_activations(xk.data(), 256, 256, qk.data(), &dk, sums, nullptr, nullptr);
  const float iscale = -127.0f / 3.0f;
  EXPECT_EQ(dk, 1 / iscale);
  EXPECT_LT(dk, 0.0f);
  EXPECT_EQ(qk[3], int(std::nearbyint(0.5f * iscale)));
  EXPECT_EQ(qk[10], -127);
  EXPECT_EQ(qk[20], 127);
  EXPECT_EQ(qk[30], 42);
  EXPECT_EQ(sums[0], qk[3] + qk[10] + qk[20] + qk[30]);
}

}  // namespace
}  // namespace meshlm::kernels::test
