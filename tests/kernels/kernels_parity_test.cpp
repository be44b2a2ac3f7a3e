// Element-wise and attention kernels vs the scalar reference, once per SIMD target, over odd sizes
// and misaligned pointers. Stated tolerances are next to each test.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/error.h"
#include "formats/quants.h"
#include "formats/weight_format.h"
#include "kernels/kernels_ref.h"
#include "kernels_test_util.h"

namespace meshlm::kernels::test {
namespace {

const int64_t kSizes[] = {1, 3, 7, 8, 17, 63, 65, 127, 129, 1000, 2048};

// |a - b| <= rel * |b| + abs_tol, element by element.
void expect_close(const float* got, const float* want, int64_t n, double rel, double abs_tol) {
  for (int64_t i = 0; i < n; ++i)
    ASSERT_NEAR(got[i], want[i], rel * std::fabs(want[i]) + abs_tol) << "i=" << i << " of " << n;
}

using Elementwise = PerTarget;

TEST_P(Elementwise, RmsNorm) {  // tolerance: 2e-6 relative (f64 sum of squares, as the reference)
  for (int64_t n : kSizes)
    for (size_t mis : {size_t(0), size_t(1)}) {
      SCOPED_TRACE(::testing::Message() << "n=" << n << " misalign=" << mis);
      FloatBuf x(random_floats(size_t(n), uint32_t(n), -3.0f, 3.0f), mis);
      FloatBuf w(random_floats(size_t(n), uint32_t(n + 7), 0.5f, 1.5f), mis + 2);
      std::vector<float> want(static_cast<size_t>(n)), got(static_cast<size_t>(n));
      ref::rmsnorm(x.data(), w.data(), n, 1e-6f, want.data());
      rmsnorm(x.data(), w.data(), n, 1e-6f, got.data());
      expect_close(got.data(), want.data(), n, 2e-6, 1e-30);
      rmsnorm(x.data(), w.data(), n, 1e-6f, x.data());  // in place
      expect_close(x.data(), want.data(), n, 2e-6, 1e-30);
    }
}

TEST_P(Elementwise, Rope) {  // tolerance: 1e-6 of the pair's magnitude
  for (int64_t head_dim : {2, 6, 7, 14, 64, 128, 130, 258, 514})
    for (int64_t n_heads : {1, 3})
      for (int64_t pos : {0, 1, 17, 4095, 32767}) {
        SCOPED_TRACE(::testing::Message()
                     << "head_dim=" << head_dim << " heads=" << n_heads << " pos=" << pos);
        std::vector<float> inv_freq(static_cast<size_t>(head_dim / 2));
        for (size_t i = 0; i < inv_freq.size(); ++i)
          inv_freq[i] = float(std::pow(1e6, -2.0 * double(i) / double(head_dim)));
        std::vector<float> init = random_floats(size_t(n_heads * head_dim), uint32_t(pos + 1));
        FloatBuf got(init, 1);
        std::vector<float> want = init;
        ref::rope(want.data(), n_heads, head_dim, pos, inv_freq.data());
        rope(got.data(), n_heads, head_dim, pos, inv_freq.data());
        expect_close(got.data(), want.data(), n_heads * head_dim, 0, 2e-6);
      }
}

TEST_P(Elementwise, Softmax) {  // tolerance: 1e-6 relative (contrib Exp, f64 denominator)
  std::vector<int64_t> sizes(std::begin(kSizes), std::end(kSizes));
  sizes.push_back(8192);
  sizes.push_back(151936);
  for (int64_t n : sizes)
    for (float range : {1.0f, 30.0f}) {
      SCOPED_TRACE(::testing::Message() << "n=" << n << " range=" << range);
      std::vector<float> init = random_floats(size_t(n), uint32_t(n * 3), -range, range);
      FloatBuf got(init, size_t(n % 3));
      std::vector<float> want = init;
      ref::softmax(want.data(), n);
      softmax(got.data(), n);
      expect_close(got.data(), want.data(), n, 1e-6, 1e-37);
    }
}

TEST_P(Elementwise, SoftmaxExtremes) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x = {-inf, 0.0f, -inf, -200.0f, 80.0f, 80.0f, -inf, 3.0f, -90.0f};
  std::vector<float> want = x;
  ref::softmax(want.data(), int64_t(want.size()));
  softmax(x.data(), int64_t(x.size()));
  expect_close(x.data(), want.data(), int64_t(x.size()), 1e-6, 1e-37);
}

TEST_P(Elementwise, SiluMul) {  // tolerance: 1e-6 relative
  for (int64_t n : kSizes) {
    SCOPED_TRACE(::testing::Message() << "n=" << n);
    std::vector<float> g0 = random_floats(size_t(n), uint32_t(n), -12.0f, 12.0f);
    if (n > 5) {
      g0[0] = -100.0f;
      g0[1] = 100.0f;
      g0[2] = -87.0f;
      g0[3] = 0.0f;
      g0[4] = -89.0f;
    }
    FloatBuf g(g0, 1);
    FloatBuf u(random_floats(size_t(n), uint32_t(n + 1), -2.0f, 2.0f), 3);
    std::vector<float> want(static_cast<size_t>(n)), got(static_cast<size_t>(n));
    ref::silu_mul(g.data(), u.data(), n, want.data());
    silu_mul(g.data(), u.data(), n, got.data());
    expect_close(got.data(), want.data(), n, 1e-6, 1e-37);
    silu_mul(g.data(), u.data(), n, g.data());  // out aliases gate
    expect_close(g.data(), want.data(), n, 1e-6, 1e-37);
  }
}

TEST_P(Elementwise, AddInplaceExact) {
  for (int64_t n : kSizes) {
    std::vector<float> a = random_floats(size_t(n), 1), b = random_floats(size_t(n), 2);
    FloatBuf got(a, 1);
    add_inplace(got.data(), b.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got.data()[i], a[size_t(i)] + b[size_t(i)]);
  }
}

TEST_P(Elementwise, EmbedRowExact) {
  for (WeightType dt : kAllDTypes)
    for (int64_t cols : {1, 3, 17, 65, 1000}) {
      SCOPED_TRACE(::testing::Message() << formats::name(dt) << " cols=" << cols);
      std::vector<float> v = random_floats(size_t(5 * cols), uint32_t(cols), -70000.0f, 70000.0f);
      v[0] = std::numeric_limits<float>::infinity();
      if (cols > 2) v[size_t(cols + 1)] = 3e-7f;  // f16 subnormal
      Weights w(dt, 5, cols, v, size_t(cols % 3));
      std::vector<float> got(static_cast<size_t>(cols)), want(static_cast<size_t>(cols));
      for (int64_t row : {0, 1, 4}) {
        embed_row(w.view(), row, got.data());
        ref::embed_row(w.view(), row, want.data());
        ASSERT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)));
      }
    }
}

