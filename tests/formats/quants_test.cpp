// Block quantization (formats/quants.h): every decoder bit for bit against gguf-py's (reference
// vectors in data/quants, made by scripts/gen_quant_vectors.py), the Q4_0..Q8_0 encoders byte for
// byte against gguf-py's and the Q2_K..Q6_K encoders against ggml's reference quantizers, and the
// round-trip error of every encoder.
#include "formats/quants.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "formats/weight_format.h"

namespace meshlm {
namespace {

namespace fs = std::filesystem;
using formats::FormatInfo;

const fs::path kDataDir = fs::path(MESHLM_FORMATS_TEST_DATA) / "quants";

std::vector<uint8_t> read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

uint64_t fnv1a64(const void* data, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<const uint8_t*>(data)[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

std::string values_of(const float* v, int64_t n) {
  std::string s;
  char buf[32];
  for (int64_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof buf, "%s%.9g", i ? " " : "", double(v[i]));
    s += buf;
  }
  return s;
}

const std::vector<WeightType> kBlockTypes = {
    WeightType::Q4_0,   WeightType::Q4_1,   WeightType::Q5_0, WeightType::Q5_1, WeightType::Q8_0,
    WeightType::Q2_K,   WeightType::Q3_K,   WeightType::Q4_K, WeightType::Q5_K, WeightType::Q6_K,
    WeightType::IQ4_NL, WeightType::IQ4_XS, WeightType::MXFP4};

const std::vector<WeightType> kQuantizable = {
    WeightType::Q4_0, WeightType::Q4_1, WeightType::Q5_0, WeightType::Q5_1, WeightType::Q8_0,
    WeightType::Q2_K, WeightType::Q3_K, WeightType::Q4_K, WeightType::Q5_K, WeightType::Q6_K};

std::string type_name(const testing::TestParamInfo<WeightType>& p) {
  return std::string(formats::name(p.param));
}

// ---- Decoders against gguf-py ----

class Decoder : public testing::TestWithParam<WeightType> {};

TEST_P(Decoder, BitIdenticalToGgufPy) {
  const FormatInfo& f = formats::info(GetParam());
  const fs::path bin = kDataDir / (std::string(f.name) + ".bin");
  const fs::path fnv = kDataDir / (std::string(f.name) + ".fnv");
  if (!fs::exists(bin) || !fs::exists(fnv))
    GTEST_SKIP() << "no reference vectors at " << bin
                 << " (scripts/gen_quant_vectors.py writes them)";
  const std::vector<uint8_t> blocks = read_file(bin);
  const std::vector<uint8_t> hashes = read_file(fnv);
  ASSERT_EQ(blocks.size() % f.block_bytes, 0u);
  const int64_t n_blocks = int64_t(blocks.size() / f.block_bytes);
  ASSERT_EQ(hashes.size(), size_t(n_blocks) * 8);
  ASSERT_GE(n_blocks, 256);

  // Decode from an odd address: the decoders must not need alignment.
  std::vector<uint8_t> shifted(blocks.size() + 1);
  std::memcpy(shifted.data() + 1, blocks.data(), blocks.size());
  std::vector<float> out(size_t(n_blocks * f.block_elems));
  formats::dequantize_row(f.type, shifted.data() + 1, n_blocks * f.block_elems, out.data());

  int mismatches = 0;
  for (int64_t i = 0; i < n_blocks; ++i) {
    const float* v = out.data() + i * f.block_elems;
    uint64_t want;
    std::memcpy(&want, hashes.data() + 8 * i, 8);
    if (fnv1a64(v, size_t(f.block_elems) * 4) != want && ++mismatches <= 3)
      ADD_FAILURE() << f.name << " block " << i
                    << " decodes differently from gguf-py; ours: " << values_of(v, f.block_elems);
  }
  EXPECT_EQ(mismatches, 0) << "of " << n_blocks << " blocks";
}

INSTANTIATE_TEST_SUITE_P(AllBlockTypes, Decoder, testing::ValuesIn(kBlockTypes), type_name);

// ---- Encoders against gguf-py (Q4_0..Q8_0) and ggml (Q2_K..Q6_K) ----

// Q4_1 / Q5_1 blocks that differ only in the sign of a zero minimum m (bytes 2-3: 0x0000 vs
// 0x8000).
bool zero_min_sign_only(const uint8_t* a, const uint8_t* b, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (i != 3 && a[i] != b[i]) return false;
  return a[2] == 0 && (a[3] | b[3]) == 0x80 && (a[3] & b[3]) == 0;
}

class ReferenceEncoder : public testing::TestWithParam<WeightType> {};

TEST_P(ReferenceEncoder, ByteIdenticalToReference) {
  const FormatInfo& f = formats::info(GetParam());
  const fs::path src = kDataDir / (std::string(f.name) + ".src.f32");
  const fs::path bin = kDataDir / (std::string(f.name) + ".bin");
  if (!fs::exists(src) || !fs::exists(bin))
    GTEST_SKIP() << "no reference vectors at " << src
                 << " (scripts/gen_quant_vectors.py writes them)";
  const std::vector<uint8_t> raw = read_file(src);
  const std::vector<uint8_t> want = read_file(bin);
  std::vector<float> x(raw.size() / 4);
  std::memcpy(x.data(), raw.data(), x.size() * 4);
  const int64_t n = int64_t(x.size());
  ASSERT_EQ(n % f.block_elems, 0);
  const size_t bytes = formats::row_bytes(f.type, n);
  ASSERT_LE(bytes, want.size());

  std::vector<uint8_t> got(bytes + 1);  // written at an odd address
  formats::quantize_row(f.type, x.data(), n, got.data() + 1);
  const bool has_min = f.type == WeightType::Q4_1 || f.type == WeightType::Q5_1;
  int mismatches = 0, zero_min_sign = 0;
  for (int64_t i = 0; i < n / f.block_elems; ++i) {
    const uint8_t* g = got.data() + 1 + i * f.block_bytes;
    const uint8_t* w = want.data() + i * f.block_bytes;
    if (std::memcmp(g, w, f.block_bytes) == 0) continue;
    if (has_min && zero_min_sign_only(g, w, f.block_bytes)) {
      // gguf-py takes numpy's min(), whose sign for a block whose minimum is +-0 is not ggml's;
      // ours must be ggml's: the sign of the first of the smallest elements.
      const float* xb = x.data() + i * f.block_elems;
      float min = xb[0];
      for (int64_t j = 1; j < f.block_elems; ++j)
        if (xb[j] < min) min = xb[j];
      EXPECT_EQ(g[3] == 0x80, std::signbit(min)) << f.name << " block " << i;
      ++zero_min_sign;
      continue;
    }
    if (++mismatches <= 3)
      ADD_FAILURE() << f.name << " block " << i << " (inputs "
                    << values_of(x.data() + i * f.block_elems, f.block_elems)
                    << ") encodes differently from the reference";
  }
  EXPECT_EQ(mismatches, 0) << "of " << n / f.block_elems << " blocks";
  if (zero_min_sign)
    std::printf("%s: %d blocks differ from gguf-py only in the sign of a zero minimum\n",
                std::string(f.name).c_str(), zero_min_sign);
}

INSTANTIATE_TEST_SUITE_P(Quantizable, ReferenceEncoder, testing::ValuesIn(kQuantizable), type_name);

// ---- Round trips ----

std::vector<float> gaussian(int64_t n, uint32_t seed, float sigma = 1) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0, sigma);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = dist(rng);
  return x;
}

std::vector<float> round_trip(WeightType t, const std::vector<float>& x) {
  const int64_t n = int64_t(x.size());
  std::vector<uint8_t> q(formats::row_bytes(t, n));
  formats::quantize_row(t, x.data(), n, q.data());
  std::vector<float> y(x.size());
  formats::dequantize_row(t, q.data(), n, y.data());
  return y;
}

double rmse(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return std::sqrt(s / double(a.size()));
}

class Encoder : public testing::TestWithParam<WeightType> {};

// RMSE of dequantize(quantize(x)) for x ~ N(0, 1): below the bound (ggml's reference quantizer
// measured on the same kind of data, plus 3%; see quants.h), and the worst element within the
// type's step.
TEST_P(Encoder, GaussianRoundTripError) {
  struct Bound {
    WeightType t;
    double rmse;     // upper bound for N(0, 1) inputs
    double max_err;  // upper bound on any element's error
  };
  // ggml's reference quantizers (quantize_row_*_ref, what llama-quantize runs without an
  // importance matrix) measured on 2^20 N(0, 1) values, plus 3%.
  const Bound kBounds[] = {
      {WeightType::Q8_0, 0.00535 * 1.03, 0.03}, {WeightType::Q4_0, 0.08588 * 1.03, 0.6},
      {WeightType::Q4_1, 0.07829 * 1.03, 0.35}, {WeightType::Q5_0, 0.04271 * 1.03, 0.3},
      {WeightType::Q5_1, 0.03788 * 1.03, 0.17}, {WeightType::Q2_K, 0.29651 * 1.03, 2.0},
      {WeightType::Q3_K, 0.15087 * 1.03, 0.9},  {WeightType::Q4_K, 0.07140 * 1.03, 0.4},
      {WeightType::Q5_K, 0.03615 * 1.03, 0.2},  {WeightType::Q6_K, 0.01772 * 1.03, 0.1},
  };
  const WeightType t = GetParam();
  const Bound* bound = nullptr;
  for (const Bound& b : kBounds)
    if (b.t == t) bound = &b;
  ASSERT_NE(bound, nullptr);
  const std::vector<float> x = gaussian(256 * 512, 7);
  const std::vector<float> y = round_trip(t, x);
  double max_err = 0;
  for (size_t i = 0; i < x.size(); ++i) max_err = std::max(max_err, double(std::fabs(x[i] - y[i])));
  const double e = rmse(x, y);
  RecordProperty("rmse", std::to_string(e));
  RecordProperty("max_err", std::to_string(max_err));
  std::printf("%s rmse %.5f max_err %.4f\n", std::string(formats::name(t)).c_str(), e, max_err);
  EXPECT_LT(e, bound->rmse) << formats::name(t);
  EXPECT_LT(max_err, bound->max_err) << formats::name(t);
}

// Scaling the input by a power of two scales the encoding exactly (no absolute thresholds in the
// search), as long as the block scales stay normal f16 numbers.
TEST_P(Encoder, PowerOfTwoScalingIsExact) {
  const WeightType t = GetParam();
  const std::vector<float> x = gaussian(256 * 16, 11);
  const std::vector<float> y = round_trip(t, x);
  for (float scale : {0.25f, 64.f}) {
    std::vector<float> xs = x;
    for (float& v : xs) v *= scale;
    const std::vector<float> ys = round_trip(t, xs);
    for (size_t i = 0; i < x.size(); ++i)
      ASSERT_EQ(ys[i], y[i] * scale)
          << formats::name(t) << " at scale " << scale << ", element " << i;
  }
}

TEST_P(Encoder, ZerosAndConstants) {
  const WeightType t = GetParam();
  const FormatInfo& f = formats::info(t);
  const int64_t n = 512;
  const std::vector<float> zeros(n, 0.f);
  for (float v : round_trip(t, zeros)) ASSERT_EQ(v, 0.f) << f.name;
  // A constant row: the types with a minimum (or, for symmetric types, the largest element) hit
  // it within the f16 rounding of the scale.
  for (float c : {1.f, -0.3f, 100.f}) {
    const std::vector<float> x(n, c);
    for (float v : round_trip(t, x)) ASSERT_NEAR(v, c, std::fabs(c) * 2e-3) << f.name << " " << c;
  }
}

TEST_P(Encoder, RejectsNonFiniteAndOverflow) {
  const WeightType t = GetParam();
  const FormatInfo& f = formats::info(t);
  const int64_t n = f.block_elems * 2;
  std::vector<uint8_t> out(formats::row_bytes(t, n));
  for (float bad : {NAN, INFINITY, -INFINITY}) {
    std::vector<float> x = gaussian(n, 3);
    x[size_t(n - 3)] = bad;
    EXPECT_THROW(formats::quantize_row(t, x.data(), n, out.data()), Error) << f.name;
  }
  std::vector<float> x = gaussian(n, 3);
  x[5] = 1e30f;  // refused up front
  EXPECT_THROW(formats::quantize_row(t, x.data(), n, out.data()), Error) << f.name;
  x[5] = 3e9f;  // accepted as input, but every type's block scale overflows f16
  try {
    formats::quantize_row(t, x.data(), n, out.data());
    ADD_FAILURE() << f.name << ": no error for a scale beyond f16";
  } catch (const Error& e) {
    EXPECT_EQ(e.component(), "format");
    EXPECT_NE(e.message().find("block 0"), std::string::npos) << e.what();
  }
  EXPECT_THROW(formats::quantize_row(t, x.data(), f.block_elems + 1, out.data()), Error);
}

INSTANTIATE_TEST_SUITE_P(Quantizable, Encoder, testing::ValuesIn(kQuantizable), type_name);

TEST(Quantize, WhichTypes) {
  for (WeightType t : kQuantizable) EXPECT_TRUE(formats::can_quantize(t));
  for (WeightType t : {WeightType::F32, WeightType::BF16, WeightType::F16})
    EXPECT_TRUE(formats::can_quantize(t));
  for (WeightType t : {WeightType::IQ4_NL, WeightType::IQ4_XS, WeightType::MXFP4}) {
    EXPECT_FALSE(formats::can_quantize(t));
    std::vector<float> x(256, 1.f);
    std::vector<uint8_t> out(formats::row_bytes(t, 256));
    EXPECT_THROW(formats::quantize_row(t, x.data(), 256, out.data()), Error);
  }
}

TEST(Quantize, PlainTypes) {
  const std::vector<float> x = {1.f, -2.5f, 3.14159f, 0.f, 65504.f, 1e-8f};
  for (WeightType t : {WeightType::F32, WeightType::BF16, WeightType::F16}) {
    std::vector<uint8_t> q(formats::row_bytes(t, int64_t(x.size())));
    formats::quantize_row(t, x.data(), int64_t(x.size()), q.data());
    std::vector<float> y(x.size());
    formats::dequantize_row(t, q.data(), int64_t(x.size()), y.data());
    for (size_t i = 0; i < x.size(); ++i)
      EXPECT_NEAR(y[i], x[i], std::fabs(x[i]) * (t == WeightType::BF16 ? 4e-3 : 1e-3) + 6e-8)
          << formats::name(t);
  }
  const float big = 1e6f;
  std::vector<uint8_t> q(2);
  EXPECT_THROW(formats::quantize_row(WeightType::F16, &big, 1, q.data()), Error);
  const float huge = 3.4e38f;
  EXPECT_THROW(formats::quantize_row(WeightType::BF16, &huge, 1, q.data()), Error);
}

}  // namespace
}  // namespace meshlm
