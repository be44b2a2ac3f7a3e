// matmul: parity with the scalar reference (every dtype, odd shapes, misaligned data, 1-4 threads,
// every SIMD target) and the determinism contract of kernels.h, checked bit for bit: output (t, r)
// does not depend on n_tok, on which other tokens share the batch, or on the thread count.
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "kernels/kernels_ref.h"
#include "kernels_test_util.h"

namespace meshlm::kernels::test {
namespace {

// Stated tolerance: |y - y_ref| <= kMatmulRelTol * sum_k |W[r,k] * x[t,k]| (+ |bias|).
// f32 accumulation in vector lanes; observed errors are ~1e-7 of that sum.
constexpr double kMatmulRelTol = 1e-5;

void check_matmul(WeightType dtype, int64_t rows, int64_t cols, int64_t n_tok, int n_threads,
                  bool with_bias, size_t misalign, uint32_t seed) {
  SCOPED_TRACE(::testing::Message()
               << formats::name(dtype) << " rows=" << rows << " cols=" << cols << " n_tok=" << n_tok
               << " threads=" << n_threads << " bias=" << with_bias << " misalign=" << misalign);
  Weights w(dtype, rows, cols, random_floats(size_t(rows * cols), seed), misalign);
  FloatBuf x(random_floats(size_t(n_tok * cols), seed + 1), misalign);
  std::vector<float> bias = random_floats(size_t(rows), seed + 2);
  const float* b = with_bias ? bias.data() : nullptr;
  std::vector<float> y(size_t(n_tok * rows), NAN), y_ref(y.size());
  matmul(w.view(), x.data(), n_tok, y.data(), b, pool_of(n_threads));
  ref::matmul(w.view(), x.data(), n_tok, y_ref.data(), b);
  const auto& wv = w.values();
  for (int64_t t = 0; t < n_tok; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      double mag = b ? std::fabs(b[r]) : 0.0;
      for (int64_t k = 0; k < cols; ++k)
        mag += std::fabs(double(wv[size_t(r * cols + k)]) * x.data()[t * cols + k]);
      const size_t i = size_t(t * rows + r);
      ASSERT_NEAR(y[i], y_ref[i], kMatmulRelTol * mag + 1e-30) << "t=" << t << " r=" << r;
    }
}

using MatmulParity = PerTarget;

TEST_P(MatmulParity, OddShapesAllDTypes) {
  const int64_t kRows[] = {1, 3, 7, 17, 65};
  const int64_t kCols[] = {1, 3, 7, 17, 63, 65, 127, 129, 1000, 2048};
  uint32_t seed = 1;
  for (WeightType dt : kAllDTypes)
    for (int64_t rows : kRows)
      for (int64_t cols : kCols)
        for (int64_t n_tok : {int64_t(1), int64_t(6)}) {
          const int threads = int(1 + seed % 4);
          check_matmul(dt, rows, cols, n_tok, threads, seed % 2 == 0, seed % 3, seed);
          ++seed;
        }
}

TEST_P(MatmulParity, ThreadCountsAndMisalignment) {
  for (WeightType dt : kAllDTypes)
    for (int threads = 1; threads <= 4; ++threads)
      for (size_t misalign : {size_t(0), size_t(1), size_t(3)}) {
        check_matmul(dt, 129, 1000, 1, threads, true, misalign, uint32_t(threads * 10 + misalign));
        check_matmul(dt, 67, 127, 7, threads, false, misalign, uint32_t(threads * 20 + misalign));
      }
}

TEST_P(MatmulParity, LargerThanOnePanel) {
  // 2048 columns: x panels of 32 tokens; 37 tokens cross a panel edge.
  check_matmul(WeightType::BF16, 31, 2048, 37, 2, true, 1, 99);
}

TEST_P(MatmulParity, ZeroColumnsGivesBias) {
  std::vector<float> bias = {1.5f, -2.0f, 3.0f};
  std::vector<float> y(6, NAN);
  const float x[1] = {0.0f};
  matmul(MatView{x, WeightType::F32, 3, 0}, x, 2, y.data(), bias.data(), pool_of(2));
  EXPECT_EQ(y, (std::vector<float>{1.5f, -2.0f, 3.0f, 1.5f, -2.0f, 3.0f}));
}

// Every output must be bit-identical to the one computed alone (n_tok = 1, one thread).
void check_invariance(WeightType dtype, int64_t rows, int64_t cols, int64_t n_tok, uint32_t seed) {
  SCOPED_TRACE(::testing::Message()
               << formats::name(dtype) << " rows=" << rows << " cols=" << cols << " n_tok=" << n_tok);
  Weights w(dtype, rows, cols, random_floats(size_t(rows * cols), seed), 1);
  std::vector<float> x = random_floats(size_t(n_tok * cols), seed + 1, -2.0f, 2.0f);
  std::vector<float> bias = random_floats(size_t(rows), seed + 2);
  std::vector<float> alone(size_t(n_tok * rows));
  for (int64_t t = 0; t < n_tok; ++t)
    matmul(w.view(), x.data() + t * cols, 1, alone.data() + t * rows, bias.data(), pool_of(1));
  for (int threads = 1; threads <= 4; ++threads) {
    // Whole batch, then windows of 2..5 tokens at various offsets (tile edges land elsewhere).
    std::vector<float> y(alone.size());
    matmul(w.view(), x.data(), n_tok, y.data(), bias.data(), pool_of(threads));
    ASSERT_EQ(0, std::memcmp(y.data(), alone.data(), y.size() * sizeof(float)))
        << "batch of " << n_tok << " differs, threads=" << threads;
    for (int64_t len = 2; len <= 5; ++len)
      for (int64_t t0 = len - 2; t0 + len <= n_tok; t0 += 4) {
        std::vector<float> yw(size_t(len * rows));
        matmul(w.view(), x.data() + t0 * cols, len, yw.data(), bias.data(), pool_of(threads));
        ASSERT_EQ(0, std::memcmp(yw.data(), alone.data() + t0 * rows, yw.size() * sizeof(float)))
            << "window t0=" << t0 << " len=" << len << " threads=" << threads;
      }
  }
}

using MatmulDeterminism = PerTarget;

TEST_P(MatmulDeterminism, BitExactAcrossBatchAndThreads) {
  uint32_t seed = 500;
  for (WeightType dt : kAllDTypes) {
    check_invariance(dt, 67, 1000, 11, seed++);  // 67 rows: odd splits over 2, 3, 4 threads
    check_invariance(dt, 13, 129, 9, seed++);    // serial path (small work)
    check_invariance(dt, 41, 2048, 37, seed++);  // crosses a 32-token panel
  }
}

// matmul_multi: each output bit-identical to its own matmul call, whatever the mix of shapes,
// dtypes and biases, the token count and the thread count (chunks never straddle two outputs).
using MatmulMulti = PerTarget;

TEST_P(MatmulMulti, EachOutputEqualsItsOwnMatmul) {
  const int64_t cols = 300;
  // Rows chosen so that chunk edges fall inside and at the ends of the outputs; one empty.
  const int64_t rows[] = {67, 12, 0, 131};
  const WeightType dts[] = {WeightType::BF16, WeightType::F32, WeightType::F16, WeightType::BF16};
  std::vector<Weights> ws;
  std::vector<std::vector<float>> biases;
  for (int i = 0; i < 4; ++i) {
    ws.emplace_back(dts[i], rows[i], cols, random_floats(size_t(rows[i] * cols), 700 + i), 0);
    biases.push_back(random_floats(size_t(rows[i]), 710 + i));
  }
  for (int64_t n_tok : {1, 2, 5, 16}) {
    std::vector<float> x = random_floats(size_t(n_tok * cols), 720 + uint32_t(n_tok), -2, 2);
    for (int threads = 1; threads <= 4; ++threads) {
      SCOPED_TRACE(::testing::Message() << "n_tok=" << n_tok << " threads=" << threads);
      std::vector<std::vector<float>> ys(4), alone(4);
      std::vector<MatmulOut> outs;
      for (int i = 0; i < 4; ++i) {
        ys[size_t(i)].assign(size_t(n_tok * rows[i]), NAN);
        alone[size_t(i)].assign(size_t(n_tok * rows[i]), NAN);
        const float* b = i % 2 == 0 ? biases[size_t(i)].data() : nullptr;
        outs.push_back(MatmulOut{ws[size_t(i)].view(), ys[size_t(i)].data(), b});
        matmul(ws[size_t(i)].view(), x.data(), n_tok, alone[size_t(i)].data(), b, pool_of(1));
      }
      matmul_multi(outs.data(), int(outs.size()), x.data(), n_tok, pool_of(threads));
      for (int i = 0; i < 4; ++i) {
        ASSERT_EQ(ys[size_t(i)].size(), alone[size_t(i)].size());
        if (ys[size_t(i)].empty()) continue;  // the 0-row output (memcmp of null is UB)
        ASSERT_EQ(0, std::memcmp(ys[size_t(i)].data(), alone[size_t(i)].data(),
                                 ys[size_t(i)].size() * sizeof(float)))
            << "output " << i;
      }
    }
  }
}

MESHLM_INSTANTIATE_PER_TARGET(MatmulParity);
MESHLM_INSTANTIATE_PER_TARGET(MatmulDeterminism);
MESHLM_INSTANTIATE_PER_TARGET(MatmulMulti);

TEST(MatmulErrors, BadInputsThrow) {
  float x[4] = {}, y[4] = {};
  EXPECT_THROW(matmul(MatView{x, WeightType(7), 2, 2}, x, 1, y, nullptr, pool_of(1)), Error);
  EXPECT_THROW(matmul(MatView{x, WeightType::F32, -1, 2}, x, 1, y, nullptr, pool_of(1)), Error);
  EXPECT_THROW(matmul(MatView{nullptr, WeightType::F32, 2, 2}, x, 1, y, nullptr, pool_of(1)), Error);
  EXPECT_THROW(matmul(MatView{x, WeightType::F32, 2, 2}, x, -1, y, nullptr, pool_of(1)), Error);
  // matmul_multi: the inputs must have one width.
  const MatmulOut mixed[] = {{MatView{x, WeightType::F32, 1, 2}, y, nullptr},
                             {MatView{x, WeightType::F32, 1, 4}, y + 2, nullptr}};
  EXPECT_THROW(matmul_multi(mixed, 2, x, 1, pool_of(2)), Error);
  EXPECT_THROW(matmul_multi(nullptr, 1, x, 1, pool_of(1)), Error);
}

}  // namespace
}  // namespace meshlm::kernels::test