// Tolerance: 2e-5 * max |v| (the output is a convex combination of the values).
TEST_P(Elementwise, AttentionHead) {
  for (int64_t head_dim : {1, 3, 8, 17, 64, 128})
    for (int64_t n_keys : {1, 2, 3, 5, 17, 64, 65, 1000, 8192}) {
      if (n_keys == 8192 && head_dim != 128) continue;
      SCOPED_TRACE(::testing::Message() << "head_dim=" << head_dim << " n_keys=" << n_keys);
      const int64_t stride = head_dim * 2 + 3;  // interleaved heads, odd stride: misaligned rows
      FloatBuf q(random_floats(size_t(head_dim), 1, -2.0f, 2.0f), 1);
      std::vector<float> k = random_floats(size_t(n_keys * stride), 2, -2.0f, 2.0f);
      std::vector<float> v = random_floats(size_t(n_keys * stride), 3, -1.0f, 1.0f);
      const float scale = 1.0f / std::sqrt(float(head_dim));
      std::vector<float> got(size_t(head_dim), NAN), want(static_cast<size_t>(head_dim));
      std::vector<float> scratch(static_cast<size_t>(n_keys));
      ref::attention_head(q.data(), k.data() + 1, v.data() + 2, stride, n_keys, head_dim, scale,
                          want.data());
      attention_head(q.data(), k.data() + 1, v.data() + 2, stride, n_keys, head_dim, scale,
                     got.data(), scratch.data());
      expect_close(got.data(), want.data(), head_dim, 0, 2e-5);
    }
}

