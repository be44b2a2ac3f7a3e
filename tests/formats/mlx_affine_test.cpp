// MLX affine formats (formats/mlx_affine.h): the format rows, and decoding bit-exact with
// ../shared/tools/mlx_quantize.py's numpy `dequantize` for bits 2, 3, 4, 5, 6, 8, group sizes 32,
// 64, 128 and BF16 / F16 / F32 scales, from the file layout through mlx_repack_row. The
// fixtures are written at test time by python3 with the shared tool (skipped, saying why,
// without ../shared or numpy).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "formats/mlx_affine.h"
#include "formats/quants.h"
#include "formats/weight_format.h"

namespace meshlm {
namespace {

namespace fs = std::filesystem;

TEST(MlxAffine, FormatRowsAndParameters) {
  int n = 0;
  for (const auto& f : formats::all()) {
    const auto m = formats::mlx_affine(f.type);
    if (!m) continue;
    ++n;
    EXPECT_EQ(f.ggml_type, -1) << f.name;
    EXPECT_FALSE(formats::from_ggml_type(uint32_t(-1)));
    EXPECT_EQ(formats::mlx_affine_type(m->bits, m->group, m->scale_type), f.type) << f.name;
    EXPECT_EQ(f.block_elems, m->group) << f.name;
    EXPECT_EQ(f.block_bytes, formats::mlx_block_bytes(m->bits, m->group, m->scale_type)) << f.name;
    const std::string want = "MLX" + std::to_string(m->bits) + "_G" + std::to_string(m->group) +
                             "_" + std::string(formats::name(m->scale_type));
    EXPECT_EQ(f.name, want);
    EXPECT_TRUE(formats::can_quantize(f.type)) << f.name;
  }
  EXPECT_EQ(n, 54);
  EXPECT_EQ(formats::mlx_affine_type(4, 64, WeightType::BF16), WeightType::MLX4_G64_BF16);
  EXPECT_EQ(formats::row_bytes(WeightType::MLX4_G64_BF16, 128), 72u);  // 2 x (4 + 32)
  EXPECT_EQ(formats::row_bytes(WeightType::MLX8_G32_F32, 64), 2u * (8 + 32));
  EXPECT_EQ(formats::row_bytes(WeightType::MLX3_G128_F16, 128), 4u + 48);
  EXPECT_FALSE(formats::mlx_affine_type(7, 64, WeightType::BF16));
  EXPECT_FALSE(formats::mlx_affine_type(4, 16, WeightType::BF16));
  EXPECT_FALSE(formats::mlx_affine_type(4, 64, WeightType::Q8_0));
  EXPECT_FALSE(formats::mlx_affine(WeightType::Q4_1));
  EXPECT_THROW(formats::row_bytes(WeightType::MLX4_G64_BF16, 96), Error);
}

// Codes packed as a file holds them (element j at bits [j*bits, (j+1)*bits)).
std::vector<uint32_t> pack(const std::vector<uint32_t>& q, int bits) {
  std::vector<uint32_t> w(q.size() * size_t(bits) / 32, 0);
  for (size_t j = 0; j < q.size(); ++j) {
    const uint64_t pos = uint64_t(j) * uint64_t(bits);
    w[pos / 32] |= uint32_t(uint64_t(q[j]) << (pos % 32));
    if (pos % 32 + uint64_t(bits) > 32) w[pos / 32 + 1] |= uint32_t(uint64_t(q[j]) >> (32 - pos % 32));
  }
  return w;
}

// quantize_row's blocks decode to within half a quantization step (plus the rounding of the
// scale and minimum to their dtype) of the input.
TEST(MlxAffine, EncoderRoundTrip) {
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 0.5f);
  for (const auto& f : formats::all()) {
    const auto m = formats::mlx_affine(f.type);
    if (!m) continue;
    const int64_t n = 2 * m->group;
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) v = dist(rng);
    std::vector<uint8_t> enc(formats::row_bytes(f.type, n));
    formats::quantize_row(f.type, x.data(), n, enc.data());
    std::vector<float> dec(static_cast<size_t>(n));
    formats::dequantize_row(f.type, enc.data(), n, dec.data());
    for (int64_t g = 0; g < n / m->group; ++g) {
      float lo = x[size_t(g * m->group)], hi = lo;
      for (int j = 0; j < m->group; ++j) {
        lo = std::min(lo, x[size_t(g * m->group + j)]);
        hi = std::max(hi, x[size_t(g * m->group + j)]);
      }
      const float step = (hi - lo) / float((1 << m->bits) - 1);
      for (int j = 0; j < m->group; ++j) {
        const size_t i = size_t(g * m->group + j);
        EXPECT_NEAR(dec[i], x[i], 0.5f * step * 1.02f + 0.01f * (std::fabs(lo) + step * float(1 << m->bits)))
            << f.name << " element " << i;
      }
    }
  }
  const float big[32] = {1e30f};
  std::vector<uint8_t> blk(formats::row_bytes(WeightType::MLX4_G32_F16, 32));
  EXPECT_THROW(formats::quantize_row(WeightType::MLX4_G32_F16, big, 32, blk.data()), Error);
}

