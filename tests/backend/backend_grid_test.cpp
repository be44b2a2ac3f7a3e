// The op grid: every backend op x weight format x shape (odd sizes included) x backend (the cpu
// backend once per SIMD target compiled in, the ref backend) against the scalar reference
// kernels (kernels/kernels_ref.h) run on the weights' decoded values. Targets this CPU lacks are
// listed and skipped with a message.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/error.h"
#include "core/half.h"
#include "formats/weight_format.h"
#include "kernels/kernels_quant.h"
#include "kernels/kernels_ref.h"
#include "kernels/kernels_targets.h"

#include "formats/quants.h"

namespace meshlm::backend {
namespace {

struct BackendParam {
  std::string backend;  // "cpu" or "ref"
  int64_t target = 0;   // cpu: the SIMD target forced for the test
};

std::vector<BackendParam> all_params() {
  std::vector<BackendParam> p;
  for (int64_t t : kernels::simd_built_targets()) p.push_back({"cpu", t});
  p.push_back({"ref", 0});
  return p;
}

std::string param_name(const ::testing::TestParamInfo<BackendParam>& info) {
  std::string n = info.param.backend;
  if (info.param.target) n += "_" + kernels::simd_target_label(info.param.target);
  for (auto& c : n)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return n;
}

std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& f : v) f = dist(rng);
  return v;
}

// A weight matrix in format `type` made from random values, and the f32 values it decodes to.
struct TestWeights {
  std::vector<uint8_t> bytes;
  std::vector<float> decoded;
  WeightView view;
};

// Encodes one row of f32 values in `type`. Formats meshlm only reads (no quantizer) get random
// blocks whose scale field is a moderate value instead: the test compares with what they decode
// to, whatever that is.
void encode_row(WeightType type, const float* src, int64_t n, uint8_t* dst, uint32_t seed) {
  switch (type) {
    case WeightType::F32:
      std::memcpy(dst, src, size_t(n) * 4);
      return;
    case WeightType::BF16:
    case WeightType::F16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = type == WeightType::BF16 ? f32_to_bf16(src[i]) : f32_to_f16(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      return;
    default:
      break;
  }
  if (formats::can_quantize(type)) return formats::quantize_row(type, src, n, dst);
  const formats::FormatInfo& f = formats::info(type);
  std::mt19937 rng(seed);
  for (int64_t b = 0; b < n / f.block_elems; ++b) {
    uint8_t* block = dst + size_t(b) * f.block_bytes;
    for (size_t i = 0; i < f.block_bytes; ++i) block[i] = uint8_t(rng());
    if (type == WeightType::MXFP4) {
      block[0] = uint8_t(120 + rng() % 8);  // e8m0 scale 2^-7 .. 2^0
    } else {  // IQ4_NL, IQ4_XS: an f16 scale first
      const uint16_t d = f32_to_f16(0.001f + float(rng() % 1000) * 1e-5f);
      std::memcpy(block, &d, 2);
    }
  }
}

void make_weights(WeightType type, int64_t rows, int64_t cols, uint32_t seed, TestWeights& w) {
  const size_t rb = formats::row_bytes(type, cols);
  w.bytes.assign(size_t(rows) * rb + 64, 0);
  const std::vector<float> src = random_floats(size_t(rows * cols), seed, 0.5f);
  w.decoded.assign(size_t(rows * cols), 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* row = w.bytes.data() + size_t(r) * rb;
    encode_row(type, src.data() + r * cols, cols, row, seed + uint32_t(r));
    formats::dequantize_row(type, row, cols, w.decoded.data() + r * cols);
  }
  w.view = WeightView{w.bytes.data(), type, rows, cols};
}

class BackendGrid : public ::testing::TestWithParam<BackendParam> {
 protected:
  void SetUp() override {
    const BackendParam& p = GetParam();
    if (p.target) {
      if (!kernels::simd_target_supported(p.target))
        GTEST_SKIP() << "this CPU lacks " << kernels::simd_target_label(p.target)
                     << ": its kernels are built but cannot run here";
      kernels::simd_force_target(p.target);
    }
    be_ = create(p.backend, 3);
  }
  void TearDown() override {
    if (GetParam().target) kernels::simd_force_target(0);
  }

  Buffer put(const std::vector<float>& v) {
    Buffer b = be_->alloc(v.size());
    be_->upload(b.data(), v.data(), v.size());
    return b;
  }
  std::vector<float> get(const Buffer& b, size_t n) {
    std::vector<float> v(n);
    be_->download(v.data(), b.data(), n);
    be_->synchronize();
    return v;
  }

  std::unique_ptr<Backend> be_;
};

// |got - want| within tol_rel * scale + tol_abs, where scale bounds the terms summed.
void expect_close(const std::vector<float>& got, const std::vector<float>& want,
                  const std::vector<float>& scale, double tol_rel, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    const double tol = tol_rel * double(scale.empty() ? std::fabs(want[i]) + 1.0 : scale[i]) + 1e-6;
    ASSERT_TRUE(std::isfinite(got[i])) << what << " [" << i << "] = " << got[i];
    ASSERT_NEAR(got[i], want[i], tol) << what << " [" << i << "]";
  }
}

