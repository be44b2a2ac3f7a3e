// (d) MLX folders: the same bytes as shared/tools/mlx_quantize.py writes for the same model, and
// its numpy forward pass (--check) gives the same greedy ids on both.
#include <gtest/gtest.h>

#include <array>
#include <cstdlib>

#include "convert/mlx_export.h"
#include "core/error.h"
#include "test_util.h"

namespace meshlm::convert {
namespace {

using namespace test;

const std::string kQwen = kModels + "/qwen3-tiny-synth";

std::string python() { return fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3"; }

bool have_numpy() { return std::system((python() + " -c 'import numpy' 2>/dev/null").c_str()) == 0; }

// stdout of a command, or "" and ok = false when it fails.
std::string run(const std::string& cmd, bool& ok) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    ok = false;
    return out;
  }
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  ok = pclose(p) == 0;
  return out;
}

TEST(MlxExport, RowPacking) {
  // 64 inputs 0..63 at 4 bits: scale = 63/15 = 4.2 (bf16 4.1875), bias 0.
  std::vector<float> w(64);
  for (int i = 0; i < 64; ++i) w[i] = float(i);
  std::vector<uint32_t> packed(8);
  uint16_t s, b;
  mlx_quantize_row(w.data(), 64, 4, 64, WeightType::BF16, packed.data(), &s, &b);
  EXPECT_EQ(s, 0x4086);  // bf16(4.2)
  EXPECT_EQ(b, 0);
  // codes: round(i / 4.1875): element 0..7 -> 0,0,0,1,1,1,1,2 in nibbles, first lowest
  EXPECT_EQ(packed[0], 0x21111000u);
  EXPECT_EQ(packed[7] >> 28, 15u);
  // 8 bits: element j in byte j % 4 of word j / 4
  std::vector<uint32_t> p8(16);
  mlx_quantize_row(w.data(), 64, 8, 64, WeightType::BF16, p8.data(), &s, &b);
  EXPECT_EQ(p8[0] & 0xff, 0u);
  EXPECT_EQ(p8[15] >> 24, 255u);
}

TEST(MlxExport, SameAsMlxQuantizePy) {
  if (std::string why = models_missing(); !why.empty()) GTEST_SKIP() << why;
  const std::string tool = kShared + "/tools/mlx_quantize.py";
  if (!fs::exists(tool)) GTEST_SKIP() << "no " << tool;
  if (!have_numpy()) GTEST_SKIP() << "python3 with numpy not found";
  for (int bits : {4, 8}) {
    SCOPED_TRACE("mlx" + std::to_string(bits));
    TempDir tmp("mlx" + std::to_string(bits));
    const std::string ours = tmp / "ours", theirs = tmp / "theirs";
    export_mlx(kQwen, ours, {bits, 64, 2, {}});
    for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"})
      EXPECT_TRUE(fs::exists(fs::path(ours) / f)) << f;
    bool ok = false;
    run(python() + " " + tool + " --src " + kQwen + " --out " + theirs + " --bits " + std::to_string(bits) +
            " --group-size 64 >/dev/null",
        ok);
    ASSERT_TRUE(ok) << "mlx_quantize.py failed";
    EXPECT_EQ(sha256_file(ours + "/model.safetensors"), sha256_file(theirs + "/model.safetensors"))
        << "model.safetensors differs from mlx_quantize.py's";
    std::ifstream ours_cfg(ours + "/config.json"), theirs_cfg(theirs + "/config.json");
    const nlohmann::json cfg = nlohmann::json::parse(ours_cfg);
    EXPECT_EQ(cfg["quantization"], nlohmann::json::parse(theirs_cfg)["quantization"]);
    EXPECT_EQ(cfg["quantization_config"]["bits"], bits);
    const std::string check = " --check-ids 785,3974,13876 --check-gen 4";
    const std::string a = run(python() + " " + tool + " --check " + ours + check, ok);
    ASSERT_TRUE(ok) << "mlx_quantize.py --check failed on our folder";
    const std::string b = run(python() + " " + tool + " --check " + theirs + check, ok);
    ASSERT_TRUE(ok);
    EXPECT_EQ(nlohmann::json::parse(a)["greedy_continuation"], nlohmann::json::parse(b)["greedy_continuation"]);
  }
}

TEST(MlxExport, ClearErrors) {
  TempDir tmp("mlx_errors");
  EXPECT_THROW(export_mlx((tmp.path / "absent").string(), tmp / "out", {}), Error);
  EXPECT_THROW(export_mlx(kQwen, tmp / "out", {3, 64, 1, {}}), Error);
  EXPECT_THROW(export_mlx(kQwen, tmp / "out", {4, 100, 1, {}}), Error);
}

}  // namespace
}  // namespace meshlm::convert