// Runs python3 on a script; "" or why it cannot run.
std::string run_python(const std::string& script, const fs::path& dir) {
  const fs::path tools = fs::path(MESHLM_SHARED_DIR) / "tools";
  if (!fs::exists(tools / "mlx_quantize.py")) return "no ../shared/tools/mlx_quantize.py";
  const std::string py = fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
  if (std::system((py + " -c 'import numpy' >/dev/null 2>&1").c_str()) != 0)
    return py + " has no numpy";
  const fs::path file = dir / "fixture.py";
  std::ofstream(file) << script;
  const std::string cmd = "cd '" + dir.string() + "' && " + py + " '" + file.string() + "' '" +
                          tools.string() + "' >/dev/null";
  if (std::system(cmd.c_str()) != 0) return "the fixture script failed: " + cmd;
  return "";
}

std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// For every bits x group x scale dtype: random rows quantized by mlx_quantize.py (BF16 scales:
// its quantize_rows / quantize_rows_fast; F16 / F32: the same codes with scales and biases of
// that dtype), and its `dequantize` of them.
constexpr const char* kFixtureScript = R"PY(
import os, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import mlx_quantize as mq
import make_synth_model as msm
rng = np.random.default_rng(11)
OUT, IN = 3, 384
for bits in (2, 3, 4, 5, 6, 8):
    for gs in (32, 64, 128):
        w = rng.normal(0, 0.05, (OUT, IN)).astype(np.float32)
        w[1, :gs] = 0.25  # a constant group: the tiny scale
        words, s_bits, b_bits = mq.quantize_rows_fast(w, bits, gs)
        if bits in (3, 5, 6):  # the slow packer too, on the same input: same words
            w2, _, _ = mq.quantize_rows(w, bits, gs)
            assert (w2 == words).all()
        variants = {
            "BF16": (s_bits.astype("<u2"), b_bits.astype("<u2"),
                     msm.bf16_bits_to_f32(s_bits), msm.bf16_bits_to_f32(b_bits)),
        }
        s16 = (rng.uniform(1e-4, 2e-2, s_bits.shape)).astype(np.float16)
        b16 = (rng.normal(0, 0.1, b_bits.shape)).astype(np.float16)
        variants["F16"] = (s16.view("<u2"), b16.view("<u2"), s16.astype(np.float32), b16.astype(np.float32))
        s32 = rng.uniform(1e-4, 2e-2, s_bits.shape).astype(np.float32)
        b32 = rng.normal(0, 0.1, b_bits.shape).astype(np.float32)
        variants["F32"] = (s32.view("<u4"), b32.view("<u4"), s32, b32)
        for name, (sraw, braw, s, b) in variants.items():
            deq = mq.dequantize(words, s, b, bits, gs, IN)
            base = "b%d_g%d_%s" % (bits, gs, name)
            open(base + ".codes", "wb").write(words.astype("<u4").tobytes())
            open(base + ".scales", "wb").write(sraw.tobytes())
            open(base + ".biases", "wb").write(braw.tobytes())
            open(base + ".deq", "wb").write(deq.astype("<f4").tobytes())
            open(base + ".src", "wb").write(w.astype("<f4").tobytes())
)PY";

