// Mixture-of-experts models as GGUF files (moe_golden.json): a Hugging Face Qwen3-MoE folder
// written as the converter would (a layer's experts stacked into [experts, rows, cols] tensors),
// its Q4_K_M byte for byte with llama-quantize's, and the GGUF run by meshlm: the same logits as
// the folder, and the float64 reference's perplexity.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>

#include "../common/heavy.h"
#include "convert/gguf_export.h"
#include "convert/source_model.h"
#include "core/json_file.h"
#include "formats/gguf.h"
#include "test_util.h"

namespace meshlm::convert {
namespace {

using namespace test;

const std::string kMoe = kModels + "/qwen3-moe-synth";

nlohmann::json golden() {
  return read_json_file(std::string(MESHLM_SOURCE_DIR) + "/tests/convert/moe_golden.json", "test");
}

#define SKIP_WITHOUT_MOE_MODEL()                                                   \
  do {                                                                             \
    if (std::string why = models_missing(); !why.empty()) GTEST_SKIP() << why;     \
    if (!fs::exists(kMoe + "/tokenizer.json")) GTEST_SKIP() << "no " << kMoe;      \
  } while (0)

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

ExportOptions threads(int n) {
  ExportOptions o;
  o.threads = n;
  return o;
}

TEST(MoeGguf, TheModelIsTheGoldenOne) {
  SKIP_WITHOUT_MOE_MODEL();
  EXPECT_EQ(sha256_file(kMoe + "/model.safetensors"), golden()["model"]["safetensors_sha256"].get<std::string>())
      << "meshlm synth no longer writes the model moe_golden.json was recorded on";
}

TEST(MoeGguf, F32StacksTheExpertsAsTheConverter) {
  SKIP_WITHOUT_MOE_MODEL();
  TempDir tmp("moe_f32");
  const std::string out = tmp / "f32.gguf";
  export_gguf(open_hf_source(kMoe), parse_quant_type("f32"), out, threads(2));
  const formats::GgufFile f = formats::GgufFile::open(out);
  EXPECT_EQ(f.metadata().get_string("general.architecture"), "qwen3moe");
  EXPECT_EQ(f.metadata().get_i64("qwen3moe.expert_count"), 8);
  EXPECT_EQ(f.metadata().get_i64("qwen3moe.expert_used_count"), 2);
  EXPECT_EQ(f.metadata().get_i64("qwen3moe.expert_feed_forward_length"), 256);
  int stacked = 0;
  for (const auto& t : f.tensors()) {
    if (t.name.find("_exps.weight") == std::string::npos) continue;
    ++stacked;
    EXPECT_EQ(t.dims.size(), 3u) << t.name;
    EXPECT_EQ(t.dims.back(), 8) << t.name;  // GGUF order: ne[2] is the expert
  }
  EXPECT_EQ(stacked, 4 * 3);
  EXPECT_EQ(sha256_file(out), golden()["model"]["f32_gguf_sha256"].get<std::string>());
}

TEST(MoeGguf, Q4KMIsLlamaQuantizesFile) {
  SKIP_WITHOUT_MOE_MODEL();
  TempDir tmp("moe_q4km");
  const std::string out = tmp / "q4km.gguf";
  export_gguf(open_hf_source(kMoe), parse_quant_type("q4_k_m"), out, threads(2));
  EXPECT_EQ(sha256_file(out), golden()["llama_cpp"]["quantize"]["gguf_sha256"].get<std::string>())
      << "not byte-identical with llama-quantize's Q4_K_M of the same model";
}

// The command line on the GGUF: the folder's logits exactly (F32 weights, same kernels), and the
// float64 reference's perplexity.
TEST(MoeGguf, RunsAsTheFolderAndAsTheReference) {
  MESHLM_SKIP_IF_HEAVY_OFF();
  SKIP_WITHOUT_MOE_MODEL();
  const std::string text = kShared + "/golden/ppl_text_gpl3_first190lines.txt";
  if (!fs::exists(text)) GTEST_SKIP() << "no " << text;
  TempDir tmp("moe_run");
  const std::string gguf = tmp / "f32.gguf", bin = MESHLM_BINARY;
  export_gguf(open_hf_source(kMoe), parse_quant_type("f32"), gguf, threads(2));
  auto generate = [&](const std::string& model, const std::string& logits) {
    const std::string cmd = bin + " generate --model " + model +
                            " --prompt-ids 9,100,2000,33,4567,12,80000,5 -n 8 --ids --ignore-eos --logits-out " +
                            logits + " >" + (tmp / "ids") + " 2>" + (tmp / "log");
    EXPECT_EQ(std::system(cmd.c_str()), 0) << read_text(tmp / "log");
    return read_text(logits);
  };
  const std::string from_folder = generate(kMoe, tmp / "folder.bin");
  const std::string from_gguf = generate(gguf, tmp / "gguf.bin");
  ASSERT_FALSE(from_folder.empty());
  EXPECT_TRUE(from_folder == from_gguf) << "the GGUF's logits differ from the folder's";

  ASSERT_EQ(std::system((bin + " perplexity -m " + gguf + " -f " + text + " -c 128 -t 2 >" + (tmp / "ppl") + " 2>&1")
                            .c_str()),
            0)
      << read_text(tmp / "ppl");
  const std::string out = read_text(tmp / "ppl");
  const size_t at = out.rfind("PPL = ");
  ASSERT_NE(at, std::string::npos) << out;
  const double ppl = std::strtod(out.c_str() + at + 6, nullptr);
  const double ref = golden()["float64_reference"]["final_ppl"].get<double>();
  EXPECT_LT(std::fabs(ppl / ref - 1), 1e-5) << "meshlm " << ppl << " vs float64 reference " << ref;
}

}  // namespace
}  // namespace meshlm::convert