TEST_P(BackendGrid, MatmulEveryFormatAndShape) {
  for (const auto& f : formats::all()) {
    const int64_t be = f.block_elems;
    std::vector<int64_t> col_choices = {be, 3 * be};
    if (be == 1) col_choices = {1, 7, 33, 100, 257};
    for (int64_t cols : col_choices)
      for (int64_t rows : {1, 5, 13})
        for (int64_t n_tok : {1, 2, 5, 17}) {
          const std::string what = std::string(f.name) + " rows " + std::to_string(rows) +
                                   " cols " + std::to_string(cols) + " n_tok " +
                                   std::to_string(n_tok);
          TestWeights w;
          make_weights(f.type, rows, cols, uint32_t(rows * 131 + cols), w);
          const std::vector<float> x = random_floats(size_t(n_tok * cols), uint32_t(n_tok));
          const std::vector<float> bias = random_floats(size_t(rows), 99);
          // Reference: the scalar kernel on an f32 matrix of the decoded values.
          std::vector<float> want(size_t(n_tok * rows)), scale(size_t(n_tok * rows));
          const WeightView ref_view{w.decoded.data(), WeightType::F32, rows, cols};
          kernels::ref::matmul(ref_view, x.data(), n_tok, want.data(), bias.data());
          // The cpu backend multiplies block-quantized weights that have a kernel by activations
          // quantized to 8 bits per block: each x moves by at most amax/254 of its block, so the
          // bound grows by sum_k |W[r,k]| * amax_k / 254 (the 1e-5 below is then f32 rounding).
          const int64_t qblock =
              GetParam().backend == "cpu" ? kernels::quant::activation_block(f.type) : 0;
          for (int64_t t = 0; t < n_tok; ++t)
            for (int64_t r = 0; r < rows; ++r) {
              double s = std::fabs(bias[size_t(r)]), q8 = 0;
              for (int64_t k = 0; k < cols; ++k)
                s += std::fabs(double(w.decoded[size_t(r * cols + k)]) * x[size_t(t * cols + k)]);
              for (int64_t b0 = 0; qblock > 0 && b0 < cols; b0 += qblock) {
                double amax = 0;
                for (int64_t k = b0; k < b0 + qblock; ++k)
                  amax = std::max(amax, double(std::fabs(x[size_t(t * cols + k)])));
                for (int64_t k = b0; k < b0 + qblock; ++k)
                  q8 += std::fabs(double(w.decoded[size_t(r * cols + k)])) * amax / 254.0;
              }
              scale[size_t(t * rows + r)] = float(s + q8 / 1e-5);
            }
          Buffer xb = put(x), bb = put(bias), yb = be_->alloc(size_t(n_tok * rows));
          be_->matmul(be_->import_weights(w.view), xb.data(), n_tok, yb.data(), bb.data());
          expect_close(get(yb, size_t(n_tok * rows)), want, scale, 1e-5, "matmul " + what);
          // Three outputs over one input (q/k/v): each equals its single matmul bit for bit.
          Buffer y1 = be_->alloc(size_t(n_tok * rows)), y2 = be_->alloc(size_t(n_tok * rows)),
                 y3 = be_->alloc(size_t(n_tok * rows));
          const MatmulOut outs[] = {{w.view, y1.data(), nullptr},
                                    {w.view, y2.data(), bb.data()},
                                    {w.view, y3.data(), nullptr}};
          be_->matmul(outs, xb.data(), n_tok);
          EXPECT_EQ(get(y2, size_t(n_tok * rows)), get(yb, size_t(n_tok * rows))) << what;
          EXPECT_EQ(get(y1, size_t(n_tok * rows)), get(y3, size_t(n_tok * rows))) << what;
        }
  }
}

