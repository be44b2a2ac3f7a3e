// BF16 dot products (kernels_bf16.h): the AVX512-BF16 kernel bit for bit against the scalar model
// (odd shapes, cols not a multiple of 32, special values, misalignment), the model against the
// exact product within its stated bound, and the determinism contract through matmul (kQ8):
// a token's output bit-identical alone or in a batch, on 1-4 threads. Tests of the kernel skip,
// saying so, on CPUs without AVX512-BF16.
#include <hwy/aligned_allocator.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"
#include "kernels/kernels_bf16.h"
#include "kernels/kernels_ref.h"
#include "kernels_test_util.h"

namespace meshlm::kernels::test {
namespace {

#define MESHLM_REQUIRE_BF16()                                                        \
  do {                                                                               \
    if (!bf16::cpu_supported())                                                      \
      GTEST_SKIP() << "this CPU lacks AVX512-BF16 (vdpbf16ps): the kernel is not run"; \
  } while (0)

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Equal bits, or both NaN (the payload of a NaN made inside an fma is the hardware's).
bool same(float a, float b) { return bits(a) == bits(b) || (std::isnan(a) && std::isnan(b)); }

// bf16 x, 64-byte aligned, as round_tokens leaves it.
struct RoundedX {
  hwy::AlignedFreeUniquePtr<uint16_t[]> p;
  RoundedX(const float* x, int64_t n_tok, int64_t cols, bool model) {
    p = hwy::AllocateAligned<uint16_t>(size_t(std::max<int64_t>(1, n_tok * bf16::bf16_x_stride(cols))));
    if (model)
      bf16::round_tokens_model(x, n_tok, cols, p.get());
    else
      bf16::round_tokens(x, n_tok, cols, p.get());
  }
};

// Kernel vs model on one shape; also round_tokens vs its model.
void check_kernel(const std::vector<float>& wf, const std::vector<float>& x, int64_t rows,
                  int64_t cols, int64_t n_tok, bool with_bias, size_t misalign) {
  SCOPED_TRACE(::testing::Message() << "rows=" << rows << " cols=" << cols << " n_tok=" << n_tok
                                    << " bias=" << with_bias << " misalign=" << misalign);
  Weights w(WeightType::BF16, rows, cols, wf, misalign);
  const auto* wp = static_cast<const uint16_t*>(w.view().data);
  std::vector<float> bias = random_floats(size_t(rows), 77);
  const float* b = with_bias ? bias.data() : nullptr;
  RoundedX xm(x.data(), n_tok, cols, true), xk(x.data(), n_tok, cols, false);
  const size_t nx = size_t(n_tok * bf16::bf16_x_stride(cols));
  ASSERT_EQ(0, std::memcmp(xm.p.get(), xk.p.get(), nx * 2)) << "round_tokens";
  std::vector<float> ym(size_t(n_tok * rows), -7.0f), yk(ym.size(), -7.0f);
  bf16::matmul_rows_model(wp, rows, cols, xm.p.get(), n_tok, ym.data(), b, 0, rows);
  bf16::matmul_rows(wp, rows, cols, xk.p.get(), n_tok, yk.data(), b, 0, rows);
  for (size_t i = 0; i < ym.size(); ++i)
    ASSERT_TRUE(same(ym[i], yk[i])) << "t=" << i / size_t(rows) << " r=" << i % size_t(rows)
                                    << " model " << ym[i] << " kernel " << yk[i];
}

TEST(Bf16Dot, KernelMatchesModelOddShapes) {
  MESHLM_REQUIRE_BF16();
  const int64_t kRows[] = {1, 3, 4, 5, 9, 17};
  const int64_t kCols[] = {1, 2, 31, 32, 33, 63, 64, 100, 129, 1000};
  const int64_t kToks[] = {1, 2, 5, 6, 7, 13};
  uint32_t seed = 1;
  for (int64_t rows : kRows)
    for (int64_t cols : kCols)
      for (int64_t n_tok : kToks) {
        check_kernel(random_floats(size_t(rows * cols), seed),
                     random_floats(size_t(n_tok * cols), seed + 1, -3.0f, 3.0f), rows, cols,
                     n_tok, seed % 2 == 0, seed % 3);
        ++seed;
      }
}

TEST(Bf16Dot, KernelMatchesModelAcrossPanels) {
  MESHLM_REQUIRE_BF16();
  // 2048 columns: x panels of 60 tokens; 130 tokens cross two panel edges.
  check_kernel(random_floats(size_t(23 * 2048), 5), random_floats(size_t(130 * 2048), 6), 23,
               2048, 130, true, 1);
  // Rows in column blocks (> 1536 columns), the last block partial and not a multiple of 32.
  check_kernel(random_floats(size_t(9 * 3073), 7), random_floats(size_t(23 * 3073), 8), 9, 3073,
               23, false, 2);
  check_kernel(random_floats(size_t(8 * 2080), 9), random_floats(size_t(7 * 2080), 10), 8, 2080,
               7, true, 0);
}

// Special values: subnormal and huge f32 activations, inf, NaN, signed zeros, subnormal bf16
// weights, products that overflow or underflow, and sums that cancel to zero or to a subnormal.
TEST(Bf16Dot, KernelMatchesModelSpecialValues) {
  MESHLM_REQUIRE_BF16();
  std::mt19937 rng(42);
  const float specials[] = {0.0f,
                            -0.0f,
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN(),
                            from_bits(0x7f800001u),  // signalling NaN
                            from_bits(0x00000001u),  // smallest subnormal
                            from_bits(0x807fffffu),  // largest subnormal, negative
                            from_bits(0x00800000u),  // smallest normal
                            0x1p-70f,
                            -0x1p-64f,
                            0x1p64f,
                            3.0e38f,
                            -3.0e38f,
                            from_bits(0x7f7fffffu),  // rounds to inf in bf16
                            1.0f,
                            -1.0f,
                            1.00390625f};
  const int n_spec = int(sizeof(specials) / sizeof(specials[0]));
  auto pick = [&](float scale) {
    const uint32_t r = rng() % 8;
    if (r < 3) return specials[rng() % uint32_t(n_spec)];
    // values spread over many exponents, including the subnormal range after products
    const int e = int(rng() % 80) - 40;
    return std::ldexp(float(int32_t(rng() % 2001) - 1000) / 1000.0f, e) * scale;
  };
  for (int rep = 0; rep < 20; ++rep) {
    const int64_t rows = 1 + rep % 7, cols = 1 + int64_t(rng() % 200), n_tok = 1 + rep % 8;
    std::vector<float> wf(size_t(rows * cols)), x(size_t(n_tok * cols));
    for (auto& v : wf) v = pick(1.0f);
    for (auto& v : x) v = pick(rep % 2 ? 1.0f : 0x1p-60f);
    if (rep % 4 == 0)  // sparse specials only: most outputs finite, some tiny
      for (size_t i = 0; i < wf.size(); ++i)
        if (!std::isfinite(wf[i])) wf[i] = 0x1p-100f;
    check_kernel(wf, x, rows, cols, n_tok, rep % 3 == 0, size_t(rep % 3));
  }
  // Sums that cancel exactly (x . w = 0 with nonzero terms) and that land in the subnormal range.
  {
    const int64_t cols = 64;
    std::vector<float> wf(size_t(2 * cols)), x(static_cast<size_t>(cols));
    for (int64_t k = 0; k < cols; ++k) {
      wf[size_t(k)] = k % 2 ? 1.0f : -1.0f;
      wf[size_t(cols + k)] = k % 2 ? 0x1p-63f : -0x1p-63f * 0.5f;
      x[size_t(k)] = 0x1p-63f;
    }
    check_kernel(wf, x, 2, cols, 1, false, 0);
  }
}

// The model against the exact (double) product: within 2^-9 sum |W x| (+ f32 accumulation).
TEST(Bf16Dot, ModelWithinStatedBound) {
  const int64_t rows = 9, cols = 777, n_tok = 3;
  std::vector<float> wf = random_floats(size_t(rows * cols), 11);
  std::vector<float> x = random_floats(size_t(n_tok * cols), 12, -4.0f, 4.0f);
  Weights w(WeightType::BF16, rows, cols, wf, 0);
  RoundedX xm(x.data(), n_tok, cols, true);
  std::vector<float> y(size_t(n_tok * rows));
  bf16::matmul_rows_model(static_cast<const uint16_t*>(w.view().data), rows, cols, xm.p.get(),
                          n_tok, y.data(), nullptr, 0, rows);
  for (int64_t t = 0; t < n_tok; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      double exact = 0, mag = 0;
      for (int64_t k = 0; k < cols; ++k) {
        const double p = double(w.values()[size_t(r * cols + k)]) * x[size_t(t * cols + k)];
        exact += p;
        mag += std::fabs(p);
      }
      EXPECT_NEAR(y[size_t(t * rows + r)], exact, (1.0 / 512 + 1e-5) * mag);
    }
  // bf16_round: nearest even, NaN quieted, subnormals to signed zero.
  EXPECT_EQ(bf16::bf16_round(1.0f), 0x3f80);
  EXPECT_EQ(bf16::bf16_round(from_bits(0x3f808000u)), 0x3f80);  // tie: to even
  EXPECT_EQ(bf16::bf16_round(from_bits(0x3f818000u)), 0x3f82);  // tie: to even (up)
  EXPECT_EQ(bf16::bf16_round(from_bits(0x3f808001u)), 0x3f81);
  EXPECT_EQ(bf16::bf16_round(from_bits(0x807fffffu)), 0x8000);  // subnormal: -0
  EXPECT_EQ(bf16::bf16_round(from_bits(0x7f7fffffu)), 0x7f80);  // overflows to inf
  EXPECT_EQ(bf16::bf16_round(from_bits(0x7f800001u)), 0x7fc0);  // NaN quieted
}

// Through matmul / matmul_multi (kQ8): the path is taken for BF16 weights exactly when
// bf16_dot_active(); it equals the model; and every output is bit-identical alone (n_tok 1, one
// thread) or in a batch of up to 37 tokens, windows of it, on 1-4 threads.
class Bf16DotMatmul : public ::testing::Test {
 protected:
  void TearDown() override { simd_set_bf16_dot(false); }  // the default
};

TEST_F(Bf16DotMatmul, ActiveOnlyWhereSupportedAndSwitchable) {
  simd_set_bf16_dot(false);
  EXPECT_FALSE(bf16_dot_active());
  simd_set_bf16_dot(true);
  EXPECT_EQ(bf16_dot_active(), bf16::cpu_supported() && std::string(simd_target_name()).rfind("AVX3", 0) == 0);
  for (int64_t t : simd_compiled_targets()) {
    simd_force_target(t);
    const std::string name = simd_target_label(t);
    EXPECT_EQ(bf16_dot_active(), bf16::cpu_supported() && name.rfind("AVX3", 0) == 0) << name;
  }
  simd_force_target(0);
}

void check_matmul_invariance(int64_t rows, int64_t cols, int64_t n_tok, uint32_t seed) {
  SCOPED_TRACE(::testing::Message() << "rows=" << rows << " cols=" << cols << " n_tok=" << n_tok);
  Weights w(WeightType::BF16, rows, cols, random_floats(size_t(rows * cols), seed), 1);
  std::vector<float> x = random_floats(size_t(n_tok * cols), seed + 1, -2.0f, 2.0f);
  std::vector<float> bias = random_floats(size_t(rows), seed + 2);
  // The model's answer.
  RoundedX xm(x.data(), n_tok, cols, true);
  std::vector<float> model(size_t(n_tok * rows));
  bf16::matmul_rows_model(static_cast<const uint16_t*>(w.view().data), rows, cols, xm.p.get(),
                          n_tok, model.data(), bias.data(), 0, rows);
  std::vector<float> alone(size_t(n_tok * rows));
  for (int64_t t = 0; t < n_tok; ++t)
    matmul(w.view(), x.data() + t * cols, 1, alone.data() + t * rows, bias.data(), pool_of(1),
           BlockMath::kQ8);
  ASSERT_EQ(0, std::memcmp(alone.data(), model.data(), model.size() * 4)) << "alone vs model";
  for (int threads = 1; threads <= 4; ++threads) {
    std::vector<float> y(alone.size());
    matmul(w.view(), x.data(), n_tok, y.data(), bias.data(), pool_of(threads), BlockMath::kQ8);
    ASSERT_EQ(0, std::memcmp(y.data(), alone.data(), y.size() * 4))
        << "batch of " << n_tok << " differs, threads=" << threads;
    for (int64_t len = 2; len <= 7; ++len)
      for (int64_t t0 = len - 2; t0 + len <= n_tok; t0 += 5) {
        std::vector<float> yw(size_t(len * rows));
        matmul(w.view(), x.data() + t0 * cols, len, yw.data(), bias.data(), pool_of(threads),
               BlockMath::kQ8);
        ASSERT_EQ(0, std::memcmp(yw.data(), alone.data() + t0 * rows, yw.size() * 4))
            << "window t0=" << t0 << " len=" << len << " threads=" << threads;
      }
  }
}

TEST_F(Bf16DotMatmul, BitExactAloneOrBatchedOnOneToFourThreads) {
  MESHLM_REQUIRE_BF16();
  simd_set_bf16_dot(true);
  ASSERT_TRUE(bf16_dot_active());
  check_matmul_invariance(67, 1000, 16, 900);  // 67 rows: odd splits over 2, 3, 4 threads
  check_matmul_invariance(13, 129, 9, 901);    // serial path (small work)
  check_matmul_invariance(41, 2048, 37, 902);
  check_matmul_invariance(130, 1024, 16, 903);
}

// matmul_multi mixing BF16 (dot path) with F32 / F16 (f32 path) and a quantized type.
TEST_F(Bf16DotMatmul, MultiEqualsSeparateCalls) {
  MESHLM_REQUIRE_BF16();
  simd_set_bf16_dot(true);  // off by default (MESHLM_BF16_DOT=1 turns it on)
  ASSERT_TRUE(bf16_dot_active());
  const int64_t cols = 320;
  const int64_t rows[] = {67, 12, 131};
  const WeightType dts[] = {WeightType::BF16, WeightType::F32, WeightType::BF16};
  std::vector<Weights> ws;
  for (int i = 0; i < 3; ++i)
    ws.emplace_back(dts[i], rows[i], cols, random_floats(size_t(rows[i] * cols), 800 + i), 0);
  for (int64_t n_tok : {1, 3, 16}) {
    std::vector<float> x = random_floats(size_t(n_tok * cols), 810 + uint32_t(n_tok), -2, 2);
    for (int threads = 1; threads <= 4; ++threads) {
      std::vector<std::vector<float>> ys(3), alone(3);
      std::vector<MatmulOut> outs;
      for (int i = 0; i < 3; ++i) {
        ys[size_t(i)].assign(size_t(n_tok * rows[i]), NAN);
        alone[size_t(i)].assign(size_t(n_tok * rows[i]), NAN);
        outs.push_back(MatmulOut{ws[size_t(i)].view(), ys[size_t(i)].data(), nullptr});
        matmul(ws[size_t(i)].view(), x.data(), n_tok, alone[size_t(i)].data(), nullptr,
               pool_of(1), BlockMath::kQ8);
      }
      matmul_multi(outs.data(), 3, x.data(), n_tok, pool_of(threads), BlockMath::kQ8);
      for (int i = 0; i < 3; ++i)
        ASSERT_EQ(0, std::memcmp(ys[size_t(i)].data(), alone[size_t(i)].data(),
                                 ys[size_t(i)].size() * 4))
            << "output " << i << " n_tok=" << n_tok << " threads=" << threads;
    }
  }
}

// Turned off, BF16 under kQ8 is the f32 path again: the same bits as kExact.
TEST_F(Bf16DotMatmul, OffGivesTheF32Path) {
  const int64_t rows = 37, cols = 300, n_tok = 5;
  Weights w(WeightType::BF16, rows, cols, random_floats(size_t(rows * cols), 950), 0);
  std::vector<float> x = random_floats(size_t(n_tok * cols), 951);
  std::vector<float> exact(size_t(rows * n_tok)), q8(exact.size());
  simd_set_bf16_dot(false);
  matmul(w.view(), x.data(), n_tok, exact.data(), nullptr, pool_of(2), BlockMath::kExact);
  matmul(w.view(), x.data(), n_tok, q8.data(), nullptr, pool_of(2), BlockMath::kQ8);
  EXPECT_EQ(0, std::memcmp(exact.data(), q8.data(), q8.size() * 4));
}

}  // namespace
}  // namespace meshlm::kernels::test