// Several queries over the same keys (GQA heads of a run of tokens): every output bit-identical
// to attention_head's for that query alone, whatever the mix of key counts.
TEST_P(Elementwise, AttentionHeadsEqualsOneQueryAtATime) {
  for (int64_t head_dim : {1, 3, 8, 17, 64, 72, 128})
    for (int64_t nq : {1, 2, 3, 5, 8})
      for (int64_t base : {0, 1, 6, 63, 64, 131}) {
        SCOPED_TRACE(::testing::Message() << "head_dim=" << head_dim << " nq=" << nq << " base=" << base);
        const int64_t stride = head_dim * 2 + 3;
        std::vector<int64_t> n_keys;
        for (int64_t i = 0; i < nq; ++i)  // ascending runs, a repeat, and one that sees less
          n_keys.push_back(std::max<int64_t>(0, base + (i % 3 == 2 ? -2 : i / 2)));
        const int64_t longest = *std::max_element(n_keys.begin(), n_keys.end()) + 1;
        std::vector<float> q = random_floats(size_t(nq * head_dim), 1, -2.0f, 2.0f);
        std::vector<float> k = random_floats(size_t(longest * stride), 2, -2.0f, 2.0f);
        std::vector<float> v = random_floats(size_t(longest * stride), 3, -1.0f, 1.0f);
        const float scale = 1.0f / std::sqrt(float(head_dim));
        std::vector<float> got(size_t(nq * head_dim), NAN), want(size_t(nq * head_dim), NAN);
        std::vector<float> scratch(size_t(nq * longest));
        std::vector<const float*> qs;
        std::vector<float*> outs;
        for (int64_t i = 0; i < nq; ++i) {
          qs.push_back(q.data() + i * head_dim);
          outs.push_back(got.data() + i * head_dim);
          attention_head(q.data() + i * head_dim, k.data() + 1, v.data() + 2, stride, n_keys[size_t(i)],
                         head_dim, scale, want.data() + i * head_dim, scratch.data());
        }
        attention_heads(qs.data(), outs.data(), n_keys.data(), nq, k.data() + 1, v.data() + 2, stride,
                        head_dim, scale, scratch.data(), longest);
        ASSERT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)));
      }
}