TEST_P(BackendGrid, EmbedEveryFormat) {
  for (const auto& f : formats::all()) {
    const int64_t cols = f.block_elems == 1 ? 37 : 2 * f.block_elems, rows = 9;
    TestWeights w;
    make_weights(f.type, rows, cols, 5, w);
    const std::vector<int32_t> ids = {8, 0, 3, 3};
    Buffer out = be_->alloc(ids.size() * size_t(cols));
    be_->embed(be_->import_weights(w.view), ids.data(), int64_t(ids.size()), out.data());
    const std::vector<float> got = get(out, ids.size() * size_t(cols));
    for (size_t i = 0; i < ids.size(); ++i)
      for (int64_t c = 0; c < cols; ++c)
        ASSERT_EQ(got[i * size_t(cols) + size_t(c)], w.decoded[size_t(ids[i] * cols + c)])
            << f.name << " id " << ids[i] << " col " << c;
  }
}

TEST_P(BackendGrid, RmsNorm) {
  for (int64_t rows : {1, 3})
    for (int64_t n : {1, 7, 64, 130}) {
      const auto x = random_floats(size_t(rows * n), uint32_t(n), 2.0f);
      const auto wt = random_floats(size_t(n), 3);
      std::vector<float> want(x.size());
      for (int64_t r = 0; r < rows; ++r)
        kernels::ref::rmsnorm(x.data() + r * n, wt.data(), n, 1e-6f, want.data() + r * n);
      Buffer xb = put(x), wb = put(wt), ob = be_->alloc(x.size());
      be_->rmsnorm(xb.data(), wb.data(), rows, n, 1e-6f, ob.data());
      expect_close(get(ob, x.size()), want, {}, 1e-5, "rmsnorm n " + std::to_string(n));
      be_->rmsnorm(xb.data(), wb.data(), rows, n, 1e-6f, xb.data());  // in place
      expect_close(get(xb, x.size()), want, {}, 1e-5, "rmsnorm in place n " + std::to_string(n));
    }
}

TEST_P(BackendGrid, Rope) {
  for (int64_t n_tok : {1, 3})
    for (int64_t heads : {1, 3})
      for (int64_t hd : {2, 8, 64, 130}) {
        auto x = random_floats(size_t(n_tok * heads * hd), uint32_t(hd));
        std::vector<float> inv(size_t(hd / 2));
        for (int64_t i = 0; i < hd / 2; ++i)
          inv[size_t(i)] = float(std::pow(10000.0, -2.0 * double(i) / double(hd)));
        const std::vector<int64_t> pos = {0, 17, 4095};
        std::vector<float> want = x;
        for (int64_t t = 0; t < n_tok; ++t)
          kernels::ref::rope(want.data() + t * heads * hd, heads, hd, pos[size_t(t)], inv.data());
        Buffer xb = put(x), ib = put(inv);
        be_->rope(xb.data(), n_tok, heads, hd, pos.data(), ib.data(), RopeStyle::HalfSplit);
        expect_close(get(xb, x.size()), want, {}, 1e-4, "rope hd " + std::to_string(hd));
        // Interleaved pairs: the same rotation of x with each head's values permuted from
        // (i, i + hd/2) to (2i, 2i + 1).
        auto interleave = [&](const std::vector<float>& v) {
          std::vector<float> o(v.size());
          for (int64_t r = 0; r < n_tok * heads; ++r)
            for (int64_t i = 0; i < hd / 2; ++i) {
              o[size_t(r * hd + 2 * i)] = v[size_t(r * hd + i)];
              o[size_t(r * hd + 2 * i + 1)] = v[size_t(r * hd + hd / 2 + i)];
            }
          return o;
        };
        Buffer yb = put(interleave(x));
        be_->rope(yb.data(), n_tok, heads, hd, pos.data(), ib.data(), RopeStyle::Interleaved);
        expect_close(get(yb, x.size()), interleave(want), {}, 1e-4,
                     "interleaved rope hd " + std::to_string(hd));
      }
}