TEST(MlxAffine, DequantizationBitExactWithMlxQuantizePy) {
  const fs::path dir = fs::temp_directory_path() / ("meshlm-mlx-affine-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string why = run_python(kFixtureScript, dir);
  if (!why.empty()) {
    fs::remove_all(dir);
    GTEST_SKIP() << why;
  }
  const int64_t rows = 3, in = 384;
  int checked = 0;
  for (int bits : {2, 3, 4, 5, 6, 8})
    for (int gs : {32, 64, 128})
      for (WeightType st : {WeightType::BF16, WeightType::F16, WeightType::F32}) {
        const std::string base = "b" + std::to_string(bits) + "_g" + std::to_string(gs) + "_" +
                                 std::string(formats::name(st));
        SCOPED_TRACE(base);
        const auto codes = read_bytes(dir / (base + ".codes"));
        const auto scales = read_bytes(dir / (base + ".scales"));
        const auto biases = read_bytes(dir / (base + ".biases"));
        const auto deq = read_bytes(dir / (base + ".deq"));
        const size_t sb = st == WeightType::F32 ? 4 : 2;
        ASSERT_EQ(codes.size(), size_t(rows * in * bits / 8));
        ASSERT_EQ(scales.size(), size_t(rows * (in / gs)) * sb);
        ASSERT_EQ(deq.size(), size_t(rows * in) * 4);
        const WeightType t = *formats::mlx_affine_type(bits, gs, st);
        const size_t rb = formats::row_bytes(t, in);
        EXPECT_EQ(rb * size_t(rows), codes.size() + scales.size() + biases.size())
            << "the repacked bytes replace the file's bytes one for one";
        std::vector<uint8_t> packed(rb * size_t(rows));
        std::vector<float> got(size_t(rows * in));
        for (int64_t r = 0; r < rows; ++r) {
          formats::mlx_repack_row(t, codes.data() + size_t(r * in * bits / 8),
                                  scales.data() + size_t(r * (in / gs)) * sb,
                                  biases.data() + size_t(r * (in / gs)) * sb, in,
                                  packed.data() + size_t(r) * rb);
          formats::dequantize_row(t, packed.data() + size_t(r) * rb, in, got.data() + r * in);
        }
        ASSERT_EQ(0, std::memcmp(got.data(), deq.data(), deq.size()))
            << "dequantized values differ from mlx_quantize.py's";
        // BF16: our encoder on the tool's input writes the tool's codes, scales and biases.
        if (st == WeightType::BF16) {
          const auto src = read_bytes(dir / (base + ".src"));
          ASSERT_EQ(src.size(), size_t(rows * in) * 4);
          std::vector<float> x(size_t(rows * in));
          std::memcpy(x.data(), src.data(), src.size());
          std::vector<uint8_t> enc(packed.size());
          for (int64_t r = 0; r < rows; ++r)
            formats::quantize_row(t, x.data() + r * in, in, enc.data() + size_t(r) * rb);
          EXPECT_EQ(enc, packed) << "quantize_row differs from mlx_quantize.py";
        }
        ++checked;
      }
  EXPECT_EQ(checked, 54);
  fs::remove_all(dir);
}

TEST(MlxAffine, PackOrderIsLittleEndianBitStream) {
  // 4 bits: element j in nibble j of the row's bit stream; the block keeps ggml's nibble order.
  std::vector<uint32_t> q(64);
  for (size_t j = 0; j < q.size(); ++j) q[j] = uint32_t(j % 16);
  const std::vector<uint32_t> words = pack(q, 4);
  EXPECT_EQ(words[0], 0x76543210u);
  const uint16_t one = 0x3f80, zero = 0;  // bf16 1.0, 0.0
  std::vector<uint16_t> s = {one}, b = {zero};
  std::vector<uint8_t> blk(formats::row_bytes(WeightType::MLX4_G64_BF16, 64));
  formats::mlx_repack_row(WeightType::MLX4_G64_BF16, words.data(), s.data(), b.data(), 64,
                          blk.data());
  EXPECT_EQ(blk[4], 0x00);  // element 0 | element 16 << 4
  EXPECT_EQ(blk[5], 0x11);
  std::vector<float> dec(64);
  formats::dequantize_row(WeightType::MLX4_G64_BF16, blk.data(), 64, dec.data());
  for (size_t j = 0; j < 64; ++j) EXPECT_EQ(dec[j], float(j % 16)) << j;
}

}  // namespace
}  // namespace meshlm
