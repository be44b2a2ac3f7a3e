// `meshlm quantize` to GGUF against llama.cpp: the golden model's Q4_K_M byte for byte with
// llama-quantize's (../shared/golden/llamacpp_tiny_Q4_K_M.json), a Hugging Face folder to F32 /
// BF16 byte for byte with the converter's GGUF (make_synth_model.py --gguf), every output type
// readable with the expected per-tensor types, clear errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <iterator>
#include <map>

#include "../common/heavy.h"
#include "convert/gguf_export.h"
#include "convert/source_model.h"
#include "core/error.h"
#include "core/json_file.h"
#include "formats/gguf.h"
#include "test_util.h"

namespace meshlm::convert {
namespace {

using namespace test;

const std::string kQwen = kModels + "/qwen3-tiny-synth";
const std::string kQwenGguf = kQwen + "/qwen3-tiny-synth-f32.gguf";
const std::string kLlama = kModels + "/llama-tiny-synth";
const std::string kLlamaGguf = kLlama + "/llama-tiny-synth-bf16.gguf";

ExportOptions threads(int n) {
  ExportOptions o;
  o.threads = n;
  return o;
}

#define SKIP_WITHOUT_REFERENCE()                               \
  do {                                                         \
    if (std::string why = models_missing(); !why.empty())      \
      GTEST_SKIP() << why;                                     \
  } while (0)

// Differences between two GGUF files' metadata (key by key, in order) and tensors (name, type,
// shape, bytes); "" when none. At most a few lines.
std::string gguf_differences(const std::string& ours_path, const std::string& ref_path) {
  const auto ours = formats::GgufFile::open(ours_path), ref = formats::GgufFile::open(ref_path);
  std::string out;
  int n = 0;
  auto note = [&](const std::string& s) {
    if (n++ < 12) out += s + "\n";
  };
  const auto &a = ours.metadata().entries(), &b = ref.metadata().entries();
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    if (i >= a.size()) note("missing key " + b[i].first);
    else if (i >= b.size()) note("extra key " + a[i].first);
    else if (a[i].first != b[i].first) note("key " + std::to_string(i) + ": " + a[i].first + " vs " + b[i].first);
    else if (!(a[i].second == b[i].second))
      note("key " + a[i].first + ": " + a[i].second.describe() + " differs from " + b[i].second.describe());
  }
  const auto &ta = ours.tensors(), &tb = ref.tensors();
  if (ta.size() != tb.size()) note(std::to_string(ta.size()) + " tensors vs " + std::to_string(tb.size()));
  for (size_t i = 0; i < std::min(ta.size(), tb.size()); ++i) {
    if (ta[i].name != tb[i].name) note("tensor " + std::to_string(i) + ": " + ta[i].name + " vs " + tb[i].name);
    else if (ta[i].type != tb[i].type) note(ta[i].name + ": type " + std::string(formats::name(ta[i].type)) + " vs " +
                                            std::string(formats::name(tb[i].type)));
    else if (ta[i].dims != tb[i].dims) note(ta[i].name + ": shape differs");
    else if (!std::equal(ta[i].bytes().begin(), ta[i].bytes().end(), tb[i].bytes().begin(), tb[i].bytes().end()))
      note(ta[i].name + ": bytes differ");
    else if (ta[i].offset != tb[i].offset) note(ta[i].name + ": offset differs");
  }
  return out;
}

std::map<std::string, WeightType> tensor_types(const std::string& path) {
  std::map<std::string, WeightType> m;
  const formats::GgufFile f = formats::GgufFile::open(path);
  for (const auto& t : f.tensors()) m[t.name] = t.type;
  return m;
}

// (a) llama-quantize's Q4_K_M of the golden F32 GGUF, as recorded in ../shared/golden.
TEST(GgufExport, GoldenQ4KMIsLlamaQuantizesFile) {
  SKIP_WITHOUT_REFERENCE();
  const std::string golden_path = kShared + "/golden/llamacpp_tiny_Q4_K_M.json";
  if (!fs::exists(golden_path)) GTEST_SKIP() << "no " << golden_path;
  const nlohmann::json golden = read_json_file(golden_path, "test");
  if (sha256_file(kQwenGguf) != golden["model"]["f32_gguf_sha256"].get<std::string>())
    GTEST_SKIP() << kQwenGguf << " is not the golden F32 GGUF (another make_synth_model.py?)";
  TempDir tmp("golden_q4km");
  const std::string out = tmp / "q4km.gguf";
  const GgufPlan plan = export_gguf(open_gguf_source(kQwenGguf), parse_quant_type("Q4_K_M"), out, threads(2));
  EXPECT_FALSE(plan.converter_layout);
  EXPECT_EQ(plan.n_fallback, 0);

  // The per-tensor types llama-quantize gives the 4-layer tied model.
  auto types = tensor_types(out);
  EXPECT_EQ(types["token_embd.weight"], WeightType::Q6_K);
  EXPECT_EQ(types["output_norm.weight"], WeightType::F32);
  for (int i = 0; i < 4; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    EXPECT_EQ(types[b + "attn_v.weight"], i >= 2 ? WeightType::Q6_K : WeightType::Q4_K) << i;
    EXPECT_EQ(types[b + "ffn_down.weight"], i >= 2 ? WeightType::Q6_K : WeightType::Q4_K) << i;
    EXPECT_EQ(types[b + "attn_q.weight"], WeightType::Q4_K);
    EXPECT_EQ(types[b + "attn_q_norm.weight"], WeightType::F32);
  }
  EXPECT_EQ(fs::file_size(out), golden["quantize"]["gguf_bytes"].get<uint64_t>());
  EXPECT_EQ(sha256_file(out), golden["quantize"]["gguf_sha256"].get<std::string>())
      << "not byte-identical with llama-quantize's Q4_K_M";
}

// (b) A Hugging Face folder to F32 is the converter's GGUF, byte for byte.
TEST(GgufExport, HfToF32IsTheConvertersGguf) {
  SKIP_WITHOUT_REFERENCE();
  TempDir tmp("hf_f32");
  const std::string out = tmp / "f32.gguf";
  const GgufPlan plan = export_gguf(open_hf_source(kQwen), parse_quant_type("f32"), out, threads(2));
  EXPECT_TRUE(plan.converter_layout);
  EXPECT_EQ(gguf_differences(out, kQwenGguf), "");
  EXPECT_EQ(sha256_file(out), sha256_file(kQwenGguf));
}

// Llama: permuted q/k rows, rope_freqs, untied head, BF16 weights with F32 norms.
TEST(GgufExport, HfLlamaToBf16IsTheConvertersGguf) {
  SKIP_WITHOUT_REFERENCE();
  TempDir tmp("hf_llama_bf16");
  const std::string out = tmp / "bf16.gguf";
  export_gguf(open_hf_source(kLlama), parse_quant_type("bf16"), out, threads(2));
  EXPECT_EQ(gguf_differences(out, kLlamaGguf), "");
  EXPECT_EQ(sha256_file(out), sha256_file(kLlamaGguf));
}

// From a folder, a quantized type is what convert_hf_to_gguf.py then llama-quantize give.
TEST(GgufExport, HfToQ4KMIsConvertThenQuantize) {
  MESHLM_SKIP_IF_HEAVY_OFF();
  SKIP_WITHOUT_REFERENCE();
  TempDir tmp("hf_q4km");
  export_gguf(open_hf_source(kLlama), parse_quant_type("q4_k_m"), tmp / "from_hf.gguf", threads(2));
  export_gguf(open_gguf_source(kLlamaGguf), parse_quant_type("q4_k_m"), tmp / "from_gguf.gguf", threads(1));
  EXPECT_EQ(gguf_differences(tmp / "from_hf.gguf", tmp / "from_gguf.gguf"), "");
  EXPECT_EQ(sha256_file(tmp / "from_hf.gguf"), sha256_file(tmp / "from_gguf.gguf"));
}

// The types every --type gives the untied Llama (no layer of "more bits" ambiguity: 4 layers).
WeightType expected_type(std::string_view type, const std::string& name) {
  const bool one_d = name.find("norm") != std::string::npos || name == "rope_freqs.weight";
  if (one_d) return WeightType::F32;
  const int64_t layer = gguf_layer_of(name);
  const bool more = layer >= 2 && (name.find("attn_v") != std::string::npos || name.find("ffn_down") != std::string::npos);
  if (type == "f32") return WeightType::F32;
  if (type == "f16") return WeightType::F16;
  if (type == "bf16") return WeightType::BF16;
  if (type == "q8_0") return WeightType::Q8_0;
  if (name == "output.weight") return WeightType::Q6_K;
  if (type == "q4_0") return WeightType::Q4_0;
  if (type == "q4_1") return WeightType::Q4_1;
  if (type == "q5_0") return WeightType::Q5_0;
  if (type == "q5_1") return WeightType::Q5_1;
  if (type == "q6_k") return WeightType::Q6_K;
  if (type == "q4_k_m") return more ? WeightType::Q6_K : WeightType::Q4_K;
  if (type == "q5_k_m") return more ? WeightType::Q6_K : WeightType::Q5_K;
  return WeightType::F32;
}

// (c) Every GGUF type: a file our reader accepts, the expected types, values near the source's.
TEST(GgufExport, EveryTypeReadsBackWithExpectedTypes) {
  MESHLM_SKIP_IF_HEAVY_OFF();
  SKIP_WITHOUT_REFERENCE();
  TempDir tmp("every_type");
  const SourceModel src = open_hf_source(kLlama);
  const formats::GgufFile ref = formats::GgufFile::open(kLlamaGguf);
  const std::map<std::string_view, double> max_rel_rms = {{"f32", 0},      {"f16", 1e-3},    {"bf16", 0},
                                                          {"q8_0", 0.01},  {"q6_k", 0.03},   {"q5_k_m", 0.06},
                                                          {"q4_k_m", 0.12}, {"q4_0", 0.15},  {"q4_1", 0.12},
                                                          {"q5_0", 0.08},  {"q5_1", 0.06}};
  for (const QuantType& type : all_quant_types()) {
    if (type.kind != OutputKind::Gguf) continue;
    SCOPED_TRACE(std::string(type.name));
    const std::string out = tmp / (std::string(type.name) + ".gguf");
    export_gguf(src, type, out, threads(2));
    const formats::GgufFile f = formats::GgufFile::open(out);
    EXPECT_EQ(f.metadata().get_u32("general.file_type"), type.llama_ftype);
    EXPECT_EQ(f.metadata().get_u32("general.quantization_version"), 2u);
    EXPECT_EQ(f.metadata().get_string("general.architecture"), "llama");
    EXPECT_EQ(f.tensors().size(), ref.tensors().size());
    for (const formats::GgufTensor& t : f.tensors()) {
      EXPECT_EQ(t.type, expected_type(type.name, t.name)) << t.name;
      // The values: relative RMS error against the converter's tensor (same layout, permuted).
      const formats::GgufTensor& r = ref.tensor(t.name);
      ASSERT_EQ(t.dims, r.dims) << t.name;
      const int64_t n = t.elements(), cols = t.dims[0];
      std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
      for (int64_t row = 0; row < n / cols; ++row) {
        formats::dequantize_row(t.type, t.data + row * formats::row_bytes(t.type, cols), cols, a.data() + row * cols);
        formats::dequantize_row(r.type, r.data + row * formats::row_bytes(r.type, cols), cols, b.data() + row * cols);
      }
      double err = 0, norm = 0;
      for (int64_t i = 0; i < n; ++i) {
        err += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
        norm += double(b[i]) * b[i];
      }
      EXPECT_LE(std::sqrt(err / norm), max_rel_rms.at(type.name)) << t.name;
    }
  }
}

// A GGUF source already quantized: requantized from its dequantized values.
TEST(GgufExport, RequantizesQuantizedSource) {
  SKIP_WITHOUT_REFERENCE();
  TempDir tmp("requant");
  export_gguf(open_gguf_source(kQwenGguf), parse_quant_type("q8_0"), tmp / "q8.gguf", threads(2));
  const GgufPlan plan =
      export_gguf(open_gguf_source(tmp / "q8.gguf"), parse_quant_type("q4_k_m"), tmp / "q4.gguf", threads(2));
  EXPECT_GT(plan.n_requantized, 0);
  auto types = tensor_types(tmp / "q4.gguf");
  EXPECT_EQ(types["blk.0.attn_q.weight"], WeightType::Q4_K);
  EXPECT_EQ(types["token_embd.weight"], WeightType::Q6_K);
  // Same file type again: every tensor is copied as it is.
  export_gguf(open_gguf_source(tmp / "q8.gguf"), parse_quant_type("q8_0"), tmp / "q8b.gguf", threads(2));
  EXPECT_EQ(gguf_differences(tmp / "q8b.gguf", tmp / "q8.gguf"), "");
}

// The command line: the golden Q4_K_M again, and an unknown type refused with the known ones.
TEST(GgufExport, CommandLine) {
  SKIP_WITHOUT_REFERENCE();
  TempDir tmp("cli");
  const std::string bin = MESHLM_BINARY;
  const std::string out = tmp / "q.gguf";
  ASSERT_EQ(std::system((bin + " quantize --model " + kQwenGguf + " --out " + out + " --type Q4_K_M --threads 2 2>" +
                         (tmp / "log")).c_str()),
            0);
  const nlohmann::json golden = read_json_file(kShared + "/golden/llamacpp_tiny_Q4_K_M.json", "test");
  EXPECT_EQ(sha256_file(out), golden["quantize"]["gguf_sha256"].get<std::string>());
  EXPECT_NE(std::system((bin + " quantize --model " + kQwen + " --out " + out + " --type q3_k_xs 2>" + (tmp / "err"))
                            .c_str()),
            0);
  std::ifstream err(tmp / "err");
  const std::string text((std::istreambuf_iterator<char>(err)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("unknown type 'q3_k_xs'"), std::string::npos) << text;
}

TEST(GgufExport, ClearErrors) {
  TempDir tmp("errors");
  {
    std::ofstream(tmp / "config.json") << R"({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]})";
    try {
      open_source(tmp.path.string());
      FAIL() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("gpt2"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(open_source((tmp.path / "absent.gguf").string()), Error);
  EXPECT_THROW(parse_quant_type("q2_k_xl"), Error);
  if (models_missing().empty()) {
    const SourceModel src = open_gguf_source(kQwenGguf);
    EXPECT_THROW(export_gguf(src, parse_quant_type("mlx4"), tmp / "x.gguf"), Error);
  }
}

}  // namespace
}  // namespace meshlm::convert