TEST_P(BackendGrid, AttentionGroupedHeadsRaggedSequences) {
  struct Heads {
    int64_t q, kv;
  };
  for (Heads h : {Heads{1, 1}, Heads{4, 2}, Heads{6, 3}})
    for (int64_t hd : {4, 64, 72}) {
      const int64_t kv_stride = h.kv * hd;
      // Three tokens of two sequences: 1, 7 and 33 keys visible.
      const std::vector<int64_t> n_keys = {1, 7, 33};
      const int64_t n_tok = int64_t(n_keys.size());
      const auto q = random_floats(size_t(n_tok * h.q * hd), uint32_t(hd));
      const auto k = random_floats(size_t(33 * kv_stride), 11);
      const auto v = random_floats(size_t(33 * kv_stride), 12);
      const float scale = 1.0f / std::sqrt(float(hd));
      std::vector<float> want(q.size());
      for (int64_t t = 0; t < n_tok; ++t)
        for (int64_t hh = 0; hh < h.q; ++hh) {
          const int64_t kvh = hh / (h.q / h.kv);
          kernels::ref::attention_head(q.data() + (t * h.q + hh) * hd, k.data() + kvh * hd,
                                       v.data() + kvh * hd, kv_stride, n_keys[size_t(t)], hd,
                                       scale, want.data() + (t * h.q + hh) * hd);
        }
      Buffer qb = put(q), kb = put(k), vb = put(v), ob = be_->alloc(q.size());
      std::vector<AttentionKeys> keys;
      for (int64_t nk : n_keys) keys.push_back({kb.data(), vb.data(), nk});
      be_->attention(qb.data(), n_tok, keys.data(), AttentionShape{h.q, h.kv, hd, scale},
                     ob.data());
      expect_close(get(ob, q.size()), want, {}, 1e-5,
                   "attention heads " + std::to_string(h.q) + "/" + std::to_string(h.kv) +
                       " hd " + std::to_string(hd));
    }
}

TEST_P(BackendGrid, ElementwiseOpsAndCopies) {
  for (int64_t n : {1, 7, 64, 1001}) {
    const auto a = random_floats(size_t(n), 1, 3.0f), b = random_floats(size_t(n), 2);
    std::vector<float> want(static_cast<size_t>(n));
    kernels::ref::silu_mul(a.data(), b.data(), n, want.data());
    Buffer ab = put(a), bb = put(b), ob = be_->alloc(size_t(n));
    be_->silu_mul(ab.data(), bb.data(), n, ob.data());
    expect_close(get(ob, size_t(n)), want, {}, 1e-5, "silu_mul n " + std::to_string(n));
    for (int64_t i = 0; i < n; ++i) want[size_t(i)] = a[size_t(i)] + b[size_t(i)];
    be_->add(ab.data(), bb.data(), n);
    EXPECT_EQ(get(ab, size_t(n)), want) << "add n " << n;  // one rounding: exact
    // add_scaled: the product, then the sum, each rounded (no fused multiply-add).
    const float scale = 0.3125f + 1e-3f * float(n);
    for (int64_t i = 0; i < n; ++i) {
      volatile float p = scale * b[size_t(i)];
      want[size_t(i)] += p;
    }
    be_->add_scaled(ab.data(), bb.data(), scale, n);
    EXPECT_EQ(get(ab, size_t(n)), want) << "add_scaled n " << n;
    be_->copy(ob.data(), bb.data(), size_t(n));
    EXPECT_EQ(get(ob, size_t(n)), b) << "copy n " << n;
  }
  // Reserved memory reads as zeros until written.
  Buffer r = be_->reserve(1 << 20);
  ASSERT_EQ(r.size(), size_t(1) << 20);
  const auto z = get(r, 16);
  for (float f : z) EXPECT_EQ(f, 0.0f);
}

INSTANTIATE_TEST_SUITE_P(Backends, BackendGrid, ::testing::ValuesIn(all_params()), param_name);

TEST(Backend, UnknownNameListsTheChoices) {
  try {
    create("cuda", 1);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("choices: cpu, ref"), std::string::npos) << e.what();
  }
  EXPECT_THROW(create("cpu", 0), Error);
  EXPECT_EQ(create("ref", 4)->threads(), 1);
  EXPECT_EQ(create("cpu", 2)->threads(), 2);
}

}  // namespace
}  // namespace meshlm::backend