// A typed KV cache (bf16, f16, q8_0): rows of two KV heads stored as KvCache stores them
// (formats::quantize_row, rows padded to 4 bytes, here 4 bytes off alignment). The kernels read
// each row decoded exactly, so their output is bit-identical to the f32 kernel's over the rows
// formats::dequantize_row gives; attention_heads stays bit-identical to attention_head.
TEST_P(Elementwise, TypedKvCacheEqualsF32OverDecodedRows) {
  for (WeightType type : {WeightType::BF16, WeightType::F16, WeightType::Q8_0})
    for (int64_t head_dim : {3, 17, 32, 64, 96, 128}) {
      const int64_t block = formats::info(type).block_elems;
      if (head_dim % block) continue;
      const int64_t kv_dim = 2 * head_dim;
      const int64_t rb = (int64_t(formats::row_bytes(type, kv_dim)) + 3) / 4 * 4;
      for (int64_t n_keys : {1, 5, 64, 67, 300}) {
        SCOPED_TRACE(::testing::Message() << formats::name(type) << " head_dim=" << head_dim
                                          << " n_keys=" << n_keys);
        const std::vector<float> kf = random_floats(size_t(n_keys * kv_dim), 2, -2.0f, 2.0f);
        const std::vector<float> vf = random_floats(size_t(n_keys * kv_dim), 3, -1.0f, 1.0f);
        std::vector<uint8_t> kq(size_t(n_keys * rb + 4)), vq(kq.size());
        std::vector<float> kd(kf.size()), vd(vf.size());  // decoded
        for (int64_t j = 0; j < n_keys; ++j) {
          formats::quantize_row(type, kf.data() + j * kv_dim, kv_dim, kq.data() + 4 + j * rb);
          formats::quantize_row(type, vf.data() + j * kv_dim, kv_dim, vq.data() + 4 + j * rb);
          formats::dequantize_row(type, kq.data() + 4 + j * rb, kv_dim, kd.data() + j * kv_dim);
          formats::dequantize_row(type, vq.data() + 4 + j * rb, kv_dim, vd.data() + j * kv_dim);
        }
        const int64_t nq = 6;  // GQA: six query heads of KV head 1, at different lengths
        std::vector<float> q = random_floats(size_t(nq * head_dim), 1, -2.0f, 2.0f);
        std::vector<int64_t> seen;
        for (int64_t i = 0; i < nq; ++i) seen.push_back(std::max<int64_t>(1, n_keys - i % 3));
        const float scale = 1.0f / std::sqrt(float(head_dim));
        const size_t hb = formats::row_bytes(type, head_dim);  // head 1's offset in a row
        std::vector<float> want(size_t(nq * head_dim)), one(want.size(), NAN), many(want.size(), NAN);
        std::vector<float> scratch(size_t(nq * n_keys));
        std::vector<const float*> qs;
        std::vector<float*> outs;
        for (int64_t i = 0; i < nq; ++i) {
          const float* qi = q.data() + i * head_dim;
          attention_head(qi, kd.data() + head_dim, vd.data() + head_dim, kv_dim, seen[size_t(i)],
                         head_dim, scale, want.data() + i * head_dim, scratch.data());
          attention_head(qi, kq.data() + 4 + hb, vq.data() + 4 + hb, rb, type, seen[size_t(i)],
                         head_dim, scale, one.data() + i * head_dim, scratch.data());
          qs.push_back(qi);
          outs.push_back(many.data() + i * head_dim);
        }
        attention_heads(qs.data(), outs.data(), seen.data(), nq, kq.data() + 4 + hb,
                        vq.data() + 4 + hb, rb, type, head_dim, scale, scratch.data(), n_keys);
        ASSERT_EQ(0, std::memcmp(one.data(), want.data(), want.size() * sizeof(float)));
        ASSERT_EQ(0, std::memcmp(many.data(), want.data(), want.size() * sizeof(float)));
      }
    }
}

TEST_P(Elementwise, TargetName) {
  EXPECT_EQ(simd_target_label(GetParam()), simd_target_name());
}

MESHLM_INSTANTIATE_PER_TARGET(Elementwise);

TEST(KernelsErrors, EmbedRowOutOfRange) {
  float data[6] = {};
  float dst[3];
  const MatView w{data, WeightType::F32, 2, 3};
  EXPECT_THROW(embed_row(w, 2, dst), Error);
  EXPECT_THROW(embed_row(w, -1, dst), Error);
}

TEST(KernelsErrors, AttentionRejectsTypesThatAreNotCacheTypes) {
  float q[32] = {}, out[32], scratch[1];
  uint8_t kv[64] = {};
  EXPECT_THROW(attention_head(q, kv, kv, 18, WeightType::Q4_0, 1, 32, 1.0f, out, scratch), Error);
  EXPECT_THROW(attention_head(q, kv, kv, 34, WeightType::Q8_0, 1, 16, 1.0f, out, scratch), Error);
  EXPECT_NO_THROW(attention_head(q, kv, kv, 34, WeightType::Q8_0, 1, 32, 1.0f, out, scratch));
  EXPECT_FALSE(kv_type_supported(WeightType::Q4_K));
}

TEST(KernelsTargets, BestTargetIsChosenByDefault) {
  auto targets = simd_compiled_targets();
  ASSERT_FALSE(targets.empty());
  EXPECT_EQ(simd_target_label(targets.front()), simd_target_name());
}

}  // namespace
}  // namespace meshlm::kernels::test
